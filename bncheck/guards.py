"""Warnings about checks that prove nothing, and about values that break a model's invariant.

A check passes when the derivation matches its reference; when the reference is zero on every draw
(a loss that batch norm makes constant in its input, a direction that only rescales a column of G1 at
eps = 0), a function returning zeros would pass as well, and the pass says nothing. A reference counts
as zero up to rounding on a draw when zeros would pass that draw: its largest entry is within the
draw's allowance (atol, rtol and, where the draw needed one, the noise floor). The sweep counts those
draws (check.Verdict.settle), and the draws whose value breaks one of the model's invariants
(Model.invariants: properties every correct value has, whatever the reference).

Both are warnings: they never change a check's verdict.
"""

from __future__ import annotations

from bncheck.sweep import SweepResult


def warn(sweep: SweepResult, dtype: str) -> None:
    """Turns what the sweep counted into each tally's warnings."""
    for tally in sweep.tallies.values():
        if tally.compared and tally.vanishing == tally.compared:
            tally.warnings.append(
                f"the reference is zero (up to rounding) on all {tally.compared} draws, so this check cannot tell "
                f"the derivation from a function returning zeros; widen the sweep"
            )
        if tally.first_broken is not None:
            draw, message = tally.first_broken
            tally.warnings.append(
                f"invariant broken on {tally.broken} of {tally.ran} draws, first at {draw.case_id(dtype)}: {message}"
            )
