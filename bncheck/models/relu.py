"""`relu`: the rectifier out = max(x, 0), entry by entry, under an upstream gradient.

    out = x where x > 0, else 0     x, out (N, D)
    R   = sum(out * dout)           dout (N, D), so that ∂R/∂out = dout

∂R/∂x = dout where x > 0, else 0: relu'(0) = 0, as in the seed network (written as a `where`, since
jax's own `maximum(x, 0)` gives the kink a derivative of 1/2). x = 0 is the kink, where the derivative
is a convention: the forward returns x again as its kink field `kink` (a ctx field may not share an
input's name), and a draw with an entry of x near zero is redrawn. (A slip at the kink alone,
relu'(0) = 1, is therefore never seen.)

The forward takes 0/1 masks, and needs none: padded entries are zero in x and in dout.
"""

from __future__ import annotations

SUMMARY = (
    "The rectifier out = max(x, 0) entry by entry (relu'(0) = 0) under an upstream gradient dout, "
    "R = sum(out * dout)."
)
DIMS = {"N": (1, 16), "D": (1, 16)}
OUTPUTS = {
    "out": "max(x, 0), the layer's output (N, D); R = sum(out * dout)",
    "kink": "x itself, as the field whose entries near zero (relu's kink) get a draw redrawn (N, D)",
}
CHECKS = ("grad_x",)
DERIVATIONS = {"closed-form": "bncheck.derivations.relu_closed_form"}
DEFAULT_DERIVATION = "closed-form"


def inputs(d):
    return {"x": (d["N"], d["D"]), "dout": (d["N"], d["D"])}


def params(d):
    return {}


def forward(x, dout, *, masks):
    import jax.numpy as jnp

    out = jnp.where(x > 0, x, 0.0)
    return {"R": (out * dout).sum(), "out": out, "kink": x}


def kink_field(options) -> str | None:
    return "kink"
