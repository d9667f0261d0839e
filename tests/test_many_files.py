"""Many files in one run (CONTRACT §8): `bncheck verify A.py B.py ...` and `verify-backward` with several
files check each against the same draws, sharing the compiles, with one summary line per file, one JSON
and one JUnit for all."""

from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

from conftest import DERIVATIONS, REPO
from test_cli import assert_one_line_error, invoke

from bncheck import verify, verify_files

BN_LAYER = DERIVATIONS / "bn_layer"
# A right bn-layer derivation in NumPy (tests run JAX with rank promotion refused).
CORRECT = REPO / "bncheck" / "derivations" / "bn_layer_closed_form.py"
FLAGS = ["--model", "bn-layer", "--trials", "6", "--shape", "N=5,D=3"]


def _broken(tmp_path: Path) -> Path:
    broken = tmp_path / "broken.py"
    broken.write_text("import numpy as np\n\ndef grad_x(ctx):\n    return ctx.x\n\nnot_defined_anywhere()\n")
    return broken


def test_a_broken_a_failing_and_a_passing_file_give_one_summary_and_exit_1(tmp_path):
    broken, failing, passing = _broken(tmp_path), BN_LAYER / "slip_dropped_inv_n.py", CORRECT
    out, xml = tmp_path / "all.json", tmp_path / "all.xml"
    result = invoke(["verify", broken, failing, passing, *FLAGS, "--json", out, "--junit", xml])
    assert result.exit_code == 1, result.output
    lines = result.output.splitlines()
    summary = [line for line in lines if line.split()[:1] in (["PASS"], ["FAIL"], ["ERROR"])][-4:]
    assert summary[0].startswith("ERROR") and str(broken) in summary[0] and "NameError" in summary[0]
    assert summary[1].startswith("FAIL") and str(failing) in summary[1] and "checks failed: grad_x (" in summary[1]
    assert summary[2].startswith("PASS") and str(passing) in summary[2]
    assert summary[3] == "FAIL  2 of 3 files failed"

    report = json.loads(out.read_text())
    assert set(report) == {"passed", "files"} and report["passed"] is False
    assert [f["derivation"] for f in report["files"]] == [str(broken), str(failing), str(passing)]
    assert [f["passed"] for f in report["files"]] == [False, False, True]
    assert "not_defined_anywhere" in report["files"][0]["error"] and report["files"][0]["checks"] == []
    assert "error" not in report["files"][1] and "error" not in report["files"][2]
    # The same draws for every file.
    assert report["files"][1]["draws"] == report["files"][2]["draws"] == 6

    suites = ET.parse(xml).getroot().findall("testsuite")
    assert [s.get("name") for s in suites] == [f"bncheck.bn-layer.{f}" for f in (broken, failing, passing)]
    assert [s.get("errors") for s in suites] == ["1", "0", "0"] and int(suites[1].get("failures")) > 0


def test_each_file_of_many_gets_the_verdicts_it_gets_alone(tmp_path):
    files = [BN_LAYER / "slip_batch_stats_constant.py", CORRECT, BN_LAYER / "slip_dropped_mean_path.py"]
    together = verify_files([str(f) for f in files], model="bn-layer", trials=6, shape="N=5,D=3")
    for file, report in zip(files, together.files):
        alone = verify(str(file), model="bn-layer", trials=6, shape="N=5,D=3")
        assert [(c.name, c.status, (c.diagnosis or {}).get("code"), c.replay) for c in report.checks] == \
            [(c.name, c.status, (c.diagnosis or {}).get("code"), c.replay) for c in alone.checks]


def test_files_of_the_same_functions_share_every_compile(monkeypatch, tmp_path):
    """Three files against the same draws build no more programs than one does."""
    import bncheck.references as references

    built = []
    build = references.build
    monkeypatch.setattr(references, "build", lambda *args, **kwargs: built.append(args[2]) or build(*args, **kwargs))
    correct = CORRECT
    copies = [shutil.copy(correct, tmp_path / f"copy{i}.py") for i in range(2)]
    verify(str(correct), model="bn-layer", trials=4, shape="N=5,D=3")
    alone = list(built)
    built.clear()
    assert verify_files([str(correct), *map(str, copies)], model="bn-layer", trials=4, shape="N=5,D=3").passed
    assert built == alone


def test_no_file_that_can_be_checked_is_one_line_and_exit_2(tmp_path):
    second = tmp_path / "second.py"
    second.write_text("def grad_x(ctx):\n    return ctx.x\nraise RuntimeError('not today')\n")
    result = invoke(["verify", _broken(tmp_path), second, *FLAGS])
    assert_one_line_error(result, "no file could be checked", "broken.py", "second.py:3", "not today")


def test_a_single_file_keeps_its_json_shape(tmp_path):
    out = tmp_path / "one.json"
    assert invoke(["verify", CORRECT, *FLAGS, "--json", out]).exit_code == 0
    report = json.loads(out.read_text())
    assert "files" not in report and "error" not in report and report["derivation"].endswith("bn_layer_closed_form.py")


def test_verify_backward_with_a_class_of_layer_files(tmp_path):
    """The README's class: Alice right, Bob's dx off by N, Carol's backward pass not written."""
    alice, bob, carol = (REPO / "examples" / "class" / f"{name}.py" for name in ("alice", "bob", "carol"))
    out = tmp_path / "class.json"
    result = invoke(["verify-backward", alice, bob, carol, "--model", "bn-layer",
                     "--forward", 'batchnorm_forward(x, gamma, beta, {"mode": "train", "eps": eps})',
                     "--backward", "batchnorm_backward(dout, cache)", "--wrt", "x,gamma,beta", "--trials", "4",
                     "--json", out])
    assert result.exit_code == 1, result.output
    files = json.loads(out.read_text())["files"]
    assert [f["passed"] for f in files] == [True, False, False]
    failed = {c["name"]: c["diagnosis"] for c in files[1]["checks"] if not c["passed"]}
    assert list(failed) == ["grad_x"] and failed["grad_x"]["factor_name"] == "N"
    assert "--backward reads batchnorm_backward, which neither carol.py defines" in files[2]["error"]
    replay = next(c["replay"] for c in files[1]["checks"] if c["name"] == "grad_x")
    assert replay.startswith(f"bncheck verify-backward {bob} --forward")
