"""`max-pool`: max pooling of x (N×C×H×W) over square windows, `pool` k on a side, `stride` s apart.

    out[n, c, u, v] = max over 0 <= i, j < k of x[n, c, s·u + i, s·v + j]      (N, C, Ho, Wo)
    Ho = (H − k) // s + 1,  Wo = (W − k) // s + 1
    R  = sum(out * dout)                                  dout (N, C, Ho, Wo), so that ∂R/∂out = dout

∂R/∂x sends each window's dout to the entry that attains the window's maximum; an entry that is the
maximum of several windows (a stride smaller than the window, windows overlapping) collects the sum
of their douts, and entries that no window reaches (a stride that does not divide H − k) get zero.
With s = k (the course default 2, 2) the windows tile x without overlap.

A tie for a window's maximum is max-pool's kink: there the derivative is a convention (jax splits it
among the tied entries; a course's mask `x == max` gives it to all of them). The forward returns
`gap`, each window's largest entry minus its second largest, as its kink field: a draw with a gap near
zero is redrawn, as relu's draws near zero are.

The output size is not linear in the dims (the stride), so this forward takes no masks: references
are compiled once per distinct shape, and the default sweep ranges are kept small.
"""

from __future__ import annotations

SUMMARY = (
    "Max pooling of x (N x C x H x W) over --pool k square windows, --stride s apart (overlapping when s < k); "
    "R = sum(out * dout)."
)
OPTIONS = ("pool", "stride")
CHECKS = ("grad_x",)
DERIVATIONS = {"closed-form": "bncheck.derivations.max_pool_closed_form"}
DEFAULT_DERIVATION = "closed-form"


def OUTPUTS(options):
    fields = {
        "out": "the largest entry of each window, (N, C, Ho, Wo) with Ho = (H-pool)//stride + 1, "
        "Wo = (W-pool)//stride + 1, the shape of dout; R = sum(out * dout)",
    }
    if options["pool"] > 1:
        fields["gap"] = "each window's largest entry minus its second largest (N, C, Ho, Wo): a tie is the kink"
    return fields


def DIMS(options):
    # H and W start where the window fits; few values per dimension, since every distinct shape costs
    # a compile.
    k = options["pool"]
    return {"N": (1, 2), "C": (1, 2), "H": (k, k + 3), "W": (k, k + 3)}


def out_size(size: int, options) -> int:
    return (size - options["pool"]) // options["stride"] + 1


def inputs(d, options):
    Ho, Wo = out_size(d["H"], options), out_size(d["W"], options)
    return {"x": (d["N"], d["C"], d["H"], d["W"]), "dout": (d["N"], d["C"], Ho, Wo)}


def params(d):
    return {}


def forward(x, dout, *, options):
    import jax.numpy as jnp

    k, s = options["pool"], options["stride"]
    Ho, Wo = out_size(x.shape[2], options), out_size(x.shape[3], options)
    # windows[i·k + j, n, c, u, v] = x[n, c, s·u + i, s·v + j]
    windows = jnp.stack([
        x[:, :, i : i + s * (Ho - 1) + 1 : s, j : j + s * (Wo - 1) + 1 : s] for i in range(k) for j in range(k)
    ])
    out = windows.max(axis=0)
    fields = {"R": (out * dout).sum(), "out": out}
    if k > 1:
        top = jnp.sort(windows, axis=0)
        fields["gap"] = top[-1] - top[-2]
    return fields


def check_dims(dims, options) -> str | None:
    k = options["pool"]
    for size in ("H", "W"):
        if dims[size] < k:
            return f"the window does not fit: pool={k} is larger than {size}={dims[size]} (need pool <= {size})"
    return None


def kink_field(options) -> str | None:
    return "gap" if options["pool"] > 1 else None
