"""Slip: seed 001's last step dx = d3a - (1/N) sum(d3a) loses its 1/N; grad_gamma and grad_beta are correct."""
import numpy as np

EXPECTED_FAIL = {"grad_x"}
# dx = d3a - N mean(d3a) is no named factor of the reference.
EXPECTED_DIAGNOSIS = {"grad_x": {"code": "unknown"}}
SETTINGS = {"layout": "fc", "ddof": 0}


def grad_x(ctx):
    d12a = np.asarray(ctx.dout) * ctx.gamma
    n = ctx.N - ctx.ddof
    d3a = (d12a - ctx.xhat * (ctx.xhat * d12a).sum(axis=0) / n) / ctx.sigma
    return d3a - d3a.sum(axis=0)  # SLIP: should be d3a.sum(axis=0) / ctx.N


def grad_gamma(ctx):
    return (np.asarray(ctx.dout) * ctx.xhat).sum(axis=0)


def grad_beta(ctx):
    return np.asarray(ctx.dout).sum(axis=0)
