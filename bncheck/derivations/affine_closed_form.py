"""affine, closed form: seed 003's rule for a matrix product, with the example rows of x.

For out = x w + b (x N×D, w D×M), δ = ∂R/∂out = dout:

    ∂R/∂x = δ wᵀ           (N, D)
    ∂R/∂w = xᵀ δ           (D, M), the shape of w: each factor's dimensions fix the order
    ∂R/∂b = Σ over rows δ  (M,)
"""

import numpy as np


def grad_x(ctx):
    return np.asarray(ctx.dout) @ np.asarray(ctx.w).T


def grad_w(ctx):
    return np.asarray(ctx.x).T @ np.asarray(ctx.dout)


def grad_b(ctx):
    return np.asarray(ctx.dout).sum(axis=0)
