"""`bn-mlp`: the seed network y = a(b(X Γ₁)) Γ₂ + ε, batch normalisation before the activation.

    H     = X @ G1                                     (N, p2)
    mu    = mean of H over rows                        (p2,)
    sigma = sqrt(sum_rows (H - mu)^2 / (N - ddof) + eps)
    Hhat  = (H - mu) / sigma
    B     = gamma * Hhat + beta                        the batch-normalised pre-activation
    A     = act(B),  dA = act'(B)                      relu'(0) = 0
    yhat  = A @ G2,  resid = y - yhat
    R     = sum(resid^2) / N

The forward takes 0/1 masks over the rows (N) and hidden units (p2) so that draws of different sizes,
zero-padded to one bucket shape, give exactly the unpadded values and derivatives on their real
entries: padded rows are left out of mu, sigma and R, padded units get sigma = 1 instead of 0/0, and
padded columns of X, G1 and G2 are zero, so nothing real depends on anything padded.
"""

from __future__ import annotations

SUMMARY = "The seed network y = a(b(X G1)) G2 + e with batch normalisation b (seed 000)."
OPTIONS = ("activation", "ddof", "eps")
DIMS = {"N": (2, 64), "p1": (1, 16), "p2": (1, 16), "k": (1, 1)}
DIM_DEFAULTS = {"k": 1}


def inputs(d):
    return {"X": (d["N"], d["p1"]), "y": (d["N"], d["k"])}


def params(d):
    return {"G1": (d["p1"], d["p2"]), "G2": (d["p2"], d["k"]), "gamma": (d["p2"],), "beta": (d["p2"],)}


def activate(name: str, B):
    """act(B) and act'(B) for an activation by name (relu'(0) = 0), shared with the mlp model."""
    import jax
    import jax.numpy as jnp

    if name == "relu":
        return jnp.where(B > 0, B, 0.0), (B > 0).astype(B.dtype)
    if name == "tanh":
        A = jnp.tanh(B)
        return A, 1 - A**2
    if name == "sigmoid":
        A = jax.nn.sigmoid(B)
        return A, A * (1 - A)
    if name == "softplus":
        return jax.nn.softplus(B), jax.nn.sigmoid(B)
    return B, jnp.ones_like(B)


def forward(X, y, G1, G2, gamma, beta, *, options, masks):
    # Broadcasts are written out (None axes) so the model runs under jax_numpy_rank_promotion="raise".
    import jax

    rows = masks["N"][:, None]
    n = masks["N"].sum()
    H = X @ G1
    mu = (rows * H).sum(0) / n
    # Only the variants (see `variants`) set stats, grad_ddof or grad_activation: they change
    # derivatives, never values.
    stats = options.get("stats")
    if stats == "mean-constant":
        # A gradient that forgets the batch mean depends on its input (sigma still does).
        mu = jax.lax.stop_gradient(mu)
    Hc = H - mu[None, :]
    var = (rows * Hc**2).sum(0) / (n - options["ddof"])
    if "grad_ddof" in options:
        # The value keeps the model's divisor, the derivative takes the other one: a backward pass
        # written for the other variance convention, fed the forward record of this one.
        other = (rows * Hc**2).sum(0) / (n - options["grad_ddof"])
        var = other + jax.lax.stop_gradient(var - other)
    sigma = (var + options["eps"] + (1 - masks["p2"])) ** 0.5
    if stats == "sigma-constant":
        # The most common normalisation slip: sigma's dependence on the input dropped, the mean's kept.
        sigma = jax.lax.stop_gradient(sigma)
    if stats == "constant":
        # The trap of the BN paper (section 2, seed 002): a gradient that treats mu and sigma as
        # constants. Only the batch-stats-constant variant sets this; the forward values are unchanged.
        mu, sigma = jax.lax.stop_gradient(mu), jax.lax.stop_gradient(sigma)
        Hc = H - mu[None, :]
    Hhat = Hc / sigma[None, :]
    B = gamma[None, :] * Hhat + beta[None, :]
    A, dA = activate(options["activation"], B)
    if options.get("grad_activation") == "identity":
        # a'(B) left out of the chain rule (relu' or tanh' taken as 1): A's value, B's derivative.
        A = B + jax.lax.stop_gradient(A - B)
    yhat = A @ G2
    resid = y - yhat
    R = (rows * resid**2).sum() / n
    return {"R": R, "H": H, "mu": mu, "sigma": sigma, "Hhat": Hhat, "B": B, "A": A, "dA": dA, "yhat": yhat, "resid": resid}


def check_dims(dims, options) -> str | None:
    if dims["N"] <= options["ddof"]:
        return f"N={dims['N']} leaves no degree of freedom with ddof={options['ddof']} (need N > ddof)"
    if options["eps"] == 0 and dims["N"] < 2:
        return f"N={dims['N']} with eps=0 makes sigma zero (need N >= 2, or eps > 0)"
    return None


def kink_field(options) -> str | None:
    return "B" if options["activation"] == "relu" else None


def variants(options) -> dict:
    out = {
        "batch-stats-constant": {**options, "stats": "constant"},
        "batch-stats-constant:mean": {**options, "stats": "mean-constant"},
        "batch-stats-constant:sigma": {**options, "stats": "sigma-constant"},
        "ddof": {**options, "grad_ddof": 1 - options["ddof"]},
        "ddof:forward": {**options, "ddof": 1 - options["ddof"]},
    }
    if options["activation"] != "identity":
        out["activation-derivative"] = {**options, "grad_activation": "identity"}
    return out


def invariants(options) -> dict:
    return {"grad_G1": _columns_orthogonal_to_G1} if options["eps"] == 0 else {}


def _columns_orthogonal_to_G1(ctx, got) -> str | None:
    """At eps = 0, scaling column j of G1 scales column j of H, which batch norm undoes: Hhat and so R
    do not change. R is then homogeneous of degree 0 in that column, and by Euler's theorem column j
    of dR/dG1 is orthogonal to column j of G1."""
    import numpy as np

    dtype = np.asarray(ctx.X).dtype
    g, G1, X = (np.asarray(a, dtype=np.float64) for a in (got, ctx.G1, ctx.X))
    resid, G2, dA = (np.asarray(a, dtype=np.float64) for a in (ctx.resid, ctx.G2, ctx.dA))
    E = (-2.0 / ctx.N) * (resid @ G2.T) * dA * np.asarray(ctx.gamma, dtype=np.float64)[None, :]
    # Column j of dR/dG1 is X' times a column no larger than |E_j| / sigma_j: the size of the terms
    # whose rounding a correct value carries.
    terms = np.linalg.norm(X) * np.linalg.norm(E, axis=0) / np.asarray(ctx.sigma, dtype=np.float64) * np.linalg.norm(G1, axis=0)
    along = np.abs((g * G1).sum(axis=0))
    bad = np.flatnonzero(along > np.sqrt(np.finfo(dtype).eps) * terms)
    if bad.size == 0:
        return None
    j = int(bad[0])
    return (
        f"column {j} of dR/dG1 is not orthogonal to column {j} of G1 (inner product {along[j]:.3g}, terms of "
        f"size {terms[j]:.3g}); at eps = 0 scaling a column of G1 leaves Hhat, and so R, unchanged"
    )


OUTPUTS = {
    "H": "X @ G1, the pre-normalisation activations (N, p2)",
    "mu": "batch mean of H over rows (p2,)",
    "sigma": "sqrt(sum_rows (H - mu)^2 / (N - ddof) + eps) (p2,)",
    "Hhat": "(H - mu) / sigma (N, p2)",
    "B": "gamma * Hhat + beta, the batch-normalised pre-activation (N, p2)",
    "A": "act(B) (N, p2)",
    "dA": "act'(B), with relu'(0) = 0 (N, p2)",
    "yhat": "A @ G2 (N, k)",
    "resid": "y - yhat (N, k)",
}
CHECKS = (
    "grad_beta", "grad_gamma", "grad_G1", "grad_G2",
    "jac_B_beta", "jac_B_gamma", "jac_B_G1",
    "jvp_B_beta", "jvp_B_gamma", "jvp_B_G1",
)
DERIVATIONS = {
    "closed-form": "bncheck.derivations.bn_mlp_closed_form",
    "kronecker": "bncheck.derivations.bn_mlp_kronecker",
    "seed-question": "bncheck.derivations.bn_mlp_seed_question",
}
DEFAULT_DERIVATION = "closed-form"
