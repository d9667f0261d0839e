"""Slip: grad_G1 keeps the batch mean's path but treats sigma as a constant, the most common
normalisation slip (dH = (E - mean_rows(E)) / sigma, without the Hhat projection); the other gradients
are correct."""
import numpy as np

EXPECTED_FAIL = {"grad_G1"}
EXPECTED_DIAGNOSIS = {"grad_G1": {"code": "batch-stats-constant", "variant": "batch-stats-constant:sigma"}}
SETTINGS = {}

# Correct (n = N - ddof): D = dR/dB = (-2/N * resid @ G2.T) * dA;  E = gamma * D
#   dH = (E - mean_rows(E) - Hhat * sum_rows(E * Hhat) / n) / sigma


def _D(ctx):
    return (-2.0 / ctx.N) * (np.asarray(ctx.resid) @ np.asarray(ctx.G2).T) * np.asarray(ctx.dA)


def grad_beta(ctx):
    return _D(ctx).sum(axis=0)


def grad_gamma(ctx):
    return (_D(ctx) * np.asarray(ctx.Hhat)).sum(axis=0)


def grad_G2(ctx):
    return (-2.0 / ctx.N) * np.asarray(ctx.A).T @ np.asarray(ctx.resid)


def grad_G1(ctx):  # SLIP: no - Hhat * sum_rows(E * Hhat) / n, the path through sigma
    E = _D(ctx) * np.asarray(ctx.gamma)
    dH = (E - E.mean(axis=0)) / np.asarray(ctx.sigma)
    return np.asarray(ctx.X).T @ dH
