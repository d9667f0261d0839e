"""`bn-layer`: one batch-normalisation layer with an upstream gradient, as seed 001 derives it.

    mu    = mean of x over the statistics axes              f1, seed 001's node ①
    xmu   = x - mu                                          f3, node ③
    sq    = xmu^2                                           f4, node ④
    var   = sum(sq) / (M - ddof)                            f5, node ⑤ (M entries per statistic)
    sigma = sqrt(var + eps)                                 f6, node ⑥ (Kratzert's `sqrtvar`)
    ivar  = 1 / sigma                                       f7, node ⑦
    xhat  = xmu * ivar                                      f9, node ⑨
    gammax = gamma * xhat                                   f12, node ⑫
    y     = gammax + beta                                   f15, node ⑮
    R     = sum(y * dout)                                   so that ∂R/∂y = dout, the upstream gradient

`--layout fc`: x is N×D and the statistics are per column, over the N rows (M = N). `--layout conv`:
x is N×C×H×W and the statistics are per channel, over N, H and W (M = N·H·W), as seed 001's "CNN"
section has it: the channel's activations of the whole batch serialised into one column.

The intermediate nodes are returned as ctx fields so that a staged derivation can check each node's
differential on its own (`jvp_sigma_x`, `jvp_ivar_x`, ...), not only the end result.

The forward takes 0/1 masks over every dimension: padded entries of x are left out of mu and var,
padded units (D or C) get sigma = sqrt(1 + eps + var) instead of 0/0, and dout is zero there, so
nothing real depends on anything padded.
"""

from __future__ import annotations

SUMMARY = (
    "One batch-norm layer y = gamma * xhat + beta under an upstream gradient dout, R = sum(y * dout) (seed 001); "
    "--layout fc: x is N x D; --layout conv: x is N x C x H x W, statistics per channel over N, H, W."
)
OPTIONS = ("layout", "ddof", "eps")


def DIMS(options):
    if options["layout"] == "conv":
        # N >= 2 keeps M = N·H·W >= 2, so ddof = 1 and eps = 0 are always defined.
        return {"N": (2, 8), "C": (1, 4), "H": (1, 6), "W": (1, 6)}
    return {"N": (2, 64), "D": (1, 16)}


def _unit(d):
    return "C" if "C" in d else "D"


def _x_shape(d):
    return (d["N"], d["C"], d["H"], d["W"]) if "C" in d else (d["N"], d["D"])


def inputs(d):
    return {"x": _x_shape(d), "dout": _x_shape(d)}


def params(d):
    return {"gamma": (d[_unit(d)],), "beta": (d[_unit(d)],)}


def forward(x, dout, gamma, beta, *, options, masks):
    import jax

    # Broadcasts are written out (None axes) so the model runs under jax_numpy_rank_promotion="raise".
    if options["layout"] == "conv":
        axes = (0, 2, 3)
        inside = masks["N"][:, None, None, None] * masks["H"][None, None, :, None] * masks["W"][None, None, None, :]
        M = masks["N"].sum() * masks["H"].sum() * masks["W"].sum()
        unit = masks["C"]

        def per_unit(v):
            return v[None, :, None, None]
    else:
        axes = (0,)
        inside = masks["N"][:, None]
        M = masks["N"].sum()
        unit = masks["D"]

        def per_unit(v):
            return v[None, :]

    mu = (inside * x).sum(axes) / M
    # Only the variants (see `variants`) set stats, grad_ddof or grad_axes: they change derivatives, never
    # values.
    stats = options.get("stats")
    if stats in ("constant", "mean-constant"):
        mu = jax.lax.stop_gradient(mu)
    xmu = inside * (x - per_unit(mu))
    sq = xmu**2
    var = sq.sum(axes) / (M - options["ddof"])
    if "grad_ddof" in options:
        other = sq.sum(axes) / (M - options["grad_ddof"])
        var = other + jax.lax.stop_gradient(var - other)
    sigma = (var + options["eps"] + (1 - unit)) ** 0.5
    if stats in ("constant", "sigma-constant"):
        sigma = jax.lax.stop_gradient(sigma)
    ivar = 1 / sigma
    xhat = xmu * per_unit(ivar)
    if options.get("grad_axes") == "N":
        xhat = _over_n_alone(x, xmu, var, inside, masks, options, unit)
    gammax = per_unit(gamma) * xhat
    y = gammax + per_unit(beta)
    R = (y * dout).sum()
    return {"R": R, "mu": mu, "xmu": xmu, "sq": sq, "var": var, "sigma": sigma, "ivar": ivar,
            "xhat": xhat, "gammax": gammax, "y": y}


def _over_n_alone(x, xmu, var, inside, masks, options, unit):
    """xhat as this layer computes it (per channel), with the derivative it has when the statistics are
    taken over N alone, each (c, h, w) its own unit: a backward pass written for the fc layer and run
    on a conv one, fed this forward record (its values kept, its derivative changed)."""
    import jax

    n = masks["N"].sum()
    mu = (inside * x).sum(0) / n
    moved = inside * (x - mu[None])
    moved = moved + jax.lax.stop_gradient(xmu - moved)
    var_n = (inside * moved**2).sum(0) / (n - options["ddof"])
    var_n = var_n + jax.lax.stop_gradient(var[:, None, None] - var_n)
    return moved / ((var_n + options["eps"] + (1 - unit)[:, None, None]) ** 0.5)[None]


def check_dims(dims, options) -> str | None:
    M = dims["N"] * dims.get("H", 1) * dims.get("W", 1)
    what = "N·H·W" if options["layout"] == "conv" else "N"
    if M <= options["ddof"]:
        return f"{what}={M} leaves no degree of freedom with ddof={options['ddof']} (need {what} > ddof)"
    if options["eps"] == 0 and M < 2:
        return f"{what}={M} with eps=0 makes sigma zero (need {what} >= 2, or eps > 0)"
    return None


def variants(options) -> dict:
    """The same layer under a known wrong assumption, for naming a slip: the BN paper's section-2 trap
    (mu and sigma held constant, only mu: seed 001's branch ① dropped, or only sigma), a backward pass
    written for the other variance divisor fed this forward record (its value kept, its derivative
    changed), or the other convention throughout, and for conv a backward pass whose statistics run
    over N alone (per pixel) where they are per channel."""
    out = {
        "batch-stats-constant": {**options, "stats": "constant"},
        "batch-stats-constant:mean": {**options, "stats": "mean-constant"},
        "batch-stats-constant:sigma": {**options, "stats": "sigma-constant"},
        "ddof": {**options, "grad_ddof": 1 - options["ddof"]},
        "ddof:forward": {**options, "ddof": 1 - options["ddof"]},
    }
    if options["layout"] == "conv":
        out["axes"] = {**options, "grad_axes": "N"}
    return out


OUTPUTS = {
    "mu": "mean of x over the statistics axes (rows for fc; N, H, W for conv), per unit (D,) or (C,)",
    "xmu": "x - mu, shaped like x",
    "sq": "xmu ** 2, shaped like x",
    "var": "sum of sq over the statistics axes / (M - ddof), M entries per unit",
    "sigma": "sqrt(var + eps), per unit",
    "ivar": "1 / sigma, per unit",
    "xhat": "xmu / sigma, shaped like x",
    "gammax": "gamma * xhat, shaped like x",
    "y": "gamma * xhat + beta, the layer's output; R = sum(y * dout)",
}
CHECKS = ("grad_x", "grad_gamma", "grad_beta")
# The layer's output, which a backward pass written as forward and backward functions is checked against.
LAYER_OUTPUT = "y"
DERIVATIONS = {
    "closed-form": "bncheck.derivations.bn_layer_closed_form",
    "graph": "bncheck.derivations.bn_layer_graph",
}
DEFAULT_DERIVATION = "closed-form"
