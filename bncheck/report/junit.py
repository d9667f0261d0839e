"""JUnit XML (xunit2): one testcase per check, so a CI system lists each gradient as a test, and one
testsuite per file in a run of many files.

Every string is passed through report.text first: an exception message may hold characters XML 1.0
cannot carry at all (NUL, ESC, a lone surrogate), and a file with one of them is no XML a CI server
can read.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from pathlib import Path

from bncheck.report import Report, Reports
from bncheck.text import fold_frames, printable


def _counts(report: Report) -> dict[str, int]:
    checks = report.checks
    return {
        "tests": len(checks) or int(report.error is not None),
        "failures": sum(c.status == "fail" or (c.status in ("missing", "skipped") and not c.passed) for c in checks),
        "errors": sum(c.status == "error" for c in checks) + int(report.error is not None),
        "skipped": sum(c.status in ("missing", "skipped") and c.passed for c in checks),
    }


def to_junit(report: Report | Reports) -> ET.ElementTree:
    """One testsuite for a report, one per file for the Reports of many files."""
    reports = report.files if isinstance(report, Reports) else [report]
    counts = [_counts(r) for r in reports]
    total = {key: str(sum(c[key] for c in counts)) for key in ("tests", "failures", "errors")}
    root = ET.Element("testsuites", name="bncheck", **total)
    for r, count in zip(reports, counts):
        _suite(root, r, {key: str(n) for key, n in count.items()})
    return ET.ElementTree(root)


def _suite(root: ET.Element, report: Report, counts: dict[str, str]) -> None:
    suite = ET.SubElement(root, "testsuite", name=printable(f"bncheck.{report.model}.{report.derivation}"), **counts)
    if report.error is not None:
        # A file that could not be loaded, in a run of many: one testcase, in error.
        case = ET.SubElement(suite, "testcase", classname=printable(f"bncheck.{report.model}"), name="load")
        ET.SubElement(case, "error", message=printable(report.error), type="load").text = printable(report.error)
    for c in report.checks:
        case = ET.SubElement(
            suite, "testcase", classname=printable(f"bncheck.{report.model}"), name=printable(c.name)
        )
        text = "; ".join(
            printable(part)
            for part in (
                c.diagnosis and f"{c.diagnosis['code']}: {c.diagnosis['message']}",
                c.message,
                c.raised_line(),
                _errors(c),
                c.replay and f"replay: {c.replay}",
            )
            if part
        )
        # The body adds what a CI page shows under the one-line message: the user's traceback frames
        # and the worst entries of the error map.
        frames = (c.diagnosis or {}).get("traceback") or (c.raised or {}).get("traceback") or []
        body = "\n".join([text, *fold_frames(frames), *_worst_entries(c)])
        kind = printable(str((c.diagnosis or {}).get("code", c.status)))
        if c.status == "error":
            ET.SubElement(case, "error", message=text or "error", type=kind).text = body
        elif not c.passed:
            ET.SubElement(case, "failure", message=text or c.status, type=kind).text = body
        elif c.status in ("missing", "skipped"):
            ET.SubElement(case, "skipped", message=text or c.status)


def _errors(c) -> str | None:
    """The worst draw's errors and the maxima over draws; for a value that could not be compared
    (a wrong shape, NaN), that it could not, never 'max abs err inf'."""
    worst = c.worst or {}
    if "abs_err" in worst and c.max_abs_err is not None and math.isfinite(c.max_abs_err):
        where = " ".join([*(f"{k}={v}" for k, v in worst["shape"].items()),
                          *(f"{k} {v}" for k, v in worst.get("options", {}).items())])  # swept options' values
        note = f" ({worst['note']})" if worst.get("note") else ""
        return (f"abs err {worst['abs_err']:.3e}, rel err {worst['rel_err']:.3e}{note} at the worst draw "
                f"({where} seed {worst['seed']}); over all draws max abs err {c.max_abs_err:.3e}, "
                f"max rel err {c.max_rel_err:.3e}")
    if c.max_abs_err is not None:
        return "errors not measured: the value could not be compared with the reference"
    return None


def _worst_entries(c) -> list[str]:
    if c.error_map is None:
        return []
    return [f"at {e['index']}: got {e['got']:.6g}, want {e['want']:.6g}" for e in c.error_map["entries"]]


def junit_bytes(report: Report | Reports) -> bytes:
    tree = to_junit(report)
    ET.indent(tree)
    return ET.tostring(tree.getroot(), encoding="utf-8", xml_declaration=True) + b"\n"


def write_junit(report: Report | Reports, path: str | Path) -> None:
    Path(path).write_bytes(junit_bytes(report))
