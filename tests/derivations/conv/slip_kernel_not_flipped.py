"""Slip: grad_x as the "full convolution" of dout with the kernel, but the kernel is not rotated by
180 degrees; grad_K and grad_b are correct. Stride 1, no padding."""
import numpy as np

EXPECTED_FAIL = {"grad_x"}
# kh, kw > 1, so flipping the kernel matters.
SETTINGS = {"model": "conv", "shape": "N=2,C=2,O=3,kh=3,kw=2,H=5,W=4", "trials": 2}

# y[n,o,u,v] = b[o] + sum_{c,i,j} K[o,c,i,j] x[n,c,u+i,v+j], R = sum(y * dout):
#   dR/dK[o,c,i,j] = sum_{n,u,v} dout[n,o,u,v] x[n,c,u+i,v+j]
#   dR/dx[n,c,h,w] = sum_{o,i,j} dout[n,o,h-i,w-j] K[o,c,i,j]
#                  = correlation of dout padded by (kh-1, kw-1) with K rotated by 180 degrees.


def grad_K(ctx):
    windows = np.lib.stride_tricks.sliding_window_view(np.asarray(ctx.x), (ctx.kh, ctx.kw), axis=(2, 3))
    return np.einsum("nouv,ncuvij->ocij", np.asarray(ctx.dout), windows)


def grad_b(ctx):
    return np.asarray(ctx.dout).sum(axis=(0, 2, 3))


def grad_x(ctx):
    K, dout = np.asarray(ctx.K), np.asarray(ctx.dout)
    full = np.pad(dout, ((0, 0), (0, 0), (ctx.kh - 1, ctx.kh - 1), (ctx.kw - 1, ctx.kw - 1)))
    rotated = K  # the slip: should be K[:, :, ::-1, ::-1]
    dx = np.zeros(np.shape(ctx.x))
    for i in range(ctx.kh):
        for j in range(ctx.kw):
            dx += np.einsum("nohw,oc->nchw", full[:, :, i : i + ctx.H, j : j + ctx.W], rotated[:, :, i, j])
    return dx
