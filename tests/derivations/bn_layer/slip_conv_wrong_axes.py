"""Slip: a conv layer handled like a dense one, its backward statistics summed over the batch axis N
only instead of over N, H and W (every (c, h, w) treated as its own unit); grad_gamma and grad_beta
sum over the right axes and are correct."""
import numpy as np

EXPECTED_FAIL = {"grad_x"}
EXPECTED_DIAGNOSIS = {"grad_x": {"code": "axes", "variant": "axes"}}
SETTINGS = {"layout": "conv"}


def grad_x(ctx):
    g = np.asarray(ctx.dout) * np.asarray(ctx.gamma)[None, :, None, None]
    sigma = np.asarray(ctx.sigma)[None, :, None, None]
    n = ctx.N - ctx.ddof  # SLIP: the count and both sums below should cover N, H and W
    d3a = (g - ctx.xhat * (ctx.xhat * g).sum(axis=0, keepdims=True) / n) / sigma
    return d3a - d3a.mean(axis=0, keepdims=True)


def grad_gamma(ctx):
    return (np.asarray(ctx.dout) * ctx.xhat).sum(axis=(0, 2, 3))


def grad_beta(ctx):
    return np.asarray(ctx.dout).sum(axis=(0, 2, 3))
