"""centering, naive: the gradient step the BN paper warns about (section 2), expected to fail.

It ignores that E[x] depends on b (and on W): x̂ = x − E[x] is differentiated as if E[x] were a
constant, so ∂x̂/∂b = 1 instead of 0 (seed 002's answer). With G = ∂R/∂x̂ = (2/N)(x̂ − t):

    ∂R/∂b  = 1ᵀ G = −(2/N) 1ᵀ t                          (1ᵀx̂ = 0): the same vector at every b
    ∂R/∂W  = x1ᵀ G
    ∂vec(x̂)/∂bᵀ = I_n ⊗ 1                                 vec column-major
    dx̂[W → W + V] = x1 V

A step b ← b − lr ∂R/∂b moves every x and E[x] by the same amount: x̂ and R stay where they are,
and b grows by the same vector at every step, without bound (`bncheck demo centering`).
"""

import numpy as np


def _G(ctx):
    return (2 / ctx.N) * (ctx.xhat - ctx.t)


def grad_b(ctx):
    return _G(ctx).sum(axis=0)


def grad_W(ctx):
    return ctx.x1.T @ _G(ctx)


def jac_xhat_b(ctx):
    return np.kron(np.eye(ctx.n), np.ones((ctx.N, 1)))


def jvp_xhat_W(ctx, V):
    return ctx.x1 @ V
