"""The smallest failing case: after a check fails, shrink the draw's shape (and try other seeds) while
it still fails the same way, so the replay shows the slip at a size a person can read.

The search is greedy and bounded: each round proposes smaller shapes than the current one (every
dimension at its lower bound, every dimension halved toward it, and one dimension at a time to its
lower bound, halfway, or one less), each with the current seed and then with other seeds, as many
draws as one batch of the sweep. They go through the sweep's own machinery (sweep.prepare and
check.Checker), zero-padded into the sweep's bucket, so a round is one call of the reference the
sweep already compiled, and only the failing check is called. The smallest candidate that fails the
same way becomes the current case; the search stops when none does, or after MAX_ROUNDS. Candidates
are ordered, never random, so the same run gives the same smallest case. Models that cannot pad would
compile every candidate shape, so they are not searched.

"The same way" means the same exception type, or the same diagnosis (code, factor, repair) of a value
that is uncomparable (wrong shape, non-finite, non-array) or misses by at least MARGIN times its
allowance: a case that only just fails could pass when its replay recomputes the reference unpadded,
rounded differently. The failing draw itself is judged the same way first; when it does not qualify,
there is no smallest case and the replay stays at that draw.
"""

from __future__ import annotations

import itertools

from bncheck.check import Checker, Tally
from bncheck.assess.diagnose import diagnose
from bncheck.draws import Draw
from bncheck.engine import Engine, Record
from bncheck.loader import Derivation
from bncheck.models import Check
from bncheck.models import Model
from bncheck.sweep import SweepResult, prepare

MAX_ROUNDS = 8
MARGIN = 2.0


def _failure(tally: Tally) -> str | None:
    """How a check failed on the one draw it saw, as a label that two alike failures share; None when it
    passed or failed by less than MARGIN times its allowance.

    A mismatch is labelled by its diagnosis, so the smallest case shows the slip the sweep showed: at
    p1 = p2 = 1 any wrong value is a multiple of the reference, and would read as a `scale` slip.
    Mismatches against a reference that is zero up to rounding share one label of their own.
    """
    if tally.error is not None:
        return "exception " + tally.error[1].split(":", 1)[0]
    problem = None
    if tally.first_problem is not None:
        comparison = tally.first_problem[1]
        problem = {"code": comparison.problem, "message": comparison.message}
    else:
        result = tally.worst_failure[1] if tally.worst_failure is not None else None
        if result is None or result.abs_err < MARGIN * result.allowed:
            return None
        if result.scale <= result.allowed:
            # The reference is zero up to rounding here, so its diagnosis turns on that rounding, which
            # the unpadded replay redoes differently.
            return "mismatch against zero"
    found = diagnose([(d.dims, got, ref) for d, got, ref in tally.evidence()], problem)
    return " ".join(str(found[key]) for key in ("code", "factor_name", "repair") if found.get(key) is not None)


def _start(tally: Tally) -> Draw | None:
    """The failing draw the report replays (the order report._from_tally reads them in): a wrong value
    where there is one, else a raise."""
    for found in (tally.first_problem, tally.worst_failure, tally.error):
        if found is not None:
            return found[0]
    return None


def _size(dims: dict[str, int]) -> tuple[int, tuple[int, ...]]:
    return sum(dims.values()), tuple(dims.values())


def _shapes(model: Model, cfg: dict, current: dict[str, int], lower: dict[str, int]) -> list[dict[str, int]]:
    """Shapes strictly smaller than `current` in some dimension and larger in none, smallest first."""
    proposals = [
        dict(lower),
        {n: (lower[n] + v) // 2 for n, v in current.items()},
    ]
    for name, value in current.items():
        for smaller in (lower[name], (lower[name] + value) // 2, value - 1):
            proposals.append({**current, name: max(smaller, lower[name])})
    unique = {tuple(p.items()): p for p in proposals if p != current and model.check_dims(p, cfg) is None}
    return sorted(unique.values(), key=_size)


def _round(shapes: list[dict[str, int]], seed: int, batch: int) -> list[Draw]:
    """Every shape with `seed`, then with seed + 1, and so on, `batch` draws in all."""
    pairs = ((s, dims) for s in itertools.count(seed) for dims in shapes)
    return [Draw(s, dict(dims)) for s, dims in itertools.islice(pairs, batch)]


def _evaluate(engine: Engine, derivation: Derivation, check: Check, draws: list[Draw], chunk: int) -> list[str | None]:
    # The references of the sweep's other checks come along, so that the compiled plans are the
    # sweep's own; dense Jacobians are left out unless this check is one.
    needed = [c for c in derivation.checks.values() if c.kind != "jacobian" or check.kind == "jacobian"]
    records: dict[int, Record] = {}
    prepare(engine, needed, draws, records, {c.name: Tally(c) for c in needed}, chunk)
    checker = Checker(derivation, engine.settings, engine.cfg, {})
    tallies = [{check.name: Tally(check)} for _ in draws]
    waiting = [v for draw, tally in zip(draws, tallies) for v in checker.draw([check], draw, records[id(draw)], tally)]
    for passes in {v.needs for v in waiting}:
        engine.references([c for c in needed if c.kind != "jacobian"], [v.draw for v in waiting if v.needs == passes], records, chunk, passes, fields=())
    for verdict in waiting:
        verdict.settle(engine.settings.dtype)
    return [_failure(tally[check.name]) for tally in tallies]


def smallest_case(engine: Engine, derivation: Derivation, tally: Tally, lower: dict[str, int], batch: int) -> Draw | None:
    """The smallest draw found that fails `tally`'s check the way the sweep's failing draw does, or None
    when that draw, recomputed on its own, does not fail clearly enough to stand for a replay."""
    start = _start(tally)
    if start is None:
        return None
    best, kind = start, None
    lower = {n: min(lower[n], v) for n, v in start.dims.items()}
    for _ in range(MAX_ROUNDS):
        shapes = _shapes(engine.model, engine.cfg, best.dims, lower)
        if not shapes:
            break  # at the lower bounds already (a replay), or shrunk to them
        draws = _round(shapes, best.seed, batch)
        if kind is None:
            # The first round labels the failing draw itself, judged like every candidate.
            draws = [Draw(start.seed, dict(start.dims)), *draws[: batch - 1]]
        verdicts = _evaluate(engine, derivation, tally.check, draws, batch)
        if kind is None:
            kind = verdicts[0]
            if kind is None:
                return None
        failing = [d for d, v in zip(draws, verdicts) if v == kind and _size(d.dims) < _size(best.dims)]
        if not failing:
            break
        best = min(failing, key=lambda d: _size(d.dims))  # min keeps the first of equals: the earliest seed
    return Draw(best.seed, dict(best.dims))


def shrink_failures(derivation: Derivation, sweep: SweepResult) -> dict[str, Draw]:
    """The smallest failing case of each failed check of the sweep that has one (the report's
    `smallest` and `replay`)."""
    engine, settings = sweep.engine, sweep.engine.settings
    failed = [t for t in sweep.tallies.values() if t.error is not None or t.failures]
    if not failed or not engine.model.paddable:
        return {}  # a model that cannot pad would compile every candidate shape: the replays stay as they are
    lower = {name: lo for name, (lo, _) in settings.sweep.items()}
    if settings.shape is not None:
        engine = engine.padded_to(dict(settings.shape))
    # As many draws a round as the sweep's own calls, so its compiled references serve unchanged.
    found = {tally.check.name: smallest_case(engine, derivation, tally, lower, sweep.chunk) for tally in failed}
    return {name: draw for name, draw in found.items() if draw is not None}
