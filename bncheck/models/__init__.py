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
    CHECKS = ("grad_gamma", ...)  # the functions `--require all` asks for (else grad_ of each param);
                                  # `--require grads` asks for the grad_ ones
    OPTIONS = ("eps", "ddof")     # settings of the option table forward reads, as a keyword-only
                                  # `options` dict, with the run's values (load-time trace included)
    LAYER_OUTPUT = "y"            # the layer's output, for `verify-backward` (else the field `out`)

Built-ins add what only they need: a keyword-only `masks` argument (forward honours zero-padding, so draws of many
sizes share one compile), `DERIVATIONS`/`DEFAULT_DERIVATION`, `DIM_DEFAULTS`, `DIMS` as a function of
the options (and `OUTPUTS` likewise, for a number of layers), `DIM_MULTIPLES` (a dict, or a function
of the options, {dimension: m}: the sizes of that dimension the layer accepts are the multiples of m,
as group norm's C of its G groups; a sweep draws only those, its ranges narrowed to the multiples they
hold; `check_dims` still refuses the other sizes, for `--shape` and the smallest-case search),
`inputs(d, options)` and `params(d, options)` where a shape needs an option (a strided convolution's
output), and the hooks `check_dims`, `kink_field`, `variants`, `shape_hint` and `invariants`
described on `Model`.
Any model module may define `invariants(options)`: properties that every correct value of a check has,
whatever the reference, each a function of (ctx, got) that returns a sentence when `got` breaks it
(bn-mlp: at eps = 0, column j of dR/dG1 is orthogonal to column j of G1). Violations are warnings.

Nothing here imports JAX at import time: `bncheck models` and `--help` stay fast. A user's model file
is traced once when it is loaded (jax.eval_shape, no FLOPs) to find its outputs and to turn a broken
file into a one-line error.
"""

from __future__ import annotations

import importlib
import inspect
import math
import reprlib
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Mapping

from bncheck.errors import LoadError, SettingsError, as_exception, describe
from bncheck.jaxsettings import float64
from bncheck.options import MODEL_OPTIONS
from bncheck.userfile import import_user_file, user_frame

Shape = tuple[int, ...]
Dims = Mapping[str, int]



@dataclass(frozen=True)
class Check:
    """One function to verify: what it claims to compute."""

    name: str
    kind: str  # "gradient" (grad_), "jacobian" (dense jac_) or "jvp" (the differential form)
    target: str
    output: str | None = None  # the differentiated forward field, for jac_ and jvp_


# The words --require takes for groups of a model's functions (beside single names).
REQUIRE_GROUPS = ("grads", "all")


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
    # {dimension: m}: the dimension takes only multiples of m (DIM_MULTIPLES); sweeps draw only those.
    dim_multiples: Mapping[str, int] = field(default_factory=dict)
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
    # A layer's output field, for a backward pass written as forward and backward functions
    # (bncheck.backward): the user's forward output is checked against it. R = sum(out * dout) with
    # the upstream gradient an input `dout`, or, without one, R is the output itself (a loss).
    layer_output: str | None = None

    def _names(self, which: Callable[[Dims], dict[str, Shape]]) -> tuple[str, ...]:
        return tuple(which({name: lo for name, (lo, _) in self.dims.items()}))

    def check(self, name: str) -> Check | None:
        """The check a function named `name` claims: grad_<target>, jac_<output>_<target> or
        jvp_<output>_<target> for a target (input or parameter) and output (forward field) of this
        model; None when it names none."""
        targets = self.targets()
        if name.startswith("grad_"):
            target = name.removeprefix("grad_")
            return Check(name, "gradient", target) if target in targets else None
        for prefix, kind in (("jac_", "jacobian"), ("jvp_", "jvp")):
            if name.startswith(prefix):
                rest = name.removeprefix(prefix)
                for output in self.outputs:
                    target = rest.removeprefix(output + "_")
                    if rest.startswith(output + "_") and target in targets:
                        return Check(name, kind, target, output)
        return None

    def required(self, tokens: tuple[str, ...]) -> set[str]:
        """The functions --require asks for: `grads` every gradient this model lists, `all` every
        function it lists (jac_ and jvp_ forms too), an input or parameter its gradient, a name itself."""
        out: set[str] = set()
        for token in tokens:
            if token == "all":
                out |= set(self.checks)
            elif token == "grads":
                out |= {name for name in self.checks if name.startswith("grad_")}
            elif token in self.targets():
                out.add(f"grad_{token}")  # an input's gradient (grad_X) too, which CHECKS need not list
            else:
                out |= {name for name in self.checks if name == token}
        return out

    def targets(self) -> tuple[str, ...]:
        """Every array a `grad_` function may be written for: the inputs, then the parameters."""
        return self._names(self.inputs) + self._names(self.params)


def probe_dims(model: Model) -> dict[str, int]:
    """Distinct sizes, one per dimension, so that each axis of a traced shape names its dimension:
    primes from 101 on, as many as the model has dimensions (mlp has one per layer)."""
    sizes: list[int] = []
    n = 101
    while len(sizes) < len(model.dims):
        if all(n % p for p in range(3, math.isqrt(n) + 1, 2)):
            sizes.append(n)
        n += 2
    return dict(zip(model.dims, sizes))


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
    "layer-norm": "bncheck.models.layer_norm",
    "group-norm": "bncheck.models.group_norm",
    "max-pool": "bncheck.models.max_pool",
    "affine": "bncheck.models.affine",
    "relu": "bncheck.models.relu",
    "softmax-loss": "bncheck.models.softmax_loss",
}



# Model files loaded, by module, path given and the options they read (see get_model).
_LOADED: dict[tuple, Model] = {}
# Modules a caller imported and passed as the model (verify(model=module)), by the spec that names them.
_GIVEN: dict[str, ModuleType] = {}


def model_spec(model: str | ModuleType) -> str:
    """How settings name a model: a built-in's name or a path as it is; an imported module (which
    `verify(model=module)` takes, as it takes a module as the derivation) by its file's path, or by its
    name where it has no file. The module is kept, so get_model uses it as it is, never importing the
    file again."""
    if not isinstance(model, ModuleType):
        return model
    file = getattr(model, "__file__", None)
    spec = str(file) if file else f"<module {model.__name__}>"
    _GIVEN[spec] = model
    return spec


def model_names() -> tuple[str, ...]:
    return tuple(_BUILTIN)


def is_model_path(spec: str) -> bool:
    return spec.endswith(".py") or "/" in spec or "\\" in spec


def get_model(spec: str, options: Mapping[str, Any] | None = None) -> Model:
    """A built-in model by name, or a model file by path, with its options (None: the defaults).

    A path is imported: call this only with a path the user gave as a model file (`--model`,
    `verify(model=...)`), never with one read from a config, case or values file."""
    if spec in _GIVEN or is_model_path(spec):
        module = _GIVEN.get(spec) or import_user_file(Path(spec), "model", "bncheck_model", reuse=True)
        # Loaded once per file and options: the settings and the run ask for the same model, and
        # loading traces the file's forward.
        key = (module.__name__, spec, repr(sorted((k, v) for k, v in (options or {}).items() if k in MODEL_OPTIONS)))
        if key not in _LOADED:
            _LOADED[key] = from_module(module, name=spec, options=options, file=spec)
        return _LOADED[key]
    if spec not in _BUILTIN:
        raise SettingsError(
            f"model: unknown model {reprlib.repr(spec)}; choose one of {', '.join(_BUILTIN)}, or give a model file PATH.py"
        )
    return from_module(importlib.import_module(_BUILTIN[spec]), name=spec, options=options)


def _with_options(fn: Callable, cfg: dict[str, Any]) -> Callable[[Dims], dict[str, Shape]]:
    """inputs(d) or params(d); one written as f(d, options) gets the model's options bound."""
    return (lambda d: fn(d, cfg)) if len(inspect.signature(fn).parameters) > 1 else fn


# What each value a model module gives must be: a test returning why a value is not, or None.


def _shape_table(value: Any) -> str | None:
    # The sign is checked where the dims are a draw's (_shapes): `bncheck models` also traces at probe
    # sizes no draw has, where a kernel can be larger than its input.
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, tuple) for k, v in value.items()):
        return "a dict of name -> shape tuple"
    for name, shape in value.items():
        if not all(isinstance(n, int) and not isinstance(n, bool) for n in shape):
            return f"shapes of integer sizes (its {name} is {_shown(shape)})"
    return None


def _text_or_none(value: Any) -> str | None:
    return None if value is None or isinstance(value, str) else "a sentence (str) or None"


def _descriptions(value: Any) -> str | None:
    ok = isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())
    return None if ok else "a dict of field name -> description"


def _variant_table(value: Any) -> str | None:
    ok = isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, dict) for k, v in value.items())
    return None if ok else "a dict of diagnosis code -> options dict"


def _invariant_table(value: Any) -> str | None:
    ok = isinstance(value, dict) and all(isinstance(k, str) and callable(v) for k, v in value.items())
    return None if ok else "a dict of check name -> function(ctx, got)"


def _names(value: Any) -> str | None:
    ok = isinstance(value, (tuple, list)) and all(isinstance(v, str) for v in value)
    return None if ok else "a tuple of names"


def _shown(value: Any) -> str:
    try:
        text = repr(value)
    except Exception:  # the user's __repr__
        text = f"a {type(value).__name__}"
    return text if len(text) <= 80 else text[:80] + "…"


# A model file's optional hooks: attribute, how bncheck calls it, what it must return.
_HOOKS = (
    ("check_dims", "check_dims(d, options)", _text_or_none),
    ("kink_field", "kink_field(options)", _text_or_none),
    ("variants", "variants(options)", _variant_table),
    ("invariants", "invariants(options)", _invariant_table),
    ("shape_hint", "shape_hint(check, shape, d, options)", _text_or_none),
    ("sample", "sample(rng, d)", None),
)


def _raised(err: BaseException, file: str, where: str, what: str) -> LoadError:
    """The LoadError for a model file's `what` (a hook, its forward's trace) that raised `err`, at the
    file's own line where the traceback has one."""
    frame = user_frame(err, file)
    at = f" at {file}:{frame.lineno}" if frame else ""
    return LoadError(f"model: {where}: {what} raised {describe(err, at)}")


def _guarded(fn: Callable, hook: str, where: str, file: str, returns: Callable[[Any], str | None] | None) -> Callable:
    """A model file's hook that, whatever it raises (SystemExit included) or whatever wrong thing it
    returns, fails with one LoadError naming the file and the hook, wherever bncheck calls it."""
    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            value = fn(*args, **kwargs)
        except (KeyboardInterrupt, LoadError):
            raise
        except BaseException as err:
            raise _raised(err, file, where, hook) from err
        problem = returns(value) if returns is not None else None
        if problem:
            raise LoadError(f"model: {where}: {hook} must return {problem}, got {_shown(value)}")
        return value

    return call


def _guarded_hook(attr: str, fn: Callable, hook: str, where: str, file: str, returns) -> Callable:
    if attr == "sample":
        # The sweep turns whatever sample raises into one LoadError, with the shapes it checks; it
        # catches Exception, so a SystemExit is handed to it as one.
        def sample(rng: Any, dims: Dims) -> Any:
            try:
                return fn(rng, dims)
            except (KeyboardInterrupt, Exception):
                raise
            except BaseException as err:
                raise as_exception(err) from err

        return sample
    guarded = _guarded(fn, hook, where, file, returns)
    if attr != "invariants":
        return guarded
    return lambda cfg: {
        check: _guarded(inv, f"the invariant of {check}", where, file, _text_or_none)
        for check, inv in guarded(cfg).items()
    }


def _attribute(module: ModuleType, attr: str, default: Any, where: str, returns: Callable[[Any], str | None]) -> Any:
    value = getattr(module, attr, default)
    problem = returns(value)
    if problem:
        raise LoadError(f"model: {where}: {attr} must be {problem}, got {_shown(value)}")
    return value


def _shapes(fn: Callable[[Dims], dict[str, Shape]], which: str, dims: Dims, where: str) -> dict[str, Shape]:
    try:
        shapes = fn(dict(dims))
    except LoadError:
        raise
    except Exception as err:
        raise LoadError(f"model: {where}: {which}(d) raised {describe(err)}") from None
    problem = _shape_table(shapes) or next(
        (f"shapes of sizes >= 0 (its {n} is {s})" for n, s in shapes.items() if min(s, default=0) < 0), None
    )
    if problem:
        raise LoadError(f"model: {where}: {which}(d) must return {problem} at {dict(dims)}, got {_shown(shapes)}")
    return shapes


def from_module(
    module: ModuleType, name: str, options: Mapping[str, Any] | None = None, file: str | None = None
) -> Model:
    """The Model a module defines (see this package's docstring), checked for what it must define.
    A model file's functions are guarded: whatever one raises or wrongly returns, wherever bncheck
    calls it, is one LoadError naming the file and the function."""
    where = file or name
    missing = [attr for attr in ("DIMS", "inputs", "params", "forward") if not hasattr(module, attr)]
    if missing:
        raise LoadError(
            f"model: {where} does not define {', '.join(missing)} (a model file needs DIMS, inputs(d), "
            f"params(d) and forward(...) returning a dict with a scalar R)"
        )

    for attr in ("inputs", "params", "forward"):
        if not callable(getattr(module, attr)):
            raise LoadError(f"model: {where}: {attr} must be a function, got {_shown(getattr(module, attr))}")

    def guard(fn: Callable, call: str, returns: Callable[[Any], str | None] | None = None) -> Callable:
        return fn if file is None else _guarded(fn, call, where, file, returns)

    own = tuple(_attribute(module, "OPTIONS", (), where, lambda v: _names(v) or (
        None if set(v) <= set(MODEL_OPTIONS) else f"settings bncheck has ({', '.join(MODEL_OPTIONS)})")))
    cfg = {key: (options or {}).get(key, MODEL_OPTIONS.get(key)) for key in own}
    dims = guard(module.DIMS, "DIMS(options)")(cfg) if callable(module.DIMS) else module.DIMS
    _check_dims_table(dims, where)
    dims = {d: tuple(bounds) for d, bounds in dims.items()}
    try:
        takes = inspect.signature(module.forward).parameters
        inputs_fn, params_fn = _with_options(module.inputs, cfg), _with_options(module.params, cfg)
    except (TypeError, ValueError) as err:  # a callable whose signature cannot be read: a class, a C function
        raise LoadError(f"model: {where}: inputs, params and forward must be functions ({describe(err)})") from None
    inputs_fn, params_fn = guard(inputs_fn, "inputs(d)", _shape_table), guard(params_fn, "params(d)", _shape_table)
    raw = guard(module.forward, "forward")
    lowest = {d: lo for d, (lo, _) in dims.items()}
    inputs, params = _shapes(inputs_fn, "inputs", lowest, where), _shapes(params_fn, "params", lowest, where)

    def forward(cfg: dict[str, Any], masks: Mapping[str, Any], **arrays: Any) -> dict[str, Any]:
        extra = {}
        if "options" in takes:
            extra["options"] = cfg
        if "masks" in takes:
            extra["masks"] = masks
        return raw(**arrays, **extra)

    outputs = getattr(module, "OUTPUTS", {})
    if callable(outputs):
        outputs = guard(outputs, "OUTPUTS(options)")(cfg)
    if _descriptions(outputs):
        raise LoadError(f"model: {where}: OUTPUTS must be {_descriptions(outputs)}, got {_shown(outputs)}")
    if file is not None:
        outputs = trace_forward(forward, dims, inputs, params, outputs, where, file, cfg)
    _check_names(where, dims, own, inputs, params, outputs)

    hooks = {}
    for attr, call, returns in _HOOKS:
        fn = getattr(module, attr, None)
        if fn is None:
            continue
        if not callable(fn):
            raise LoadError(f"model: {where}: {attr} must be a function {call}, got {_shown(fn)}")
        hooks[attr] = fn if file is None else _guarded_hook(attr, fn, call, where, file, returns)
    derivations = _attribute(module, "DERIVATIONS", {}, where, lambda v: _descriptions(v) and "a dict of name -> module")
    default = _attribute(module, "DEFAULT_DERIVATION", None, where, lambda v: None if v is None or v in derivations
                         else f"None or a key of DERIVATIONS ({', '.join(derivations)})")
    dim_defaults = _attribute(module, "DIM_DEFAULTS", {}, where, lambda v: None if isinstance(v, dict) and all(
        k in dims and isinstance(n, int) and not isinstance(n, bool) and n >= 1 for k, n in v.items()
    ) else "a dict of dimension -> default size >= 1")
    multiples = getattr(module, "DIM_MULTIPLES", {})
    if callable(multiples):
        multiples = guard(multiples, "DIM_MULTIPLES(options)")(cfg)
    if not (isinstance(multiples, dict) and all(
        k in dims and isinstance(m, int) and not isinstance(m, bool) and m >= 1 for k, m in multiples.items()
    )):
        raise LoadError(
            f"model: {where}: DIM_MULTIPLES must map dimensions of DIMS to integers >= 1, got {_shown(multiples)}"
        )
    summary = _attribute(module, "SUMMARY", None, where, _text_or_none)
    layer_output = _attribute(module, "LAYER_OUTPUT", "out" if "out" in outputs else None, where, lambda v: None if (
        v is None or v in outputs) else f"None or a field forward returns ({', '.join(outputs)})")
    checks = tuple(_attribute(module, "CHECKS", (), where, _names))
    model = Model(
        name=name,
        summary=summary or (inspect.getdoc(module) or name).splitlines()[0],
        dims=dims,
        inputs=inputs_fn,
        params=params_fn,
        forward=forward,
        outputs=dict(outputs),
        checks=checks or tuple(f"grad_{p}" for p in params),
        derivations=dict(derivations),
        default_derivation=default,
        options=own,
        dim_defaults=dict(dim_defaults),
        dim_multiples=dict(multiples),
        paddable="masks" in takes,
        file=file,
        layer_output=layer_output,
        **hooks,
    )
    if file is not None:
        _check_claims(model, cfg, where)
    return model


def _check_claims(model: Model, cfg: dict[str, Any], where: str) -> None:
    """What a model file names must exist: the checks it lists, the field its kinks are read from."""
    unknown = [c for c in model.checks if model.check(c) is None]
    if unknown:
        raise LoadError(f"model: {where}: CHECKS names {', '.join(unknown)}, no function this model can check")
    kink = model.kink_field(cfg)
    if kink is not None and kink not in model.outputs:
        raise LoadError(f"model: {where}: kink_field(options) names {_shown(kink)}, not a field forward returns")
    # Called now, so that a broken one stops the run before the sweep rather than in a diagnosis.
    model.variants(cfg)
    model.invariants(cfg)


def _check_names(
    where: str, dims: Mapping, options: tuple[str, ...], inputs: Mapping, params: Mapping, outputs: Mapping
) -> None:
    """One name per ctx field: ctx holds the inputs, parameters, forward's fields, dimensions and
    settings side by side, so an output named like an input would silently replace it."""
    seen: dict[str, str] = {}
    for kind, names in (("a dimension", dims), ("a setting", options), ("an input", inputs), ("a parameter", params),
                        ("a field forward returns", outputs)):
        for field_name in names:
            if field_name in seen:
                raise LoadError(
                    f"model: {where}: {field_name} is both {seen[field_name]} and {kind}; each needs its own name"
                )
            seen[field_name] = kind


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
            f"with 1 <= min <= max, got {_shown(dims)}"
        )


def trace_forward(*args: Any) -> dict[str, str]:
    """_trace in float64, restored afterwards: a model's arrays are float64, and a caller's own JAX
    code keeps its settings."""
    with float64():
        return _trace(*args)


def _trace(
    forward: Callable, dims: Mapping[str, tuple[int, int]], inputs: dict[str, Shape], params: dict[str, Shape],
    described: Mapping[str, str], where: str, file: str, cfg: dict[str, Any],
) -> dict[str, str]:
    """Traces a model file's forward (and its gradient) at the smallest dims, with the options the run
    gives it: finds its outputs, with the descriptions OUTPUTS gives, and turns every way a model file
    can be broken into one LoadError."""
    import jax
    import numpy as np

    arrays = {n: jax.ShapeDtypeStruct(s, np.float64) for n, s in {**inputs, **params}.items()}
    masks = {d: jax.ShapeDtypeStruct((lo,), np.float64) for d, (lo, _) in dims.items()}

    def traced(what: str, fn: Callable) -> Any:
        try:
            return jax.eval_shape(fn, arrays, masks)
        except (KeyboardInterrupt, LoadError):
            raise
        except BaseException as err:
            raise _raised(err, file, where, what) from None

    out = traced("forward", lambda a, m: forward(cfg, m, **a))
    if not isinstance(out, dict) or "R" not in out:
        got = f"keys {sorted(map(str, out))}" if isinstance(out, dict) else type(out).__name__
        raise LoadError(f"model: {where}: forward must return a dict with the scalar loss under 'R', got {got}")
    fields = {}
    for field_name, value in out.items():
        if not isinstance(field_name, str) or not isinstance(value, jax.ShapeDtypeStruct):
            raise LoadError(
                f"model: {where}: forward must return a dict of name -> array, got {_shown(field_name)}: {_shown(value)}"
            )
        fields[field_name] = value
    if fields["R"].shape != ():
        raise LoadError(f"model: {where}: forward's R must be a scalar, got shape {fields['R'].shape}")
    traced("differentiating forward with jax.grad", jax.grad(lambda a, m: forward(cfg, m, **a)["R"]))
    absent = set(described) - set(fields)
    if absent:
        raise LoadError(f"model: {where}: OUTPUTS describes {', '.join(sorted(absent))}, which forward does not return")
    return {
        name: described.get(name, f"returned by forward, shape {tuple(s.shape)} at the smallest dims")
        for name, s in fields.items() if name != "R"
    }
