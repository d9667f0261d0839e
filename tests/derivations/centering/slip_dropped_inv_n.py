"""Slip: grad_W forgets the 1/N of R = sum((xhat - t)^2)/N; grad_b is correct."""
import numpy as np

EXPECTED_FAIL = {"grad_W"}
EXPECTED_DIAGNOSIS = {"grad_W": {"code": "scale", "factor_name": "N"}}
SETTINGS = {}


def grad_b(ctx):
    return np.zeros(ctx.n)


def grad_W(ctx):
    G = 2.0 * (np.asarray(ctx.xhat) - ctx.t)  # SLIP: should be divided by N
    return np.asarray(ctx.x1).T @ (G - G.mean(axis=0))
