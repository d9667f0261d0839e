"""Slip: col2im fills the padded input's gradient correctly, then crops it as `[p:-p, p:-p]`, which is
right at padding 1 and 2 and empty at padding 0 (`-0` is 0); grad_K and grad_b are correct. A run at
one padding of 1 passes it; a run that sweeps the padding over 0:1 fails grad_x at padding 0."""
import numpy as np

EXPECTED_FAIL = {"grad_x"}
SETTINGS = {"model": "conv", "padding": "0:1", "shape": "N=1,C=2,O=2,kh=3,kw=3,H=4,W=4", "trials": 4}

# Stride 1: dR/dxpad[n,c,u+i,v+j] += sum_o K[o,c,i,j] dout[n,o,u,v];  dR/dx = dR/dxpad[p:p+H, p:p+W].


def grad_K(ctx):
    xpad, dout = np.asarray(ctx.xpad), np.asarray(ctx.dout)
    Ho, Wo = dout.shape[2:]
    return np.stack([
        np.stack([np.tensordot(dout, xpad[:, :, i : i + Ho, j : j + Wo], axes=([0, 2, 3], [0, 2, 3]))
                  for j in range(ctx.kw)], axis=-1)
        for i in range(ctx.kh)
    ], axis=-2)


def grad_b(ctx):
    return np.einsum("nouv->o", np.asarray(ctx.dout))


def grad_x(ctx):
    K, dout = np.asarray(ctx.K), np.asarray(ctx.dout)
    Ho, Wo = dout.shape[2:]
    dxpad = np.zeros(np.shape(ctx.xpad))
    for i in range(ctx.kh):
        for j in range(ctx.kw):
            dxpad[:, :, i : i + Ho, j : j + Wo] += np.tensordot(dout, K[:, :, i, j], axes=([1], [0])).transpose(0, 3, 1, 2)
    p = ctx.padding
    return dxpad[:, :, p:-p, p:-p]  # the slip: empty at p = 0; should be [p : p + H, p : p + W]
