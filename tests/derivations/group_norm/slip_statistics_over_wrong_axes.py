"""Slip: group norm's backward pass takes its sums per channel over H and W (instance norm's axes)
instead of per group over the group's channels, H and W; the forward record's sigma is the group's,
and grad_gamma and grad_beta are correct. At C/G = 1 the two coincide; the sweep draws C/G up to 4."""
import numpy as np

EXPECTED_FAIL = {"grad_x"}
# No known slip explains it: a sum over the wrong axes is no factor of the reference.
EXPECTED_DIAGNOSIS = {"grad_x": {"code": "unknown"}}
SETTINGS = {"groups": 2}


def grad_x(ctx):
    shape = (ctx.N, ctx.groups, ctx.C // ctx.groups, ctx.H, ctx.W)
    dxhat = (np.asarray(ctx.dout) * np.asarray(ctx.gamma)[None, :, None, None]).reshape(shape)
    xhat = np.asarray(ctx.xhat).reshape(shape)
    axes = (3, 4)  # SLIP: the group's statistics cover axes (2, 3, 4)
    n = ctx.H * ctx.W - ctx.ddof
    projection = (xhat * dxhat).sum(axis=axes, keepdims=True) / n
    centred = dxhat - dxhat.mean(axis=axes, keepdims=True)
    dx = (centred - xhat * projection) / np.asarray(ctx.sigma)[:, :, None, None, None]
    return dx.reshape(np.shape(ctx.x))


def grad_gamma(ctx):
    return (ctx.xhat * ctx.dout).sum(axis=(0, 2, 3))


def grad_beta(ctx):
    return np.asarray(ctx.dout).sum(axis=(0, 2, 3))
