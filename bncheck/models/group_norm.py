"""`group-norm`: group normalisation of x (N×C×H×W), its C channels split into `groups` G groups.

Channel c belongs to group g = c // (C/G): the groups are the contiguous blocks of C/G channels, as
in Wu and He (2018) and the courses (x reshaped to N × G × (C/G·H·W)). For each example n and
group g, over the group's M = C/G·H·W entries:

    mu[n, g]    = mean of x over the group's channels, H and W          (N, G)
    var[n, g]   = sum of (x - mu)^2 over the same entries / (M - ddof)  (N, G)
    sigma[n, g] = sqrt(var + eps)                                       (N, G)
    xhat        = (x - mu[n, g(c)]) / sigma[n, g(c)]                    (N, C, H, W)
    out         = gamma[c] * xhat + beta[c]                             gamma and beta (C,) per channel
    R           = sum(out * dout)                                       so that ∂R/∂out = dout

G = 1 is layer norm over (C, H, W); G = C is instance norm. The course convention is the biased
variance (ddof 0), eps = 1e-5. C must be a multiple of G: a sweep draws only multiples
(DIM_MULTIPLES), and a `--shape` with another C is refused.

The forward takes 0/1 masks over every dimension, so draws of many sizes share one compile: the
real channels are the first C of the padded ones and group membership is computed from C (a
one-hot C × G matrix, in integer arithmetic, so that rounding noise cannot move a channel to
another group); padded entries are left out of mu and var, padded rows and channels get a sigma of
1 instead of 0/0, and dout is zero on padding.
"""

from __future__ import annotations

SUMMARY = (
    "Group norm: x (N x C x H x W) in --groups G blocks of C/G channels, statistics per (example, group) over "
    "the group's channels, H and W; out = gamma * xhat + beta per channel, R = sum(out * dout)."
)
OPTIONS = ("groups", "ddof", "eps")
OUTPUTS = {
    "mu": "mean of x over each group's channels, H and W, per example (N, G)",
    "sigma": "sqrt(sum of (x - mu)^2 over the group / (C/G*H*W - ddof) + eps) (N, G)",
    "xhat": "(x - mu) / sigma, each channel by its group's statistics (N, C, H, W)",
    "out": "gamma * xhat + beta, per channel, the layer's output (N, C, H, W); R = sum(out * dout)",
}
CHECKS = ("grad_x", "grad_gamma", "grad_beta")
DERIVATIONS = {"closed-form": "bncheck.derivations.group_norm_closed_form"}
DEFAULT_DERIVATION = "closed-form"


def DIMS(options):
    # H >= 2 keeps at least two entries in every group, so ddof = 1 and eps = 0 are always defined.
    G = options["groups"]
    return {"N": (1, 4), "C": (G, 4 * G), "H": (2, 4), "W": (1, 4)}


def DIM_MULTIPLES(options):
    return {"C": options["groups"]}


def inputs(d):
    shape = (d["N"], d["C"], d["H"], d["W"])
    return {"x": shape, "dout": shape}


def params(d):
    return {"gamma": (d["C"],), "beta": (d["C"],)}


def forward(x, dout, gamma, beta, *, options, masks):
    import jax
    import jax.numpy as jnp

    G = options["groups"]
    channel = masks["C"] > 0
    per_group = jnp.maximum(channel.sum() // G, 1)
    member = ((jnp.arange(x.shape[1]) // per_group)[:, None] == jnp.arange(G)[None, :]) & channel[:, None]
    member = member.astype(x.dtype)  # (C, G): channel c is in group g

    def per_channel(v):  # (N, G) -> (N, C, 1, 1)
        return (v @ member.T)[:, :, None, None]

    # Broadcasts are written out (None axes) so the model runs under jax_numpy_rank_promotion="raise".
    inside = masks["N"][:, None, None, None] * masks["H"][None, None, :, None] * masks["W"][None, None, None, :]
    M = per_group.astype(x.dtype) * masks["H"].sum() * masks["W"].sum()
    mu = (inside * x).sum((2, 3)) @ member / M
    # Only the variants (see `variants`) set stats or grad_ddof: they change derivatives, never values.
    stats = options.get("stats")
    if stats in ("constant", "mean-constant"):
        mu = jax.lax.stop_gradient(mu)
    xmu = inside * (x - per_channel(mu))
    sq = (xmu**2).sum((2, 3)) @ member
    var = sq / (M - options["ddof"])
    if "grad_ddof" in options:
        other = sq / (M - options["grad_ddof"])
        var = other + jax.lax.stop_gradient(var - other)
    sigma = (var + options["eps"] + (1 - masks["N"])[:, None]) ** 0.5
    if stats in ("constant", "sigma-constant"):
        sigma = jax.lax.stop_gradient(sigma)
    xhat = xmu / (per_channel(sigma) + (1 - masks["C"])[None, :, None, None])
    out = gamma[None, :, None, None] * xhat + beta[None, :, None, None]
    return {"R": (out * dout).sum(), "mu": mu, "sigma": sigma, "xhat": xhat, "out": out}


def check_dims(dims, options) -> str | None:
    G, C = options["groups"], dims["C"]
    if C % G:
        return f"groups={G} does not divide C={C} (each group takes C/groups channels; need C a multiple of {G})"
    M = C // G * dims["H"] * dims["W"]
    if M <= options["ddof"]:
        return f"C/groups*H*W={M} leaves no degree of freedom with ddof={options['ddof']} (need C/groups*H*W > ddof)"
    if options["eps"] == 0 and M < 2:
        return f"C/groups*H*W={M} with eps=0 makes sigma zero (need C/groups*H*W >= 2, or eps > 0)"
    return None


def variants(options) -> dict:
    """As layer norm's (bncheck.models.layer_norm.variants), per (example, group)."""
    return {
        "batch-stats-constant": {**options, "stats": "constant"},
        "batch-stats-constant:mean": {**options, "stats": "mean-constant"},
        "batch-stats-constant:sigma": {**options, "stats": "sigma-constant"},
        "ddof": {**options, "grad_ddof": 1 - options["ddof"]},
        "ddof:forward": {**options, "ddof": 1 - options["ddof"]},
    }
