"""Slip: the softmax loss's gradient without the mean's 1/N, probs − onehot(y) as if the loss were the
sum over the batch."""
import numpy as np

EXPECTED_FAIL = {"grad_x"}
EXPECTED_DIAGNOSIS = {"grad_x": {"code": "scale", "factor_name": "N"}}
SETTINGS = {}


def grad_x(ctx):
    probs = np.asarray(ctx.probs)
    onehot = np.asarray(ctx.y).astype(int)[:, None] == np.arange(probs.shape[1])[None, :]
    return probs - onehot  # SLIP: should be divided by ctx.N
