"""bn-mlp, closed form: the matrix-form gradients and the differential forms of B.

Notation as in the model (bncheck/models/bn_mlp.py); ⊙ is the Hadamard product, 1 a column of N ones,
n = N − ddof the variance divisor (ddof 0 is the BN paper's biased variance, ddof 1 R's `scale()`).

    G       = ∂R/∂B = −(2/N) (resid Γ₂ᵀ) ⊙ a′(B)                        (N, p2)
    ∂R/∂β   = 1ᵀ G                                                      (column sums)
    ∂R/∂γ   = 1ᵀ (G ⊙ Ĥ)
    ∂R/∂Γ₂  = −(2/N) Aᵀ resid
    ∂R/∂Γ₁  = Xᵀ ∂R/∂H,  with, column by column (γ/σ broadcast over rows),
    ∂R/∂H   = (γ/σ) ⊙ ( G − 1 (1ᵀG)/N − Ĥ ⊙ 1 (1ᵀ(Ĥ ⊙ G))/n )

The last line is the whole content of batch norm's backward pass: the mean term comes from μ's
dependence on H, the Ĥ term from σ's, and eps enters only through σ. Differentials of B along V:

    dB[β → β + V]   = 1 Vᵀ
    dB[γ → γ + V]   = Ĥ ⊙ 1 Vᵀ
    dB[Γ₁ → Γ₁ + V] = (γ/σ) ⊙ ( dHc − Ĥ ⊙ 1 (1ᵀ(Ĥ ⊙ dHc))/n ),  dHc = XV − 1 (1ᵀXV)/N
"""

import numpy as np


def _dR_dB(ctx):
    return -(2 / ctx.N) * (ctx.resid @ ctx.G2.T) * ctx.dA


def _through_batch_stats(ctx, dHhat):
    """The map shared by the gradient and the differential: centre, then remove the Ĥ direction."""
    n = ctx.N - ctx.ddof
    centred = dHhat - dHhat.mean(axis=0)
    return (ctx.gamma / ctx.sigma) * (centred - ctx.Hhat * (ctx.Hhat * dHhat).sum(axis=0) / n)


def grad_beta(ctx):
    return _dR_dB(ctx).sum(axis=0)


def grad_gamma(ctx):
    return (_dR_dB(ctx) * ctx.Hhat).sum(axis=0)


def grad_G1(ctx):
    return ctx.X.T @ _through_batch_stats(ctx, _dR_dB(ctx))


def grad_G2(ctx):
    return -(2 / ctx.N) * ctx.A.T @ ctx.resid


def jvp_B_beta(ctx, V):
    return np.broadcast_to(V, ctx.B.shape).copy()


def jvp_B_gamma(ctx, V):
    return ctx.Hhat * V


def jvp_B_G1(ctx, V):
    return _through_batch_stats(ctx, ctx.X @ V)
