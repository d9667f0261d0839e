"""Hostile and broken inputs: files and settings that must never run code, end with exit 0, leak a
traceback or an "internal error", or take memory they were never given.

Each one gets one line on stderr and exit status 2 (or, for a value that is not a number, its check
fails). The exploit of issue 12, a case whose model field names a model.py, is run end to end in a
subprocess for each case layout and for a config: the model file must never run.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO
from test_cli import TINY, assert_one_line_error, invoke, write

import bncheck

# The code under test, wherever it is imported from, runs the subprocesses too.
CODE = Path(bncheck.__file__).resolve().parents[1]
SEED_CASE = ["--shape", "N=10,p1=7,p2=4,k=1", "--seed", "1"]
# The model file of the issue: it leaves a mark and exits 0, which a CI gate reads as a pass.
PWNED_MODEL = 'import pathlib\npathlib.Path("PWNED").write_text("ran")\nraise SystemExit(0)\n'
LONG = "a" * 300  # past the 255 bytes a file name may have


def bncheck_in(folder: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(CODE), "BNCHECK_COMPILE_CACHE": "off"}
    return subprocess.run(
        [sys.executable, "-m", "bncheck", *map(str, args)], cwd=folder, env=env, capture_output=True, text=True, check=False
    )


def one_line(done: subprocess.CompletedProcess, *fragments: str) -> str:
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr and done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bncheck: error:"), done.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def export(out: Path, *args: str) -> Path:
    result = invoke(["case", "export", *SEED_CASE, *args, "--out", out])
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def cases(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("cases")
    return {
        "json": export(folder / "case.json"),
        "npz": export(folder / "case.npz"),
        "csv": export(folder / "case", "--format", "csv"),
    }


@pytest.fixture(scope="module")
def grad_beta_values(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("values") / "values.json"
    path.write_text(json.dumps({"arrays": {"grad_beta": [1.0, 2.0, 3.0, 4.0]}}))
    return path


def _with_model(case: Path, layout: str, model: str, out: Path) -> Path:
    """The case of `layout` with its model field set to `model`, as a hostile sender would write it."""
    if layout == "json":
        doc = json.loads(case.read_text())
        doc["model"] = model
        out = out.with_suffix(".json")
        out.write_text(json.dumps(doc))
    elif layout == "npz":
        with np.load(case) as data:
            entries = {name: data[name] for name in data.files}
        header = json.loads(str(entries["settings.json"]))
        entries["settings.json"] = np.array(json.dumps({**header, "model": model}))
        out = out.with_suffix(".npz")
        with out.open("wb") as fh:
            np.savez(fh, **entries)
    else:
        out.mkdir()
        for path in case.rglob("*"):
            target = out / path.relative_to(case)
            if path.is_dir():
                target.mkdir(exist_ok=True)
            else:
                target.write_bytes(path.read_bytes())
        header = json.loads((out / "settings.json").read_text())
        (out / "settings.json").write_text(json.dumps({**header, "model": model}))
    return out


# ------------------------------------------------------------------------ 1. no code from data files


@pytest.mark.parametrize("layout", ["json", "npz", "csv"])
def test_a_case_naming_a_model_file_never_runs_it(cases, grad_beta_values, tmp_path, layout):
    write(tmp_path / "model.py", PWNED_MODEL)
    case = _with_model(cases[layout], layout, "model.py", tmp_path / "exploit")
    done = bncheck_in(tmp_path, "verify-values", case, grad_beta_values)
    one_line(done, "model.py", "--model")
    # Named on the command line, the file is still not run: the case records no digest of it.
    one_line(bncheck_in(tmp_path, "verify-values", case, grad_beta_values, "--model", "model.py"), "sha256")
    assert not (tmp_path / "PWNED").exists()


def test_a_config_naming_a_model_file_never_runs_it(tmp_path):
    write(tmp_path / "model.py", PWNED_MODEL)
    write(tmp_path / "config.toml", 'model = "model.py"\n')
    one_line(bncheck_in(tmp_path, "verify", "--config", "config.toml", "--trials", "2"), "--model", "verify(model=")
    assert not (tmp_path / "PWNED").exists()


def test_a_derivation_that_exits_0_at_import_is_exit_2(tmp_path):
    write(tmp_path / "exits.py", "import sys\nsys.exit(0)\n")
    one_line(bncheck_in(tmp_path, "verify", "exits.py", "--trials", "2"), "exits.py:2", "SystemExit")


def _layernorm_case(tmp_path: Path) -> tuple[Path, Path, Path]:
    model = tmp_path / "model.py"
    model.write_bytes((REPO / "examples" / "layernorm" / "model.py").read_bytes())
    case = tmp_path / "case.json"
    result = invoke(["case", "export", "--model", model, "--shape", "N=3,D=4", "--out", case])
    assert result.exit_code == 0, result.output
    values = tmp_path / "values.json"
    values.write_text(json.dumps({"arrays": {"grad_beta": [0.0, 0.0, 0.0, 0.0]}}))
    return model, case, values


def test_a_case_from_a_model_file_is_checked_against_the_one_given(tmp_path):
    model, case, values = _layernorm_case(tmp_path)
    assert invoke(["verify-values", case, values, "--model", model]).exit_code == 1  # a wrong grad_beta
    # Without --model: the file beside the case whose source the case records is named, never imported.
    assert_one_line_error(invoke(["verify-values", case, values]), "exported with the model file model.py",
                          f"--model {model} (the file of that name beside the case")
    # A copy under another name is the same model: its source, not its name, identifies it.
    other = write(tmp_path / "other.py", model.read_text())
    assert invoke(["verify-values", case, values, "--model", other]).exit_code == 1
    write(other, model.read_text() + "# edited\n")
    assert_one_line_error(invoke(["verify-values", case, values, "--model", other]), "sha256 differs", "(model.py)")
    model.write_text(model.read_text() + "# edited\n")
    assert_one_line_error(invoke(["verify-values", case, values, "--model", model]), "sha256 differs")
    assert_one_line_error(invoke(["verify-values", case, values]), "--model PATH/model.py")


def test_a_case_of_a_built_in_refuses_another_model(cases, grad_beta_values):
    assert_one_line_error(invoke(["verify-values", cases["json"], grad_beta_values, "--model", "mlp"]), "bn-mlp", "mlp")


# ------------------------------------------------------- 2. BaseException from a user's file, one line


@pytest.mark.parametrize(
    "source, fragment",
    [
        ("raise SystemExit(0)\n", "SystemExit: 0"),
        ("raise GeneratorExit('closed')\n", "GeneratorExit: closed"),
        ("class Stop(BaseException):\n    pass\nraise Stop('mine')\n", "Stop: mine"),
        ("class Mute(Exception):\n    def __str__(self):\n        raise RuntimeError\nraise Mute()\n", "Mute"),
    ],
    ids=["SystemExit", "GeneratorExit", "own-BaseException", "str-raises"],
)
@pytest.mark.parametrize("kind", ["derivation", "model"])
def test_a_file_raising_any_base_exception_at_import_is_one_line(tmp_path, source, fragment, kind):
    bad = write(tmp_path / "bad.py", source)
    args = ["verify", bad] if kind == "derivation" else ["verify", "--model", bad]
    assert_one_line_error(invoke([*args, *TINY[:2]]), f"{kind}: importing {bad}", fragment)


def test_system_exit_at_import_is_a_load_error_and_keyboard_interrupt_goes_on(tmp_path):
    from bncheck.errors import LoadError
    from bncheck.loader import load_derivation
    from bncheck.models import get_model

    exits = write(tmp_path / "exits.py", "raise SystemExit(0)\n")
    with pytest.raises(LoadError, match="SystemExit: 0"):
        load_derivation(str(exits), get_model("bn-mlp"))
    interrupted = write(tmp_path / "interrupted.py", "raise KeyboardInterrupt\n")
    with pytest.raises(KeyboardInterrupt):  # the user asked to stop: the CLI exits 130
        load_derivation(str(interrupted), get_model("bn-mlp"))


# ------------------------------------------------------------- 9. files Python runs, names it reads


def test_a_bom_and_a_coding_cookie_are_read_as_python_reads_them(tmp_path):
    derivation = tmp_path / "bom.py"
    derivation.write_bytes(
        "\ufeffdef grad_beta(ctx):\n    return (-(2 / ctx.N) * (ctx.resid @ ctx.G2.T) * ctx.dA).sum(axis=0)\n".encode()
    )
    result = invoke(["verify", derivation, *TINY])
    assert result.exit_code == 0, result.output
    model = tmp_path / "latin.py"
    model.write_bytes(
        "# -*- coding: latin-1 -*-\n"
        'SUMMARY = "Fläche, a sum of squares"\n'
        'DIMS = {"N": (1, 3)}\n'
        'def inputs(d): return {"x": (d["N"],)}\n'
        "def params(d): return {}\n"
        'def forward(x): return {"R": (x ** 2).sum()}\n'.encode("latin-1")
    )
    result = invoke(["models", model])
    assert result.exit_code == 0, result.output
    assert "Fläche" in result.output


def test_a_checkable_name_that_is_not_a_function_is_an_error(run, tmp_path):
    derivation = write(tmp_path / "array.py", "import numpy as np\n\ngrad_beta = np.zeros(3)\n")
    report = run(str(derivation), trials=2)
    check = next(c for c in report.checks if c.name == "grad_beta")
    assert check.status == "error" and not report.passed
    assert "grad_beta is a ndarray, not a function" in check.message


@pytest.mark.parametrize("kind", ["derivation", "model", "case", "values"])
def test_a_file_name_too_long_is_one_line(cases, grad_beta_values, tmp_path, kind):
    long = tmp_path / f"{LONG}.{'py' if kind in ('derivation', 'model') else 'json'}"
    args = {
        "derivation": ["verify", long, *TINY],
        "model": ["verify", "--model", long, *TINY[:2]],
        "case": ["verify-values", long, grad_beta_values],
        "values": ["verify-values", cases["json"], long],
    }[kind]
    line = assert_one_line_error(invoke(args), f"{kind}: cannot read", "File name too long")
    assert "internal error" not in line


# ------------------------------------------------------------------------------ settings, bounded


@pytest.mark.parametrize(
    "flags, fragments",
    [
        (["--shape", "N=²,p1=2,p2=2"], ["shape: cannot parse 'N=²'"]),
        (["--shape", "N=3,N=4,p1=2,p2=2"], ["N is given twice"]),
        (["--trials", str(10**9 + 1)], ["trials: must be between 1 and 1000000000"]),
        (["--seed", str(2**63 - 5), "--trials", "10"], ["seed + trials must stay below 2**63"]),
        (["--model", "conv", "--stride", "0"], ["stride: must be between 1"]),
        (["--model", "conv", "--padding", "100000"], ["padding: 100000 must be smaller than the largest kernel"]),
        (["--model", "mlp", "--layers", "101"], ["layers: must be between 1 and 100"]),
        (["--max-jacobian-mb", "1e308"], ["max_jacobian_mb: must be a number > 0 and at most"]),
    ],
    ids=["superscript", "twice", "trials", "seed-overflow", "stride-0", "padding", "layers", "jacobian-mb"],
)
def test_settings_out_of_their_domain_are_one_line(flags, fragments):
    assert_one_line_error(invoke(["verify", *flags]), *fragments)


@pytest.mark.parametrize(
    "text, fragments",
    [
        ("trials = 99999999999999999999\n", ["trials: must be between 1 and 1000000000"]),
        ("eps = 1" + "0" * 400 + "\n", ["eps = ", "too large for a number"]),
        ("seed = 1" + "0" * 5000 + "\n", ["not valid TOML", "4300 digits"]),
        ("[sweep]\nN = [2, 99999999999999999999]\n", ["sweep range N", "must end at 2147483647"]),
    ],
    ids=["trials", "eps", "5000-digits", "sweep-range"],
)
def test_config_numbers_that_overflow_are_one_line(tmp_path, text, fragments):
    config = write(tmp_path / "config.toml", text)
    assert_one_line_error(invoke(["verify", "--config", config]), *fragments)


def test_a_binary_config_is_one_line(tmp_path):
    config = tmp_path / "binary.toml"
    config.write_bytes(b"\xff\xfe\x00\x01trials = 3\n")
    assert_one_line_error(invoke(["verify", "--config", config]), "binary.toml is not a TOML file", "not UTF-8")


def test_an_endless_config_is_read_no_further_than_a_config_can_be():
    assert_one_line_error(invoke(["verify", "--config", "/dev/zero"]), "/dev/zero is larger than 1 MB")


def test_mlp_with_more_layers_than_sixteen_dimensions_runs(run):
    report = run(model="mlp", layers=15, trials=2, config=None, shape=None)
    assert report.passed, [(c.name, c.status) for c in report.failed]
    # The built-in closed form defines the first 8 layers' gradients; the deeper ones are missing.
    statuses = {c.name: c.status for c in report.checks}
    assert statuses["grad_W8"] == statuses["grad_b8"] == "pass"
    assert statuses["grad_W15"] == statuses["grad_b15"] == "missing"


# ------------------------------------------------------------------------------- case and values


def _edited(cases, tmp_path: Path, change) -> Path:
    doc = json.loads(cases["json"].read_text())
    change(doc)
    path = tmp_path / "edited.json"
    path.write_text(json.dumps(doc))
    return path


def test_a_non_finite_case_array_is_refused_by_name_and_index(cases, grad_beta_values, tmp_path):
    case = _edited(cases, tmp_path, lambda d: d["arrays"]["G1"][3].__setitem__(2, float("inf")))
    assert_one_line_error(invoke(["verify-values", case, grad_beta_values]), "array G1 holds inf at [3, 2]", "finite")


def test_an_integer_too_large_for_a_float_is_one_line_in_a_case_and_fails_as_a_value(cases, grad_beta_values, tmp_path):
    case = tmp_path / "big.json"
    case.write_text(cases["json"].read_text().replace('"gamma": [', '"gamma": [1' + "0" * 400 + ", ", 1))
    text = invoke(["verify-values", case, grad_beta_values]).output
    assert "array gamma holds an integer of 401 digits at [0], too large for a float64" in text
    values = tmp_path / "values.json"
    values.write_text('{"arrays": {"grad_beta": [1, 2, 3, 1' + "0" * 400 + "]}}")
    result = invoke(["verify-values", cases["json"], values, "--json", "-"])
    assert result.exit_code == 1
    check = next(c for c in json.loads(result.stdout)["checks"] if c["name"] == "grad_beta")
    assert check["diagnosis"]["message"] == "grad_beta holds an integer of 401 digits at [3], too large for a float64"


@pytest.mark.parametrize("which", ["case", "values"])
def test_json_nested_5000_deep_is_one_line(cases, grad_beta_values, tmp_path, which):
    deep = tmp_path / "deep.json"
    deep.write_text('{"model": "bn-mlp", "arrays": {"grad_beta": ' + "[" * 5000 + "]" * 5000 + "}}")
    args = [deep, grad_beta_values] if which == "case" else [cases["json"], deep]
    assert_one_line_error(invoke(["verify-values", *args]), f"{which}: {deep} holds JSON nested too deep")


def _npz_declaring(path: Path, name: str, shape: tuple[int, ...], data: bytes = b"") -> Path:
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False, "shape": shape})
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(f"{name}.npy", header.getvalue() + data)
    return path


def test_an_npz_header_declaring_a_trillion_floats_is_refused_unread(cases, tmp_path):
    values = _npz_declaring(tmp_path / "huge.npz", "grad_G1", (10**12,))
    assert_one_line_error(
        invoke(["verify-values", cases["json"], values]), "grad_G1 declares shape (1000000000000,)", "refused unread"
    )


def test_a_case_array_is_refused_by_its_declared_shape(cases, grad_beta_values, tmp_path):
    case = tmp_path / "case.npz"
    with zipfile.ZipFile(cases["npz"]) as src, zipfile.ZipFile(case, "w") as zf:
        for info in src.infolist():
            if info.filename != "X.npy":
                zf.writestr(info, src.read(info))
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False, "shape": (10**12,)})
    with zipfile.ZipFile(case, "a") as zf:
        zf.writestr("X.npy", header.getvalue())
    assert_one_line_error(invoke(["verify-values", case, grad_beta_values]), "array X has shape (1000000000000,)")


def test_values_past_the_memory_budget_are_refused_unread(cases, tmp_path):
    values = tmp_path / "values.npz"
    np.savez(values, grad_G1=np.zeros((200, 200)), grad_beta=np.zeros(4))  # 40,000 numbers, 0.3 MB
    assert_one_line_error(
        invoke(["verify-values", cases["json"], values, "--max-memory-mb", "0.1"]), "past --max-memory-mb 0.1"
    )
    big = tmp_path / "values.json"
    big.write_text(json.dumps({"arrays": {"grad_G1": np.zeros((7, 4)).tolist(), "pad": [0.0] * 200_000}}))
    assert_one_line_error(invoke(["verify-values", cases["json"], big, "--max-memory-mb", "1"]), "values.json would take")


def test_a_small_npz_inflating_to_2_gib_is_refused_in_little_memory(cases, tmp_path):
    """The issue's values file: 2 GiB of float64 zeros, deflated to a few MB. Refused from its header,
    before a byte of it is inflated; the process's peak memory is the interpreter and JAX."""
    bomb = tmp_path / "bomb.npz"
    count = 2**28
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False, "shape": (count,)})
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        with zf.open("grad_G1.npy", "w", force_zip64=True) as fh:
            fh.write(header.getvalue())
            zeros = bytes(2**24)
            for _ in range(count * 8 // len(zeros)):
                fh.write(zeros)
    assert bomb.stat().st_size < 16 * 2**20
    script = (
        "import sys\n"
        "from bncheck.cli import app\n"
        "try:\n"
        "    app(sys.argv[1:])\n"
        "finally:\n"
        # VmHWM, the peak of this process's own memory: ru_maxrss also counts what the forking parent
        # (a large pytest process) held before exec.
        "    hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]\n"
        "    print('peak', hwm, file=sys.stderr)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(CODE), "BNCHECK_COMPILE_CACHE": "off"}
    done = subprocess.run(
        [sys.executable, "-c", script, "verify-values", str(cases["json"]), str(bomb)],
        env=env, capture_output=True, text=True, check=False,
    )
    error, peak = done.stderr.strip().splitlines()
    assert done.returncode == 2, done.stderr
    assert error.startswith("bncheck: error: values:") and "grad_G1 declares shape (268435456,)" in error
    assert int(peak.split()[1]) < 1024 * 1024  # kB: under 1 GiB, where reading it would take 2 GiB
