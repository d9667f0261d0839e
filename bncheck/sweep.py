"""The sweep: draws stream through the references and the checks in chunks, so that memory stays
flat however many draws a sweep has.

For each chunk: sample the draws (bncheck.draws), compute their references (bncheck.engine), redraw
those that sit on a relu kink, compute the dense Jacobians that fit the budget (or their products
with probe vectors), then call the derivation on each draw and tally the verdicts (bncheck.check).
References are computed in float64 whatever the run's dtype, on the same (rounded) inputs the
derivation sees; a float32 run also computes them in float32 first, since that forward record is its
ctx. A verdict that fails without a noise floor waits for it: the float32 and rounding-noise
recomputations behind the floor run only for those draws, a chunk of them at a time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from bncheck.check import PRODUCTS, Checker, Tally, Verdict
from bncheck.compare import TOLERANCES, Comparison
from bncheck.draws import MAX_ATTEMPTS, Draw, plan, sample, sample_probes
from bncheck.engine import PRODUCTS_SHARE, Engine, Record
from bncheck.loader import Derivation
from bncheck.models import Check

Progress = Callable[[int, int], None]
Phase = Callable[[str], None]


@dataclass
class SweepResult:
    tallies: dict[str, Tally]
    draws: int  # how many draws were checked
    redrawn: int
    # The engine that ran the sweep and its draws per call, whose compiled references the steps after
    # the sweep (a smaller failing case, finite differences, variants) reuse.
    engine: Engine
    chunk: int


def prepare(engine: Engine, checks: list[Check], draws: list[Draw], records: dict[int, Record],
            tallies: dict[str, Tally], chunk: int, sample_draws: bool = True,
            on_phase: Phase = lambda text: None) -> int:
    """Samples the draws, redraws those on a relu kink, and computes every reference `checks` need
    into records[id(draw)]. Returns how many redraws it took.

    A float64 run computes the float64 pass alone (its floors come later, for the draws that need
    them); a float32 run the float32 pass too. Dense Jacobians over the budget are counted as skipped
    in `tallies`. With sample_draws=False the draws' arrays are used as they are, kink or not: a case
    someone computed on.
    """
    model, settings = engine.model, engine.settings
    jvp_targets = {c.target for c in checks if c.kind == "jvp"}
    main = [c for c in checks if c.kind != "jacobian"]
    passes = ("exact", "rough") if settings.dtype == "float32" else ("exact",)
    kink_field = model.kink_field(engine.cfg)
    margin = TOLERANCES[settings.dtype].kink

    def near_kink(smallest: float, largest: float) -> bool:
        return smallest < margin * max(largest, 1.0)

    if sample_draws:
        for draw in draws:
            sample(model, draw, settings.dtype, jvp_targets)
    engine.references(main, draws, records, chunk, passes)
    redrawn = 0
    if sample_draws and kink_field is not None:
        def on_kink(draw: Draw) -> bool:
            value = np.abs(records[id(draw)].forward[kink_field])
            return value.size > 0 and near_kink(value.min(), value.max())

        pending = [d for d in draws if on_kink(d)]
        if pending:
            on_phase(f"redrawing {len(pending)} draw{'s' if len(pending) != 1 else ''} off a relu kink")
            redone = list(pending)
            while pending:
                for draw in pending:
                    draw.attempt += 1
                    redrawn += 1
                    sample(model, draw, settings.dtype, None)
                # Redraw rounds need only the extremes of the field that holds the kinks: a
                # forward-only program keeps them cheap when most draws of a large shape sit near one.
                found = engine.extremes(kink_field, pending, chunk)
                pending = [d for d in pending if near_kink(*found[id(d)]) and d.attempt < MAX_ATTEMPTS]
            for draw in redone:
                sample(model, draw, settings.dtype, jvp_targets)
                del records[id(draw)]
            engine.references(main, redone, records, chunk, passes)
    dense = [c for c in checks if c.kind == "jacobian"]
    if dense:
        _dense(engine, dense, draws, records, tallies, chunk)
    return redrawn


def _dense(engine: Engine, dense: list[Check], draws: list[Draw], records: dict[int, Record],
           tallies: dict[str, Tally], chunk: int) -> None:
    """Dense Jacobian references for draws within the Jacobian budget, products with probe vectors for
    larger ones (up to the budget), and the rest counted as skipped: a skipped check is never called."""
    settings = engine.settings
    budget = settings.max_jacobian_mb * 2**20
    within: dict[int, list[Check]] = {}
    by_products: list[tuple[Check, Draw]] = []
    for draw in draws:
        within[id(draw)] = []
        for c in dense:
            size = engine.dense_bytes(c, draw.dims)
            if size <= budget * PRODUCTS_SHARE:
                within[id(draw)].append(c)
            elif size <= budget:
                by_products.append((c, draw))
                sample_probes(draw, c.target, engine.target_shape(c, draw.dims), c.output,
                              engine.output_shapes(draw.dims)[c.output], settings.dtype)
            else:
                tallies[c.name].skipped += 1
                tallies[c.name].skip_reason = (
                    f"the dense Jacobian at {draw.case_id(settings.dtype)} would take {size / 2**20:,.3g} MB, over "
                    f"--max-jacobian-mb {settings.max_jacobian_mb:g}; give the differential form "
                    f"jvp_{c.output}_{c.target} instead"
                )
    engine.products(by_products, records, chunk)
    fits = [d for d in draws if within[id(d)]]
    if fits:
        # float64 and float32 copies of each Jacobian (1.5 times the float64 size) in every call: as
        # many draws a call as the budget holds at the bucket, fixed per bucket so each compiles once.
        largest = 3 * sum(engine.dense_bytes(c, engine.largest) for c in dense) // 2
        dense_chunk = max(1, min(chunk, int(budget // max(largest, 1))))
        engine.references(dense, fits, records, dense_chunk, ("exact", "rough"), fields=(),
                          dense=lambda draw: within[id(draw)])


def _settle(engine: Engine, checks: list[Check], waiting: list[Verdict], chunk: int, budget: float) -> None:
    """Computes the noise floors the waiting verdicts need (for their draws only), then tallies them."""
    main = [c for c in checks if c.kind != "jacobian"]
    by_passes: dict[tuple[str, ...], dict[int, Draw]] = {}
    for verdict in waiting:
        if verdict.needs and verdict.tally.check.kind != "jacobian":
            by_passes.setdefault(verdict.needs, {})[id(verdict.draw)] = verdict.draw
    records = {id(v.draw): v.record for v in waiting}
    for passes, draws in by_passes.items():
        engine.references(main, list(draws.values()), records, chunk, passes, fields=())
    for verdict in waiting:
        verdict.settle(engine.settings.dtype, budget)


def run_sweep(
    engine: Engine,
    derivation: Derivation,
    draws: Iterable[Draw] | None = None,
    on_progress: Progress = lambda done, total: None,
    on_phase: Phase = lambda text: None,
    on_compared: Callable[[Check, Draw, Comparison], None] | None = None,
) -> SweepResult:
    """Runs the sweep over `draws` (None: the settings' own, bncheck.draws.plan); draws given with
    their arrays set are checked as they are, nothing sampled or redrawn (an exported case read back).

    on_progress(done, total) follows the draws; on_phase(text) names each longer step before it
    (compiles, references, redraws), so a progress display is never silent; on_verdict sees every
    judged draw of every check as it is tallied (the error distributions of bench/tolerances.py).
    """
    model, settings = engine.model, engine.settings
    checks = list(derivation.checks.values())
    tallies = {c.name: Tally(c, observer=on_compared) for c in checks}
    given = draws is not None
    draws = list(draws) if given else plan(settings, model)
    total = len(draws)
    chunk = engine.chunk(checks, total)
    checker = Checker(derivation, settings, engine.cfg, model.invariants(engine.cfg))
    redrawn = done = 0
    waiting: list[Verdict] = []

    def settle() -> None:
        _settle(engine, checks, waiting, chunk, checker.sample_budget)
        waiting.clear()

    on_phase("drawing, compiling and computing references")
    block: list[Draw] = []
    for draw in draws:
        block.append(draw)
        if len(block) < chunk and done + len(block) < total:
            continue
        records: dict[int, Record] = {}
        redrawn += prepare(engine, checks, block, records, tallies, chunk, sample_draws=not given, on_phase=on_phase)
        if done == 0:
            on_phase("checking draws")
        for draw in block:
            waiting += checker.draw(checks, draw, records.setdefault(id(draw), Record()), tallies)
            done += 1
            on_progress(done, total)
        if len(waiting) >= chunk:
            settle()
        block = []
    if waiting:
        on_phase("noise floors for the draws that need them")
        settle()
    for tally in tallies.values():
        if tally.product_draws:
            threshold = settings.max_jacobian_mb * PRODUCTS_SHARE
            tally.reference = (f"jax.jacfwd, and {PRODUCTS} for Jacobians over {threshold:g} MB"
                               if tally.dense_draws else PRODUCTS)
    return SweepResult(tallies, total, redrawn, engine, chunk)

