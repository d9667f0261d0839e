"""Slip: jvp_B_G1 forgets to subtract the batch mean of dH = X V; jvp_B_beta and jvp_B_gamma are correct."""
import numpy as np

EXPECTED_FAIL = {"jvp_B_G1"}
EXPECTED_DIAGNOSIS = {"jvp_B_G1": {"code": "batch-stats-constant", "variant": "batch-stats-constant:mean"}}
SETTINGS = {}

# Correct: dH = X V;  dB = gamma/sigma * (dH - mean_rows(dH) - Hhat * sum_rows(Hhat * dH) / (N - ddof))


def jvp_B_beta(ctx, V):  # dB = 1 V'
    return np.ones((np.shape(ctx.Hhat)[0], 1)) * np.asarray(V)[None, :]


def jvp_B_gamma(ctx, V):  # dB = Hhat * V
    return np.asarray(ctx.Hhat) * np.asarray(V)


def jvp_B_G1(ctx, V):  # SLIP: the "- mean_rows(dH)" term is missing
    Hhat = np.asarray(ctx.Hhat)
    dH = np.asarray(ctx.X) @ np.asarray(V)
    return np.asarray(ctx.gamma) / np.asarray(ctx.sigma) * (dH - Hhat * (Hhat * dH).sum(axis=0) / (ctx.N - ctx.ddof))
