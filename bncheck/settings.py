"""Settings: defaults < TOML file (`--config`) < flags, validated up front into one frozen dataclass.

Every bound is checked here, before any draw, and a broken one raises `SettingsError` with a message
that names the field, the value and the bound, so the CLI can print it on one line.
"""

from __future__ import annotations

import itertools
import math
import operator
import os
import re
import reprlib
import tomllib
from dataclasses import asdict, field, make_dataclass, replace
from pathlib import Path
from typing import Any, Iterable, Mapping

from bncheck.compare import TOLERANCES
from bncheck.conventions import parse_param_shapes
from bncheck.errors import SettingsError, describe
from bncheck.models import REQUIRE_GROUPS, Model, get_model, is_model_path
from bncheck.options import BY_NAME, MAX_SIZE, MODEL_OPTIONS, OPTIONS, SWEEPABLE, Option

class _Methods:
    """What a Settings (built from the option table below) can say of itself."""

    def to_dict(self) -> dict[str, Any]:
        out = asdict(replace(self, by_value=()))
        del out["by_value"]
        out["shape"] = dict(self.shape) if self.shape is not None else None
        out["sweep"] = {name: list(bounds) for name, bounds in self.sweep.items()}
        out["swept"] = {name: list(bounds) for name, bounds in self.swept.items()}
        out["require"] = list(self.require)
        return out

    def at(self, values: Mapping[str, int]) -> Any:
        """The settings of the run at the swept options' `values` (a worst draw's `options`); these
        settings themselves where nothing is swept."""
        for run in self.by_value:
            if all(getattr(run, name) == value for name, value in values.items()):
                return run
        return self

    def model_options(self, model: Model) -> dict[str, Any]:
        """The settings `model` reads (its forward's `options`)."""
        return {name: getattr(self, name) for name in model.options}

    def option_args(self, model: Model) -> list[str]:
        """The flags that reproduce this run's model settings, for replay commands."""
        args = [] if self.model == BY_NAME["model"].default else ["--model", self.model]
        for name in model.options:
            args += [BY_NAME[name].flag, str(getattr(self, name))]
        if self.param_shapes is not None:
            args += ["--param-shapes", self.param_shapes]
        args += ["--dtype", self.dtype]
        if self.dtype != "float64" or self.rtol != TOLERANCES[self.dtype].rtol:
            args += ["--rtol", repr(self.rtol)]
        if self.atol != TOLERANCES[self.dtype].atol:
            args += ["--atol", repr(self.atol)]
        return args


def _field(option: Option) -> tuple[str, Any, Any]:
    if option.name == "shape":  # parsed: one fixed shape for every draw, None draws one per trial
        return "shape", Mapping[str, int] | None, field(default=None)
    if option.name == "require":
        return "require", tuple[str, ...], field(default=())
    return option.name, option.kind if option.default is not None else option.kind | None, field(default=option.default)


# Every option of the table; the sweep's inclusive [min, max] per named dimension of the model; the
# model options swept (`--padding 0:2`), each an inclusive [min, max], and the run of each combination
# of their values: these settings with the options fixed at it, and its own share of the trials and
# seeds (empty where nothing is swept; the fields above then hold the first combination's options and
# the whole run's trials, seed and the union of the sweep ranges).
Settings = make_dataclass(
    "Settings",
    [*map(_field, OPTIONS), ("sweep", Mapping[str, tuple[int, int]], field(default_factory=dict)),
     ("swept", Mapping[str, tuple[int, int]], field(default_factory=dict)), ("by_value", tuple, field(default=()))],
    bases=(_Methods,),
    frozen=True,
)
Settings.__module__ = __name__
Settings.__doc__ = "The resolved settings of a run: one field per option of bncheck.options, and the sweep."

# Each value of a swept option is a run of its own, compiling its own programs: a thousand of them
# would take hours, and a range that wide is a slip of the keyboard.
MAX_SWEPT_VALUES = 1000
# A config holds a few settings; a file past this size is something else.
CONFIG_BYTES = 2**20


def parse_shape(text: str) -> dict[str, int]:
    """`"N=10,p1=7,p2=4"` -> `{"N": 10, "p1": 7, "p2": 4}`."""
    shape: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition("=")
        if not sep or not name.strip() or not re.fullmatch(r"-?[0-9]{1,30}", value.strip()):
            raise SettingsError(
                f"shape: cannot parse {reprlib.repr(part)} in {reprlib.repr(text)}; expected NAME=INT,... such as "
                f"N=10,p1=7,p2=4,k=1"
            )
        if name.strip() in shape:
            raise SettingsError(f"shape: {name.strip()} is given twice in {reprlib.repr(text)}")
        shape[name.strip()] = int(value)
    if not shape:
        raise SettingsError(f"shape: {reprlib.repr(text)} names no dimension; expected NAME=INT,... such as N=10,p1=7,p2=4")
    return shape


def typed(source: str, key: str, value: Any) -> Any:
    want = BY_NAME[key].kind
    if key == "shape" and isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in value.items())
    if key == "require" and isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return ",".join(value)
    if want in (int, float) and hasattr(value, "__index__") and not isinstance(value, bool):
        value = operator.index(value)  # a NumPy integer from Python code is an integer too
        if want is float:
            try:
                return float(value)
            except OverflowError:
                raise SettingsError(f"{source}: {key} = {reprlib.repr(value)} is too large for a number") from None
    if not isinstance(value, want) or isinstance(value, bool):
        kind = {str: "a string", int: "an integer", float: "a number"}[want]
        raise SettingsError(f"{source}: {key} must be {kind}, got {reprlib.repr(value)}")
    return value


def _flag(key: str, value: Any) -> Any:
    """A setting given as a flag or a keyword (`verify(trials=50)`), type-checked as a config's are; a
    sweepable option's range (`--padding 0:2`, `verify(padding=(0, 2))`) as a tuple (min, max)."""
    if key not in BY_NAME:
        raise SettingsError(f"{key}: unknown setting; the settings are {', '.join(BY_NAME)}")
    if key in ("model", "json", "junit") and isinstance(value, os.PathLike):
        value = os.fspath(value)
    if key in SWEEPABLE and isinstance(value, str):  # from the command line, where every value is text
        text = value.strip()
        if re.fullmatch(r"-?[0-9]{1,30}", text):
            return typed("settings", key, int(text))
        if not re.fullmatch(r"-?[0-9]{1,30}\s*:\s*-?[0-9]{1,30}", text):
            raise SettingsError(f"{key}: cannot parse {reprlib.repr(value)}; give an integer, or a range LO:HI such as 0:2")
        value = [int(part) for part in text.split(":")]
    if key in SWEEPABLE and isinstance(value, (list, tuple)):
        return _option_range("", key, value)
    return typed("settings", key, value)


def _option_range(source: str, name: str, value: Any) -> tuple[int, int]:
    """A swept option's inclusive range (min, max), each end within the option's domain."""
    where = f"{source}: [sweep] {name}" if source else name
    if (
        not isinstance(value, (list, tuple))
        or len(value) != 2
        or not all(hasattr(v, "__index__") and not isinstance(v, bool) for v in value)
    ):
        raise SettingsError(f"{where}: a range must be [min, max] of two integers, got {reprlib.repr(value)}")
    lo, hi = map(operator.index, value)
    if lo > hi:
        raise SettingsError(f"{where}: the range {lo}:{hi} is inverted (min > max)")
    for end in (lo, hi):
        problem = BY_NAME[name].problem(end)
        if problem:
            raise SettingsError(f"{where}: {problem} (in the range {lo}:{hi})")
    return lo, hi


def _read_config(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """Returns (top-level settings, sweep ranges) from a TOML file, type-checked."""
    try:
        if path.is_fifo():  # read for ever, waiting for a writer
            raise SettingsError(f"config: {path} is a pipe, not a file")
        with path.open("rb") as fh:
            raw = fh.read(CONFIG_BYTES + 1)  # bounded: /dev/zero is a file name too
        text = raw.decode("utf-8")
    except FileNotFoundError:
        raise SettingsError(f"config: no such file: {path}") from None
    except OSError as err:
        raise SettingsError(f"config: cannot read {path}: {err.strerror}") from None
    except UnicodeDecodeError as err:
        raise SettingsError(f"config: {path} is not a TOML file: byte {err.start} is not UTF-8 text") from None
    if len(raw) > CONFIG_BYTES:
        raise SettingsError(f"config: {path} is larger than {CONFIG_BYTES // 2**20} MB, which no config is")
    try:
        data = tomllib.loads(text)
    except (ValueError, RecursionError) as err:  # TOMLDecodeError, an integer of 5,000 digits, [[[[... nested deep
        raise SettingsError(f"config: {path} is not valid TOML: {describe(err)}") from None
    source = f"config {path}"
    sweep = data.pop("sweep", {})
    if not isinstance(sweep, dict):
        raise SettingsError(f"{source}: [sweep] must be a table")
    top: dict[str, Any] = {}
    for key, value in data.items():
        if key not in BY_NAME:
            raise SettingsError(f"{source}: unknown key {reprlib.repr(key)}; known keys: {', '.join(BY_NAME)}, [sweep]")
        top[key] = typed(source, key, value)
    if is_model_path(top.get("model", "")):
        # Nothing read from a config, case or values file is ever imported or run.
        raise SettingsError(
            f"{source}: model = {top['model']!r} names a model file, and a config never does: name model "
            f"files on the command line (--model {top['model']}) or in Python (verify(model=...))"
        )
    ranges: dict[str, Any] = {}
    for key, value in sweep.items():
        if key in (*SWEEPABLE, "trials", "seed") and key in top:
            raise SettingsError(f"{source}: {key} is set both at the top level and in [sweep]")
        if key in SWEEPABLE:
            ranges[key] = _option_range(source, key, value)
        elif key in ("trials", "seed"):
            top[key] = typed(source, key, value)
        else:
            ranges[key] = value
    return top, ranges


def _check_range(source: str, name: str, value: Any) -> tuple[int, int]:
    if (
        not isinstance(value, (list, tuple))
        or len(value) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    ):
        raise SettingsError(f"{source}: sweep range {name} must be [min, max] of two integers, got {reprlib.repr(value)}")
    lo, hi = value
    if lo > hi:
        raise SettingsError(f"{source}: sweep range {name} = [{lo}, {hi}] is inverted (min > max)")
    if lo < 1:
        raise SettingsError(f"{source}: sweep range {name} = [{lo}, {hi}] must start at 1 or more")
    if hi > MAX_SIZE:
        raise SettingsError(f"{source}: sweep range {name} = [{lo}, {hi}] must end at {MAX_SIZE} or less")
    return lo, hi


def resolve(flags: Mapping[str, Any], config: str | Path | None = None) -> Settings:
    """Merges defaults, the config file and the flags given (None means not given), and validates."""
    values: dict[str, Any] = {}
    ranges: dict[str, Any] = {}
    if config is not None:
        values, ranges = _read_config(Path(config))
    swept = {name: ranges.pop(name) for name in SWEEPABLE if name in ranges}
    for key, value in flags.items():
        if value is not None:
            given = _flag(key, value)
            # A flag overrides the config, a value its range and a range its value.
            target, other = (swept, values) if isinstance(given, tuple) else (values, swept)
            target[key] = given
            other.pop(key, None)
    for name, (lo, hi) in list(swept.items()):
        if lo == hi:
            values[name] = swept.pop(name)[0]
    if swept:
        return _swept(values, ranges, config, swept)
    return _resolved(values, ranges, config)


def _swept(values: dict[str, Any], ranges: dict[str, Any], config: str | Path | None,
           swept: dict[str, tuple[int, int]]) -> Settings:
    """The settings of a run that sweeps model options: each combination of their values resolved as a
    run of its own, with its share of the trials and the next seeds, so that no two draws share one."""
    shown = ", ".join(f"{name} {lo}:{hi}" for name, (lo, hi) in swept.items())
    count = math.prod(hi - lo + 1 for lo, hi in swept.values())
    trials, seed = values.get("trials", Settings.trials), values.get("seed", Settings.seed)
    if count > MAX_SWEPT_VALUES:
        raise SettingsError(f"{shown}: {count:,} combinations of values to sweep, past the {MAX_SWEPT_VALUES:,} a run "
                            f"takes (each value is a run of its own, with its own compiles); give narrower ranges")
    if count > trials:
        raise SettingsError(f"trials: {trials} draws cannot cover the {count} values of the swept {shown}; "
                            f"give --trials {count} or more, or a narrower range")
    combos = [dict(zip(swept, c)) for c in itertools.product(*(range(lo, hi + 1) for lo, hi in swept.values()))]
    _check_domains(values)
    values["json"], values["junit"] = report_paths(values.get("json"), values.get("junit"), (config, values.get("model")))
    model = get_model(values.get("model", Settings.model), {**MODEL_OPTIONS, **values, **combos[0]})
    for name in swept:
        if name not in model.options:
            reads = f"it reads {', '.join(model.options)}" if model.options else "it has no options"
            raise SettingsError(f"{name}: model {model.name} has no option {name} to sweep ({reads})")
    runs, start = [], seed
    for i, combo in enumerate(combos):
        share = trials // len(combos) + (i < trials % len(combos))
        try:
            runs.append(_resolved({**values, **combo, "trials": share, "seed": start}, ranges, config))
        except SettingsError as err:
            at = ", ".join(f"{name} {value}" for name, value in combo.items())
            raise SettingsError(f"{at} (of the swept {shown}): {err}") from None
        start += share
    hull = {name: (min(r.sweep[name][0] for r in runs), max(r.sweep[name][1] for r in runs)) for name in runs[0].sweep}
    return replace(runs[0], trials=trials, seed=seed, sweep=hull, swept=swept, by_value=tuple(runs))


def _resolved(values: dict[str, Any], ranges: dict[str, Any], config: str | Path | None) -> Settings:
    """The settings of `values` (from the config and the flags) and the config's sweep `ranges`, validated."""
    _check_domains(values)  # before a model is built: conv divides by its stride
    # Before a model file is imported: its code may change the working folder.
    values["json"], values["junit"] = report_paths(values.get("json"), values.get("junit"), (config, values.get("model")))

    model = get_model(values.get("model", Settings.model), {**MODEL_OPTIONS, **values})
    _check_options_apply(values, model)
    unknown = set(ranges) - set(model.dims)
    if unknown:
        raise SettingsError(
            f"config {config}: [sweep] names {', '.join(sorted(unknown))}, not a dimension of model {model.name} "
            f"(its dimensions: {', '.join(model.dims)})"
        )
    sweep = {
        name: _check_range(f"config {config}" if name in ranges else f"model {model.name}: DIMS", name, ranges.get(name, bounds))
        for name, bounds in model.dims.items()
    }
    sweep = {name: _multiples_in(name, bounds, model) for name, bounds in sweep.items()}

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
            if not 1 <= size <= MAX_SIZE:
                raise SettingsError(f"shape: {name}={size} must be between 1 and {MAX_SIZE}")
        shape = {name: shape.get(name, model.dim_defaults.get(name)) for name in model.dims}

    outputs = values.get("outputs")
    if outputs is not None:
        if "k" not in model.dims:
            raise SettingsError(f"outputs: model {model.name} has no output dimension k")
        sweep["k"] = (outputs, outputs)
        if shape is not None:
            shape["k"] = outputs

    dtype = values.get("dtype", Settings.dtype)
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
        if target.is_fifo() or target.is_socket():
            # Opening a pipe for writing waits for a reader, forever; a device (/dev/null) is fine.
            raise SettingsError(f"{name}: {path} is a pipe or a socket; give a file")
        # Tried, not inferred from permission bits, which say yes to root on a read-only or virtual
        # file system (/proc): the file is opened for appending, and removed again if it was new.
        existed = target.exists()
        with open(target, "ab"):
            pass
        if not existed:
            target.unlink()
    except (OSError, RuntimeError) as err:  # a name too long, a loop of links (RuntimeError in 3.11's resolve)
        raise SettingsError(f"{name}: cannot write {path}: {getattr(err, 'strerror', None) or err}") from None
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
    for name in MODEL_OPTIONS:
        if name in values and name not in model.options and values[name] != getattr(Settings, name):
            reads = f"it reads {', '.join(model.options)}" if model.options else "it has no options"
            raise SettingsError(f"{name}: model {model.name} has no option {name} ({reads})")


def _multiples_in(name: str, bounds: tuple[int, int], model: Model) -> tuple[int, int]:
    """A sweep range narrowed to the sizes the model accepts: the multiples of its DIM_MULTIPLES."""
    step = model.dim_multiples.get(name, 1)
    lo, hi = bounds
    first, last = -(-lo // step) * step, hi // step * step
    if first > last:
        raise SettingsError(
            f"sweep: {name} = [{lo}, {hi}] holds no multiple of {step}, and model {model.name} takes {name} "
            f"only in multiples of {step}"
        )
    return first, last


def _corners(sweep: Mapping[str, tuple[int, int]]) -> list[dict[str, int]]:
    """The corners of a sweep's box, the lowest draw first: a constraint such as a kernel fitting its
    input is monotone in each dimension, so it breaks at a corner if anywhere. Past 12 dimensions
    only the lowest draw is checked."""
    if len(sweep) > 12:
        return [{name: lo for name, (lo, _) in sweep.items()}]
    return [dict(zip(sweep, corner)) for corner in itertools.product(*sweep.values())]


def checked(name: str, value: Any) -> Any:
    """A setting's value within its domain (bncheck.options), else a SettingsError naming the bound:
    for what is checked before the settings are resolved (a case's memory budget, say)."""
    problem = BY_NAME[name].problem(value)
    if problem:
        raise SettingsError(f"{name}: {problem}")
    return value


def _check_domains(values: Mapping[str, Any]) -> None:
    """Each setting within its own domain (bncheck.options), before anything is built from it: conv
    divides by its stride."""
    for name, value in values.items():
        problem = BY_NAME[name].problem(value) if value is not None else None
        if problem:
            raise SettingsError(f"{name}: {problem}")
    seed, trials = values.get("seed", Settings.seed), values.get("trials", Settings.trials)
    if seed + trials >= 2**63:
        # Draw t has seed + t, an unsigned 64-bit seed of NumPy's generator in every replay.
        raise SettingsError(f"seed: seed + trials must stay below 2**63, got seed {seed} and trials {trials}")
    _check_processes(values)


def _check_processes(values: Mapping[str, Any]) -> None:
    """--processes, --process-id and --coordinator: the last two only with the first, and both with it
    past one process (each process must know its number and where to find the others)."""
    processes, index, coordinator = values.get("processes"), values.get("process_id"), values.get("coordinator")
    if processes is None:
        for name, value in (("process_id", index), ("coordinator", coordinator)):
            if value is not None:
                raise SettingsError(f"{name}: {BY_NAME[name].flag} is for a run over several processes; give "
                                    f"--processes N with it, or leave it out")
        return
    if processes > 1 and (index is None or coordinator is None):
        missing = " and ".join(text for text, value in (
            (f"--process-id (this process's number, 0 to {processes - 1})", index),
            ("--coordinator HOST:PORT (where process 0 listens)", coordinator)) if value is None)
        raise SettingsError(f"processes: a run over {processes} processes needs {missing}")
    if index is not None and index >= processes:
        raise SettingsError(f"process_id: must be below --processes {processes} (0 to {processes - 1}), got {index}")
    if coordinator is not None:
        found = re.fullmatch(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+):([0-9]{1,5})", coordinator.strip())
        if found is None or not 0 < int(found.group(2)) < 2**16:
            raise SettingsError(f"coordinator: expected HOST:PORT, such as 10.0.0.1:4321 or localhost:4321, "
                                f"got {reprlib.repr(coordinator)}")


def _validate(s: Settings, model: Model) -> None:
    largest = dict(s.shape) if s.shape is not None else {name: hi for name, (_, hi) in s.sweep.items()}
    if "padding" in model.options and {"kh", "kw"} <= set(largest):
        # A padding as wide as the kernel only adds output entries that see nothing but zeros: past
        # it, shapes grow without checking anything more.
        kernel = max(largest["kh"], largest["kw"])
        if s.padding >= kernel:
            raise SettingsError(
                f"padding: {s.padding} must be smaller than the largest kernel the run draws ({kernel}: "
                f"kh, kw); a wider padding adds outputs that see only zeros"
            )
    for dims in [dict(s.shape)] if s.shape is not None else _corners(s.sweep):
        problem = model.check_dims(dims, s.model_options(model))
        if problem:
            raise SettingsError(f"{'shape' if s.shape is not None else 'sweep'}: {problem}")
    if s.param_shapes is not None:
        parse_param_shapes(s.param_shapes, model)
    known = set(model.checks) | set(model.targets())
    for token in s.require:
        if token not in REQUIRE_GROUPS and token not in known:
            raise SettingsError(
                f"require: unknown check {reprlib.repr(token)}; use grads (every gradient), all (every function "
                f"the model lists), an input or parameter ({', '.join(model.targets())}) or a function name "
                f"({', '.join(model.checks)})"
            )
