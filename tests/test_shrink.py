"""The smallest failing case (CONTRACT §4 `smallest`, `replay`): no larger than the slip needs, and its
replay, run through the command line, fails the same check the same way."""

from __future__ import annotations

import json
import shlex

import pytest
from conftest import DERIVATIONS
from typer.testing import CliRunner

from bncheck.cli import app

LOWER = {"N": 2, "p1": 1, "p2": 1, "k": 1}  # tests/small.toml's lower bounds

# grad_G2 is right except from the third hidden unit on: no case with p2 < 3 can show it.
SLIP_FROM_THIRD_UNIT = """\
import numpy as np

from bncheck.derivations.bn_mlp_closed_form import grad_G2 as exact


def grad_G2(ctx):
    g = np.array(exact(ctx))
    g[2:] *= 3.0
    return g
"""


def _replayed(check) -> dict:
    argv = shlex.split(check.replay)
    assert argv[:2] == ["bncheck", "verify"]
    result = CliRunner().invoke(app, [*argv[1:], "--json", "-"])
    assert result.exit_code == 1, result.output
    return {c["name"]: c for c in json.loads(result.stdout)["checks"]}


def _check(report, name):
    return {c.name: c for c in report.checks}[name]


@pytest.mark.parametrize(
    ("slip", "name", "smallest"),
    [
        # A dropped 1/N shows at every size.
        ("slip_dropped_inv_n", "grad_G2", LOWER),
        # Row- and column-major vec orders agree unless both p1 and p2 exceed 1.
        ("slip_row_major_jac", "jac_B_G1", {**LOWER, "p1": 2, "p2": 2}),
    ],
)
def test_smallest_case_is_no_larger_than_the_slip_needs_and_its_replay_fails(run, slip, name, smallest):
    check = _check(run(str(DERIVATIONS / f"{slip}.py")), name)
    assert check.status == "fail"
    assert check.smallest["shape"] == smallest
    assert sum(check.worst["shape"].values()) > sum(smallest.values())  # it did shrink
    again = _replayed(check)[name]
    assert again["status"] == "fail"
    assert again["worst"]["shape"] == smallest and again["worst"]["seed"] == check.smallest["seed"]
    assert again["diagnosis"]["code"] == check.diagnosis["code"]


def test_a_slip_from_the_third_unit_on_shrinks_to_three_units(run, tmp_path):
    path = tmp_path / "slip_third_unit.py"
    path.write_text(SLIP_FROM_THIRD_UNIT)
    check = _check(run(str(path)), "grad_G2")
    assert check.status == "fail"
    assert check.smallest["shape"] == {**LOWER, "p2": 3}
    assert _replayed(check)["grad_G2"]["status"] == "fail"


def test_the_search_is_deterministic(run):
    slip = str(DERIVATIONS / "slip_batch_stats_constant.py")
    first, second = (_check(run(slip), "grad_G1") for _ in range(2))
    assert first.smallest is not None
    assert (first.smallest, first.replay) == (second.smallest, second.replay)


def test_an_exception_shrinks_to_a_replay_that_raises_the_same(run):
    check = _check(run(str(DERIVATIONS / "slip_raises.py")), "grad_gamma")
    assert check.status == "error" and check.smallest["shape"] == LOWER
    again = _replayed(check)["grad_gamma"]
    assert again["status"] == "error"
    assert again["diagnosis"]["message"] == check.diagnosis["message"]


def test_passing_checks_get_no_smallest_case(run):
    report = run("closed-form")
    assert report.passed
    assert all(c.smallest is None and c.replay is None for c in report.checks)
