"""The sweep: draw shapes and seeds, compute references in batches, call the derivation, tally errors.

Every draw is a pure function of (seed, shape, attempt): its shape comes from default_rng([seed, 0]),
its arrays from default_rng([seed, 1, attempt]) and its JVP directions from default_rng([seed, 2,
attempt]), so `--shape ... --seed S --trials 1` replays draw S exactly. `attempt` moves past draws that
sit on a relu kink (see compare.Tolerance.kink).

References are computed in float64 whatever the run's dtype, on the same (rounded) inputs the
derivation sees; a float32 run gets a float32 forward record as its ctx. Draws are zero-padded to a
bucket shape and vmapped through one jitted function (references.build), then sliced back.
"""

from __future__ import annotations

import math
import traceback
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any, Callable

import numpy as np

from bncheck import guards
from bncheck.compare import (
    TOLERANCES,
    Comparison,
    compare,
    compare_rows,
    floor_of,
    rounding_spread,
)
from bncheck.loader import Check, Derivation, user_frames
from bncheck.matrix_free import compare_products, vec_rows
from bncheck.models import Model
from bncheck.settings import Settings

JVP_DIRECTIONS = 3
MAX_ATTEMPTS = 100
CHUNK = 32  # draws per compiled call: big enough to amortise dispatch, small enough for memory
FAILURE_SAMPLES = 32  # failing (got, ref) pairs kept per check for the diagnosis
# Below this many entries in the product of a sweep's largest dimensions, references compile quickly
# rather than run fast (references.QUICK_COMPILE): (64, 32, 16) is under it, (256, 64, 64) over.
QUICK_COMPILE_BELOW = 2**18
# Distinct shapes in a sweep of a model that cannot pad (each costs a compile; see plan_draws).
SHAPE_POOL = 16
# The passes of a reference computation (references.build): float64, and float32 for the noise floor.
BOTH = ("exact", "rough")


class Ctx:
    """The forward record of one draw, as a derivation function sees it: `ctx.H`, `ctx.N`, ..."""

    def __init__(self, fields: dict[str, Any]):
        self.__dict__.update(fields)

    def __getattr__(self, name: str):
        known = ", ".join(k for k in self.__dict__)
        raise AttributeError(f"ctx has no field {name!r}; its fields: {known}")


@dataclass
class Draw:
    seed: int
    dims: dict[str, int]
    attempt: int = 0
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    directions: dict[str, np.ndarray] = field(default_factory=dict)
    # The float64 references ("fwd.<field>" for the forward record, else a check's name) and the
    # same computed in float32 ("rough"), whose difference bounds the rounding a check can show.
    refs: dict[str, np.ndarray] = field(default_factory=dict)
    rough: dict[str, np.ndarray] = field(default_factory=dict)
    # Random vectors for matrix-free Jacobian checks: "v:<target>" and "u:<output>" (bncheck.matrix_free).
    probes: dict[str, np.ndarray] = field(default_factory=dict)

    def case_id(self, dtype: str) -> str:
        shape = ",".join(f"{k}={v}" for k, v in self.dims.items())
        return f"{dtype}[{shape}]#seed{self.seed}"


@dataclass
class Tally:
    """Everything one check saw over the sweep."""

    check: Check
    reference: str | None = None  # set where it is not the check kind's usual one (REFERENCE_NAMES)
    ran: int = 0
    skipped: int = 0
    skip_reason: str | None = None
    max_abs: float = 0.0
    max_rel: float = 0.0
    worst: tuple[Draw, Comparison] | None = None
    failures: int = 0
    # The failing draw furthest past its allowance: the one a replay must reproduce. (`worst`, by
    # relative error, can be a passing draw whose tiny reference made a large but allowed ratio.)
    worst_failure: tuple[Draw, Comparison] | None = None
    worst_values: tuple[np.ndarray, np.ndarray] | None = None  # (got, ref) at worst_failure, for the error map
    first_problem: tuple[Draw, Comparison] | None = None
    # draw, "Type: message", and the traceback's frames in the user's own file ("file:line: code").
    error: tuple[Draw, str, list[str]] | None = None
    samples: list[tuple[Draw, np.ndarray, np.ndarray]] = field(default_factory=list)
    # One per compared draw, for error distributions: max|got - ref| / max|ref|, the fraction of the
    # allowed error it used, and the draw's seed (verdicts that wait for a noise floor are tallied
    # after the rest: see Verdict).
    rel_errors: list[float] = field(default_factory=list)
    used: list[float] = field(default_factory=list)
    seeds: list[int] = field(default_factory=list)
    # The smallest draw found that fails the same way (bncheck.shrink), for the replay.
    smallest: Draw | None = None
    # Opinions besides the sweep's own reference ({"fd": agrees?}, bncheck.fd), and warnings: checks
    # that prove little, invariants broken, references that disagree. Neither changes the verdict.
    references: dict[str, bool | None] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    # Compared draws whose reference is zero up to rounding, and (draw, sentence) for each draw whose
    # value breaks one of the model's invariants (bncheck.guards).
    vanishing: int = 0
    broken: list[tuple[Draw, str]] = field(default_factory=list)

    def add(self, draw: Draw, result: Comparison, got, ref: np.ndarray) -> None:
        self.ran += 1
        if result.problem is None:
            self.rel_errors.append(result.rel_err)
            self.used.append(result.abs_err / result.allowed if result.allowed > 0 else float(result.abs_err > 0))
            self.seeds.append(draw.seed)
            self.max_abs = max(self.max_abs, result.abs_err)
            self.max_rel = max(self.max_rel, result.rel_err)
            if self.worst is None or result.rel_err > self.worst[1].rel_err:
                self.worst = (draw, result)
        elif self.first_problem is None:
            self.first_problem = (draw, result)
        if not result.ok:
            self.failures += 1
            if result.problem is None and (
                self.worst_failure is None or _overshoot(result) > _overshoot(self.worst_failure[1])
            ):
                self.worst_failure = (draw, result)
                self.worst_values = (np.asarray(got, dtype=np.float64), ref)
            if len(self.samples) < FAILURE_SAMPLES:
                self.samples.append((draw, got, ref))


def _overshoot(result: Comparison) -> float:
    return result.abs_err / result.allowed if result.allowed > 0 else np.inf


@dataclass
class SweepResult:
    draws: list[Draw]
    tallies: dict[str, Tally]
    redrawn: int
    # The engine that ran the sweep, whose compiled references a search for a smaller case reuses.
    engine: Engine


def plan_draws(settings: Settings, pool: int | None = None) -> list[Draw]:
    """Draw t has seed settings.seed + t and, unless --shape fixes it, the shape default_rng([seed, 0])
    draws. With `pool`, draw t takes the shape of draw t mod pool instead (its data stays its own): a
    model that cannot pad compiles once per distinct shape, and a pool bounds those compiles."""
    draws = []
    for trial in range(settings.trials):
        seed = settings.seed + trial
        if settings.shape is not None:
            dims = dict(settings.shape)
        else:
            rng = np.random.default_rng([settings.seed + trial % pool if pool else seed, 0])
            dims = {name: int(rng.integers(lo, hi + 1)) for name, (lo, hi) in settings.sweep.items()}
        draws.append(Draw(seed, dims))
    return draws


def _sample(model: Model, draw: Draw, dtype: str, jvp_targets: set[str] | None) -> None:
    """The draw's arrays and, when jvp_targets is not None, its JVP directions (their own stream, so
    redraw rounds that only test for kinks can leave them for the final attempt)."""
    def rounded(a: np.ndarray) -> np.ndarray:
        return a.astype(dtype).astype(np.float64)

    rng = np.random.default_rng([draw.seed, 1, draw.attempt])
    shapes = {**model.inputs(draw.dims), **model.params(draw.dims)}
    custom = _custom_sample(model, rng, draw.dims, shapes) if model.sample is not None else {}
    draw.arrays = {
        name: rounded(custom[name] if name in custom else rng.standard_normal(shape)) for name, shape in shapes.items()
    }
    if jvp_targets is None:
        return
    rng = np.random.default_rng([draw.seed, 2, draw.attempt])
    draw.directions = {
        t: rounded(rng.standard_normal((JVP_DIRECTIONS, *shapes[t]))) for t in sorted(jvp_targets)
    }


def _custom_sample(model: Model, rng: np.random.Generator, dims: dict[str, int], shapes: dict) -> dict[str, np.ndarray]:
    """The arrays a model's own sample(rng, d) draws, checked against the shapes it declares."""
    from bncheck.errors import LoadError

    try:
        custom = model.sample(rng, dict(dims))
    except Exception as err:
        raise LoadError(f"model: {model.name}: sample(rng, d) raised {type(err).__name__}: {err}") from None
    if not isinstance(custom, dict):
        raise LoadError(f"model: {model.name}: sample(rng, d) must return a dict of name -> array")
    out = {}
    for name, value in custom.items():
        if name not in shapes:
            raise LoadError(f"model: {model.name}: sample(rng, d) returned {name!r}, not an input or parameter")
        array = np.asarray(value, dtype=np.float64)
        if array.shape != shapes[name]:
            raise LoadError(
                f"model: {model.name}: sample(rng, d) gave {name} shape {array.shape}, but inputs/params say "
                f"{shapes[name]} at {dims}"
            )
        out[name] = array
    return out


def _stack_padded(arrays: list[np.ndarray], shape: tuple[int, ...]) -> np.ndarray:
    """The arrays zero-padded to `shape` and stacked: one allocation, not one np.pad per array."""
    out = np.zeros((len(arrays), *shape))
    for i, a in enumerate(arrays):
        out[(i, *(slice(0, s) for s in a.shape))] = a
    return out


def _cut(array: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    if array.shape == shape:  # unpadded: a fixed-shape sweep's every draw
        return array
    return array[tuple(slice(0, s) for s in shape)]


def _vec_jacobian(J: np.ndarray, out_ndim: int) -> np.ndarray:
    """(*out, *target) -> ∂vec(out)/∂vec(target)ᵀ with column-major vec on both sides."""
    axes = list(range(out_ndim))[::-1] + list(range(out_ndim, J.ndim))[::-1]
    rows = math.prod(J.shape[:out_ndim])
    return J.transpose(axes).reshape(rows, -1)


class Engine:
    def __init__(self, model: Model, settings: Settings):
        self.model = model
        self.settings = settings
        self.cfg = settings.model_options(model)
        self.invariants = model.invariants(self.cfg)
        self._axes: dict[str, tuple[str | int, ...]] | None = None
        self._exact: dict[tuple, dict[str, tuple[int, ...]]] = {}
        self._compiled: dict[Any, Callable] = {}
        s = settings
        largest = dict(s.shape) if s.shape is not None else {n: hi for n, (_, hi) in s.sweep.items()}
        self.optimize = math.prod(largest.values()) >= QUICK_COMPILE_BELOW

    def compiled(self, plan, passes: tuple[str, ...] | None = BOTH) -> Callable:
        """references.build for `plan` and `passes`, built once per engine: jit keeps the compiles per
        shape. By default each call returns the float64 references and their float32 recomputation
        behind the noise floor."""
        from bncheck.references import build

        if (plan, passes) not in self._compiled:
            self._compiled[plan, passes] = build(self.model, self.cfg, plan, passes, optimize=self.optimize)
        return self._compiled[plan, passes]

    def padded_to(self, largest: dict[str, int]) -> Engine:
        """An engine that pads every draw (none larger than `largest`) to `largest`, sharing this one's
        compiled references: a fixed-shape sweep's compile serves smaller draws too."""
        engine = Engine(self.model, replace(self.settings, shape=None, sweep={n: (1, v) for n, v in largest.items()}))
        engine._compiled = self._compiled
        return engine

    def output_shapes(self, dims: dict[str, int]) -> dict[str, tuple[int, ...]]:
        from bncheck.models import concrete
        from bncheck.references import output_axes, output_shapes_at

        key = tuple(dims.items())
        if key in self._exact:
            return self._exact[key]
        if not self.model.paddable:
            # A model file's shapes need not be linear in its dims (a strided convolution), so they
            # are traced at each distinct shape; such models compile per shape anyway.
            self._exact[key] = output_shapes_at(self.model, self.cfg, dims)
        else:
            if self._axes is None:
                self._axes = output_axes(self.model, self.cfg)
            self._exact[key] = {name: concrete(axes, dims) for name, axes in self._axes.items()}
        return self._exact[key]

    def bucket(self, dims: dict[str, int], dense_bytes: Callable[[dict[str, int]], int] | None = None) -> dict[str, int]:
        """The padded shape a draw is computed at: one bucket for the whole sweep where the model
        allows padding, or power-of-two buckets where a chunk of dense Jacobians at the largest
        shape (dense_bytes of it, per draw) would not fit the memory budget."""
        s = self.settings
        if not self.model.paddable or s.shape is not None:
            return dict(dims)
        largest = {name: hi for name, (_, hi) in s.sweep.items()}
        if dense_bytes is None or dense_bytes(largest) * CHUNK <= s.max_jacobian_mb * 2**20:
            return largest
        return {name: min(s.sweep[name][1], 1 << (v - 1).bit_length()) for name, v in dims.items()}

    def run_batched(
        self, fn: Callable, draws: list[Draw], bucket: dict[str, int], dtype, take: Callable, chunk: int = CHUNK,
        vectors: str | None = "directions",
    ) -> None:
        """Calls fn on `draws` padded to `bucket`, `chunk` at a time, and hands each draw its slice.

        Every call has `chunk` draws (the last one filled with copies), so a bucket compiles once
        however many draws a pass has: the kink redraws reuse the first pass's compile. `vectors`
        names the Draw field passed as fn's third argument: JVP directions, matrix-free probes, or
        None for none.
        """
        import jax

        shapes = {**self.model.inputs(bucket), **self.model.params(bucket)}
        outputs = self.output_shapes(bucket) if vectors == "probes" else {}
        chunk = max(1, chunk)

        def padded(key: str) -> tuple[int, ...]:
            kind, _, name = key.rpartition(":")
            return (JVP_DIRECTIONS, *(outputs[name] if kind == "u" else shapes[name]))

        for start in range(0, len(draws), chunk):
            part = draws[start : start + chunk]
            filled = part + [part[-1]] * (chunk - len(part))
            arrays = {n: _stack_padded([d.arrays[n] for d in filled], s).astype(dtype) for n, s in shapes.items()}
            masks = {n: np.stack([np.arange(b) < d.dims[n] for d in filled]).astype(dtype) for n, b in bucket.items()}
            directions = {
                key: _stack_padded([getattr(d, vectors)[key] for d in filled], padded(key)).astype(dtype)
                for key in (getattr(filled[0], vectors) if vectors else {})
            }
            out = jax.device_get(fn(arrays, masks, directions))
            for i, draw in enumerate(part):
                take(draw, jax.tree_util.tree_map(lambda a, i=i: a[i], out))


def _group(draws: list[Draw], key: Callable[[Draw], dict[str, int]]) -> dict[tuple, tuple[dict, list[Draw]]]:
    groups: dict[tuple, tuple[dict, list[Draw]]] = {}
    for draw in draws:
        bucket = key(draw)
        groups.setdefault(tuple(bucket.items()), (bucket, []))[1].append(draw)
    return groups


def run_sweep(
    model: Model,
    settings: Settings,
    derivation: Derivation,
    on_progress: Callable[[int, int], None] = lambda done, total: None,
    draws: list[Draw] | None = None,
    on_phase: Callable[[str], None] = lambda text: None,
) -> SweepResult:
    """Runs the sweep; `draws`, when given, are checked as they are (their `arrays` set, nothing
    sampled or redrawn): an exported case read back by `verify-values`.

    on_progress(done, total) follows the derivation's calls draw by draw; on_phase(text) names each
    longer step before it (compiles, references, redraws), so a progress display is never silent."""
    from bncheck import compile_cache

    compile_cache.enable()
    with full_precision():
        return _run_sweep(model, settings, derivation, on_progress, draws, on_phase)


@contextmanager
def full_precision():
    import jax

    jax.config.update("jax_enable_x64", True)
    # On GPUs the default float32 matmul is TF32: its 1e-3 rounding would corrupt a float32 run's ctx
    # and inflate the float32 reference behind the noise floor. Every entry point gets full precision.
    with jax.default_matmul_precision("highest"):
        yield


def _run_sweep(model: Model, settings: Settings, derivation: Derivation, on_progress: Callable,
               prepared: list[Draw] | None, on_phase: Callable[[str], None]) -> SweepResult:
    checks = list(derivation.checks.values())
    engine = Engine(model, settings)
    tallies = {c.name: Tally(c) for c in checks}
    draws = plan_draws(settings, None if model.paddable else SHAPE_POOL) if prepared is None else prepared
    # A float64 derivation never sees the float32 references, which only set each draw's noise floor;
    # and a floor only widens the allowance, so a draw that passes without one passes with it. A
    # float64 sweep computes them afterwards, for the draws that fail without them: most sweeps never
    # compile them. A float32 derivation's ctx is the float32 forward record, so there they come first.
    later = settings.dtype == "float64"
    redrawn = prepare(engine, checks, draws, tallies, sample=prepared is None, on_phase=on_phase, rough_later=later)
    on_phase("checking draws")
    waiting: list[Verdict] = []
    for done, draw in enumerate(draws, 1):
        waiting += check_draw(engine, derivation, checks, draw, tallies)
        on_progress(done, len(draws))
    if waiting:
        _settle(engine, checks, waiting, on_phase)
    return SweepResult(draws, tallies, redrawn, engine)


def _settle(engine: Engine, checks: list[Check], waiting: list[Verdict], on_phase: Callable[[str], None]) -> None:
    """Computes the float32 references of the draws whose verdicts wait for their noise floor, then
    tallies those verdicts in the order they were made."""
    plan, extract = _main_plan(engine, checks, fields=())
    needy = list({id(v.draw): v.draw for v in waiting if v.needs_floor}.values())
    if needy:
        on_phase(f"float32 references behind the noise floor, for {len(needy)} of the draws")
        chunk = min(CHUNK, len(needy))
        _references(engine, engine.compiled(plan, ("rough",)), needy, extract, lambda d: engine.bucket(d.dims),
                    lambda bucket: chunk)
    for verdict in waiting:
        verdict.settle(engine.settings.dtype)
    for draw in needy:
        draw.rough = {}


def _main_plan(engine: Engine, checks: list[Check], fields: tuple[str, ...] | None = None):
    """The Plan of the gradient and JVP checks' references (with the forward fields named; None for
    all), and extract(draw, out) -> the draw's own slices of one pass of them, keyed as Draw.refs is."""
    from bncheck.references import Plan

    model = engine.model
    plan = Plan(
        grads=tuple(sorted({c.target for c in checks if c.kind == "gradient"})),
        jvps=tuple(sorted({(c.output, c.target) for c in checks if c.kind == "jvp"})),
        fields=fields,
    )

    def extract(draw: Draw, out: dict) -> dict[str, np.ndarray]:
        shapes = engine.output_shapes(draw.dims)
        params = {**model.inputs(draw.dims), **model.params(draw.dims)}
        refs = {f"fwd.{name}": _cut(value, shapes[name]) for name, value in out["fwd"].items()}
        for c in checks:
            if c.kind == "gradient":
                refs[c.name] = _cut(out["grad"][c.target], params[c.target])
            elif c.kind == "jvp":
                refs[c.name] = _cut(out["jvp"][f"{c.output}|{c.target}"], (JVP_DIRECTIONS, *shapes[c.output]))
        return refs

    return plan, extract


def prepare(engine: Engine, checks: list[Check], draws: list[Draw], tallies: dict[str, Tally],
            sample: bool = True, on_phase: Callable[[str], None] = lambda text: None,
            rough_later: bool = False) -> int:
    """Samples the draws, redraws those on a kink, and computes every reference `checks` need.

    Returns how many redraws it took. Dense Jacobians over the budget are marked skipped in `tallies`.
    With sample=False the draws' arrays are used as they are, kink or not: a case someone computed on.
    With rough_later the gradient and JVP references come without their float32 pass (see _settle).
    """
    from bncheck.references import Plan

    model, settings = engine.model, engine.settings
    jvp_targets = {c.target for c in checks if c.kind == "jvp"}
    plan, extract = _main_plan(engine, checks)
    tol = TOLERANCES[settings.dtype]
    kink_field = model.kink_field(engine.cfg)

    def near_kink(smallest: float, largest: float) -> bool:
        return smallest < tol.kink * max(largest, 1.0)

    def on_kink(draw: Draw) -> bool:
        if kink_field is None or not sample:
            return False
        value = np.abs(draw.refs[f"fwd.{kink_field}"])
        return value.size > 0 and near_kink(value.min(), value.max())

    def buckets(draw: Draw) -> dict[str, int]:
        return engine.bucket(draw.dims)

    main = engine.compiled(plan, ("exact",) if rough_later else BOTH)
    chunk = min(CHUNK, len(draws))
    if sample:
        on_phase("drawing")
        for draw in draws:
            _sample(model, draw, settings.dtype, jvp_targets)
    on_phase("compiling and computing references")
    _references(engine, main, draws, extract, buckets, lambda bucket: chunk)
    pending = [d for d in draws if on_kink(d)]
    redrawn = 0
    if pending:
        on_phase(f"redrawing {len(pending)} draws off a relu kink")
        # Redraw rounds need only the extremes of the field that holds the kinks: a forward-only
        # function keeps them cheap when most draws of a large shape sit near a kink.
        forward = engine.compiled(Plan(fields=(), extremes=(kink_field,)), passes=None)
        redone = list(pending)
        kinked: set[int] = set()

        def take_kink(draw: Draw, out: dict) -> None:
            smallest, largest = out["extremes"][kink_field]
            (kinked.add if near_kink(float(smallest), float(largest)) else kinked.discard)(id(draw))

        while pending:
            for draw in pending:
                draw.attempt += 1
                redrawn += 1
                _sample(model, draw, settings.dtype, None)
            for bucket, group in _group(pending, buckets).values():
                engine.run_batched(forward, group, bucket, np.float64, take_kink, chunk, vectors=None)
            pending = [d for d in pending if id(d) in kinked and d.attempt < MAX_ATTEMPTS]
        for draw in redone:
            _sample(model, draw, settings.dtype, jvp_targets)
        _references(engine, main, redone, extract, buckets, lambda bucket: chunk)
    if any(c.kind == "jacobian" for c in checks):
        on_phase("dense Jacobian references")
    _dense_references(engine, checks, draws, tallies)
    return redrawn


def check_draw(engine: Engine, derivation: Derivation, checks: list[Check], draw: Draw,
               tallies: dict[str, Tally]) -> list[Verdict]:
    """Calls the derivation's `checks` on one prepared draw and tallies each against its reference.

    Returns the verdicts that wait for a noise floor (Verdict): draws that fail without one, where
    the float32 references are not computed yet."""
    ctx = make_ctx(engine, draw)
    waiting = []
    for c in checks:
        verdict = _check_one(derivation, c, tallies[c.name], draw, ctx, engine.settings, engine.invariants.get(c.name))
        if verdict is not None:
            waiting.append(verdict)
    # Keep memory flat on long sweeps: the tallies, and the verdicts that wait, hold what they need.
    draw.refs, draw.rough = {}, {}
    return waiting


def make_ctx(engine: Engine, draw: Draw) -> Ctx:
    """The ctx a derivation sees for a prepared draw, in the run's dtype."""
    dtype = engine.settings.dtype
    arrays = {name: a.astype(dtype) for name, a in draw.arrays.items()}
    # A float32 run's derivation sees the float32 forward record, as it would in its own code.
    record = draw.rough if dtype == "float32" else draw.refs
    fwd = {name.removeprefix("fwd."): v.astype(dtype) for name, v in record.items() if name.startswith("fwd.")}
    return Ctx({**arrays, **fwd, **draw.dims, **engine.cfg})


def _references(engine: Engine, fn: Callable, draws: list[Draw], extract: Callable, buckets: Callable,
                chunk_for: Callable[[dict[str, int]], int]) -> None:
    """The references fn's passes compute, by bucket: float64 into draw.refs, float32 into draw.rough.

    The float32 run of the same reference measures how much rounding this draw's computation
    amplifies: compare.noise_floor turns that into the allowance for the derivation's own rounding.
    """
    def take(draw: Draw, out: dict) -> None:
        if "exact" in out:
            draw.refs.update(extract(draw, out["exact"]))
        if "rough" in out:
            draw.rough.update(extract(draw, out["rough"]))

    for bucket, group in _group(draws, buckets).values():
        engine.run_batched(fn, group, bucket, np.float64, take, chunk_for(bucket))


def _dense_references(engine: Engine, checks: list[Check], draws: list[Draw], tallies: dict[str, Tally]) -> None:
    """Dense Jacobian references for draws within the memory budget; the rest are marked skipped.
    Jacobians over matrix_free.SHARE_OF_BUDGET of the budget are checked by products instead."""
    from bncheck import matrix_free
    from bncheck.references import Plan

    dense = [c for c in checks if c.kind == "jacobian"]
    if not dense:
        return
    budget = engine.settings.max_jacobian_mb * 2**20
    model = engine.model

    def nbytes(c: Check, dims: dict[str, int]) -> int:
        out = engine.output_shapes(dims)[c.output]
        return 8 * math.prod(out) * math.prod({**model.inputs(dims), **model.params(dims)}[c.target])

    # The checks each draw can afford, decided once: skipped ones get no reference and no call.
    within: dict[int, list[Check]] = {}
    by_products: dict[int, list[Check]] = {}
    for draw in draws:
        within[id(draw)], by_products[id(draw)] = [], []
        for c in dense:
            size = nbytes(c, draw.dims)
            if size <= budget * matrix_free.SHARE_OF_BUDGET:
                within[id(draw)].append(c)
                continue
            if size <= budget:
                by_products[id(draw)].append(c)
                continue
            tallies[c.name].skipped += 1
            tallies[c.name].skip_reason = (
                f"the dense Jacobian at {draw.case_id(engine.settings.dtype)} would take "
                f"{size / 2**20:,.0f} MB, over --max-jacobian-mb "
                f"{engine.settings.max_jacobian_mb:g}; give the differential form jvp_{c.output}_{c.target} instead"
            )
    fits = [draw for draw in draws if within[id(draw)]]
    _product_references(engine, [d for d in draws if by_products[id(d)]], by_products)
    threshold = engine.settings.max_jacobian_mb * matrix_free.SHARE_OF_BUDGET
    for c in dense:
        dense_draws = sum(c in within[id(d)] for d in draws)
        product_draws = sum(c in by_products[id(d)] for d in draws)
        if product_draws:
            tallies[c.name].reference = (
                f"jax.jacfwd, and {matrix_free.REFERENCE} for Jacobians over {threshold:g} MB"
                if dense_draws else matrix_free.REFERENCE
            )

    fn = engine.compiled(Plan(jacs=tuple(sorted({(c.output, c.target) for c in dense}))))

    def extract(draw: Draw, out: dict) -> dict[str, np.ndarray]:
        shapes = engine.output_shapes(draw.dims)
        params = {**model.inputs(draw.dims), **model.params(draw.dims)}
        refs = {}
        for c in within[id(draw)]:
            J = _cut(out["jac"][f"{c.output}|{c.target}"], shapes[c.output] + params[c.target])
            refs[c.name] = _vec_jacobian(J, len(shapes[c.output]))
        return refs

    def chunk_bytes(dims: dict[str, int]) -> int:
        # float64 and float32 copies of each Jacobian: 1.5 times the float64 size.
        return 3 * sum(nbytes(c, dims) for c in dense) // 2

    def buckets(draw: Draw) -> dict[str, int]:
        return engine.bucket(draw.dims, chunk_bytes)

    if fits:
        _references(engine, fn, fits, extract, buckets,
                    lambda bucket: max(1, min(CHUNK, len(fits), int(budget // max(chunk_bytes(bucket), 1)))))


def _product_references(engine: Engine, draws: list[Draw], checks_of: dict[int, list[Check]]) -> None:
    """jax.jvp and jax.vjp of each matrix-free check's output along the draw's probe vectors."""
    from bncheck import matrix_free
    from bncheck.references import Plan

    if not draws:
        return
    model, dtype = engine.model, engine.settings.dtype
    pairs = sorted({(c.output, c.target) for d in draws for c in checks_of[id(d)]})
    for d in draws:
        shapes, targets = engine.output_shapes(d.dims), {**model.inputs(d.dims), **model.params(d.dims)}
        for c in checks_of[id(d)]:
            matrix_free.sample(d, c.target, targets[c.target], c.output, shapes[c.output], JVP_DIRECTIONS, dtype)

    def extract(draw: Draw, out: dict) -> dict[str, dict[str, np.ndarray]]:
        shapes, targets = engine.output_shapes(draw.dims), {**model.inputs(draw.dims), **model.params(draw.dims)}
        refs = {}
        for c in checks_of[id(draw)]:
            products = out["products"][f"{c.output}|{c.target}"]
            refs[c.name] = {
                "Jv": matrix_free.vec_rows(_cut(products["Jv"], (JVP_DIRECTIONS, *shapes[c.output]))),
                "uJ": matrix_free.vec_rows(_cut(products["uJ"], (JVP_DIRECTIONS, *targets[c.target]))),
            }
        return refs

    def take(draw: Draw, out: dict) -> None:
        draw.refs.update(extract(draw, out["exact"]))
        draw.rough.update(extract(draw, out["rough"]))

    fn = engine.compiled(Plan(products=tuple(pairs)))
    chunk = min(CHUNK, len(draws))
    for bucket, group in _group(draws, lambda d: engine.bucket(d.dims)).values():
        engine.run_batched(fn, group, bucket, np.float64, take, chunk, vectors="probes")


def _user_traceback(err: BaseException, file: str) -> list[str]:
    """'FILE:LINE: code' of each frame in the user's own file, outermost first (else the innermost
    frame): bncheck's frames and the libraries' say nothing about the user's slip."""
    frames = user_frames(err, file) or traceback.extract_tb(err.__traceback__)[-1:]
    return [f"{frame.filename}:{frame.lineno}: {(frame.line or '').strip()}" for frame in frames]


def _rows(c: Check, value) -> list:
    """A JVP check's values or references one direction each, any other check's as a list of one."""
    return list(value) if c.kind == "jvp" else [value]


@dataclass
class Verdict:
    """One draw's comparisons for one check (one per JVP direction), before they are tallied: the
    worst stands for the draw. Without the draw's float32 reference they are made with no noise floor
    in their allowance, and one that fails waits for it."""

    tally: Tally
    draw: Draw
    results: list[Comparison]
    values: list
    refs: list[np.ndarray]
    floored: bool  # the allowances include the noise floor

    @property
    def passes(self) -> bool:
        return all(r.ok for r in self.results)

    @property
    def needs_floor(self) -> bool:
        return not (self.floored or self.passes) and all(r.problem is None for r in self.results)

    def settle(self, dtype: str) -> None:
        """Adds the noise floor where it is missing (from draw.rough) and tallies the verdict."""
        results = self.results
        if self.needs_floor:
            check = self.tally.check
            results = []
            for r, ref, q in zip(self.results, self.refs, _rows(check, self.draw.rough[check.name])):
                allowed = r.allowed + floor_of(rounding_spread(ref, q), dtype)
                results.append(replace(r, ok=r.abs_err <= allowed, allowed=allowed))
        # The worst of the directions stands for the draw.
        worst = max(range(len(results)), key=lambda i: (results[i].problem is not None, results[i].rel_err))
        self.tally.add(self.draw, results[worst], self.values[worst], self.refs[worst])
        if results[worst].problem is None:
            self.tally.vanishing += guards.vanishes(results)


def _check_one(
    derivation: Derivation, c: Check, tally: Tally, draw: Draw, ctx: Ctx, settings: Settings, invariant=None
) -> Verdict | None:
    """Checks one value and tallies it, or returns its Verdict where it waits for the noise floor."""
    if tally.error is not None or c.name not in draw.refs:
        # Already broken (a raise), or skipped at this size. A wrong shape is not: its values at
        # other draws tell diagnose which repair fits.
        return None
    fn = derivation.functions[c.name]
    try:
        with np.errstate(all="ignore"):
            if c.kind == "jvp":
                got = [fn(ctx, V.astype(settings.dtype, copy=False)) for V in draw.directions[c.target]]
            else:
                got = fn(ctx)
    except Exception as err:  # a derivation's bug must fail its own check, not the run
        tally.ran += 1
        tally.error = (draw, f"{type(err).__name__}: {err}", _user_traceback(err, derivation.file))
        return None
    ref, rough = draw.refs[c.name], draw.rough.get(c.name)
    if isinstance(ref, dict):
        v, u = (vec_rows(draw.probes[f"{side}:{name}"]) for side, name in (("v", c.target), ("u", c.output)))
        result, (shown, want) = compare_products(got, ref, rough, v, u, settings.rtol, settings.atol, settings.dtype)
        tally.add(draw, result, shown, want)
        return None
    values, refs = _rows(c, got), _rows(c, ref)
    floors = [0.0] * len(refs) if rough is None else [
        floor_of(rounding_spread(r, q), settings.dtype) for r, q in zip(refs, _rows(c, rough))
    ]
    if c.kind == "jvp":
        results = compare_rows(got, ref, settings.rtol, settings.atol, floors)
    else:
        results = [compare(got, ref, settings.rtol, settings.atol, floors[0])]
    if all(r.problem is None for r in results):
        guards.check_invariant(tally, draw, ctx, got, invariant)
    verdict = Verdict(tally, draw, results, values, refs, floored=rough is not None)
    if verdict.floored or verdict.passes:
        verdict.settle(settings.dtype)
        return None
    return verdict
