"""Derivations written independently of bncheck (tests/derivations/) and the built-ins: correct ones
pass with no diagnosis, each slipped one fails exactly the checks its EXPECTED_FAIL names, diagnosed as
its EXPECTED_DIAGNOSIS says."""

import importlib.util

import jax
import pytest
from conftest import DERIVATIONS, REPO, failed, statuses

from bncheck.options import ACTIVATIONS

FILES = sorted(DERIVATIONS.glob("*.py"))


def declared(path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.EXPECTED_FAIL, module.EXPECTED_DIAGNOSIS, module.SETTINGS


def assert_contains(diagnosis, expected, where):
    """Every key of `expected` is in `diagnosis` with that value (dicts compared the same way)."""
    assert isinstance(diagnosis, dict), f"{where}: {diagnosis!r}"
    for key, want in expected.items():
        if isinstance(want, dict):
            assert_contains(diagnosis.get(key), want, f"{where}.{key}")
        else:
            assert diagnosis.get(key) == want, f"{where}.{key}: {diagnosis!r}"


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_fails_exactly_what_it_breaks(run, path):
    expected, diagnoses, settings = declared(path)
    # jax.numpy derivations run eagerly, compiling per shape: one fixed shape keeps them quick.
    if "jax" in path.stem and "shape" not in settings:
        settings = {**settings, "shape": "N=7,p1=3,p2=4,k=2", "trials": 4}
    # A user's jax.numpy code may broadcast implicitly: the strict mode is for bncheck's own code.
    with jax.numpy_rank_promotion("allow"):
        report = run(str(path), **settings)
    assert failed(report) == expected
    defined = {c.name for c in report.checks if c.status != "missing"}
    assert expected <= defined and len(defined) > len(expected)  # the others ran and passed
    assert set(diagnoses) == expected
    for c in report.checks:
        if c.name in diagnoses:
            assert_contains(c.diagnosis, diagnoses[c.name], c.name)
            assert c.diagnosis["message"]
        else:
            assert c.diagnosis is None, (c.name, c.diagnosis)


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("ddof", [0, 1])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_correct_numpy_passes_everywhere(run, activation, ddof, dtype):
    report = run(str(DERIVATIONS / "correct_numpy.py"), activation=activation, ddof=ddof, dtype=dtype, trials=12)
    assert report.passed, [(c.name, c.status, c.max_rel_err) for c in report.failed]


@pytest.mark.parametrize("ddof", [0, 1])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_correct_jax_passes(run, ddof, dtype):
    with jax.numpy_rank_promotion("allow"):
        report = run(str(DERIVATIONS / "correct_jax.py"), shape="N=6,p1=3,p2=2,k=2", trials=3,
                     activation="softplus", ddof=ddof, dtype=dtype)
    assert report.passed, [(c.name, c.status, c.max_rel_err) for c in report.failed]


@pytest.mark.parametrize("builtin", ["closed-form", "kronecker"])
@pytest.mark.parametrize("ddof,eps", [(0, 1e-5), (1, 0.0)])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_builtins_pass(run, builtin, ddof, eps, dtype):
    report = run(builtin, ddof=ddof, eps=eps, dtype=dtype, trials=12)
    assert report.passed
    kinds = {c.kind for c in report.checks if c.status == "pass"}
    assert kinds == {"gradient", "jacobian"}  # jvp_ forms (closed-form) or jac_ (kronecker) ran too


def test_seed_question_fails_as_the_issue_says(run):
    report = run("seed-question", config=REPO / "configs" / "seed-question.toml", trials=10)
    assert failed(report) == {"grad_beta", "grad_gamma", "grad_G1", "grad_G2"}
    checks = {c.name: c for c in report.checks}
    assert checks["grad_beta"].diagnosis["code"] == "scale"
    assert checks["grad_beta"].diagnosis["factor_name"] == "N"  # the dropped 1/N of R = Σ/N
    assert checks["grad_G2"].diagnosis["factor_name"] == "N"
    gamma = checks["grad_gamma"].diagnosis
    assert gamma["code"] == "shape"  # the p2×p2 matrix of update 4
    assert "(4, 4)" in gamma["message"]
    # Its diagonal is the looped version: N times too large, with an extra gamma.
    assert gamma["repair"] == "diagonal"
    assert_contains(gamma["repaired"], {"code": "scale", "factor_name": "N·gamma", "per": "entry"}, "grad_gamma")
    # Update 3 holds mu and sigma fixed, multiplies by sigma where it should divide, and drops 1/N.
    assert_contains(checks["grad_G1"].diagnosis, {"code": "batch-stats-constant", "factor_name": "N·sigma²",
                                                  "per": "column"}, "grad_G1")
    assert "approximate" not in checks["grad_G1"].diagnosis
    assert statuses(report)["jac_B_G1"] == "missing"


def test_seed_question_under_other_settings_names_every_failure(run):
    # The derivation computes its own sd with ddof 1 and no eps, so under the defaults (ddof 0, eps 1e-5)
    # its slips are named only approximately, and say so.
    report = run("seed-question", trials=6)
    assert failed(report) == {"grad_beta", "grad_gamma", "grad_G1", "grad_G2"}
    assert all(c.diagnosis["code"] != "unknown" for c in report.failed)
    G1 = next(c for c in report.checks if c.name == "grad_G1").diagnosis
    assert G1["code"] == "batch-stats-constant" and G1["approximate"] is True
