"""bn-layer (seed 001): the forward pass against an independent transcription, the built-ins over both
layouts and both ddof, a derivation written from the contract alone, and slipped derivations."""

import jax
import numpy as np
import pytest
from conftest import DERIVATIONS, failed
from slip_files import assert_variants_reproduce, run_slip_file

from bncheck.derivations import bn_layer_graph
from bncheck.models import get_model
from bncheck.draws import Ctx

FILES = sorted((DERIVATIONS / "bn_layer").glob("*.py"))
LAYOUT_DIMS = {"fc": {"N": 9, "D": 3}, "conv": {"N": 3, "C": 2, "H": 4, "W": 3}}


def numpy_forward(x, dout, gamma, beta, ddof, eps):
    """Seed 001's formulas column by column; conv channels serialised into columns first, as the
    seed's CNN section does."""
    conv = x.ndim == 4
    X = x.transpose(0, 2, 3, 1).reshape(-1, x.shape[1]) if conv else x
    M = X.shape[0]
    mu = X.mean(axis=0)
    sigma = np.sqrt(((X - mu) ** 2).sum(axis=0) / (M - ddof) + eps)
    Xhat = (X - mu) / sigma
    xhat = Xhat.reshape(x.shape[0], x.shape[2], x.shape[3], -1).transpose(0, 3, 1, 2) if conv else Xhat
    shape = (1, -1, 1, 1) if conv else (1, -1)
    y = gamma.reshape(shape) * xhat + beta.reshape(shape)
    return {"R": (y * dout).sum(), "mu": mu, "sigma": sigma, "xhat": xhat, "y": y}


def draw(model, dims, seed=0):
    rng = np.random.default_rng(seed)
    return {n: rng.standard_normal(s) for n, s in {**model.inputs(dims), **model.params(dims)}.items()}


def ones(dims):
    return {name: np.ones(size) for name, size in dims.items()}


def options(layout, ddof=0, eps=1e-5, **more):
    return {"layout": layout, "ddof": ddof, "eps": eps, **more}


@pytest.mark.parametrize("layout", ["fc", "conv"])
@pytest.mark.parametrize("ddof,eps", [(0, 1e-5), (1, 0.0)])
def test_forward_matches_seed_001(layout, ddof, eps):
    model = get_model("bn-layer", {"layout": layout})
    dims = LAYOUT_DIMS[layout]
    arrays = draw(model, dims)
    got = model.forward(options(layout, ddof, eps), ones(dims), **arrays)
    want = numpy_forward(**arrays, ddof=ddof, eps=eps)
    for name, value in want.items():
        np.testing.assert_allclose(np.asarray(got[name]), value, rtol=1e-12, atol=1e-14, err_msg=name)
    # The graph's nodes are what their names say.
    np.testing.assert_allclose(np.asarray(got["var"]), np.asarray(got["sigma"]) ** 2 - eps, rtol=1e-10)
    unit = (None, slice(None)) + (None,) * (arrays["x"].ndim - 2)
    np.testing.assert_allclose(np.asarray(got["xmu"]) * np.asarray(got["ivar"])[unit], want["xhat"], rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("layout", ["fc", "conv"])
def test_padding_leaves_real_entries_exact(layout):
    model = get_model("bn-layer", {"layout": layout})
    dims = LAYOUT_DIMS[layout]
    bucket = {name: size + 2 for name, size in dims.items()}
    arrays = draw(model, dims, seed=5)
    shapes = {**model.inputs(bucket), **model.params(bucket)}
    padded = {n: np.pad(a, [(0, b - s) for s, b in zip(a.shape, shapes[n])]) for n, a in arrays.items()}
    masks = {n: (np.arange(b) < dims[n]).astype(float) for n, b in bucket.items()}
    got = model.forward(options(layout, 1, 0.0), masks, **padded)
    want = numpy_forward(**arrays, ddof=1, eps=0.0)
    for name, value in want.items():
        cut = np.asarray(got[name])[tuple(slice(0, s) for s in np.shape(value))]
        np.testing.assert_allclose(cut, value, rtol=1e-12, atol=1e-14, err_msg=name)


def test_conv_dims_and_layout_errors(run):
    from bncheck.errors import SettingsError

    assert tuple(get_model("bn-layer", {"layout": "conv"}).dims) == ("N", "C", "H", "W")
    assert get_model("bn-layer", {"layout": "conv"}).params({"N": 2, "C": 3, "H": 4, "W": 5}) == {"gamma": (3,), "beta": (3,)}
    with pytest.raises(SettingsError, match="D is not a dimension"):
        run(model="bn-layer", layout="conv", shape="N=4,D=3", config=None)
    with pytest.raises(SettingsError, match="N=1 leaves no degree of freedom"):
        run(model="bn-layer", ddof=1, shape="N=1,D=3", config=None)


@pytest.mark.parametrize("builtin", ["closed-form", "graph"])
@pytest.mark.parametrize("layout", ["fc", "conv"])
@pytest.mark.parametrize("ddof,eps", [(0, 1e-5), (1, 0.0)])
def test_builtins_pass(run, builtin, layout, ddof, eps):
    report = run(builtin, model="bn-layer", layout=layout, ddof=ddof, eps=eps, trials=8, config=None)
    assert report.passed, [(c.name, c.status, c.max_rel_err) for c in report.failed]
    ran = {c.name for c in report.checks if c.status == "pass"}
    assert {"grad_x", "grad_gamma", "grad_beta"} <= ran
    if builtin == "graph":  # every node's differential was checked on its own
        assert {f"jvp_{node}_x" for node in ("mu", "xmu", "sq", "var", "sigma", "ivar", "xhat", "gammax", "y")} <= ran


def test_float32_builtins_pass(run):
    for layout in ("fc", "conv"):
        report = run("graph", model="bn-layer", layout=layout, dtype="float32", trials=6, config=None)
        assert report.passed, [(c.name, c.status, c.max_rel_err) for c in report.failed]


def test_default_derivation_is_closed_form(run):
    report = run(model="bn-layer", trials=3, config=None)
    assert report.derivation == "closed-form" and report.passed


def test_a_wrong_local_derivative_fails_at_its_own_node(run, monkeypatch):
    """Node ⑥'s local derivative without its 1/2: the nodes before ⑥ still pass, ⑥ and every node
    after it fail, and so does grad_x, whose backward pass uses the same local derivative."""
    monkeypatch.setattr(bn_layer_graph, "d_sigma", lambda ctx: 1 / ctx.sigma)
    report = run("graph", model="bn-layer", trials=4, config=None)
    assert failed(report) == {"jvp_sigma_x", "jvp_ivar_x", "jvp_xhat_x", "jvp_gammax_x", "jvp_y_x", "grad_x"}


@pytest.mark.parametrize("layout", ["fc", "conv"])
def test_sum_and_broadcast_nodes_are_adjoint(layout):
    """The graph's linear nodes carry no local derivative to check: the backward pass relies on the
    broadcast being the adjoint of the sum, <Σ a, v> = <a, spread v>."""
    dims = LAYOUT_DIMS[layout]
    x = np.zeros((dims["N"], dims.get("D", dims.get("C")), *([dims["H"], dims["W"]] if layout == "conv" else [])))
    ctx = Ctx({"x": x})
    rng = np.random.default_rng(0)
    a, v = rng.standard_normal(x.shape), rng.standard_normal(x.shape[1])
    assert np.isclose(bn_layer_graph._total(ctx, a) @ v, (a * bn_layer_graph._spread(ctx, v)).sum(), rtol=1e-13)


VARIANT_SLIPS = [p for p in FILES if '"variant"' in p.read_text()]


@pytest.mark.parametrize("path", VARIANT_SLIPS, ids=[p.stem for p in VARIANT_SLIPS])
def test_variants_reproduce_the_slips_they_name(path):
    assert_variants_reproduce(path, "bn-layer")


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_fails_exactly_what_it_breaks(run, path):
    # jax.numpy runs eagerly, compiling per shape: one fixed shape keeps it quick.
    fixed = {"shape": "N=7,D=3", "trials": 3} if "jax" in path.stem else {"trials": 8}
    run_slip_file(run, path, "bn-layer", **fixed)


@pytest.mark.parametrize("layout,shape", [("fc", "N=6,D=3"), ("conv", "N=3,C=2,H=2,W=3")])
@pytest.mark.parametrize("ddof", [0, 1])
def test_independent_derivation_passes_both_layouts_and_ddof(run, layout, shape, ddof):
    """The contract holds for a file someone else writes: correct_jax.py uses only the documented
    names (grad_x, grad_gamma, grad_beta; ctx.x, gamma, dout, mu, xhat, y, eps, ddof)."""
    with jax.numpy_rank_promotion("allow"):
        report = run(str(DERIVATIONS / "bn_layer" / "correct_jax.py"), model="bn-layer", layout=layout,
                     ddof=ddof, shape=shape, trials=2, config=None)
    assert report.passed, [(c.name, c.status, c.max_rel_err) for c in report.failed]
    assert {c.name for c in report.checks if c.status == "pass"} == {"grad_x", "grad_gamma", "grad_beta", "grad_dout"}


def test_report_header_names_the_models_own_settings():
    from typer.testing import CliRunner

    from bncheck.cli import app

    result = CliRunner().invoke(app, ["verify", "--model", "bn-layer", "--layout", "conv", "--ddof", "1", "--trials", "2"],
                                env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "layout conv, ddof 1, eps 1e-05; seed 0" in result.output
    assert "activation" not in result.output  # bn-layer has none
