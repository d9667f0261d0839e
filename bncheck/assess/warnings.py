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

from bncheck.check import Tally
from bncheck.text import counted


def warnings_of(tally: Tally, dtype: str) -> list[str]:
    """What the sweep counted for one check, as warnings."""
    out = []
    if tally.compared and tally.vanishing == tally.compared:
        out.append(
            f"the reference is zero (up to rounding) on {_all(tally.compared)}, so this check cannot tell "
            f"the derivation from a function returning zeros; widen the sweep"
        )
    if tally.first_broken is not None:
        draw, message = tally.first_broken
        out.append(f"invariant broken on {tally.broken} of {counted(tally.ran, 'draw')}, first at "
                   f"{draw.case_id(dtype)}: {message}")
    return out


def _all(n: int) -> str:
    return "its one draw" if n == 1 else f"all {n} draws"
