"""The JSON report (CONTRACT §4)."""

from __future__ import annotations

import json
from pathlib import Path

from bncheck.report import Report


def write_json(report: Report, path: str | Path) -> None:
    Path(path).write_text(json.dumps(report.to_dict(), indent=2) + "\n", encoding="utf-8")
