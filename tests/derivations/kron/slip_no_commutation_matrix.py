"""Slip: jac_F_B = vec A ⊗ I_pq, the Magnus–Neudecker rule without its permutation
I_n ⊗ K_{q,m} ⊗ I_p (right only when that permutation is the identity); jac_F_A is correct."""
import numpy as np

EXPECTED_FAIL = {"jac_F_B"}
SETTINGS = {"model": "kron", "shape": "m=3,n=2,p=2,q=2", "trials": 2}


def _vec(M):
    return np.asarray(M).T.reshape(-1)


def jac_F_A(ctx):
    # Column j*m + i of the Jacobian is vec(E_ij ⊗ B), E_ij the unit matrix of A's shape.
    m, n = np.shape(ctx.A)
    columns = []
    for j in range(n):
        for i in range(m):
            E = np.zeros((m, n))
            E[i, j] = 1.0
            columns.append(_vec(np.kron(E, ctx.B)))
    return np.stack(columns, axis=1)


def jac_F_B(ctx):
    p, q = np.shape(ctx.B)
    return np.kron(_vec(ctx.A)[:, None], np.eye(p * q))  # the slip: no I_n ⊗ K_{q,m} ⊗ I_p in front
