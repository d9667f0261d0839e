"""Slip: δ⁽²⁾ = W⁽²⁾ᵀ δ⁽³⁾ without the ⊙ f′(z⁽²⁾), so the first layer's gradients are wrong; the
second layer's are correct. Written per example (a loop over the columns), as a reader of seed 003
might first write it."""
import numpy as np

EXPECTED_FAIL = {"grad_W1", "grad_b1"}
EXPECTED_DIAGNOSIS = {name: {"code": "activation-derivative"} for name in EXPECTED_FAIL}
SETTINGS = {"model": "mlp", "activation": "tanh", "trials": 8}

# Two layers, MSE, column m: delta3_m = (z3_m - Y_m)/M, delta2_m = (W2' delta3_m) * (1 - a2_m^2)
# for tanh; this file leaves out the (1 - a2_m^2).


def _columns(ctx):
    """(delta2_m, delta3_m) for each example m."""
    z3, Y, W2 = np.asarray(ctx.z3), np.asarray(ctx.Y), np.asarray(ctx.W2)
    for m in range(ctx.M):
        delta3 = (z3[:, m] - Y[:, m]) / ctx.M
        yield W2.T @ delta3, delta3


def grad_W1(ctx):
    X = np.asarray(ctx.X)
    return sum(np.outer(d2, X[:, m]) for m, (d2, _) in enumerate(_columns(ctx)))


def grad_W2(ctx):
    a2 = np.asarray(ctx.a2)
    return sum(np.outer(d3, a2[:, m]) for m, (_, d3) in enumerate(_columns(ctx)))


def grad_b1(ctx):
    return sum(d2 for d2, _ in _columns(ctx))


def grad_b2(ctx):
    return sum(d3 for _, d3 in _columns(ctx))
