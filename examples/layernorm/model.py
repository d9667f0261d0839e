"""Layer normalisation of each row over its D features, then a scale and a shift.

    mu    = mean of x over each row's features       (N, 1)
    sigma = sqrt(mean of (x - mu)^2 + eps)           (N, 1)   biased variance, eps = 1e-5
    xhat  = (x - mu) / sigma                         (N, D)
    y     = gamma * xhat + beta                      (N, D)
    R     = sum(y * dout)                            dout, an upstream gradient, makes dR/dy = dout

A model file for `bncheck verify --model examples/layernorm/model.py`: only DIMS, inputs, params and
forward are required. `variants` is optional: the same layer under a known wrong assumption, by which
a failing check that matches it is named.
"""

import jax
import jax.numpy as jnp

EPS = 1e-5
DIMS = {"N": (1, 16), "D": (2, 32)}


def inputs(d):
    return {"x": (d["N"], d["D"]), "dout": (d["N"], d["D"])}


def params(d):
    return {"gamma": (d["D"],), "beta": (d["D"],)}


def forward(x, dout, gamma, beta, *, options):
    mu = x.mean(axis=1, keepdims=True)
    sigma = jnp.sqrt(((x - mu) ** 2).mean(axis=1, keepdims=True) + EPS)
    if options.get("stats") == "sigma-constant":  # set by the variant below only: values stay the same
        sigma = jax.lax.stop_gradient(sigma)
    xhat = (x - mu) / sigma
    y = gamma[None, :] * xhat + beta[None, :]
    return {"R": (y * dout).sum(), "mu": mu, "sigma": sigma, "xhat": xhat, "y": y}


def variants(options):
    """sigma held constant, its dependence on x dropped while the mean's is kept: the most common slip
    in a normalisation layer's backward pass, named `batch-stats-constant` when a check matches it."""
    return {"batch-stats-constant:sigma": {**options, "stats": "sigma-constant"}}
