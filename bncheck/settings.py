"""Settings: defaults < TOML file (`--config`) < flags, validated up front into one frozen dataclass.

Every bound is checked here, before any draw, and a broken one raises `SettingsError` with a message
that names the field, the value and the bound, so the CLI can print it on one line.
"""

from __future__ import annotations

import itertools
import math
import os
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from bncheck.compare import TOLERANCES
from bncheck.errors import SettingsError
from bncheck.models import ACTIVATIONS, OPTION_DEFAULTS, Model, get_model

DTYPES = ("float64", "float32")
DEVICES = ("cpu", "gpu")
# autodiff: jax.grad / jax.jacfwd / jax.jvp alone; fd: central differences as well, on a few draws.
REFERENCES = ("autodiff", "fd")
LAYOUTS = ("fc", "conv")
LOSSES = ("mse", "xent")


@dataclass(frozen=True)
class Settings:
    model: str = "bn-mlp"
    activation: str = OPTION_DEFAULTS["activation"]
    ddof: int = OPTION_DEFAULTS["ddof"]
    eps: float = OPTION_DEFAULTS["eps"]
    outputs: int | None = None
    # Options of other built-in models (see `bncheck models`); each model reads only its own.
    layout: str = OPTION_DEFAULTS["layout"]
    layers: int = OPTION_DEFAULTS["layers"]
    loss: str = OPTION_DEFAULTS["loss"]
    stride: int = OPTION_DEFAULTS["stride"]
    padding: int = OPTION_DEFAULTS["padding"]
    trials: int = 200
    seed: int = 0
    # One fixed shape for every draw; None draws a shape per trial from `sweep`.
    shape: Mapping[str, int] | None = None
    # Inclusive [min, max] per named dimension of the model.
    sweep: Mapping[str, tuple[int, int]] = field(default_factory=dict)
    dtype: str = "float64"
    device: str = "cpu"
    rtol: float = TOLERANCES["float64"].rtol
    atol: float = TOLERANCES["float64"].atol
    require: tuple[str, ...] = ()
    max_jacobian_mb: float = 256.0
    # What a run may hold at once: draws stream through the references in chunks sized to it, and a
    # shape or file that would not fit is refused before anything is allocated.
    max_memory_mb: float = 4096.0
    # Seconds one call of a derivation function may take before its check fails (0: no limit).
    timeout: float = 60.0
    reference: str = "autodiff"
    json: str | None = None
    junit: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["shape"] = dict(self.shape) if self.shape is not None else None
        out["sweep"] = {name: list(bounds) for name, bounds in self.sweep.items()}
        out["require"] = list(self.require)
        return out

    def model_options(self, model: Model) -> dict[str, Any]:
        """The settings `model` reads (its forward's `options`)."""
        return {name: getattr(self, name) for name in model.options}

    def option_args(self, model: Model) -> list[str]:
        """The flags that reproduce this run's model settings, for replay commands."""
        args = [] if self.model == "bn-mlp" else ["--model", self.model]
        for name in model.options:
            args += [f"--{name}", str(getattr(self, name))]
        args += ["--dtype", self.dtype]
        if self.dtype != "float64" or self.rtol != TOLERANCES[self.dtype].rtol:
            args += ["--rtol", repr(self.rtol)]
        if self.atol != TOLERANCES[self.dtype].atol:
            args += ["--atol", repr(self.atol)]
        return args


# The keys a config file may hold at its top level, and what each must be.
_TYPES: dict[str, type] = {
    "model": str,
    "activation": str,
    "ddof": int,
    "eps": float,
    "outputs": int,
    "layout": str,
    "layers": int,
    "loss": str,
    "stride": int,
    "padding": int,
    "trials": int,
    "seed": int,
    "shape": str,
    "dtype": str,
    "device": str,
    "rtol": float,
    "atol": float,
    "require": str,
    "max_jacobian_mb": float,
    "max_memory_mb": float,
    "timeout": float,
    "json": str,
    "junit": str,
    "reference": str,
}


def parse_shape(text: str) -> dict[str, int]:
    """`"N=10,p1=7,p2=4"` -> `{"N": 10, "p1": 7, "p2": 4}`."""
    shape: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition("=")
        if not sep or not name.strip() or not value.strip().lstrip("-").isdigit():
            raise SettingsError(
                f"shape: cannot parse {part!r} in {text!r}; expected NAME=INT,... such as N=10,p1=7,p2=4,k=1"
            )
        shape[name.strip()] = int(value)
    if not shape:
        raise SettingsError(f"shape: {text!r} names no dimension; expected NAME=INT,... such as N=10,p1=7,p2=4")
    return shape


def _typed(source: str, key: str, value: Any) -> Any:
    want = _TYPES[key]
    if key == "shape" and isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in value.items())
    if key == "require" and isinstance(value, list) and all(isinstance(v, str) for v in value):
        return ",".join(value)
    if want is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, want) or isinstance(value, bool):
        kind = {str: "a string", int: "an integer", float: "a number"}[want]
        raise SettingsError(f"{source}: {key} must be {kind}, got {value!r}")
    return value


def _read_config(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """Returns (top-level settings, sweep ranges) from a TOML file, type-checked."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SettingsError(f"config: no such file: {path}") from None
    except OSError as err:
        raise SettingsError(f"config: cannot read {path}: {err.strerror}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise SettingsError(f"config: {path} is not valid TOML: {err}") from None
    source = f"config {path}"
    sweep = data.pop("sweep", {})
    if not isinstance(sweep, dict):
        raise SettingsError(f"{source}: [sweep] must be a table")
    top: dict[str, Any] = {}
    for key, value in data.items():
        if key not in _TYPES:
            raise SettingsError(f"{source}: unknown key {key!r}; known keys: {', '.join(_TYPES)}, [sweep]")
        top[key] = _typed(source, key, value)
    ranges: dict[str, Any] = {}
    for key, value in sweep.items():
        if key in ("trials", "seed"):
            if key in top:
                raise SettingsError(f"{source}: {key} is set both at the top level and in [sweep]")
            top[key] = _typed(source, key, value)
        else:
            ranges[key] = value
    return top, ranges


def _check_range(source: str, name: str, value: Any) -> tuple[int, int]:
    if (
        not isinstance(value, (list, tuple))
        or len(value) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    ):
        raise SettingsError(f"{source}: sweep range {name} must be [min, max] of two integers, got {value!r}")
    lo, hi = value
    if lo > hi:
        raise SettingsError(f"{source}: sweep range {name} = [{lo}, {hi}] is inverted (min > max)")
    if lo < 1:
        raise SettingsError(f"{source}: sweep range {name} = [{lo}, {hi}] must start at 1 or more")
    return lo, hi


def resolve(flags: Mapping[str, Any], config: str | Path | None = None) -> Settings:
    """Merges defaults, the config file and the flags given (None means not given), and validates."""
    values: dict[str, Any] = {}
    ranges: dict[str, Any] = {}
    if config is not None:
        values, ranges = _read_config(Path(config))
    values.update({key: value for key, value in flags.items() if value is not None})
    # First, before a model file is imported: its code may change the working folder.
    values["json"], values["junit"] = report_paths(values.get("json"), values.get("junit"), (config, values.get("model")))

    model = get_model(values.get("model", Settings.model), {**OPTION_DEFAULTS, **values})
    _check_options_apply(values, model)
    unknown = set(ranges) - set(model.dims)
    if unknown:
        raise SettingsError(
            f"config {config}: [sweep] names {', '.join(sorted(unknown))}, not a dimension of model {model.name} "
            f"(its dimensions: {', '.join(model.dims)})"
        )
    source = f"config {config}"
    sweep = {name: _check_range(source, name, ranges.get(name, bounds)) for name, bounds in model.dims.items()}

    shape = None
    if values.get("shape") is not None:
        shape = parse_shape(values["shape"])
        unknown = set(shape) - set(model.dims)
        if unknown:
            raise SettingsError(
                f"shape: {', '.join(sorted(unknown))} is not a dimension of model {model.name} "
                f"(its dimensions: {', '.join(model.dims)})"
            )
        missing = [name for name in model.dims if name not in shape and name not in model.dim_defaults]
        if missing:
            raise SettingsError(f"shape: missing {', '.join(missing)} (model {model.name} needs {', '.join(model.dims)})")
        for name, size in shape.items():
            if size < 1:
                raise SettingsError(f"shape: {name}={size} must be at least 1")
        shape = {name: shape.get(name, model.dim_defaults.get(name)) for name in model.dims}

    outputs = values.get("outputs")
    if outputs is not None:
        if "k" not in model.dims:
            raise SettingsError(f"outputs: model {model.name} has no output dimension k")
        if outputs < 1:
            raise SettingsError(f"outputs: must be at least 1, got {outputs}")
        sweep["k"] = (outputs, outputs)
        if shape is not None:
            shape["k"] = outputs

    dtype = values.get("dtype", Settings.dtype)
    if dtype not in DTYPES:
        raise SettingsError(f"dtype: unknown dtype {dtype!r}; choose one of {', '.join(DTYPES)}")
    values.setdefault("rtol", TOLERANCES[dtype].rtol)
    values.setdefault("atol", TOLERANCES[dtype].atol)

    require = values.get("require")
    values["require"] = tuple(filter(None, (r.strip() for r in require.split(",")))) if require else ()
    values["model"] = model.name
    values["shape"] = shape
    values["sweep"] = sweep
    settings = Settings(**values)
    _validate(settings, model)
    return settings


def report_paths(
    json: str | os.PathLike | None, junit: str | os.PathLike | None, inputs: Iterable[str | os.PathLike | None] = ()
) -> tuple[str | None, str | None]:
    """The report paths, checked and made absolute before any user code runs (a derivation that
    changes the working folder cannot move them), so that a path the sweep could not write fails
    before the sweep and not after it: each a file in a writable folder, not a folder, not a .py file
    nor one of `inputs` (the files being checked, which it would overwrite), not both the same file,
    not both standard output ("-"). None is no report."""
    paths = {"json": json, "junit": junit}
    for name, path in paths.items():
        if path is not None:
            paths[name] = _report_path(name, os.fspath(path), inputs)
    if paths["json"] == paths["junit"] == "-":
        raise SettingsError("json, junit: only one report can go to standard output (-); write the other to a file")
    if paths["json"] not in (None, "-") and paths["json"] == paths["junit"]:
        raise SettingsError(f"json, junit: both reports would be written to {paths['json']}; give two files")
    return paths["json"], paths["junit"]


def _report_path(name: str, path: str, inputs: Iterable[str | os.PathLike | None]) -> str:
    if path == "-":
        return path
    if not path:
        raise SettingsError(f"{name}: the path is empty; give a file, or - for standard output")
    try:
        target = Path(path).resolve()
        if target.is_dir():
            raise SettingsError(f"{name}: {path} is a folder; give a file in it")
        if not target.parent.is_dir():
            raise SettingsError(f"{name}: cannot write {path}: no such folder {target.parent}")
        if target.suffix == ".py" and target.exists():
            raise SettingsError(f"{name}: {path} is a Python file; a report would overwrite it")
        for given in filter(None, inputs):
            if _overwrites(target, Path(given)):
                raise SettingsError(f"{name}: {path} is {given}, a file being checked; a report would overwrite it")
        if target.exists() and not target.is_file():
            raise SettingsError(f"{name}: {path} is not a regular file (a pipe or a device); give a file")
        # Tried, not inferred from permission bits, which say yes to root on a read-only or virtual
        # file system (/proc): the file is opened for appending, and removed again if it was new.
        existed = target.exists()
        with open(target, "ab"):
            pass
        if not existed:
            target.unlink()
    except OSError as err:  # a name too long, a loop of links: the report could not be written either
        raise SettingsError(f"{name}: cannot write {path}: {err.strerror or err}") from None
    except ValueError as err:  # a NUL byte, which no file name holds
        raise SettingsError(f"{name}: {path!r} is no file name: {err}") from None
    return str(target)


def _overwrites(target: Path, source: Path) -> bool:
    """Whether writing `target` would overwrite `source`, or a file in it if it is a folder (a case or
    values file in csv)."""
    if not target.exists():
        return False
    if source.is_dir():
        return source.resolve() in target.parents
    return source.is_file() and source.samefile(target)


def _check_options_apply(values: Mapping[str, Any], model: Model) -> None:
    """An option set away from its default for a model that never reads it is a mistake to report:
    `--layout conv` on bn-mlp would otherwise be silently ignored."""
    for name in OPTION_DEFAULTS:
        if name in values and name not in model.options and values[name] != getattr(Settings, name):
            reads = f"it reads {', '.join(model.options)}" if model.options else "it has no options"
            raise SettingsError(f"{name}: model {model.name} has no option {name} ({reads})")


def _corners(sweep: Mapping[str, tuple[int, int]]) -> list[dict[str, int]]:
    """The corners of a sweep's box, the lowest draw first: a constraint such as a kernel fitting its
    input is monotone in each dimension, so it breaks at a corner if anywhere. Past 12 dimensions
    only the lowest draw is checked."""
    if len(sweep) > 12:
        return [{name: lo for name, (lo, _) in sweep.items()}]
    return [dict(zip(sweep, corner)) for corner in itertools.product(*sweep.values())]


def _validate(s: Settings, model: Model) -> None:
    if s.activation not in ACTIVATIONS:
        raise SettingsError(f"activation: unknown activation {s.activation!r}; choose one of {', '.join(ACTIVATIONS)}")
    if s.ddof not in (0, 1):
        raise SettingsError(f"ddof: must be 0 or 1, got {s.ddof}")
    for name, allowed in (("layout", LAYOUTS), ("loss", LOSSES)):
        if getattr(s, name) not in allowed:
            raise SettingsError(f"{name}: unknown {name} {getattr(s, name)!r}; choose one of {', '.join(allowed)}")
    for name, least in (("layers", 1), ("stride", 1), ("padding", 0)):
        if getattr(s, name) < least:
            raise SettingsError(f"{name}: must be at least {least}, got {getattr(s, name)}")
    if not math.isfinite(s.eps) or s.eps < 0:
        raise SettingsError(f"eps: must be a finite number >= 0, got {s.eps}")
    if s.trials < 1:
        raise SettingsError(f"trials: must be at least 1, got {s.trials}")
    if s.seed < 0:
        raise SettingsError(f"seed: must be >= 0, got {s.seed}")
    if s.reference not in REFERENCES:
        raise SettingsError(f"reference: unknown reference {s.reference!r}; choose one of {', '.join(REFERENCES)}")
    if s.device not in DEVICES:
        raise SettingsError(f"device: unknown device {s.device!r}; choose one of {', '.join(DEVICES)}")
    for name in ("rtol", "atol", "timeout"):
        value = getattr(s, name)
        if not math.isfinite(value) or value < 0:
            raise SettingsError(f"{name}: must be a finite number >= 0, got {value}")
    for name in ("max_jacobian_mb", "max_memory_mb"):
        value = getattr(s, name)
        if not (math.isfinite(value) and value > 0):
            raise SettingsError(f"{name}: must be a finite number > 0, got {value}")
    for dims in [dict(s.shape)] if s.shape is not None else _corners(s.sweep):
        problem = model.check_dims(dims, s.model_options(model))
        if problem:
            raise SettingsError(f"{'shape' if s.shape is not None else 'sweep'}: {problem}")
    known = set(model.checks) | set(model.targets())
    for token in s.require:
        if token != "all" and token not in known:
            raise SettingsError(
                f"require: unknown check {token!r}; use all, a parameter ({', '.join(model.targets())}) "
                f"or a function name ({', '.join(model.checks)})"
            )
