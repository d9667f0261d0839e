"""A backward pass as written (CONTRACT §6): a layer's forward and backward functions, checked against a
layer model (`bncheck verify-backward`, `bncheck.check_backward`).

People write backward passes as a course's `out, cache = f_forward(...)` and `grads = f_backward(dout,
cache)`, a layer class's methods, or a loss that returns `(loss, dx)`. Such a pair is turned into a
derivation of the layer model, as rules.py turns a custom rule into one, so that the sweep, the
comparison, the diagnosis and the report of `verify` apply unchanged:

- per draw, forward is called once and backward once, on fresh writable copies of the draw's arrays
  (course code writes into `dout`), in the user's shapes (--param-shapes); the checks of the draw read
  their values from those two calls: `grad_<name>` for each name of `wrt`, from backward's values in
  that order, and `forward`, forward's `out`. A raise fails every check that needed the call;
- the model is the layer model with one more input, a probe of zeros shaped like the layer's output
  field (Model.layer_output), and R' = R + sum(stop_gradient(output) * probe): R', every other
  gradient and every other array of a draw are the layer model's own, and ∂R'/∂probe is the layer's
  output, so `forward` is checked as a gradient, with its noise floors and diagnoses (an eps of the
  user's own changes the output as it changes the gradients).

The upstream gradient `dout` is the model's input of that name (R = sum(out * dout)); a model without
one is a loss (R is its output), and `dout` is 1.
"""

from __future__ import annotations

import ast
import builtins
import dataclasses
import difflib
import inspect
import linecache
import shlex
from dataclasses import dataclass
from pathlib import Path
from types import CodeType, ModuleType
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from bncheck.conventions import Convention, convention
from bncheck.errors import LoadError, SettingsError
from bncheck.loader import Derivation
from bncheck.models import Check, Model

UPSTREAM = "dout"
# The settings of verify that apply to a backward pass: every one but --require (every check of a pair
# is defined).
EXCLUDED = ("require",)


@dataclass(frozen=True)
class Pair:
    """A forward and a backward function, each a function of the names a draw gives it."""

    forward: Callable[[dict[str, Any]], Any]  # names -> out, or (out, cache, ...)
    backward: Callable[[dict[str, Any]], Any]  # names, dout and cache -> one gradient per name of wrt
    wrt: tuple[str, ...]
    name: str  # FILE.py, or the forward function's name
    file: str


@dataclass(frozen=True)
class Layer:
    """A layer model as a backward pass is checked against it (see the module docstring)."""

    model: Model  # with the probe input, R' and the checks forward, grad_<wrt>
    own: Model  # the layer model itself
    output: str  # the layer's output field
    probe: str  # the input whose gradient is that output
    upstream: str | None  # the upstream gradient's input, None for a loss
    conv: Convention | None
    dtype: str  # the run's: what the user's functions are given
    wrt: tuple[str, ...]  # the names backward returns gradients for, in its order

    def names(self, ctx) -> dict[str, Any]:
        """What forward sees of a draw: a fresh writable copy of each input and parameter in the user's
        shape, each dimension and each setting the model reads."""
        dims = {d: getattr(ctx, d) for d in self.own.dims}
        arrays = {n: np.array(getattr(ctx, n)) for n in self.own.targets()}
        if self.conv is not None:
            arrays = {n: self.conv.given(n, a, dims) for n, a in arrays.items()}
        return {**arrays, **dims, **{o: getattr(ctx, o) for o in self.own.options}}

    def model_shape(self, name: str, ctx) -> tuple[int, ...]:
        return tuple(np.shape(getattr(ctx, name)))


def wrt_checks(model: Model, wrt: Sequence[str] | str) -> tuple[str, ...]:
    """The names of wrt, each an input or parameter of the model, in order."""
    names = tuple(n.strip() for n in wrt.split(",")) if isinstance(wrt, str) else tuple(wrt)
    names = tuple(n for n in names if n)
    if not names:
        raise SettingsError("wrt: names no input or parameter; give the names backward returns gradients for, in "
                            "its order, such as x,gamma,beta")
    targets = model.targets()
    for name in names:
        if not isinstance(name, str) or name not in targets:
            close = difflib.get_close_matches(str(name), targets, n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            raise SettingsError(f"wrt: {name} is no input or parameter of model {model.name} (they are: "
                                f"{', '.join(targets)}){hint}")
    if len(set(names)) < len(names):
        raise SettingsError(f"wrt: a name is given twice in {', '.join(names)}")
    return names


def layer(model: Model, settings, names: Sequence[str] | str) -> Layer:
    """The layer model of a backward pass returning gradients for `names` (see the module docstring)."""
    from bncheck.engine import Engine

    if model.layer_output is None:
        raise SettingsError(
            f"model: {model.name} is no layer model: it names no layer output for a forward function's out to be "
            f"checked against; give a layer model (bn-layer, conv, ...) with --model, or a model file with LAYER_OUTPUT"
        )
    wrt = wrt_checks(model, names)
    output = model.layer_output
    upstream = UPSTREAM if UPSTREAM in model.targets() else None
    taken = set(model.targets()) | set(model.outputs) | set(model.dims) | set(model.options)
    probe = f"{output}_probe"
    while probe in taken:
        probe += "_"
    shapes = Engine(model, settings).output_shapes

    def inputs(d):
        return {**model.inputs(d), probe: shapes(dict(d))[output]}

    def forward(cfg, masks, **arrays):
        import jax
        import jax.numpy as jnp

        zeros = arrays.pop(probe)
        record = model.forward(cfg, masks, **arrays)
        return {**record, "R": record["R"] + jnp.sum(jax.lax.stop_gradient(record[output]) * zeros)}

    def sample(rng, d):
        own = model.sample(rng, d) if model.sample is not None else {}
        return {**own, probe: np.zeros(shapes(dict(d))[output])}

    checks = ("forward", *(f"grad_{n}" for n in wrt))
    wrapped = dataclasses.replace(model, inputs=inputs, forward=forward, sample=sample, checks=checks)
    return Layer(wrapped, model, output, probe, upstream, convention(settings.param_shapes, model), settings.dtype, wrt)


class _Failed:
    """A call of the user's that raised: the exception, raised again by each check that needs the call."""

    def __init__(self, err: BaseException):
        self.err, self.tb = err, err.__traceback__

    def throw(self):
        raise self.err.with_traceback(self.tb)


class _Calls:
    """forward and backward called once per draw, their values kept for the draw's checks. A draw is
    known by its ctx's arrays (each check gets its own ctx over the same arrays)."""

    def __init__(self, pair: Pair, at: Layer):
        self.pair, self.at = pair, at
        self._last: tuple[list, dict[str, Any]] | None = None

    def value(self, ctx, check: str) -> Any:
        fields = list(vars(ctx).values())
        if self._last is None or len(self._last[0]) != len(fields) or any(a is not b for a, b in zip(self._last[0], fields)):
            self._last = (fields, self._run(ctx))
        found = self._last[1][check]
        if isinstance(found, _Failed):
            found.throw()
        return found

    def _run(self, ctx) -> dict[str, Any]:
        pair, at = self.pair, self.at
        grads = [f"grad_{n}" for n in pair.wrt]
        names = at.names(ctx)
        try:
            value = pair.forward(names)
        except KeyboardInterrupt:
            raise
        except BaseException as err:  # noqa: BLE001 - the user's code; each check reports it
            return {name: _Failed(err) for name in ("forward", *grads)}
        out, cache = value[:2] if isinstance(value, tuple) and len(value) >= 2 else (value, None)
        if isinstance(out, (float, int, np.generic)) and not isinstance(out, (bool, np.bool_)):
            out = np.asarray(out, dtype=np.float64)  # a loss, as a number: a 0-d array, not a slip of shape
        # A loss has no upstream gradient: its dout is 1.
        dout = np.array(names[at.upstream]) if at.upstream is not None else np.array(1.0, dtype=at.dtype)
        try:
            returned = pair.backward({**names, "dout": dout, "cache": cache})
            values = _values(returned, pair.wrt)
        except KeyboardInterrupt:
            raise
        except BaseException as err:  # noqa: BLE001
            return {"forward": out, **{name: _Failed(err) for name in grads}}
        dims = {d: getattr(ctx, d) for d in at.own.dims}
        found: dict[str, Any] = {"forward": out}
        for name, grad in zip(pair.wrt, values):
            if at.conv is not None:
                grad = at.conv.returned(name, grad, at.model_shape(name, ctx), dims)
            found[f"grad_{name}"] = grad
        return found


class ReturnedError(Exception):
    """backward's value does not hold one gradient per name of wrt."""


def _values(returned: Any, wrt: tuple[str, ...]) -> list[Any]:
    """backward's value as one gradient per name of wrt: a tuple or list in wrt's order, a dict by name,
    or, for one name, the gradient itself."""
    if isinstance(returned, Mapping):
        missing = [n for n in wrt if n not in returned and f"d{n}" not in returned]
        if missing:
            raise ReturnedError(f"backward returned a dict without {', '.join(missing)} (its keys: "
                                f"{', '.join(map(str, returned))})")
        return [returned[n] if n in returned else returned[f"d{n}"] for n in wrt]
    if isinstance(returned, (tuple, list)) and (len(wrt) > 1 or isinstance(returned, tuple)):
        if len(returned) != len(wrt):
            raise ReturnedError(f"backward returned {len(returned)} values, but --wrt names {len(wrt)} "
                                f"({', '.join(wrt)}), one per value, in backward's order")
        return list(returned)
    if len(wrt) > 1:
        raise ReturnedError(f"backward returned one {type(returned).__name__}, but --wrt names {len(wrt)} "
                            f"({', '.join(wrt)}); return a tuple of their gradients in that order")
    return [returned]


def derivation(pair: Pair, at: Layer) -> Derivation:
    """The pair's side of each check: functions of ctx, as a derivation's are."""
    calls = _Calls(pair, at)

    def reading(check: str) -> Callable:
        return lambda ctx: calls.value(ctx, check)

    names = ("forward", *(f"grad_{n}" for n in pair.wrt))
    checks = {"forward": Check("forward", "gradient", at.probe)}
    checks.update({f"grad_{n}": at.own.check(f"grad_{n}") for n in pair.wrt})
    return Derivation(name=pair.name, file=pair.file, functions={n: reading(n) for n in names}, checks=checks)


# ---- the two forms: expressions over a user's module, and callables -----------------------------------


def expression(text: str, what: str) -> tuple[CodeType, set[str]]:
    """--forward or --backward compiled, and the names it reads. Its source is kept where tracebacks
    look for it, so a raise inside the expression shows it, under the flag's name."""
    where = f"--{what}"
    try:
        tree = ast.parse(text.strip(), where, mode="eval")
        code = compile(tree, where, "eval", dont_inherit=True)
    except (SyntaxError, ValueError) as err:
        raise SettingsError(f"{what}: {text!r} is no Python expression: {getattr(err, 'msg', None) or err}") from None
    linecache.cache[where] = (len(text), None, [text.strip() + "\n"], where)
    bound = {a.arg for node in ast.walk(tree) if isinstance(node, ast.Lambda)
             for a in (*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs, node.args.vararg, node.args.kwarg) if a}
    bound |= {n.id for node in ast.walk(tree) if isinstance(node, ast.comprehension)
              for n in ast.walk(node.target) if isinstance(n, ast.Name)}
    bound |= {node.target.id for node in ast.walk(tree) if isinstance(node, ast.NamedExpr)}
    read = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
    return code, read - bound


def from_expressions(path: Path, forward: str, backward: str, wrt: tuple[str, ...], at: Layer) -> Pair:
    """The pair that evaluates `forward` and `backward` with the user's module `path` (imported as it is)
    and a draw's names in scope. A name neither defines is a LoadError naming the file."""
    from bncheck.userfile import import_user_file

    forward_code, forward_reads = expression(forward, "forward")
    backward_code, backward_reads = expression(backward, "backward")
    module: ModuleType = import_user_file(path, "layer file", "bncheck_layer")
    own = dict(vars(module))
    ctx_names = set(at.own.targets()) | set(at.own.dims) | set(at.own.options)
    for what, reads, extra in (("forward", forward_reads, set()), ("backward", backward_reads, {"dout", "cache"})):
        known = set(own) | ctx_names | extra | set(dir(builtins))
        unknown = sorted(reads - known)
        if unknown:
            # A name either expression already reads is meant where it is: no hint for another.
            close = difflib.get_close_matches(unknown[0], sorted((set(own) | ctx_names | extra) - forward_reads - backward_reads), n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            raise LoadError(
                f"layer file: {path}: --{what} reads {', '.join(unknown)}, which neither {path.name} defines nor a draw "
                f"gives (its names: {', '.join(sorted(ctx_names | extra))}){hint}"
            )

    def evaluate(code: CodeType) -> Callable[[dict[str, Any]], Any]:
        # The draw's names over the module's: the expression reads the draw's x, whatever the module
        # calls x. A fresh dict per call, so that nothing an expression binds outlives its draw.
        return lambda names: eval(code, {**own, **names})  # noqa: S307 - the user named this code to run

    return Pair(evaluate(forward_code), evaluate(backward_code), wrt, str(path), str(path))


def from_callables(forward: Callable, backward: Callable, wrt: tuple[str, ...], at: Layer) -> Pair:
    """The pair of check_backward: forward called with the names its parameters ask for, backward with
    (dout, cache), or with dout alone when it takes one argument (a layer object keeps its own cache)."""
    for fn, what in ((forward, "forward"), (backward, "backward")):
        if not callable(fn):
            raise SettingsError(f"{what}: must be a function, got a {type(fn).__name__}")
    ctx_names = [*at.own.targets(), *at.own.dims, *at.own.options]
    try:
        params = inspect.signature(forward).parameters
    except (TypeError, ValueError):  # a builtin: its parameters cannot be read
        raise SettingsError("forward: its parameters cannot be read; wrap it, as in lambda x, gamma, beta: f(x, gamma, beta)") from None
    takes_all = any(p.kind is p.VAR_KEYWORD for p in params.values())
    asked = [p.name for p in params.values() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name in ctx_names]
    unknown = [p.name for p in params.values() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY, p.POSITIONAL_ONLY)
               and p.name not in ctx_names and p.default is p.empty]
    if unknown:
        close = difflib.get_close_matches(unknown[0], ctx_names, n=1)
        hint = f"; did you mean {close[0]}?" if close else ""
        raise SettingsError(f"forward: asks for {', '.join(unknown)}, which a draw of model {at.own.name} does not give "
                            f"(it gives: {', '.join(ctx_names)}){hint}")
    try:
        positional = [p for p in inspect.signature(backward).parameters.values()
                      if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)]
    except (TypeError, ValueError):
        positional = []
    alone = len(positional) == 1 and positional[0].kind is not positional[0].VAR_POSITIONAL

    def call_forward(names: dict[str, Any]) -> Any:
        return forward(**(names if takes_all else {n: names[n] for n in asked}))

    def call_backward(names: dict[str, Any]) -> Any:
        return backward(names["dout"]) if alone else backward(names["dout"], names["cache"])

    name = f"{_named(forward)}, {_named(backward)}"
    try:
        file = inspect.getsourcefile(forward) or ""
    except TypeError:
        file = ""
    return Pair(call_forward, call_backward, wrt, name, file)


# ---- the run and its report ------------------------------------------------------------------------


@dataclass(frozen=True)
class Spec:
    """How a run was asked for, for its replays: the expressions of verify-backward, or (in_python) the
    names of the functions given to check_backward."""

    forward: str
    backward: str
    wrt: tuple[str, ...]
    in_python: bool = False


def _replay(report, spec: Spec, settings, model: Model, at: dict[str, Any]) -> str:
    """The command (or the Python call) that checks the one draw `at` again, at the values of swept
    options it had."""
    settings = settings.at(at.get("options", {}))
    shape = ",".join(f"{k}={v}" for k, v in at["shape"].items())
    if spec.in_python:
        kwargs = {"model": settings.model, "shape": shape, "seed": at["seed"], "trials": 1,
                  **settings.model_options(model), "dtype": settings.dtype, "rtol": settings.rtol, "atol": settings.atol}
        if settings.param_shapes is not None:
            kwargs["param_shapes"] = settings.param_shapes
        rest = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
        return f"check_backward({spec.forward}, {spec.backward}, wrt={spec.wrt!r}, {rest})"
    args = ["bncheck", "verify-backward", report.derivation, "--forward", spec.forward, "--backward", spec.backward,
            "--wrt", ",".join(spec.wrt), "--shape", shape, "--seed", str(at["seed"]), "--trials", "1"]
    return shlex.join(args + settings.option_args(model))


def _presented(report, spec: Spec, at: Layer, settings):
    """The report in the pair's terms: the forward check against the layer's output, replays of
    verify-backward (or check_backward), the expressions among the settings."""
    report.settings["wrt"] = list(spec.wrt)
    if not spec.in_python:
        report.settings["forward"], report.settings["backward"] = spec.forward, spec.backward
    for c in report.checks:
        if c.replay is not None:
            c.replay = _replay(report, spec, settings, at.own, c.smallest or c.worst)
        if c.name == "forward":
            c.target = at.output
            named = f"{at.own.name}'s {at.output}"
            if c.references is not None:
                c.references = {named if key == c.reference else key: agrees for key, agrees in c.references.items()}
            c.reference = named
    return report


def verify_backward(
    files: Sequence[str | Path] | None,
    forward: str | Callable,
    backward: str | Callable,
    wrt: Sequence[str] | str,
    settings=None,
    *,
    config: str | Path | None = None,
    on_progress: Callable[[int, int], None] = lambda done, total: None,
    on_phase: Callable[[str], None] = lambda text: None,
    **flags: Any,
):
    """The Reports of a verify-backward run (one per file; `files` None: the callables of check_backward,
    one report), with the settings it ran under."""
    from bncheck.models import get_model
    from bncheck.pipeline import check_files
    from bncheck.report import Reports
    from bncheck.settings import resolve
    from bncheck.userfile import guarded, put_back

    excluded = [k for k in flags if k in EXCLUDED and flags[k] is not None]
    if excluded:
        raise SettingsError(f"{excluded[0]}: no setting of verify-backward, whose checks are all defined")
    with guarded():
        if settings is None:
            settings = resolve({k: v for k, v in flags.items() if k not in EXCLUDED}, config)
        at = layer(get_model(settings.model, settings.to_dict()), settings, wrt)
        names = at.wrt
        if files is None:
            spec = Spec(_named(forward), _named(backward), names, in_python=True)
            loaded: list[Derivation | str] = [derivation(from_callables(forward, backward, names, at), at)]
            labels = [loaded[0].name]
        else:
            spec = Spec(forward, backward, names)
            loaded, labels = [], [str(f) for f in files]
            for path in files:
                try:
                    loaded.append(derivation(from_expressions(Path(path), forward, backward, names, at), at))
                except LoadError as err:
                    loaded.append(str(err))
                put_back()
        reports = check_files(at.model, settings, loaded, labels, on_progress=on_progress, on_phase=on_phase,
                              model_for=lambda run: layer(get_model(run.model, run.to_dict()), run, names).model)
    return Reports([_presented(r, spec, at, settings) for r in reports]), settings


def _named(fn: Any) -> str:
    return getattr(fn, "__qualname__", None) or type(fn).__name__


def check_backward(forward: Callable, backward: Callable, *, wrt: Sequence[str] | str, config: str | Path | None = None,
                   **settings: Any):
    """Checks a layer's forward and backward functions against a layer model (CONTRACT §6):

        report = check_backward(lambda x, gamma, beta: batchnorm_forward(x, gamma, beta, {"eps": 1e-5}),
                                batchnorm_backward, model="bn-layer", wrt=("x", "gamma", "beta"))
        assert report.passed, report

    `forward` is called once per draw with the draw's names its parameters ask for (the model's inputs
    and parameters, dimensions and settings such as eps) and returns out, or (out, cache); `backward`
    is called once per draw with (dout, cache), or with dout alone when it takes one argument, and
    returns one gradient per name of `wrt`, in that order (or a dict by name). Settings are verify's
    (model, trials, seed, shape, eps, ddof, layout, param_shapes, dtype, rtol, ...). Returns the
    Report: a check `forward` (out against the model's output) and grad_<name> for each name of wrt.
    Raises BncheckError when the pair cannot be checked.
    """
    reports, _ = verify_backward(None, forward, backward, wrt, config=config, **settings)
    return reports.files[0]
