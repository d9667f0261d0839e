"""Autodiff references: jax.grad for gradients, jax.jacfwd for dense Jacobians, jax.jvp for differentials.

One function computes, for a batch of draws of one (bucket) shape, the forward record and every
reference the derivation needs; it is jitted once per plan and vmapped over the draws, so a sweep
costs one XLA compile per bucket shape instead of one per draw.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from bncheck.models import Model

REFERENCE_NAMES = {"gradient": "jax.grad", "jacobian": "jax.jacfwd", "jvp": "jax.jvp"}
# For small shapes XLA's compile time outweighs the references' run time: backend optimisation level
# 0 halves the compile (1.6 s -> 0.7 s of CPU at (64, 32, 16)) but doubles the run time of the
# elementwise work, which wins from about (256, 64, 64) up (bench/speed.py).
QUICK_COMPILE = {"xla_backend_optimization_level": 0}


@dataclass(frozen=True)
class Plan:
    """What to compute: gradient targets, (output, target) pairs for dense Jacobians and for JVPs."""

    grads: tuple[str, ...] = ()
    jacs: tuple[tuple[str, str], ...] = ()
    jvps: tuple[tuple[str, str], ...] = ()
    # (output, target) pairs whose Jacobian is checked matrix-free: products with probe vectors.
    products: tuple[tuple[str, str], ...] = ()
    # The forward fields to return; None returns them all.
    fields: tuple[str, ...] | None = None
    # Forward fields whose smallest and largest |entry| over the draw's real (unpadded) entries to
    # return: a kink test needs two numbers, and moving whole fields back is most of a redraw round.
    extremes: tuple[str, ...] = ()


def build(model: Model, cfg: dict[str, Any], plan: Plan, passes: tuple[str, ...] | None = None,
          optimize: bool = True) -> Callable:
    """batched(arrays, masks, directions) -> {"fwd": ..., "grad": ..., "jac": ..., "jvp": ...}.

    Every argument and result carries a leading batch axis; directions[target] is (batch, D, *shape),
    and for plan.products directions["v:<target>"] and directions["u:<output>"] are the probe vectors.
    With passes, the result is {pass: that} for "exact" (the inputs as given) and "rough" (the same
    computed in float32, behind the noise floor: compare.noise_floor); both in one function share one
    compile and one transfer. Without optimize, XLA compiles quickly (QUICK_COMPILE) and the program
    runs slower.
    """
    import jax

    axes = output_axes(model, cfg) if plan.extremes else {}

    def one(arrays, masks, directions):
        def forward(**overrides):
            return model.forward(cfg, masks, **{**arrays, **overrides})

        record = forward()
        out: dict[str, Any] = {"fwd": {k: v for k, v in record.items() if plan.fields is None or k in plan.fields}}
        out["extremes"] = {f: _real_extremes(record[f], axes[f], masks) for f in plan.extremes}
        if plan.grads:
            out["grad"] = jax.grad(lambda sub: forward(**sub)["R"])({t: arrays[t] for t in plan.grads})
        out["jac"] = {
            f"{o}|{t}": jax.jacfwd(lambda v, o=o, t=t: forward(**{t: v})[o])(arrays[t]) for o, t in plan.jacs
        }
        out["jvp"] = {
            f"{o}|{t}": jax.vmap(
                lambda V, o=o, t=t: jax.jvp(lambda v: forward(**{t: v})[o], (arrays[t],), (V,))[1]
            )(directions[t])
            for o, t in plan.jvps
        }
        out["products"] = {}
        for o, t in plan.products:
            def along(v, o=o, t=t):
                return forward(**{t: v})[o]

            _, pullback = jax.vjp(along, arrays[t])
            out["products"][f"{o}|{t}"] = {
                "Jv": jax.vmap(lambda V, f=along, t=t: jax.jvp(f, (arrays[t],), (V,))[1])(directions[f"v:{t}"]),
                "uJ": jax.vmap(lambda U, p=pullback: p(U)[0])(directions[f"u:{o}"]),
            }
        return out

    return jit_batched(one, passes, {} if optimize else QUICK_COMPILE)


def _real_extremes(value, axes: tuple[str | int, ...], masks: dict):
    """(min, max) of |value| over the entries that are not padding (min is inf when there are none)."""
    import jax.numpy as jnp

    real = jnp.ones(value.shape, bool)
    for i, name in enumerate(axes):
        if isinstance(name, str):
            real = real & (masks[name] > 0).reshape([-1 if j == i else 1 for j in range(value.ndim)])
    size = jnp.abs(value)
    return jnp.where(real, size, jnp.inf).min(), jnp.where(real, size, 0.0).max()


def jit_batched(one: Callable, passes: tuple[str, ...] | None, options: dict[str, Any]) -> Callable:
    """jit(vmap(one)); with passes, {"exact": that, "rough": the same on float32 copies of the inputs},
    for the passes named."""
    import jax
    import jax.numpy as jnp

    batched = jax.vmap(one)
    if passes is None:
        return jax.jit(batched, compiler_options=options)

    def run(*args):
        out = {}
        if "exact" in passes:
            out["exact"] = batched(*args)
        if "rough" in passes:
            out["rough"] = batched(*jax.tree_util.tree_map(lambda a: a.astype(jnp.float32), args))
        return out

    return jax.jit(run, compiler_options=options)


def output_shapes_at(model: Model, cfg: dict[str, Any], dims: dict[str, int]) -> dict[str, tuple[int, ...]]:
    """The forward record's shapes at `dims`, from one trace (no compile, no FLOPs)."""
    import jax
    import numpy as np

    arrays = {
        name: jax.ShapeDtypeStruct(shape, np.float64)
        for name, shape in {**model.inputs(dims), **model.params(dims)}.items()
    }
    masks = {name: jax.ShapeDtypeStruct((size,), np.float64) for name, size in dims.items()}
    shapes = jax.eval_shape(lambda a, m: model.forward(cfg, m, **a), arrays, masks)
    return {name: tuple(s.shape) for name, s in shapes.items()}


def output_axes(model: Model, cfg: dict[str, Any]) -> dict[str, tuple[str | int, ...]]:
    """The forward record's shapes in dimension names, traced once at distinct probe sizes."""
    from bncheck.models import probe_dims, symbolic

    dims = probe_dims(model)
    return {name: symbolic(shape, dims) for name, shape in output_shapes_at(model, cfg, dims).items()}
