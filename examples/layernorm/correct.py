"""The layer-norm backward pass, in NumPy.

    dR/dbeta  = sum over rows of dout
    dR/dgamma = sum over rows of dout * xhat
    dR/dx     = (g - mean(g) - xhat * mean(g * xhat)) / sigma,  g = dout * gamma, means over each row
"""

import numpy as np


def grad_beta(ctx):
    return ctx.dout.sum(axis=0)


def grad_gamma(ctx):
    return (ctx.dout * ctx.xhat).sum(axis=0)


def grad_x(ctx):
    g = ctx.dout * ctx.gamma[None, :]
    return (g - g.mean(axis=1, keepdims=True) - ctx.xhat * (g * ctx.xhat).mean(axis=1, keepdims=True)) / ctx.sigma


def jvp_y_gamma(ctx, V):
    return ctx.xhat * V[None, :]


def grad_dout(ctx):
    return np.asarray(ctx.y)
