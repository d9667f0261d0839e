"""Slip: dw = doutᵀ x, the transpose of xᵀ dout (M×D where w is D×M); grad_x and grad_b are correct."""
import numpy as np

EXPECTED_FAIL = {"grad_w"}
EXPECTED_DIAGNOSIS = {"grad_w": {"code": "shape", "repair": "transpose"}}
SETTINGS = {}


def grad_x(ctx):
    return np.asarray(ctx.dout) @ np.asarray(ctx.w).T


def grad_w(ctx):
    return np.asarray(ctx.dout).T @ np.asarray(ctx.x)  # SLIP: should be x.T @ dout


def grad_b(ctx):
    return np.asarray(ctx.dout).sum(axis=0)
