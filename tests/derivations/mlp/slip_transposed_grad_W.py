"""Slip: grad_W1 returns a⁽¹⁾ δ⁽²⁾ᵀ, the transpose of ∂R/∂W⁽¹⁾; the other gradients are correct."""
import numpy as np

EXPECTED_FAIL = {"grad_W1"}
# n1 != n2, so the transpose has the wrong shape and the report shows the factors' dimensions.
SETTINGS = {"model": "mlp", "shape": "M=6,n1=3,n2=4,n3=2", "trials": 3}

# Two layers, MSE: delta3 = (z3 - Y)/M, delta2 = (W2' delta3) * f'(z2),
# dR/dW(l) = delta(l+1) a(l)', dR/db(l) = delta(l+1) summed over the columns.


def _delta3(ctx):
    return (np.asarray(ctx.z3) - np.asarray(ctx.Y)) / ctx.M


def _delta2(ctx):
    return (np.asarray(ctx.W2).T @ _delta3(ctx)) * np.asarray(ctx.da2)


def grad_W1(ctx):
    return np.asarray(ctx.X) @ _delta2(ctx).T


def grad_W2(ctx):
    return _delta3(ctx) @ np.asarray(ctx.a2).T


def grad_b1(ctx):
    return _delta2(ctx).sum(axis=1)


def grad_b2(ctx):
    return _delta3(ctx).sum(axis=1)
