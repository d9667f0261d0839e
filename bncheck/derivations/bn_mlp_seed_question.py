"""bn-mlp, the seed question's derivation exactly as first posted (seeds/000): expected to fail.

Its conventions: R's `scale()` and `sd()` (ddof = 1, eps = 0), relu, and the loss's scale left out,
so every "−2ε̂" stands where −(2/N) ε̂ belongs. With stub ≡ a′(b(XΓ₁)) ⊙ (−2 ε̂ Γ₂ᵀ):

    ∂R/∂β  = 1ᵀ stub                                   (update 1)
    ∂R/∂γ  = scale(XΓ₁)ᵀ (stub ⊙ (γ ⊗ 1_N))            (update 4: a p2×p2 matrix; the looped
                                                        version posted beside it is its diagonal)
    ∂R/∂Γ₁ = Xᵀ (stub ⊙ w),  w ≡ (γ ⊗ 1_N) ⊙ sd(XΓ₁)   (update 3: multiplies by the deviation, and
                                                        holds the batch mean and deviation fixed)
    ∂R/∂Γ₂ = −2 Vᵀ ε̂,  V = a(b(XΓ₁))                   (posted for the net without batch norm, under
                                                        the label ∂R/∂Γ₁; it is the Γ₂ gradient)

What is wrong, against the true gradients: every line is N times too large; ∂R/∂γ has the wrong shape
and, on its diagonal, an extra factor γ; ∂R/∂Γ₁ ignores that μ and σ depend on Γ₁ and multiplies by
σ where it should divide. `bncheck verify seed-question --config configs/seed-question.toml` shows it.
"""

import numpy as np


def _stub(ctx):
    return ctx.dA * (-2 * ctx.resid @ ctx.G2.T)


def _gamma_k_ones(ctx):
    return np.kron(ctx.gamma[None, :], np.ones((ctx.N, 1)))


def grad_beta(ctx):
    return np.ones(ctx.N) @ _stub(ctx)


def grad_gamma(ctx):
    scaled = (ctx.H - ctx.H.mean(axis=0)) / ctx.H.std(axis=0, ddof=1)
    return scaled.T @ (_stub(ctx) * _gamma_k_ones(ctx))


def grad_G1(ctx):
    sd = ctx.H.std(axis=0, ddof=1)
    w = _gamma_k_ones(ctx) * np.kron(sd[None, :], np.ones((ctx.N, 1)))
    return ctx.X.T @ (_stub(ctx) * w)


def grad_G2(ctx):
    return -2 * ctx.A.T @ ctx.resid
