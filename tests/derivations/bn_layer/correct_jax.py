"""Correct bn-layer derivation in jax.numpy, written from the contract alone (expected to pass).

For conv it does what seed 001's CNN section says: move the channel axis last and flatten, so each
channel's N·H·W activations form one column of an (M, C) matrix; then the dense-layer formulas apply
unchanged, and the result is folded back. Variance and 1/sigma are recomputed from x, mu, eps and
ddof, so the file leans on those fields meaning what the contract says.

    g = gamma dout;  dx = (1/sigma) (g - mean(g) - xhat sum(g xhat) / (M - ddof)), per column
"""
import jax.numpy as jnp

EXPECTED_FAIL = set()
EXPECTED_DIAGNOSIS = {}
SETTINGS = {}


def _columns(a):  # (N, D) stays; (N, C, H, W) -> (N*H*W, C)
    a = jnp.asarray(a)
    if a.ndim == 2:
        return a
    return jnp.reshape(jnp.transpose(a, (0, 2, 3, 1)), (-1, a.shape[1]))


def _fold(cols, like):
    like = jnp.asarray(like)
    if like.ndim == 2:
        return cols
    N, C, H, W = like.shape
    return jnp.transpose(jnp.reshape(cols, (N, H, W, C)), (0, 3, 1, 2))


def grad_x(ctx):
    X, G = _columns(ctx.x), _columns(ctx.dout) * jnp.asarray(ctx.gamma)
    M = X.shape[0]
    Xc = X - jnp.asarray(ctx.mu)
    inv_std = 1.0 / jnp.sqrt(jnp.sum(Xc * Xc, axis=0) / (M - ctx.ddof) + ctx.eps)
    Xhat = Xc * inv_std
    dX = inv_std * (G - jnp.mean(G, axis=0) - Xhat * jnp.einsum("mc,mc->c", G, Xhat) / (M - ctx.ddof))
    return _fold(dX, ctx.x)


def grad_gamma(ctx):
    return jnp.einsum("mc,mc->c", _columns(ctx.dout), _columns(ctx.xhat))


def grad_beta(ctx):
    return jnp.einsum("mc->c", _columns(ctx.dout))


def grad_dout(ctx):  # R = sum(y * dout) is linear in dout
    return jnp.asarray(ctx.y)
