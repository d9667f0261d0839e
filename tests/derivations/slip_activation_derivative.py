"""Slip: dR/dB leaves out a'(B), as the seed question's R code does (its ap() is 1 everywhere): every
gradient through B is wrong; grad_G2 does not pass through a'(B) and is correct."""
import numpy as np

EXPECTED_FAIL = {"grad_beta", "grad_gamma", "grad_G1"}
EXPECTED_DIAGNOSIS = {
    name: {"code": "activation-derivative", "variant": "activation-derivative"} for name in EXPECTED_FAIL
}
SETTINGS = {"activation": "tanh"}


def _D(ctx):  # SLIP: should be multiplied by ctx.dA, tanh'(B) = 1 - A**2
    return (-2.0 / ctx.N) * (np.asarray(ctx.resid) @ np.asarray(ctx.G2).T)


def grad_beta(ctx):
    return _D(ctx).sum(axis=0)


def grad_gamma(ctx):
    return (_D(ctx) * np.asarray(ctx.Hhat)).sum(axis=0)


def grad_G1(ctx):
    n = ctx.N - ctx.ddof
    E = _D(ctx) * np.asarray(ctx.gamma)
    Hhat = np.asarray(ctx.Hhat)
    dH = (E - E.mean(axis=0) - Hhat * (E * Hhat).sum(axis=0) / n) / np.asarray(ctx.sigma)
    return np.asarray(ctx.X).T @ dH


def grad_G2(ctx):
    return (-2.0 / ctx.N) * np.asarray(ctx.A).T @ np.asarray(ctx.resid)
