"""Slip: grad_x keeps the mean's path (branch ①) but drops sigma's (the Hhat projection), as if sigma
did not depend on x; grad_gamma and grad_beta are correct."""
import numpy as np

EXPECTED_FAIL = {"grad_x"}
EXPECTED_DIAGNOSIS = {"grad_x": {"code": "batch-stats-constant", "variant": "batch-stats-constant:sigma"}}
SETTINGS = {"layout": "fc", "ddof": 1}


def grad_x(ctx):
    g = np.asarray(ctx.dout) * np.asarray(ctx.gamma)
    return (g - g.mean(axis=0)) / np.asarray(ctx.sigma)  # SLIP: no - xhat * sum(g * xhat) / (N - ddof)


def grad_gamma(ctx):
    return (np.asarray(ctx.dout) * ctx.xhat).sum(axis=0)


def grad_beta(ctx):
    return np.asarray(ctx.dout).sum(axis=0)
