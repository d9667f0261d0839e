"""`kron`: the Kronecker product F = A ⊗ B, the rule the seed question reached for (β ⊗ 1_N).

A is m×n, B is p×q, F = A ⊗ B is mp×nq with F[i·p + k, j·q + l] = A[i, j] B[k, l]. The loss is
R = Σ F ⊙ dF, with dF an input shaped like F (so ∂R/∂F = dF). Jacobians are ∂vec(F)/∂vec(A)ᵀ
(mpnq × mn) and ∂vec(F)/∂vec(B)ᵀ (mpnq × pq), vec column-major as everywhere in bncheck.

F's entries for a padded A and B do not sit in F's top-left corner, so this forward takes no masks:
references are compiled once per distinct shape, and the default sweep ranges are small.
"""

from __future__ import annotations

SUMMARY = "The Kronecker product F = A (x) B; R = sum(F * dF); Jacobians by the Magnus-Neudecker rule."
DIMS = {"m": (1, 3), "n": (1, 3), "p": (1, 3), "q": (1, 3)}
OUTPUTS = {"F": "A (x) B, F(i*p + k, j*q + l) = A(i, j) B(k, l) (m*p, n*q)"}
CHECKS = ("jac_F_A", "jac_F_B", "jvp_F_A", "jvp_F_B", "grad_A", "grad_B")


def inputs(d):
    return {"dF": (d["m"] * d["p"], d["n"] * d["q"])}


def params(d):
    return {"A": (d["m"], d["n"]), "B": (d["p"], d["q"])}


def forward(dF, A, B):
    import jax.numpy as jnp

    F = jnp.kron(A, B)
    return {"R": (F * dF).sum(), "F": F}


DERIVATIONS = {"magnus-neudecker": "bncheck.derivations.kron_magnus_neudecker"}
DEFAULT_DERIVATION = "magnus-neudecker"
