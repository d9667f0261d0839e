"""`softmax-loss`: the mean softmax cross-entropy of scores x (N×C) against integer labels y.

    probs[n, c] = exp(x[n, c]) / Σ_c' exp(x[n, c'])          (N, C), the softmax of each row
    out         = −(1/N) Σ_n log probs[n, y[n]]              the mean loss, a scalar
    R           = out                                        the layer is the last: dout is 1

y holds N labels in [0, C) as integer-valued floats (ctx.y.astype(int) indexes with them), drawn
uniformly by `sample`; forward turns them into indices. The softmax is computed from x minus its row
maximum, held constant (the loss does not depend on it), so that no exp overflows.

The forward takes 0/1 masks over N and C: padded rows are left out of the mean and of N, and padded
scores are set to half the dtype's lowest number before the softmax, so they get a probability of
exactly zero.
"""

from __future__ import annotations

SUMMARY = "The mean softmax cross-entropy of scores x (N x C) against integer labels y (N,), R = out (dout is 1)."
# C >= 2: with one class the loss is 0 and every gradient is zero, nothing to check.
DIMS = {"N": (1, 16), "C": (2, 10)}
OUTPUTS = {
    "probs": "the softmax of each row of x (N, C)",
    "out": "the mean cross-entropy -(1/N) sum_n log probs[n, y[n]], a scalar; R = out",
}
CHECKS = ("grad_x",)
DERIVATIONS = {"closed-form": "bncheck.derivations.softmax_loss_closed_form"}
DEFAULT_DERIVATION = "closed-form"


def inputs(d):
    return {"x": (d["N"], d["C"]), "y": (d["N"],)}


def params(d):
    return {}


def sample(rng, d):
    """Labels drawn uniformly from the C classes, as floats."""
    return {"y": rng.integers(d["C"], size=d["N"]).astype(float)}


def forward(x, y, *, masks):
    import jax
    import jax.numpy as jnp

    # Set, not subtracted: a constant such as 1e30 is inf in float16, and inf times a mask's 0 is NaN.
    scores = jnp.where(masks["C"][None, :] > 0, x, jnp.finfo(x.dtype).min / 2)
    shifted = scores - jax.lax.stop_gradient(scores.max(axis=1))[:, None]
    logp = shifted - jnp.log(jnp.exp(shifted).sum(axis=1))[:, None]
    label = y.astype(jnp.int32)[:, None] == jnp.arange(x.shape[1])[None, :]
    out = -(masks["N"][:, None] * jnp.where(label, logp, 0.0)).sum() / masks["N"].sum()
    return {"R": out, "probs": jnp.exp(logp), "out": out}


def check_dims(dims, options) -> str | None:
    if dims["C"] < 2:
        return f"C={dims['C']} gives the softmax one class, so every gradient is zero (need C >= 2)"
    return None
