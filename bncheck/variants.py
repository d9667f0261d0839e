"""The failing draws of one check recomputed: the reference under the model's own settings and under each
of its variants (Model.variants: batch statistics held constant, the other ddof), with the forward record.

diagnose.py asks for these only when cheaper explanations (a factor, a sign, a transpose) fail, since
each variant costs one compile. The draws are the sweep's own (their arrays and JVP directions kept),
padded to the sweep's buckets as the references were.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from bncheck.loader import Check
from bncheck.models import Model
from bncheck.settings import Settings
from bncheck.sweep import JVP_DIRECTIONS, Draw, Engine, _cut, _group, _vec_jacobian


class Rerun:
    """References of `draws` for `check`, computed on first use and kept. samples[i] pairs with draws[i]."""

    def __init__(self, model: Model, settings: Settings, check: Check, draws: list[Draw], refs: list[np.ndarray]):
        self.engine = Engine(model, settings)
        self.check = check
        self.draws = draws
        self.refs = refs  # the sweep's references, to find which JVP direction each sample is
        self._cache: dict[str, tuple[list[np.ndarray], list[dict[str, np.ndarray]]]] | None = None

    def _computed(self) -> dict[str, tuple[list[np.ndarray], list[dict[str, np.ndarray]]]]:
        if self._cache is None:
            # The model's own settings ("") and every variant in one compile: compiles dominate here.
            cfgs = {"": self.engine.cfg, **self.engine.model.variants(self.engine.cfg)}
            self._cache = _references(self.engine, cfgs, self.check, self.draws)
        return self._cache

    def fields(self, forward: bool = True) -> list[dict[str, np.ndarray]]:
        """Per draw: its inputs and parameters, and with `forward` its forward record (a compile)."""
        if not forward:
            return [dict(draw.arrays) for draw in self.draws]
        _, fwd = self._computed()[""]
        return [{**draw.arrays, **record} for draw, record in zip(self.draws, fwd)]

    def variants(self) -> dict[str, list[np.ndarray]]:
        """Per variant key (Model.variants): the reference of each draw under it."""
        computed = self._computed()
        base, _ = computed[""]
        out = {}
        for key, (refs, _) in computed.items():
            if key and self.check.kind == "jvp":
                # A sample is the worst of the draw's directions: pick that direction back out.
                refs = [r[int(np.argmin([np.abs(b - want).max() for b in bs]))]
                        for r, bs, want in zip(refs, base, self.refs)]
            if key:
                out[key] = refs
        return out


def _references(engine: Engine, cfgs: dict[str, dict[str, Any]], c: Check, draws: list[Draw]):
    """{key: (reference of each draw, forward record of each draw)} under each of `cfgs`."""
    import jax

    from bncheck.references import Plan, build

    model = engine.model
    if c.kind == "gradient":
        plan = Plan(grads=(c.target,))
    elif c.kind == "jvp":
        plan = Plan(jvps=((c.output, c.target),))
    else:
        plan = Plan(jacs=((c.output, c.target),))
    fns = {key: build(model, cfg, plan) for key, cfg in cfgs.items()}
    fn = jax.jit(lambda arrays, masks, directions: {key: f(arrays, masks, directions) for key, f in fns.items()})
    found: dict[int, dict[str, tuple[np.ndarray, dict[str, np.ndarray]]]] = {}

    def take(draw: Draw, outs: dict) -> None:
        shapes = engine.output_shapes(draw.dims)
        params = {**model.inputs(draw.dims), **model.params(draw.dims)}
        found[id(draw)] = {}
        for key, out in outs.items():
            fwd = {name: _cut(value, shapes[name]) for name, value in out["fwd"].items()}
            if c.kind == "gradient":
                ref = _cut(out["grad"][c.target], params[c.target])
            elif c.kind == "jvp":
                ref = _cut(out["jvp"][f"{c.output}|{c.target}"], (JVP_DIRECTIONS, *shapes[c.output]))
            else:
                J = _cut(out["jac"][f"{c.output}|{c.target}"], shapes[c.output] + params[c.target])
                ref = _vec_jacobian(J, len(shapes[c.output]))
            found[id(draw)][key] = ref, fwd

    def dense_bytes(dims: dict[str, int]) -> int:
        if c.kind != "jacobian":
            return 0
        target = {**model.inputs(dims), **model.params(dims)}[c.target]
        return 8 * len(cfgs) * math.prod(engine.output_shapes(dims)[c.output]) * math.prod(target)

    with jax.default_matmul_precision("highest"):
        for bucket, group in _group(draws, lambda d: engine.bucket(d.dims, dense_bytes)).values():
            engine.run_batched(fn, group, bucket, np.float64, take, chunk=len(group))
    return {key: ([found[id(d)][key][0] for d in draws], [found[id(d)][key][1] for d in draws]) for key in cfgs}
