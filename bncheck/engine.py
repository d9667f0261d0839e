"""The one door to JAX: where a run's references are computed, on which device, in what precision.

`scope(device)` sets, for the length of a run, the device JAX computes on, float64 (jax_enable_x64),
full-precision matrix products (never TF32, whose rounding would corrupt a float32 run's ctx and the
float32 reference behind the noise floor) and the persistent compilation cache, and restores the
caller's settings on exit. `choose_device` picks that device for `--device auto` and `gpu`: a GPU
only where a sweep's draws are large enough for it to pay. An `Engine` computes, for draws of one
model and settings, everything the sweep and the steps after it compare against: each through a
program of bncheck.references, jitted once per plan, the draws zero-padded to a bucket shape and
vmapped, a chunk of draws per call, the chunk sharded over every local device of the kind in use (a
mesh over the draw axis; --max-memory-mb holds on each). A derivation that JAX can trace runs beside
its references on an accelerator (`derived`): there only each draw's error summary comes back, and
the values of the draws a report shows. Nothing else in bncheck runs a JAX program.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from bncheck.draws import JVP_DIRECTIONS, STREAMS, Draw, array_shapes
from bncheck.errors import BncheckError
from bncheck.models import Check, Model

CHUNK = 32  # draws per compiled call and device: big enough to amortise dispatch, small enough for memory
# Below this many entries in the product of a sweep's largest dimensions, references compile quickly
# rather than run fast (references.QUICK_COMPILE): (64, 32, 16) is under it, (256, 64, 64) over.
QUICK_COMPILE_BELOW = 2**18
# What one draw holds besides its arrays and references, as a multiple of them: the padded inputs on
# the device, XLA's temporaries (the forward record again for each derivative), the host copies and
# the derivation's own values. Measured, roughly: a sweep at (4096, 512, 256) peaks at about this.
WORKING_SET = 4
# A dense Jacobian reference larger than this share of --max-jacobian-mb is checked by products.
PRODUCTS_SHARE = 1 / 16
# A GPU pays for a sweep whose largest draw holds at least this much at once (draw_bytes): below it,
# launching its many small kernels, compiling for it and moving each chunk across costs more than it
# saves. Measured on an H200 machine (issue 15): the default sweep (a draw of at most 0.3 MB) took
# 5.1 s on the GPU and 2.3 s on its CPU, and 1,000 draws at (64, 32, 16) (0.5 MB) 5.6 s and 3.3 s;
# 200 draws at (4096, 512, 256) (430 MB) are many times faster there. 16 MB, (1024, 256, 128), sits
# between, unmeasured.
GPU_PAYS_BYTES = 16 * 2**20


def device(name: str):
    """The first device of kind `name` JAX sees, or a BncheckError saying what it sees instead."""
    if not _visible(name):
        import jax

        seen = ", ".join(sorted({d.platform for d in jax.devices()}))
        raise BncheckError(
            f"device: --device {name} was asked for, but JAX sees no {name.upper()} (it sees: {seen}); "
            f"install a CUDA build of jaxlib, or use --device cpu"
        )
    import jax

    # This process's own: in a run over several processes, jax.devices lists every process's devices.
    return jax.local_devices(backend=name)[0]


def _visible(name: str) -> bool:
    import jax

    try:
        return bool(jax.devices(name))
    except RuntimeError:
        return False


def gpu_pays(draw_bytes: int) -> bool:
    """Whether a sweep whose largest draw holds `draw_bytes` at once runs faster on a GPU."""
    return draw_bytes >= GPU_PAYS_BYTES


def choose_device(model: Model, settings) -> str:
    """The device a run computes on: cpu when asked; for gpu (which must be there) and auto (a GPU
    when there is one), the GPU only where the sweep's largest draw is large enough for it to pay
    (gpu_pays), so that asking for the GPU never makes a sweep slower than the CPU would."""
    from bncheck import jaxsettings

    if settings.device == "cpu":
        return "cpu"
    if settings.device == "gpu":
        device("gpu")  # refused when there is none
    elif not _visible("gpu"):
        return "cpu"
    with jaxsettings.float64():
        engine = Engine(model, settings)
        checks = [c for c in map(model.check, model.checks) if c is not None]
        need = engine.draw_bytes(checks, engine.bucket(engine.largest))
    return "gpu" if gpu_pays(need) else "cpu"


# How long a process waits for the others to join a run over several, in seconds (JAX's own default).
# Past it JAX ends the process itself (a fatal error, exit 134): it does not raise.
JOIN_SECONDS = 300


def join(settings) -> tuple[int, int]:
    """This process's place in the run: (its number, how many processes there are). A run over
    several (--processes) joins them through jax.distributed first, before JAX has computed anything
    (JAX requires that), with gloo's collectives on a CPU, which carry the exchange of the processes'
    tallies (Engine.gather). A process joins once; a second run in it (each value of a swept option)
    finds the others joined already."""
    if not settings.processes or settings.processes == 1:
        return 0, 1
    import jax

    where = f"process {settings.process_id} of {settings.processes}"
    if jax.distributed.is_initialized():
        if jax.process_count() != settings.processes:
            raise BncheckError(f"processes: {where} was asked for, but this process already joined a run of "
                               f"{jax.process_count()}")
        return jax.process_index(), jax.process_count()
    try:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(settings.coordinator, settings.processes, settings.process_id,
                                   initialization_timeout=JOIN_SECONDS)
    except Exception as err:  # noqa: BLE001 - JAX raises RuntimeError, ValueError or its own runtime error
        from bncheck.text import exception_text

        first = exception_text(err).splitlines()[0]
        raise BncheckError(f"coordinator: {where} could not join the others at {settings.coordinator}: "
                           f"{first}") from None
    return jax.process_index(), jax.process_count()


@contextmanager
def scope(device_name: str = "cpu") -> Iterator[None]:
    """JAX set up for a run (see the module docstring), and as it was again afterwards. `auto` is
    a GPU when JAX sees one (choose_device decides by size before a sweep)."""
    import jax

    from bncheck import jaxsettings

    if device_name == "auto":
        device_name = "gpu" if _visible("gpu") else "cpu"
    jaxsettings.enable()
    with jaxsettings.float64(), jax.default_device(device(device_name)), jax.default_matmul_precision("highest"):
        yield


class Rows:
    """One draw's rows (JVP directions; one for a gradient) of a value the engine left on the device:
    each row comes to the host, as a float64 array, only when it is read."""

    def __init__(self, values, draw: int):
        self.values, self.draw = values, draw

    def __len__(self) -> int:
        return self.values.shape[1]

    def __getitem__(self, row: int) -> np.ndarray:
        if not -len(self) <= row < len(self):
            raise IndexError(row)
        return np.asarray(self.values[self.draw, row], dtype=np.float64)


def cut(array: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """A draw's own entries of an array computed at its bucket shape."""
    if array.shape == shape:  # unpadded: a fixed-shape sweep's every draw
        return array
    return array[tuple(slice(0, s) for s in shape)]


def vec_jacobian(J: np.ndarray, out_ndim: int) -> np.ndarray:
    """(*out, *target) -> ∂vec(out)/∂vec(target)ᵀ with column-major vec on both sides."""
    axes = list(range(out_ndim))[::-1] + list(range(out_ndim, J.ndim))[::-1]
    rows = math.prod(J.shape[:out_ndim])
    return J.transpose(axes).reshape(rows, -1)


def vec_rows(stack: np.ndarray) -> np.ndarray:
    """(D, *shape) -> (D, prod(shape)): the column-major vec of each of the D arrays."""
    return np.stack([a.reshape(-1, order="F") for a in stack])


def group(draws: list[Draw], key: Callable[[Draw], dict[str, int]]) -> list[tuple[dict[str, int], list[Draw]]]:
    """The draws grouped by bucket shape, in order of first appearance."""
    groups: dict[tuple, tuple[dict, list[Draw]]] = {}
    for draw in draws:
        bucket = key(draw)
        groups.setdefault(tuple(bucket.items()), (bucket, []))[1].append(draw)
    return list(groups.values())


def _stack_padded(arrays: list[np.ndarray | None], shape: tuple[int, ...], dtype) -> np.ndarray:
    """The arrays zero-padded to `shape` and stacked (None: all zeros): one allocation, not one np.pad
    per array."""
    out = np.zeros((len(arrays), *shape), dtype=dtype)
    for i, a in enumerate(arrays):
        if a is not None:
            out[(i, *(slice(0, s) for s in a.shape))] = a
    return out


@dataclass
class Record:
    """What the engine computed for one draw, at the draw's own shape."""

    forward: dict[str, np.ndarray] = field(default_factory=dict)  # the float64 forward record
    exact: dict[str, Any] = field(default_factory=dict)  # check name -> float64 reference
    # The same in float32 (the forward record a float32 derivation sees, and the references whose
    # distance from the exact ones is the float32 noise floor); and per check, the references
    # recomputed with rounding noise (references.with_rounding_noise), NOISE_SAMPLES of them.
    rough_forward: dict[str, np.ndarray] = field(default_factory=dict)
    rough: dict[str, Any] = field(default_factory=dict)
    noisy: dict[str, Any] = field(default_factory=dict)
    # Per check, {pass: max|that pass's reference − the exact one| per row}, where the engine measured
    # it on the device instead of bringing the references back (derived).
    spreads: dict[str, dict[str, list[float]]] = field(default_factory=dict)


class Engine:
    """References for the draws of one model under one set of settings (see the module docstring)."""

    def __init__(self, model: Model, settings):
        self.model = model
        self.settings = settings
        self.cfg = settings.model_options(model)
        self._axes: dict[str, tuple[str | int, ...]] | None = None
        self._shapes: dict[tuple, dict[str, tuple[int, ...]]] = {}
        self._compiled: dict[Any, Callable] = {}
        self.largest = dict(settings.shape) if settings.shape is not None else {n: hi for n, (_, hi) in settings.sweep.items()}
        self.optimize = math.prod(self.largest.values()) >= QUICK_COMPILE_BELOW
        self.budget = settings.max_memory_mb * 2**20
        self._devices: list | None = None
        # Whether a derivation that JAX can trace runs beside its references (derived) rather than on
        # the host: on an accelerator, where that spares bringing every draw's record across. Tests set
        # it to exercise that path on the CPU.
        self.derive_on_device = self.kind != "cpu"
        self.on_device: set[str] = set()  # the checks whose functions ran there, so far

    # ---- devices -----------------------------------------------------------------------------

    @property
    def kind(self) -> str:
        """The kind of device the run computes on (the scope's default device): cpu or gpu."""
        import jax

        chosen = jax.config.jax_default_device
        return chosen.platform if chosen is not None and not isinstance(chosen, str) else jax.default_backend()

    @property
    def devices(self) -> list:
        """Every local device of that kind: each chunk of draws is sharded over them."""
        if self._devices is None:
            import jax

            self._devices = list(jax.local_devices(backend=self.kind))
        return self._devices

    def gather(self, payload: bytes) -> list[bytes]:
        """Every process's `payload`, in process order, on every process (a run over several: the
        processes' tallies, bncheck.hosts): their lengths first, then the bytes, padded to the longest."""
        import jax
        from jax.experimental import multihost_utils

        if jax.process_count() == 1:
            return [payload]
        lengths = np.asarray(multihost_utils.process_allgather(np.array([len(payload)], np.int64))).reshape(-1)
        padded = np.zeros(int(lengths.max()), np.uint8)
        padded[: len(payload)] = np.frombuffer(payload, np.uint8)
        every = np.asarray(multihost_utils.process_allgather(padded))
        return [every[i, : int(n)].tobytes() for i, n in enumerate(lengths)]

    # ---- shapes and memory -------------------------------------------------------------------

    def arrays(self, dims: dict[str, int]) -> dict[str, tuple[int, ...]]:
        return array_shapes(self.model, dims)

    def output_shapes(self, dims: dict[str, int]) -> dict[str, tuple[int, ...]]:
        """The forward record's shapes at `dims`."""
        from bncheck.models import concrete
        from bncheck.references import output_axes, output_shapes_at

        key = tuple(dims.items())
        if key not in self._shapes:
            if not self.model.paddable:
                # A model file's shapes need not be linear in its dims (a strided convolution), so they
                # are traced at each distinct shape; such models compile per shape anyway.
                self._shapes[key] = output_shapes_at(self.model, self.cfg, dims)
            else:
                if self._axes is None:
                    self._axes = output_axes(self.model, self.cfg)
                self._shapes[key] = {name: concrete(axes, dims) for name, axes in self._axes.items()}
        return self._shapes[key]

    def target_shape(self, c: Check, dims: dict[str, int]) -> tuple[int, ...]:
        return self.arrays(dims)[c.target]

    def value_shape(self, c: Check, dims: dict[str, int]) -> tuple[int, ...]:
        """The shape a check's function must return at `dims` (for a jvp_ check, one direction's)."""
        if c.kind == "gradient":
            return self.target_shape(c, dims)
        out = self.output_shapes(dims)[c.output]
        if c.kind == "jvp":
            return out
        return (math.prod(out), math.prod(self.target_shape(c, dims)))

    def dense_bytes(self, c: Check, dims: dict[str, int]) -> int:
        """A dense Jacobian reference's size in float64 at `dims`."""
        return 8 * math.prod(self.output_shapes(dims)[c.output]) * math.prod(self.target_shape(c, dims))

    def draw_bytes(self, checks: list[Check], dims: dict[str, int]) -> int:
        """About what one draw of these checks (dense Jacobians aside) holds at once, at `dims`."""
        arrays = sum(map(math.prod, self.arrays(dims).values()))
        outputs = self.output_shapes(dims)
        directions = sum(JVP_DIRECTIONS * math.prod(self.arrays(dims)[t]) for t in {c.target for c in checks if c.kind == "jvp"})
        refs = sum(
            math.prod(self.target_shape(c, dims)) if c.kind == "gradient" else JVP_DIRECTIONS * math.prod(outputs[c.output])
            for c in checks if c.kind != "jacobian"
        )
        record = sum(map(math.prod, outputs.values()))
        return 8 * WORKING_SET * (arrays + directions + record + refs)

    def chunk(self, checks: list[Check], draws: int) -> int:
        """Draws per compiled call: CHUNK a device, fewer for a short sweep, and on each device as many
        as fit the memory budget at the sweep's largest bucket. Refuses a sweep whose single draw
        would not fit."""
        need = self.draw_bytes(checks, self.bucket(self.largest))
        if need > self.budget:
            shape = ",".join(f"{k}={v}" for k, v in self.largest.items())
            raise BncheckError(
                f"max_memory_mb: one draw at {shape} needs about {need / 2**20:,.0f} MB, over --max-memory-mb "
                f"{self.settings.max_memory_mb:g}; check smaller shapes, or raise --max-memory-mb"
            )
        per_device = min(CHUNK, int(self.budget // max(need, 1)))
        return max(1, min(draws, per_device * len(self.devices)))

    def bucket(self, dims: dict[str, int], dense_bytes: Callable[[dict[str, int]], int] | None = None,
               chunk: int = CHUNK) -> dict[str, int]:
        """The padded shape a draw is computed at: one bucket for the whole sweep where the model
        allows padding, or power-of-two buckets where a chunk of dense Jacobians at the largest
        shape (dense_bytes of it, per draw) would not fit the Jacobian budget."""
        s = self.settings
        if not self.model.paddable or s.shape is not None:
            return dict(dims)
        if dense_bytes is None or dense_bytes(self.largest) * chunk <= s.max_jacobian_mb * 2**20:
            return dict(self.largest)
        return {name: min(self.largest[name], 1 << (v - 1).bit_length()) for name, v in dims.items()}

    # ---- running programs --------------------------------------------------------------------

    def compiled(self, key: Any, build: Callable[[], Callable]) -> Callable:
        """The program `build` makes for `key`, built once per engine (jit keeps a compile per shape)."""
        if key not in self._compiled:
            self._compiled[key] = build()
        return self._compiled[key]

    def compiled_passes(self) -> set[tuple[str, ...]]:
        """The pass combinations of every reference program built so far (for tests and benchmarks)."""
        return {key[2] for key in self._compiled if key[0] == "refs" and key[2] is not None}

    def _build(self, plan, passes: tuple[str, ...] | None) -> Callable:
        from bncheck.compare import ROUGH
        from bncheck.references import build

        return build(self.model, self.cfg, plan, passes, self.optimize, ROUGH[self.settings.dtype])

    def _placed(self, args: list) -> list:
        """A call's arguments sharded over the devices along the draw axis (as they are on one)."""
        if len(self.devices) == 1:
            return args
        import jax
        from jax.sharding import Mesh, NamedSharding, PartitionSpec

        mesh = Mesh(np.array(self.devices), ("draws",))
        return jax.device_put(args, NamedSharding(mesh, PartitionSpec("draws")))

    def run(self, fn: Callable, draws: list[Draw], bucket: dict[str, int], take: Callable[[Draw, dict], None],
            chunk: int, vectors: str | None = "directions", keys: bool = False, dtype=np.float64,
            vector_keys: tuple[str, ...] | None = None, lazy: tuple[str, ...] = ()) -> None:
        """Calls fn on `draws` padded to `bucket`, `chunk` at a time, and hands each draw its slice.

        Every call has `chunk` draws (the last one filled with copies; rounded up to a multiple of
        the devices, which each take an equal share), so a bucket compiles once however many draws a
        pass has. `vectors` names the Draw field passed as fn's third argument: JVP directions,
        matrix-free probes, or None for none, and `vector_keys` the entries fn reads (None: the first
        draw's); a draw without one gets zeros there, whose results fn computes and nobody reads. With
        `keys`, fn also gets one PRNG key a draw (from the draw's noise stream). The entries of fn's
        result named in `lazy` stay on the device: each draw's share of them is handed over as Rows
        (see derived).
        """
        import jax

        shapes = self.arrays(bucket)
        outputs = self.output_shapes(bucket) if vectors == "probes" else {}
        devices = len(self.devices)
        chunk = -(-max(1, chunk) // devices) * devices

        def padded(key: str) -> tuple[int, ...]:
            kind, _, name = key.rpartition(":")
            return (JVP_DIRECTIONS, *(outputs[name] if kind == "u" else shapes[name]))

        for start in range(0, len(draws), chunk):
            part = draws[start : start + chunk]
            filled = part + [part[-1]] * (chunk - len(part))
            arrays = {n: _stack_padded([d.arrays[n] for d in filled], s, dtype) for n, s in shapes.items()}
            masks = {n: np.stack([np.arange(b) < d.dims[n] for d in filled]).astype(dtype) for n, b in bucket.items()}
            extra = {
                key: _stack_padded([getattr(d, vectors).get(key) for d in filled], padded(key), dtype)
                for key in (vector_keys if vector_keys is not None else getattr(filled[0], vectors) if vectors else ())
            }
            args = [arrays, masks, extra]
            if keys:
                args.append(np.stack([np.asarray(jax.random.PRNGKey(noise_key(d.seed))) for d in filled]))
            out = fn(*self._placed(args))
            kept = {key: out.pop(key) for key in lazy}
            out = jax.device_get(out)
            for i, draw in enumerate(part):
                mine = jax.tree_util.tree_map(lambda a, i=i: a[i], out)
                mine.update({key: {name: Rows(a, i) for name, a in values.items()} for key, values in kept.items()})
                take(draw, mine)

    def extract(self, c: Check, out: dict, dims: dict[str, int]) -> Any:
        """A check's reference at a draw's own shape, from one pass of a reference program: the one
        place that knows where each kind of check finds its reference."""
        outputs = self.output_shapes(dims)
        if c.kind == "gradient":
            return cut(out["grad"][c.target], self.target_shape(c, dims))
        key = f"{c.output}|{c.target}"
        if c.kind == "jvp":
            return cut(out["jvp"][key], (JVP_DIRECTIONS, *outputs[c.output]))
        if key in out.get("products", {}):
            products = out["products"][key]
            return {
                "Jv": vec_rows(cut(products["Jv"], (JVP_DIRECTIONS, *outputs[c.output]))),
                "uJ": vec_rows(cut(products["uJ"], (JVP_DIRECTIONS, *self.target_shape(c, dims)))),
            }
        J = cut(out["jac"][key], outputs[c.output] + self.target_shape(c, dims))
        return vec_jacobian(J, len(outputs[c.output]))

    def _forward(self, out: dict, dims: dict[str, int]) -> dict[str, np.ndarray]:
        outputs = self.output_shapes(dims)
        return {name: cut(value, outputs[name]) for name, value in out["fwd"].items()}

    def references(self, checks: list[Check], draws: list[Draw], records: dict[int, Record], chunk: int,
                   passes: tuple[str, ...] = ("exact",), fields: tuple[str, ...] | None = None,
                   dense: Callable[[Draw], list[Check]] | None = None) -> None:
        """Each draw's references for `checks` (gradients, JVPs; dense Jacobians and products where
        `dense(draw)` lists them) under `passes` (references.PASSES), into records[id(draw)]: the
        forward fields named (None: all) and each check's reference, per pass."""
        from bncheck.references import NOISE_SAMPLES, Plan, build

        if not draws:
            return
        by_kind = {kind: [c for c in checks if c.kind == kind] for kind in ("gradient", "jvp", "jacobian")}
        plan = Plan(
            grads=tuple(sorted({c.target for c in by_kind["gradient"]})),
            jvps=tuple(sorted({(c.output, c.target) for c in by_kind["jvp"]})),
            jacs=tuple(sorted({(c.output, c.target) for c in by_kind["jacobian"]})),
            fields=fields,
        )
        fn = self.compiled(("refs", plan, passes), lambda: self._build(plan, passes))

        def take(draw: Draw, out: dict) -> None:
            record = records.setdefault(id(draw), Record())
            wanted = checks if dense is None else [c for c in checks if c.kind != "jacobian"] + dense(draw)
            if "exact" in out:
                record.forward.update(self._forward(out["exact"], draw.dims))
                record.exact.update({c.name: self.extract(c, out["exact"], draw.dims) for c in wanted})
            if "rough" in out:
                record.rough_forward.update(self._forward(out["rough"], draw.dims))
                record.rough.update({c.name: self.extract(c, out["rough"], draw.dims) for c in wanted})
            if "noisy" in out:
                samples = [_index(out["noisy"], k) for k in range(NOISE_SAMPLES)]
                record.noisy.update({c.name: [self.extract(c, s, draw.dims) for s in samples] for c in wanted})

        def key(draw: Draw) -> dict[str, int]:
            if not by_kind["jacobian"]:
                return self.bucket(draw.dims, chunk=chunk)
            return self.bucket(draw.dims, lambda dims: 3 * sum(self.dense_bytes(c, dims) for c in by_kind["jacobian"]) // 2, chunk)

        for bucket, part in group(draws, key):
            # A key a draw costs an eager JAX call (0.3 ms): only the noisy pass reads them.
            self.run(fn, part, bucket, take, chunk, keys="noisy" in passes)

    def derived(self, checks: list[Check], functions: dict[str, Callable], draws: list[Draw], chunk: int,
                take: Callable[[Draw, dict], None]) -> None:
        """A derivation's functions that JAX traces (gradient and JVP checks) run beside their
        references, draws of a shape batched (one compile a shape: a user's function cannot be padded),
        each compared there (references.derived_program). take(draw, out) gets each draw's summaries
        and spreads as arrays, and its values and references as Rows, left on the device."""
        from bncheck.references import derived_program

        spec = tuple((c.name, c.kind, c.target, c.output) for c in checks)
        dtype = self.settings.dtype
        self.on_device.update(c.name for c in checks)
        for dims, part in group(draws, lambda d: dict(d.dims)):
            fn = self.compiled(("derived", spec, tuple(dims.items())), lambda dims=dims: derived_program(
                self.model, self.cfg, spec, functions, dims, dtype, self.optimize))
            self.run(fn, part, dims, take, chunk, lazy=("got", "ref"))

    def products(self, pairs: list[tuple[Check, Draw]], records: dict[int, Record], chunk: int) -> None:
        """jax.jvp and jax.vjp of each matrix-free check's output along its draw's probe vectors, float64
        and float32 (whose difference is the noise floor), into records[id(draw)]."""
        from bncheck.references import Plan, build

        if not pairs:
            return
        plan = Plan(products=tuple(sorted({(c.output, c.target) for c, _ in pairs})), fields=())
        # One program for every draw, though each draw has probes only for the checks it takes by
        # products (the others are dense or skipped at its size).
        probes = tuple(sorted({f"v:{t}" for _, t in plan.products} | {f"u:{o}" for o, _ in plan.products}))
        passes = ("exact", "rough")
        fn = self.compiled(("refs", plan, passes), lambda: self._build(plan, passes))
        wanted: dict[int, list[Check]] = {}
        for c, draw in pairs:
            wanted.setdefault(id(draw), []).append(c)
        draws = list({id(d): d for _, d in pairs}.values())

        def take(draw: Draw, out: dict) -> None:
            record = records.setdefault(id(draw), Record())
            for c in wanted[id(draw)]:
                record.exact[c.name] = self.extract(c, out["exact"], draw.dims)
                record.rough[c.name] = self.extract(c, out["rough"], draw.dims)

        for bucket, part in group(draws, lambda d: self.bucket(d.dims, chunk=chunk)):
            self.run(fn, part, bucket, take, chunk, vectors="probes", vector_keys=probes)

    def extremes(self, field_name: str, draws: list[Draw], chunk: int) -> dict[int, tuple[float, float]]:
        """min and max of |field| over each draw's real entries, from a forward-only program."""
        from bncheck.references import Plan, build

        plan = Plan(fields=(), extremes=(field_name,))
        fn = self.compiled(("refs", plan, None), lambda: self._build(plan, None))
        found: dict[int, tuple[float, float]] = {}

        def take(draw: Draw, out: dict) -> None:
            smallest, largest = out["extremes"][field_name]
            found[id(draw)] = (float(smallest), float(largest))

        for bucket, part in group(draws, lambda d: self.bucket(d.dims, chunk=chunk)):
            self.run(fn, part, bucket, take, chunk, vectors=None)
        return found

    def forward_record(self, draw: Draw, dtype: str) -> dict[str, np.ndarray]:
        """The forward record of one draw computed in `dtype`, at its own shape (a case's ctx fields)."""
        from bncheck.references import Plan, build

        fn = self.compiled(("record", tuple(draw.dims.items())), lambda: build(self.model, self.cfg, Plan()))
        record: dict[str, np.ndarray] = {}
        self.run(fn, [draw], draw.dims, lambda _, out: record.update(out["fwd"]), 1, dtype=np.dtype(dtype))
        return record

    def variants(self, c: Check, draws: list[Draw], others: dict[str, dict[str, Any]] | None = None,
                 ) -> dict[str, tuple[list[Any], list[dict[str, np.ndarray]]]]:
        """{key: (reference of each draw, forward record of each draw)} under the model's own settings
        ("") and each of its variants (Model.variants), or of `others` {key: settings}, all in one compile."""
        from bncheck.references import Plan, variants_program

        cfgs = {"": self.cfg, **(self.model.variants(self.cfg) if others is None else others)}
        if c.kind == "gradient":
            plan = Plan(grads=(c.target,))
        elif c.kind == "jvp":
            plan = Plan(jvps=((c.output, c.target),))
        else:
            plan = Plan(jacs=((c.output, c.target),))
        fn = self.compiled(("variants", c, tuple(cfgs)), lambda: variants_program(self.model, cfgs, plan, self.optimize))
        found: dict[int, dict[str, tuple[Any, dict]]] = {}

        def take(draw: Draw, outs: dict) -> None:
            found[id(draw)] = {
                key: (self.extract(c, out, draw.dims), self._forward(out, draw.dims)) for key, out in outs.items()
            }

        def dense_bytes(dims: dict[str, int]) -> int:
            return len(cfgs) * self.dense_bytes(c, dims) if c.kind == "jacobian" else 0

        for bucket, part in group(draws, lambda d: self.bucket(d.dims, dense_bytes, len(draws))):
            self.run(fn, part, bucket, take, len(part))
        return {key: ([found[id(d)][key][0] for d in draws], [found[id(d)][key][1] for d in draws]) for key in cfgs}

    def differences(self, pairs: tuple[tuple[str, str, bool], ...], draws: list[Draw], bucket: dict[str, int],
                    take: Callable[[Draw, dict], None]) -> None:
        """Central differences of the forward pass (references.differences_program) for draws of one bucket."""
        from bncheck.references import differences_program

        kink = self.model.kink_field(self.cfg)
        fn = self.compiled(("fd", pairs), lambda: differences_program(self.model, self.cfg, pairs, kink))
        self.run(fn, draws, bucket, take, len(draws))

    def padded_to(self, largest: dict[str, int]) -> Engine:
        """An engine that pads every draw (none larger than `largest`) to `largest`, sharing this one's
        compiled programs: a fixed-shape sweep's compile serves smaller draws too."""
        engine = Engine(self.model, replace(self.settings, shape=None, sweep={n: (1, v) for n, v in largest.items()}))
        engine._compiled = self._compiled
        return engine


def _index(tree: dict, k: int) -> dict:
    """One of the noisy pass's recomputations (the leading axis of every leaf)."""
    import jax

    return jax.tree_util.tree_map(lambda a: a[k], tree)


def noise_key(seed: int) -> int:
    """The PRNG seed of a draw's rounding noise (its own stream)."""
    return int(np.random.default_rng([seed, STREAMS["noise"]]).integers(2**31))
