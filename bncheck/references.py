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


@dataclass(frozen=True)
class Plan:
    """What to compute: gradient targets, (output, target) pairs for dense Jacobians and for JVPs."""

    grads: tuple[str, ...] = ()
    jacs: tuple[tuple[str, str], ...] = ()
    jvps: tuple[tuple[str, str], ...] = ()


def build(model: Model, cfg: dict[str, Any], plan: Plan) -> Callable:
    """batched(arrays, masks, directions) -> {"fwd": ..., "grad": ..., "jac": ..., "jvp": ...}.

    Every argument and result carries a leading batch axis; directions[target] is (batch, D, *shape).
    """
    import jax

    def one(arrays, masks, directions):
        def forward(**overrides):
            return model.forward(cfg, masks, **{**arrays, **overrides})

        out: dict[str, Any] = {"fwd": forward()}
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
        return out

    return jax.jit(jax.vmap(one))


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
