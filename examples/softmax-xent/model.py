"""Softmax cross-entropy of a linear classifier, averaged over the batch.

    Z = x @ W                    (N, K) logits
    P = softmax of each row of Z (N, K)
    R = -sum(t * log P) / N      t: one-hot targets, one class per row

The targets must be one-hot, not standard normal: `sample` draws them.
"""

import jax
import numpy as np

DIMS = {"N": (1, 32), "D": (1, 16), "K": (2, 8)}


def inputs(d):
    return {"x": (d["N"], d["D"]), "t": (d["N"], d["K"])}


def params(d):
    return {"W": (d["D"], d["K"])}


def sample(rng, d):
    classes = rng.integers(0, d["K"], size=d["N"])
    return {"t": np.eye(d["K"])[classes]}


def forward(x, t, W):
    Z = x @ W
    logP = jax.nn.log_softmax(Z, axis=1)
    return {"R": -(t * logP).sum() / x.shape[0], "Z": Z, "P": jax.numpy.exp(logP)}
