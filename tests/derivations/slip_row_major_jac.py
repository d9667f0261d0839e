"""Slip: jac_B_G1 orders its columns by row-major vec(G1) (G1.reshape(-1)) instead of column-major; jac_B_beta and jac_B_gamma are correct."""
import numpy as np

EXPECTED_FAIL = {"jac_B_G1"}
EXPECTED_DIAGNOSIS = {"jac_B_G1": {"code": "transpose", "order": "columns follow row-major vec order"}}
# The two orderings coincide when p1 == 1 or p2 == 1, so the slip needs p1, p2 >= 2 to show.
SETTINGS = {"shape": "N=6,p1=3,p2=2"}

# Rows: vec(B) index j*N + i for B[i, j].  n = N - ddof.
#   dB[:, j]/dG1[a, j] = gamma_j/sigma_j * (I - 11'/N - h_j h_j'/n) X[:, a],  h_j = Hhat[:, j]
# Column-major vec(G1) puts G1[a, j] at j*p1 + a; this file uses a*p2 + j.


def jac_B_beta(ctx):  # row (i, j) has a 1 in column j
    N, p2 = np.shape(ctx.Hhat)
    return np.kron(np.eye(p2), np.ones((N, 1)))


def jac_B_gamma(ctx):  # row (i, j) has Hhat[i, j] in column j
    N, p2 = np.shape(ctx.Hhat)
    return np.asarray(ctx.Hhat).T.reshape(-1)[:, None] * np.kron(np.eye(p2), np.ones((N, 1)))


def jac_B_G1(ctx):
    X, Hhat = np.asarray(ctx.X), np.asarray(ctx.Hhat)
    N, p1 = X.shape
    p2 = Hhat.shape[1]
    J = np.zeros((N * p2, p1 * p2))
    for j in range(p2):
        h = Hhat[:, j]
        P = np.eye(N) - 1.0 / N - np.outer(h, h) / (ctx.N - ctx.ddof)
        block = ctx.gamma[j] / ctx.sigma[j] * (P @ X)
        for a in range(p1):
            J[j * N:(j + 1) * N, a * p2 + j] = block[:, a]  # SLIP: should be column j * p1 + a
    return J
