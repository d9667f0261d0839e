"""Slip: grad_gamma returns shape (1, p2) instead of (p2,), values otherwise right; the other gradients are correct."""
import numpy as np

EXPECTED_FAIL = {"grad_gamma"}
EXPECTED_DIAGNOSIS = {"grad_gamma": {"code": "shape", "repair": "flatten", "repaired": None}}
SETTINGS = {}

# Correct formulas (n = N - ddof):
#   D = dR/dB = (-2/N * resid @ G2.T) * dA;   E = gamma * D
#   dH = (E - mean_rows(E) - Hhat * sum_rows(E * Hhat) / n) / sigma


def _D(ctx):
    return (-2.0 / ctx.N) * (np.asarray(ctx.resid) @ np.asarray(ctx.G2).T) * np.asarray(ctx.dA)


def grad_beta(ctx):  # sum_rows D
    return _D(ctx).sum(axis=0)


def grad_G1(ctx):  # X' dH
    E = _D(ctx) * np.asarray(ctx.gamma)
    Hhat = np.asarray(ctx.Hhat)
    dH = (E - E.mean(axis=0) - Hhat * (E * Hhat).sum(axis=0) / (ctx.N - ctx.ddof)) / np.asarray(ctx.sigma)
    return np.asarray(ctx.X).T @ dH


def grad_G2(ctx):  # -2/N A' resid
    return (-2.0 / ctx.N) * np.asarray(ctx.A).T @ np.asarray(ctx.resid)


def grad_gamma(ctx):  # SLIP: keepdims=True gives (1, p2)
    return (_D(ctx) * np.asarray(ctx.Hhat)).sum(axis=0, keepdims=True)
