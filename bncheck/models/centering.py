"""`centering`: the BN paper's section-2 thought experiment (seed 002): a bias that centring undoes.

    u    = x1 @ W                       (N, n)   x1 an input (N, m), W (m, n)
    x    = u + b                        (N, n)   b (n,), the learned bias
    Ex   = mean of x over the batch     (n,)     E[x]
    xhat = x - Ex                       (N, n)
    R    = sum((xhat - t)^2) / N                 t (N, n), a target input

The paper leaves the loss open (its ℓ(x̂)); seed 002's answer takes a squared distance to a target,
and this is that, averaged over the batch. Since E[x] moves with b exactly as x does, xhat and R do
not depend on b at all: the honest ∂R/∂b is zero. A derivation that treats E[x] as a constant gets
∂R/∂b = Σ_rows ∂R/∂x̂ instead, a step along which moves b and E[x] together and leaves R where it is.

The forward takes 0/1 masks: padded rows are left out of E[x] and R, padded columns of x1, W and t are
zero, so nothing real depends on anything padded.
"""

from __future__ import annotations

SUMMARY = "Centring after a learned bias, x = x1 W + b, xhat = x - E[x], R = sum((xhat - t)^2)/N: dR/db = 0 (seed 002)."
DIMS = {"N": (2, 32), "m": (1, 8), "n": (1, 8)}


def inputs(d):
    return {"x1": (d["N"], d["m"]), "t": (d["N"], d["n"])}


def params(d):
    return {"W": (d["m"], d["n"]), "b": (d["n"],)}


def forward(x1, t, W, b, *, options, masks):
    # Broadcasts are written out (None axes) so the model runs under jax_numpy_rank_promotion="raise".
    rows = masks["N"][:, None]
    N = masks["N"].sum()
    u = x1 @ W
    x = u + b[None, :]
    Ex = (rows * x).sum(0) / N
    if options.get("stats") == "constant":
        # The naive gradient of the paper: E[x] held constant. Only the batch-stats-constant variant
        # sets this; the forward values are unchanged.
        import jax

        Ex = jax.lax.stop_gradient(Ex)
    xhat = rows * (x - Ex[None, :])
    R = ((xhat - t) ** 2).sum() / N
    return {"R": R, "u": u, "x": x, "Ex": Ex, "xhat": xhat}


def variants(options) -> dict:
    # The naive gradient: E[x] held constant. The key names the diagnosis code, batch-stats-constant,
    # and which statistic is held: the only one this model has, the mean.
    return {"batch-stats-constant:mean": {**options, "stats": "constant"}}


OUTPUTS = {
    "u": "x1 @ W (N, n)",
    "x": "u + b (N, n)",
    "Ex": "E[x], the mean of x over the batch (n,)",
    "xhat": "x - E[x] (N, n)",
}
CHECKS = ("grad_b", "grad_W")
DERIVATIONS = {
    "closed-form": "bncheck.derivations.centering_closed_form",
    "naive": "bncheck.derivations.centering_naive",
}
DEFAULT_DERIVATION = "closed-form"
