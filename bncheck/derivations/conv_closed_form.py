"""conv, closed form: back through the one matrix product, then col2im.

Notation as in the model (bncheck/models/conv.py): y = K_mat · cols + b, with cols = im2col(xpad) of
shape (C·kh·kw, N·Ho·Wo) and dout_mat = dout laid out like K_mat · cols (O, N·Ho·Wo). By seed 003's
rule for a matrix product Z = W A (∂R/∂W = δ Aᵀ, ∂R/∂A = Wᵀ δ) with δ = dout_mat:

    ∂R/∂K    = dout_mat · colsᵀ, reshaped to O × C × kh × kw
    ∂R/∂b    = dout summed over n, u, v
    ∂R/∂cols = K_matᵀ · dout_mat
    ∂R/∂x    = col2im(∂R/∂cols), cropped by `padding` on each side

col2im is im2col's adjoint: entry (c, i, j; n, u, v) of ∂R/∂cols is added into xpad[n, c, s·u + i,
s·v + j]. Overlapping windows (a kernel wider than the stride) add up; rows and columns of xpad no
window reaches (a stride that does not divide H + 2p − kh) get zero. Written this way the kernel is
never flipped: the "full convolution with the rotated kernel" form of ∂R/∂x is the same sum, read
from the output's side.
"""

import numpy as np


def _dout_mat(ctx):
    dout = np.asarray(ctx.dout)
    return dout.transpose(1, 0, 2, 3).reshape(dout.shape[1], -1)


def grad_K(ctx):
    return (_dout_mat(ctx) @ np.asarray(ctx.cols).T).reshape(np.shape(ctx.K))


def grad_b(ctx):
    return np.asarray(ctx.dout).sum(axis=(0, 2, 3))


def grad_x(ctx):
    K, s, p = np.asarray(ctx.K), ctx.stride, ctx.padding
    O, C, kh, kw = K.shape
    N, _, Ho, Wo = np.shape(ctx.dout)
    dcols = K.reshape(O, -1).T @ _dout_mat(ctx)
    patches = dcols.reshape(C, kh, kw, N, Ho, Wo)
    dxpad = np.zeros((N, C, ctx.H + 2 * p, ctx.W + 2 * p), dtype=dcols.dtype)
    for i in range(kh):
        for j in range(kw):
            dxpad[:, :, i : i + s * (Ho - 1) + 1 : s, j : j + s * (Wo - 1) + 1 : s] += patches[:, i, j].transpose(1, 0, 2, 3)
    return dxpad[:, :, p : p + ctx.H, p : p + ctx.W]
