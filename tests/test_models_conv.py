"""The conv model: its im2col forward against jax.lax.conv_general_dilated, its built-in col2im
derivation, slipped derivations, and the kernel-fit check on shapes and sweeps."""

import jax
import numpy as np
import pytest
from slips import fails_exactly, files
from typer.testing import CliRunner

from bncheck.cli import app
from bncheck.models import get_model

SLIPS = files("conv")


@pytest.mark.parametrize(
    "dims,stride,padding",
    [
        ({"N": 2, "C": 3, "O": 2, "kh": 3, "kw": 2, "H": 6, "W": 5}, 1, 0),
        ({"N": 1, "C": 2, "O": 3, "kh": 2, "kw": 3, "H": 7, "W": 6}, 2, 1),  # stride leaves a remainder
        ({"N": 2, "C": 1, "O": 2, "kh": 3, "kw": 3, "H": 2, "W": 4}, 3, 2),  # kernel larger than H
    ],
)
def test_forward_matches_lax_conv(dims, stride, padding):
    options = {"stride": stride, "padding": padding}
    model = get_model("conv", options)
    rng = np.random.default_rng(0)
    arrays = {n: rng.standard_normal(s) for n, s in {**model.inputs(dims), **model.params(dims)}.items()}
    out = model.forward(options, {}, **arrays)
    want = jax.lax.conv_general_dilated(
        arrays["x"], arrays["K"], window_strides=(stride, stride), padding=[(padding, padding)] * 2,
        dimension_numbers=("NCHW", "OIHW", "NCHW"),
    ) + arrays["b"][None, :, None, None]
    assert out["y"].shape == want.shape == arrays["dout"].shape
    np.testing.assert_allclose(np.asarray(out["y"]), np.asarray(want), rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(float(out["R"]), float((want * arrays["dout"]).sum()), rtol=1e-12)


@pytest.mark.parametrize(
    "options",
    [{"stride": 1, "padding": 0}, {"stride": 2, "padding": 1}, {"stride": 3, "padding": 2, "dtype": "float32"}],
)
def test_builtin_passes(options):
    from bncheck import verify

    report = verify(model="conv", trials=4, **options)
    assert report.passed, [(c.name, c.status, c.max_rel_err) for c in report.failed]
    assert {c.name for c in report.checks if c.status == "pass"} == {"grad_K", "grad_b", "grad_x"}


@pytest.mark.parametrize("path", SLIPS, ids=[p.stem for p in SLIPS])
def test_slips_fail_exactly_what_they_break(path):
    fails_exactly(path)


def test_kernel_that_does_not_fit_is_rejected(tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["verify", "--model", "conv", "--padding", "1", "--shape", "N=1,C=1,O=1,kh=3,kw=4,H=5,W=1"])
    assert result.exit_code == 2
    assert result.output.strip() == (
        "bncheck: error: shape: the kernel does not fit: kw=4 is larger than W=1 plus 2 x padding 1 "
        "(need kw <= W + 2*padding)"
    )
    # In a sweep the kernel must fit at every draw: the largest kernel against the smallest input.
    config = tmp_path / "conv.toml"
    config.write_text('model = "conv"\n[sweep]\nH = [2, 6]\nkh = [1, 3]\n')
    result = runner.invoke(app, ["verify", "--config", str(config)])
    assert result.exit_code == 2
    assert "sweep: the kernel does not fit: kh=3 is larger than H=2" in result.output


def test_models_lists_conv():
    result = CliRunner().invoke(app, ["models", "conv"])
    assert result.exit_code == 0
    assert "dout (N, O, ?, ?)" in result.output and "grad_K, grad_b, grad_x" in result.output
