"""The pytest-facing gate: a failed verification is an AssertionError that carries the report's text.

    from bncheck.testing import assert_derivation

    def test_my_gradients():
        assert_derivation("derivations/mine.py", ddof=1, trials=50, require="grads")
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

from bncheck.report import Report
from bncheck.text import describe


def report_text(report: Report, width: int = 100) -> str:
    """The console report as plain text: no colour, no terminal codes."""
    from bncheck.report.console import plain_text

    return plain_text(report, width)


def assert_derivation(derivation: str | Path | ModuleType, config: str | Path | None = None, **settings: Any) -> Report:
    """Verifies `derivation` (a path, a built-in name or an imported module) with the settings of
    `bncheck verify` as keywords (`ddof=1`, `shape="N=10,p1=7,p2=4"`, `require="grads"`) and returns the
    report; raises AssertionError with the report's text when a check fails.

    A SystemExit (a `sys.exit(0)` in the derivation), GeneratorExit or other BaseException that
    reaches here from its import or its checks is an AssertionError too: it would otherwise end the
    test, or the test session, with no verdict. Only KeyboardInterrupt goes on."""
    from bncheck.pipeline import verify

    try:
        report = verify(derivation, config=config, **settings)
    except (Exception, KeyboardInterrupt):
        raise
    except BaseException as err:
        raise AssertionError(f"bncheck: {derivation}: stopped by {describe(err)} raised inside it, with no verdict") from err
    if not report.passed:
        raise AssertionError(f"bncheck: {report.derivation} failed\n{report_text(report)}")
    return report
