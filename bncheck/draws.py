"""Draws: the shapes and seeds of a sweep, the arrays of each draw, and the ctx a derivation sees.

Every draw is a pure function of (seed, shape, attempt). Each kind of randomness has a stream of its
own, `default_rng([seed, STREAMS[kind], ...])`, so `--shape ... --seed S --trials 1` replays draw S
exactly, and drawing one kind (the matrix-free probes, say) never moves another. `attempt` counts the
redraws that move a draw off a relu kink (compare.Tolerance.kink).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import ml_dtypes  # noqa: F401 - gives NumPy the dtype name "bfloat16" (--dtype bfloat16)
import numpy as np

from bncheck.errors import LoadError
from bncheck.models import Model

# Each stream's second seed word: [seed, 0] draws the shape; [seed, 1, attempt] the inputs and
# parameters; [seed, 2, attempt] the JVP directions; [seed, 3, attempt] the matrix-free probes;
# [seed, 4] the rounding noise behind the noise floor (references.with_rounding_noise).
STREAMS = {"shape": 0, "arrays": 1, "directions": 2, "probes": 3, "noise": 4}
JVP_DIRECTIONS = 3
MAX_ATTEMPTS = 100
# Distinct shapes in a sweep of a model that cannot pad: each costs a compile (see plan).
SHAPE_POOL = 16


def frozen(value: Any) -> Any:
    """A NumPy array as a read-only copy over immutable memory (bytes), so that neither it nor its base
    can be made writeable again; anything else as it is."""
    if not isinstance(value, np.ndarray):
        return value
    return np.frombuffer(value.tobytes(), dtype=value.dtype).reshape(value.shape)


class Ctx:
    """The forward record of one draw, as a derivation function sees it: `ctx.H`, `ctx.N`, ...

    Read-only: its arrays cannot be written in place and its fields cannot be set, so that one
    function's in-place slip (`r = ctx.resid; r *= 2`) fails that function instead of the others.
    """

    def __init__(self, fields: dict[str, Any]):
        self.__dict__.update({name: frozen(value) for name, value in fields.items()})

    def copy(self) -> Ctx:
        """Another ctx over the same (read-only) arrays: each check gets its own."""
        other = object.__new__(Ctx)
        other.__dict__.update(self.__dict__)
        return other

    def holds(self, fields: dict[str, Any]) -> bool:
        """Whether this ctx still holds exactly `fields` (its own, noted before a function ran)."""
        now = self.__dict__
        return now.keys() == fields.keys() and all(now[k] is v for k, v in fields.items())

    def __getattr__(self, name: str):
        known = ", ".join(self.__dict__)
        raise AttributeError(f"ctx has no field {name!r}; its fields: {known}")

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"ctx is read-only: cannot set ctx.{name} (keep your own values in local variables)")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"ctx is read-only: cannot delete ctx.{name}")


@dataclass
class Draw:
    seed: int
    dims: dict[str, int]
    attempt: int = 0
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    directions: dict[str, np.ndarray] = field(default_factory=dict)
    # Random vectors for matrix-free Jacobian checks: "v:<target>" and "u:<output>" (bncheck.compare.compare_products).
    probes: dict[str, np.ndarray] = field(default_factory=dict)

    def case_id(self, dtype: str) -> str:
        shape = ",".join(f"{k}={v}" for k, v in self.dims.items())
        return f"{dtype}[{shape}]#seed{self.seed}"

    def fresh(self) -> Draw:
        """The same draw before sampling: its seed and shape only."""
        return Draw(self.seed, dict(self.dims))


def array_shapes(model: Model, dims: dict[str, int]) -> dict[str, tuple[int, ...]]:
    """The shape of every input and parameter at `dims`."""
    return {**model.inputs(dims), **model.params(dims)}


@dataclass(frozen=True)
class Plan:
    """The draws of a sweep, made one at a time as they are needed: draw t has seed `seed + t` and,
    unless `shape` fixes it, the shape default_rng([seed, 0]) draws from `sweep`, each dimension named
    in `multiples` among the multiples of its m in its range (Model.dim_multiples). With `pool`, draw t
    takes the shape of draw t mod pool instead (its data stays its own): a model that cannot pad
    compiles once per distinct shape, and a pool bounds those compiles. A share (`part` of `parts`)
    holds the draws t with t mod parts = part, and only those: one process's of a run over several."""

    seed: int
    trials: int
    sweep: dict[str, tuple[int, int]]
    shape: dict[str, int] | None = None
    pool: int | None = None
    multiples: dict[str, int] = field(default_factory=dict)
    part: int = 0
    parts: int = 1

    def __len__(self) -> int:
        return len(range(self.part, self.trials, self.parts))

    def share(self, part: int, parts: int) -> Plan:
        """The draws of process `part` of `parts` (see the class docstring)."""
        return replace(self, part=part, parts=parts)

    def dims(self, trial: int) -> dict[str, int]:
        if self.shape is not None:
            return dict(self.shape)
        rng = np.random.default_rng([self.seed + trial % self.pool if self.pool else self.seed + trial, STREAMS["shape"]])
        step = {name: self.multiples.get(name, 1) for name in self.sweep}
        return {name: step[name] * int(rng.integers(-(-lo // step[name]), hi // step[name] + 1))
                for name, (lo, hi) in self.sweep.items()}

    def __iter__(self) -> Iterator[Draw]:
        for trial in range(self.part, self.trials, self.parts):
            yield Draw(self.seed + trial, self.dims(trial))

    def largest(self) -> dict[str, int]:
        """The largest size each dimension can take in this sweep."""
        return dict(self.shape) if self.shape is not None else {name: hi for name, (_, hi) in self.sweep.items()}


def plan(settings, model: Model) -> Plan:
    """The sweep's draws for `settings` (see Plan)."""
    shape = dict(settings.shape) if settings.shape is not None else None
    return Plan(settings.seed, settings.trials, dict(settings.sweep), shape, None if model.paddable else SHAPE_POOL,
                dict(model.dim_multiples))


def _rounded(a: np.ndarray, dtype: str) -> np.ndarray:
    # The inputs a derivation in `dtype` sees, held in float64 for the references: both compute on
    # the same numbers.
    out = a.astype(dtype).astype(np.float64)
    out.flags.writeable = False
    return out


def sample(model: Model, draw: Draw, dtype: str, jvp_targets: set[str] | None) -> None:
    """The draw's arrays and, when jvp_targets is not None, its JVP directions (their own stream, so
    redraw rounds that only test for kinks can leave them for the final attempt)."""
    rng = np.random.default_rng([draw.seed, STREAMS["arrays"], draw.attempt])
    shapes = array_shapes(model, draw.dims)
    custom = _custom_sample(model, rng, draw.dims, shapes) if model.sample is not None else {}
    draw.arrays = {
        name: _rounded(custom[name] if name in custom else rng.standard_normal(shape), dtype)
        for name, shape in shapes.items()
    }
    if jvp_targets is None:
        return
    rng = np.random.default_rng([draw.seed, STREAMS["directions"], draw.attempt])
    draw.directions = {
        t: _rounded(rng.standard_normal((JVP_DIRECTIONS, *shapes[t])), dtype) for t in sorted(jvp_targets)
    }


def sample_probes(draw: Draw, target: str, target_shape: tuple[int, ...], output: str,
                  output_shape: tuple[int, ...], dtype: str) -> None:
    """The draw's matrix-free probe vectors v (shaped like the target) and u (like the output)."""
    rng = np.random.default_rng([draw.seed, STREAMS["probes"], draw.attempt])
    probes = {f"v:{target}": (JVP_DIRECTIONS, *target_shape), f"u:{output}": (JVP_DIRECTIONS, *output_shape)}
    for key, shape in probes.items():
        if key not in draw.probes:
            draw.probes[key] = _rounded(rng.standard_normal(shape), dtype)


def _custom_sample(model: Model, rng: np.random.Generator, dims: dict[str, int], shapes: dict) -> dict[str, np.ndarray]:
    """The arrays a model's own sample(rng, d) draws, checked against the shapes it declares."""
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


def size_of(shapes: dict[str, tuple[int, ...]]) -> int:
    """The number of entries in arrays of these shapes."""
    return sum(math.prod(s) for s in shapes.values())
