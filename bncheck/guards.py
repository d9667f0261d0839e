"""Guards against checks that prove nothing, and the models' invariants.

A check passes when the derivation matches its reference; when the reference is zero on every draw
(a loss that batch norm makes constant in its input, a direction that only rescales a column of G1 at
eps = 0), a function returning zeros would pass as well, and the pass says nothing. A reference counts
as zero up to rounding on a draw when zeros would pass that draw: its largest entry is within the
draw's allowance (atol, rtol and, where the draw needed one, the noise floor).

A model's invariants (Model.invariants) are properties every correct value has, whatever the
reference: a value that breaks one is named by it even where the comparison alone could not say why.

Both are warnings: they never change a check's verdict.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # sweep imports this module
    from bncheck.compare import Comparison
    from bncheck.sweep import Draw, SweepResult, Tally

Invariant = Callable[[Any, Any], "str | None"]


def vanishes(results: list[Comparison]) -> bool:
    """A function returning zeros would pass this draw too: each reference (one per JVP direction) is
    within its allowance of zero."""
    return all(r.scale <= r.allowed for r in results)


def check_invariant(tally: Tally, draw: Draw, ctx, got, invariant: Invariant | None) -> None:
    """Notes a value that breaks its check's invariant (called by the sweep for each draw whose value
    could be compared)."""
    if invariant is not None:
        with np.errstate(all="ignore"):
            broken = invariant(ctx, got)
        if broken:
            tally.broken.append((draw, broken))


def warn(sweep: SweepResult, dtype: str) -> None:
    """Turns what inspect noted over the sweep into each tally's warnings."""
    for tally in sweep.tallies.values():
        compared = len(tally.rel_errors)
        if compared and tally.vanishing == compared:
            tally.warnings.append(
                f"the reference is zero (up to rounding) on all {compared} draws, so this check cannot tell "
                f"the derivation from a function returning zeros; widen the sweep"
            )
        if tally.broken:
            draw, message = tally.broken[0]
            tally.warnings.append(
                f"invariant broken on {len(tally.broken)} of {tally.ran} draws, first at "
                f"{draw.case_id(dtype)}: {message}"
            )
