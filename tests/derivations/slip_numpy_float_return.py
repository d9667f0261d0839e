"""Slip: grad_beta returns a Python float (the total sum of dR/dB) instead of a (p2,) array; the other gradients are correct."""
import numpy as np

EXPECTED_FAIL = {"grad_beta"}
EXPECTED_DIAGNOSIS = {"grad_beta": {"code": "shape"}}
SETTINGS = {}

# Correct formulas (n = N - ddof):
#   D = dR/dB = (-2/N * resid @ G2.T) * dA;   E = gamma * D
#   dH = (E - mean_rows(E) - Hhat * sum_rows(E * Hhat) / n) / sigma


def _D(ctx):
    return (-2.0 / ctx.N) * (np.asarray(ctx.resid) @ np.asarray(ctx.G2).T) * np.asarray(ctx.dA)


def grad_gamma(ctx):  # sum_rows D * Hhat
    return (_D(ctx) * np.asarray(ctx.Hhat)).sum(axis=0)


def grad_G1(ctx):  # X' dH
    E = _D(ctx) * np.asarray(ctx.gamma)
    Hhat = np.asarray(ctx.Hhat)
    dH = (E - E.mean(axis=0) - Hhat * (E * Hhat).sum(axis=0) / (ctx.N - ctx.ddof)) / np.asarray(ctx.sigma)
    return np.asarray(ctx.X).T @ dH


def grad_G2(ctx):  # -2/N A' resid
    return (-2.0 / ctx.N) * np.asarray(ctx.A).T @ np.asarray(ctx.resid)


def grad_beta(ctx):  # SLIP: float(sum over all of D); should be the (p2,) column sums
    return float(_D(ctx).sum())
