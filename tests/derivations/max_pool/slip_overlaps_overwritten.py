"""Slip: the backward pass assigns each window's dout to its maximum instead of adding it, so where
overlapping windows (stride < pool) share a maximum only the last window's dout survives. With
non-overlapping windows (stride = pool) it is correct; grad_dout, the layer's output, is correct."""
import numpy as np

EXPECTED_FAIL = {"grad_x"}
# No known slip explains it: the lost terms are no factor of the reference.
EXPECTED_DIAGNOSIS = {"grad_x": {"code": "unknown"}}
# Overlapping windows, several a row (Ho = 4, Wo = 3); one shape, since every shape costs a compile.
SETTINGS = {"pool": 2, "stride": 1, "shape": "N=2,C=2,H=5,W=4", "trials": 3}


def grad_x(ctx):
    x, dout = np.asarray(ctx.x), np.asarray(ctx.dout)
    k, s = ctx.pool, ctx.stride
    N, C, Ho, Wo = dout.shape
    dx = np.zeros(x.shape)
    for u in range(Ho):
        for v in range(Wo):
            window = x[:, :, s * u : s * u + k, s * v : s * v + k].reshape(N, C, k * k)
            best = window.argmax(axis=-1)
            n, c = np.indices((N, C))
            dx[n, c, s * u + best // k, s * v + best % k] = dout[:, :, u, v]  # SLIP: should be +=
    return dx


def grad_dout(ctx):
    return ctx.out
