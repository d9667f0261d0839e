"""Large dense Jacobians are checked by products with random vectors against jax.jvp / jax.vjp
(bncheck.compare.compare_products) instead of a jax.jacfwd reference; the report says which reference ran."""

import pytest
from conftest import DERIVATIONS, failed, statuses

from bncheck.check import PRODUCTS as REFERENCE

# jac_B_G1 at N=24, p1=p2=8 is (192 x 64) float64, 96 KiB: over 1/16 of a 1 MB budget, within it.
SHAPE = "N=24,p1=8,p2=8"


def references(report) -> dict[str, str]:
    return {c.name: c.reference for c in report.checks}


def test_a_correct_dense_jacobian_passes_by_products(run):
    report = run("kronecker", shape=SHAPE, trials=4, max_jacobian_mb=1)
    assert references(report)["jac_B_G1"] == REFERENCE
    assert references(report)["jac_B_beta"] == "jax.jacfwd"  # (192 x 8): small enough to build
    assert report.passed and statuses(report)["jac_B_G1"] == "pass"


def test_a_slipped_dense_jacobian_fails_by_products(run):
    report = run(str(DERIVATIONS / "slip_row_major_jac.py"), shape=SHAPE, trials=4, max_jacobian_mb=1)
    assert references(report)["jac_B_G1"] == REFERENCE
    assert failed(report) == {"jac_B_G1"}


def test_a_sweep_says_where_each_reference_ran(run, tmp_path):
    config = tmp_path / "mixed.toml"
    config.write_text("[sweep]\ntrials = 12\nN = [2, 24]\np1 = [1, 8]\np2 = [1, 8]\nk = [1, 1]\n")
    report = run("kronecker", config=config, max_jacobian_mb=1)
    assert references(report)["jac_B_G1"] == "jax.jacfwd, and jax.jvp/jax.vjp products for Jacobians over 0.0625 MB"
    assert report.passed


@pytest.mark.parametrize("bad, problem", [("J[:, :-1]", "shape"), ("J * float('nan')", "non-finite")])
def test_a_jacobian_that_cannot_be_compared_says_why(run, tmp_path, bad, problem):
    path = tmp_path / "bad_jac.py"
    path.write_text(
        "from bncheck.derivations.bn_mlp_kronecker import jac_B_G1 as exact\n"
        f"def jac_B_G1(ctx):\n    J = exact(ctx)\n    return {bad}\n"
    )
    report = run(str(path), shape=SHAPE, trials=2, max_jacobian_mb=1)
    check = {c.name: c for c in report.checks}["jac_B_G1"]
    assert check.reference == REFERENCE and check.status == "fail"
    assert check.diagnosis["code"] == problem


@pytest.mark.parametrize("budget", [1, 0.1, 0.01])
def test_a_sweep_whose_draws_take_products_of_different_jacobians(run, budget):
    # Over the default sweep (N up to 64, p1 and p2 up to 16) one draw's jac_B_G1 alone goes by
    # products while another's jac_B_beta does too, and a third's fit dense: one compiled products
    # program serves draws that need different probe vectors (issue 16: KeyError 'v:G1').
    report = run("kronecker", config=None, trials=5, max_jacobian_mb=budget)
    assert report.passed, [(c.name, c.status, c.message) for c in report.failed]
    by_products = {name for name, ref in references(report).items() if ref and REFERENCE in ref}
    assert {"jac_B_beta", "jac_B_G1"} <= by_products
    # A skipped Jacobian's size is said as it is, not rounded to "0 MB" under a budget of 0.01.
    skipped = [c.message for c in report.checks if c.message and "would take" in c.message]
    assert skipped and not any(" take 0 MB" in m for m in skipped)
