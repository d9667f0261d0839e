"""One draw as a file, for gradients computed outside Python.

`bncheck case export` writes the draw that `verify` would check at a seed and shape; a program in any
language reads it, computes gradients and Jacobians, and writes them back; `bncheck verify-values`
recomputes the references on the case's own arrays and reports on those values as `verify` does.

The three layouts hold the same things (README "Check gradients computed in any language"):

    json  {"model": ..., "settings": {...}, "attempt": 0,
           "arrays": {"X": [[...], ...], "gamma": [...], ...}, "forward": {"H": [[...], ...], ...}}
    npz   an entry per array ("X", ...), per forward field ("forward/H", ...), and "settings.json",
          a string holding {"model", "settings", "attempt"}
    csv   a folder: settings.json, X.csv, ..., forward/H.csv

A matrix is a list of rows (row i is M[i]), a vector a flat list (JSON) or one value per line (CSV),
written with 17 significant digits so that every float64 reads back exactly. `arrays` are the inputs
and parameters the references are computed on; `forward` is the forward record (the ctx fields),
given for convenience and never read back. A values file has the same layout, its arrays named as
the derivation functions are (grad_G1, jac_B_G1) and Jacobians in the column-major vec convention.
"""

from __future__ import annotations

import csv
import json
import math
import shlex
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bncheck.errors import CaseError
from bncheck.loader import Derivation, parse_check, unknown_name
from bncheck.models import OPTION_DEFAULTS, Model, get_model
from bncheck.settings import Settings, _typed, resolve
from bncheck.draws import Draw, plan
from bncheck.engine import Engine, scope
from bncheck.sweep import prepare, run_sweep

if TYPE_CHECKING:
    from bncheck.report import Report

FORMATS = ("json", "npz", "csv")
SETTINGS_FILE = "settings.json"
FORWARD = "forward"
# What writing one entry of a case holds at once, by layout: JSON makes a Python float and its text
# for each (measured: 8.8 GB for the 99 million entries at N=1000000,p1=16,p2=16), NPZ and CSV
# about three copies of the array.
WRITTEN_BYTES = {"json": 100, "npz": 24, "csv": 24}
# Beside the model's own options (activation, ddof, eps for bn-mlp), what fixes a draw.
DRAW_SETTINGS = ("dtype", "seed", "shape")


@dataclass
class Case:
    """A case read back: its model, its settings (one trial at its seed and shape) and its arrays."""

    model: Model
    settings: Settings
    attempt: int
    arrays: dict[str, np.ndarray]

    def draw(self) -> Draw:
        return Draw(self.settings.seed, dict(self.settings.shape), self.attempt, arrays=dict(self.arrays))


# ------------------------------------------------------------------------------------------ export


def export_case(settings: Settings, out: Path, fmt: str) -> None:
    """Writes the draw that `verify` checks at settings.seed (and settings.shape, else the shape that
    seed draws from the sweep ranges), relu-kink redraws included."""
    model = get_model(settings.model, settings.to_dict())
    one = replace(settings, trials=1)
    with scope(settings.device):
        engine = Engine(model, one)
        draw = next(iter(plan(one, model)))
        entries = sum(map(math.prod, [*engine.arrays(draw.dims).values(), *engine.output_shapes(draw.dims).values()]))
        if entries * WRITTEN_BYTES[fmt] > engine.budget:
            raise CaseError(
                f"max_memory_mb: writing the case at {_dims(draw.dims)} as {fmt} takes about "
                f"{entries * WRITTEN_BYTES[fmt] / 2**20:,.0f} MB, over --max-memory-mb {settings.max_memory_mb:g}; "
                f"export a smaller shape{', or use --format npz' if fmt != 'npz' else ''}, or raise --max-memory-mb"
            )
        # The draw as the sweep prepares it: sampled, then redrawn off any relu kink.
        prepare(engine, [], [draw], {}, {}, engine.chunk([], 1))
        forward = engine.forward_record(draw, settings.dtype)
    header = {
        "model": model.name,
        "settings": {
            **settings.model_options(model),
            "dtype": settings.dtype, "seed": draw.seed, "shape": dict(draw.dims),
        },
        "attempt": draw.attempt,
    }
    _write(out, fmt, header, draw.arrays, forward)


def _table(name: str, a: np.ndarray) -> np.ndarray:
    if a.ndim > 2:
        raise CaseError(f"case: {name} has {a.ndim} axes and a CSV file holds a matrix; use --format json or npz")
    return a.reshape(1, 1) if a.ndim == 0 else a.reshape(-1, 1) if a.ndim == 1 else a


def _write(out: Path, fmt: str, header: dict, arrays: dict[str, np.ndarray], forward: dict[str, np.ndarray]) -> None:
    try:
        if fmt == "json":
            doc = {**header, "arrays": {n: a.tolist() for n, a in arrays.items()},
                   FORWARD: {n: np.asarray(a, np.float64).tolist() for n, a in forward.items()}}
            out.write_text(json.dumps(doc) + "\n", encoding="utf-8")
        elif fmt == "npz":
            entries = {**arrays, **{f"{FORWARD}/{n}": a for n, a in forward.items()}}
            with out.open("wb") as fh:  # a handle, so that numpy does not append ".npz" to the name
                np.savez(fh, **entries, **{SETTINGS_FILE: np.array(json.dumps(header))})
        else:
            (out / FORWARD).mkdir(parents=True, exist_ok=True)
            (out / SETTINGS_FILE).write_text(json.dumps(header, indent=2) + "\n", encoding="utf-8")
            for folder, group in ((out, arrays), (out / FORWARD, forward)):
                for name, a in group.items():
                    np.savetxt(folder / f"{name}.csv", _table(name, np.asarray(a)), delimiter=",", fmt="%.17g")
    except OSError as err:
        raise CaseError(f"case: cannot write {err.filename or out}: {err.strerror}") from None


# ------------------------------------------------------------------------------------------ reading

def _format_of(path: Path, what: str) -> str:
    if path.is_dir():
        return "csv"
    if not path.exists():
        raise CaseError(f"{what}: no such file or folder: {path}")
    if path.suffix.lower() in (".json", ".npz"):
        return path.suffix.lower()[1:]
    raise CaseError(f"{what}: cannot tell the layout of {path}: give a .json or .npz file or a folder of .csv files")


def _json_array(value: Any) -> np.ndarray | str:
    def first_bad(x: Any, at: list[int]) -> str | None:
        if isinstance(x, list):
            return next(filter(None, (first_bad(v, at + [i]) for i, v in enumerate(x))), None)
        if isinstance(x, bool) or not isinstance(x, (int, float)):
            where = f" at {at}" if at else ""
            return f"holds {json.dumps(x)[:40]}{where}, not a number"
        return None

    bad = first_bad(value, [])
    if bad is not None:
        return bad
    try:
        return np.array(value, dtype=np.float64)
    except ValueError:
        return "is ragged: its rows have different lengths"


def _npz_array(data, key: str) -> np.ndarray | str:
    try:
        a = data[key]
    except ValueError:  # an object array, which only unpickling could read
        return "holds Python objects, not numbers"
    if a.dtype.kind not in "fiu":
        return f"holds {a.dtype} values, not numbers"
    return a.astype(np.float64)


def _csv_array(path: Path) -> np.ndarray | str:
    rows = []
    with path.open(newline="", encoding="utf-8") as fh:
        for line, row in enumerate(csv.reader(fh), 1):
            if not any(cell.strip() for cell in row):
                continue
            for cell in row:
                try:
                    float(cell)
                except ValueError:
                    return f"holds {cell.strip()[:40]!r} at line {line} of {path.name}, not a number"
            rows.append([float(cell) for cell in row])
    if not rows:
        return f"is empty ({path.name})"
    if len({len(r) for r in rows}) > 1:
        return f"is ragged: the lines of {path.name} hold different numbers of values"
    return np.array(rows)


def _read(path: Path, what: str) -> tuple[dict | None, dict[str, np.ndarray | str], str]:
    """(header or None, name -> numeric array or why the entry is none, layout) from any of the three
    layouts; the forward record is left out. Raises CaseError, one line, where the file itself cannot be read."""
    fmt = _format_of(path, what)
    try:
        if fmt == "json":
            doc = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(doc, dict) or not isinstance(doc.get("arrays"), dict):
                raise CaseError(f'{what}: {path} holds no "arrays" object; expected {{"arrays": {{NAME: [...], ...}}, ...}}')
            header = {k: v for k, v in doc.items() if k not in ("arrays", FORWARD)}
            return header, {n: _json_array(v) for n, v in doc["arrays"].items()}, fmt
        if fmt == "npz":
            if not zipfile.is_zipfile(path):
                raise CaseError(f"{what}: {path} is not an npz file (a zip of .npy arrays)")
            with np.load(path, allow_pickle=False) as data:
                header = json.loads(str(data[SETTINGS_FILE])) if SETTINGS_FILE in data.files else None
                names = [n for n in data.files if n != SETTINGS_FILE and not n.startswith(FORWARD + "/")]
                return header, {n: _npz_array(data, n) for n in names}, fmt
        settings_file = path / SETTINGS_FILE
        header = json.loads(settings_file.read_text(encoding="utf-8")) if settings_file.is_file() else None
        return header, {p.stem: _csv_array(p) for p in sorted(path.glob("*.csv"))}, fmt
    except json.JSONDecodeError as err:
        raise CaseError(f"{what}: {path} holds invalid JSON: {err}") from None
    except (OSError, UnicodeDecodeError, zipfile.BadZipFile, ValueError, EOFError) as err:
        raise CaseError(f"{what}: cannot read {path}: {getattr(err, 'strerror', None) or err}") from None


def _shaped(raw: np.ndarray | str, shape: tuple[int, ...], fmt: str) -> np.ndarray | str:
    """A CSV file is always a table: an n×1 one is the vector it stands for, a 1×1 one a scalar."""
    if fmt == "csv" and not isinstance(raw, str) and len(shape) < 2 and raw.shape[1] == 1:
        if len(shape) == 0 and raw.shape == (1, 1):
            return raw.reshape(())
        if len(shape) == 1:
            return raw[:, 0]
    return raw


def read_case(path: Path, flags: dict[str, Any]) -> Case:
    """The case at `path`, its settings resolved with `flags` (tolerances, --require, report paths)."""
    header, raws, fmt = _read(path, "case")
    if not isinstance(header, dict) or not isinstance(header.get("settings"), dict) or "model" not in header:
        where = f"{path / SETTINGS_FILE}" if fmt == "csv" else str(path)
        raise CaseError(f'case: {where} holds no "model" and "settings"; write cases with `bncheck case export`')
    known = (*OPTION_DEFAULTS, *DRAW_SETTINGS)
    values = {}
    for key, value in header["settings"].items():
        if key not in known:
            raise CaseError(f"case: {path}: unknown setting {key!r}; a case holds {', '.join(known)}")
        values[key] = _typed(f"case {path}", key, value)
    attempt = header.get("attempt", 0)
    if isinstance(attempt, bool) or not isinstance(attempt, int) or attempt < 0:
        raise CaseError(f"case: {path}: attempt must be an integer >= 0, got {attempt!r}")
    if "shape" not in values:
        raise CaseError(f"case: {path}: settings hold no shape")
    settings = resolve({**values, "model": str(header["model"]), "trials": 1, **flags})
    model = get_model(settings.model, settings.to_dict())

    shapes = {**model.inputs(settings.shape), **model.params(settings.shape)}
    if set(raws) != set(shapes):
        missing, extra = sorted(set(shapes) - set(raws)), sorted(set(raws) - set(shapes))
        raise CaseError(
            f"case: {path}: arrays must be exactly {', '.join(shapes)} for model {model.name}"
            + (f"; missing {', '.join(missing)}" if missing else "") + (f"; unexpected {', '.join(extra)}" if extra else "")
        )
    arrays = {}
    for name, shape in shapes.items():
        a = _shaped(raws[name], shape, fmt)
        if isinstance(a, str):
            raise CaseError(f"case: {path}: array {name} {a}")
        if a.shape != shape:
            raise CaseError(f"case: {path}: array {name} has shape {a.shape}, expected {shape} at {_dims(settings.shape)}")
        arrays[name] = a
    return Case(model, settings, attempt, arrays)


def _dims(dims) -> str:
    return ",".join(f"{k}={v}" for k, v in dims.items())


# ----------------------------------------------------------------------------------- verify-values


def read_values(path: Path, case: Case) -> tuple[Derivation, dict[str, str]]:
    """A Derivation whose functions return the values read from `path`, and, per name, why a value is
    not an array of numbers (its check fails with that sentence)."""
    _, raws, fmt = _read(path, "values")
    if not raws:
        names = ", ".join(c for c in case.model.checks if not c.startswith("jvp_"))
        raise CaseError(f"values: {path} holds no arrays; name them as the functions: {names}")
    model, dims = case.model, case.settings.shape
    shapes = {**model.inputs(dims), **model.params(dims)}
    outputs = Engine(model, case.settings).output_shapes(dims)
    derivation = Derivation(name=str(path), file=str(path))
    problems: dict[str, str] = {}
    for name, raw in raws.items():
        check = parse_check(name, model)
        if check is None:
            derivation.unknown[name] = unknown_name(name, model)
            continue
        if check.kind == "jvp":
            derivation.unknown[name] = (
                f"{name}: a jvp_ value depends on its direction V, which a case does not carry; "
                f"give jac_{check.output}_{check.target} instead"
            )
            continue
        if check.kind == "gradient":
            shape = shapes[check.target]
        else:
            shape = (math.prod(outputs[check.output]), math.prod(shapes[check.target]))
        value = _shaped(raw, shape, fmt)
        if isinstance(value, str):
            problems[name], value = f"{name} {value}", None
        derivation.functions[name] = lambda ctx, value=value: value
        derivation.checks[name] = check
    return derivation, problems


def verify_values(case_path: Path, values_path: Path, flags: dict[str, Any]) -> tuple[Report, Settings]:
    """The report `verify` would give on this case had the derivation returned these values, and the
    settings it ran under."""
    from bncheck.assess import assess
    from bncheck.assess.diagnose import diagnosis
    from bncheck.report import build_report

    case = read_case(case_path, flags)
    with scope(case.settings.device):
        derivation, problems = read_values(values_path, case)
        sweep = run_sweep(Engine(case.model, case.settings), derivation, draws=[case.draw()])
        assessments = assess(derivation, sweep)
    report = build_report(case.model, case.settings, derivation, sweep, assessments)
    replay = shlex.join(["bncheck", "verify-values", str(case_path), str(values_path)])
    for result in report.checks:
        if result.name in problems:
            result.diagnosis = diagnosis("shape", problems[result.name])
        if result.replay is not None:
            result.replay = replay
    return report, case.settings
