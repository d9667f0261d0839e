"""Slip: layer norm's backward pass without mu's path, as if the row mean did not depend on x (sigma's
path is kept); grad_gamma and grad_beta are correct."""
import numpy as np

EXPECTED_FAIL = {"grad_x"}
EXPECTED_DIAGNOSIS = {"grad_x": {"code": "batch-stats-constant", "variant": "batch-stats-constant:mean"}}
SETTINGS = {"ddof": 0}


def grad_x(ctx):
    dxhat = np.asarray(ctx.dout) * np.asarray(ctx.gamma)[None, :]
    projection = (ctx.xhat * dxhat).sum(axis=1) / (ctx.D - ctx.ddof)
    return (dxhat - ctx.xhat * projection[:, None]) / np.asarray(ctx.sigma)[:, None]  # SLIP: no - mean(dxhat)


def grad_gamma(ctx):
    return (ctx.xhat * ctx.dout).sum(axis=0)


def grad_beta(ctx):
    return np.asarray(ctx.dout).sum(axis=0)
