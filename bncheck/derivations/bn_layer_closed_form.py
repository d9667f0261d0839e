"""bn-layer, closed form: the fused backward pass that seed 001 arrives at after collapsing its graph.

Sums Σ and means run over the statistics axes (the N rows for `--layout fc`; N, H and W for
`--layout conv`), M is the number of entries each sums over, n = M − ddof the variance divisor
(ddof 0 is the BN paper's biased variance, as in seed 001; ddof 1 the unbiased one). Per-unit
vectors (gamma, sigma, the sums) broadcast over the statistics axes.

    d12a    = dout ⊙ γ                                  ∂R/∂x̂
    d3a     = (1/σ) ⊙ ( d12a − x̂ ⊙ Σ(x̂ ⊙ d12a) / n )     ∂R/∂(x − μ), σ's path folded in
    ∂R/∂x   = d3a − Σ d3a / M                            μ's path
    ∂R/∂γ   = Σ (x̂ ⊙ dout)
    ∂R/∂β   = Σ dout

Seed 001 writes the second line as f7 ⊙ (d12a − f3 ⊙ (f5 + ε)⁻¹ ⊙ Σ(f3 ⊙ d12a)/N); with x̂ = f3 ⊙ f7 and
σ² = f5 + ε it is the line above, with N → n for ddof = 1. eps enters only through σ.
"""

import numpy as np


def _axes(ctx):
    return (0, 2, 3) if ctx.x.ndim == 4 else (0,)


def _per_unit(ctx, v):
    return v[None, :, None, None] if ctx.x.ndim == 4 else v[None, :]


def grad_x(ctx):
    axes = _axes(ctx)
    M = ctx.x.size // ctx.x.shape[1]
    d12a = ctx.dout * _per_unit(ctx, ctx.gamma)
    projection = (ctx.xhat * d12a).sum(axis=axes) / (M - ctx.ddof)
    d3a = (d12a - ctx.xhat * _per_unit(ctx, projection)) / _per_unit(ctx, ctx.sigma)
    return d3a - d3a.mean(axis=axes, keepdims=True)


def grad_gamma(ctx):
    return (ctx.xhat * ctx.dout).sum(axis=_axes(ctx))


def grad_beta(ctx):
    return np.asarray(ctx.dout).sum(axis=_axes(ctx))
