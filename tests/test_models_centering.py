"""centering (seed 002): the forward pass against an independent transcription, the honest built-in,
the naive one failing as the BN paper's section 2 says, and slipped derivations."""

import jax
import numpy as np
import pytest
from conftest import DERIVATIONS, failed
from slip_files import assert_variants_reproduce, run_slip_file

from bncheck.derivations import centering_naive
from bncheck.models import get_model
from bncheck.draws import Ctx

MODEL = get_model("centering")
FILES = sorted((DERIVATIONS / "centering").glob("*.py"))
DIMS = {"N": 7, "m": 3, "n": 4}


def numpy_forward(x1, t, W, b):
    x = x1 @ W + b
    xhat = x - x.mean(axis=0)
    return {"R": ((xhat - t) ** 2).sum() / x.shape[0], "x": x, "Ex": x.mean(axis=0), "xhat": xhat}


def draw(dims, seed=0):
    rng = np.random.default_rng(seed)
    return {n: rng.standard_normal(s) for n, s in {**MODEL.inputs(dims), **MODEL.params(dims)}.items()}


def ones(dims):
    return {name: np.ones(size) for name, size in dims.items()}


def test_forward_matches_the_paper():
    arrays = draw(DIMS)
    got = MODEL.forward({}, ones(DIMS), **arrays)
    for name, value in numpy_forward(**arrays).items():
        np.testing.assert_allclose(np.asarray(got[name]), value, rtol=1e-12, atol=1e-14, err_msg=name)


def test_padding_leaves_real_entries_exact():
    bucket = {"N": 10, "m": 5, "n": 6}
    arrays = draw(DIMS, seed=4)
    shapes = {**MODEL.inputs(bucket), **MODEL.params(bucket)}
    padded = {n: np.pad(a, [(0, b - s) for s, b in zip(a.shape, shapes[n])]) for n, a in arrays.items()}
    masks = {n: (np.arange(b) < DIMS[n]).astype(float) for n, b in bucket.items()}
    got = MODEL.forward({}, masks, **padded)
    for name, value in numpy_forward(**arrays).items():
        cut = np.asarray(got[name])[tuple(slice(0, s) for s in np.shape(value))]
        np.testing.assert_allclose(cut, value, rtol=1e-12, atol=1e-14, err_msg=name)


def test_loss_does_not_depend_on_b():
    arrays = draw(DIMS, seed=1)
    moved = {**arrays, "b": arrays["b"] + 100.0}
    assert np.isclose(MODEL.forward({}, ones(DIMS), **moved)["R"], MODEL.forward({}, ones(DIMS), **arrays)["R"], rtol=1e-10)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_closed_form_passes(run, dtype):
    report = run(model="centering", dtype=dtype, trials=10, config=None)
    assert report.derivation == "closed-form"
    assert report.passed, [(c.name, c.status, c.max_rel_err) for c in report.failed]
    assert {c.name for c in report.checks if c.status == "pass"} == {"grad_b", "grad_W", "jac_xhat_b", "jvp_xhat_W"}


def test_naive_fails_as_batch_stats_constant(run):
    report = run("naive", model="centering", trials=10, config=None)
    assert failed(report) == {"grad_b", "grad_W", "jac_xhat_b", "jvp_xhat_W"}
    for check in report.failed:
        # Named from the model's variant batch-stats-constant:mean (E[x] held constant).
        assert check.diagnosis["code"] == "batch-stats-constant", (check.name, check.diagnosis)


def test_batch_stats_constant_variant_is_the_naive_gradient():
    """What issue 4's diagnosis compares with: jax.grad with E[x] held constant is exactly `naive`."""
    arrays = draw(DIMS, seed=3)
    held = MODEL.variants({})["batch-stats-constant:mean"]
    grads = jax.grad(lambda p: MODEL.forward(held, ones(DIMS), **{**arrays, **p})["R"])({"b": arrays["b"], "W": arrays["W"]})
    fwd = {k: np.asarray(v) for k, v in MODEL.forward({}, ones(DIMS), **arrays).items()}
    ctx = Ctx({**arrays, **fwd, **DIMS})
    np.testing.assert_allclose(np.asarray(grads["b"]), centering_naive.grad_b(ctx), rtol=1e-12)
    np.testing.assert_allclose(np.asarray(grads["W"]), centering_naive.grad_W(ctx), rtol=1e-12)
    assert np.abs(centering_naive.grad_b(ctx)).max() > 0.1  # and it is far from the honest zero


VARIANT_SLIPS = [p for p in FILES if '"variant"' in p.read_text()]


@pytest.mark.parametrize("path", VARIANT_SLIPS, ids=[p.stem for p in VARIANT_SLIPS])
def test_variants_reproduce_the_slips_they_name(path):
    assert_variants_reproduce(path, "centering")


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_fails_exactly_what_it_breaks(run, path):
    run_slip_file(run, path, "centering", trials=8)


def test_listed_with_the_papers_notation():
    from typer.testing import CliRunner

    from bncheck.cli import app

    result = CliRunner().invoke(app, ["models", "centering"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "xhat: x - E[x] (N, n)" in result.output  # not eaten as rich markup
    assert "closed-form (default), naive" in result.output
