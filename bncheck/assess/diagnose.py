"""Names what a failed check got wrong, from the failing draws' values and references.

A diagnosis is a dict: `code` (CONTRACT §4), `message` (one plain sentence) and its evidence. The
explanations are tried from the cheapest to the dearest, and the first that fits every failing draw
wins:

1. a value that cannot be compared: `non-finite`; `shape`, with a repair (flatten, transpose, take the
   diagonal) where one turns it into the expected shape, and the repaired value diagnosed in turn;
2. got = c · ref with c the same named factor of N on every draw (N, 1/N, 2, N/(N-1), their products):
   `scale` (`sign` for c = -1);
3. got = c · refᵀ for square results, or a dense Jacobian whose rows or columns follow row-major vec
   order: `transpose`;
4. got = ref scaled per column (or per entry) by a named factor times a per-unit array of the draw, such
   as sigma² or gamma: `scale`;
5. got matches, up to 2. or 4., the reference under one of the model's variants (Model.variants):
   batch statistics held constant, the other ddof. Each costs a compile, so they come last; then,
   up to 2., the reference under another eps (a compile more): `eps`, naming the eps it matches;
6. when none fits to rounding, 1.–5. again, to _APPROXIMATE on _QUORUM of the draws, said so;
7. `unknown`.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from bncheck.check import Tally
from bncheck.compare import as_array
from bncheck.engine import Engine

# Every diagnosis code bncheck reports, and what it means (CONTRACT §4 and the README's table): no
# other module makes one.
CODES = {
    "scale": "got = c × reference, c named where it can be (N, 1/N, 2, ...), or a per-column factor",
    "sign": "got = −reference",
    "transpose": "got = referenceᵀ, or a dense Jacobian laid out differently (row-major vec, Kronecker factors swapped)",
    "shape": "the wrong shape, or not an array of numbers; a repair that fits is diagnosed in turn",
    "batch-stats-constant": "matches the gradient with the batch statistics (mu and sigma, mu, or sigma) held constant",
    "ddof": "matches the derivative for the other variance convention",
    "activation-derivative": "matches the gradient with the activation's derivative a′ left out (taken as 1)",
    "axes": "matches the derivative with the statistics over other axes (N alone, per pixel, for per channel)",
    "zeros": "every entry is zero where the reference is not",
    "eps": "matches the reference computed with another eps (code with an eps of its own)",
    "non-finite": "NaN or inf in the value",
    "exception": "the function raised",
    "unknown-name": "a function whose name matches no target or output of the model",
    "unknown": "none of the above fits",
}


def diagnosis(code: str, message: str, **evidence: Any) -> dict[str, Any]:
    """A diagnosis: its code (one of CODES), one plain sentence, and its evidence."""
    if code not in CODES:
        raise ValueError(f"no diagnosis code {code!r}")
    return {"code": code, "message": message, **evidence}

# Relative closeness for "got is c times ref": far above float64 rounding in a well-conditioned result,
# far below any slip. Float32 runs use a looser one (see closeness()).
_CLOSE = 1e-6
# When nothing fits exactly, the same explanations are tried again to this closeness, on this share of
# the failing draws, and one that fits is reported as approximate, with its share: a derivation that
# also hard-codes another eps or ddof (the seed question's own scale() under the default ddof 0, eps
# 1e-5, where eps dominates a few draws' variance) still gets its main slip named.
_APPROXIMATE, _QUORUM = 1e-3, 0.75


def closeness(rtol: float) -> float:
    return max(_CLOSE, 10 * rtol)


class Rerun(Protocol):
    """The failing draws recomputed (bncheck.variants.Rerun); pairs with the samples by position."""

    def fields(self, forward: bool = True) -> list[dict[str, np.ndarray]]: ...

    def variants(self) -> dict[str, list[np.ndarray]]: ...

    def eps_variants(self) -> tuple[float, dict[float, list[np.ndarray]]] | None: ...


Pair = tuple[dict[str, int], np.ndarray, np.ndarray]  # dims, got, ref


# ---- factors ------------------------------------------------------------------------------------


def _factor_names() -> list[tuple[str, tuple[int, int, int, int]]]:
    """(name, (a, b, c, h)) for 2^a · N^b · (N-1)^c · (N/(N-1))^(h/2), the simplest first; N-following
    before constant at equal simplicity, since a factor that follows N names the slip (a dropped 1/N)."""
    out = []
    # h: a power ±1/2 of N/(N-1), the ratio of the two conventions' sigmas (ddof 0 against 1).
    for a, b, c, h in itertools.product((0, 1, -1), (0, 1, -1, 2, -2), (0, 1, -1), (0, 1, -1)):
        atoms = [("2", a), ("N", b), ("(N-1)", c)]
        up = "".join(_power(n, e) for n, e in atoms if e > 0) or "1"
        down = [_power(n, -e) for n, e in atoms if e < 0]
        name = up + ("" if not down else "/" + (down[0] if len(down) == 1 else f"({''.join(down)})"))
        if h:
            root = "√(N/(N-1))" if h > 0 else "√((N-1)/N)"
            name = root if name == "1" else f"{name}·{root}"
        elif name == "(N-1)":
            name = "N-1"
        out.append((name, (a, b, c, h)))
    # Equal values can have two names (N-1 · √(N/(N-1)) = N · √((N-1)/N)): the one with fewer N-1 wins.
    out.sort(key=lambda t: (sum(map(abs, t[1])), t[1][3] != 0, t[1][1:] == (0, 0, 0), abs(t[1][2])))
    return out


def _power(name: str, e: int) -> str:
    return name + ("²" if e == 2 else "")


_FACTORS = _factor_names()


@dataclass(frozen=True)
class Fit:
    """How well an explanation must fit: to `close`, relative, on at least `quorum` of the failing draws."""

    close: float
    quorum: float = 1.0

    def enough(self, fitted: int, total: int) -> bool:
        return fitted > 0 and fitted >= math.ceil(self.quorum * total)


def _name_factor(values: list[tuple[float | None, dict[str, int]]], fit: Fit) -> tuple[str, int] | None:
    """The simplest factor that explains enough (value, dims) pairs (None never fits), and how many."""
    c = np.array([np.nan if v is None else v for v, _ in values], dtype=np.float64)
    if not fit.enough(int(np.isfinite(c).sum()), len(values)):
        return None
    N = np.array([dims.get("N", np.nan) for _, dims in values], dtype=np.float64)
    with np.errstate(all="ignore"):
        for name, (a, b, k, h) in _FACTORS:
            if (b or k or h) and np.isnan(N).any():
                continue
            f = 2.0**a * N**b * (N - 1) ** k * (N / (N - 1)) ** (h / 2)
            for sign, prefix in ((1, ""), (-1, "-")):
                fitted = int((np.abs(c - sign * f) <= fit.close * np.abs(f)).sum())
                if fit.enough(fitted, len(values)):
                    return prefix + name, fitted
    return None


def _parallel(got: np.ndarray, ref: np.ndarray, close: float) -> float | None:
    """c with got ≈ c·ref, when the two are parallel to within `close`, else None."""
    with np.errstate(all="ignore"):  # a value of 1e308 overflows the products: it is then no multiple
        norm = float(ref.ravel() @ ref.ravel())
        if norm == 0:
            return None
        c = float(got.ravel() @ ref.ravel()) / norm
        residual = np.abs(got - c * ref).max()
        return c if residual <= close * max(np.abs(got).max(), np.abs(c * ref).max()) else None


def _evidence(values: list[tuple[float | None, dict[str, int]]], name: str, fitted: int) -> dict[str, Any]:
    """The factor and N of the first draw the name fits, and the share of draws it fits when not all."""
    c, dims = next((c, d) for c, d in values if c is not None)
    out: dict[str, Any] = {"factor_name": name, "factor": c}
    if "N" in dims:
        out["N"] = dims["N"]
    if fitted < len(values):
        out["fits"] = f"{fitted} of {len(values)} failing draws"
    return out


def _scalar(pairs: list[Pair], fit: Fit) -> dict[str, Any] | None:
    """got = c·ref on enough draws: {"factor", "factor_name"?, "N"?}, or None."""
    values = [(_parallel(got, ref, fit.close), dims) for dims, got, ref in pairs]
    named = _name_factor(values, fit)
    if named is not None:
        return _evidence(values, *named)
    factors = [c for c, _ in values]
    if factors and None not in factors and all(np.isclose(c, factors[0], rtol=fit.close) for c in factors):
        return {"factor": factors[0]}
    return None


def _per_unit(pairs: list[Pair], fields: list[dict[str, np.ndarray]], fit: Fit) -> dict[str, Any] | None:
    """got = s · v^k ⊙ ref along one axis, with v a 1-D array of each draw (sigma, gamma, ...), k in
    ±1, ±2 and s a named factor: {"factor_name", "per", ...}, or None."""
    ndim = pairs[0][1].ndim
    names = [n for n, v in fields[0].items() if np.ndim(v) == 1]
    for axis in range(ndim):
        per_slice = [_slice_factors(got, ref, axis, fit.close) for _, got, ref in pairs]
        if not fit.enough(sum(c is not None for c in per_slice), len(pairs)):
            continue
        for name, k in itertools.product(names, (1, -1, 2, -2)):
            values = [(_unit_scalar(c, f.get(name), k, fit.close), dims)
                      for c, f, (dims, _, _) in zip(per_slice, fields, pairs)]
            named = _name_factor(values, fit)
            if named is None:
                continue
            unit = name + ("²" if abs(k) == 2 else "")
            if k > 0:
                product = unit if named[0] == "1" else f"{named[0]}·{unit}"
            else:
                product = f"({named[0]})/{unit}" if "/" in named[0] else f"{named[0]}/{unit}"
            return {**_evidence(values, *named), "factor_name": product,
                    "per": "entry" if ndim == 1 else ("column" if axis == ndim - 1 else "row"), "field": name,
                    "power": k}
    return None


def _unit_scalar(c: np.ndarray | None, v: np.ndarray | None, k: int, close: float) -> float | None:
    """s with c_j = s · v_j^k for every slice j, if there is one."""
    if c is None or v is None or np.ndim(v) != 1 or len(v) != len(c):
        return None
    with np.errstate(all="ignore"):
        q = c / v**k
    q = q[np.isfinite(q)]
    return float(q[0]) if q.size and np.allclose(q, q[0], rtol=close, atol=0) else None


def _slice_factors(got: np.ndarray, ref: np.ndarray, axis: int, close: float) -> np.ndarray | None:
    """c_j with got_j ≈ c_j·ref_j for each slice j along `axis` (NaN where ref_j is zero), or None."""
    g = np.moveaxis(got, axis, 0).reshape(got.shape[axis], -1)
    r = np.moveaxis(ref, axis, 0).reshape(ref.shape[axis], -1)
    norms = (r * r).sum(1)
    with np.errstate(all="ignore"):
        c = np.where(norms > 0, (g * r).sum(1) / norms, np.nan)
    fitted = np.where(np.isnan(c)[:, None], 0.0, c[:, None] * r)
    scale = max(np.abs(g).max(), np.abs(fitted).max())
    return c if scale > 0 and np.abs(g - fitted).max() <= close * scale else None


def _factor_words(found: dict[str, Any]) -> str:
    name = found.get("factor_name")
    if name is None:
        return f"off by a constant factor {found['factor']:.6g}"
    if "per" in found:
        return f"off by a factor of {name} in each {found['per']}" + (f" (N = {found['N']})" if "N" in found else "")
    value = f" (= {found['factor']:.6g} at N = {found['N']})" if "N" in found else ""
    gloss = next((f", {words}" for part, words in _GLOSSES.items() if part in name.removeprefix("-")), "")
    return f"off by a factor of {name}{value}{gloss}"


# What the less obvious factors mean, said after the factor.
_GLOSSES = {
    "√(N/(N-1))": "the ratio of sigma with ddof 1 to sigma with ddof 0",
    "√((N-1)/N)": "the ratio of sigma with ddof 0 to sigma with ddof 1",
    "N/(N-1)": "the ratio of the variance divisors N and N - 1 (ddof 0 against 1)",
    "(N-1)/N": "the ratio of the variance divisors N - 1 and N (ddof 1 against 0)",
}


# ---- layouts ------------------------------------------------------------------------------------


def _row_major_order(shape: tuple[int, ...]) -> np.ndarray:
    """perm with perm[row-major position] = column-major position, for an array of `shape`."""
    size = int(np.prod(shape))
    return np.arange(size).reshape(shape[::-1]).transpose().reshape(-1)


def _transpose(pairs: list[Pair], layout: Callable | None, fit: Fit) -> dict[str, Any] | None:
    if all(got.ndim == 2 and got.shape[0] == got.shape[1] for _, got, _ in pairs):
        found = _scalar([(d, got, ref.T) for d, got, ref in pairs], fit)
        if found is not None:
            return {**found, "order": "transposed"}
    if layout is None:
        return None
    shapes = [layout(dims) for dims, _, _ in pairs]
    if any(ref.shape != (int(np.prod(o)), int(np.prod(t))) for (_, _, ref), (o, t) in zip(pairs, shapes)):
        return None  # products with probe vectors (a matrix-free check), not the Jacobian itself
    for rows, cols in ((True, False), (False, True), (True, True)):
        moved = []
        for (dims, got, ref), (out_shape, target_shape) in zip(pairs, shapes):
            r = ref[_row_major_order(out_shape)] if rows else ref
            moved.append((dims, got, r[:, _row_major_order(target_shape)] if cols else r))
        found = _scalar(moved, fit)
        if found is not None:
            which = {(True, False): "rows", (False, True): "columns", (True, True): "rows and columns"}[rows, cols]
            return {**found, "order": f"{which} follow row-major vec order"}
    return _permuted(pairs, fit)


def _projection(n: int) -> np.ndarray:
    """A fixed projection for matching rows and columns: random entries tell distinct rows apart, and
    the seed gives the same values the same diagnosis every time."""
    return np.random.default_rng(16).standard_normal(n)


def _matched(g: np.ndarray, r: np.ndarray, close: float) -> np.ndarray | None:
    """order with g[i] ≈ r[order[i]] for rows summarised by one number each (g, r), or None."""
    og, orf = np.argsort(g, kind="stable"), np.argsort(r, kind="stable")
    scale = max(np.abs(g).max(initial=0), np.abs(r).max(initial=0))
    if not np.allclose(g[og], r[orf], rtol=0, atol=close * max(scale, 1e-300)):
        return None
    order = np.empty_like(og)
    order[og] = orf
    return order


def _permutation(got: np.ndarray, ref: np.ndarray, close: float) -> tuple[np.ndarray, np.ndarray] | None:
    """(rows, cols) with got ≈ ref[rows][:, cols]: got's rows and columns are ref's in other orders.
    Columns are matched first by a summary that ignores the order of their entries (their sorted
    entries, projected), then rows by a projection of the columns so ordered."""
    if got.ndim != 2 or got.shape != ref.shape or got.size == 0:
        return None
    R, C = got.shape
    cols = _matched(np.sort(got, axis=0).T @ _projection(R), np.sort(ref, axis=0).T @ _projection(R), close)
    if cols is None:
        return None
    rows = _matched(got @ _projection(C), ref[:, cols] @ _projection(C), close)
    if rows is None:
        return None
    moved = ref[rows][:, cols]
    scale = max(np.abs(got).max(), np.abs(ref).max())
    return (rows, cols) if np.abs(got - moved).max() <= close * scale else None


def _commutation(order: np.ndarray) -> tuple[int, int] | None:
    """(a, b) when `order` is the commutation matrix K_{a,b} (K_{a,b} vec(M) = vec(Mᵀ) for M a×b)
    with a, b > 1, the order in which swapping the factors of a Kronecker product leaves rows or
    columns (X ⊗ I_b = K_{a,b} (I_b ⊗ X) K_{b,c} for X a×c); else None."""
    n = len(order)
    for a in range(2, n // 2 + 1):
        if n % a == 0 and n // a > 1 and np.array_equal(order, _row_major_order((a, n // a))):
            return a, n // a
    return None


def _permuted(pairs: list[Pair], fit: Fit) -> dict[str, Any] | None:
    """A dense Jacobian whose rows or columns (or both) are the reference's in another order, on
    every draw: named for Kronecker factors in the wrong order where each permutation is a
    commutation matrix, else as a permutation."""
    found = [_permutation(got, ref, fit.close) for _, got, ref in pairs]
    if not fit.enough(sum(f is not None for f in found), len(pairs)):
        return None
    sides: dict[str, set] = {"rows": set(), "columns": set()}
    for f in filter(None, found):
        for side, order in zip(sides, f):
            if not np.array_equal(order, np.arange(len(order))):
                ab = _commutation(order)
                # got = P ref Q: P's order is its rows' (K_{a,b}), Q's the transpose's (K_{b,a}).
                sides[side].add(ab if ab is None or side == "rows" else ab[::-1])
    moved = [side for side, kinds in sides.items() if kinds]
    if not moved:
        return None  # got equals ref: no permutation explains a failure
    which = " and ".join(moved)
    swapped = all(kinds and None not in kinds for kinds in (sides[side] for side in moved))
    out: dict[str, Any] = {"factor_name": "1", "factor": 1.0}
    fitted = sum(f is not None for f in found)
    if fitted < len(pairs):
        out["fits"] = f"{fitted} of {len(pairs)} failing draws"
    if swapped:
        named = ", ".join(f"K_{{{a},{b}}}" for side in moved for a, b in sorted(sides[side]))
        return {**out, "order": f"{which} are in a commutation matrix's order ({named})", "kronecker": "swapped"}
    return {**out, "order": f"{which} are in another order"}


# ---- repairs of a wrong shape -------------------------------------------------------------------


def _flatten(got: np.ndarray, shape: tuple[int, ...]) -> np.ndarray | None:
    same = got.size == int(np.prod(shape)) and got.squeeze().shape == tuple(s for s in shape if s != 1)
    return got.reshape(shape) if same else None


def _transposed(got: np.ndarray, shape: tuple[int, ...]) -> np.ndarray | None:
    return got.T if got.ndim == 2 and got.T.shape == shape else None


def _diagonal(got: np.ndarray, shape: tuple[int, ...]) -> np.ndarray | None:
    square = got.ndim == 2 and got.shape[0] == got.shape[1]
    return np.diagonal(got).copy() if square and len(shape) == 1 and got.shape[0] == shape[0] else None


_REPAIRS = {"flatten": _flatten, "transpose": _transposed, "diagonal": _diagonal}
_REPAIR_WORDS = {"flatten": "flattened", "transpose": "transposed", "diagonal": "its diagonal"}


def _repair(pairs: list[Pair]) -> tuple[str, list[Pair]] | None:
    """The first repair that gives every wrongly shaped value the expected shape, applied."""
    for name, fix in _REPAIRS.items():
        repaired = []
        for dims, got, ref in pairs:
            fixed = fix(got, ref.shape)
            if fixed is None and got.shape != ref.shape:
                break
            # A transposed result keeps being one at square sizes, where its shape happens to fit.
            repaired.append((dims, fixed if fixed is not None else got, ref))
        else:
            return name, repaired
    return None


# ---- the diagnosis ------------------------------------------------------------------------------


_VARIANT_WORDS = {
    "batch-stats-constant": "matches the gradient with the batch mean and sigma held constant "
                            "(their dependence on the input is missing)",
    "batch-stats-constant:mean": "matches the gradient with the batch mean held constant "
                                 "(the mean's dependence on the input is missing)",
    "batch-stats-constant:sigma": "matches the gradient with sigma held constant "
                                  "(sigma's dependence on the input is missing)",
    "activation-derivative": "matches the gradient with the activation's derivative a′ left out of the "
                             "chain rule (taken as 1)",
    "axes": "matches the derivative with the statistics taken over N alone, each (c, h, w) its own unit, "
            "where they are per channel over N, H and W",
    "ddof": "matches the derivative for the other variance convention (divisor N vs N - 1) "
            "on this run's forward record",
    "ddof:forward": "matches the reference computed with the other variance convention (divisor N vs N - 1)",
}


def diagnose(
    samples: list[tuple[dict, object, np.ndarray]],
    problem: dict | None = None,
    *,
    rerun: Rerun | None = None,
    layout: Callable[[dict[str, int]], tuple[tuple[int, ...], tuple[int, ...]]] | None = None,
    close: float = _CLOSE,
) -> dict:
    """samples: (dims, got, ref) of failing draws; problem: {"code", "message"} when a value could not
    be compared (shape, non-array, non-finite); rerun: the draws recomputed, for per-unit factors and
    variants; layout(dims): (output shape, target shape) of a dense Jacobian, for vec orders."""
    exact = _diagnose(samples, problem, rerun, layout, Fit(close))
    if not _unexplained(exact) or close >= _APPROXIMATE:
        return exact
    rough = _diagnose(samples, problem, rerun, layout, Fit(_APPROXIMATE, _QUORUM))
    if _unexplained(rough):
        return exact
    fits = rough.get("fits") or (rough.get("repaired") or {}).get("fits")
    note = f" (approximately: to {_APPROXIMATE:g} relative{f', on {fits}' if fits else ''})"
    return {**rough, "message": rough["message"] + note, "approximate": True}


def _unexplained(diagnosis: dict) -> bool:
    repaired = diagnosis.get("repaired")
    return diagnosis["code"] == "unknown" or (repaired is not None and repaired["code"] == "unknown")


def _diagnose(samples, problem, rerun, layout, fit: Fit) -> dict:
    if problem is not None and problem["code"] == "non-finite":
        return problem
    arrays = [(dims, as_array(got), ref) for dims, got, ref in samples]
    # `keep` maps the pairs back to the samples, which the rerun's lists follow.
    keep = [i for i, (_, g, _) in enumerate(arrays) if g is not None and np.isfinite(g).all()]
    pairs = [arrays[i] for i in keep]
    if problem is not None:
        fixed = _repair(pairs) if pairs else None
        if fixed is None:
            return problem
        repair, repaired = fixed
        inner = _explain(repaired, keep, rerun, layout, fit, top=False)
        if inner is None:
            said = "it matches the reference"
        elif inner["code"] == "unknown":
            said = "it still differs in a way no known slip explains"
        elif inner["code"] == "sign":
            said = "its sign is flipped"
        else:
            said = ("it is " if inner["code"] in ("scale", "transpose") else "it ") + inner["message"]
        return diagnosis("shape", f"{problem['message']}; {_REPAIR_WORDS[repair]}, {said}", repair=repair, repaired=inner)
    found = _explain(pairs, keep, rerun, layout, fit, top=True)
    assert found is not None
    return found


def _explain(pairs: list[Pair], keep: list[int], rerun: Rerun | None, layout, fit: Fit, top: bool) -> dict | None:
    """A diagnosis of same-shaped values; None when they match the reference (after a repair)."""
    # Draws where both values are negligible next to the others (a gradient that vanishes at p1 = 1,
    # say) fit any factor and none: they are no evidence either way.
    scale = max(max(np.abs(g).max(initial=0), np.abs(r).max(initial=0)) for _, g, r in pairs) if pairs else 0
    evident = [j for j, (_, g, r) in enumerate(pairs) if max(np.abs(g).max(initial=0), np.abs(r).max(initial=0)) > fit.close * scale]
    pairs, keep = [pairs[j] for j in evident], [keep[j] for j in evident]
    if not pairs:
        return _unknown() if top else None
    zeros = sum(not g.any() for _, g, _ in pairs)
    if fit.enough(zeros, len(pairs)):
        # A factor of 0 fits, but says less than this: nothing was computed, or all of it was lost.
        return diagnosis("zeros", "returns zeros: every entry is 0, where the reference is not", factor=0.0,
                         **({"fits": f"{zeros} of {len(pairs)} failing draws"} if zeros < len(pairs) else {}))
    found = _scalar(pairs, fit)
    if found is not None and found.get("factor_name") == "1":
        # At the top level the draws failed the check, so "equal to within `close`" is no explanation.
        return _unknown() if top else None
    if found is not None:
        if found.get("factor_name") == "-1":
            return diagnosis("sign", "the sign is flipped: got = -reference", **found)
        return diagnosis("scale", _factor_words(found), **found)
    found = _transpose(pairs, layout, fit)
    if found is not None:
        words = _order_words(found)
        extra = "" if found.get("factor_name") == "1" else f", and {_factor_words(found)}"
        return diagnosis("transpose", words + extra, **found)
    if rerun is None:
        return _unknown()
    # Per-unit factors of the inputs and parameters first: the forward record costs a compile.
    for forward in (False, True):
        found = _per_unit(pairs, [rerun.fields(forward)[i] for i in keep], fit)
        if found is not None:
            return diagnosis("scale", _factor_words(found), **found)
    fields = [rerun.fields()[i] for i in keep]
    for key, refs in rerun.variants().items():
        moved = [(d, g, refs[i]) for (d, g, _), i in zip(pairs, keep)]
        found = _scalar(moved, fit)
        if found is None or "factor_name" not in found:
            # A constant no name fits on these draws can still be a per-column factor: at p2 = 1 (one
            # column, one draw) N·sigma² is one number, which _scalar cannot name.
            found = _per_unit(moved, fields, fit)
        if found is None:
            continue
        code = key.split(":")[0]
        words = _VARIANT_WORDS.get(key, f"matches the reference of the model's {key!r} variant")
        if found["factor_name"] != "1":
            words += f", {_factor_words(found)}"
        return diagnosis(code, words, variant=key, **found)
    return _eps(pairs, keep, rerun, fit) or _unknown()


def _eps(pairs: list[Pair], keep: list[int], rerun: Rerun, fit: Fit) -> dict | None:
    """got matches the reference computed with another eps than the run's (code with an eps of its
    own): of the eps values tried that fit, up to a factor as the variants do, the closest."""
    tried = rerun.eps_variants()
    if tried is None:
        return None
    own, by_eps = tried
    best = None
    for eps, refs in by_eps.items():
        moved = [(d, g, refs[i]) for (d, g, _), i in zip(pairs, keep)]
        found = _scalar(moved, fit)
        if found is None or "factor_name" not in found:
            continue
        c = found["factor"]
        with np.errstate(all="ignore"):
            miss = max(float(np.abs(g - c * r).max() / max(np.abs(c * r).max(), 1e-300)) for _, g, r in moved)
        if best is None or miss < best[0]:
            best = (miss, eps, found)
    if best is None:
        return None
    _, eps, found = best
    words = (f"matches the reference computed with eps = {eps:g}, not this run's eps = {own:g}: the code uses an "
             f"eps of its own (check it under that one with --eps {eps:g}, or give it the run's eps)")
    if found["factor_name"] != "1":
        words += f"; and is {_factor_words(found)}"
    return diagnosis("eps", words, variant=f"eps:{eps!r}", eps=eps, **found)


def _order_words(found: dict[str, Any]) -> str:
    order = found["order"]
    if order == "transposed":
        return "got = referenceᵀ"
    if order.endswith("row-major vec order"):
        # The row-major order of an a×b matrix is the commutation matrix K_{a,b}: what swapping the
        # factors of a Kronecker product does too (1_N ⊗ I_p2 for the seed question's I_p2 ⊗ 1_N).
        return (f"its {order} (M.reshape(-1)), or its Kronecker factors are swapped (kron(X, I) for "
                f"kron(I, X)); vec stacks columns (M.T.reshape(-1))")
    if found.get("kronecker") == "swapped":
        return (f"its {order}: the order a Kronecker product with its factors swapped has, kron(X, I) "
                f"where kron(I, X) belongs (X ⊗ I_b = K_{{a,b}} (I_b ⊗ X) K_{{b,c}} for X a×c)")
    return f"its {order}: the reference's entries, laid out differently (Kronecker factors or an index order)"


def _unknown() -> dict:
    return diagnosis("unknown", "differs from the reference in a way no known slip explains")


def diagnose_check(tally: Tally, engine: Engine) -> dict[str, Any]:
    """The diagnosis of a failed check from what its sweep kept: an exception, a value that could not
    be compared (with the model's shape hint), or the failing draws' values against their references
    and, where needed, the references under the model's variants (recomputed by the sweep's engine)."""
    from bncheck.assess.variants import Rerun

    model, settings, c = engine.model, engine.settings, tally.check
    if tally.error is not None and not tally.failures:
        # Only raises to go by (a function that raised on some draws and is wrong on others is
        # diagnosed by its wrong values; the report says where it raised).
        _, message, frames = tally.error
        return diagnosis("exception", f"raised {message}", line=frames[-1] if frames else None, traceback=frames)
    problem = None
    if tally.first_problem is not None:
        draw, comparison = tally.first_problem
        problem = diagnosis(comparison.problem, comparison.message)
        if comparison.problem == "shape" and model.shape_hint is not None:
            hint = model.shape_hint(c.name, comparison.got_shape, draw.dims, settings.model_options(model))
            problem["message"] += f"; {hint}" if hint else ""
    samples = tally.evidence()
    pairs = [(d.dims, got, ref) for d, got, ref in samples]
    if tally.product_draws:
        # Checked by products with probe vectors: the samples are products, not Jacobians, so only
        # what products keep (a factor, a sign) can be read from them.
        return diagnose(pairs, problem, close=closeness(settings.rtol))
    def layout(dims):
        return engine.output_shapes(dims)[c.output], engine.target_shape(c, dims)

    rerun = Rerun(engine, c, [d for d, _, _ in samples], [ref for _, _, ref in samples])
    return diagnose(pairs, problem, rerun=rerun, layout=layout if c.kind == "jacobian" else None,
                    close=closeness(settings.rtol))
