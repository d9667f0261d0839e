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
import hashlib
import json
import math
import reprlib
import shlex
import zipfile
import zlib
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from bncheck.errors import CaseError
from bncheck.loader import Derivation, unknown_name
from bncheck.models import Model, get_model, is_model_path
from bncheck.options import MODEL_OPTIONS
from bncheck.settings import Settings, checked, resolve, typed
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
        # A model file by its name and the sha256 of its source, never its path: the case is data and
        # verify-values checks it against the model file given on its command line.
        **({"model": Path(model.file).name, "model_sha256": model_file_digest(Path(model.file))} if model.file
           else {"model": model.name}),
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

# A settings.json holds a few hundred bytes; one far larger is no case's.
SETTINGS_BYTES = 2**20
# Deeper than any array's axes: a JSON value nested further is no array of this model.
DEEPEST = 32
_FLOAT64_MAX = int(np.finfo(np.float64).max)
_NPY_HEADERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}


class _Budget:
    """What reading a case or values file may hold (--max-memory-mb), measured before each
    allocation: a file or an array that would take the total past it is refused unread."""

    def __init__(self, mb: float, what: str, path: Path, held: int = 0):
        self.mb, self.what, self.path, self.held = mb, what, path, held

    def need(self, nbytes: int, thing: str) -> None:
        if self.held + nbytes > self.mb * 2**20:
            raise CaseError(
                f"{self.what}: {self.path}: {thing} would take {_mb(nbytes)} MB, past --max-memory-mb "
                f"{self.mb:g}{f' with {_mb(self.held)} MB held' if self.held else ''}; refused unread"
            )

    def hold(self, nbytes: int) -> None:
        self.held += nbytes


def _mb(nbytes: int) -> str:
    return f"{nbytes / 2**20:.3g}"


def _parse_cost(text: bytes) -> int:
    """What parsing JSON or CSV text holds at its peak: the text as bytes and as str and, per number,
    a Python float in a list (32 bytes) and its float64 (8)."""
    return 3 * len(text) + 40 * (text.count(b",") + text.count(b"\n") + 1)


@dataclass
class _Entry:
    """One array of a file, read only when asked for: an npz entry declares its shape and dtype in its
    .npy header, so it can be weighed, and refused, before its data is inflated."""

    load: Callable[[], np.ndarray | str]
    shape: tuple[int, ...] | None = None  # as declared; None where only parsing the text tells
    nbytes: int = 0  # as declared


@contextmanager
def _reading(path: Path, what: str):
    """Whatever a malformed file makes the readers raise, as one CaseError."""
    try:
        yield
    except json.JSONDecodeError as err:
        raise CaseError(f"{what}: {path} holds invalid JSON: {err}") from None
    except RecursionError:
        raise CaseError(f"{what}: {path} holds JSON nested too deep to be an array") from None
    except (OSError, UnicodeDecodeError, zipfile.BadZipFile, zlib.error, ValueError, EOFError, NotImplementedError,
            RuntimeError) as err:  # RuntimeError: an encrypted zip; NotImplementedError: its compression
        raise CaseError(f"{what}: cannot read {path}: {getattr(err, 'strerror', None) or err}") from None


def _format_of(path: Path, what: str) -> str:
    with _reading(path, what):
        if path.is_dir():
            return "csv"
        if not path.exists():
            raise CaseError(f"{what}: no such file or folder: {path}")
        if not path.is_file():
            raise CaseError(f"{what}: {path} is neither a file nor a folder")
    if path.suffix.lower() in (".json", ".npz"):
        return path.suffix.lower()[1:]
    raise CaseError(f"{what}: cannot tell the layout of {path}: give a .json or .npz file or a folder of .csv files")


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object whose names are all different: with one name given twice, which value is meant?
    (json keeps the last silently: a wrong value written first would be checked by the right one.)"""
    out = dict(pairs)
    if len(out) < len(pairs):
        twice = next(name for i, (name, _) in enumerate(pairs) if name in dict(pairs[:i]))
        raise ValueError(f"the name {twice!r} is given twice")
    return out


def _read_bytes(path: Path, budget: _Budget, cap: int | None = None) -> bytes:
    """The file's bytes, weighed before they are read (and then what parsing them holds)."""
    if not path.is_file():  # a FIFO or a device would be read for ever
        raise CaseError(f"{budget.what}: {path} is not a regular file")
    size = path.stat().st_size
    if cap is not None and size > cap:
        raise CaseError(f"{budget.what}: {path} holds {size} bytes, more than a settings file ever does")
    budget.need(size, f"reading {path.name}")
    with path.open("rb") as fh:
        text = fh.read(size + 1)
    if len(text) > size:
        raise CaseError(f"{budget.what}: {path} grew while it was read")
    budget.need(_parse_cost(text), f"parsing {path.name}")
    return text


def _json_array(value: Any) -> np.ndarray | str:
    def first_bad(x: Any, at: list[int]) -> str | None:
        if isinstance(x, list):
            if len(at) >= DEEPEST:
                return f"is nested more than {DEEPEST} lists deep, deeper than any array"
            return next(filter(None, (first_bad(v, at + [i]) for i, v in enumerate(x))), None)
        where = f" at {at}" if at else ""
        if isinstance(x, bool) or not isinstance(x, (int, float)):
            return f"holds {json.dumps(x)[:40]}{where}, not a number"
        if isinstance(x, int) and not -_FLOAT64_MAX <= x <= _FLOAT64_MAX:
            return f"holds an integer of {len(str(abs(x)))} digits{where}, too large for a float64"
        return None

    bad = first_bad(value, [])
    if bad is not None:
        return bad
    try:
        return np.array(value, dtype=np.float64)
    except ValueError:
        return "is ragged: its rows have different lengths"


def _npz_entries(path: Path, budget: _Budget) -> dict[str, _Entry]:
    """Each .npy member of the zip by name, its header read (never its data)."""
    entries = {}
    with zipfile.ZipFile(path) as zf:
        for info in zf.infolist():
            name = info.filename.removesuffix(".npy")
            if not info.filename.endswith(".npy"):
                entries[name] = _Entry(lambda: "is no .npy array")
                continue
            with zf.open(info) as fh:
                version = np.lib.format.read_magic(fh)
                if version not in _NPY_HEADERS:
                    raise ValueError(f"{info.filename} is a .npy file of version {version}, which bncheck does not read")
                shape, _, dtype = _NPY_HEADERS[version](fh)
            entries[name] = _Entry(
                lambda info=info, shape=shape, dtype=dtype: _npz_array(path, info, shape, dtype, budget),
                shape, math.prod(shape) * dtype.itemsize,
            )
    return entries


def _npz_array(
    path: Path, info: zipfile.ZipInfo, shape: tuple[int, ...], dtype: np.dtype, budget: _Budget
) -> np.ndarray | str:
    if dtype.hasobject:  # which only unpickling could read
        return "holds Python objects, not numbers"
    if dtype.kind not in "fiu":
        return f"holds {dtype} values, not numbers"
    count = math.prod(shape)
    cost = count * dtype.itemsize + (0 if dtype == np.float64 else 8 * count)
    budget.need(cost, f"{info.filename}, declared {dtype} of shape {shape},")
    with zipfile.ZipFile(path) as zf, zf.open(info) as fh:
        a = np.lib.format.read_array(fh, allow_pickle=False)
    budget.hold(cost)
    return a.astype(np.float64, copy=False)


def _csv_array(path: Path, budget: _Budget) -> np.ndarray | str:
    rows = []
    lines = _read_bytes(path, budget).decode("utf-8").splitlines()
    for line, row in enumerate(csv.reader(lines), 1):
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
    a = np.array(rows)
    budget.hold(a.nbytes)
    return a


def _open(path: Path, budget: _Budget) -> tuple[dict | None, dict[str, _Entry], str]:
    """(header or None, name -> entry, layout) from any of the three layouts; the forward record is
    left out. Raises CaseError, one line, where the file itself cannot be read or would not fit."""
    what = budget.what
    fmt = _format_of(path, what)
    with _reading(path, what):
        if fmt == "json":
            doc = json.loads(_read_bytes(path, budget), object_pairs_hook=_unique)
            if isinstance(doc, dict) and "arrays" not in doc and what == "values":
                # Values may also come flat, {"grad_beta": [...], ...}: a case needs its header, values do not.
                doc = {"arrays": doc}
            if not isinstance(doc, dict) or not isinstance(doc.get("arrays"), dict):
                flat = ' or {NAME: [...], ...}' if what == "values" else ""
                raise CaseError(f'{what}: {path} holds no "arrays" object; expected {{"arrays": {{NAME: [...], ...}}, ...}}{flat}')
            header = {k: v for k, v in doc.items() if k not in ("arrays", FORWARD)}
            return header, {n: _Entry(lambda v=v: _json_array(v)) for n, v in doc["arrays"].items()}, fmt
        if fmt == "npz":
            if not zipfile.is_zipfile(path):
                raise CaseError(f"{what}: {path} is not an npz file (a zip of .npy arrays)")
            entries = _npz_entries(path, budget)
            stored = entries.pop(SETTINGS_FILE, None)
            header = None
            if stored is not None:
                if stored.shape != () or stored.nbytes > SETTINGS_BYTES:
                    raise CaseError(f"{what}: {path}: {SETTINGS_FILE} holds no settings string")
                header = json.loads(_npz_string(path, budget))
            return header, {n: e for n, e in entries.items() if not n.startswith(FORWARD + "/")}, fmt
        settings_file = path / SETTINGS_FILE
        header = json.loads(_read_bytes(settings_file, budget, SETTINGS_BYTES)) if settings_file.is_file() else None
        entries = {p.stem: _Entry(lambda p=p: _csv_array(p, budget)) for p in sorted(path.glob("*.csv"))}
        return header, entries, fmt


def _npz_string(path: Path, budget: _Budget) -> str:
    with zipfile.ZipFile(path) as zf, zf.open(SETTINGS_FILE + ".npy") as fh:
        value = np.lib.format.read_array(fh, allow_pickle=False)
    if value.dtype.kind != "U":
        raise CaseError(f"{budget.what}: {path}: {SETTINGS_FILE} holds no settings string")
    return str(value)


def _shaped(raw: np.ndarray | str, shape: tuple[int, ...], fmt: str) -> np.ndarray | str:
    """A CSV file is always a table: an n×1 one is the vector it stands for, a 1×1 one a scalar."""
    if fmt == "csv" and not isinstance(raw, str) and len(shape) < 2 and raw.shape[1] == 1:
        if len(shape) == 0 and raw.shape == (1, 1):
            return raw.reshape(())
        if len(shape) == 1:
            return raw[:, 0]
    return raw


def _budget_of(flags: dict[str, Any]) -> float:
    value = flags.get("max_memory_mb")
    if value is None:
        return Settings.max_memory_mb
    return checked("max_memory_mb", typed("settings", "max_memory_mb", value))


def model_file_digest(path: Path) -> str:
    """The sha256 of a model file's source: a case names the model file it was exported with by
    its file name and this digest, so that verify-values can tell the file given with --model is it."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as err:
        raise CaseError(f"model: cannot read {path}: {err.strerror or err}") from None


def _case_model(header: dict, given: str | None, path: Path) -> str:
    """The model to run the case with: its built-in by name, or, where the case names a model file,
    the one given with --model once it is shown to be that file. A case is data: the file it names
    is never imported."""
    named = header["model"]
    if not isinstance(named, str):
        raise CaseError(f"case: {path}: model must be a model's name, got {reprlib.repr(named)}")
    if not is_model_path(named) and "model_sha256" not in header:
        if given is not None and given != named:
            raise CaseError(f"case: {path} is a case of model {named}, not of --model {given}")
        return named
    recorded = header.get("model_sha256")
    if given is None:
        beside = _beside(path, Path(named).name, recorded) if isinstance(recorded, str) else None
        raise CaseError(
            f"case: {path} was exported with the model file {named}; bncheck never imports a file a case "
            f"names: give the model file on the command line, --model "
            + (f"{beside} (the file of that name beside the case, whose sha256 is the one it records)" if beside
               else f"PATH/{Path(named).name}")
        )
    if not isinstance(recorded, str):
        raise CaseError(f"case: {path} records no model_sha256 of its model file {named}; export it again")
    # The source is what identifies the model, not the file's name: a copy under another name is it.
    if model_file_digest(Path(given)) != recorded:
        named_so = "" if Path(given).name == Path(named).name else f" ({named})"
        raise CaseError(
            f"case: --model {given} is not the model file {path} was exported with{named_so}: its sha256 differs "
            f"(the case records {recorded[:12]}…); export the case again with this model file"
        )
    return given


def _beside(case: Path, name: str, digest: str) -> Path | None:
    """The file `name` beside the case (or inside a csv case's folder) whose source has `digest`, for
    the hint: it is read to be hashed, never imported."""
    for folder in (case.parent, *([case] if case.is_dir() else [])):
        candidate = folder / name
        try:
            if candidate.is_file() and candidate.stat().st_size <= SETTINGS_BYTES * 16 and \
                    hashlib.sha256(candidate.read_bytes()).hexdigest() == digest:
                return candidate
        except OSError:
            continue
    return None


def read_case(path: Path, flags: dict[str, Any]) -> Case:
    """The case at `path`, its settings resolved with `flags` (tolerances, --require, report paths,
    and --model: the model file a case exported from one is checked against)."""
    flags = dict(flags)
    given = flags.pop("model", None)
    budget = _Budget(_budget_of(flags), "case", path)
    header, entries, fmt = _open(path, budget)
    if not isinstance(header, dict) or not isinstance(header.get("settings"), dict) or "model" not in header:
        where = f"{path / SETTINGS_FILE}" if fmt == "csv" else str(path)
        raise CaseError(f'case: {where} holds no "model" and "settings"; write cases with `bncheck case export`')
    known = (*MODEL_OPTIONS, *DRAW_SETTINGS)
    values = {}
    for key, value in header["settings"].items():
        if key not in known:
            raise CaseError(f"case: {path}: unknown setting {reprlib.repr(key)}; a case holds {', '.join(known)}")
        values[key] = typed(f"case {path}", key, value)
    attempt = header.get("attempt", 0)
    if isinstance(attempt, bool) or not isinstance(attempt, int) or attempt < 0:
        raise CaseError(f"case: {path}: attempt must be an integer >= 0, got {reprlib.repr(attempt)}")
    if "shape" not in values:
        raise CaseError(f"case: {path}: settings hold no shape")
    model_spec = _case_model(header, None if given is None else str(given), path)
    settings = resolve({**values, "model": model_spec, "trials": 1, **flags})
    model = get_model(settings.model, settings.to_dict())

    shapes = {**model.inputs(settings.shape), **model.params(settings.shape)}
    if set(entries) != set(shapes):
        missing, extra = sorted(set(shapes) - set(entries)), sorted(set(entries) - set(shapes))
        raise CaseError(
            f"case: {path}: arrays must be exactly {', '.join(shapes)} for model {model.name}"
            + (f"; missing {', '.join(missing)}" if missing else "") + (f"; unexpected {', '.join(extra)}" if extra else "")
        )
    for name, entry in entries.items():  # an npz entry's declared shape, before its data is read
        if entry.shape is not None and entry.shape != shapes[name]:
            raise CaseError(
                f"case: {path}: array {name} has shape {entry.shape}, expected {shapes[name]} at {_dims(settings.shape)}"
            )
    arrays = {}
    with _reading(path, "case"):
        for name, shape in shapes.items():
            a = _shaped(entries[name].load(), shape, fmt)
            if isinstance(a, str):
                raise CaseError(f"case: {path}: array {name} {a}")
            if a.shape != shape:
                raise CaseError(f"case: {path}: array {name} has shape {a.shape}, expected {shape} at {_dims(settings.shape)}")
            if not np.isfinite(a).all():
                # The references would be NaN, and the failure blamed on the values checked.
                at = tuple(int(i) for i in np.argwhere(~np.isfinite(a))[0])
                raise CaseError(
                    f"case: {path}: array {name} holds {a[at]} at {list(at)}; a case's arrays must be finite"
                )
            arrays[name] = a
    return Case(model, settings, attempt, arrays)


def _dims(dims) -> str:
    return ",".join(f"{k}={v}" for k, v in dims.items())


# ----------------------------------------------------------------------------------- verify-values


def read_values(path: Path, case: Case) -> tuple[Derivation, dict[str, str]]:
    """A Derivation whose functions return the values read from `path`, and, per name, why a value is
    not an array of numbers (its check fails with that sentence)."""
    held = sum(a.nbytes for a in case.arrays.values())
    budget = _Budget(case.settings.max_memory_mb, "values", path, held)
    _, entries, fmt = _open(path, budget)
    if not entries:
        names = ", ".join(c for c in case.model.checks if not c.startswith("jvp_"))
        raise CaseError(f"values: {path} holds no arrays; name them as the functions: {names}")
    model, dims = case.model, case.settings.shape
    shapes = {**model.inputs(dims), **model.params(dims)}
    outputs = Engine(model, case.settings).output_shapes(dims)
    checks = {name: model.check(name) for name in entries}
    expected = {
        name: shapes[c.target] if c.kind == "gradient" else (math.prod(outputs[c.output]), math.prod(shapes[c.target]))
        for name, c in checks.items() if c is not None and c.kind != "jvp"
    }
    _refuse_oversized(path, entries, expected)
    derivation = Derivation(name=str(path), file=str(path))
    problems: dict[str, str] = {}
    for name, entry in entries.items():
        check = checks[name]
        if check is None:
            derivation.unknown[name] = unknown_name(name, model)
            continue
        if check.kind == "jvp":
            derivation.unknown[name] = (
                f"{name}: a jvp_ value depends on its direction V, which a case does not carry; "
                f"give jac_{check.output}_{check.target} instead"
            )
            continue
        with _reading(path, "values"):
            value = _shaped(entry.load(), expected[name], fmt)
        if isinstance(value, str):
            problems[name], value = f"{name} {value}", None
        derivation.functions[name] = lambda ctx, value=value: value
        derivation.checks[name] = check
    return derivation, problems


def _refuse_oversized(path: Path, entries: dict[str, _Entry], expected: dict[str, tuple[int, ...]]) -> None:
    """An npz entry declaring more numbers than any value of its check could use is refused before it
    is inflated: the largest wrong shape a diagnosis explains is a p×p matrix for a vector of p."""
    largest = max((math.prod(s) for s in expected.values()), default=1)
    for name, entry in entries.items():
        if entry.shape is None:
            continue
        n = math.prod(expected.get(name, (largest,)))
        if math.prod(entry.shape) > max(n * n, 2**16):
            want = f"{name} is {expected[name]}" if name in expected else f"this case's largest value holds {largest}"
            raise CaseError(
                f"values: {path}: {name} declares shape {entry.shape}, {math.prod(entry.shape)} numbers, "
                f"where {want}; refused unread"
            )


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
    model_flag = ["--model", str(flags["model"])] if flags.get("model") is not None else []
    replay = shlex.join(["bncheck", "verify-values", str(case_path), str(values_path), *model_flag])
    for result in report.checks:
        if result.name in problems:
            result.diagnosis = diagnosis("shape", problems[result.name])
        if result.replay is not None:
            result.replay = replay
    return report, case.settings
