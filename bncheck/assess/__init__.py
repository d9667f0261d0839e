"""After the sweep: what a person needs beside the verdicts. Each step is a client of the sweep's engine
(so it computes on the run's device, in its precision, reusing its compiles) and returns its own
record; none writes into the sweep's tallies.

    warnings   checks that prove nothing, broken invariants            (assess.warnings)
    smallest   the smallest draw that fails the same way, for replays  (assess.shrink)
    fd         central differences as a third opinion                   (assess.fd, --reference fd)
    diagnosis  the slip a failed check makes, by name                   (assess.diagnose)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bncheck.assess.diagnose import diagnose_check, diagnosis
from bncheck.assess.shrink import shrink_failures
from bncheck.assess.warnings import warnings_of
from bncheck.draws import Draw
from bncheck.loader import Derivation
from bncheck.sweep import SweepResult


@dataclass
class Assessment:
    """What came after the sweep for one check."""

    warnings: list[str] = field(default_factory=list)
    smallest: Draw | None = None
    # Opinions beside the sweep's own reference: {"fd": agrees?} (None where none could be taken).
    references: dict[str, bool | None] = field(default_factory=dict)
    diagnosis: dict[str, Any] | None = None


def assess(derivation: Derivation, sweep: SweepResult) -> dict[str, Assessment]:
    """Every step above for every check of the sweep (and a diagnosis for each function whose name
    matches nothing); finite differences only with `--reference fd`."""
    settings = sweep.engine.settings
    out = {name: Assessment(warnings=warnings_of(tally, settings.dtype)) for name, tally in sweep.tallies.items()}
    for name, draw in shrink_failures(derivation, sweep).items():
        out[name].smallest = draw
    if settings.reference == "fd":
        from bncheck.assess.fd import triangulate

        for name, opinion in triangulate(derivation, sweep).items():
            out[name].references["fd"] = opinion.agrees
            out[name].warnings += opinion.warnings
    for name, tally in sweep.tallies.items():
        if tally.error is not None or tally.failures:
            out[name].diagnosis = diagnose_check(tally, sweep.engine)
    for name, why in derivation.unknown.items():
        out[name] = Assessment(diagnosis=diagnosis("unknown-name", why))
    return out
