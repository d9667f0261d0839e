"""`bncheck case export` and `bncheck verify-values`: one draw out, values computed elsewhere back in.

The program standing for "elsewhere" is tests/external/bn_mlp_values.py, run as a subprocess: it reads
the case with json, csv and numpy only, and knows nothing of bncheck.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from types import ModuleType, SimpleNamespace

import numpy as np
import pytest
from conftest import REPO
from test_cli import assert_one_line_error, invoke

EXTERNAL = REPO / "tests" / "external" / "bn_mlp_values.py"
# The seed question's conventions and shape, at a seed whose draw sits on no relu kink.
SEED_QUESTION = ["--shape", "N=10,p1=7,p2=4", "--seed", "3", "--ddof", "1", "--eps", "0"]
GRADIENTS = ("grad_beta", "grad_gamma", "grad_G1", "grad_G2")
JACOBIANS = ("jac_B_beta", "jac_B_gamma", "jac_B_G1")


def export(out: Path, *args: str) -> Path:
    result = invoke(["case", "export", *args, "--out", out])
    assert result.exit_code == 0, result.output
    return out


def external(case: Path, out: Path, *flags: str) -> Path:
    subprocess.run([sys.executable, EXTERNAL, case, out, *flags], check=True)
    return out


def verify_values(case: Path, values: Path, tmp_path: Path, *args: str) -> tuple[int, dict]:
    report = tmp_path / "report.json"
    result = invoke(["verify-values", case, values, "--json", report, *args])
    assert result.exit_code in (0, 1), result.output
    return result.exit_code, json.loads(report.read_text())


def by_name(report: dict) -> dict[str, dict]:
    return {c["name"]: c for c in report["checks"]}


@pytest.fixture(scope="module")
def cases(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("cases")
    return {
        "json": export(folder / "case.json", *SEED_QUESTION),
        "npz": export(folder / "case.npz", *SEED_QUESTION),
        "csv": export(folder / "case", *SEED_QUESTION, "--format", "csv"),
    }


@pytest.fixture(scope="module")
def correct(cases, tmp_path_factory) -> dict:
    """The closed-form values the external program computes, as arrays."""
    out = external(cases["json"], tmp_path_factory.mktemp("values") / "values.json")
    return {name: np.array(v) for name, v in json.loads(out.read_text())["arrays"].items()}


# ------------------------------------------------------------------------------------------ export


def test_the_three_layouts_hold_the_same_draw(cases):
    doc = json.loads(cases["json"].read_text())
    assert doc["model"] == "bn-mlp"
    assert doc["settings"] == {
        "activation": "relu", "ddof": 1, "eps": 0.0, "dtype": "float64", "seed": 3,
        "shape": {"N": 10, "p1": 7, "p2": 4, "k": 1},
    }
    arrays = {name: np.array(v) for name, v in doc["arrays"].items()}
    assert {name: a.shape for name, a in arrays.items()} == {
        "X": (10, 7), "y": (10, 1), "G1": (7, 4), "G2": (4, 1), "gamma": (4,), "beta": (4,),
    }
    assert set(doc["forward"]) >= {"H", "mu", "sigma", "Hhat", "B", "A", "dA", "yhat", "resid"}
    assert np.array(doc["forward"]["sigma"]).shape == (4,)

    with np.load(cases["npz"]) as npz:
        assert json.loads(str(npz["settings.json"]))["settings"] == doc["settings"]
        for name, a in arrays.items():
            np.testing.assert_array_equal(npz[name], a)
        np.testing.assert_array_equal(npz["forward/Hhat"], doc["forward"]["Hhat"])

    folder = cases["csv"]
    assert json.loads((folder / "settings.json").read_text())["settings"] == doc["settings"]
    for name, a in arrays.items():
        # 17 significant digits: every float64 reads back exactly; a vector is one value per line.
        np.testing.assert_array_equal(np.loadtxt(folder / f"{name}.csv", delimiter=",", ndmin=2), a.reshape(a.shape[0], -1))
    np.testing.assert_array_equal(np.loadtxt(folder / "forward" / "B.csv", delimiter=","), doc["forward"]["B"])


def test_export_is_the_draw_verify_checks_after_a_relu_kink_redraw(tmp_path):
    from bncheck import verify

    # At this shape and seed the first arrays put a pre-activation within float32's kink margin:
    # verify redraws.
    shape, seed = "N=64,p1=3,p2=16", 0
    args = ("--shape", shape, "--seed", str(seed), "--dtype", "float32")
    doc = json.loads(export(tmp_path / "kink.json", *args).read_text())
    assert doc["attempt"] >= 1

    seen = {}

    def grad_beta(ctx):
        seen.update(vars(ctx))
        return np.zeros(16)

    recorder = ModuleType("recorder")
    recorder.grad_beta = grad_beta
    verify(recorder, shape=shape, seed=seed, trials=1, dtype="float32")
    for name, value in doc["arrays"].items():
        np.testing.assert_array_equal(seen[name], np.array(value), err_msg=name)
    for name in ("H", "sigma", "B", "dA"):
        np.testing.assert_allclose(seen[name], np.array(doc["forward"][name]), rtol=1e-6, atol=1e-7, err_msg=name)


# ----------------------------------------------------------------------------------- verify-values


@pytest.mark.parametrize("layout", ["json", "csv"])
def test_values_computed_by_another_program_verify(cases, tmp_path, layout):
    out = tmp_path / ("values.json" if layout == "json" else "values")
    values = external(cases[layout], out)
    status, report = verify_values(cases[layout], values, tmp_path)
    assert status == 0
    assert report["passed"] and report["draws"] == 1
    assert {n for n, c in by_name(report).items() if c["status"] == "pass"} == {*GRADIENTS, *JACOBIANS}


def test_a_dropped_inv_n_fails_with_its_diagnosis(cases, tmp_path):
    values = external(cases["csv"], tmp_path / "slipped", "--drop-inv-n")
    junit = tmp_path / "report.xml"
    status, report = verify_values(cases["csv"], values, tmp_path, "--junit", str(junit))
    assert status == 1
    checks = by_name(report)
    assert {n for n, c in checks.items() if not c["passed"]} == {"grad_G2"}
    diagnosis = checks["grad_G2"]["diagnosis"]
    assert diagnosis["code"] == "scale" and diagnosis["factor_name"] == "N"
    assert diagnosis["factor"] == pytest.approx(10)
    assert checks["grad_G2"]["replay"] == f"bncheck verify-values {cases['csv']} {values}"
    failures = [t.get("name") for t in ET.parse(junit).iter("testcase") if t.find("failure") is not None]
    assert failures == ["grad_G2"]


def test_npz_values_and_an_unreadable_entry(cases, correct, tmp_path):
    values = tmp_path / "values.npz"
    np.savez(values, **{**correct, "grad_G1": np.array(["a", "b"])})
    status, report = verify_values(cases["npz"], values, tmp_path)
    checks = by_name(report)
    assert status == 1
    assert {n for n, c in checks.items() if not c["passed"]} == {"grad_G1"}
    assert checks["grad_G1"]["diagnosis"]["message"] == "grad_G1 holds <U1 values, not numbers"


def test_wrong_shapes_non_numbers_and_unknown_names_fail_their_checks(cases, correct, tmp_path):
    values = tmp_path / "values.json"
    arrays = {name: v.tolist() for name, v in correct.items()}
    arrays.update({
        # The seed question's update 4: a p2×p2 matrix where a vector belongs.
        "grad_gamma": np.outer(correct["grad_gamma"], correct["grad_gamma"]).tolist(),
        "grad_beta": [1.0, "abc", 3.0, 4.0],
        "grad_G2": [[1.0], [2.0, 3.0]],
        "grad_G_1": arrays["grad_G1"],
        "jvp_B_beta": [1.0],
    })
    values.write_text(json.dumps({"arrays": arrays}))
    status, report = verify_values(cases["json"], values, tmp_path)
    assert status == 1
    checks = by_name(report)
    assert {n: c["status"] for n, c in checks.items() if not c["passed"]} == {
        "grad_gamma": "fail", "grad_beta": "fail", "grad_G2": "fail", "grad_G_1": "error", "jvp_B_beta": "error",
    }
    assert checks["grad_gamma"]["diagnosis"]["code"] == "shape"
    assert checks["grad_gamma"]["diagnosis"]["message"].startswith("returned shape (4, 4), expected (4,)")
    assert checks["grad_beta"]["diagnosis"]["message"] == 'grad_beta holds "abc" at [1], not a number'
    assert "ragged" in checks["grad_G2"]["diagnosis"]["message"]
    assert checks["grad_G_1"]["diagnosis"]["code"] == "unknown-name"
    assert "did you mean grad_G1?" in checks["grad_G_1"]["message"]
    assert "give jac_B_beta instead" in checks["jvp_B_beta"]["message"]
    assert checks["grad_G1"]["status"] == "pass"


def test_csv_values_with_r_missing_values_and_a_header(cases, tmp_path):
    values = external(cases["csv"], tmp_path / "values")
    (values / "grad_beta.csv").write_text("1\nNA\n3\n4\n")
    (values / "grad_G2.csv").write_text("V1\n1\n2\n3\n4\n")
    status, report = verify_values(cases["csv"], values, tmp_path)
    checks = by_name(report)
    assert status == 1
    assert checks["grad_beta"]["diagnosis"]["message"] == "grad_beta holds 'NA' at line 2 of grad_beta.csv, not a number"
    assert checks["grad_G2"]["diagnosis"]["message"] == "grad_G2 holds 'V1' at line 1 of grad_G2.csv, not a number"
    assert checks["grad_G1"]["passed"] and checks["jac_B_G1"]["passed"]


def test_values_may_come_flat_without_the_arrays_object(cases, correct, tmp_path):
    # {"grad_beta": [...], ...} as well as {"arrays": {...}} (issue 16): the same report.
    arrays = {name: correct[name].tolist() for name in GRADIENTS}
    arrays["grad_G2"] = (10 * correct["grad_G2"]).tolist()  # N times too large, to be named
    flat, nested = tmp_path / "flat.json", tmp_path / "nested.json"
    flat.write_text(json.dumps(arrays))
    nested.write_text(json.dumps({"arrays": arrays}))
    (status, report), (again, want) = verify_values(cases["json"], flat, tmp_path), verify_values(cases["json"], nested, tmp_path)
    assert status == again == 1
    assert {n: c["status"] for n, c in by_name(report).items()} == {n: c["status"] for n, c in by_name(want).items()}
    assert by_name(report)["grad_G2"]["diagnosis"]["factor_name"] == "N"
    assert {n for n, c in by_name(report).items() if c["status"] == "pass"} == {"grad_beta", "grad_gamma", "grad_G1"}


# ------------------------------------------------------------------------------- exit 2, one line


def _case_with(cases, tmp_path, change) -> Path:
    doc = json.loads(cases["json"].read_text())
    change(doc)
    path = tmp_path / "edited.json"
    path.write_text(json.dumps(doc))
    return path


@pytest.mark.parametrize(
    "which, content, fragment",
    [
        ("values", None, "values: no such file or folder"),
        ("values", "{", "holds invalid JSON"),
        ("values", '[[1, 2, 3, 4]]', 'holds no "arrays" object'),
        ("values", '{"arrays": {}}', "holds no arrays"),
        ("values.npz", "not a zip", "is not an npz file"),
        ("values.txt", "1,2", "cannot tell the layout"),
        ("case", '{"arrays": {"X": [[1]]}}', 'holds no "model" and "settings"'),
    ],
)
def test_unreadable_files_are_one_line_errors(cases, tmp_path, which, content, fragment):
    path = tmp_path / (which if "." in which else f"{which}.json")
    if content is not None:
        path.write_text(content)
    args = [cases["json"], path] if which.startswith("values") else [path, cases["json"]]
    assert_one_line_error(invoke(["verify-values", *args]), fragment)


@pytest.mark.parametrize(
    "change, fragment",
    [
        (lambda d: d["arrays"].update(X=d["arrays"]["X"][:-1]), "array X has shape (9, 7), expected (10, 7)"),
        (lambda d: d["arrays"].update(gamma=[1, None, 3, 4]), "array gamma holds null at [1], not a number"),
        (lambda d: d["arrays"].pop("beta"), "missing beta"),
        (lambda d: d["settings"].update(lr=0.1), "unknown setting 'lr'"),
        (lambda d: d["settings"].update(ddof="one"), "ddof must be an integer"),
        (lambda d: d.update(model="resnet"), "unknown model 'resnet'"),
    ],
)
def test_malformed_cases_are_one_line_errors(cases, correct, tmp_path, change, fragment):
    values = tmp_path / "values.json"
    values.write_text(json.dumps({"arrays": {"grad_beta": correct["grad_beta"].tolist()}}))
    assert_one_line_error(invoke(["verify-values", _case_with(cases, tmp_path, change), values]), fragment)


def test_export_flags_are_checked(tmp_path):
    assert_one_line_error(
        invoke(["case", "export", "--shape", "N=4,p1=2,p2=2", "--out", tmp_path / "c", "--format", "xml"]),
        "format: unknown format 'xml'",
    )
    assert_one_line_error(
        invoke(["case", "export", "--shape", "N=1,p1=2,p2=2", "--ddof", "1", "--out", tmp_path / "c.json"]), "shape:"
    )
    assert_one_line_error(
        invoke(["case", "export", "--shape", "N=4,p1=2,p2=2", "--out", tmp_path / "no" / "c.json"]), "cannot write"
    )


# ------------------------------------------------------------------------------------- the R example


@pytest.mark.skipif(shutil.which("Rscript") is None, reason="Rscript is not on the PATH (Debian: r-base-core)")
def test_the_r_round_trip_catches_the_authors_slips(tmp_path):
    report_path = tmp_path / "report.json"
    env = {**os.environ, "BNCHECK": f"{sys.executable} -m bncheck", "PYTHONPATH": str(REPO)}
    script = REPO / "examples" / "r" / "round_trip.sh"
    done = subprocess.run(
        ["sh", script, tmp_path, "--json", report_path], env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 1, done.stdout + done.stderr
    checks = by_name(json.loads(report_path.read_text()))
    assert {n for n, c in checks.items() if c["status"] == "fail"} == set(GRADIENTS)
    assert checks["grad_G2"]["diagnosis"]["factor_name"] == "N"
    assert checks["grad_gamma"]["diagnosis"]["code"] == "shape"
    assert checks["grad_gamma"]["diagnosis"]["repair"] == "diagonal"
    # The posted ap() is 1 everywhere, so grad_beta = 1'(-2 u G2'): relu' taken as 1, and the mean's 1/N
    # left out. R read the case and wrote its values back faithfully: the same formula in NumPy gives
    # the same numbers.
    assert checks["grad_beta"]["diagnosis"]["code"] == "activation-derivative"
    assert checks["grad_beta"]["diagnosis"]["factor_name"] == "N"
    assert checks["grad_gamma"]["diagnosis"]["repaired"]["code"] == "activation-derivative"
    case = {name: np.loadtxt(tmp_path / "case" / f"{name}.csv", delimiter=",", ndmin=2) for name in ("X", "y", "G1", "G2")}
    gamma, beta = (np.loadtxt(tmp_path / "case" / f"{name}.csv") for name in ("gamma", "beta"))
    H = case["X"] @ case["G1"]
    B = gamma * (H - H.mean(axis=0)) / H.std(axis=0, ddof=1) + beta
    u = case["y"] - np.maximum(B, 0) @ case["G2"]
    expected = (-2 * u @ case["G2"].T).sum(axis=0)
    np.testing.assert_allclose(np.loadtxt(tmp_path / "grads" / "grad_beta.csv"), expected, rtol=1e-12)


def test_a_model_file_case_whose_forward_record_serves_as_ctx(tmp_path):
    """The forward record is what a derivation's ctx holds: layer norm's own NumPy derivation, run on
    the exported arrays and forward fields alone, verifies, and a slip in it is named."""
    import importlib.util

    example = REPO / "examples" / "layernorm"
    case = export(tmp_path / "case.json", "--model", str(example / "model.py"), "--shape", "N=3,D=4", "--seed", "2")
    doc = json.loads(case.read_text())
    assert set(doc["forward"]) >= {"R", "mu", "sigma", "xhat", "y"}
    # The model file by name and digest, never by path: the case is data, checked against --model.
    assert doc["model"] == "model.py"
    assert doc["model_sha256"] == hashlib.sha256((example / "model.py").read_bytes()).hexdigest()
    ctx = SimpleNamespace(**{n: np.array(v) for n, v in {**doc["arrays"], **doc["forward"]}.items()}, N=3, D=4)
    spec = importlib.util.spec_from_file_location("layernorm_correct", example / "correct.py")
    derivation = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(derivation)
    arrays = {n: getattr(derivation, n)(ctx).tolist() for n in ("grad_beta", "grad_gamma", "grad_x", "grad_dout")}
    arrays["grad_x"] = (3 * np.array(arrays["grad_x"])).tolist()  # a stray factor N
    values = tmp_path / "values.json"
    values.write_text(json.dumps({"arrays": arrays}))
    status, report = verify_values(case, values, tmp_path, "--model", str(example / "model.py"))
    checks = by_name(report)
    assert status == 1
    assert {n for n, c in checks.items() if c["status"] == "pass"} == {"grad_beta", "grad_gamma", "grad_dout"}
    assert checks["grad_x"]["diagnosis"]["factor_name"] == "N"
    assert checks["grad_x"]["replay"] == f"bncheck verify-values {case} {values} --model {example / 'model.py'}"
