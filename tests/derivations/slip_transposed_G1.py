"""Slip: grad_G1 returns dHᵀ X, the transpose of X' dH; at p1 = p2 its shape still fits. The other gradients are correct."""
import numpy as np

EXPECTED_FAIL = {"grad_G1"}
EXPECTED_DIAGNOSIS = {"grad_G1": {"code": "transpose", "order": "transposed", "factor_name": "1"}}
# A square Γ₁, so the slip is a transposed value, not a wrong shape (that case: tests/test_diagnose.py).
SETTINGS = {"shape": "N=6,p1=3,p2=3,k=1", "trials": 6}

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


def grad_G1(ctx):  # SLIP: dH' X (should be X' dH)
    E = _D(ctx) * np.asarray(ctx.gamma)
    Hhat = np.asarray(ctx.Hhat)
    dH = (E - E.mean(axis=0) - Hhat * (E * Hhat).sum(axis=0) / (ctx.N - ctx.ddof)) / np.asarray(ctx.sigma)
    return dH.T @ np.asarray(ctx.X)
