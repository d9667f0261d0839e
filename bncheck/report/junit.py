"""JUnit XML (xunit2): one testcase per check, so a CI system lists each gradient as a test."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from bncheck.report import Report


def to_junit(report: Report) -> ET.ElementTree:
    checks = report.checks
    failures = sum(c.status == "fail" or (c.status in ("missing", "skipped") and not c.passed) for c in checks)
    errors = sum(c.status == "error" for c in checks)
    skipped = sum(c.status in ("missing", "skipped") and c.passed for c in checks)
    counts = {"tests": str(len(checks)), "failures": str(failures), "errors": str(errors)}
    root = ET.Element("testsuites", name="bncheck", **counts)
    suite = ET.SubElement(
        root,
        "testsuite",
        name=f"bncheck.{report.model}.{report.derivation}",
        **counts,
        skipped=str(skipped),
    )
    for c in checks:
        case = ET.SubElement(suite, "testcase", classname=f"bncheck.{report.model}", name=c.name)
        text = "; ".join(
            part
            for part in (
                c.diagnosis and f"{c.diagnosis['code']}: {c.diagnosis['message']}",
                c.message,
                c.max_abs_err is not None and f"max abs err {c.max_abs_err:.3e}, max rel err {c.max_rel_err:.3e}",
                c.replay and f"replay: {c.replay}",
            )
            if part
        )
        # The body adds what a CI page shows under the one-line message: the user's traceback frames
        # and the worst entries of the error map.
        body = "\n".join([text, *(c.diagnosis or {}).get("traceback", []), *_worst_entries(c)])
        kind = (c.diagnosis or {}).get("code", c.status)
        if c.status == "error":
            ET.SubElement(case, "error", message=text or "error", type=kind).text = body
        elif not c.passed:
            ET.SubElement(case, "failure", message=text or c.status, type=kind).text = body
        elif c.status in ("missing", "skipped"):
            ET.SubElement(case, "skipped", message=text or c.status)
    return ET.ElementTree(root)


def _worst_entries(c) -> list[str]:
    if c.error_map is None:
        return []
    return [f"at {e['index']}: got {e['got']:.6g}, want {e['want']:.6g}" for e in c.error_map["entries"]]


def write_junit(report: Report, path: str | Path) -> None:
    tree = to_junit(report)
    ET.indent(tree)
    tree.write(path, encoding="utf-8", xml_declaration=True)
