"""`mlp`: L affine layers in seed 003's column convention, one example per column.

Layers are numbered as in seed 003 (and UFLDL, which it follows): a⁽¹⁾ = X is the input and layer
l = 1 … L maps a⁽ˡ⁾ to

    z⁽ˡ⁺¹⁾ = W⁽ˡ⁾ a⁽ˡ⁾ + b⁽ˡ⁾ 1ᵀ          W⁽ˡ⁾ is n_{l+1} × n_l, b⁽ˡ⁾ is (n_{l+1},), a⁽ˡ⁾ is n_l × M
    a⁽ˡ⁺¹⁾ = f(z⁽ˡ⁺¹⁾)                     for the hidden layers l + 1 = 2 … L (relu'(0) = 0)

so the dimension n_l is the width of a⁽ˡ⁾ (n1 inputs, n_{L+1} outputs) and M the number of examples.
The last layer feeds the loss directly, with targets Y (n_{L+1} × M):

    mse:   ŷ = z⁽ᴸ⁺¹⁾,            R = Σ (ŷ − Y)² / (2M)
    xent:  ŷ = softmax(z⁽ᴸ⁺¹⁾) down each column, R = −Σ Y ⊙ log ŷ / M,  Y one-hot columns

Both give δ⁽ᴸ⁺¹⁾ = ∂R/∂z⁽ᴸ⁺¹⁾ = (ŷ − Y)/M, where seed 003's recursion starts.

The forward takes 0/1 masks over the examples (M) and the units of each layer so that draws of many
sizes share one compile: padded examples are left out of R and of M, padded units have zero weights
in and out (so nothing real sees f(0)), and padded logits are set to half the dtype's lowest number
before the softmax.
"""

from __future__ import annotations

SUMMARY = "L affine layers z(l+1) = W(l) a(l) + b(l), one example per column, MSE or softmax loss (seed 003)."
OPTIONS = ("activation", "layers", "loss")
_SUPERSCRIPT = str.maketrans("0123456789+-", "⁰¹²³⁴⁵⁶⁷⁸⁹⁺⁻")


def DIMS(options):
    L = options["layers"]
    dims = {"M": (1, 16), **{f"n{l}": (1, 8) for l in range(1, L + 2)}}
    if options["loss"] == "xent":
        # With one output class the softmax is constant and every gradient is zero: nothing to check.
        dims[f"n{L + 1}"] = (2, 8)
    return dims


def inputs(d):
    L = len(d) - 2
    return {"X": (d["n1"], d["M"]), "Y": (d[f"n{L + 1}"], d["M"])}


def params(d):
    L = len(d) - 2
    weights = {f"W{l}": (d[f"n{l + 1}"], d[f"n{l}"]) for l in range(1, L + 1)}
    return {**weights, **{f"b{l}": (d[f"n{l + 1}"],) for l in range(1, L + 1)}}


def sample(rng, d):
    """One-hot target columns for the softmax loss (any real targets do for MSE)."""
    L = len(d) - 2
    classes = d[f"n{L + 1}"]
    Y = (rng.integers(classes, size=d["M"])[None, :] == rng.permutation(classes)[:, None]).astype(float)
    return {"Y": Y}


def forward(X, Y, *, options, masks, **weights):
    import jax
    import jax.numpy as jnp

    from bncheck.models.bn_mlp import activate

    L = options["layers"]
    cols = masks["M"][None, :]
    M = masks["M"].sum()
    out = {"a1": X}
    a = X
    margins = []
    for l in range(1, L + 1):
        z = weights[f"W{l}"] @ a + weights[f"b{l}"][:, None]
        out[f"z{l + 1}"] = z
        if l == L:
            break
        a, da = activate(options["activation"], z)
        if options.get("grad_activation") == "identity":
            # Only the activation-derivative variant sets this: f'(z) left out of the δ recursion,
            # a's value kept.
            a = z + jax.lax.stop_gradient(a - z)
        out[f"a{l + 1}"], out[f"da{l + 1}"] = a, da
        real = masks[f"n{l + 1}"][:, None] * cols
        size = jnp.abs(z)
        margins.append(jnp.where(real > 0, size, jnp.inf).min() / jnp.maximum((real * size).max(), 1.0))
    if options["loss"] == "mse":
        yhat = z
        R = (cols * (yhat - Y) ** 2).sum() / (2 * M)
    else:
        # Set, not subtracted: a constant such as 1e30 is inf in float16, and inf times a mask's 0 is NaN.
        logits = jnp.where(masks[f"n{L + 1}"][:, None] > 0, z, jnp.finfo(z.dtype).min / 2)
        logp = logits - logits.max(axis=0)[None, :]
        logp = logp - jnp.log(jnp.exp(logp).sum(axis=0))[None, :]
        yhat = jnp.exp(logp)
        R = -(cols * Y * logp).sum() / M
    out["yhat"] = yhat
    if margins:
        out["kink_margin"] = jnp.stack(margins).min()
    return {"R": R, **out}


def OUTPUTS(options):
    L, act = options["layers"], options["activation"]
    fields = {"a1": "X, the input activations a(1) (n1, M)"}
    for l in range(2, L + 2):
        fields[f"z{l}"] = f"W{l - 1} a{l - 1} + b{l - 1}, the pre-activations z({l}) (n{l}, M)"
        if l <= L:
            fields[f"a{l}"] = f"{act}(z{l}) (n{l}, M)"
            fields[f"da{l}"] = f"{act}'(z{l}), relu'(0) = 0 (n{l}, M)"
    fields["yhat"] = (
        f"z{L + 1} (n{L + 1}, M); delta({L + 1}) = (yhat - Y)/M" if options["loss"] == "mse"
        else f"softmax of z{L + 1} down each column (n{L + 1}, M); delta({L + 1}) = (yhat - Y)/M"
    )
    if L > 1:
        fields["kink_margin"] = "min |z(l)| / max(max |z(l)|, 1) over the hidden layers: distance from relu's kink"
    return fields


def check_dims(dims, options) -> str | None:
    last = f"n{options['layers'] + 1}"
    if options["loss"] == "xent" and dims[last] < 2:
        return f"{last}={dims[last]} gives the softmax one class, so every gradient is zero (need {last} >= 2)"
    return None


def kink_field(options) -> str | None:
    return "kink_margin" if options["activation"] == "relu" and options["layers"] > 1 else None


def variants(options) -> dict:
    """The layers with f'(z) left out of the δ recursion (seed 003's ⊙ f′(z⁽ˡ⁾) forgotten)."""
    if options["layers"] == 1 or options["activation"] == "identity":
        return {}
    return {"activation-derivative": {**options, "grad_activation": "identity"}}


def _sup(l) -> str:
    return str(l).translate(_SUPERSCRIPT)


def shape_hint(check_name, got_shape, dims, options) -> str | None:
    """The dimension-compatibility rule of seed 003, written out for a wrong-shaped gradient."""
    kind, layer = check_name.removeprefix("grad_")[:1], check_name.removeprefix("grad_")[1:]
    if not check_name.startswith("grad_") or kind not in "Wb" or not layer.isdigit():
        return None
    l, M = int(layer), dims["M"]
    rows, cols = dims[f"n{l + 1}"], dims[f"n{l}"]
    delta = f"δ{_sup(l + 1)} ({rows}×{M})"
    got = "×".join(map(str, got_shape)) or "a scalar"
    if kind == "W":
        hint = f"{delta} · a{_sup(l)}ᵀ ({M}×{cols}) gives {rows}×{cols}, the shape of W{_sup(l)}; yours is {got}"
        if tuple(got_shape) == (cols, rows):
            hint += f", its transpose (a{_sup(l)} · δ{_sup(l + 1)}ᵀ)"
        return hint
    hint = f"{delta} · 1_M ({M}) gives ({rows},), the shape of b{_sup(l)}; yours is {got}"
    if tuple(got_shape) in ((rows, 1), (1, rows)):
        hint += f": sum δ{_sup(l + 1)} over its columns into a vector"
    return hint


DERIVATIONS = {"closed-form": "bncheck.derivations.mlp_closed_form"}
DEFAULT_DERIVATION = "closed-form"
