"""Central differences in float64, a third opinion beside autodiff (`--reference fd`).

For a direction V of a target t and a forward field o (the loss R, for a gradient),

    D_h = (o(t + hV) - o(t - hV)) / 2h

has a truncation error of about h²·o'''/6 and a rounding error of about u·max|o| / h (u the unit
roundoff of float64); h = u^(1/3) · max(1, max|t|) / max|V| balances the two. The quotient's own error
is estimated on the same draw: |D_h - D_2h| is three times D_h's truncation error, and u·max|o|/h
bounds its rounding; FD_MARGIN times their sum is the allowance an opinion is held to. Gradients and
dense Jacobians are differenced along every unit direction of the target (4 forward passes an entry,
with the 2h estimate), JVPs along the sweep's own directions.

It costs forward passes per entry, so it runs on the first FD_DRAWS draws of the sweep, and only for
targets of at most MAX_DIRECTIONS entries at the bucket shape. A draw where any perturbed forward
moves a pre-activation across a relu kink (the model's kink_field changes sign) gives no opinion: the
difference quotient straddles the kink, where autodiff takes one side.

The verdicts land on each tally: `references["fd"]` says whether the derivation agrees with the
differences (None when none could be taken), and a warning says where jax and the differences
disagree beyond the differences' own error. Neither changes whether the check passed.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from bncheck.compare import as_array, noise_floor
from bncheck.loader import Check, Derivation
from bncheck.models import Model
from bncheck.references import REFERENCE_NAMES
from bncheck.settings import Settings
from bncheck.sweep import (
    CHUNK,
    Draw,
    Engine,
    SweepResult,
    Tally,
    _cut,
    _group,
    _vec_jacobian,
    full_precision,
    make_ctx,
    prepare,
)

FD_DRAWS = 4
MAX_DIRECTIONS = 1024
FD_MARGIN = 10.0
_U = float(np.finfo(np.float64).eps)
_STEP = _U ** (1 / 3)
_STEPS = (1.0, -1.0, 2.0, -2.0)  # multiples of h: the central differences at h and at 2h


def _pair(c: Check) -> tuple[str, str, bool]:
    """(output, target, along unit directions?) of the difference quotient a check is compared with."""
    if c.kind == "gradient":
        return "R", c.target, True
    return c.output, c.target, c.kind == "jacobian"


def build(model: Model, cfg: dict[str, Any], pairs: tuple[tuple[str, str, bool], ...], kink: str | None) -> Callable:
    """batched(arrays, masks, directions) -> {"o|t": (D_h, D_2h, crossed, noise)}, one row per direction;
    crossed is shaped like the kink field."""
    import jax
    import jax.numpy as jnp

    def one(arrays, masks, directions):
        def forward(t, value):
            return model.forward(cfg, masks, **{**arrays, t: value})

        base = model.forward(cfg, masks, **arrays)
        out = {}
        for o, t, unit in pairs:
            x = arrays[t]
            V = jnp.eye(x.size, dtype=x.dtype).reshape(x.size, *x.shape) if unit else directions[t]
            scale = jnp.maximum(1.0, jnp.abs(x).max())

            def quotient(v, o=o, t=t, x=x, scale=scale):
                h = _STEP * scale / jnp.maximum(jnp.abs(v).max(), 1e-300)
                # One traced forward, vectorised over the four steps, keeps the compile small.
                records = jax.vmap(lambda step: forward(t, x + step * h * v))(jnp.array(_STEPS))
                d1 = (records[o][0] - records[o][1]) / (2 * h)
                d2 = (records[o][2] - records[o][3]) / (4 * h)
                # Where a perturbed forward puts the kink field on the other side of 0; cut to the draw's
                # real entries later, since padded ones (beta = 0 at a padded unit) sit on the kink.
                crossed = jnp.any((records[kink] > 0) != (base[kink] > 0)[None], axis=0) if kink else jnp.zeros((), bool)
                noise = _U * jnp.abs(base[o]).max() / h
                return d1, d2, crossed, noise

            out[f"{o}|{t}"] = jax.vmap(quotient)(V)
        return out

    return jax.jit(jax.vmap(one))


def _opinion(c: Check, engine: Engine, draw: Draw, bucket: dict[str, int], raw) -> tuple[np.ndarray, float, bool]:
    """(D_h shaped like the check's value, its error allowance before atol, crossed a kink?)."""
    model = engine.model
    d1, d2, crossed, noise = (np.asarray(a) for a in raw)
    targets, bucket_targets = ({**model.inputs(d), **model.params(d)}[c.target] for d in (draw.dims, bucket))
    kink = model.kink_field(engine.cfg)
    if kink is not None:
        lead, real = ((len(crossed),),) * 2 if c.kind == "jvp" else (bucket_targets, targets)
        crossed = _cut(crossed.reshape(*lead, *crossed.shape[1:]), (*real, *engine.output_shapes(draw.dims)[kink]))
    if c.kind == "jvp":
        out = engine.output_shapes(draw.dims)[c.output]
        d1, d2 = (_cut(a, (len(a), *out)) for a in (d1, d2))
    else:
        out = engine.output_shapes(draw.dims)[c.output] if c.kind == "jacobian" else ()
        bucket_out = d1.shape[1:]

        def shaped(a):
            # (entries of the target, *out) -> (*out, *target), cut to the draw's own shape.
            a = _cut(a.reshape(*bucket_targets, *bucket_out), (*targets, *out))
            a = np.moveaxis(a, tuple(range(len(targets))), tuple(range(len(out), len(out) + len(targets))))
            return _vec_jacobian(a, len(out)) if c.kind == "jacobian" else a

        d1, d2 = shaped(d1), shaped(d2)
    allowance = FD_MARGIN * (float(np.abs(d1 - d2).max(initial=0.0)) + float(noise.max(initial=0.0)))
    return d1, allowance, bool(crossed.any())


def _got(derivation: Derivation, c: Check, ctx, draw: Draw):
    fn = derivation.functions[c.name]
    try:
        with np.errstate(all="ignore"):
            if c.kind == "jvp":
                return np.stack([as_array(fn(ctx, V)) for V in draw.directions[c.target]])
            return as_array(fn(ctx))
    except Exception:  # the sweep already reports the derivation's own failures
        return None


def _apart(a, b: np.ndarray) -> float:
    return math.inf if a is None or a.shape != b.shape else float(np.abs(a - b).max(initial=0.0))


def triangulate(model: Model, settings: Settings, derivation: Derivation, sweep: SweepResult) -> None:
    """Compares each check with central differences on the sweep's first draws; see the module docstring."""
    checks = list(derivation.checks.values())
    engine = sweep.engine
    # The sweep's first batch, recomputed (same seeds and shapes, so the same arrays) through the
    # references it compiled; the differences run on the first FD_DRAWS of them.
    draws = [Draw(d.seed, dict(d.dims)) for d in sweep.draws[: min(CHUNK, len(sweep.draws))]]
    with full_precision():
        prepare(engine, checks, draws, {c.name: Tally(c) for c in checks})
        draws = draws[:FD_DRAWS]
        groups = _group(draws, lambda d: engine.bucket(d.dims))
        opinions: dict[str, list] = {c.name: [] for c in checks}
        unfit: set[str] = set()
        for bucket, group in groups.values():
            shapes = {**model.inputs(bucket), **model.params(bucket)}
            fit = [c for c in checks if c.kind == "jvp" or math.prod(shapes[c.target]) <= MAX_DIRECTIONS]
            unfit |= {c.name for c in checks if c not in fit}
            pairs = tuple(sorted({_pair(c) for c in fit}))
            if not pairs:
                continue
            fn = build(model, engine.cfg, pairs, model.kink_field(engine.cfg))

            def take(draw: Draw, out: dict, bucket=bucket, fit=fit) -> None:
                ctx = make_ctx(engine, draw)
                for c in fit:
                    if c.name in draw.refs:
                        d1, allowance, crossed = _opinion(c, engine, draw, bucket, out["|".join(_pair(c)[:2])])
                        opinions[c.name].append((draw, d1, allowance, crossed, _got(derivation, c, ctx, draw)))

            engine.run_batched(fn, group, bucket, np.float64, take, chunk=len(group))
        for c in checks:
            _verdict(sweep.tallies[c.name], c, opinions[c.name], settings, unfit=c.name in unfit)


def _verdict(tally: Tally, c: Check, opinions: list, settings: Settings, unfit: bool) -> None:
    usable = [o for o in opinions if not o[3]]
    if not usable:
        tally.references["fd"] = None
        if unfit:
            tally.warnings.append(f"fd: not run: {c.target} has more than {MAX_DIRECTIONS} entries at the largest shape")
        elif opinions:
            tally.warnings.append("fd: not run: every differenced draw crossed a relu kink")
        return
    agree = True
    for draw, d1, allowance, _, got in usable:
        ref, rough = draw.refs[c.name], draw.rough[c.name]
        # The derivation is held to the differences' error plus what the sweep allows it; autodiff, to
        # the differences' error plus the float64 rounding of its own draw.
        own = settings.atol + settings.rtol * float(np.abs(ref).max(initial=0.0)) + noise_floor(ref, rough, settings.dtype)
        agree &= _apart(got, d1) <= allowance + own
        allowed = allowance + settings.atol + noise_floor(ref, rough, "float64")
        gap = _apart(ref, d1)
        if gap > allowed:
            tally.warnings.append(
                f"{REFERENCE_NAMES[c.kind]} and central differences disagree by {gap:.3g} at "
                f"{draw.case_id('float64')}, beyond the differences' own error {allowed:.3g}"
            )
    tally.references["fd"] = agree
