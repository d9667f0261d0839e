"""softmax-loss, closed form: the softmax's probabilities less the one-hot labels, over N.

    ∂R/∂x = (probs − onehot(y)) / N        (N, C), onehot(y)[n, c] = 1 where c = y[n]

from ∂(−log probs[n, y])/∂x[n, c] = probs[n, c] − 1[c = y[n]], and the mean's 1/N.
"""

import numpy as np


def grad_x(ctx):
    probs = np.asarray(ctx.probs)
    onehot = np.asarray(ctx.y).astype(int)[:, None] == np.arange(probs.shape[1])[None, :]
    return (probs - onehot) / ctx.N
