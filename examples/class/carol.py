"""Carol's batch norm: the backward pass is not written yet."""

import numpy as np


def batchnorm_forward(x, gamma, beta, bn_param):
    mu = x.mean(axis=0)
    x_hat = (x - mu) / np.sqrt(x.var(axis=0) + bn_param.get("eps", 1e-5))
    return gamma * x_hat + beta, (x_hat, gamma)
