"""Slip: grad_x divides the variance term by M = N·H·W whatever ddof is (wrong only when ddof = 1);
conv layout, statistics per channel. grad_gamma and grad_beta are correct."""
import numpy as np

EXPECTED_FAIL = {"grad_x"}
EXPECTED_DIAGNOSIS = {"grad_x": {"code": "ddof", "variant": "ddof"}}
SETTINGS = {"layout": "conv", "ddof": 1}

AXES = (0, 2, 3)


def _c(v):  # one value per channel, broadcast over N, H, W
    return np.asarray(v)[None, :, None, None]


def grad_x(ctx):
    g = np.asarray(ctx.dout) * _c(ctx.gamma)
    M = ctx.N * ctx.H * ctx.W
    proj = (g * ctx.xhat).sum(axis=AXES) / M  # SLIP: should be / (M - ctx.ddof)
    return (g - g.mean(axis=AXES, keepdims=True) - ctx.xhat * _c(proj)) / _c(ctx.sigma)


def grad_gamma(ctx):
    return (np.asarray(ctx.dout) * ctx.xhat).sum(axis=AXES)


def grad_beta(ctx):
    return np.asarray(ctx.dout).sum(axis=AXES)
