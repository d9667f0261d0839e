"""A layer class, as from-scratch libraries write one: forward keeps its cache on the object, backward
takes dout alone, returns dx and leaves the parameters' gradients as attributes."""

import numpy as np


class BatchNorm:
    def __init__(self, eps=1e-5):
        self.eps = eps
        self.gamma = self.beta = None
        self.dgamma = self.dbeta = None

    def forward(self, x):
        self.mu = x.mean(axis=0)
        self.var = x.var(axis=0)
        self.x_hat = (x - self.mu) / np.sqrt(self.var + self.eps)
        return self.gamma * self.x_hat + self.beta

    def backward(self, dout):
        N = dout.shape[0]
        self.dbeta = dout.sum(axis=0)
        self.dgamma = (dout * self.x_hat).sum(axis=0)
        return self.gamma / (N * np.sqrt(self.var + self.eps)) * (N * dout - self.dbeta - self.x_hat * self.dgamma)


class BatchNormWithoutGamma(BatchNorm):
    """dx leaves out gamma, the scale x_hat is multiplied by on the way forward."""

    def backward(self, dout):
        N = dout.shape[0]
        self.dbeta = dout.sum(axis=0)
        self.dgamma = (dout * self.x_hat).sum(axis=0)
        return 1 / (N * np.sqrt(self.var + self.eps)) * (N * dout - self.dbeta - self.x_hat * self.dgamma)
