"""Custom JAX rules as people write them, correct and slipped, for tests/test_rules.py.

Each slip is named in its docstring; the tests assert that exactly that check fails, and why.
"""

from functools import partial

import jax
import jax.numpy as jnp


# ---- custom_vjp, correct ------------------------------------------------------------------------


@jax.custom_vjp
def logsumexp(x):
    """log sum_j exp(x_ij) over the last axis, stable: the row maximum is taken out first."""
    m = jax.lax.stop_gradient(x.max(axis=-1, keepdims=True))
    return jnp.log(jnp.exp(x - m).sum(axis=-1)) + m[..., 0]


def _logsumexp_fwd(x):
    out = logsumexp(x)
    return out, (x, out)


def _logsumexp_bwd(res, g):
    x, out = res
    # d/dx_ij = softmax_ij, weighted by the row's cotangent.
    return (g[..., None] * jnp.exp(x - out[..., None]),)


logsumexp.defvjp(_logsumexp_fwd, _logsumexp_bwd)


@jax.custom_vjp
def linear(W, x):
    """x @ W, the backward written out by hand."""
    return x @ W


def _linear_fwd(W, x):
    return x @ W, (W, x)


def _linear_bwd(res, g):
    W, x = res
    return x.T @ g, g @ W.T


linear.defvjp(_linear_fwd, _linear_bwd)


@partial(jax.custom_vjp, nondiff_argnums=(1,))
def mean_square(x, axis=0):
    """mean of x² over `axis` (static, not differentiated)."""
    return jnp.mean(x**2, axis=axis)


def _mean_square_fwd(x, axis):
    return mean_square(x, axis), x


def _mean_square_bwd(axis, x, g):
    return (2 * x * jnp.expand_dims(g, axis) / x.shape[axis],)


mean_square.defvjp(_mean_square_fwd, _mean_square_bwd)


@jax.custom_vjp
def polar(r, theta):
    """(r cos θ, r sin θ): two outputs."""
    return r * jnp.cos(theta), r * jnp.sin(theta)


def _polar_fwd(r, theta):
    return polar(r, theta), (r, theta)


def _polar_bwd(res, g):
    r, theta = res
    gx, gy = g
    c, s = jnp.cos(theta), jnp.sin(theta)
    return gx * c + gy * s, r * (gy * c - gx * s)


polar.defvjp(_polar_fwd, _polar_bwd)

jitted_logsumexp = jax.jit(logsumexp)


# ---- custom_vjp, slipped ------------------------------------------------------------------------


@partial(jax.custom_vjp, nondiff_argnums=(1,))
def mean_square_slip(x, axis=0):
    """Slip: the backward drops the mean's 1/N (scale N along axis 0)."""
    return jnp.mean(x**2, axis=axis)


def _mean_square_slip_fwd(x, axis):
    return mean_square_slip(x, axis), x


def _mean_square_slip_bwd(axis, x, g):
    return (2 * x * jnp.expand_dims(g, axis),)


mean_square_slip.defvjp(_mean_square_slip_fwd, _mean_square_slip_bwd)


@jax.custom_vjp
def linear_slip(W, x):
    """Slip: dW is returned transposed, (x.T @ g).T; right shape only for a square W."""
    return x @ W


def _linear_slip_fwd(W, x):
    return x @ W, (W, x)


def _linear_slip_bwd(res, g):
    W, x = res
    return (x.T @ g).T, g @ W.T


linear_slip.defvjp(_linear_slip_fwd, _linear_slip_bwd)


@jax.custom_vjp
def clip_gradient(x):
    """Identity forward, cotangent clipped to [-1, 1] backward: a rule that is meant to differ from
    the derivative of its primal (the identity), so bncheck must fail it."""
    return x


def _clip_fwd(x):
    return x, None


def _clip_bwd(_, g):
    return (jnp.clip(g, -1.0, 1.0),)


clip_gradient.defvjp(_clip_fwd, _clip_bwd)


@jax.custom_vjp
def softplus_fwd_slip(x):
    """Slip: fwd returns log(1 + e^x) - 1e-3 as the primal output, which JAX then uses under grad."""
    return jnp.logaddexp(x, 0.0)


def _softplus_fwd_slip_fwd(x):
    return jnp.logaddexp(x, 0.0) - 1e-3, x


def _softplus_fwd_slip_bwd(x, g):
    return (g * jax.nn.sigmoid(x),)


softplus_fwd_slip.defvjp(_softplus_fwd_slip_fwd, _softplus_fwd_slip_bwd)


@jax.custom_vjp
def polar_slip(r, theta):
    """Slip: dθ = r(gy·cos θ + gx·sin θ), one sign lost; dr is right."""
    return r * jnp.cos(theta), r * jnp.sin(theta)


def _polar_slip_bwd(res, g):
    r, theta = res
    gx, gy = g
    c, s = jnp.cos(theta), jnp.sin(theta)
    return gx * c + gy * s, r * (gy * c + gx * s)


polar_slip.defvjp(_polar_fwd, _polar_slip_bwd)


@jax.custom_vjp
def logsumexp_ones(x):
    """Slip: the backward forgets the cotangent g, right only when g is all ones."""
    return jnp.log(jnp.exp(x).sum(axis=-1))


def _logsumexp_ones_fwd(x):
    out = logsumexp_ones(x)
    return out, (x, out)


def _logsumexp_ones_bwd(res, g):
    x, out = res
    return (jnp.exp(x - out[..., None]),)


logsumexp_ones.defvjp(_logsumexp_ones_fwd, _logsumexp_ones_bwd)


@jax.custom_vjp
def logsumexp_raises(x):
    """Slip: the backward raises for a single column (D = 1), and is right elsewhere."""
    return jnp.log(jnp.exp(x).sum(axis=-1))


def _logsumexp_raises_fwd(x):
    out = logsumexp_raises(x)
    return out, (x, out)


def _logsumexp_raises_bwd(res, g):
    x, out = res
    if x.shape[-1] == 1:
        raise ValueError("a softmax over one column")
    return (g[..., None] * jnp.exp(x - out[..., None]),)


logsumexp_raises.defvjp(_logsumexp_raises_fwd, _logsumexp_raises_bwd)


# ---- custom_jvp, correct and slipped ------------------------------------------------------------


@jax.custom_jvp
def softplus(x):
    """log(1 + e^x), computed without overflow."""
    return jnp.logaddexp(x, 0.0)


@softplus.defjvp
def _softplus_jvp(primals, tangents):
    (x,), (t,) = primals, tangents
    return softplus(x), jax.nn.sigmoid(x) * t


@jax.custom_jvp
def softplus_ones(x):
    """Slip: the tangent is sigmoid(x), as if t were all ones."""
    return jnp.logaddexp(x, 0.0)


@softplus_ones.defjvp
def _softplus_ones_jvp(primals, tangents):
    (x,), _ = primals, tangents
    return softplus_ones(x), jax.nn.sigmoid(x)


@jax.custom_jvp
def tanh_slip(x):
    """Slip: the tangent is (tanh² - 1)·t, the sign of 1 - tanh² flipped."""
    return jnp.tanh(x)


@tanh_slip.defjvp
def _tanh_slip_jvp(primals, tangents):
    (x,), (t,) = primals, tangents
    y = jnp.tanh(x)
    return y, (y**2 - 1) * t


@jax.custom_jvp
def scaled_sin(x, y):
    """x · sin(y), both partials by defjvps."""
    return x * jnp.sin(y)


scaled_sin.defjvps(lambda tx, ans, x, y: tx * jnp.sin(y), lambda ty, ans, x, y: x * jnp.cos(y) * ty)


@jax.custom_jvp
def scaled_sin_slip(x, y):
    """Slip: the y partial drops the factor x; the x partial is right."""
    return x * jnp.sin(y)


scaled_sin_slip.defjvps(lambda tx, ans, x, y: tx * jnp.sin(y), lambda ty, ans, x, y: jnp.cos(y) * ty)


# ---- not a rule, or not one bncheck can run -----------------------------------------------------


def plain(x):
    """No custom rule."""
    return jnp.sin(x)


@jax.custom_vjp
def takes_labels(x, k: int):
    """An integer argument."""
    return x * k


takes_labels.defvjp(lambda x, k: (x * k, k), lambda k, g: (g * k, None))


@jax.custom_jvp
def ranks(x):
    """Integer output."""
    return jnp.argsort(x)


ranks.defjvp(lambda primals, tangents: (ranks(*primals), ranks(*primals)))


@jax.custom_vjp
def no_rule_yet(x):
    """defvjp never called."""
    return x


@jax.custom_vjp
def halve_until_small(x):
    """A while_loop, which jax.grad cannot differentiate: the primal has no reverse-mode reference."""
    return jax.lax.while_loop(lambda v: jnp.max(jnp.abs(v)) > 1.0, lambda v: v / 2, x)


halve_until_small.defvjp(lambda x: (halve_until_small(x), None), lambda _, g: (g,))
