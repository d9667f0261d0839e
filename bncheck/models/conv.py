"""`conv`: a 2-D convolution layer computed as im2col and one matrix product (seed 003, caffe's way).

x is N×C×H×W, the kernel K is O×C×kh×kw, the bias b is (O,); `stride` s and zero `padding` p on each
side. As in deep-learning libraries (and jax.lax.conv_general_dilated) the layer is a
cross-correlation, the kernel not flipped:

    y[n, o, u, v] = b[o] + Σ_{c,i,j} K[o, c, i, j] · xpad[n, c, s·u + i, s·v + j]      (N, O, Ho, Wo)
    Ho = (H + 2p − kh) // s + 1,  Wo = (W + 2p − kw) // s + 1

computed as cols = im2col(xpad), whose row (c, i, j) and column (n, u, v) hold xpad[n, c, s·u + i,
s·v + j] (C·kh·kw, N·Ho·Wo), and y = K_mat · cols with K_mat = K reshaped to O × C·kh·kw. The loss is
R = Σ y ⊙ dout, with the upstream gradient dout an input shaped like y, so ∂R/∂y = dout.

Output sizes are not linear in the dims (the stride), so this forward takes no masks: the references
are compiled once per distinct shape, and the default sweep ranges are kept small.
"""

from __future__ import annotations

SUMMARY = "A 2-D convolution layer (stride, padding) as im2col and one matrix product; R = sum(y * dout)."
OPTIONS = ("stride", "padding")
OUTPUTS = {
    "xpad": "x with `padding` zeros on each side of H and W (N, C, H+2p, W+2p)",
    "cols": "im2col(xpad): row (c, i, j), column (n, u, v) holds xpad(n, c, s*u+i, s*v+j) (C*kh*kw, N*Ho*Wo)",
    "y": "K reshaped to O x C*kh*kw, times cols, reshaped, plus b (N, O, Ho, Wo), the shape of dout; "
    "Ho = (H+2p-kh)//s + 1, Wo = (W+2p-kw)//s + 1",
}
CHECKS = ("grad_K", "grad_b", "grad_x")
# The layer's output, which a backward pass written as forward and backward functions is checked against.
LAYER_OUTPUT = "y"


def DIMS(options):
    # H and W start where the largest kernel fits; few values per dimension, since every distinct
    # shape costs a compile.
    fits = max(1, 3 - 2 * options["padding"])
    return {"N": (1, 2), "C": (1, 2), "O": (1, 2), "kh": (1, 3), "kw": (1, 3), "H": (fits, 5), "W": (fits, 5)}


def out_size(size: int, kernel: int, options) -> int:
    return (size + 2 * options["padding"] - kernel) // options["stride"] + 1


def inputs(d, options):
    Ho, Wo = out_size(d["H"], d["kh"], options), out_size(d["W"], d["kw"], options)
    return {"x": (d["N"], d["C"], d["H"], d["W"]), "dout": (d["N"], d["O"], Ho, Wo)}


def params(d):
    return {"K": (d["O"], d["C"], d["kh"], d["kw"]), "b": (d["O"],)}


def forward(x, dout, K, b, *, options):
    import jax.numpy as jnp

    s, p = options["stride"], options["padding"]
    N, C, H, W = x.shape
    O, _, kh, kw = K.shape
    Ho, Wo = out_size(H, kh, options), out_size(W, kw, options)
    xpad = jnp.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    # patches[c, i, j, n, u, v] = xpad[n, c, s*u + i, s*v + j]
    patches = jnp.stack([
        jnp.stack([xpad[:, :, i : i + s * (Ho - 1) + 1 : s, j : j + s * (Wo - 1) + 1 : s] for j in range(kw)])
        for i in range(kh)
    ])  # (kh, kw, N, C, Ho, Wo)
    cols = patches.transpose(3, 0, 1, 2, 4, 5).reshape(C * kh * kw, N * Ho * Wo)
    y = (K.reshape(O, C * kh * kw) @ cols).reshape(O, N, Ho, Wo).transpose(1, 0, 2, 3) + b[None, :, None, None]
    return {"R": (y * dout).sum(), "xpad": xpad, "cols": cols, "y": y}


def check_dims(dims, options) -> str | None:
    p = options["padding"]
    for size, kernel in (("H", "kh"), ("W", "kw")):
        if dims[size] + 2 * p < dims[kernel]:
            return (
                f"the kernel does not fit: {kernel}={dims[kernel]} is larger than {size}={dims[size]} "
                f"plus 2 x padding {p} (need {kernel} <= {size} + 2*padding)"
            )
    return None


DERIVATIONS = {"closed-form": "bncheck.derivations.conv_closed_form"}
DEFAULT_DERIVATION = "closed-form"
