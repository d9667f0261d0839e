"""Error metrics, the tolerance table, and the verdict on one value returned by a derivation.

A draw passes when max|got − ref| <= atol + rtol · max|ref|: the error is measured against the size of
the whole reference array, not entry by entry, so entries that are zero up to rounding (common in a
gradient through batch norm) cannot fail a correct derivation, while any slip that moves an entry by a
visible fraction of the array's scale does. `max_rel_err` is max|got − ref| / max|ref|.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Tolerance:
    rtol: float
    atol: float
    # A relu draw with min|B| / max|B| below this is redrawn: the derivation's a'(B), evaluated in the
    # run's dtype, and the float64 reference could land on different sides of the kink.
    kink: float


# Measured, not guessed: README "Tolerances" gives the error distributions these rest on and the
# command that reproduces them.
TOLERANCES = {
    "float64": Tolerance(rtol=1e-8, atol=1e-12, kink=1e-9),
    "float32": Tolerance(rtol=1e-3, atol=1e-6, kink=1e-4),
}


@dataclass(frozen=True)
class Comparison:
    ok: bool
    abs_err: float
    rel_err: float
    index: tuple[int, ...]  # where |got - ref| is largest
    # Set when the value could not be compared at all: "non-array", "shape" or "non-finite".
    problem: str | None = None
    message: str | None = None


def as_array(value) -> np.ndarray | None:
    """The value as a float64 array, or None when it is not an array of numbers."""
    if isinstance(value, (list, tuple, int, float, complex, bool)) or value is None:
        return None
    if not hasattr(value, "shape") or not hasattr(value, "dtype"):
        return None
    array = np.asarray(value)
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        return None
    return array.astype(np.float64)


def compare(value, ref: np.ndarray, rtol: float, atol: float) -> Comparison:
    got = as_array(value)
    if got is None:
        kind = type(value).__name__
        return Comparison(False, np.inf, np.inf, (), "non-array", f"returned a {kind}, not an array of numbers")
    if got.shape != ref.shape:
        return Comparison(
            False, np.inf, np.inf, (), "shape", f"returned shape {got.shape}, expected {ref.shape}"
        )
    bad = ~np.isfinite(got)
    if bad.any():
        index = tuple(int(i) for i in np.argwhere(bad)[0])
        return Comparison(
            False, np.inf, np.inf, index, "non-finite",
            f"{int(bad.sum())} non-finite entr{'y' if bad.sum() == 1 else 'ies'}, first at {list(index)}",
        )
    diff = np.abs(got - ref)
    if diff.size == 0:
        return Comparison(True, 0.0, 0.0, ())
    flat = int(np.argmax(diff))
    abs_err = float(diff.reshape(-1)[flat])
    scale = float(np.abs(ref).max())
    rel_err = abs_err / scale if scale > 0 else (0.0 if abs_err == 0 else np.inf)
    index = tuple(int(i) for i in np.unravel_index(flat, diff.shape))
    return Comparison(abs_err <= atol + rtol * scale, abs_err, rel_err, index)
