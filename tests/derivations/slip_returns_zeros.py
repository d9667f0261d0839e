"""Slip: grad_G2 is a placeholder that returns zeros of the right shape; the other gradients are correct."""
import numpy as np

EXPECTED_FAIL = {"grad_G2"}
EXPECTED_DIAGNOSIS = {"grad_G2": {"code": "zeros"}}
SETTINGS = {}


def _D(ctx):
    return (-2.0 / ctx.N) * (np.asarray(ctx.resid) @ np.asarray(ctx.G2).T) * np.asarray(ctx.dA)


def grad_beta(ctx):
    return _D(ctx).sum(axis=0)


def grad_G2(ctx):  # SLIP: not written yet
    return np.zeros(np.shape(ctx.G2))
