"""The JSON report (CONTRACT §4; §8 for many files): strict JSON, no Infinity or NaN, whatever the checks found."""

from __future__ import annotations

import json
from pathlib import Path

from bncheck.report import Report, Reports


def to_json(report: Report | Reports) -> str:
    # allow_nan=False: a non-finite number that slipped past Report.to_dict is a bug to raise, not a
    # report that a strict reader (jq, JSON.parse, serde) refuses.
    return json.dumps(report.to_dict(), indent=2, allow_nan=False) + "\n"


def write_json(report: Report | Reports, path: str | Path) -> None:
    Path(path).write_text(to_json(report), encoding="utf-8")
