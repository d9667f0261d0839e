"""Checking one draw: call the user's function (the one place that does), compare its value with the
reference, judge it with the noise floor, and tally the verdict.

A user's function is untrusted: whatever it raises (SystemExit and every other BaseException but a
Ctrl-C included), returns (an object whose `__array__` raises, a generator) or tries (writing into
ctx, sleeping forever) fails its own check on that draw and nothing else. Each check gets its own
read-only ctx, so one function's in-place slip cannot change what another function sees.
"""

from __future__ import annotations

import math
import signal
import threading
import traceback
from dataclasses import dataclass, field, replace
from typing import Any, Callable

import numpy as np

from bncheck.compare import (
    Comparison,
    NotAnArray,
    Summary,
    as_array,
    compare,
    compare_products,
    compare_rows,
    floor_of,
    overshoot,
    rounding_spread,
    summarized,
)
from bncheck.draws import Ctx, Draw, frozen
from bncheck.engine import Record, vec_rows
from bncheck.errors import BncheckError
from bncheck.loader import Derivation
from bncheck.models import Check
from bncheck.text import MESSAGE_LIMIT, exception_text, printable
from bncheck.userfile import own_frames, put_back, shown_path

# The reference each kind of check is compared with, by name; a dense Jacobian over a share of the
# budget is compared by its products instead.
REFERENCE_NAMES = {"gradient": "jax.grad", "jacobian": "jax.jacfwd", "jvp": "jax.jvp"}
PRODUCTS = "jax.jvp/jax.vjp products"
FAILURE_SAMPLES = 32  # failing (got, ref) pairs kept per check for the diagnosis
RAISE_SHAPES = 5  # distinct shapes kept of the draws a function raised on, for the report
# What the failing samples of one check may hold, as a share of --max-memory-mb.
SAMPLES_SHARE = 1 / 8


class CallTimeout(BaseException):
    """A call of a user's function took longer than --timeout (a BaseException, so that the
    function's own `except Exception` cannot swallow it)."""


class time_limit:
    """Interrupts the block after `seconds` for each of its `calls` with CallTimeout. Only the main
    thread can take the signal, so elsewhere (or with seconds = 0) the block runs unlimited. A class
    rather than a generator: it is entered around every call of a user's function."""

    def __init__(self, seconds: float, calls: int = 1):
        self.seconds, self.calls = seconds, calls
        self.previous = None

    def __enter__(self) -> None:
        if self.seconds and hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGALRM, self._expire)
            signal.setitimer(signal.ITIMER_REAL, self.seconds * self.calls)

    def __exit__(self, *exc) -> None:
        if self.previous is not None:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, self.previous)

    def _expire(self, signum, frame):
        if self.calls == 1:
            raise CallTimeout(f"the call took longer than --timeout {self.seconds:g} s")
        raise CallTimeout(f"its {self.calls} calls (one per JVP direction) took longer than {self.calls} x --timeout "
                          f"{self.seconds:g} s")


def describe(err: BaseException) -> str:
    """'Type: message' of an exception, whatever its __str__ does."""
    text = exception_text(err)
    if isinstance(err, SystemExit):
        text += " (the function called sys.exit; bncheck counts that as a failure of this check)"
    elif isinstance(err, ValueError) and "read-only" in text:
        text += " (ctx's arrays are read-only and shared by every check: copy one before writing into it, e.g. ctx.resid.copy())"
    return printable(text, MESSAGE_LIMIT)


def user_traceback(err: BaseException) -> list[str]:
    """'FILE:LINE: code' of each frame in the user's own code, outermost first (else the innermost
    frame): every file outside bncheck, JAX, NumPy and the standard library, so an error inside a
    module the derivation imports shows its line there too; bncheck's frames and the libraries' say
    nothing about the user's slip."""
    try:
        frames = own_frames(err) or traceback.extract_tb(err.__traceback__)[-1:]
    except Exception:  # a traceback whose frames cannot be read says nothing more
        return []
    return [printable(f"{shown_path(frame.filename)}:{frame.lineno}: {(frame.line or '').strip()}", 300) for frame in frames]


@dataclass
class Raised:
    """A user's function raised: the exception as text and the user's own frames."""

    message: str
    frames: list[str]
    out_of_memory: bool = False
    timed_out: bool = False


_CTX_CLASS = dict(vars(Ctx))


def _ctx_class_kept() -> bool:
    """Whether the ctx class is as bncheck defined it; if not, it is put back (one function's patch
    of the class every check's ctx shares must not reach the others)."""
    now = vars(Ctx)
    if now.keys() == _CTX_CLASS.keys() and all(now[k] is v for k, v in _CTX_CLASS.items()):
        return True
    for key in set(now) - set(_CTX_CLASS):
        delattr(Ctx, key)
    for key, value in _CTX_CLASS.items():
        if now.get(key) is not value and key not in ("__dict__", "__weakref__"):
            setattr(Ctx, key, value)
    return False


def call(fn, args: tuple, timeout: float) -> Any:
    """fn(*args) converted to a float64 array (NotAnArray when it is none), or Raised. A Ctrl-C
    (KeyboardInterrupt) is the person's, not the function's: it stops the run."""
    got = calls(fn, [args], timeout)
    return got if isinstance(got, Raised) else got[0]


def calls(fn, each: list[tuple], timeout: float) -> list[Any] | Raised:
    """call() for each argument tuple of `each` (a JVP's directions, with one ctx): one time limit
    for them all and one look at what they changed, after the last (a change in any fails them all).
    The first that raises is the answer."""
    ctx = each[0][0] if each and each[0] and isinstance(each[0][0], Ctx) else None
    fields = dict(vars(ctx)) if ctx is not None else {}
    try:
        return _called(fn, each, ctx, fields, timeout)
    except CallTimeout as err:  # the limit ran out in bncheck's checks, just after the function returned
        _ctx_class_kept()
        put_back()
        return Raised(describe(err), [], timed_out=True)


def _called(fn, each: list[tuple], ctx: Ctx | None, fields: dict, timeout: float) -> list[Any] | Raised:
    # The limit covers the reading of each value too: an object's __array__, shape or dtype is the
    # user's code as well.
    with np.errstate(all="ignore"), time_limit(timeout, len(each)):
        values = []
        for args in each:
            try:
                values.append(fn(*args))
            except KeyboardInterrupt:
                raise
            except BaseException as err:  # noqa: BLE001 - the user's code may raise anything; see the module docstring
                _ctx_class_kept()
                put_back()
                return Raised(describe(err), user_traceback(err), isinstance(err, MemoryError), isinstance(err, CallTimeout))
        put_back()
        if not _ctx_class_kept():
            return Raised("the function changed the class of ctx, which every check shares (put back)", [])
        if ctx is not None and not ctx.holds(fields):
            return Raised("the function changed its ctx (ctx is read-only; keep your own values in local variables)", [])
        arrays = []
        for value in values:
            try:
                # It can raise (or ask for a broadcast view's 10^12 entries): that fails the check, it
                # is no reason to skip it.
                array = as_array(value)
            except KeyboardInterrupt:
                raise
            except BaseException as err:  # noqa: BLE001
                return Raised(f"its value could not be read as an array: {describe(err)}", user_traceback(err))
            arrays.append(array if array is not None else NotAnArray(value))
    return arrays


@dataclass
class Tally:
    """What one check saw over the sweep, in memory that does not grow with the number of draws."""

    check: Check
    reference: str | None = None  # set where it is not the check kind's usual one (REFERENCE_NAMES)
    ran: int = 0
    compared: int = 0  # draws whose value could be compared (right shape, finite)
    skipped: int = 0
    skip_reason: str | None = None
    # The largest errors over every compared draw, each maximised on its own (CONTRACT §4).
    max_abs: float = 0.0
    max_rel: float = 0.0
    # The one draw the report shows: the compared draw furthest past its allowance (compare.overshoot),
    # or nearest to it when every draw passed. Its errors are the table's, its values the error map's,
    # its factor the one a diagnosis quotes, and a replay starts from it.
    worst: tuple[Draw, Comparison] | None = None
    failures: int = 0
    worst_values: tuple[np.ndarray, np.ndarray] | None = None  # (got, ref) at `worst` when it failed
    first_problem: tuple[Draw, Comparison] | None = None
    # The draws on which the function raised: how many, the first (draw, "Type: message", the user's
    # traceback frames "file:line: code"), and the distinct shapes of the first few. A raise fails its
    # draw, not the check's sweep: the other draws are still called and compared.
    raises: int = 0
    error: tuple[Draw, str, list[str]] | None = None
    raise_shapes: list[dict[str, int]] = field(default_factory=list)
    raise_seeds: list[int] = field(default_factory=list)  # each shape's first raise, to merge processes' lists
    # After a call that ran past --timeout the function is called no more: each draw would wait as long.
    stopped: bool = False
    samples: list[tuple[Draw, Any, np.ndarray]] = field(default_factory=list)
    sample_bytes: int = 0
    # Draws checked against a dense jax.jacfwd Jacobian and by products (matrix-free).
    dense_draws: int = 0
    product_draws: int = 0
    # Compared draws whose reference is zero up to rounding, and the draws whose value breaks one of
    # the model's invariants, with the first of them and its sentence (bncheck.assess.warnings).
    vanishing: int = 0
    broken: int = 0
    first_broken: tuple[Draw, str] | None = None
    # Sees every judged draw as it is tallied (the error distributions of bench/tolerances.py).
    observer: Callable[[Check, Draw, Comparison], None] | None = None

    def add(self, draw: Draw, result: Comparison, got, ref: np.ndarray, sample_budget: float = math.inf) -> None:
        self.ran += 1
        if self.observer is not None:
            self.observer(self.check, draw, result)
        if result.problem is None:
            self.compared += 1
            self.max_abs = max(self.max_abs, result.abs_err)
            self.max_rel = max(self.max_rel, result.rel_err)
            if self.worst is None or overshoot(result) > overshoot(self.worst[1]):
                self.worst = (draw, result)
                self.worst_values = None if result.ok else (np.asarray(got, dtype=np.float64), ref)
        elif self.first_problem is None:
            self.first_problem = (draw, result)
        if not result.ok:
            self.failures += 1
            self.keep(draw, got, ref, sample_budget)

    def keep(self, draw: Draw, got, ref: np.ndarray, sample_budget: float = math.inf) -> None:
        """Keeps a failing draw's values for the diagnosis, while there are fewer than
        FAILURE_SAMPLES and they fit the budget (the first always does)."""
        size = getattr(got, "nbytes", 0) + getattr(ref, "nbytes", 0)
        # A wrongly shaped value is kept for its repairs (flatten, transpose, diagonal), which need
        # no more than the square of the reference's size: not a broadcast view of 10^12 entries.
        repairable = getattr(got, "size", 0) <= max(getattr(ref, "size", 0) ** 2, 1024)
        if repairable and len(self.samples) < FAILURE_SAMPLES and (
            not self.samples or self.sample_bytes + size <= sample_budget
        ):
            self.samples.append((draw, got, ref))
            self.sample_bytes += size

    @property
    def worst_failure(self) -> tuple[Draw, Comparison] | None:
        """The worst draw when it failed by its value (not by its shape): the one a replay reproduces."""
        return self.worst if self.worst is not None and not self.worst[1].ok else None

    def evidence(self) -> list[tuple[Draw, Any, np.ndarray]]:
        """The failing samples a diagnosis reads, the worst draw first, so that the factor it quotes
        ("= 28 at N = 28") is the worst draw's, the one the table and the error map show."""
        if self.worst_values is None:
            return list(self.samples)
        draw = self.worst[0]
        rest = [s for s in self.samples if s[0] is not draw]
        return [(draw, *self.worst_values), *rest[: FAILURE_SAMPLES - 1]]

    def raised(self, draw: Draw, raised: Raised) -> None:
        if raised.out_of_memory:
            # Like a dense Jacobian over the budget: the size was too large to check, not the maths wrong.
            self.skipped += 1
            self.skip_reason = f"the function ran out of memory at {draw.case_id('float64')}: {raised.message}"
            return
        self.ran += 1
        self.raises += 1
        if self.error is None:
            self.error = (draw, raised.message, raised.frames)
        if len(self.raise_shapes) < RAISE_SHAPES and draw.dims not in self.raise_shapes:
            self.raise_shapes.append(dict(draw.dims))
            self.raise_seeds.append(draw.seed)
        if raised.timed_out:
            self.stopped = True

    @property
    def raised_everywhere(self) -> bool:
        """Whether the function raised on every draw it was called on (no value to compare at all)."""
        return self.raises > 0 and self.raises == self.ran


def rows(c: Check, value) -> list:
    """A JVP check's values or references one direction each, any other check's as a list of one."""
    return list(value) if c.kind == "jvp" else [value]


def _floors(c: Check, refs: list[np.ndarray], record: Record, dtype: str) -> tuple[list[float], set[str]]:
    """Per row, the noise floor from what `record` holds for check c, and which passes it used."""
    from bncheck.references import NOISE

    used = set()
    floors = [0.0] * len(refs)
    # Spreads measured where the references are (the engine's device path): the same numbers, per row.
    for name, unit in (("rough", None), ("noisy", NOISE)):
        if name in record.spreads.get(c.name, {}):
            used.add(name)
            floors = [max(f, floor_of(d, dtype, unit)) for f, d in zip(floors, record.spreads[c.name][name])]
    if c.name in record.rough:
        used.add("rough")
        floors = [max(f, floor_of(rounding_spread(r, q), dtype)) for f, r, q in zip(floors, refs, rows(c, record.rough[c.name]))]
    if c.name in record.noisy:
        used.add("noisy")
        samples = [rows(c, s) for s in record.noisy[c.name]]
        spread = [max(rounding_spread(r, s[i]) for s in samples) for i, r in enumerate(refs)]
        floors = [max(f, floor_of(d, dtype, NOISE)) for f, d in zip(floors, spread)]
    return floors, used


@dataclass
class Verdict:
    """One draw's comparisons for one check (one per JVP direction), before they are tallied: the
    worst stands for the draw. Made with the noise floors the draw's record holds; one that fails
    without every floor its kind can have waits for them (the sweep computes them, then settles)."""

    tally: Tally
    draw: Draw
    record: Record
    results: list[Comparison]
    values: list
    refs: list[np.ndarray]
    floors: set[str]  # the passes behind the floors inside the results' allowances
    floor_values: list[float]  # those floors, per row

    @classmethod
    def summarized(cls, tally: Tally, draw: Draw, record: Record, summaries: list[Summary], shape: tuple[int, ...],
                   values, refs, settings) -> Verdict:
        """The verdict of a value compared where it was computed (the engine's device path): from
        each row's Summary, with the floors the record holds; `values` and `refs` give each row as an
        array when it is read."""
        floors, used = _floors(tally.check, [None] * len(summaries), record, settings.dtype)
        results = [summarized(s, shape, settings.rtol, settings.atol, f) for s, f in zip(summaries, floors)]
        return cls(tally, draw, record, results, values, refs, used, floors)

    @property
    def passes(self) -> bool:
        return all(r.ok for r in self.results)

    @property
    def needs(self) -> tuple[str, ...]:
        """The passes still to compute before this verdict can be settled (none: settle it now)."""
        if self.passes or any(r.problem is not None for r in self.results):
            return ()
        # Dense Jacobians and products come with their float32 pass; only gradient and JVP checks
        # (a cheap program) are recomputed with rounding noise.
        wanted = ("rough", "noisy") if self.tally.check.kind != "jacobian" else ("rough",)
        return tuple(p for p in wanted if p not in self.floors)

    def settle(self, dtype: str, sample_budget: float = math.inf) -> None:
        """Adds the floors the record holds by now and tallies the verdict."""
        results = self.results
        floors, used = _floors(self.tally.check, self.refs, self.record, dtype)
        if used - self.floors:
            results = [
                replace(r, ok=r.abs_err <= r.allowed - old + new, allowed=r.allowed - old + new)
                for r, old, new in zip(results, self.floor_values, floors)
            ]
        worst = max(range(len(results)), key=lambda i: (results[i].problem is not None, overshoot(results[i])))
        # Only a failure keeps its values: a passing draw's are never read (nor brought from the device).
        got, ref = (None, None) if results[worst].ok else (self.values[worst], self.refs[worst])
        self.tally.add(self.draw, results[worst], got, ref, sample_budget)
        if results[worst].problem is None:
            self.tally.vanishing += all(r.scale <= r.allowed for r in results)


def sample_budget(settings) -> float:
    """The bytes of failing values (Tally.samples) a check keeps for its diagnosis."""
    return settings.max_memory_mb * 2**20 * SAMPLES_SHARE


class Checker:
    """Calls a derivation's functions on prepared draws and judges their values (see the module docstring)."""

    def __init__(self, derivation: Derivation, settings, cfg: dict[str, Any], invariants: dict):
        self.derivation = derivation
        self.settings = settings
        self.cfg = cfg
        self.invariants = invariants
        self.sample_budget = sample_budget(settings)

    def ctx(self, draw: Draw, record: Record) -> Ctx:
        """The ctx a derivation sees for a prepared draw, in the run's dtype: below float64 it is the
        forward record computed in that dtype, as the derivation's own code would compute it."""
        dtype = self.settings.dtype
        forward = record.rough_forward if dtype != "float64" else record.forward
        arrays = {name: a.astype(dtype, copy=False) for name, a in draw.arrays.items()}
        fields = {name: v.astype(dtype, copy=False) for name, v in forward.items()}
        return Ctx({**arrays, **fields, **draw.dims, **self.cfg})

    def draw(self, checks: list[Check], draw: Draw, record: Record, tallies: dict[str, Tally]) -> list[Verdict]:
        """Calls `checks` on one prepared draw and tallies each, except the verdicts returned: those
        wait for a noise floor the record does not hold yet (Verdict.needs)."""
        ctx = self.ctx(draw, record)
        waiting = []
        for c in checks:
            verdict = self.one(c, tallies[c.name], draw, record, ctx.copy())
            if verdict is not None:
                if verdict.needs:
                    waiting.append(verdict)
                else:
                    verdict.settle(self.settings.dtype, self.sample_budget)
        return waiting

    def one(self, c: Check, tally: Tally, draw: Draw, record: Record, ctx: Ctx) -> Verdict | None:
        """One check's verdict on one draw; None where nothing is left to settle (a raise, a skip, a
        product check, which is tallied at once)."""
        if tally.stopped or c.name not in record.exact:
            # Timed out before, or skipped at this size. A raise or a wrong shape stops nothing: the
            # other draws' values say whether the function is also wrong where it runs, and which
            # repair fits.
            return None
        s = self.settings
        fn = self.derivation.functions[c.name]
        if c.kind == "jvp":
            got = calls(fn, [(ctx, frozen(V.astype(s.dtype, copy=False))) for V in draw.directions[c.target]], s.timeout)
        else:
            got = call(fn, (ctx,), s.timeout)
        if isinstance(got, Raised):
            tally.raised(draw, got)
            return None
        ref = record.exact[c.name]
        if isinstance(ref, dict):
            v, u = (vec_rows(draw.probes[f"{side}:{name}"]) for side, name in (("v", c.target), ("u", c.output)))
            result, (value, want) = compare_products(got, ref, record.rough[c.name], v, u, s.rtol, s.atol, s.dtype)
            tally.product_draws += 1
            tally.add(draw, result, value, want, self.sample_budget)
            return None
        if c.kind == "jacobian":
            tally.dense_draws += 1
        refs = rows(c, ref)
        floors, used = _floors(c, refs, record, s.dtype)
        if c.kind == "jvp":
            results = compare_rows(got, ref, s.rtol, s.atol, floors)
        else:
            results = [compare(got, ref, s.rtol, s.atol, floors[0])]
        if all(r.problem is None for r in results):
            self._invariant(c, tally, draw, ctx, got)
        return Verdict(tally, draw, record, results, rows(c, got), refs, used, floors)

    def _invariant(self, c: Check, tally: Tally, draw: Draw, ctx: Ctx, got) -> None:
        """Notes a value that breaks its check's invariant (a warning; never the verdict)."""
        invariant = self.invariants.get(c.name)
        if invariant is None:
            return
        try:
            with np.errstate(all="ignore"):
                broken = invariant(ctx, got)
        except BncheckError:  # a model file's invariant that raises: the model file is broken
            raise
        except Exception:  # an invariant that cannot be evaluated on this value says nothing about it
            return
        if broken:
            tally.broken += 1
            if tally.first_broken is None:
                tally.first_broken = (draw, printable(str(broken), 500))
