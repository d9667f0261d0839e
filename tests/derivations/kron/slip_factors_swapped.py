"""Slip: jac_F_B = (I_n ⊗ K_{q,m} ⊗ I_p)(I_pq ⊗ vec A), the Magnus–Neudecker rule with the factors of
its last Kronecker product in the wrong order (same shape: mnpq × pq); jac_F_A is correct."""
import numpy as np

from bncheck.kron import commutation_matrix, jac_kron_A, vec

EXPECTED_FAIL = {"jac_F_B"}
EXPECTED_DIAGNOSIS = {"jac_F_B": {"code": "transpose", "order": "rows are in another order"}}
# With a single row or column in A or B the two orders can coincide.
SETTINGS = {"model": "kron", "shape": "m=2,n=3,p=2,q=2", "trials": 2}


def jac_F_A(ctx):
    return jac_kron_A(np.asarray(ctx.A), np.asarray(ctx.B))


def jac_F_B(ctx):
    (m, n), (p, q) = np.shape(ctx.A), np.shape(ctx.B)
    permute = np.kron(np.kron(np.eye(n), commutation_matrix(q, m)), np.eye(p))
    return permute @ np.kron(np.eye(p * q), vec(np.asarray(ctx.A))[:, None])  # SLIP: vec A ⊗ I_pq
