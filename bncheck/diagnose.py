"""Names what a failed check got wrong, from the failing draws' values and references.

A diagnosis is a dict: `code` (CONTRACT §4), `message` (one plain sentence) and its evidence.
"""

from __future__ import annotations

import numpy as np

from bncheck.compare import as_array

# Factors a hand derivation is commonly off by, as functions of the batch size N, and their names.
_FACTORS = {
    "N": lambda N: N,
    "1/N": lambda N: 1 / N,
    "2": lambda N: 2.0,
    "1/2": lambda N: 0.5,
    "2N": lambda N: 2 * N,
    "N/2": lambda N: N / 2,
    "2/N": lambda N: 2 / N,
    "1/(2N)": lambda N: 1 / (2 * N),
    "N/(N-1)": lambda N: N / (N - 1) if N > 1 else np.nan,
    "(N-1)/N": lambda N: (N - 1) / N,
}
_CLOSE = 1e-6


def _factor(got: np.ndarray, ref: np.ndarray) -> float | None:
    """c with got ≈ c·ref, when the two are parallel to within _CLOSE, else None."""
    norm = float(ref.ravel() @ ref.ravel())
    if norm == 0:
        return None
    c = float(got.ravel() @ ref.ravel()) / norm
    residual = np.abs(got - c * ref).max()
    return c if residual <= _CLOSE * max(np.abs(got).max(), np.abs(c * ref).max()) else None


def _name_factor(factors: list[tuple[float, int]]) -> str | None:
    """The name of a factor that explains every draw, given (factor, N) pairs."""
    for name, f in _FACTORS.items():
        for sign, prefix in ((1, ""), (-1, "-")):
            if all(np.isclose(c, sign * f(N), rtol=_CLOSE) for c, N in factors):
                return prefix + name
    return None


def diagnose(problem: dict | None, samples: list[tuple[dict, object, np.ndarray]]) -> dict:
    """problem: an uncomparable value already found (shape, non-array, non-finite), if any;
    samples: (dims, got, ref) for failing draws."""
    if problem is not None:
        return problem
    pairs = [(dims, as_array(got), ref) for dims, got, ref in samples]
    factors = [(_factor(got, ref), dims.get("N")) for dims, got, ref in pairs]
    if factors and all(c is not None for c, _ in factors):
        values = [c for c, _ in factors]
        if all(np.isclose(c, -1, rtol=_CLOSE) for c in values):
            return {"code": "sign", "message": "the sign is flipped: got = -reference", "factor": -1.0}
        # A factor that follows N names the slip (a dropped 1/N), so it is tried before a constant.
        named = _name_factor([(c, N) for c, N in factors if N is not None]) if "N" in pairs[0][0] else None
        if named:
            c, N = factors[0]
            return {
                "code": "scale",
                "message": f"off by a factor of {named} (= {c:.6g} at N = {N})",
                "factor": c,
                "factor_name": named,
            }
        if all(np.isclose(c, values[0], rtol=_CLOSE) for c in values):
            return {
                "code": "scale",
                "message": f"off by a constant factor {values[0]:.6g}: got = {values[0]:.6g} x reference",
                "factor": values[0],
            }
    return {"code": "unknown", "message": "differs from the reference in a way no known slip explains"}
