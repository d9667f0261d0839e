"""layer-norm, closed form: batch norm's fused backward pass, taken along each row.

Σ sums over a row's D features, n = D − ddof is the variance divisor (ddof 0, the course's biased
variance, or 1), and per-row vectors (mu, sigma, the sums) broadcast along the row:

    dxhat   = dout ⊙ γ                                               ∂R/∂x̂
    ∂R/∂x   = (1/σ) ⊙ ( dxhat − Σ dxhat / D − x̂ ⊙ Σ(x̂ ⊙ dxhat) / n )
    ∂R/∂γ   = Σ over rows of (x̂ ⊙ dout)
    ∂R/∂β   = Σ over rows of dout

In ∂R/∂x the middle term is μ's path (∂μ/∂x = 1/D) and the last σ's (∂σ/∂x_j = x̂_j / n): from
∂x̂_i/∂x_j = (δ_ij − 1/D)/σ − x̂_i x̂_j / (n σ). eps enters only through σ.
"""

import numpy as np


def grad_x(ctx):
    dxhat = np.asarray(ctx.dout) * np.asarray(ctx.gamma)[None, :]
    projection = (ctx.xhat * dxhat).sum(axis=1) / (ctx.D - ctx.ddof)
    centred = dxhat - dxhat.mean(axis=1, keepdims=True)
    return (centred - ctx.xhat * projection[:, None]) / np.asarray(ctx.sigma)[:, None]


def grad_gamma(ctx):
    return (ctx.xhat * ctx.dout).sum(axis=0)


def grad_beta(ctx):
    return np.asarray(ctx.dout).sum(axis=0)
