"""Correct centering derivation, written from the contract alone (expected to pass): the bias
gradient is computed, not assumed to be zero, so it checks that the centring really cancels it."""
import numpy as np

EXPECTED_FAIL = set()
EXPECTED_DIAGNOSIS = {}
SETTINGS = {}


def _dR_dx(ctx):
    G = 2.0 * (np.asarray(ctx.xhat) - ctx.t) / ctx.N  # dR/dxhat
    return G - G.mean(axis=0, keepdims=True)  # through xhat = x - E[x]


def grad_b(ctx):
    return _dR_dx(ctx).sum(axis=0)


def grad_W(ctx):
    return np.asarray(ctx.x1).T @ _dR_dx(ctx)


def grad_t(ctx):
    return -2.0 * (np.asarray(ctx.xhat) - ctx.t) / ctx.N
