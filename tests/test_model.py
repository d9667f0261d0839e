"""The bn-mlp forward pass against an independent NumPy transcription of CONTRACT §1."""

import numpy as np
import pytest

from bncheck.models import get_model
from bncheck.options import ACTIVATIONS

MODEL = get_model("bn-mlp")


def numpy_forward(X, y, G1, G2, gamma, beta, activation, ddof, eps):
    N = X.shape[0]
    H = X @ G1
    mu = H.mean(axis=0)
    sigma = np.sqrt(((H - mu) ** 2).sum(axis=0) / (N - ddof) + eps)
    Hhat = (H - mu) / sigma
    B = gamma * Hhat + beta
    act = {
        "relu": (np.maximum(B, 0), (B > 0).astype(float)),
        "tanh": (np.tanh(B), 1 - np.tanh(B) ** 2),
        "sigmoid": (1 / (1 + np.exp(-B)), np.exp(-B) / (1 + np.exp(-B)) ** 2),
        "softplus": (np.log1p(np.exp(B)), 1 / (1 + np.exp(-B))),
        "identity": (B, np.ones_like(B)),
    }
    A, dA = act[activation]
    yhat = A @ G2
    return {"R": ((y - yhat) ** 2).sum() / N, "H": H, "mu": mu, "sigma": sigma, "Hhat": Hhat, "B": B,
            "A": A, "dA": dA, "yhat": yhat, "resid": y - yhat}


def draw(dims, seed=0):
    rng = np.random.default_rng(seed)
    shapes = {**MODEL.inputs(dims), **MODEL.params(dims)}
    return {name: rng.standard_normal(shape) for name, shape in shapes.items()}


def ones(dims):
    return {name: np.ones(size) for name, size in dims.items()}


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("ddof", [0, 1])
@pytest.mark.parametrize("eps", [0.0, 1e-5])
def test_forward_matches_contract(activation, ddof, eps):
    dims = {"N": 9, "p1": 4, "p2": 3, "k": 2}
    arrays = draw(dims)
    cfg = {"activation": activation, "ddof": ddof, "eps": eps}
    got = MODEL.forward(cfg, ones(dims), **arrays)
    want = numpy_forward(**arrays, **cfg)
    assert set(got) == set(want)
    for name in want:
        np.testing.assert_allclose(np.asarray(got[name]), want[name], rtol=1e-12, atol=1e-14, err_msg=name)


def test_relu_derivative_at_zero_is_zero():
    dims = {"N": 4, "p1": 2, "p2": 2, "k": 1}
    arrays = draw(dims)
    arrays["gamma"] = np.zeros(2)
    arrays["beta"] = np.zeros(2)  # B is exactly 0 everywhere
    out = MODEL.forward({"activation": "relu", "ddof": 0, "eps": 1e-5}, ones(dims), **arrays)
    assert np.all(np.asarray(out["B"]) == 0)
    assert np.all(np.asarray(out["dA"]) == 0)


def test_padding_leaves_real_entries_exact():
    """Zero-padding a draw to a bigger bucket with masks reproduces every real forward value."""
    dims = {"N": 5, "p1": 2, "p2": 3, "k": 1}
    bucket = {"N": 8, "p1": 4, "p2": 4, "k": 2}
    arrays = draw(dims, seed=3)
    cfg = {"activation": "tanh", "ddof": 1, "eps": 0.0}
    shapes = {**MODEL.inputs(bucket), **MODEL.params(bucket)}
    padded = {n: np.pad(a, [(0, b - s) for s, b in zip(a.shape, shapes[n])]) for n, a in arrays.items()}
    masks = {n: (np.arange(b) < dims[n]).astype(float) for n, b in bucket.items()}
    got = MODEL.forward(cfg, masks, **padded)
    want = numpy_forward(**arrays, **cfg)
    for name, value in want.items():
        cut = np.asarray(got[name])[tuple(slice(0, s) for s in np.shape(value))]
        np.testing.assert_allclose(cut, value, rtol=1e-12, atol=1e-14, err_msg=name)


def test_probe_sizes_are_distinct_for_any_number_of_dimensions():
    """Each dimension gets its own probe size, so a traced shape names its dimensions: mlp has one
    dimension per layer, and 15 layers are 17 dimensions (there were 16 sizes)."""
    from bncheck.models import probe_dims
    from bncheck.references import output_axes

    model = get_model("mlp", {"layers": 40, "loss": "mse", "activation": "tanh"})
    probe = probe_dims(model)
    assert list(probe) == list(model.dims) and len(set(probe.values())) == len(model.dims) == 42
    axes = output_axes(get_model("mlp", {"layers": 15, "loss": "mse", "activation": "tanh"}), {
        "layers": 15, "loss": "mse", "activation": "tanh",
    })
    assert axes["z16"] == ("n16", "M") and axes["yhat"] == ("n16", "M")
