"""Layers whose parameters are (1, D) rows, as some courses keep them so that they broadcast: gamma and
beta must come in as (1, D), and dgamma, dbeta go out as (1, D)."""

import numpy as np


def batchnorm_forward(x, gamma, beta, eps=1e-5):
    assert gamma.shape == (1, x.shape[1]), f"gamma must be a (1, D) row, got {gamma.shape}"
    mu = x.mean(axis=0, keepdims=True)
    var = x.var(axis=0, keepdims=True)
    x_hat = (x - mu) / np.sqrt(var + eps)
    return gamma * x_hat + beta, (x_hat, gamma, var, eps)


def batchnorm_backward(dout, cache):
    x_hat, gamma, var, eps = cache
    N = dout.shape[0]
    dbeta = dout.sum(axis=0, keepdims=True)
    dgamma = (dout * x_hat).sum(axis=0, keepdims=True)
    dx = gamma / (N * np.sqrt(var + eps)) * (N * dout - dbeta - x_hat * dgamma)
    return dx, dgamma, dbeta
