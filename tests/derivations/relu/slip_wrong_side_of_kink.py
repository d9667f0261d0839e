"""Slip: the mask on the wrong side of the kink, dout passed where x < 0 and blocked where x > 0
(`dx[x > 0] = 0` for `dx[x <= 0] = 0`); grad_dout, the layer's output, is correct."""
import numpy as np

EXPECTED_FAIL = {"grad_x"}
# No known slip explains it: got + ref = dout, no factor of the reference.
EXPECTED_DIAGNOSIS = {"grad_x": {"code": "unknown"}}
SETTINGS = {}


def grad_x(ctx):
    dx = np.array(ctx.dout)
    dx[np.asarray(ctx.x) > 0] = 0  # SLIP: should zero where x <= 0
    return dx


def grad_dout(ctx):
    return np.maximum(ctx.x, 0)
