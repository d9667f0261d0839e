"""The kron model: F = A ⊗ B against an entrywise definition, the Magnus–Neudecker built-in, and
slipped Jacobians (row-major vec, a missing commutation matrix)."""

import numpy as np
import pytest
from slips import fails_exactly, files
from typer.testing import CliRunner

from bncheck.cli import app
from bncheck.models import get_model

SLIPS = files("kron")


def test_forward_is_the_kronecker_product():
    model = get_model("kron")
    rng = np.random.default_rng(0)
    A, B, dF = rng.standard_normal((2, 3)), rng.standard_normal((4, 1)), rng.standard_normal((8, 3))
    out = model.forward({}, {}, A=A, B=B, dF=dF)
    F = np.zeros((8, 3))
    for i, j, k, l in np.ndindex(2, 3, 4, 1):
        F[i * 4 + k, j * 1 + l] = A[i, j] * B[k, l]
    np.testing.assert_array_equal(np.asarray(out["F"]), F)
    np.testing.assert_allclose(float(out["R"]), (F * dF).sum(), rtol=1e-13)


# Each distinct shape costs compiles: a short sweep in float64, one shape in float32.
@pytest.mark.parametrize("flags", [{"trials": 5}, {"dtype": "float32", "shape": "m=2,n=3,p=3,q=2", "trials": 2}])
def test_builtin_passes(flags):
    from bncheck import verify

    report = verify(model="kron", **flags)
    assert report.passed, [(c.name, c.status, c.max_rel_err) for c in report.failed]
    assert {c.name for c in report.checks if c.status == "pass"} == set(get_model("kron").checks)


@pytest.mark.parametrize("path", SLIPS, ids=[p.stem for p in SLIPS])
def test_slips_fail_exactly_what_they_break(path):
    fails_exactly(path)


def test_models_lists_kron():
    result = CliRunner().invoke(app, ["models", "kron"])
    assert result.exit_code == 0
    assert "jac_F_A, jac_F_B" in result.output and "magnus-neudecker (default)" in result.output
