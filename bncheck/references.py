"""Every JAX program bncheck runs: autodiff references (jax.grad for gradients, jax.jacfwd for dense
Jacobians, jax.jvp for differentials, jax.jvp/jax.vjp products for matrix-free checks), the same under
a model's variants, central differences, and the rounding-noise recomputation behind the noise floor.

Each builder returns a function of one batch of draws of one (bucket) shape, `fn(arrays, masks,
vectors)` with a leading batch axis on everything, jitted once and vmapped over the draws; the engine
(bncheck.engine) is the only caller, and the only module that runs them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from bncheck.models import Model

# For small shapes XLA's compile time outweighs the references' run time: backend optimisation level
# 0 halves the compile (1.6 s -> 0.7 s of CPU at (64, 32, 16)) but doubles the run time of the
# elementwise work, which wins from about (256, 64, 64) up (bench/speed.py).
QUICK_COMPILE = {"xla_backend_optimization_level": 0}
# The passes a reference computation can run (build): "exact", the float64 references; "rough", the
# same computed in a lower precision (float32, or a bfloat16 or float16 run's own dtype: compare.ROUGH);
# "noisy", the float64 computation with every operation's result perturbed (with_rounding_noise). The
# last two measure how much rounding a draw's computation amplifies.
PASSES = ("exact", "rough", "noisy")
# Relative size of the perturbation of each operation's result in the "noisy" pass, and how many
# perturbed recomputations it runs. Small enough that no relu pre-activation outside the kink margin
# (compare.Tolerance.kink, 1e-8 of the largest in float64) can change sign.
NOISE = 2.0**-30
NOISE_SAMPLES = 2


@dataclass(frozen=True)
class Plan:
    """What to compute: gradient targets, (output, target) pairs for dense Jacobians and for JVPs."""

    grads: tuple[str, ...] = ()
    jacs: tuple[tuple[str, str], ...] = ()
    jvps: tuple[tuple[str, str], ...] = ()
    # (output, target) pairs whose Jacobian is checked matrix-free: products with probe vectors.
    products: tuple[tuple[str, str], ...] = ()
    # The forward fields to return; None returns them all.
    fields: tuple[str, ...] | None = None
    # Forward fields whose smallest and largest |entry| over the draw's real (unpadded) entries to
    # return: a kink test needs two numbers, and moving whole fields back is most of a redraw round.
    extremes: tuple[str, ...] = ()


def reference_program(model: Model, cfg: dict[str, Any], plan: Plan) -> Callable:
    """one(arrays, masks, vectors) -> {"fwd", "extremes", "grad", "jac", "jvp", "products"} for one draw.

    vectors[target] is (D, *shape), the JVP directions; for plan.products vectors["v:<target>"] and
    vectors["u:<output>"] are the probe vectors.
    """
    import jax

    axes = output_axes(model, cfg) if plan.extremes else {}

    def one(arrays, masks, vectors):
        def forward(**overrides):
            return model.forward(cfg, masks, **{**arrays, **overrides})

        record = forward()
        out: dict[str, Any] = {"fwd": {k: v for k, v in record.items() if plan.fields is None or k in plan.fields}}
        out["extremes"] = {f: _real_extremes(record[f], axes[f], masks) for f in plan.extremes}
        if plan.grads:
            out["grad"] = jax.grad(lambda sub: forward(**sub)["R"])({t: arrays[t] for t in plan.grads})
        out["jac"] = {
            f"{o}|{t}": jax.jacfwd(lambda v, o=o, t=t: forward(**{t: v})[o])(arrays[t]) for o, t in plan.jacs
        }
        out["jvp"] = {
            f"{o}|{t}": jax.vmap(
                lambda V, o=o, t=t: jax.jvp(lambda v: forward(**{t: v})[o], (arrays[t],), (V,))[1]
            )(vectors[t])
            for o, t in plan.jvps
        }
        out["products"] = {}
        for o, t in plan.products:
            def along(v, o=o, t=t):
                return forward(**{t: v})[o]

            _, pullback = jax.vjp(along, arrays[t])
            out["products"][f"{o}|{t}"] = {
                "Jv": jax.vmap(lambda V, f=along, t=t: jax.jvp(f, (arrays[t],), (V,))[1])(vectors[f"v:{t}"]),
                "uJ": jax.vmap(lambda U, p=pullback: p(U)[0])(vectors[f"u:{o}"]),
            }
        return out

    return one


def build(model: Model, cfg: dict[str, Any], plan: Plan, passes: tuple[str, ...] | None = None,
          optimize: bool = True, rough: str = "float32") -> Callable:
    """The batched, jitted reference program of `plan`.

    Without passes: batched(arrays, masks, vectors) -> reference_program's dict, with a batch axis.
    With passes: batched(arrays, masks, vectors, keys=None) -> {pass: that dict} for each pass named
    (see PASSES); "noisy" holds NOISE_SAMPLES recomputations on a second axis, its noise drawn from
    keys (one PRNG key a draw), which only that pass needs. The passes of one call share one compile and one transfer; "rough" runs
    in the dtype `rough`. Without optimize, XLA compiles quickly (QUICK_COMPILE) and the program runs
    slower.
    """
    return jit_batched(reference_program(model, cfg, plan), passes, {} if optimize else QUICK_COMPILE, rough)


# The numbers a summary of one value against its reference holds, in this order (compare.Summary).
SUMMARY = ("abs_err", "scale", "flat", "nonfinite", "first_nonfinite")


def derived_program(model: Model, cfg: dict[str, Any], checks: tuple, functions: dict[str, Callable],
                    dims: dict[str, int], dtype: str, optimize: bool = True) -> Callable:
    """batched(arrays, masks, vectors) -> {"summary", "spread", "got", "ref"}, each {check name: ...},
    for draws of one shape `dims` (unpadded: a user's function cannot be): the derivation's functions
    (traced by JAX) called on the ctx a derivation sees, beside their references, and compared there.

    checks holds (name, kind, target, output) for gradient and JVP checks. Per draw and check,
    "summary" is (rows, len(SUMMARY)), one row a JVP direction (one for a gradient), the numbers of
    compare.Summary; "got" and "ref" are (rows, *value shape), the values and float64 references;
    below float64, "spread" is (rows,), max|reference in the run's dtype − the float64 one|.
    """
    import jax
    import jax.numpy as jnp

    from bncheck.draws import Ctx

    plan = Plan(grads=tuple(sorted({t for _, kind, t, _ in checks if kind == "gradient"})),
                jvps=tuple(sorted({(o, t) for _, kind, t, o in checks if kind == "jvp"})))
    one = reference_program(model, cfg, plan)
    static = {**dims, **cfg}

    def summary(got, ref):
        if ref.size == 0:
            return jnp.zeros(len(SUMMARY))
        diff = jnp.abs(got.astype(jnp.float64) - ref).reshape(-1)
        flat = jnp.argmax(diff)  # the first nan where there is one, as NumPy's
        bad = ~jnp.isfinite(got).reshape(-1)
        numbers = (diff[flat], jnp.abs(ref).max(), flat, bad.sum(), jnp.argmax(bad))
        return jnp.stack([jnp.asarray(x, jnp.float64) for x in numbers])

    def per_draw(arrays, masks, vectors):
        exact = one(arrays, masks, vectors)
        low = None
        if dtype != "float64":
            low = one(*jax.tree_util.tree_map(lambda a: a.astype(dtype), (arrays, masks, vectors)))
        forward = (exact if low is None else low)["fwd"]
        fields = {**{n: a.astype(dtype) for n, a in arrays.items()}, **{n: v.astype(dtype) for n, v in forward.items()}}
        out: dict[str, dict] = {"summary": {}, "spread": {}, "got": {}, "ref": {}}
        for name, kind, target, output in checks:
            fn = functions[name]
            if kind == "gradient":
                got, ref = fn(Ctx({**fields, **static}))[None], exact["grad"][target][None]
                rough = low["grad"][target][None] if low else None
            else:
                V = vectors[target].astype(dtype)
                got = jax.vmap(lambda v, fn=fn: fn(Ctx({**fields, **static}), v))(V)
                ref = exact["jvp"][f"{output}|{target}"]
                rough = low["jvp"][f"{output}|{target}"] if low else None
            out["summary"][name] = jax.vmap(summary)(got, ref)
            out["got"][name], out["ref"][name] = got, ref
            if rough is not None:
                out["spread"][name] = jax.vmap(lambda r, q: jnp.abs(q.astype(jnp.float64) - r).max(initial=0.0))(ref, rough)
        return out

    return jax.jit(jax.vmap(per_draw), compiler_options={} if optimize else QUICK_COMPILE)


def _real_extremes(value, axes: tuple[str | int, ...], masks: dict):
    """(min, max) of |value| over the entries that are not padding (min is inf when there are none)."""
    import jax.numpy as jnp

    real = jnp.ones(value.shape, bool)
    for i, name in enumerate(axes):
        if isinstance(name, str):
            real = real & (masks[name] > 0).reshape([-1 if j == i else 1 for j in range(value.ndim)])
    size = jnp.abs(value)
    return jnp.where(real, size, jnp.inf).min(), jnp.where(real, size, 0.0).max()


def jit_batched(one: Callable, passes: tuple[str, ...] | None, options: dict[str, Any],
                rough: str = "float32") -> Callable:
    """jit(vmap(one)); with passes, {pass: the result} for each of PASSES named ("rough" in `rough`)."""
    import jax

    batched = jax.vmap(one)
    if passes is None:
        return jax.jit(batched, compiler_options=options)
    noisy = jax.vmap(with_rounding_noise(one, NOISE, NOISE_SAMPLES)) if "noisy" in passes else None

    def run(arrays, masks, vectors, keys=None):
        out = {}
        if "exact" in passes:
            out["exact"] = batched(arrays, masks, vectors)
        if "rough" in passes:
            out["rough"] = batched(*jax.tree_util.tree_map(lambda a: a.astype(rough), (arrays, masks, vectors)))
        if noisy is not None:
            out["noisy"] = noisy(keys, arrays, masks, vectors)
        return out

    return jax.jit(run, compiler_options=options)


# Primitives whose result is exact (no rounding): data movement, selection, sign and comparisons. Every
# other primitive with a floating-point result is perturbed by with_rounding_noise.
_EXACT = frozenset({
    "abs", "argmax", "argmin", "broadcast_in_dim", "ceil", "clamp", "concatenate", "convert_element_type", "copy",
    "copy_p", "dynamic_slice", "dynamic_update_slice", "eq", "expand_dims", "floor", "gather", "ge", "gt", "iota",
    "le", "lt", "max", "min", "ne", "neg", "pad", "reduce_max", "reduce_min", "reshape", "rev", "round",
    "select_n", "sign", "slice", "sort", "squeeze", "stop_gradient", "transpose",
})
# Call-like primitives whose body is inlined, so that the operations inside are perturbed too.
_CALLS = frozenset({
    "jit", "pjit", "closed_call", "core_call", "custom_jvp_call", "custom_vjp_call", "custom_vjp_call_jaxpr",
    "remat", "checkpoint",
})


def with_rounding_noise(fn: Callable, size: float, samples: int) -> Callable:
    """noisy(key, *args) -> fn(*args) recomputed `samples` times (stacked on a new leading axis), each
    time with every use of a rounded intermediate result multiplied by its own (1 + size·ξ), ξ uniform
    in [-1, 1] and independent per entry and per use.

    This is Monte Carlo arithmetic: how far the results move measures how much the computation
    amplifies the rounding of its intermediate results; unlike one recomputation in lower precision,
    whose deterministic rounding can cancel exactly where a result is structurally zero (batch norm at
    N = 2) or land on a lucky value. Each use of a value gets its own error, as it would in another
    algorithm that computes the value anew: a stable algorithm's exact reuse (in a softmax's backward
    pass, p - 1 and the sum of p - 1 cancel) must not hide the rounding that a derivation written the
    obvious way (yhat - Y from a rounded yhat) shows. Inputs, constants and the results of exact
    operations of exact values (data movement, 1 - mask) carry no error.
    """
    import jax
    import jax.numpy as jnp
    from jax.extend.core import ClosedJaxpr, Literal

    def noisy(key, *args):
        closed = jax.make_jaxpr(fn)(*args)
        shape = jax.tree_util.tree_structure(jax.eval_shape(fn, *args))
        leaves = jax.tree_util.tree_leaves(args)
        counter = iter(range(1 << 62))

        def perturb(value, key):
            if not hasattr(value, "dtype") or not jnp.issubdtype(value.dtype, jnp.floating):
                return value
            xi = jax.random.uniform(jax.random.fold_in(key, next(counter)), value.shape, value.dtype, -1.0, 1.0)
            return value * (1 + size * xi)

        def evaluate(jaxpr, consts, inputs, key):
            """The jaxpr's outputs, each as (value, rounded?), from inputs given the same way."""
            env = {}

            def read(v):
                return (v.val, False) if isinstance(v, Literal) else env[v]

            for var, value in zip(jaxpr.constvars, consts):
                env[var] = (value, False)
            for var, pair in zip(jaxpr.invars, inputs):
                env[var] = pair
            for eqn in jaxpr.eqns:
                pairs = [read(v) for v in eqn.invars]
                name = eqn.primitive.name
                body = eqn.params.get("jaxpr", eqn.params.get("call_jaxpr"))
                if name in _CALLS and body is not None:
                    inner, inner_consts = (body.jaxpr, body.consts) if isinstance(body, ClosedJaxpr) else (body, [])
                    outs = evaluate(inner, inner_consts, pairs, key)
                else:
                    exact = name in _EXACT
                    invals = [v if exact or not r else perturb(v, key) for v, r in pairs]
                    bound = eqn.primitive.get_bind_params(eqn.params)
                    # (subfuns, params) before jax 0.7, the params alone since.
                    subfuns, params = bound if isinstance(bound, tuple) else ((), bound)
                    values = eqn.primitive.bind(*subfuns, *invals, **params)
                    values = values if eqn.primitive.multiple_results else [values]
                    rounded = not exact or any(r for _, r in pairs)
                    outs = [(v, rounded) for v in values]
                for var, pair in zip(eqn.outvars, outs):
                    env[var] = pair
            return [read(v) for v in jaxpr.outvars]

        def once(key):
            outs = evaluate(closed.jaxpr, closed.consts, [(leaf, False) for leaf in leaves], key)
            # The results themselves are used once more, by the comparison.
            return jax.tree_util.tree_unflatten(shape, [perturb(v, key) if r else v for v, r in outs])

        return jax.vmap(once)(jax.random.split(key, samples))

    return noisy


def variants_program(model: Model, cfgs: dict[str, dict[str, Any]], plan: Plan, optimize: bool = True) -> Callable:
    """batched(arrays, masks, vectors) -> {key: reference_program's dict under cfgs[key]}: the model's
    own settings and each of its variants (Model.variants) in one compile, since compiles dominate."""
    import jax

    ones = {key: reference_program(model, cfg, plan) for key, cfg in cfgs.items()}
    return jax.jit(
        jax.vmap(lambda arrays, masks, vectors: {key: f(arrays, masks, vectors) for key, f in ones.items()}),
        compiler_options={} if optimize else QUICK_COMPILE,
    )


# Central differences (bncheck.fd): multiples of h, the quotients at h and at 2h; the float64 unit
# roundoff u, and the step h = FD_STEP · max(1, max|t|) / max|V| with FD_STEP = u^(1/3).
FD_STEPS = (1.0, -1.0, 2.0, -2.0)
_U64 = 2.0**-52
FD_STEP = _U64 ** (1 / 3)


def differences_program(model: Model, cfg: dict[str, Any], pairs: tuple[tuple[str, str, bool], ...],
                        kink: str | None) -> Callable:
    """batched(arrays, masks, vectors) -> {"o|t": (D_h, D_2h, crossed, noise)}, one row per direction.

    For each (output o, target t, along unit directions?) pair: the central difference quotient of o
    along every unit direction of t (or the draw's own JVP directions) at h and 2h, whether a perturbed
    forward moved the kink field across 0 (shaped like it), and u·max|o|/h, the quotient's rounding.
    """
    import jax
    import jax.numpy as jnp

    u, step = _U64, FD_STEP

    def one(arrays, masks, vectors):
        def forward(t, value):
            return model.forward(cfg, masks, **{**arrays, t: value})

        base = model.forward(cfg, masks, **arrays)
        out = {}
        for o, t, unit in pairs:
            x = arrays[t]
            V = jnp.eye(x.size, dtype=x.dtype).reshape(x.size, *x.shape) if unit else vectors[t]
            scale = jnp.maximum(1.0, jnp.abs(x).max())

            def quotient(v, o=o, t=t, x=x, scale=scale):
                h = step * scale / jnp.maximum(jnp.abs(v).max(), 1e-300)
                # One traced forward, vectorised over the four steps, keeps the compile small.
                records = jax.vmap(lambda s: forward(t, x + s * h * v))(jnp.array(FD_STEPS))
                d1 = (records[o][0] - records[o][1]) / (2 * h)
                d2 = (records[o][2] - records[o][3]) / (4 * h)
                # Where a perturbed forward puts the kink field on the other side of 0; cut to the draw's
                # real entries later, since padded ones (beta = 0 at a padded unit) sit on the kink.
                crossed = jnp.any((records[kink] > 0) != (base[kink] > 0)[None], axis=0) if kink else jnp.zeros((), bool)
                noise = u * jnp.abs(base[o]).max() / h
                return d1, d2, crossed, noise

            out[f"{o}|{t}"] = jax.vmap(quotient)(V)
        return out

    return jax.jit(jax.vmap(one))


def output_shapes_at(model: Model, cfg: dict[str, Any], dims: dict[str, int]) -> dict[str, tuple[int, ...]]:
    """The forward record's shapes at `dims`, from one trace (no compile, no FLOPs)."""
    import jax
    import numpy as np

    arrays = {
        name: jax.ShapeDtypeStruct(shape, np.float64)
        for name, shape in {**model.inputs(dims), **model.params(dims)}.items()
    }
    masks = {name: jax.ShapeDtypeStruct((size,), np.float64) for name, size in dims.items()}
    shapes = jax.eval_shape(lambda a, m: model.forward(cfg, m, **a), arrays, masks)
    return {name: tuple(s.shape) for name, s in shapes.items()}


def output_axes(model: Model, cfg: dict[str, Any]) -> dict[str, tuple[str | int, ...]]:
    """The forward record's shapes in dimension names, traced once at distinct probe sizes."""
    from bncheck.models import probe_dims, symbolic

    dims = probe_dims(model)
    return {name: symbolic(shape, dims) for name, shape in output_shapes_at(model, cfg, dims).items()}
