"""JAX custom rules (CONTRACT §7): `bncheck verify-rule` and `bncheck.check_rule` on the corpus in
tests/rules/jax_rules.py, correct and slipped, custom_vjp and custom_jvp.

Sweeps are a few draws at one or two small shapes: each distinct shape costs a compile.
"""

from __future__ import annotations

import importlib.util
import json
import shlex
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bncheck import check_rule
from bncheck.cli import app
from bncheck.errors import BncheckError, LoadError, SettingsError
from bncheck.rules import parse_dims, parse_shapes

CORPUS = Path(__file__).parent / "rules" / "jax_rules.py"
FEW = {"trials": 4}


def _corpus():
    spec = importlib.util.spec_from_file_location("jax_rules_corpus", CORPUS)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


R = _corpus()


def statuses(report) -> dict[str, str]:
    return {c.name: c.status for c in report.checks}


def failed(report) -> set[str]:
    return {c.name for c in report.checks if not c.passed}


def by_name(report, name: str):
    return next(c for c in report.checks if c.name == name)


def invoke(*args):
    return CliRunner().invoke(app, ["verify-rule", *map(str, args)])


def one_line_error(result, *fragments: str) -> str:
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("bncheck: error:"), result.output
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


# ---- custom_vjp ------------------------------------------------------------------------------------


def test_a_correct_custom_vjp_passes_every_check():
    report = check_rule(R.logsumexp, shapes={"x": ("N", "D")}, dims={"N": (1, 2), "D": (1, 3)}, **FEW)
    assert report.passed
    assert [c.name for c in report.checks] == ["vjp_x", "primal"]
    assert statuses(report) == {"vjp_x": "pass", "primal": "pass"}
    vjp = by_name(report, "vjp_x")
    assert vjp.trials == 4 and vjp.max_abs_err < 1e-12
    assert vjp.reference == "jax.vjp of the primal"
    assert report.model == "custom_vjp" and report.derivation == "logsumexp"
    assert report.settings["shapes"] == {"x": ["N", "D"]} and report.settings["sweep"] == {"N": [1, 2], "D": [1, 3]}


def test_a_dropped_factor_fails_its_vjp_check_with_the_factor_named():
    report = check_rule(R.mean_square_slip, shapes={"x": ("N", "D")}, dims={"N": (2, 3), "D": (2, 2)}, **FEW)
    assert not report.passed
    assert failed(report) == {"vjp_x"}
    diagnosis = by_name(report, "vjp_x").diagnosis
    assert diagnosis["code"] == "scale" and diagnosis["factor_name"] == "N"
    # The same rule without the slip, and a static axis left out of the shapes (nondiff_argnums).
    assert check_rule(R.mean_square, shapes={"x": ("N", "D")}, dims={"N": (2, 3), "D": (2, 2)}, **FEW).passed


def test_of_two_arguments_only_the_transposed_cotangent_fails():
    report = check_rule(R.linear_slip, shapes={"W": ("D", "D"), "x": ("N", "D")}, shape={"N": 2, "D": 3}, **FEW)
    assert statuses(report) == {"vjp_W": "fail", "vjp_x": "pass", "primal": "pass"}
    assert by_name(report, "vjp_W").diagnosis["code"] == "transpose"
    right = check_rule(R.linear, shapes={"W": ("D", "M"), "x": ("N", "D")}, shape="N=2,D=3,M=4", **FEW)
    assert right.passed and [c.name for c in right.checks] == ["vjp_W", "vjp_x", "primal"]


def test_a_rule_right_only_for_a_cotangent_of_ones_fails():
    # The cotangents are random: a backward that ignores g would pass against dout = ones.
    report = check_rule(R.logsumexp_ones, shapes={"x": ("N", "D")}, shape="N=2,D=3", **FEW)
    assert failed(report) == {"vjp_x"}


def test_a_clipped_gradient_is_not_the_derivative_of_its_primal():
    # Gradient clipping is a rule meant to differ from the derivative: bncheck reports that it does.
    report = check_rule(R.clip_gradient, shapes={"x": ("N",)}, shape="N=16", **FEW)
    assert failed(report) == {"vjp_x"}
    assert by_name(report, "vjp_x").max_abs_err > 0.1


def test_a_fwd_whose_primal_output_differs_fails_the_primal_check_alone():
    report = check_rule(R.softplus_fwd_slip, shapes={"x": ("N",)}, shape="N=5", **FEW)
    assert statuses(report) == {"vjp_x": "pass", "primal": "fail"}
    assert by_name(report, "primal").max_abs_err == pytest.approx(1e-3, rel=1e-6)


def test_tuple_outputs_are_checked_leaf_by_leaf():
    assert check_rule(R.polar, shapes={"r": ("N",), "theta": ("N",)}, shape="N=3", **FEW).passed
    report = check_rule(R.polar_slip, shapes={"r": ("N",), "theta": ("N",)}, shape="N=3", **FEW)
    assert failed(report) == {"vjp_theta"}


def test_a_jitted_custom_vjp_is_checked_through_the_jit():
    report = check_rule(R.jitted_logsumexp, shapes={"x": ("N", 3)}, shape="N=2", **FEW)
    assert report.passed and [c.name for c in report.checks] == ["vjp_x", "primal"]


def test_a_rule_that_raises_on_some_draws_fails_with_the_users_line():
    report = check_rule(R.logsumexp_raises, shapes={"x": ("N", "D")}, dims={"N": (2, 2), "D": (1, 2)}, trials=6)
    check = by_name(report, "vjp_x")
    # Raised at D = 1 and agreed at D = 2, where it was still called: a failure, not an error.
    assert check.status == "fail" and not report.passed
    assert 0 < check.raised["draws"] < check.trials and all(s["D"] == 1 for s in check.raised["shapes"])
    assert check.max_abs_err is not None and check.max_abs_err < 1e-12
    assert check.diagnosis["code"] == "exception"
    assert "a softmax over one column" in check.diagnosis["message"]
    assert check.worst["shape"]["D"] == 1
    assert any("jax_rules.py" in frame and "raise ValueError" in frame for frame in check.diagnosis["traceback"])


# ---- custom_jvp ------------------------------------------------------------------------------------


def test_a_correct_custom_jvp_passes():
    report = check_rule(R.softplus, shapes={"x": ("N",)}, shape="N=4", **FEW)
    assert report.passed and [c.name for c in report.checks] == ["jvp_x", "primal"]
    assert by_name(report, "jvp_x").reference == "jax.jvp of the primal"


def test_a_flipped_sign_fails_the_jvp_check_as_sign():
    report = check_rule(R.tanh_slip, shapes={"x": ("N",)}, shape="N=4", **FEW)
    assert failed(report) == {"jvp_x"}
    assert by_name(report, "jvp_x").diagnosis["code"] == "sign"


def test_a_rule_right_only_for_a_tangent_of_ones_fails():
    report = check_rule(R.softplus_ones, shapes={"x": ("N",)}, shape="N=4", **FEW)
    assert failed(report) == {"jvp_x"}


def test_of_two_partials_only_the_wrong_one_fails():
    shapes = {"x": ("N",), "y": ("N",)}
    assert check_rule(R.scaled_sin, shapes=shapes, shape="N=3", **FEW).passed
    report = check_rule(R.scaled_sin_slip, shapes=shapes, shape="N=3", **FEW)
    assert statuses(report) == {"jvp_x": "pass", "jvp_y": "fail", "primal": "pass"}
    assert by_name(report, "jvp_y").diagnosis["code"] == "scale"


def test_scalar_arguments_with_central_differences():
    report = check_rule(R.scaled_sin_slip, shapes="x= y=", reference="fd", **FEW)
    assert statuses(report) == {"jvp_x": "pass", "jvp_y": "fail", "primal": "pass"}
    assert by_name(report, "jvp_x").references["fd"] is True
    assert by_name(report, "jvp_y").references["fd"] is False


# ---- what cannot be checked -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("func", "shapes", "error", "fragments"),
    [
        ("plain", {"x": ("N",)}, LoadError, ["not a function decorated with jax.custom_vjp or jax.custom_jvp"]),
        ("no_rule_yet", {"x": ("N",)}, LoadError, ["no rule yet", "defvjp"]),
        ("takes_labels", {"x": ("N",), "k": ("N",)}, SettingsError, ["argument k is annotated int"]),
        ("mean_square", {"x": ("N", "D"), "axis": ()}, SettingsError, ["axis is in nondiff_argnums"]),
        ("linear", {"W": ("D", "D")}, SettingsError, ["argument x has no shape and no default"]),
        ("logsumexp", {"y": ("N",)}, SettingsError, ["has no argument y", "its arguments: x"]),
        ("ranks", {"x": ("N",)}, LoadError, ["returns int", "float outputs"]),
        ("halve_until_small", {"x": ("N",)}, LoadError, ["differentiating its primal with jax.grad raised"]),
        # The shapes disagree with the function: at distinct sizes x @ W cannot be formed.
        ("linear", {"W": ("D", "M"), "x": ("N", "K")}, LoadError, ["its primal raised TypeError", "jax_rules.py:39"]),
    ],
)
def test_what_cannot_be_checked_is_one_error(func, shapes, error, fragments):
    with pytest.raises(error) as raised:
        check_rule(getattr(R, func), shapes=shapes, **FEW)
    for fragment in fragments:
        assert fragment in str(raised.value)
    assert "\n" not in str(raised.value)


@pytest.mark.parametrize(
    ("shapes", "dims", "settings", "fragment"),
    [
        ("x", None, {}, "expected ARG=DIM"),
        ("x=N x=D", None, {}, "given twice"),
        ({"x": "N"}, None, {}, "must be a tuple"),
        ({"x": ("N", 0)}, None, {}, "size >= 1"),
        ("x=N,D", "N=2:1", {}, "1 <= min <= max"),
        ("x=N,D", "M=1:3", {}, "M is no dimension of the shapes"),
        ("x=N,D", "N=two", {}, "expected NAME=MIN:MAX"),
        ("x=N,D", None, {"shape": "N=2"}, "missing D"),
        ("x=N,D", None, {"activation": "tanh"}, "no setting of a rule check"),
        ("x=N,D", None, {"trials": 0}, "trials"),
        ("x=x,D", None, {}, "names both an argument and a dimension"),
    ],
)
def test_bad_shapes_dims_and_settings_are_one_error(shapes, dims, settings, fragment):
    with pytest.raises(BncheckError, match=fragment):
        check_rule(R.logsumexp, shapes=shapes, dims=dims, **settings)


def test_shapes_and_dims_read_as_written():
    assert parse_shapes("x=N,D g=D s= t=() k=N,3") == {"x": ("N", "D"), "g": ("D",), "s": (), "t": (), "k": ("N", 3)}
    assert parse_shapes(" x=N, D;g=D ") == {"x": ("N", "D"), "g": ("D",)}
    assert parse_dims("N=2:64, D=1:32,K=5") == {"N": (2, 64), "D": (1, 32), "K": (5, 5)}
    assert parse_dims("N=2:64 D=1:32") == {"N": (2, 64), "D": (1, 32)}


# ---- the command line -----------------------------------------------------------------------------


def test_cli_a_correct_rule_exits_0_with_its_json_report(tmp_path):
    out = tmp_path / "report.json"
    result = invoke(f"{CORPUS}:logsumexp", "--shapes", "x=N,D", "--dims", "N=1:2,D=2:3", "--trials", "4", "--json", out)
    assert result.exit_code == 0, result.output
    assert "PASS" in result.output
    report = json.loads(out.read_text())
    assert report["passed"] is True and report["model"] == "custom_vjp"
    assert report["derivation"] == f"{CORPUS}:logsumexp"
    assert [c["name"] for c in report["checks"]] == ["vjp_x", "primal"]
    assert all(c["status"] == "pass" and c["trials"] == 4 for c in report["checks"])
    assert report["settings"]["shapes"] == {"x": ["N", "D"]}
    assert report["settings"]["sweep"] == {"N": [1, 2], "D": [2, 3]}
    assert "activation" not in report["settings"]


def test_cli_a_slipped_rule_exits_1_and_its_replay_fails_again(tmp_path):
    out, xml = tmp_path / "report.json", tmp_path / "report.xml"
    result = invoke(f"{CORPUS}:linear_slip", "--shapes", "W=D,D x=N,D", "--dims", "N=1:2,D=2:3", "--trials", "4",
                    "--json", out, "--junit", xml)
    assert result.exit_code == 1, result.output
    assert "vjp_W" in result.output and "transpose" in result.output
    report = json.loads(out.read_text())
    checks = {c["name"]: c for c in report["checks"]}
    assert (checks["vjp_W"]["status"], checks["vjp_x"]["status"]) == ("fail", "pass")
    assert checks["vjp_W"]["diagnosis"]["code"] == "transpose"
    failures = ET.parse(xml).getroot().iter("failure")
    assert len(list(failures)) == 1
    replay = shlex.split(checks["vjp_W"]["replay"])
    assert replay[:4] == ["bncheck", "verify-rule", f"{CORPUS}:linear_slip", "--shapes"]
    again = CliRunner().invoke(app, [*replay[1:], "--json", "-"])
    assert again.exit_code == 1, again.output
    replayed = {c["name"]: c for c in json.loads(again.stdout)["checks"]}
    assert replayed["vjp_W"]["status"] == "fail" and replayed["vjp_x"]["status"] == "pass"
    assert replayed["vjp_W"]["worst"]["shape"] == checks["vjp_W"]["worst"]["shape"]
    # The same draw: the same error where the sweep's worst failure was.
    assert replayed["vjp_W"]["error_map"]["max"] == pytest.approx(checks["vjp_W"]["error_map"]["max"], rel=1e-9)


def test_cli_a_custom_jvp_report_on_stdout():
    result = invoke(f"{CORPUS}:scaled_sin_slip", "--shapes", "x=N y=N", "--shape", "N=3", "--trials", "3", "--json", "-")
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert {c["name"]: c["status"] for c in report["checks"]} == {"jvp_x": "pass", "jvp_y": "fail", "primal": "pass"}
    assert report["model"] == "custom_jvp"


@pytest.mark.parametrize(
    ("spec", "shapes", "fragments"),
    [
        (f"{CORPUS}:plain", "x=N", ["plain is a function, not a function decorated with jax.custom_vjp"]),
        (f"{CORPUS}:nope", "x=N", ["defines no nope"]),
        ("absent.py:f", "x=N", ["no such file: absent.py"]),
        (str(CORPUS), "x=N", ["names no function", "FILE.py:FUNC"]),
        (f"{CORPUS}:linear", "W=D,M x=N,K", ["its primal raised TypeError"]),
        (f"{CORPUS}:takes_labels", "x=N k=N", ["annotated int"]),
    ],
)
def test_cli_what_cannot_be_checked_exits_2_with_one_line(spec, shapes, fragments):
    one_line_error(invoke(spec, "--shapes", shapes, "--trials", "2"), *fragments)


def test_cli_a_broken_or_hostile_file_never_exits_0(tmp_path):
    raising = tmp_path / "raising.py"
    raising.write_text("import jax\nraise RuntimeError('boom at import')\n")
    one_line_error(invoke(f"{raising}:f", "--shapes", "x=N"), "importing", "raising.py:2", "boom at import")
    exiting = tmp_path / "exiting.py"
    exiting.write_text("import sys\nsys.exit(0)\n")
    result = invoke(f"{exiting}:f", "--shapes", "x=N")
    assert result.exit_code == 2, result.output
    broken = tmp_path / "broken.py"
    broken.write_text("def f(:\n")
    one_line_error(invoke(f"{broken}:f", "--shapes", "x=N"), "syntax error")


def test_cli_a_report_never_overwrites_the_rule_file(tmp_path):
    copy = tmp_path / "rules.py"
    copy.write_text(CORPUS.read_text())
    one_line_error(invoke(f"{copy}:logsumexp", "--shapes", "x=N", "--junit", copy), "Python file")
    assert copy.read_text() == CORPUS.read_text()


def test_the_readme_examples_give_the_readme_verdicts():
    example = Path(__file__).parents[1] / "examples" / "custom-rule" / "rules.py"
    mse = invoke(f"{example}:mse", "--shapes", "pred=N,K target=N,K", "--dims", "N=2:3,K=2:2", "--trials", "3", "--json", "-")
    assert mse.exit_code == 1
    checks = {c["name"]: c for c in json.loads(mse.stdout)["checks"]}
    assert {name: c["status"] for name, c in checks.items()} == {"vjp_pred": "fail", "vjp_target": "pass", "primal": "pass"}
    assert checks["vjp_pred"]["diagnosis"]["factor_name"] == "N"
    for name, shapes in (("logsumexp", "x=N,D"), ("softplus", "x=N")):
        result = invoke(f"{example}:{name}", "--shapes", shapes, "--shape", "N=2,D=3" if "D" in shapes else "N=2", "--trials", "3")
        assert result.exit_code == 0, result.output
