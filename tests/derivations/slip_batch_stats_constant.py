"""Slip: grad_G1 treats the batch mean and sigma as constants (dH = dB*gamma/sigma); the other gradients are correct."""
import numpy as np

EXPECTED_FAIL = {"grad_G1"}
EXPECTED_DIAGNOSIS = {"grad_G1": {"code": "batch-stats-constant", "variant": "batch-stats-constant"}}
SETTINGS = {}

# Correct formulas (n = N - ddof):
#   D = dR/dB = (-2/N * resid @ G2.T) * dA;   E = gamma * D
#   dH = (E - mean_rows(E) - Hhat * sum_rows(E * Hhat) / n) / sigma


def _D(ctx):
    return (-2.0 / ctx.N) * (np.asarray(ctx.resid) @ np.asarray(ctx.G2).T) * np.asarray(ctx.dA)


def grad_beta(ctx):  # sum_rows D
    return _D(ctx).sum(axis=0)


def grad_gamma(ctx):  # sum_rows D * Hhat
    return (_D(ctx) * np.asarray(ctx.Hhat)).sum(axis=0)


def grad_G2(ctx):  # -2/N A' resid
    return (-2.0 / ctx.N) * np.asarray(ctx.A).T @ np.asarray(ctx.resid)


def grad_G1(ctx):  # SLIP: dH = gamma * D / sigma, dropping the -mean and -Hhat*projection terms
    dH = _D(ctx) * np.asarray(ctx.gamma) / np.asarray(ctx.sigma)
    return np.asarray(ctx.X).T @ dH
