"""Correct closed-form derivation of all ten bn-mlp functions, in plain NumPy (expected to pass)."""
import numpy as np

EXPECTED_FAIL = set()
EXPECTED_DIAGNOSIS = {}
SETTINGS = {}

# Backward chain (column-major vec; n = N - ddof):
#   dR/dyhat = -2/N * resid
#   D   = dR/dB = (-2/N * resid @ G2.T) * dA
#   E   = dR/dHhat = gamma * D
#   dH  = (E - mean_rows(E) - Hhat * sum_rows(E * Hhat) / n) / sigma
# A column j of B depends only on column j of G1:
#   dB[:, j]/dG1[:, j] = gamma_j/sigma_j * (I - 11'/N - h_j h_j'/n) @ X,  h_j = Hhat[:, j]


def _n(ctx):
    return ctx.N - ctx.ddof


def _D(ctx):
    return (-2.0 / ctx.N) * (np.asarray(ctx.resid) @ np.asarray(ctx.G2).T) * np.asarray(ctx.dA)


def _bn_back(ctx, E):
    """dR/dH from E = dR/dHhat (mean and variance of H included)."""
    Hhat = np.asarray(ctx.Hhat)
    return (E - E.mean(axis=0) - Hhat * (E * Hhat).sum(axis=0) / _n(ctx)) / np.asarray(ctx.sigma)


def grad_beta(ctx):  # sum_rows D
    return _D(ctx).sum(axis=0)


def grad_gamma(ctx):  # sum_rows D * Hhat
    return (_D(ctx) * np.asarray(ctx.Hhat)).sum(axis=0)


def grad_G1(ctx):  # X' dH
    return np.asarray(ctx.X).T @ _bn_back(ctx, _D(ctx) * np.asarray(ctx.gamma))


def grad_G2(ctx):  # -2/N A' resid
    return (-2.0 / ctx.N) * np.asarray(ctx.A).T @ np.asarray(ctx.resid)


def jac_B_beta(ctx):  # row (i, j) has a 1 in column j
    N, p2 = np.shape(ctx.Hhat)
    J = np.zeros((N * p2, p2))
    for j in range(p2):
        J[j * N:(j + 1) * N, j] = 1.0
    return J


def jac_B_gamma(ctx):  # row (i, j) has Hhat[i, j] in column j
    Hhat = np.asarray(ctx.Hhat)
    N, p2 = Hhat.shape
    J = np.zeros((N * p2, p2))
    for j in range(p2):
        J[j * N:(j + 1) * N, j] = Hhat[:, j]
    return J


def jac_B_G1(ctx):  # block diagonal, block j = gamma_j/sigma_j (I - 11'/N - h_j h_j'/n) X
    X, Hhat = np.asarray(ctx.X), np.asarray(ctx.Hhat)
    gamma, sigma = np.asarray(ctx.gamma), np.asarray(ctx.sigma)
    N, p1 = X.shape
    p2 = Hhat.shape[1]
    J = np.zeros((N * p2, p1 * p2))
    for j in range(p2):
        h = Hhat[:, j]
        P = np.eye(N) - 1.0 / N - np.outer(h, h) / _n(ctx)
        J[j * N:(j + 1) * N, j * p1:(j + 1) * p1] = gamma[j] / sigma[j] * (P @ X)
    return J


def jvp_B_beta(ctx, V):  # dB = 1 V'
    return np.broadcast_to(np.asarray(V), np.shape(ctx.Hhat)).copy()


def jvp_B_gamma(ctx, V):  # dB = Hhat * V
    return np.asarray(ctx.Hhat) * np.asarray(V)


def jvp_B_G1(ctx, V):  # dH = X V; dB = gamma/sigma * (dH - mean(dH) - Hhat * sum(Hhat*dH)/n)
    Hhat = np.asarray(ctx.Hhat)
    dH = np.asarray(ctx.X) @ np.asarray(V)
    dHc = dH - dH.mean(axis=0)
    return np.asarray(ctx.gamma) / np.asarray(ctx.sigma) * (dHc - Hhat * (Hhat * dH).sum(axis=0) / _n(ctx))
