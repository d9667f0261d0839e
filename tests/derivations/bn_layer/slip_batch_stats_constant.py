"""Slip: grad_x treats mu and sigma as constants (the BN paper's section-2 trap, seed 002), so it
keeps only the direct path gamma * dout / sigma; grad_gamma and grad_beta are correct."""
import numpy as np

EXPECTED_FAIL = {"grad_x"}
EXPECTED_DIAGNOSIS = {"grad_x": {"code": "batch-stats-constant", "variant": "batch-stats-constant"}}
SETTINGS = {"layout": "fc"}


def grad_x(ctx):  # SLIP: the paths through mu and sigma are dropped
    return np.asarray(ctx.dout) * ctx.gamma / ctx.sigma


def grad_gamma(ctx):
    return (np.asarray(ctx.dout) * ctx.xhat).sum(axis=0)


def grad_beta(ctx):
    return np.asarray(ctx.dout).sum(axis=0)
