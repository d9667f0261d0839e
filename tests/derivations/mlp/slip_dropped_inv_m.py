"""Slip: softmax cross-entropy; the 1/M of the mean loss is applied in grad_W but dropped in grad_b
(off by a factor M); the weight gradients are correct."""
import numpy as np

EXPECTED_FAIL = {"grad_b1", "grad_b2"}
SETTINGS = {"model": "mlp", "loss": "xent", "activation": "sigmoid", "shape": "M=5,n1=3,n2=4,n3=3", "trials": 3}

# R = -sum(Y * log softmax(z3)) / M, so dR/dz3 = (softmax(z3) - Y)/M; sigmoid' = a (1 - a).


def _err3(ctx):
    z = np.asarray(ctx.z3)
    p = np.exp(z - z.max(axis=0))
    return p / p.sum(axis=0) - np.asarray(ctx.Y)


def _err2(ctx):
    a2 = np.asarray(ctx.a2)
    return (np.asarray(ctx.W2).T @ _err3(ctx)) * a2 * (1 - a2)


def grad_W1(ctx):
    return _err2(ctx) @ np.asarray(ctx.X).T / ctx.M


def grad_W2(ctx):
    return _err3(ctx) @ np.asarray(ctx.a2).T / ctx.M


def grad_b1(ctx):
    return _err2(ctx).sum(axis=1)


def grad_b2(ctx):
    return _err3(ctx).sum(axis=1)
