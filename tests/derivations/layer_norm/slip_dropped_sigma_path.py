"""Slip: layer norm's backward pass without sigma's path, as if each row's sigma did not depend on x
(mu's path is kept); grad_gamma and grad_beta are correct."""
import numpy as np

EXPECTED_FAIL = {"grad_x"}
EXPECTED_DIAGNOSIS = {"grad_x": {"code": "batch-stats-constant", "variant": "batch-stats-constant:sigma"}}
SETTINGS = {"ddof": 1}


def grad_x(ctx):
    dxhat = np.asarray(ctx.dout) * np.asarray(ctx.gamma)[None, :]
    centred = dxhat - dxhat.mean(axis=1, keepdims=True)
    return centred / np.asarray(ctx.sigma)[:, None]  # SLIP: no - xhat * sum(xhat * dxhat) / (D - ddof)


def grad_gamma(ctx):
    return (ctx.xhat * ctx.dout).sum(axis=0)


def grad_beta(ctx):
    return np.asarray(ctx.dout).sum(axis=0)
