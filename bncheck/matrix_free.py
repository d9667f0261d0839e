"""Matrix-free checks of a large dense Jacobian: its products with random vectors against jax.jvp and
jax.vjp, instead of a reference Jacobian built with jax.jacfwd.

For a user's J = ∂vec(out)/∂vec(target)ᵀ and random v (shaped like the target) and u (shaped like the
output), J vec(v) must equal vec(jax.jvp(out, target; v)) and vec(u)ᵀ J must equal vec(jax.vjp(out,
target)(u)). A slip that moves any entry of J moves these products, with probability one over the
random draws, and the references cost a forward and a backward pass, not one per column of J.
"""

from __future__ import annotations

import numpy as np

from bncheck.compare import Comparison, as_array, compare, noise_floor

REFERENCE = "jax.jvp/jax.vjp products"


def compare_products(got, ref: dict, rough: dict, v: np.ndarray, u: np.ndarray, rtol: float, atol: float,
                     dtype: str) -> tuple[Comparison, tuple]:
    """Compares J (got) by its products with the probes v and u (vec'd, one per row) against ref's.

    Returns the comparison of the worst product and (got, ref) for it; a J that is not an array of
    the right shape, or not finite, is reported on J itself.
    """
    shape = (ref["Jv"].shape[1], ref["uJ"].shape[1])
    J = as_array(got)
    if J is None or J.shape != shape or not np.isfinite(J).all():
        # compare() names these problems before it looks at any value of the reference.
        # The reference stands in as zeros of the right shape: only its shape is ever read.
        return compare(got, np.broadcast_to(0.0, shape), rtol, atol), (got, np.zeros(shape))
    products = {"Jv": v @ J.T, "uJ": u @ J}
    results = []
    for kind, values in products.items():
        for g, r, q in zip(values, ref[kind], rough[kind]):
            results.append((compare(g, r, rtol, atol, noise_floor(r, q, dtype)), g, r))
    worst = max(results, key=lambda item: item[0].rel_err)
    return worst[0], worst[1:]
