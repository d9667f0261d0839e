"""A traced jax.numpy function run on the host with NumPy: its jaxpr evaluated one equation at a time.

Calling jax.numpy code eagerly on draws of ever new shapes compiles every operation anew for each
shape (a second or more a draw for a derivation of the seed network), and jitting the whole function
compiles once a shape (half a second). A sweep of random shapes pays either for every draw. A jaxpr
traced at a draw's shape (milliseconds) and evaluated here costs what the same NumPy code costs:
each primitive is computed by the NumPy operation with its semantics (lax's, not NumPy's where they
differ: integer division rounds toward zero, `rem` keeps the dividend's sign, clamped dynamic-slice
starts), and its result is cast to the dtype and checked against the shape the trace gave it.

A primitive without a rule here is handed to JAX itself (`Primitive.bind` on the values), which is
exact and compiles that one operation, as eager JAX would. Nothing else is approximated: a value
that comes out with another shape than its trace says raises Mismatch, and the caller runs the user's
function as it is instead.
"""

from __future__ import annotations

import string
from typing import Any, Callable

import numpy as np


class Mismatch(Exception):
    """An equation's value came out with another shape than the trace says."""


def _div(a, b):
    if np.issubdtype(np.result_type(a, b), np.integer):
        return np.sign(a) * np.sign(b) * (np.abs(a) // np.abs(b))  # lax rounds toward zero
    return np.true_divide(a, b)


def _logical(logical: Callable, bitwise: Callable) -> Callable:
    return lambda *xs: logical(*xs) if np.result_type(*xs) == np.bool_ else bitwise(*xs)


_ELEMENTWISE: dict[str, Callable] = {
    "neg": np.negative, "exp": np.exp, "exp2": np.exp2, "log": np.log, "log1p": np.log1p, "expm1": np.expm1,
    "tanh": np.tanh, "sin": np.sin, "cos": np.cos, "tan": np.tan, "asin": np.arcsin, "acos": np.arccos,
    "atan": np.arctan, "sinh": np.sinh, "cosh": np.cosh, "asinh": np.arcsinh, "acosh": np.arccosh,
    "atanh": np.arctanh, "sqrt": np.sqrt, "rsqrt": lambda x: 1 / np.sqrt(x), "cbrt": np.cbrt, "abs": np.abs,
    "sign": np.sign, "floor": np.floor, "ceil": np.ceil, "is_finite": np.isfinite, "square": np.square,
    "logistic": lambda x: 1 / (1 + np.exp(-x)), "not": _logical(np.logical_not, np.invert),
    "add": np.add, "add_any": np.add, "sub": np.subtract, "mul": np.multiply, "div": _div, "rem": np.fmod,
    "pow": np.power, "max": np.maximum, "min": np.minimum, "atan2": np.arctan2, "nextafter": np.nextafter,
    "and": _logical(np.logical_and, np.bitwise_and), "or": _logical(np.logical_or, np.bitwise_or),
    "xor": _logical(np.logical_xor, np.bitwise_xor),
    "eq": np.equal, "ne": np.not_equal, "lt": np.less, "le": np.less_equal, "gt": np.greater, "ge": np.greater_equal,
}
_REDUCTIONS = {"reduce_sum": np.sum, "reduce_max": np.max, "reduce_min": np.min, "reduce_prod": np.prod,
               "reduce_and": np.all, "reduce_or": np.any}
_CUMULATIVE = {"cumsum": np.cumsum, "cumprod": np.cumprod, "cummax": np.maximum.accumulate,
               "cumlogsumexp": np.logaddexp.accumulate, "cummin": np.minimum.accumulate}


def _dot_general(lhs, rhs, *, dimension_numbers, preferred_element_type=None, **_):
    (lc, rc), (lb, rb) = dimension_numbers
    letters = iter(string.ascii_letters)
    left = [next(letters) for _ in range(lhs.ndim)]
    right = [None] * rhs.ndim
    for i, j in zip(lc, rc):
        right[j] = left[i]
    for i, j in zip(lb, rb):
        right[j] = left[i]
    right = [r if r is not None else next(letters) for r in right]
    out = [left[i] for i in lb]
    out += [left[i] for i in range(lhs.ndim) if i not in lc and i not in lb]
    out += [right[j] for j in range(rhs.ndim) if j not in rc and j not in rb]
    wide = preferred_element_type if preferred_element_type is not None else np.result_type(lhs.dtype, rhs.dtype)
    lhs, rhs = lhs.astype(_accumulated(wide), copy=False), rhs.astype(_accumulated(wide), copy=False)
    return np.einsum(f"{''.join(left)},{''.join(right)}->{''.join(out)}", lhs, rhs, optimize=True)


def _accumulated(dtype) -> np.dtype:
    """The dtype sums of `dtype` accumulate in: float32 for the floats narrower than it (bfloat16,
    float16), as XLA computes them on a CPU, which has no arithmetic of theirs."""
    dtype = np.dtype(dtype)
    narrow = dtype.kind == "V" or (dtype.kind == "f" and dtype.itemsize < 4)  # ml_dtypes' bfloat16 is kind V
    return np.dtype(np.float32) if narrow else dtype


def _broadcast_in_dim(x, *, shape, broadcast_dimensions, **_):
    expanded = [1] * len(shape)
    for i, d in enumerate(broadcast_dimensions):
        expanded[d] = x.shape[i]
    return np.broadcast_to(np.reshape(x, expanded), shape)


def _reshape(x, *, new_sizes, dimensions=None, **_):
    return np.reshape(x if dimensions is None else np.transpose(x, dimensions), new_sizes)


def _iota(*, dtype, shape, dimension, **_):
    axis = [1] * len(shape)
    axis[dimension] = shape[dimension]
    return np.broadcast_to(np.arange(shape[dimension], dtype=dtype).reshape(axis), shape)


def _select_n(which, *cases):
    if np.asarray(which).dtype == np.bool_:
        return np.where(which, cases[1], cases[0])
    return np.choose(which, np.broadcast_arrays(*cases))


def _pad(x, value, *, padding_config):
    for axis, (lo, hi, interior) in enumerate(padding_config):
        if interior > 0 and x.shape[axis] > 1:
            n = x.shape[axis]
            shape = list(x.shape)
            shape[axis] = n + (n - 1) * interior
            spread = np.full(shape, value, dtype=x.dtype)
            index = [slice(None)] * x.ndim
            index[axis] = slice(None, None, interior + 1)
            spread[tuple(index)] = x
            x = spread
        widths = [(0, 0)] * x.ndim
        widths[axis] = (max(lo, 0), max(hi, 0))
        x = np.pad(x, widths, constant_values=value)
        index = [slice(None)] * x.ndim
        index[axis] = slice(-min(lo, 0), x.shape[axis] + min(hi, 0))
        x = x[tuple(index)]
    return x


def _dynamic_slice(x, *starts, slice_sizes):
    starts = [int(np.clip(s, 0, n - size)) for s, n, size in zip(starts, x.shape, slice_sizes)]
    return x[tuple(slice(s, s + size) for s, size in zip(starts, slice_sizes))]


def _dynamic_update_slice(x, update, *starts):
    starts = [int(np.clip(s, 0, n - size)) for s, n, size in zip(starts, x.shape, update.shape)]
    out = np.array(x)
    out[tuple(slice(s, s + size) for s, size in zip(starts, update.shape))] = update
    return out


def _argmax(reduce: Callable) -> Callable:
    def arg(x, *, axes, index_dtype):
        (axis,) = axes
        return reduce(x, axis=axis).astype(index_dtype)

    return arg


def _round(x, *, rounding_method):
    # 0: halves away from zero (lax's default), 1: to even (NumPy's).
    return np.round(x) if int(rounding_method) == 1 else np.sign(x) * np.floor(np.abs(x) + 0.5)


_RULES: dict[str, Callable] = {
    "dot_general": _dot_general,
    "broadcast_in_dim": _broadcast_in_dim,
    "reshape": _reshape,
    "transpose": lambda x, *, permutation: np.transpose(x, permutation),
    "squeeze": lambda x, *, dimensions: np.squeeze(x, axis=tuple(dimensions)),
    "rev": lambda x, *, dimensions: np.flip(x, axis=tuple(dimensions)),
    "iota": _iota,
    "select_n": _select_n,
    "pad": _pad,
    "concatenate": lambda *xs, dimension: np.concatenate(xs, axis=dimension),
    "slice": lambda x, *, start_indices, limit_indices, strides: x[tuple(
        slice(s, e, st) for s, e, st in zip(start_indices, limit_indices, strides or (1,) * x.ndim))],
    "dynamic_slice": _dynamic_slice,
    "dynamic_update_slice": _dynamic_update_slice,
    "clamp": lambda lo, x, hi: np.clip(x, lo, hi),
    "integer_pow": lambda x, *, y: np.power(x, y) if y >= 0 else 1 / np.power(x, -y),
    "convert_element_type": lambda x, *, new_dtype, **_: np.asarray(x).astype(new_dtype),
    "round": _round,
    "argmax": _argmax(np.argmax),
    "argmin": _argmax(np.argmin),
    "copy": np.array,
    "copy_p": np.array,
}
# Call-like primitives whose body is evaluated here in turn, and where each keeps it.
_BODIES = {"jit": "jaxpr", "pjit": "jaxpr", "closed_call": "call_jaxpr", "core_call": "call_jaxpr",
           "custom_jvp_call": "call_jaxpr", "custom_vjp_call": "call_jaxpr", "custom_vjp_call_jaxpr": "fun_jaxpr",
           "remat": "jaxpr", "checkpoint": "jaxpr"}
# Primitives that only place or order values: each input is its output.
_IDENTITY = frozenset({"device_put", "optimization_barrier"})


def _apply(eqn, values: list) -> list:
    name = eqn.primitive.name
    params = dict(eqn.params)
    if name in _ELEMENTWISE:
        return [_ELEMENTWISE[name](*values)]
    if name in _REDUCTIONS:
        x = values[0]
        return [_REDUCTIONS[name](x.astype(_accumulated(x.dtype), copy=False), axis=tuple(params["axes"]))]
    if name in _CUMULATIVE:
        x, axis = values[0], params["axis"]
        x = x.astype(_accumulated(x.dtype), copy=False)
        if params.get("reverse"):
            return [np.flip(_CUMULATIVE[name](np.flip(x, axis), axis=axis), axis)]
        return [_CUMULATIVE[name](x, axis=axis)]
    if name in _RULES:
        params.pop("sharding", None)
        params.pop("out_sharding", None)
        params.pop("precision", None)
        return [_RULES[name](*values, **params)]
    if name in _IDENTITY:
        return list(values)
    return _bound(eqn, values)


def _bound(eqn, values: list) -> list:
    """JAX's own implementation of a primitive this module has no rule for."""
    import jax
    import jax.numpy as jnp

    bound = eqn.primitive.get_bind_params(eqn.params)
    # (subfuns, params) before jax 0.7, the params alone since.
    subfuns, params = bound if isinstance(bound, tuple) else ((), bound)
    out = eqn.primitive.bind(*subfuns, *(jnp.asarray(v) for v in values), **params)
    out = out if eqn.primitive.multiple_results else [out]
    return [np.asarray(v) for v in jax.device_get(out)]


def evaluate(jaxpr, consts: list, args: list) -> list[np.ndarray]:
    """The outputs of `jaxpr` (an open jaxpr, its consts and its inputs as arrays), as NumPy arrays."""
    from jax.extend.core import ClosedJaxpr, Literal

    env: dict[Any, Any] = {}

    def read(var):
        return np.asarray(var.val) if isinstance(var, Literal) else env[var]

    for var, value in zip(jaxpr.constvars, consts):
        env[var] = np.asarray(value)
    if len(args) != len(jaxpr.invars):
        raise Mismatch(f"{len(args)} inputs for a trace of {len(jaxpr.invars)}")
    for var, value in zip(jaxpr.invars, args):
        value = np.asarray(value)
        if value.shape != tuple(var.aval.shape) or value.dtype != var.aval.dtype:
            raise Mismatch(f"an input of shape {value.shape} {value.dtype} for {var.aval}")
        env[var] = value
    for eqn in jaxpr.eqns:
        values = [read(v) for v in eqn.invars]
        body = eqn.params.get(_BODIES.get(eqn.primitive.name, ""))
        if body is not None:
            inner, inner_consts = (body.jaxpr, body.consts) if isinstance(body, ClosedJaxpr) else (body, [])
            outs = evaluate(inner, inner_consts, values)
        else:
            outs = _apply(eqn, values)
        for var, value in zip(eqn.outvars, outs):
            aval = var.aval
            value = np.asarray(value)
            if value.shape != tuple(aval.shape):
                raise Mismatch(f"{eqn.primitive.name} gave shape {value.shape}, its trace {tuple(aval.shape)}")
            env[var] = value if value.dtype == aval.dtype else value.astype(aval.dtype)
    return [read(v) for v in jaxpr.outvars]
