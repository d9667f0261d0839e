"""bn-layer, staged: seed 001's computational graph, node by node, forward and backward.

The graph (seed 001's node numbers; Σ sums over the statistics axes, M entries per unit, n = M − ddof):

    ⓪ x                                 feeds ① and ③
    ① mu     = Σ x / M
    ② mu broadcast to x's shape
    ③ xmu    = x − mu                   feeds ④ and ⑨
    ④ sq     = xmu²
    ⑤ var    = Σ sq / n
    ⑥ sigma  = √(var + ε)
    ⑦ ivar   = 1 / sigma
    ⑧ ivar broadcast
    ⑨ xhat   = xmu ⊙ ivar
    ⑪ γ broadcast,  ⑫ gammax = γ ⊙ xhat
    ⑭ β broadcast,  ⑮ y = gammax + β;    R = Σ y ⊙ dout

Each node that is not linear has one small function giving its local derivative (`d_sq`: ∂sq/∂xmu =
2 xmu, `d_sigma`: 1/(2σ), `d_ivar`: −1/σ², `d_xhat`, `d_gammax`: the other factor of a product).
Those same functions serve both directions:

- forward: `jvp_<node>_x(ctx, V)` is the node's differential along dx = V, its local derivative
  applied to its inputs' differentials. bncheck checks each against jax.jvp of the model's node, so a
  wrong local derivative fails at its own node (and every node after it), not just at the end;
- backward: `grad_x`, `grad_gamma`, `grad_beta` run seed 001's backward pass from ⑮ to ⓪, each node
  passing ∂R/∂(its output) times its local derivative to its inputs.

The linear nodes need no local derivative: a sum (①, ⑤) and a broadcast (②, ⑧, ⑪, ⑭) are each
other's adjoints (`_total`, `_spread`), a subtraction (③) sends −g to the subtrahend, and a branch
(⓪, ③) adds what comes back along its arms. ddof 0 divides the variance by M as seed 001 does.
"""

import numpy as np


def _axes(ctx):
    return (0, 2, 3) if ctx.x.ndim == 4 else (0,)


def _M(ctx):
    return ctx.x.size // ctx.x.shape[1]


def _n(ctx):
    return _M(ctx) - ctx.ddof


def _total(ctx, a):
    """Σ over the statistics axes: array shaped like x → one value per unit."""
    return np.asarray(a).sum(axis=_axes(ctx))


def _spread(ctx, v):
    """Broadcast of one value per unit to x's shape (②, ⑧, ⑪, ⑭); the adjoint of _total."""
    v = np.asarray(v)
    return np.broadcast_to(v[None, :, None, None] if ctx.x.ndim == 4 else v[None, :], ctx.x.shape)


# Local derivatives of the nodes that are not linear: ∂(node)/∂(each input), elementwise.


def d_sq(ctx):
    """④ sq = xmu²: ∂sq/∂xmu = 2 xmu."""
    return 2 * ctx.xmu


def d_sigma(ctx):
    """⑥ sigma = √(var + ε): ∂sigma/∂var = 1 / (2 sigma)."""
    return 1 / (2 * ctx.sigma)


def d_ivar(ctx):
    """⑦ ivar = 1/sigma: ∂ivar/∂sigma = −1 / sigma²."""
    return -1 / ctx.sigma**2


def d_xhat(ctx):
    """⑨ xhat = xmu ⊙ (⑧ ivar broadcast): (∂xhat/∂xmu, ∂xhat/∂ivar) = (ivar, xmu)."""
    return _spread(ctx, ctx.ivar), ctx.xmu


def d_gammax(ctx):
    """⑫ gammax = (⑪ gamma broadcast) ⊙ xhat: (∂/∂xhat, ∂/∂gamma) = (gamma, xhat)."""
    return _spread(ctx, ctx.gamma), ctx.xhat


# Forward: each node's differential along dx = V, from its inputs' differentials.


def jvp_mu_x(ctx, V):  # ①
    return _total(ctx, V) / _M(ctx)


def jvp_xmu_x(ctx, V):  # ② ③
    return V - _spread(ctx, jvp_mu_x(ctx, V))


def jvp_sq_x(ctx, V):  # ④
    return d_sq(ctx) * jvp_xmu_x(ctx, V)


def jvp_var_x(ctx, V):  # ⑤
    return _total(ctx, jvp_sq_x(ctx, V)) / _n(ctx)


def jvp_sigma_x(ctx, V):  # ⑥
    return d_sigma(ctx) * jvp_var_x(ctx, V)


def jvp_ivar_x(ctx, V):  # ⑦
    return d_ivar(ctx) * jvp_sigma_x(ctx, V)


def jvp_xhat_x(ctx, V):  # ⑧ ⑨, the product rule
    by_xmu, by_ivar = d_xhat(ctx)
    return by_xmu * jvp_xmu_x(ctx, V) + by_ivar * _spread(ctx, jvp_ivar_x(ctx, V))


def jvp_gammax_x(ctx, V):  # ⑫
    by_xhat, _ = d_gammax(ctx)
    return by_xhat * jvp_xhat_x(ctx, V)


def jvp_y_x(ctx, V):  # ⑮
    return jvp_gammax_x(ctx, V)


def jvp_y_gamma(ctx, V):  # ⑪ ⑫ ⑮
    _, by_gamma = d_gammax(ctx)
    return by_gamma * _spread(ctx, V)


def jvp_y_beta(ctx, V):  # ⑭ ⑮
    return _spread(ctx, V).copy()


# Backward: seed 001's pass from ⑮ to ⓪; d<k> is what node k sends back towards its inputs.


def _backward(ctx):
    d15 = np.asarray(ctx.dout)  # ⑮ an addition passes its gradient to both inputs
    d14 = _total(ctx, d15)  # ⑭ a broadcast's adjoint sums: ∂R/∂β
    by_xhat, by_gamma = d_gammax(ctx)
    d12a, d12b = by_xhat * d15, by_gamma * d15  # ⑫ towards xhat, towards γ
    d11 = _total(ctx, d12b)  # ⑪ ∂R/∂γ
    by_xmu, by_ivar = d_xhat(ctx)
    d9a, d9b = by_xmu * d12a, by_ivar * d12a  # ⑨ towards xmu, towards ⑧
    d8 = _total(ctx, d9b)  # ⑧
    d7 = d_ivar(ctx) * d8  # ⑦
    d6 = d_sigma(ctx) * d7  # ⑥
    d5 = _spread(ctx, d6) / _n(ctx)  # ⑤ a sum's adjoint spreads
    d4 = d_sq(ctx) * d5  # ④
    d3a = d9a + d4  # ③ xmu feeds ④ and ⑨: what comes back adds
    d3b = -d3a  # ③ the subtrahend mu gets the negative
    d2 = _total(ctx, d3b)  # ②
    d1 = _spread(ctx, d2) / _M(ctx)  # ①
    dx = d3a + d1  # ⓪ x feeds ① and ③
    return dx, d11, d14


def grad_x(ctx):
    return _backward(ctx)[0]


def grad_gamma(ctx):
    return _backward(ctx)[1]


def grad_beta(ctx):
    return _backward(ctx)[2]
