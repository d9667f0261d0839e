"""group-norm, closed form: layer norm's backward pass within each (example, group).

x is viewed as N × G × M with M = C/G·H·W (channel c in group c // (C/G), so a C-order reshape
groups contiguous channels, as the model does). Σ sums over a group's M entries, n = M − ddof is the
variance divisor, and mu, sigma (N, G) and the sums broadcast over the group:

    dxhat   = dout ⊙ γ[c]                                            ∂R/∂x̂
    ∂R/∂x   = (1/σ) ⊙ ( dxhat − Σ dxhat / M − x̂ ⊙ Σ(x̂ ⊙ dxhat) / n )   per (example, group)
    ∂R/∂γ   = Σ over n, h, w of (x̂ ⊙ dout)                          per channel
    ∂R/∂β   = Σ over n, h, w of dout

The middle term of ∂R/∂x is mu's path, the last sigma's. eps enters only through σ.
"""

import numpy as np


def _grouped(ctx, a):
    return np.asarray(a).reshape(ctx.N, ctx.groups, -1)


def grad_x(ctx):
    dxhat = _grouped(ctx, np.asarray(ctx.dout) * np.asarray(ctx.gamma)[None, :, None, None])
    xhat = _grouped(ctx, ctx.xhat)
    n = xhat.shape[2] - ctx.ddof
    projection = (xhat * dxhat).sum(axis=2, keepdims=True) / n
    centred = dxhat - dxhat.mean(axis=2, keepdims=True)
    return ((centred - xhat * projection) / np.asarray(ctx.sigma)[:, :, None]).reshape(np.shape(ctx.x))


def grad_gamma(ctx):
    return (ctx.xhat * ctx.dout).sum(axis=(0, 2, 3))


def grad_beta(ctx):
    return np.asarray(ctx.dout).sum(axis=(0, 2, 3))
