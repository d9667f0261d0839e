"""The mlp model (seed 003): its forward against an independent NumPy transcription, its built-in
closed form, and slipped derivations, including the shape hint of seed 003's dimension rule."""

import numpy as np
import pytest
from slips import fails_exactly, files
from typer.testing import CliRunner

from bncheck.cli import app
from bncheck.models import get_model

SLIPS = files("mlp")


def numpy_forward(arrays, activation, layers, loss):
    """Seed 003's forward, one example per column, written without bncheck."""
    f = {
        "relu": lambda z: np.maximum(z, 0),
        "tanh": np.tanh,
        "sigmoid": lambda z: 1 / (1 + np.exp(-z)),
    }[activation]
    a = arrays["X"]
    for l in range(1, layers + 1):
        z = arrays[f"W{l}"] @ a + arrays[f"b{l}"].reshape(-1, 1)
        a = f(z) if l < layers else z
    M = arrays["X"].shape[1]
    if loss == "mse":
        return z, ((z - arrays["Y"]) ** 2).sum() / (2 * M)
    p = np.exp(z) / np.exp(z).sum(axis=0)
    return p, -(arrays["Y"] * np.log(p)).sum() / M


def draw(model, dims, seed=0):
    rng = np.random.default_rng(seed)
    shapes = {**model.inputs(dims), **model.params(dims)}
    arrays = {name: rng.standard_normal(shape) for name, shape in shapes.items()}
    return {**arrays, **model.sample(rng, dims)}


@pytest.mark.parametrize("activation", ["relu", "tanh", "sigmoid"])
@pytest.mark.parametrize("layers", [1, 3])
@pytest.mark.parametrize("loss", ["mse", "xent"])
def test_forward_matches_seed_003(activation, layers, loss):
    cfg = {"activation": activation, "layers": layers, "loss": loss}
    model = get_model("mlp", cfg)
    dims = {"M": 7, **{f"n{l}": 2 + l for l in range(1, layers + 2)}}
    arrays = draw(model, dims)
    if loss == "xent":
        assert set(np.unique(arrays["Y"])) == {0.0, 1.0} and np.all(arrays["Y"].sum(axis=0) == 1)
    out = model.forward(cfg, {name: np.ones(size) for name, size in dims.items()}, **arrays)
    yhat, R = numpy_forward(arrays, **cfg)
    np.testing.assert_allclose(np.asarray(out["yhat"]), yhat, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(float(out["R"]), R, rtol=1e-12)
    assert set(out) >= {"a1", *(f"z{l}" for l in range(2, layers + 2)), *(f"da{l}" for l in range(2, layers + 1))}


@pytest.mark.parametrize("loss", ["mse", "xent"])
def test_padding_leaves_real_entries_exact(loss):
    cfg = {"activation": "sigmoid", "layers": 2, "loss": loss}
    model = get_model("mlp", cfg)
    dims, bucket = {"M": 4, "n1": 2, "n2": 3, "n3": 2}, {"M": 6, "n1": 4, "n2": 5, "n3": 4}
    arrays = draw(model, dims, seed=2)
    shapes = {**model.inputs(bucket), **model.params(bucket)}
    padded = {n: np.pad(a, [(0, b - s) for s, b in zip(a.shape, shapes[n])]) for n, a in arrays.items()}
    masks = {n: (np.arange(b) < dims[n]).astype(float) for n, b in bucket.items()}
    got = model.forward(cfg, masks, **padded)
    want = model.forward(cfg, {n: np.ones(s) for n, s in dims.items()}, **arrays)
    for name, value in want.items():
        cut = np.asarray(got[name])[tuple(slice(0, s) for s in np.shape(value))]
        np.testing.assert_allclose(cut, np.asarray(value), rtol=1e-12, atol=1e-14, err_msg=name)


@pytest.mark.parametrize(
    "options",
    [
        {"activation": "relu", "loss": "mse"},
        {"activation": "tanh", "loss": "xent", "layers": 3},
        {"activation": "sigmoid", "loss": "mse", "layers": 1, "dtype": "float32"},
        {"activation": "relu", "loss": "xent", "dtype": "float32"},
    ],
)
def test_builtin_passes(options):
    from bncheck import verify

    report = verify(model="mlp", trials=10, **options)
    assert report.passed, [(c.name, c.status, c.max_rel_err) for c in report.failed]
    layers = options.get("layers", 2)
    assert {c.name for c in report.checks if c.status == "pass"} == {
        f"grad_{p}{l}" for p in "Wb" for l in range(1, layers + 1)
    }


@pytest.mark.parametrize("path", SLIPS, ids=[p.stem for p in SLIPS])
def test_slips_fail_exactly_what_they_break(path):
    fails_exactly(path)


def test_transposed_gradient_shows_the_factors_dimensions():
    report = fails_exactly(next(p for p in SLIPS if p.stem == "slip_transposed_grad_W"))
    diagnosis = {c.name: c for c in report.checks}["grad_W1"].diagnosis
    assert diagnosis["code"] == "shape"
    assert diagnosis["message"] == (
        "returned shape (3, 4), expected (4, 3); δ² (4×6) · a¹ᵀ (6×3) gives 4×3, the shape of W¹; "
        "yours is 3×4, its transpose (a¹ · δ²ᵀ); transposed, it matches the reference"
    )


def test_dropped_inv_m_is_a_factor_of_m():
    report = fails_exactly(next(p for p in SLIPS if p.stem == "slip_dropped_inv_m"))
    for name in ("grad_b1", "grad_b2"):
        diagnosis = {c.name: c for c in report.checks}[name].diagnosis
        assert diagnosis["code"] == "scale" and diagnosis["factor"] == pytest.approx(5)  # M = 5


def test_bias_as_a_column_gets_a_hint():
    model = get_model("mlp")
    hint = model.shape_hint("grad_b2", (4, 1), {"M": 9, "n1": 3, "n2": 5, "n3": 4}, {})
    assert hint == "δ³ (4×9) · 1_M (9) gives (4,), the shape of b²; yours is 4×1: sum δ³ over its columns into a vector"
    assert model.shape_hint("grad_X", (2, 2), {"M": 9, "n1": 3, "n2": 5, "n3": 4}, {}) is None


def test_cli_lists_mlp_and_rejects_one_class_softmax():
    runner = CliRunner()
    listed = runner.invoke(app, ["models", "mlp"])
    assert listed.exit_code == 0 and "grad_W1, grad_W2, grad_b1, grad_b2" in listed.output
    result = runner.invoke(app, ["verify", "--model", "mlp", "--loss", "xent", "--shape", "M=3,n1=2,n2=2,n3=1"])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        "bncheck: error: shape: n3=1 gives the softmax one class, so every gradient is zero (need n3 >= 2)"
    ]
