"""Slip: seed 001's branch ① is dropped: grad_x stops at d3a, as if the batch mean did not depend on x
(sigma's path is kept); grad_gamma and grad_beta are correct."""
import numpy as np

EXPECTED_FAIL = {"grad_x"}
EXPECTED_DIAGNOSIS = {"grad_x": {"code": "batch-stats-constant", "variant": "batch-stats-constant:mean"}}
SETTINGS = {"layout": "conv", "ddof": 1}

AXES = (0, 2, 3)


def grad_x(ctx):
    g = np.asarray(ctx.dout) * np.asarray(ctx.gamma)[None, :, None, None]
    n = ctx.N * ctx.H * ctx.W - ctx.ddof
    proj = (g * ctx.xhat).sum(axis=AXES) / n
    return (g - ctx.xhat * proj[None, :, None, None]) / np.asarray(ctx.sigma)[None, :, None, None]  # SLIP: no - mean


def grad_gamma(ctx):
    return (np.asarray(ctx.dout) * ctx.xhat).sum(axis=AXES)


def grad_beta(ctx):
    return np.asarray(ctx.dout).sum(axis=AXES)
