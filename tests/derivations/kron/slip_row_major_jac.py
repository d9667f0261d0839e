"""Slip: jac_F_A orders rows and columns by row-major vec (F.reshape(-1), A.reshape(-1)) instead of
column-major; jac_F_B and the gradients are correct."""
import numpy as np

EXPECTED_FAIL = {"jac_F_A"}
# The two orders coincide when every matrix is a row or a column, so the shape needs n, q >= 2.
SETTINGS = {"model": "kron", "shape": "m=2,n=3,p=2,q=2", "trials": 2}

# F[i*p + k, j*q + l] = A[i, j] B[k, l], so dF[i*p + k, j*q + l] / dA[i, j] = B[k, l].
# Column-major vec puts F[r, c] at r + c*(m*p) and A[i, j] at i + j*m.


def _entries(ctx):
    (m, n), (p, q) = np.shape(ctx.A), np.shape(ctx.B)
    for i in range(m):
        for j in range(n):
            for k in range(p):
                for l in range(q):
                    yield i, j, k, l, i * p + k, j * q + l


def jac_F_A(ctx):
    (m, n), (p, q) = np.shape(ctx.A), np.shape(ctx.B)
    J = np.zeros((m * p * n * q, m * n))
    for i, j, k, l, r, c in _entries(ctx):
        J[r * (n * q) + c, i * n + j] = ctx.B[k, l]  # the slip: row-major on both sides
    return J


def jac_F_B(ctx):
    (m, n), (p, q) = np.shape(ctx.A), np.shape(ctx.B)
    J = np.zeros((m * p * n * q, p * q))
    for i, j, k, l, r, c in _entries(ctx):
        J[r + c * (m * p), k + l * p] = ctx.A[i, j]
    return J


def grad_A(ctx):  # dR/dA[i, j] = sum_{k,l} dF[i*p + k, j*q + l] B[k, l]
    out = np.zeros(np.shape(ctx.A))
    for i, j, k, l, r, c in _entries(ctx):
        out[i, j] += ctx.dF[r, c] * ctx.B[k, l]
    return out


def grad_B(ctx):
    out = np.zeros(np.shape(ctx.B))
    for i, j, k, l, r, c in _entries(ctx):
        out[k, l] += ctx.dF[r, c] * ctx.A[i, j]
    return out
