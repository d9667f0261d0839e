"""Models: a forward pass in jax.numpy with named dimensions, inputs and parameters.

There is one way in, for the built-ins under this package and for a user's `--model PATH.py` alike:
a module that defines, at module level,

    DIMS = {"N": (1, 16), "D": (2, 32)}      # named dimensions, default inclusive sweep ranges
    def inputs(d): return {"x": (d["N"], d["D"])}           # data arrays: name -> shape
    def params(d): return {"gamma": (d["D"],), "beta": (d["D"],)}
    def forward(x, gamma, beta): ... return {"R": loss, "y": y, ...}   # R, a scalar, is required

and optionally

    def sample(rng, d): ...       # {name: array} replacing the standard-normal draw of those arrays
    SUMMARY = "..."               # one line for `bncheck models` (else the docstring's first line)
    OUTPUTS = {"y": "..."}        # descriptions of forward's fields (else found by tracing forward)
    CHECKS = ("grad_gamma", ...)  # the functions `--require all` asks for (else grad_ of each param)

Built-ins add what only they need: `OPTIONS` (the settings forward reads, passed as a keyword-only
`options` dict), a keyword-only `masks` argument (forward honours zero-padding, so draws of many
sizes share one compile), `DERIVATIONS`/`DEFAULT_DERIVATION`, `DIM_DEFAULTS`, `DIMS` as a function of
the options (and `OUTPUTS` likewise, for a number of layers), `inputs(d, options)` and
`params(d, options)` where a shape needs an option (a strided convolution's output), and the hooks `check_dims`,
`kink_field`, `variants`, `shape_hint` and `invariants` described on `Model`.
Any model module may define `invariants(options)`: properties that every correct value of a check has,
whatever the reference, each a function of (ctx, got) that returns a sentence when `got` breaks it
(bn-mlp: at eps = 0, column j of dR/dG1 is orthogonal to column j of G1). Violations are warnings.

Nothing here imports JAX at import time: `bncheck models` and `--help` stay fast. A user's model file
is traced once when it is loaded (jax.eval_shape, no FLOPs) to find its outputs and to turn a broken
file into a one-line error.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Mapping

from bncheck.errors import LoadError, SettingsError

Shape = tuple[int, ...]
Dims = Mapping[str, int]

ACTIVATIONS = ("relu", "tanh", "sigmoid", "softplus", "identity")


@dataclass(frozen=True)
class Model:
    name: str
    summary: str
    # Named dimensions and their default inclusive sweep ranges.
    dims: Mapping[str, tuple[int, int]]
    inputs: Callable[[Dims], dict[str, Shape]]
    params: Callable[[Dims], dict[str, Shape]]
    # forward(cfg, masks, **arrays) -> {"R": scalar, field: array, ...}. `masks` maps a dimension to a
    # 0/1 vector over its padded length (see `paddable`); cfg holds the settings named in `options`.
    forward: Callable[..., dict[str, Any]]
    # The arrays forward returns besides R, each a ctx field, with a description for `bncheck models`.
    outputs: Mapping[str, str]
    checks: tuple[str, ...]
    derivations: Mapping[str, str] = field(default_factory=dict)
    default_derivation: str | None = None
    options: tuple[str, ...] = ()
    dim_defaults: Mapping[str, int] = field(default_factory=dict)
    # True when forward honours masks, so draws of different sizes can share one compiled reference by
    # zero-padding every array to a common bucket shape.
    paddable: bool = False
    # check_dims(dims, cfg) -> a sentence saying why these dims cannot be run, or None.
    check_dims: Callable[[Dims, dict[str, Any]], str | None] = lambda dims, cfg: None
    # kink_field(cfg) -> the forward field whose zeros are kinks of the activation, or None.
    kink_field: Callable[[dict[str, Any]], str | None] = lambda cfg: None
    # variants(cfg) -> {diagnosis code: cfg'}: the same model under a known wrong assumption (batch
    # statistics held constant, the other ddof). A failing check that matches one is named by it. A key
    # "code:detail" is one more variant for the same code (the mean alone held constant, say).
    variants: Callable[[dict[str, Any]], dict[str, dict[str, Any]]] = lambda cfg: {}
    # shape_hint(check_name, got_shape, dims, cfg) -> a sentence showing how the factors' dimensions
    # make the expected shape (seed 003's dimension-compatibility rule), appended to a `shape`
    # diagnosis; or None.
    shape_hint: Callable[[str, tuple[int, ...], Dims, dict[str, Any]], str | None] | None = None
    # invariants(cfg) -> {check name: invariant(ctx, got) -> a sentence saying what `got` breaks, or
    # None}: properties every correct value has (the columns of dR/dx of a batch-norm layer sum to zero).
    # The sweep calls each on every draw where that check's value could be compared (right shape, all
    # finite; for a jvp_ check, got is the list of values, one per direction, in ctx's dtype) and
    # reports a violation as a warning on the check; it never changes the verdict. Allow for the
    # rounding of a correct value: an invariant that holds exactly in theory holds to about the
    # dtype's eps times the size of the terms in practice.
    invariants: Callable[[dict[str, Any]], dict[str, Callable[[Any, Any], str | None]]] = lambda cfg: {}
    # sample(rng, dims) -> {name: array} for arrays that must not be standard normal, or None.
    sample: Callable[[Any, Dims], dict[str, Any]] | None = None
    # The model file a user gave with --model, None for a built-in.
    file: str | None = None

    def _names(self, which: Callable[[Dims], dict[str, Shape]]) -> tuple[str, ...]:
        return tuple(which({name: lo for name, (lo, _) in self.dims.items()}))

    def targets(self) -> tuple[str, ...]:
        """Every array a `grad_` function may be written for: the inputs, then the parameters."""
        return self._names(self.inputs) + self._names(self.params)


# Distinct sizes, one per dimension, so that each axis of a traced shape names its dimension.
_PROBE_SIZES = (101, 103, 107, 109, 113, 127, 131, 137, 139, 149, 151, 157, 163, 167, 173, 179)


def probe_dims(model: Model) -> dict[str, int]:
    return dict(zip(model.dims, _PROBE_SIZES))


def symbolic(shape: Shape, probe: Dims) -> tuple[str | int, ...]:
    """A shape measured at probe_dims, written in dimension names (other sizes stay numbers)."""
    names = {size: name for name, size in probe.items()}
    return tuple(names.get(size, size) for size in shape)


def concrete(shape: tuple[str | int, ...], dims: Dims) -> Shape:
    return tuple(dims[s] if isinstance(s, str) else s for s in shape)


_BUILTIN = {
    "bn-mlp": "bncheck.models.bn_mlp",
    "bn-layer": "bncheck.models.bn_layer",
    "centering": "bncheck.models.centering",
    "mlp": "bncheck.models.mlp",
    "conv": "bncheck.models.conv",
    "kron": "bncheck.models.kron",
}

# Settings a built-in model may read, with the defaults a model that does not read them keeps.
OPTION_DEFAULTS: dict[str, Any] = {
    "activation": "relu", "ddof": 0, "eps": 1e-5, "layout": "fc", "layers": 2, "loss": "mse", "stride": 1, "padding": 0,
}


def model_names() -> tuple[str, ...]:
    return tuple(_BUILTIN)


def is_model_path(spec: str) -> bool:
    return spec.endswith(".py") or "/" in spec or "\\" in spec


def get_model(spec: str, options: Mapping[str, Any] | None = None) -> Model:
    """A built-in model by name, or a model file by path, with its options (None: the defaults)."""
    if is_model_path(spec):
        module = _import_model_file(Path(spec))
        return from_module(module, name=spec, options=options, file=spec)
    if spec not in _BUILTIN:
        raise SettingsError(
            f"model: unknown model {spec!r}; choose one of {', '.join(_BUILTIN)}, or give a model file PATH.py"
        )
    return from_module(importlib.import_module(_BUILTIN[spec]), name=spec, options=options)


def _import_model_file(path: Path) -> ModuleType:
    from bncheck.loader import user_frame

    if not path.is_file():
        raise LoadError(f"model: no such file: {path}")
    digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:12]
    name = f"bncheck_model_{digest}"
    if name in sys.modules:
        return sys.modules[name]
    try:
        code = compile(path.read_text(encoding="utf-8"), str(path), "exec")
    except SyntaxError as err:
        raise LoadError(f"model: {path}:{err.lineno}: syntax error: {err.msg}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise LoadError(f"model: cannot read {path}: {err}") from None
    module = importlib.util.module_from_spec(importlib.util.spec_from_file_location(name, path))
    try:
        exec(code, module.__dict__)
    except Exception as err:
        frame = user_frame(err, str(path))
        where = f"{path}:{frame.lineno}" if frame else str(path)
        raise LoadError(f"model: importing {where} failed: {type(err).__name__}: {err}") from None
    sys.modules[name] = module
    return module


def _with_options(fn: Callable, cfg: dict[str, Any]) -> Callable[[Dims], dict[str, Shape]]:
    """inputs(d) or params(d); one written as f(d, options) gets the model's options bound."""
    return (lambda d: fn(d, cfg)) if len(inspect.signature(fn).parameters) > 1 else fn


def _shapes(fn: Callable[[Dims], dict[str, Shape]], which: str, dims: Dims, where: str) -> dict[str, Shape]:
    try:
        shapes = fn(dict(dims))
    except Exception as err:
        raise LoadError(f"model: {where}: {which}(d) raised {type(err).__name__}: {err}") from None
    if not isinstance(shapes, dict) or not all(
        isinstance(k, str) and isinstance(v, tuple) and all(isinstance(n, int) and n >= 0 for n in v)
        for k, v in shapes.items()
    ):
        raise LoadError(f"model: {where}: {which}(d) must return a dict of name -> shape tuple of ints, got {shapes!r}")
    return shapes


def from_module(
    module: ModuleType, name: str, options: Mapping[str, Any] | None = None, file: str | None = None
) -> Model:
    """The Model a module defines (see this package's docstring), checked for what it must define."""
    where = file or name
    missing = [attr for attr in ("DIMS", "inputs", "params", "forward") if not hasattr(module, attr)]
    if missing:
        raise LoadError(
            f"model: {where} does not define {', '.join(missing)} (a model file needs DIMS, inputs(d), "
            f"params(d) and forward(...) returning a dict with a scalar R)"
        )
    own = tuple(getattr(module, "OPTIONS", ()))
    cfg = {key: (options or {}).get(key, OPTION_DEFAULTS.get(key)) for key in own}
    dims = module.DIMS(cfg) if callable(module.DIMS) else module.DIMS
    _check_dims_table(dims, where)
    lowest = {d: lo for d, (lo, _) in dims.items()}
    inputs_fn, params_fn = _with_options(module.inputs, cfg), _with_options(module.params, cfg)
    inputs, params = _shapes(inputs_fn, "inputs", lowest, where), _shapes(params_fn, "params", lowest, where)
    clash = set(inputs) & set(params)
    if clash:
        raise LoadError(f"model: {where}: {', '.join(sorted(clash))} is both an input and a parameter")

    takes = inspect.signature(module.forward).parameters
    raw = module.forward

    def forward(cfg: dict[str, Any], masks: Mapping[str, Any], **arrays: Any) -> dict[str, Any]:
        extra = {}
        if "options" in takes:
            extra["options"] = cfg
        if "masks" in takes:
            extra["masks"] = masks
        return raw(**arrays, **extra)

    summary = getattr(module, "SUMMARY", None) or (inspect.getdoc(module) or name).splitlines()[0]
    model = Model(
        name=name,
        summary=summary,
        dims=dims,
        inputs=inputs_fn,
        params=params_fn,
        forward=forward,
        outputs=dict(module.OUTPUTS(cfg) if callable(getattr(module, "OUTPUTS", None)) else getattr(module, "OUTPUTS", {})),
        checks=tuple(getattr(module, "CHECKS", ())) or tuple(f"grad_{p}" for p in params),
        derivations=dict(getattr(module, "DERIVATIONS", {})),
        default_derivation=getattr(module, "DEFAULT_DERIVATION", None),
        options=own,
        dim_defaults=dict(getattr(module, "DIM_DEFAULTS", {})),
        paddable="masks" in takes,
        sample=getattr(module, "sample", None),
        shape_hint=getattr(module, "shape_hint", None),
        file=file,
        **{hook: getattr(module, hook) for hook in ("check_dims", "kink_field", "variants", "invariants") if hasattr(module, hook)},
    )
    if file is not None and not model.outputs:
        model = _traced(model, inputs, params, where)
    return model


def _check_dims_table(dims: Any, where: str) -> None:
    ok = isinstance(dims, dict) and dims and all(
        isinstance(k, str)
        and isinstance(v, (tuple, list))
        and len(v) == 2
        and all(isinstance(n, int) and not isinstance(n, bool) for n in v)
        and 1 <= v[0] <= v[1]
        for k, v in dims.items()
    )
    if not ok:
        raise LoadError(
            f"model: {where}: DIMS must map each dimension name to an inclusive range (min, max) "
            f"with 1 <= min <= max, got {dims!r}"
        )


def _traced(model: Model, inputs: dict[str, Shape], params: dict[str, Shape], where: str) -> Model:
    """Traces a model file's forward (and its gradient) at the smallest dims: finds the outputs and
    turns every way a model file can be broken into one LoadError."""
    import dataclasses

    import jax
    import numpy as np

    from bncheck.loader import user_frame

    jax.config.update("jax_enable_x64", True)
    arrays = {n: jax.ShapeDtypeStruct(s, np.float64) for n, s in {**inputs, **params}.items()}
    masks = {d: jax.ShapeDtypeStruct((lo,), np.float64) for d, (lo, _) in model.dims.items()}

    def fail(what: str, err: Exception) -> LoadError:
        frame = user_frame(err, model.file or "")
        at = f" at {model.file}:{frame.lineno}" if frame else ""
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        return LoadError(f"model: {where}: {what} raised {type(err).__name__}{at}: {first}")

    try:
        out = jax.eval_shape(lambda a, m: model.forward({}, m, **a), arrays, masks)
    except Exception as err:
        raise fail("forward", err) from None
    if not isinstance(out, dict) or "R" not in out:
        got = f"keys {sorted(out)}" if isinstance(out, dict) else type(out).__name__
        raise LoadError(f"model: {where}: forward must return a dict with the scalar loss under 'R', got {got}")
    if out["R"].shape != ():
        raise LoadError(f"model: {where}: forward's R must be a scalar, got shape {out['R'].shape}")
    try:
        jax.eval_shape(jax.grad(lambda a, m: model.forward({}, m, **a)["R"]), arrays, masks)
    except Exception as err:
        raise fail("differentiating forward with jax.grad", err) from None
    outputs = {name: f"returned by forward, shape {tuple(s.shape)} at the smallest dims" for name, s in out.items() if name != "R"}
    return dataclasses.replace(model, outputs=outputs)
