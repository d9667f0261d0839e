"""mlp, closed form: seed 003's δ recursion, in its column convention (one example per column).

Notation as in the model (bncheck/models/mlp.py): a⁽¹⁾ = X, z⁽ˡ⁺¹⁾ = W⁽ˡ⁾a⁽ˡ⁾ + b⁽ˡ⁾1ᵀ, ⊙ the Hadamard
product, 1 a column of M ones, δ⁽ˡ⁾ = ∂R/∂z⁽ˡ⁾ (n_l × M, one column per example).

    δ⁽ᴸ⁺¹⁾ = (ŷ − Y) / M                          MSE Σ(ŷ − Y)²/(2M), or softmax cross-entropy
    δ⁽ˡ⁾   = (W⁽ˡ⁾ᵀ δ⁽ˡ⁺¹⁾) ⊙ f′(z⁽ˡ⁾)            l = L, …, 2
    ∂R/∂W⁽ˡ⁾ = δ⁽ˡ⁺¹⁾ a⁽ˡ⁾ᵀ                         (n_{l+1} × M)(M × n_l): the shape of W⁽ˡ⁾
    ∂R/∂b⁽ˡ⁾ = δ⁽ˡ⁺¹⁾ 1                             the sum over examples

For the softmax, the true class's entry of ŷ − Y is computed as minus the sum of the other classes'
probabilities (Σ ŷ = 1 down each column): a confident ŷ_t ≈ 1 in float32 keeps only 2⁻²⁴ of 1 − ŷ_t,
while the small probabilities keep their own relative precision.

The sum over the batch is the matrix product itself (seed 003: "通过乘积来做加和"), and the 1/M of
the mean loss enters once, in δ⁽ᴸ⁺¹⁾. f′ is the forward's da⁽ˡ⁾ (relu′(0) = 0).

grad_W1 … grad_W8 and grad_b1 … grad_b8 are defined; a network with more than 8 layers reports the
deeper ones as missing. Those past `layers` name no parameter of the model and are not called.
"""

import numpy as np

MAX_LAYERS = 8


def _deltas(ctx):
    """{l: δ⁽ˡ⁾} for l = L + 1 down to 2."""
    L = ctx.layers
    yhat, Y = np.asarray(ctx.yhat), np.asarray(ctx.Y)
    if ctx.loss == "xent":
        others = ((1 - Y) * yhat).sum(axis=0)
        delta = {L + 1: ((1 - Y) * yhat - Y * others[None, :]) / ctx.M}
    else:
        delta = {L + 1: (yhat - Y) / ctx.M}
    for l in range(L, 1, -1):
        W = np.asarray(getattr(ctx, f"W{l}"))
        delta[l] = (W.T @ delta[l + 1]) * np.asarray(getattr(ctx, f"da{l}"))
    return delta


def _grad_W(l):
    def grad_W(ctx):
        return _deltas(ctx)[l + 1] @ np.asarray(getattr(ctx, f"a{l}")).T

    grad_W.__name__ = grad_W.__qualname__ = f"grad_W{l}"
    return grad_W


def _grad_b(l):
    def grad_b(ctx):
        return _deltas(ctx)[l + 1].sum(axis=1)

    grad_b.__name__ = grad_b.__qualname__ = f"grad_b{l}"
    return grad_b


for _l in range(1, MAX_LAYERS + 1):
    globals()[f"grad_W{_l}"] = _grad_W(_l)
    globals()[f"grad_b{_l}"] = _grad_b(_l)
