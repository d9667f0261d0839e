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
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from bncheck.compare import TOLERANCES, Comparison, compare, noise_floor
from bncheck.loader import Check, Derivation, user_frame
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
    first_problem: tuple[Draw, Comparison] | None = None
    error: tuple[Draw, str, str] | None = None  # draw, "Type: message", "file:line"
    samples: list[tuple[Draw, np.ndarray, np.ndarray]] = field(default_factory=list)
    # One per compared draw, for error distributions: max|got - ref| / max|ref|, and the fraction of
    # the allowed error it used.
    rel_errors: list[float] = field(default_factory=list)
    used: list[float] = field(default_factory=list)

    def add(self, draw: Draw, result: Comparison, got, ref: np.ndarray) -> None:
        self.ran += 1
        if result.problem is None:
            self.rel_errors.append(result.rel_err)
            self.used.append(result.abs_err / result.allowed if result.allowed > 0 else float(result.abs_err > 0))
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
            if len(self.samples) < FAILURE_SAMPLES:
                self.samples.append((draw, got, ref))


def _overshoot(result: Comparison) -> float:
    return result.abs_err / result.allowed if result.allowed > 0 else np.inf


@dataclass
class SweepResult:
    draws: list[Draw]
    tallies: dict[str, Tally]
    redrawn: int


def plan_draws(settings: Settings) -> list[Draw]:
    draws = []
    for trial in range(settings.trials):
        seed = settings.seed + trial
        if settings.shape is not None:
            dims = dict(settings.shape)
        else:
            rng = np.random.default_rng([seed, 0])
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
    draw.arrays = {name: rounded(rng.standard_normal(shape)) for name, shape in shapes.items()}
    if jvp_targets is None:
        return
    rng = np.random.default_rng([draw.seed, 2, draw.attempt])
    draw.directions = {
        t: rounded(rng.standard_normal((JVP_DIRECTIONS, *shapes[t]))) for t in sorted(jvp_targets)
    }


def _stack_padded(arrays: list[np.ndarray], shape: tuple[int, ...]) -> np.ndarray:
    """The arrays zero-padded to `shape` and stacked: one allocation, not one np.pad per array."""
    out = np.zeros((len(arrays), *shape))
    for i, a in enumerate(arrays):
        out[(i, *(slice(0, s) for s in a.shape))] = a
    return out


def _cut(array: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
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
        self.cfg = {name: getattr(settings, name) for name in model.options}
        self._axes: dict[str, tuple[str | int, ...]] | None = None

    def output_shapes(self, dims: dict[str, int]) -> dict[str, tuple[int, ...]]:
        from bncheck.models import concrete
        from bncheck.references import output_axes

        if self._axes is None:
            self._axes = output_axes(self.model, self.cfg)
        return {name: concrete(axes, dims) for name, axes in self._axes.items()}

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
        self, fn: Callable, draws: list[Draw], bucket: dict[str, int], take: Callable, chunk: int, dtype=np.float64,
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
        outputs = self.output_shapes(bucket)

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
                take(draw, jax.tree_util.tree_map(lambda a: a[i], out))


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
    every_floor: bool = False,
    on_phase: Callable[[str], None] = lambda text: None,
) -> SweepResult:
    """on_progress(done, total) follows the derivation's calls draw by draw; on_phase(text) names each
    longer step before it (compiles, references, redraws), so a progress display is never silent.

    every_floor computes the float32 reference behind the noise floor for every draw; by default a
    float64 run computes it only for draws that fail without it, which no larger allowance can change
    for the others (their Comparison.allowed then leaves the floor out)."""
    import jax

    from bncheck import compile_cache

    jax.config.update("jax_enable_x64", True)
    compile_cache.enable()
    # On GPUs the default float32 matmul is TF32: its 1e-3 rounding would corrupt a float32 run's ctx
    # and inflate the float32 reference behind the noise floor. Every entry point gets full precision.
    with jax.default_matmul_precision("highest"):
        return _run_sweep(model, settings, derivation, on_progress, every_floor, on_phase)


def _run_sweep(
    model: Model, settings: Settings, derivation: Derivation, on_progress: Callable, every_floor: bool,
    on_phase: Callable[[str], None],
) -> SweepResult:
    from bncheck.references import Plan, build

    checks = list(derivation.checks.values())
    jvp_targets = {c.target for c in checks if c.kind == "jvp"}
    plan = Plan(
        grads=tuple(sorted({c.target for c in checks if c.kind == "gradient"})),
        jvps=tuple(sorted({(c.output, c.target) for c in checks if c.kind == "jvp"})),
    )
    engine = Engine(model, settings)
    tol = TOLERANCES[settings.dtype]
    kink_field = model.kink_field(settings)
    tallies = {c.name: Tally(c) for c in checks}
    draws = plan_draws(settings)

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

    def on_kink(draw: Draw) -> bool:
        if kink_field is None:
            return False
        value = np.abs(draw.refs[f"fwd.{kink_field}"])
        return value.size > 0 and _near_kink(value.min(), value.max())

    def _near_kink(smallest: float, largest: float) -> bool:
        return smallest < tol.kink * max(largest, 1.0)

    # A float32 run's ctx is the float32 forward record, so it needs the float32 pass for every draw.
    rough = every_floor or settings.dtype == "float32"
    largest = dict(settings.shape) if settings.shape is not None else {n: hi for n, (_, hi) in settings.sweep.items()}
    optimize = math.prod(largest.values()) >= QUICK_COMPILE_BELOW
    main = build(model, engine.cfg, plan, rough=rough, optimize=optimize)
    chunk = min(CHUNK, len(draws))

    def buckets(draw: Draw) -> dict[str, int]:
        return engine.bucket(draw.dims)

    on_phase("drawing")
    for draw in draws:
        _sample(model, draw, settings.dtype, jvp_targets)
    on_phase("compiling and computing references")
    _references(engine, main, draws, extract, buckets, lambda bucket: chunk, rough)
    pending = [d for d in draws if on_kink(d)]
    redrawn = 0
    if pending:
        on_phase(f"redrawing {len(pending)} draws off a relu kink")
        # Redraw rounds need only the extremes of the field that holds the kinks: a forward-only
        # function keeps them cheap when most draws of a large shape sit near a kink.
        forward = build(model, engine.cfg, Plan(fields=(), extremes=(kink_field,)), optimize=optimize)
        redone = list(pending)
        kinked: set[int] = set()

        def take_kink(draw: Draw, out: dict) -> None:
            smallest, largest = out["extremes"][kink_field]
            (kinked.add if _near_kink(float(smallest), float(largest)) else kinked.discard)(id(draw))

        while pending:
            for draw in pending:
                draw.attempt += 1
                redrawn += 1
                _sample(model, draw, settings.dtype, None)
            for bucket, group in _group(pending, buckets).values():
                engine.run_batched(forward, group, bucket, take_kink, chunk, vectors=None)
            pending = [d for d in pending if id(d) in kinked and d.attempt < MAX_ATTEMPTS]
        for draw in redone:
            _sample(model, draw, settings.dtype, jvp_targets)
        _references(engine, main, redone, extract, buckets, lambda bucket: chunk, rough)
    if any(c.kind == "jacobian" for c in checks):
        on_phase("dense Jacobian references")
    _dense_references(engine, checks, draws, tallies)

    def rough_references(draw: Draw) -> None:
        """The float32 pass for one draw that needs its noise floor (one compile, at batch size 1)."""
        def take(d: Draw, out: dict) -> None:
            d.rough.update({k: v for k, v in extract(d, out).items() if k not in d.rough})

        engine.run_batched(main, [draw], buckets(draw), take, 1, np.float32)

    on_phase("checking draws")
    for done, draw in enumerate(draws, 1):
        arrays = {name: a.astype(settings.dtype) for name, a in draw.arrays.items()}
        # A float32 run's derivation sees the float32 forward record, as it would in its own code.
        record = draw.rough if settings.dtype == "float32" else draw.refs
        fwd = {name.removeprefix("fwd."): v.astype(settings.dtype) for name, v in record.items() if name.startswith("fwd.")}
        ctx = Ctx({**arrays, **fwd, **draw.dims, **engine.cfg})
        _check_draw(derivation, checks, tallies, draw, ctx, settings, rough_references)
        # Keep memory flat on long sweeps: the tallies hold what they need.
        draw.refs, draw.rough = {}, {}
        on_progress(done, len(draws))
    return SweepResult(draws, tallies, redrawn)


def _references(engine: Engine, fn: Callable, draws: list[Draw], extract: Callable, buckets: Callable,
                chunk_for: Callable[[dict[str, int]], int], rough: bool) -> None:
    """The float64 references, by bucket, and with rough (fn built with rough=True) the same computed
    in float32.

    The float32 run of the same reference measures how much rounding this draw's computation
    amplifies: compare.noise_floor turns that into the allowance for the derivation's own rounding.
    """
    def take(draw: Draw, out: dict) -> None:
        draw.refs.update(extract(draw, out["exact"] if rough else out))
        if rough:
            draw.rough.update(extract(draw, out["rough"]))

    for bucket, group in _group(draws, buckets).values():
        engine.run_batched(fn, group, bucket, take, chunk_for(bucket))


def _dense_references(engine: Engine, checks: list[Check], draws: list[Draw], tallies: dict[str, Tally]) -> None:
    """Dense Jacobian references for draws within the memory budget; the rest are marked skipped.
    Jacobians over matrix_free.SHARE_OF_BUDGET of the budget are checked by products instead."""
    from bncheck import matrix_free
    from bncheck.references import Plan, build

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

    fn = build(model, engine.cfg, Plan(jacs=tuple(sorted({(c.output, c.target) for c in dense}))), rough=True)

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
                    lambda bucket: max(1, min(CHUNK, len(fits), int(budget // max(chunk_bytes(bucket), 1)))), rough=True)


def _product_references(engine: Engine, draws: list[Draw], checks_of: dict[int, list[Check]]) -> None:
    """jax.jvp and jax.vjp of each matrix-free check's output along the draw's probe vectors."""
    from bncheck import matrix_free
    from bncheck.references import Plan, build

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

    fn = build(model, engine.cfg, Plan(products=tuple(pairs)), rough=True)
    chunk = min(CHUNK, len(draws))
    for bucket, group in _group(draws, lambda d: engine.bucket(d.dims)).values():
        engine.run_batched(fn, group, bucket, take, chunk, vectors="probes")


def _user_line(err: BaseException, file: str) -> str:
    """'FILE:LINE: code' of the user's own line that raised (else of the innermost frame)."""
    frame = user_frame(err, file) or traceback.extract_tb(err.__traceback__)[-1]
    return f"{frame.filename}:{frame.lineno}: {(frame.line or '').strip()}"


def _check_draw(derivation: Derivation, checks: list[Check], tallies: dict[str, Tally], draw: Draw, ctx: Ctx,
                settings: Settings, rough_references: Callable[[Draw], None]) -> None:
    """Calls every check on one draw and tallies them in order. A mismatch that fails without the
    noise floor is compared again with it, after the draw's float32 reference is computed."""
    results = {}
    for c in checks:
        tally = tallies[c.name]
        if tally.error is not None or tally.first_problem is not None or c.name not in draw.refs:
            continue  # already broken beyond comparison, or skipped at this size
        got = _call(derivation, c, draw, ctx, settings.dtype)
        if isinstance(got, _Raised):
            results[c.name] = got
            continue
        results[c.name] = (got, _compare(c, got, draw, settings))
    if any(not isinstance(r, _Raised) and _needs_floor(r[1]) and name not in draw.rough for name, r in results.items()):
        rough_references(draw)
    for c in checks:
        if c.name not in results:
            continue
        tally, outcome = tallies[c.name], results[c.name]
        if isinstance(outcome, _Raised):
            tally.ran += 1
            tally.error = (draw, outcome.message, outcome.where)
            continue
        got, (result, ref0) = outcome
        if _needs_floor((result, ref0)):
            result, ref0 = _compare(c, got, draw, settings)
        tally.add(draw, result, *ref0)


@dataclass
class _Raised:
    message: str  # "Type: message"
    where: str  # "file:line: code"


def _call(derivation: Derivation, c: Check, draw: Draw, ctx: Ctx, dtype: str):
    fn = derivation.functions[c.name]
    try:
        with np.errstate(all="ignore"):
            if c.kind == "jvp":
                return [fn(ctx, V.astype(dtype)) for V in draw.directions[c.target]]
            return fn(ctx)
    except Exception as err:  # a derivation's bug must fail its own check, not the run
        return _Raised(f"{type(err).__name__}: {err}", _user_line(err, derivation.file))


def _needs_floor(outcome: tuple[Comparison, tuple]) -> bool:
    result = outcome[0]
    return not result.ok and result.problem is None


def _compare(c: Check, got, draw: Draw, settings: Settings) -> tuple[Comparison, tuple]:
    """(the comparison, (got, ref) of the direction that stands for the draw). Without the draw's
    float32 reference the noise floor is left out: a draw that passes without it passes with it."""
    ref, rough = draw.refs[c.name], draw.rough.get(c.name)
    if isinstance(ref, dict):
        v, u = (vec_rows(draw.probes[f"{side}:{name}"]) for side, name in (("v", c.target), ("u", c.output)))
        return compare_products(got, ref, rough, v, u, settings.rtol, settings.atol, settings.dtype)
    if c.kind == "jvp":
        floor = [0.0] * len(ref) if rough is None else [noise_floor(r, q, settings.dtype) for r, q in zip(ref, rough)]
        # The worst of the directions stands for the draw.
        results = [compare(g, r, settings.rtol, settings.atol, f) for g, r, f in zip(got, ref, floor)]
        worst = max(range(len(results)), key=lambda i: (results[i].problem is not None, results[i].rel_err))
        return results[worst], (got[worst], ref[worst])
    floor = 0.0 if rough is None else noise_floor(ref, rough, settings.dtype)
    return compare(got, ref, settings.rtol, settings.atol, floor), (got, ref)
