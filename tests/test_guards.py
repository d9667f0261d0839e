"""Guards against checks that prove nothing, and the models' invariants: warnings, never verdicts."""

from __future__ import annotations

import json
from dataclasses import replace

from conftest import DERIVATIONS, SMALL
from typer.testing import CliRunner

from bncheck.cli import app
from bncheck.loader import load_derivation
from bncheck.models import get_model
from bncheck.pipeline import check
from bncheck.settings import resolve

EPS_0 = {"ddof": 1, "eps": 0.0}
# At p1 = 1 and eps = 0 every column of G1 is a scalar, and batch norm undoes its scale: R does not
# depend on G1 at all, so dR/dG1 and every dB in a direction of G1 vanish.
G1_SCALAR = {**EPS_0, "shape": "N=5,p1=1,p2=3,k=1", "trials": 6}

ZERO_GRAD_G1 = """\
import numpy as np


def grad_G1(ctx):
    return np.zeros_like(np.asarray(ctx.G1))
"""


def _warned(report) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for w in report.warnings:
        out.setdefault(w["check"], []).append(w["message"])
    return out


def test_correct_derivations_get_no_warning(run):
    for derivation, flags in [("closed-form", {}), ("kronecker", {}), ("closed-form", EPS_0),
                              ("closed-form", {**EPS_0, "activation": "tanh", "dtype": "float32"})]:
        report = run(derivation, **flags)
        assert report.passed and report.warnings == [], (derivation, flags, report.warnings)


def test_a_reference_that_is_zero_on_every_draw_is_warned_of(run, tmp_path):
    report = run("closed-form", **G1_SCALAR)
    assert report.passed
    warned = _warned(report)
    assert set(warned) == {"grad_G1", "jvp_B_G1"}
    assert all("the reference is zero (up to rounding) on all 6 draws" in m for ms in warned.values() for m in ms)
    # What the warning is for: a function that returns zeros passes there too.
    zeros = tmp_path / "zeros.py"
    zeros.write_text(ZERO_GRAD_G1)
    assert run(str(zeros), **G1_SCALAR).passed


def test_holding_the_batch_statistics_constant_breaks_the_scale_invariance(run):
    report = run(str(DERIVATIONS / "slip_batch_stats_constant.py"), **EPS_0)
    assert {c.name for c in report.failed} == {"grad_G1"}
    warned = _warned(report)
    assert set(warned) == {"grad_G1"}
    (message,) = warned["grad_G1"]
    assert message.startswith("invariant broken on ") and "is not orthogonal to column" in message


def test_the_invariant_applies_only_at_eps_0(run):
    report = run(str(DERIVATIONS / "slip_batch_stats_constant.py"))
    assert {c.name for c in report.failed} == {"grad_G1"} and report.warnings == []


def test_a_models_invariants_reach_the_report_and_the_terminal(tmp_path):
    """The hook is generic: any check, any model. This one holds grad_beta to a property it lacks."""
    settings = resolve({}, SMALL)
    base = get_model(settings.model, settings.to_dict())
    model = replace(base, invariants=lambda cfg: {"grad_beta": lambda ctx, got: "grad_beta is never negative"
                                                  if (got < 0).any() else None})
    derivation = load_derivation("closed-form", model)
    report = check(model, settings, derivation)
    assert report.passed
    (warning,) = report.warnings
    assert warning["check"] == "grad_beta"
    assert warning["message"].startswith("invariant broken on ") and warning["message"].endswith(
        ": grad_beta is never negative")
    assert json.loads(json.dumps(report.to_dict()))["warnings"] == report.warnings

    from io import StringIO

    from rich.console import Console

    from bncheck.report.console import ReportView

    out = StringIO()
    Console(file=out, width=200).print(ReportView(report))
    assert "warning: grad_beta: invariant broken on " in out.getvalue()


def test_warnings_leave_the_exit_status_alone():
    args = ["verify", "--config", str(SMALL), "--shape", "N=5,p1=1,p2=3,k=1", "--ddof", "1", "--eps", "0",
            "--trials", "3"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "warning: grad_G1: the reference is zero" in result.output
