"""`affine`: a fully connected layer out = x @ w + b, under an upstream gradient, as the courses write it.

    out = x @ w + b        x (N, D), w (D, M), b (M,), out (N, M): one example per row
    R   = sum(out * dout)  dout (N, M), so that ∂R/∂out = dout

(Seed 003's `mlp` writes the same layer with one example per column, z = W a + b 1ᵀ; here w is D×M and
multiplies from the right, as in `affine_forward(x, w, b)`.)

The forward takes 0/1 masks, and needs none: zero-padded rows of x, padded rows and columns of w and
padded entries of b and dout add exact zeros to the real entries, and R sees nothing padded.
"""

from __future__ import annotations

SUMMARY = (
    "A fully connected layer out = x @ w + b (x N x D, w D x M, b (M,)) under an upstream gradient dout, "
    "R = sum(out * dout)."
)
DIMS = {"N": (1, 16), "D": (1, 16), "M": (1, 16)}
OUTPUTS = {"out": "x @ w + b, the layer's output (N, M); R = sum(out * dout)"}
CHECKS = ("grad_x", "grad_w", "grad_b")
DERIVATIONS = {"closed-form": "bncheck.derivations.affine_closed_form"}
DEFAULT_DERIVATION = "closed-form"


def inputs(d):
    return {"x": (d["N"], d["D"]), "dout": (d["N"], d["M"])}


def params(d):
    return {"w": (d["D"], d["M"]), "b": (d["M"],)}


def forward(x, dout, w, b, *, masks):
    out = x @ w + b[None, :]
    return {"R": (out * dout).sum(), "out": out}
