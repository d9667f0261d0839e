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

Per check, an Opinion: whether the derivation agrees with the differences (None when none could be
taken), and warnings where jax and the differences disagree beyond the differences' own error.
Neither changes whether the check passed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from bncheck.check import REFERENCE_NAMES, Checker, Raised, Tally, call
from bncheck.compare import NotAnArray, noise_floor

from bncheck.draws import Draw, plan
from bncheck.engine import Engine, Record, cut, group, vec_jacobian
from bncheck.loader import Derivation
from bncheck.models import Check
from bncheck.sweep import SweepResult, prepare

FD_DRAWS = 4
MAX_DIRECTIONS = 1024
FD_MARGIN = 10.0


def _pair(c: Check) -> tuple[str, str, bool]:
    """(output, target, along unit directions?) of the difference quotient a check is compared with."""
    if c.kind == "gradient":
        return "R", c.target, True
    return c.output, c.target, c.kind == "jacobian"


def _opinion(c: Check, engine: Engine, draw: Draw, bucket: dict[str, int], raw) -> tuple[np.ndarray, float, bool]:
    """(D_h shaped like the check's value, its error allowance before atol, crossed a kink?)."""
    model = engine.model
    d1, d2, crossed, noise = (np.asarray(a) for a in raw)
    targets, bucket_targets = (engine.target_shape(c, d) for d in (draw.dims, bucket))
    kink = model.kink_field(engine.cfg)
    if kink is not None:
        lead, real = ((len(crossed),),) * 2 if c.kind == "jvp" else (bucket_targets, targets)
        crossed = cut(crossed.reshape(*lead, *crossed.shape[1:]), (*real, *engine.output_shapes(draw.dims)[kink]))
    if c.kind == "jvp":
        out = engine.output_shapes(draw.dims)[c.output]
        d1, d2 = (cut(a, (len(a), *out)) for a in (d1, d2))
    else:
        out = engine.output_shapes(draw.dims)[c.output] if c.kind == "jacobian" else ()
        bucket_out = d1.shape[1:]

        def shaped(a):
            # (entries of the target, *out) -> (*out, *target), cut to the draw's own shape.
            a = cut(a.reshape((*bucket_targets, *bucket_out)), (*targets, *out))
            a = np.moveaxis(a, tuple(range(len(targets))), tuple(range(len(out), len(out) + len(targets))))
            return vec_jacobian(a, len(out)) if c.kind == "jacobian" else a

        d1, d2 = shaped(d1), shaped(d2)
    allowance = FD_MARGIN * (float(np.abs(d1 - d2).max(initial=0.0)) + float(noise.max(initial=0.0)))
    return d1, allowance, bool(crossed.any())


def _got(derivation: Derivation, c: Check, ctx, draw: Draw, timeout: float):
    """The derivation's value on this draw (JVP directions stacked), or None where it is not a
    comparable array: the sweep already reports the derivation's own failures."""
    fn = derivation.functions[c.name]
    args = [(ctx.copy(), V) for V in draw.directions[c.target]] if c.kind == "jvp" else [(ctx.copy(),)]
    values = [call(fn, a, timeout) for a in args]
    if any(isinstance(v, (Raised, NotAnArray)) for v in values):
        return None
    return np.stack(values) if c.kind == "jvp" else values[0]


def _apart(a, b: np.ndarray) -> float:
    return math.inf if a is None or a.shape != b.shape else float(np.abs(a - b).max(initial=0.0))


@dataclass
class Opinion:
    """What central differences say of one check."""

    agrees: bool | None
    warnings: list[str] = field(default_factory=list)


def triangulate(derivation: Derivation, sweep: SweepResult) -> dict[str, Opinion]:
    """Compares each check with central differences on the sweep's first draws; see the module docstring."""
    checks = list(derivation.checks.values())
    engine, settings = sweep.engine, sweep.engine.settings
    # The sweep's first draws, recomputed (same seeds and shapes, so the same arrays) through the
    # references it compiled; the differences run on the first FD_DRAWS of them.
    draws = [d for d, _ in zip(plan(settings, engine.model), range(sweep.chunk))]
    records: dict[int, Record] = {}
    prepare(engine, checks, draws, records, {c.name: Tally(c) for c in checks}, sweep.chunk)
    # Every floor the verdicts could use: the differences' error is judged against the sweep's allowance.
    main = [c for c in checks if c.kind != "jacobian"]
    engine.references(main, draws, records, sweep.chunk, ("rough",), fields=())
    draws = draws[:FD_DRAWS]
    checker = Checker(derivation, settings, engine.cfg, {})
    opinions: dict[str, list] = {c.name: [] for c in checks}
    unfit: set[str] = set()
    for bucket, part in group(draws, lambda d: engine.bucket(d.dims)):
        shapes = engine.arrays(bucket)
        fit = [c for c in checks if c.kind == "jvp" or math.prod(shapes[c.target]) <= MAX_DIRECTIONS]
        unfit |= {c.name for c in checks if c not in fit}
        pairs = tuple(sorted({_pair(c) for c in fit}))
        if not pairs:
            continue

        def take(draw: Draw, out: dict, bucket=bucket, fit=fit) -> None:
            record = records[id(draw)]
            ctx = checker.ctx(draw, record)
            for c in fit:
                # A matrix-free check's reference is its products, which the differences do not give.
                if c.name in record.exact and not isinstance(record.exact[c.name], dict):
                    d1, allowance, crossed = _opinion(c, engine, draw, bucket, out["|".join(_pair(c)[:2])])
                    got = _got(derivation, c, ctx, draw, settings.timeout)
                    opinions[c.name].append((draw, record, d1, allowance, crossed, got))

        engine.differences(pairs, part, bucket, take)
    return {c.name: _verdict(c, opinions[c.name], settings, unfit=c.name in unfit) for c in checks}


def _verdict(c: Check, opinions: list, settings, unfit: bool) -> Opinion:
    usable = [o for o in opinions if not o[4]]
    if not usable:
        if unfit:
            return Opinion(None, [f"fd: not run: {c.target} has more than {MAX_DIRECTIONS} entries at the largest shape"])
        return Opinion(None, ["fd: not run: every differenced draw crossed a relu kink"] if opinions else [])
    opinion = Opinion(True)
    for draw, record, d1, allowance, _, got in usable:
        ref, rough = record.exact[c.name], record.rough[c.name]
        # The derivation is held to the differences' error plus what the sweep allows it; autodiff, to
        # the differences' error plus the float64 rounding of its own draw.
        own = settings.atol + settings.rtol * float(np.abs(ref).max(initial=0.0)) + noise_floor(ref, rough, settings.dtype)
        opinion.agrees &= _apart(got, d1) <= allowance + own
        allowed = allowance + settings.atol + noise_floor(ref, rough, "float64")
        gap = _apart(ref, d1)
        if gap > allowed:
            opinion.warnings.append(
                f"{REFERENCE_NAMES[c.kind]} and central differences disagree by {gap:.3g} at "
                f"{draw.case_id('float64')}, beyond the differences' own error {allowed:.3g}"
            )
    return opinion
