"""kron, by the Magnus–Neudecker rule (Matrix Differential Calculus, Thm 3.10), with the
commutation matrix K_{q,m} (K_{m,n} vec(A) = vec(Aᵀ)); vec is column-major, vec(M) = M.T.reshape(-1).

For A (m×n) and B (p×q):

    vec(A ⊗ B) = (I_n ⊗ K_{q,m} ⊗ I_p) (vec A ⊗ vec B)
    ∂vec(F)/∂vec(A)ᵀ = (I_n ⊗ K_{q,m} ⊗ I_p) (I_{mn} ⊗ vec B)          (mpnq × mn)
    ∂vec(F)/∂vec(B)ᵀ = (I_n ⊗ K_{q,m} ⊗ I_p) (vec A ⊗ I_{pq})          (mpnq × pq)

The product rule gives the differentials, d(A ⊗ B) = dA ⊗ B + A ⊗ dB, and the gradients of
R = Σ F ⊙ dF are the Jacobians transposed, applied to vec(dF) and un-vec'ed:
vec(∂R/∂A) = (∂vec(F)/∂vec(A)ᵀ)ᵀ vec(dF). The matrices come from bncheck/kron.py.
"""

import numpy as np

from bncheck.kron import jac_kron_A, jac_kron_B, unvec, vec


def jac_F_A(ctx):
    return jac_kron_A(ctx.A, ctx.B)


def jac_F_B(ctx):
    return jac_kron_B(ctx.A, ctx.B)


def jvp_F_A(ctx, V):
    return np.kron(V, ctx.B)


def jvp_F_B(ctx, V):
    return np.kron(ctx.A, V)


def grad_A(ctx):
    return unvec(jac_F_A(ctx).T @ vec(ctx.dF), np.shape(ctx.A))


def grad_B(ctx):
    return unvec(jac_F_B(ctx).T @ vec(ctx.dF), np.shape(ctx.B))
