"""Custom JAX rules, one right and one with a slip, for `bncheck verify-rule` (README: "Check a JAX
custom rule")."""

import jax
import jax.numpy as jnp


@jax.custom_vjp
def logsumexp(x):
    """log sum_j exp(x_ij) for each row i, with the row maximum taken out first so nothing overflows."""
    m = jax.lax.stop_gradient(x.max(axis=1, keepdims=True))
    return jnp.log(jnp.exp(x - m).sum(axis=1)) + m[:, 0]


def logsumexp_fwd(x):
    out = logsumexp(x)
    return out, (x, out)


def logsumexp_bwd(res, g):
    x, out = res
    return (g[:, None] * jnp.exp(x - out[:, None]),)  # softmax of each row, times its cotangent


logsumexp.defvjp(logsumexp_fwd, logsumexp_bwd)


@jax.custom_vjp
def mse(pred, target):
    """The mean over the N rows of |pred_i - target_i|²."""
    return jnp.mean(jnp.sum((pred - target) ** 2, axis=1))


def mse_fwd(pred, target):
    return mse(pred, target), pred - target


def mse_bwd(resid, g):
    N = resid.shape[0]
    dpred = 2 * resid * g  # the slip: the mean's 1/N is gone
    dtarget = -2 * resid * g / N
    return dpred, dtarget


mse.defvjp(mse_fwd, mse_bwd)


@jax.custom_jvp
def softplus(x):
    """log(1 + e^x) without overflow."""
    return jnp.logaddexp(x, 0.0)


@softplus.defjvp
def softplus_jvp(primals, tangents):
    (x,), (t,) = primals, tangents
    return softplus(x), jax.nn.sigmoid(x) * t
