"""`layer-norm`: layer normalisation of each row of x over its D features, under an upstream gradient.

    mu    = mean of x over each row's D features              (N,)
    var   = sum over the row of (x - mu)^2 / (D - ddof)       (N,)
    sigma = sqrt(var + eps)                                   (N,)
    xhat  = (x - mu) / sigma                                  (N, D)
    out   = gamma * xhat + beta                               (N, D), gamma and beta (D,) per feature
    R     = sum(out * dout)                                   so that ∂R/∂out = dout

The statistics are batch norm's, taken along the other axis: per example over its features rather
than per feature over the batch, so they need no batch and each row is normalised on its own. The
course convention is the biased variance (ddof 0, as `np.var`), with eps = 1e-5.

The forward takes 0/1 masks over N and D: padded features are left out of mu and var and have
gamma = beta = 0, padded rows get sigma = sqrt(1 + eps) instead of 0/0, and dout is zero on padding,
so nothing real depends on anything padded.
"""

from __future__ import annotations

SUMMARY = (
    "Layer norm out = gamma * (x - mu) / sigma + beta, statistics per row of x (N x D) over its D features, "
    "under an upstream gradient dout, R = sum(out * dout)."
)
OPTIONS = ("ddof", "eps")
# D >= 2 keeps every row's variance defined at ddof = 1 and sigma > 0 at eps = 0.
DIMS = {"N": (1, 16), "D": (2, 16)}
OUTPUTS = {
    "mu": "mean of each row of x over its D features (N,)",
    "sigma": "sqrt(sum over the row of (x - mu)^2 / (D - ddof) + eps) (N,)",
    "xhat": "(x - mu) / sigma (N, D)",
    "out": "gamma * xhat + beta, the layer's output (N, D); R = sum(out * dout)",
}
CHECKS = ("grad_x", "grad_gamma", "grad_beta")
DERIVATIONS = {"closed-form": "bncheck.derivations.layer_norm_closed_form"}
DEFAULT_DERIVATION = "closed-form"


def inputs(d):
    return {"x": (d["N"], d["D"]), "dout": (d["N"], d["D"])}


def params(d):
    return {"gamma": (d["D"],), "beta": (d["D"],)}


def forward(x, dout, gamma, beta, *, options, masks):
    import jax

    features = masks["D"][None, :]
    D = masks["D"].sum()
    mu = (features * x).sum(1) / D
    # Only the variants (see `variants`) set stats or grad_ddof: they change derivatives, never values.
    stats = options.get("stats")
    if stats in ("constant", "mean-constant"):
        mu = jax.lax.stop_gradient(mu)
    xmu = features * (x - mu[:, None])
    var = (xmu**2).sum(1) / (D - options["ddof"])
    if "grad_ddof" in options:
        other = (xmu**2).sum(1) / (D - options["grad_ddof"])
        var = other + jax.lax.stop_gradient(var - other)
    sigma = (var + options["eps"] + (1 - masks["N"])) ** 0.5
    if stats in ("constant", "sigma-constant"):
        sigma = jax.lax.stop_gradient(sigma)
    xhat = xmu / sigma[:, None]
    out = gamma[None, :] * xhat + beta[None, :]
    return {"R": (out * dout).sum(), "mu": mu, "sigma": sigma, "xhat": xhat, "out": out}


def check_dims(dims, options) -> str | None:
    if dims["D"] <= options["ddof"]:
        return f"D={dims['D']} leaves no degree of freedom with ddof={options['ddof']} (need D > ddof)"
    if options["eps"] == 0 and dims["D"] < 2:
        return f"D={dims['D']} with eps=0 makes sigma zero (need D >= 2, or eps > 0)"
    return None


def variants(options) -> dict:
    """The same layer under a known wrong assumption, for naming a slip: a backward pass that forgets
    that mu, sigma or both depend on x (the BN paper's section-2 trap, per row), or one written for
    the other variance divisor fed this forward record (its value kept, its derivative changed), or
    the other convention throughout."""
    return {
        "batch-stats-constant": {**options, "stats": "constant"},
        "batch-stats-constant:mean": {**options, "stats": "mean-constant"},
        "batch-stats-constant:sigma": {**options, "stats": "sigma-constant"},
        "ddof": {**options, "grad_ddof": 1 - options["ddof"]},
        "ddof:forward": {**options, "ddof": 1 - options["ddof"]},
    }
