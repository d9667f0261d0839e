"""Derivations written independently of bncheck (tests/derivations/) and the built-ins: correct ones
pass, each slipped one fails exactly the checks its EXPECTED_FAIL names."""

import importlib.util

import jax
import pytest
from conftest import DERIVATIONS, REPO, failed, statuses

from bncheck.models import ACTIVATIONS

FILES = sorted(DERIVATIONS.glob("*.py"))


def declared(path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.EXPECTED_FAIL, module.SETTINGS


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_fails_exactly_what_it_breaks(run, path):
    expected, settings = declared(path)
    # jax.numpy derivations run eagerly, compiling per shape: one fixed shape keeps them quick.
    if "jax" in path.stem and "shape" not in settings:
        settings = {**settings, "shape": "N=7,p1=3,p2=4,k=2", "trials": 4}
    # A user's jax.numpy code may broadcast implicitly: the strict mode is for bncheck's own code.
    with jax.numpy_rank_promotion("allow"):
        report = run(str(path), **settings)
    assert failed(report) == expected
    defined = {c.name for c in report.checks if c.status != "missing"}
    assert expected <= defined and len(defined) > len(expected)  # the others ran and passed


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
    assert checks["grad_gamma"].diagnosis["code"] == "shape"  # the p2×p2 matrix of update 4
    assert "(4, 4)" in checks["grad_gamma"].diagnosis["message"]
    assert statuses(report)["jac_B_G1"] == "missing"
