"""Error metrics, the tolerance table, and the verdict on one value returned by a derivation.

A draw passes when

    max|got − ref| <= atol + rtol · max|ref| + noise_floor

The error is measured against the size of the whole reference array, not entry by entry, so entries
that are zero up to rounding cannot fail a correct derivation, while a slip that moves any entry by a
visible fraction of the array's scale does. `max_rel_err` is max|got − ref| / max|ref|.

noise_floor covers draws where the result is far smaller than the terms that make it up: through batch
norm at N = 2, or with p1 = 1, ∂R/∂Γ₁ is of the order of eps while its terms are of order one, so any
correct derivation carries a rounding error that is large *relative to the result*. bncheck measures
that amplification on each draw by computing the same reference in float32 as well: the difference
|ref₃₂ − ref₆₄| is the rounding a float32 computation of this draw shows, and scaled by the unit
roundoff of the run's dtype it bounds what a correct derivation in that dtype can show. A bfloat16 or
float16 run recomputes the reference in its own dtype instead (ROUGH): float32's rounding scaled up
by the ratio of roundoffs would miss what only a short significand shows (a relu that changes sides,
a sum that absorbs its small terms), and that recomputation is the run's own ctx anyway. One float32
recomputation can be lucky, though: its rounding is deterministic and can cancel exactly where the
result is structurally zero (N = 2 at eps = 0) or land on a good value (a softmax probability near 1).
So a draw that still fails with that floor is recomputed with random rounding noise on every operation
(Monte Carlo arithmetic, references.with_rounding_noise), and the spread of those recomputations,
scaled the same way, is a second floor; the larger of the two applies. A real slip moves the result by
a fraction of its terms, orders of magnitude above either floor.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import ml_dtypes
import numpy as np


@dataclass(frozen=True)
class Tolerance:
    rtol: float
    atol: float
    # A relu draw with min|B| / max(|B|, 1) below this is redrawn: the derivation's a'(B) and the
    # float64 reference's could land on different sides of the kink. A float32 derivation's B carries
    # float32 rounding; a float64 one's only float64 rounding, some 1e-16 of B's terms, so float64
    # needs a far smaller margin (at N·p2 = 16384 pre-activations a 1e-4 one redraws nearly every
    # draw). Where the float32 recomputation behind the noise floor alone crosses a kink, that draw's
    # floor grows by about 2e-7 of one entry's jump: still far below any slip.
    kink: float


# The floor allows NOISE_MARGIN times the rounding a draw's computation shows, scaled to the dtype.
NOISE_MARGIN = 100.0
# The dtype each run's "rough" reference is recomputed in (its distance from the float64 one is the
# first noise floor; in a run below float64 its forward record is the ctx the derivation sees).
ROUGH = {"float64": "float32", "float32": "float32", "bfloat16": "bfloat16", "float16": "float16"}
# Unit roundoffs (half the machine epsilon): a rounded result is within this of the exact one, relative.
ROUNDOFF = {name: float(ml_dtypes.finfo(name).eps) / 2 for name in ROUGH}


def float_dtype(dtype: np.dtype) -> bool:
    """Whether arrays of `dtype` hold floating-point numbers: NumPy's own, and the bfloat16 of
    ml_dtypes, which NumPy does not count as floating."""
    return np.issubdtype(dtype, np.floating) or dtype == ml_dtypes.bfloat16


def rounding_spread(ref: np.ndarray, rough: np.ndarray) -> float:
    """max|ref_rough − ref₆₄| of one draw: the rounding its computation shows in the rough dtype."""
    return float(np.abs(np.asarray(rough, dtype=np.float64) - ref).max()) if ref.size else 0.0


def floor_of(spread: float, dtype: str, unit: float | None = None) -> float:
    """The rounding allowance for a draw whose recomputation with relative rounding `unit` (by default
    the roundoff of the run's ROUGH dtype, else the noise of references.with_rounding_noise) is
    `spread` off: see the module docstring."""
    unit = ROUNDOFF[ROUGH[dtype]] if unit is None else unit
    return NOISE_MARGIN * spread * ROUNDOFF[dtype] / unit


def noise_floor(ref: np.ndarray, rough: np.ndarray, dtype: str) -> float:
    """The rounding allowance of one draw from its rough reference: see the module docstring."""
    return floor_of(rounding_spread(ref, rough), dtype)


# Measured, not guessed: README "Tolerances" gives the error distributions these rest on and the
# command that reproduces them.
TOLERANCES = {
    "float64": Tolerance(rtol=1e-8, atol=1e-12, kink=1e-8),
    "float32": Tolerance(rtol=1e-3, atol=1e-6, kink=1e-4),
    # Below float32 the noise floor carries the allowance: the reference recomputed in the run's dtype
    # shows what a short significand does to this draw (to the relu kinks too: its a'(B) is the ctx's,
    # so a pre-activation that changes sides in the ctx changes sides there, and float32's kink margin
    # only keeps the redraws as rare as in float32). rtol is a few roundoffs of the dtype, atol none.
    "bfloat16": Tolerance(rtol=4 * ROUNDOFF["bfloat16"], atol=0.0, kink=1e-4),
    "float16": Tolerance(rtol=4 * ROUNDOFF["float16"], atol=0.0, kink=1e-4),
}


@dataclass(frozen=True)
class Comparison:
    ok: bool
    abs_err: float
    rel_err: float
    index: tuple[int, ...]  # where |got - ref| is largest
    # Set when the value could not be compared at all: "shape" (also for a value that is not an
    # array of numbers) or "non-finite".
    problem: str | None = None
    message: str | None = None
    allowed: float = 0.0  # the threshold abs_err was held to
    scale: float = 0.0  # max|ref|
    got_shape: tuple[int, ...] | None = None  # what a "shape" problem returned


def overshoot(result: Comparison) -> float:
    """How far past its allowance a comparison is, as a share of it (above 1: it failed). The worst
    of several draws (or JVP directions, or products) is the one with the largest: the largest
    relative error is nearly always a draw whose reference is about zero, where rounding alone makes
    a large ratio and the allowance is wide."""
    return result.abs_err / result.allowed if result.allowed > 0 else (math.inf if result.abs_err > 0 else 0.0)


class NotAnArray:
    """Stands for a returned value that is not an array of numbers, for compare() to name; the value
    itself is not kept, since asking it anything more (its shape, its __array__) may raise."""

    def __init__(self, value, kind: str | None = None):
        # `kind` names a value seen elsewhere: another process's, in a run over several (bncheck.hosts).
        self.kind = kind or type(value).__name__


def as_array(value) -> np.ndarray | None:
    """The value as a float64 array, or None when it is not an array of numbers."""
    if type(value) is np.ndarray and value.dtype == np.float64:
        return value  # the common case, and the sweep's hot path: no copy
    if isinstance(value, (list, tuple, int, float, complex, bool)) or value is None:
        return None
    if not hasattr(value, "shape") or not hasattr(value, "dtype"):
        return None
    array = np.asarray(value)
    if not (float_dtype(array.dtype) or np.issubdtype(array.dtype, np.integer)):
        return None
    return array.astype(np.float64)


def compare(value, ref: np.ndarray, rtol: float, atol: float, floor: float = 0.0) -> Comparison:
    got = None if isinstance(value, NotAnArray) else as_array(value)
    if got is None:
        kind = value.kind if isinstance(value, NotAnArray) else type(value).__name__
        # Not an array where an array belongs is a slip of shape: one diagnosis code for both.
        return Comparison(
            False, np.inf, np.inf, (), "shape",
            f"returned a {kind}, not an array of numbers, expected shape {ref.shape}", got_shape=(),
        )
    if got.shape != ref.shape:
        return Comparison(
            False, np.inf, np.inf, (), "shape", f"returned shape {got.shape}, expected {ref.shape}",
            got_shape=got.shape,
        )
    if got.size == 0:
        return Comparison(True, 0.0, 0.0, (), allowed=atol)
    diff = np.abs(got - ref)
    flat = int(diff.argmax())  # the first nan where there is one
    abs_err = float(diff.reshape(-1)[flat])
    bad = ~np.isfinite(got) if not math.isfinite(abs_err) else np.zeros((), bool)
    first = int(bad.reshape(-1).argmax()) if bad.any() else 0
    return summarized(Summary(abs_err, float(np.abs(ref).max()), flat, int(bad.sum()), first), ref.shape,
                      rtol, atol, floor)


@dataclass(frozen=True)
class Summary:
    """What compare() needs of one value against its reference, computed where the two are (the
    engine computes it on the device for a traced derivation): max|got − ref| and its flat index
    (the first nan where there is one), max|ref|, and how many entries of got are not finite and
    the flat index of the first."""

    abs_err: float
    scale: float
    flat: int
    nonfinite: int
    first_nonfinite: int


def summarized(s: Summary, shape: tuple[int, ...], rtol: float, atol: float, floor: float = 0.0) -> Comparison:
    """compare()'s verdict on a value of the reference's shape, from its Summary."""
    if math.prod(shape) == 0:
        return Comparison(True, 0.0, 0.0, (), allowed=atol)
    if not math.isfinite(s.abs_err) and s.nonfinite:
        index = tuple(int(i) for i in np.unravel_index(s.first_nonfinite, shape))
        return Comparison(
            False, np.inf, np.inf, index, "non-finite",
            f"{s.nonfinite} non-finite entr{'y' if s.nonfinite == 1 else 'ies'}, first at {list(index)}",
        )
    return _judged(s.abs_err, s.scale, s.flat, shape, rtol, atol, floor)


def compare_rows(values: list, ref: np.ndarray, rtol: float, atol: float, floors: list[float]) -> list[Comparison]:
    """compare() of each value against its row of ref (a JVP check's directions), in one pass over
    the stacked rows where every value is a finite float64 array of the row's shape."""
    rows, shape = len(values), ref.shape[1:]
    if ref.size and all(type(v) is np.ndarray and v.dtype == np.float64 and v.shape == shape for v in values):
        diff = np.abs(np.stack(values) - ref).reshape(rows, -1)
        flat = diff.argmax(axis=1)
        abs_err = diff[np.arange(rows), flat]
        if np.isfinite(abs_err).all():
            scale = np.abs(ref).reshape(rows, -1).max(axis=1)
            return [
                _judged(float(e), float(m), int(i), shape, rtol, atol, floor)
                for e, m, i, floor in zip(abs_err, scale, flat, floors)
            ]
    return [compare(v, r, rtol, atol, floor) for v, r, floor in zip(values, ref, floors)]


def _judged(abs_err: float, scale: float, flat: int, shape: tuple[int, ...], rtol: float, atol: float,
            floor: float) -> Comparison:
    """The comparison of a value whose largest error, abs_err, sits at flat index `flat` of an array
    of `shape`, against a reference whose largest entry is `scale`."""
    rel_err = abs_err / scale if scale > 0 else (0.0 if abs_err == 0 else np.inf)
    index = tuple(int(i) for i in np.unravel_index(flat, shape))
    allowed = atol + rtol * scale + floor
    return Comparison(abs_err <= allowed, abs_err, rel_err, index, allowed=allowed, scale=scale)


# An error map fits a terminal: at most this many cells a side, each the largest error of its block.
MAP_ROWS, MAP_COLS, MAP_WORST = 16, 32, 5


def error_map(got: np.ndarray, ref: np.ndarray) -> dict:
    """|got − ref| of one draw as a grid of at most MAP_ROWS × MAP_COLS cells (a vector is one row),
    and the MAP_WORST worst entries with got, want and their ratio."""
    diff = np.abs(got - ref)
    matrix = diff.reshape(1, -1) if diff.ndim < 2 else diff.reshape(diff.shape[0], -1)
    rows, cols = matrix.shape
    block = (-(-rows // MAP_ROWS), -(-cols // MAP_COLS))
    grid = [
        [float(matrix[r : r + block[0], c : c + block[1]].max()) for c in range(0, cols, block[1])]
        for r in range(0, rows, block[0])
    ]
    order = np.argsort(diff, axis=None, kind="stable")[::-1][:MAP_WORST]
    entries = []
    for flat in order[diff.reshape(-1)[order] > 0]:
        index = np.unravel_index(flat, diff.shape)
        g, w = float(got[index]), float(ref[index])
        entries.append({
            "index": [int(i) for i in index], "got": g, "want": w, "abs_err": float(diff[index]),
            "ratio": g / w if w != 0 else None,
        })
    return {"shape": list(diff.shape), "block": list(block), "grid": grid, "max": float(diff.max()), "entries": entries}

# ---- matrix-free checks of a large dense Jacobian -------------------------------------------------
#
# Its products with random vectors against jax.jvp and jax.vjp, instead of a reference Jacobian built
# with jax.jacfwd. For a user's J = ∂vec(out)/∂vec(target)ᵀ and random v (shaped like the target) and u
# (shaped like the output), J vec(v) must equal vec(jax.jvp(out, target; v)) and vec(u)ᵀ J must equal
# vec(jax.vjp(out, target)(u)). A slip that moves any entry of J moves these products, with
# probability one over the random draws, and the references cost a forward and a backward pass, not
# one per column of J.


def compare_products(got, ref: dict, rough: dict, v: np.ndarray, u: np.ndarray, rtol: float, atol: float,
                     dtype: str) -> tuple[Comparison, tuple]:
    """Compares J (got) by its products with the probes v and u (vec'd, one per row) against ref's.

    Returns the comparison of the worst product and (got, ref) for it; a J that is not an array of
    the right shape, or not finite, is reported on J itself.
    """
    shape = (ref["Jv"].shape[1], ref["uJ"].shape[1])
    J = as_array(got)
    if J is None or J.shape != shape or not np.isfinite(J).all():
        # compare() names these problems before it looks at any value of the reference.
        # The reference stands in as zeros of the right shape: only its shape is ever read.
        return compare(got, np.broadcast_to(0.0, shape), rtol, atol), (got, np.zeros(shape))
    products = {"Jv": v @ J.T, "uJ": u @ J}
    results = []
    for kind, values in products.items():
        for g, r, q in zip(values, ref[kind], rough[kind]):
            results.append((compare(g, r, rtol, atol, noise_floor(r, q, dtype)), g, r))
    worst = max(results, key=lambda item: overshoot(item[0]))
    return worst[0], worst[1:]
