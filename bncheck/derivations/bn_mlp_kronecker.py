"""bn-mlp, Kronecker form: the Jacobians of vec(B), and the gradients from them by the chain rule.

Column-major vec (vec(M) stacks the columns of M), so vec(A X B) = (Bᵀ ⊗ A) vec(X). With 1 a column of
N ones, J_N = 1 1ᵀ, C = I_N − J_N/N the centring matrix, n = N − ddof the variance divisor,
D = diag(vec Ĥ) and S = diag(γ/σ):

    B = (γᵀ ⊗ 1) ⊙ Ĥ + βᵀ ⊗ 1           (the seed question's form, with γ, β as rows)

    ∂vec B/∂βᵀ     = ∂vec(βᵀ ⊗ 1)/∂βᵀ = (I_p2 ⊗ K_{1,1} ⊗ I_N)(I_p2 ⊗ vec 1) = I_p2 ⊗ 1
    ∂vec B/∂γᵀ     = D (I_p2 ⊗ 1)
    ∂vec B/∂vec Γ₁ᵀ = (S ⊗ I_N) (I − D (I_p2 ⊗ J_N) D / n) (I_p2 ⊗ C X)

The first is the Magnus–Neudecker rule for d vec(A ⊗ B)/d vec A (bncheck/kron.py) applied to A = βᵀ,
B = 1 — the rule the seed question reaches for. In the third, (I_p2 ⊗ C X) maps dΓ₁ to the centred dH,
and the bracket removes, within each column, the direction of Ĥ that σ absorbs: column j is
(γⱼ/σⱼ)(I − ĥⱼĥⱼᵀ/n) C X.

Gradients, with vec ∂R/∂B = diag(vec a′(B)) (Γ₂ ⊗ I_N) (−2/N) vec(resid):

    ∇_β R = (∂vec B/∂βᵀ)ᵀ vec ∂R/∂B,  likewise γ and vec Γ₁
    vec ∇_Γ₂ R = (I_k ⊗ A)ᵀ (−2/N) vec(resid)     since vec(A Γ₂) = (I_k ⊗ A) vec Γ₂

Everything is formed densely ((N·p2)² entries for the Γ₁ bracket), so this form is for checking at
small sizes; the closed form is the one to run on large ones.
"""

import numpy as np

from bncheck.kron import jac_kron_A, unvec, vec


def _ones(ctx):
    return np.ones((ctx.N, 1))


def jac_B_beta(ctx):
    return jac_kron_A(ctx.beta[None, :], _ones(ctx))


def jac_B_gamma(ctx):
    return vec(ctx.Hhat)[:, None] * jac_kron_A(ctx.gamma[None, :], _ones(ctx))


def jac_B_G1(ctx):
    N, p2 = ctx.B.shape
    n = ctx.N - ctx.ddof
    I_p2 = np.eye(p2)
    centring = np.eye(N) - np.ones((N, N)) / N
    # D and S ⊗ I_N are diagonal: applied as row scalings, which is what multiplying by them does,
    # without the cost of dense (N·p2)² products.
    d = vec(ctx.Hhat)[:, None]
    dHc = np.kron(I_p2, centring @ ctx.X)
    projected = dHc - d * (np.kron(I_p2, np.ones((N, N))) @ (d * dHc)) / n
    return vec(np.broadcast_to(ctx.gamma / ctx.sigma, (N, p2)))[:, None] * projected


def _vec_dR_dB(ctx):
    N = ctx.N
    return vec(ctx.dA) * (np.kron(ctx.G2, np.eye(N)) @ (-(2 / N) * vec(ctx.resid)))


def grad_beta(ctx):
    return jac_B_beta(ctx).T @ _vec_dR_dB(ctx)


def grad_gamma(ctx):
    return jac_B_gamma(ctx).T @ _vec_dR_dB(ctx)


def grad_G1(ctx):
    return unvec(jac_B_G1(ctx).T @ _vec_dR_dB(ctx), ctx.G1.shape)


def grad_G2(ctx):
    k = ctx.G2.shape[1]
    return unvec(np.kron(np.eye(k), ctx.A).T @ (-(2 / ctx.N) * vec(ctx.resid)), ctx.G2.shape)
