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

A trace may be symbolic in its sizes (bncheck.traced traces a family of shapes once): its shapes and
parameters then hold JAX's symbolic dimensions, which `sizes` (each symbol's value for this call)
turns into numbers before an equation runs.
"""

from __future__ import annotations

import functools
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
    """lax.dot_general as one batched matrix product: the batch axes first, then each side's free
    axes against its contracted ones (lax's output order: batch, the left's free, the right's free)."""
    (lc, rc), (lb, rb) = dimension_numbers
    lf = [i for i in range(lhs.ndim) if i not in lc and i not in lb]
    rf = [j for j in range(rhs.ndim) if j not in rc and j not in rb]
    wide = _accumulated(preferred_element_type if preferred_element_type is not None
                        else np.result_type(lhs.dtype, rhs.dtype))
    lhs, rhs = lhs.astype(wide, copy=False), rhs.astype(wide, copy=False)
    batch = [lhs.shape[i] for i in lb]
    left, right = [lhs.shape[i] for i in lf], [rhs.shape[j] for j in rf]
    n = _count(batch)
    inner = _count([lhs.shape[i] for i in lc])
    a = np.transpose(lhs, [*lb, *lf, *lc]).reshape(n, _count(left), inner)
    b = np.transpose(rhs, [*rb, *rc, *rf]).reshape(n, inner, _count(right))
    return np.matmul(a, b).reshape(*batch, *left, *right)


def _count(sizes: list[int]) -> int:
    return int(np.prod(sizes, dtype=np.int64))


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


def _gather(operand, indices, *, dimension_numbers, slice_sizes, mode, fill_value=None, **_):
    """lax.gather without batching dimensions (_runner hands those to JAX): a slice of `slice_sizes`
    at each index vector (the last axis of `indices`), its collapsed axes dropped, the slices' own
    axes placed at `offset_dims` and the indices' others around them. Starts are clamped so a slice
    fits, as XLA does; in "fill" mode a slice that would not fit is the fill value instead."""
    dn = dimension_numbers
    batch = indices.shape[:-1]
    index = np.asarray(indices).reshape(-1, indices.shape[-1]).astype(np.int64)
    starts = np.zeros((len(index), operand.ndim), np.int64)
    starts[:, list(dn.start_index_map)] = index
    limit = np.asarray(operand.shape, np.int64) - np.asarray(slice_sizes, np.int64)
    outside = np.any((starts < 0) | (starts > limit), axis=1)
    starts = np.clip(starts, 0, limit)
    grid = np.indices(slice_sizes, sparse=True)
    out = operand[tuple(starts[:, d].reshape(-1, *[1] * operand.ndim) + grid[d][None] for d in range(operand.ndim))]
    if getattr(mode, "name", str(mode)) == "FILL_OR_DROP" and outside.any():
        out = out.copy()
        out[outside] = _fill(operand.dtype) if fill_value is None else fill_value
    offset = [n for d, n in enumerate(slice_sizes) if d not in dn.collapsed_slice_dims]
    out = out.reshape(*batch, *offset)
    rank = len(batch) + len(offset)
    around = [i for i in range(rank) if i not in dn.offset_dims]
    return np.transpose(out, [len(batch) + list(dn.offset_dims).index(i) if i in dn.offset_dims else around.index(i)
                              for i in range(rank)])


def _fill(dtype: np.dtype) -> Any:
    """lax.gather's fill value for a slice out of bounds, by default."""
    dtype = np.dtype(dtype)
    if dtype == np.bool_:
        return True
    if np.issubdtype(dtype, np.signedinteger):
        return np.iinfo(dtype).min
    if np.issubdtype(dtype, np.unsignedinteger):
        return np.iinfo(dtype).max
    return np.nan


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
    "gather": _gather,
    "clamp": lambda lo, x, hi: np.clip(x, lo, hi),
    "integer_pow": lambda x, *, y: np.power(x, y) if y >= 0 else 1 / np.power(x, -y),
    "convert_element_type": lambda x, *, new_dtype, **_: np.asarray(x).astype(new_dtype),
    "round": _round,
    "argmax": _argmax(np.argmax),
    "argmin": _argmax(np.argmin),
    "copy": np.array,
    "copy_p": np.array,
    "dim_as_value": lambda *, dim: np.asarray(dim),  # a symbolic size as a number: given by sized
}
# Call-like primitives whose body is evaluated here in turn, and where each keeps it.
_BODIES = {"jit": "jaxpr", "pjit": "jaxpr", "closed_call": "call_jaxpr", "core_call": "call_jaxpr",
           "custom_jvp_call": "call_jaxpr", "custom_vjp_call": "call_jaxpr", "custom_vjp_call_jaxpr": "fun_jaxpr",
           "remat": "jaxpr", "checkpoint": "jaxpr"}
# Primitives that only place or order values: each input is its output.
_IDENTITY = frozenset({"device_put", "optimization_barrier"})


# The gather modes _gather implements (the others, such as one-hot, are handed to JAX).
_GATHER_MODES = ("CLIP", "FILL_OR_DROP", "PROMISE_IN_BOUNDS")
# Parameters of placement and precision, which NumPy has no use for.
_PLACEMENT = ("sharding", "out_sharding", "precision")


def _runner(eqn) -> tuple[Callable[[list, dict], list], bool]:
    """How `eqn`'s outputs come from its inputs and its parameters, and whether those parameters are
    given without their placement ones (the rules here) or as they are (handed to JAX)."""
    name = eqn.primitive.name
    if name in _ELEMENTWISE:
        elementwise = _ELEMENTWISE[name]
        return (lambda values, params: [elementwise(*values)]), True
    if name in _REDUCTIONS:
        reduce = _REDUCTIONS[name]

        def reduced(values, params):
            x = values[0]
            return [reduce(x.astype(_accumulated(x.dtype), copy=False), axis=tuple(params["axes"]))]

        return reduced, True
    if name in _CUMULATIVE:
        accumulate = _CUMULATIVE[name]

        def accumulated(values, params):
            x, axis = values[0], params["axis"]
            x = x.astype(_accumulated(x.dtype), copy=False)
            if params.get("reverse"):
                return [np.flip(accumulate(np.flip(x, axis), axis=axis), axis)]
            return [accumulate(x, axis=axis)]

        return accumulated, True
    to_jax = name == "gather" and (getattr(eqn.params["dimension_numbers"], "operand_batching_dims", ())
                                   or getattr(eqn.params["mode"], "name", "") not in _GATHER_MODES)
    if name in _RULES and not to_jax:
        rule = _RULES[name]
        return (lambda values, params: [rule(*values, **params)]), True
    if name in _IDENTITY:
        return (lambda values, params: list(values)), True
    return (lambda values, params: _bound(eqn, params, values)), False


def _placed(params: dict, clean: bool) -> dict:
    return {k: v for k, v in params.items() if k not in _PLACEMENT} if clean else params


def _bound(eqn, params: dict, values: list) -> list:
    """JAX's own implementation of a primitive this module has no rule for."""
    import jax
    import jax.numpy as jnp

    bound = eqn.primitive.get_bind_params(params)
    # (subfuns, params) before jax 0.7, the params alone since.
    subfuns, params = bound if isinstance(bound, tuple) else ((), bound)
    out = eqn.primitive.bind(*subfuns, *(jnp.asarray(v) for v in values), **params)
    out = out if eqn.primitive.multiple_results else [out]
    return [np.asarray(v) for v in jax.device_get(out)]


def _dimension(value: Any) -> bool:
    """Whether `value` is one of JAX's symbolic dimensions (which evaluate themselves)."""
    return hasattr(value, "_evaluate") and not isinstance(value, np.ndarray)


def sized(value: Any, sizes: dict[str, int], memo: dict[int, int] | None = None) -> Any:
    """`value` (a shape, an equation's parameter, a size) with each symbolic dimension in it replaced
    by its size given each symbol's value in `sizes`. JAX evaluates a dimension slowly: `memo` keeps
    each one's size by id, for a caller that meets one dimension in many shapes."""
    memo = {} if memo is None else memo
    if isinstance(value, tuple):
        items = [sized(v, sizes, memo) for v in value]
        return type(value)(*items) if hasattr(value, "_fields") else tuple(items)  # a NamedTuple's fields
    if isinstance(value, list):
        return [sized(v, sizes, memo) for v in value]
    if not _dimension(value):
        return value
    size = memo.get(id(value))
    if size is None:
        size = memo[id(value)] = int(value._evaluate(sizes))
    return size


def _symbolic(value: Any) -> bool:
    if isinstance(value, (tuple, list)):
        return any(_symbolic(v) for v in value)
    if isinstance(value, dict):
        return any(_symbolic(v) for v in value.values())
    return _dimension(value)


@functools.lru_cache(maxsize=1024)
def _program(jaxpr) -> tuple[list[tuple], dict[int, int], list[tuple]]:
    """`jaxpr` made ready to run many times: for each equation, its inputs, outputs, runner, whether
    its parameters lose their placement ones, those parameters (None where they hold a symbolic size,
    to be worked out for each call's sizes) and its body (a call-like primitive's jaxpr and consts);
    and for each variable with a symbolic shape (by id) which of the distinct symbolic shapes it has,
    so that each call works out each distinct shape once."""
    from jax.extend.core import ClosedJaxpr

    steps = []
    for eqn in jaxpr.eqns:
        body = eqn.params.get(_BODIES.get(eqn.primitive.name, ""))
        if body is not None:
            body = (body.jaxpr, body.consts) if isinstance(body, ClosedJaxpr) else (body, [])
        run, clean = _runner(eqn)
        params = None if _symbolic(eqn.params) else _placed(eqn.params, clean)
        steps.append((eqn.invars, eqn.outvars, run, clean, params, body, eqn))
    shapes: dict[tuple, int] = {}
    of: dict[int, int] = {}
    for var in [*jaxpr.invars, *(v for e in jaxpr.eqns for v in e.outvars)]:
        shape = tuple(var.aval.shape)
        if _symbolic(shape):
            of[id(var)] = shapes.setdefault(shape, len(shapes))
    return steps, of, list(shapes)


def evaluate(jaxpr, consts: list, args: list, sizes: dict[str, int] | None = None) -> list[np.ndarray]:
    """The outputs of `jaxpr` (an open jaxpr, its consts and its inputs as arrays), as NumPy arrays;
    `sizes` gives the value of each symbol in a symbolic trace's shapes."""
    from jax.extend.core import Literal

    steps, of, symbolic = _program(jaxpr)
    memo: dict[int, int] = {}
    concrete = [sized(s, sizes, memo) for s in symbolic] if sizes else []

    def shape(var) -> tuple:
        at = of.get(id(var))
        if at is not None and not sizes:
            raise Mismatch(f"a symbolic shape {var.aval} and no sizes for it")
        return tuple(var.aval.shape) if at is None else concrete[at]

    env: dict[Any, Any] = {}

    def read(var):
        return np.asarray(var.val) if isinstance(var, Literal) else env[var]

    for var, value in zip(jaxpr.constvars, consts):
        env[var] = np.asarray(value)
    if len(args) != len(jaxpr.invars):
        raise Mismatch(f"{len(args)} inputs for a trace of {len(jaxpr.invars)}")
    for var, value in zip(jaxpr.invars, args):
        value = np.asarray(value)
        if value.shape != shape(var) or value.dtype != var.aval.dtype:
            raise Mismatch(f"an input of shape {value.shape} {value.dtype} for {var.aval}")
        env[var] = value
    for invars, outvars, run, clean, params, body, eqn in steps:
        values = [read(v) for v in invars]
        if body is not None:
            outs = evaluate(body[0], body[1], values, sizes)
        else:
            if params is None:
                if not sizes:
                    raise Mismatch(f"{eqn.primitive.name} has symbolic parameters and no sizes for them")
                params = _placed({k: sized(v, sizes, memo) for k, v in eqn.params.items()}, clean)
            outs = run(values, params)
        for var, value in zip(outvars, outs):
            value = np.asarray(value)
            if value.shape != shape(var):
                raise Mismatch(f"{eqn.primitive.name} gave shape {value.shape}, its trace {shape(var)}")
            env[var] = value if value.dtype == var.aval.dtype else value.astype(var.aval.dtype)
    return [read(v) for v in jaxpr.outvars]
