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
from dataclasses import dataclass, replace

import numpy as np

from bncheck.check import PRODUCTS, Checker, Tally, Verdict, call
from bncheck.compare import TOLERANCES, Comparison, Summary, float_dtype
from bncheck.draws import MAX_ATTEMPTS, SHAPE_POOL, Draw, Plan, plan, sample, sample_probes
from bncheck.engine import PRODUCTS_SHARE, Engine, Record, group
from bncheck.loader import Derivation
from bncheck.models import Check, Model
from bncheck.traced import Traced, fields_read

# At most this many distinct shapes in a sweep, a traced derivation runs on an accelerator beside its
# references: one compile a shape (a fixed shape, a model file's pool); more, and it runs on the host.
DEVICE_SHAPES = SHAPE_POOL

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
    # The derivation as the sweep called it: a jax.numpy function's traces stand in for it, and the
    # steps after the sweep call it the same way.
    derivation: Derivation | None = None
    # The kind of device the references ran on, over how many of them each chunk was sharded (all
    # processes' together), and over how many processes the draws were shared (bncheck.hosts).
    device: str = "cpu"
    devices: int = 1
    processes: int = 1


def prepare(engine: Engine, checks: list[Check], draws: list[Draw], records: dict[int, Record],
            tallies: dict[str, Tally], chunk: int, sample_draws: bool = True,
            on_phase: Phase = lambda text: None, fields: tuple[str, ...] | None = None,
            also: list[Check] = ()) -> int:
    """Samples the draws, redraws those on a relu kink, and computes every reference `checks` need
    into records[id(draw)], with the forward fields named (None: all; the kink field always). Returns
    how many redraws it took. The checks of `also` are sampled for (their JVP directions) but their
    references are left to the engine's device path (Engine.derived).

    A float64 run computes the float64 pass alone (its floors come later, for the draws that need
    them); a run in a lower precision its own pass too. Dense Jacobians over the budget are counted as
    skipped in `tallies`. With sample_draws=False the draws' arrays are used as they are, kink or not:
    a case someone computed on.
    """
    model, settings = engine.model, engine.settings
    jvp_targets = {c.target for c in [*checks, *also] if c.kind == "jvp"}
    main = [c for c in checks if c.kind != "jacobian"]
    passes = ("exact", "rough") if settings.dtype != "float64" else ("exact",)
    kink_field = model.kink_field(engine.cfg)
    margin = TOLERANCES[settings.dtype].kink
    if fields is not None and kink_field is not None:
        fields = tuple(sorted({*fields, kink_field}))

    def near_kink(smallest: float, largest: float) -> bool:
        return smallest < margin * max(largest, 1.0)

    if sample_draws:
        for draw in draws:
            sample(model, draw, settings.dtype, jvp_targets)
    engine.references(main, draws, records, chunk, passes, fields=fields)
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
            engine.references(main, redone, records, chunk, passes, fields=fields)
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
    draws: Plan | Iterable[Draw] | None = None,
    on_progress: Progress = lambda done, total: None,
    on_phase: Phase = lambda text: None,
    on_compared: Callable[[Check, Draw, Comparison], None] | None = None,
) -> SweepResult:
    """Runs the sweep over `draws`: a plan's (None: the settings' own, bncheck.draws.plan), or draws
    given with their arrays set, checked as they are, nothing sampled or redrawn (an exported case
    read back).

    Functions that use JAX are called through their traces (bncheck.traced): on the host, or on an
    accelerator beside their references when the sweep has few shapes (_on_device). The others are
    called as they are, with the forward fields they read (all, where their code does not tell).

    on_progress(done, total) follows the draws; on_phase(text) names each longer step before it
    (compiles, references, redraws, a function that must run eagerly), so a progress display is
    never silent; on_compared sees every judged draw of every check as it is tallied (the error
    distributions of bench/tolerances.py).
    """
    model, settings = engine.model, engine.settings
    checks = list(derivation.checks.values())
    tallies = {c.name: Tally(c, observer=on_compared) for c in checks}
    given = draws is not None and not isinstance(draws, Plan)
    draws = list(draws) if given else plan(settings, model) if draws is None else draws
    total = len(draws)
    chunk = engine.chunk(checks, total)
    traced = Traced.of(derivation.functions)
    hosted = replace(derivation, functions=traced.hosted())
    invariants = model.invariants(engine.cfg)
    checker = Checker(hosted, settings, engine.cfg, invariants)
    on_device = _on_device(engine, traced, checks, invariants, draws)
    host = [c for c in checks if c not in on_device]
    fields = _fields(model, derivation, host, invariants)
    failed_shapes: set[tuple] = set()
    redrawn = done = 0
    waiting: list[Verdict] = []
    said: set[str] = set()

    def settle() -> None:
        _settle(engine, checks, waiting, chunk, checker.sample_budget)
        waiting.clear()

    def say_eager() -> None:
        if traced.eager - said:
            said.update(traced.eager)
            on_phase(f"checking draws; {', '.join(sorted(said))} cannot be traced by JAX and "
                     f"run{'s' if len(said) == 1 else ''} eagerly, compiling each operation for each new shape: slow")

    on_phase("drawing, compiling and computing references")
    block: list[Draw] = []
    for draw in draws:
        block.append(draw)
        if len(block) < chunk and done + len(block) < total:
            continue
        records: dict[int, Record] = {}
        redrawn += prepare(engine, host, block, records, tallies, chunk, sample_draws=not given, on_phase=on_phase,
                           fields=fields, also=on_device)
        if on_device:
            waiting += _derived(engine, on_device, traced, block, records, tallies, chunk, checker, failed_shapes)
        if done == 0:
            on_phase("checking draws")
        for draw in block:
            waiting += checker.draw(host, draw, records.setdefault(id(draw), Record()), tallies)
            say_eager()
            done += 1
            on_progress(done, total)
        if len(waiting) >= chunk:
            settle()
        block = []
    if waiting:
        on_phase("noise floors for the draws that need them")
        settle()
    for tally in tallies.values():
        name_reference(tally, settings)
    return SweepResult(tallies, total, redrawn, engine, chunk, hosted, engine.kind, len(engine.devices))


def name_reference(tally: Tally, settings) -> None:
    """Names a Jacobian check's reference where some of its draws were checked by products."""
    if tally.product_draws:
        threshold = settings.max_jacobian_mb * PRODUCTS_SHARE
        tally.reference = (f"jax.jacfwd, and {PRODUCTS} for Jacobians over {threshold:g} MB"
                           if tally.dense_draws else PRODUCTS)


def _fields(model: Model, derivation: Derivation, host: list[Check], invariants: dict) -> tuple[str, ...] | None:
    """The forward fields the host's functions (and the model's invariants) can read, or None for all."""
    found = fields_read([derivation.functions[c.name] for c in host] + list(invariants.values()), [*model.outputs, "R"])
    return None if found is None else tuple(sorted(found))


def _on_device(engine: Engine, traced: Traced, checks: list[Check], invariants: dict,
               draws) -> list[Check]:
    """The gradient and JVP checks whose functions run beside their references (Engine.derived): on
    an accelerator, for a sweep of at most DEVICE_SHAPES shapes (a fixed shape, a model file's shape
    pool), the functions that trace at each of them to one array of the right shape. Each is traced
    as check.call calls a function (its timeout, its isolation); one whose invariant must see its
    values stays on the host."""
    settings = engine.settings
    if not engine.derive_on_device:
        return []
    if settings.shape is not None:
        shapes = [dict(settings.shape)]
    elif getattr(draws, "pool", None):
        # A process's share of the draws takes the pool's shapes in a cycle of at most `pool` draws.
        shapes = [draws.dims(t) for t in range(draws.part, min(draws.trials, draws.part + draws.pool * draws.parts),
                                                draws.parts)]
    else:
        shapes = list({tuple(d.dims.items()): d.dims for d in draws}.values()) if isinstance(draws, list) else []
    shapes = list({tuple(d.items()): d for d in shapes}.values())
    if not shapes or len(shapes) > DEVICE_SHAPES:
        return []
    dtype = settings.dtype

    def traces(c: Check, dims: dict[str, int]) -> bool:
        arrays = {n: (s, dtype) for n, s in {**engine.arrays(dims), **engine.output_shapes(dims)}.items()}
        directions = ((engine.target_shape(c, dims), dtype),) if c.kind == "jvp" else ()

        def attempt() -> np.ndarray:
            # As an array, so that check.call hands it back: 1 where the trace stands for the function.
            found = traced.trace(c.name, arrays, {**dims, **engine.cfg}, directions)
            return np.array(float(found is not None and found.shape == engine.value_shape(c, dims)
                                  and (float_dtype(found.dtype) or np.issubdtype(found.dtype, np.integer))))

        return bool(np.all(call(attempt, (), settings.timeout) == 1.0))

    return [c for c in checks if c.name in traced.names and c.kind in ("gradient", "jvp") and c.name not in invariants
            and all(traces(c, dims) for dims in shapes)]


def _derived(engine: Engine, checks: list[Check], traced: Traced, draws: list[Draw],
             records: dict[int, Record], tallies: dict[str, Tally], chunk: int, checker: Checker,
             failed_shapes: set[tuple]) -> list[Verdict]:
    """The verdicts of `checks` on `draws` from the engine's device path, tallied or (those that wait
    for a noise floor) returned. A shape whose program cannot be built or run falls back to the host:
    its references come back and the checker calls the functions there."""
    settings = engine.settings
    waiting: list[Verdict] = []
    taken: set[int] = set()

    def take(draw: Draw, out: dict) -> None:
        taken.add(id(draw))
        record = records.setdefault(id(draw), Record())
        for c in checks:
            tally = tallies[c.name]
            if tally.error is not None:
                continue
            if c.name in out["spread"]:
                record.spreads.setdefault(c.name, {})["rough"] = [float(x) for x in out["spread"][c.name]]
            summaries = [Summary(float(e), float(m), int(i), int(n), int(f)) for e, m, i, n, f in out["summary"][c.name]]
            verdict = Verdict.summarized(tally, draw, record, summaries, engine.value_shape(c, draw.dims),
                                         out["got"][c.name], out["ref"][c.name], settings)
            if verdict.needs:
                waiting.append(verdict)
            else:
                verdict.settle(settings.dtype, checker.sample_budget)

    for dims, part in group(draws, lambda d: dict(d.dims)):
        shape = tuple(dims.items())
        if shape not in failed_shapes:
            try:
                engine.derived(checks, traced.replayed(), part, chunk, take)
                continue
            except Exception:  # noqa: BLE001 - the host path below checks these draws instead
                failed_shapes.add(shape)
        rest = [d for d in part if id(d) not in taken]
        passes = ("exact", "rough") if settings.dtype != "float64" else ("exact",)
        engine.references(checks, rest, records, chunk, passes)
        for draw in rest:
            waiting += checker.draw(checks, draw, records[id(draw)], tallies)
    return waiting
