"""Slip: the bias is handled honestly (zero) but grad_W forgets that E[x] moves with W too, so it
misses the centring of dR/dxhat; jvp_xhat_b is correct."""
import numpy as np

EXPECTED_FAIL = {"grad_W"}
EXPECTED_DIAGNOSIS = {"grad_W": {"code": "batch-stats-constant", "variant": "batch-stats-constant:mean"}}
SETTINGS = {}


def grad_b(ctx):
    return np.zeros(ctx.n)


def grad_W(ctx):
    return np.asarray(ctx.x1).T @ (2.0 * (np.asarray(ctx.xhat) - ctx.t) / ctx.N)  # SLIP: not centred


def jvp_xhat_b(ctx, V):
    return np.zeros((ctx.N, ctx.n))
