"""Slip: col2im adds window (u, v) back at (u + i, v + j), ignoring the stride; im2col (and so
grad_K) uses it correctly, and grad_b is correct."""
import numpy as np

EXPECTED_FAIL = {"grad_x"}
# Stride 2 with several windows per row and column (Ho = Wo = 3).
SETTINGS = {"model": "conv", "stride": 2, "shape": "N=2,C=2,O=2,kh=2,kw=3,H=6,W=7", "trials": 2}

# cols[(c,i,j), (n,u,v)] = xpad[n, c, s*u + i, s*v + j];  y = K_mat cols + b
# dR/dK_mat = dout_mat cols',  dR/dcols = K_mat' dout_mat,  dR/dx = col2im(dR/dcols).


def _windows(ctx, stride):
    """Index arrays (c, rows, columns) of xpad for each (c, i, j) x (u, v), broadcastable."""
    Ho, Wo = np.shape(ctx.dout)[2:]
    c, i, j, u, v = np.ix_(range(ctx.C), range(ctx.kh), range(ctx.kw), range(Ho), range(Wo))
    return c, stride * u + i, stride * v + j


def _dout_mat(ctx):  # (O, Ho, Wo) per example
    return np.asarray(ctx.dout)


def grad_K(ctx):
    x = np.asarray(ctx.x)  # padding 0: xpad is x
    c, rows, cols = _windows(ctx, ctx.stride)
    patches = x[:, c, rows, cols]  # (N, C, kh, kw, Ho, Wo)
    return np.einsum("nouv,ncijuv->ocij", _dout_mat(ctx), patches)


def grad_b(ctx):
    return _dout_mat(ctx).sum(axis=(0, 2, 3))


def grad_x(ctx):
    dpatches = np.einsum("ocij,nouv->ncijuv", np.asarray(ctx.K), _dout_mat(ctx))
    c, rows, cols = _windows(ctx, 1)  # the slip: should be ctx.stride
    dx = np.zeros(np.shape(ctx.x))
    for n in range(ctx.N):
        np.add.at(dx[n], (c, rows, cols), dpatches[n])
    return dx
