"""bncheck as a CI gate: the JUnit file (xunit2), the error map in the reports, and
bncheck.testing.assert_derivation."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import xml.etree.ElementTree as ET

import pytest
from conftest import DERIVATIONS, REPO
from typer.testing import CliRunner

import bncheck
import bncheck.pipeline
from bncheck.cli import app
from bncheck.testing import assert_derivation

TINY = ["--trials", "3", "--shape", "N=5,p1=3,p2=2,k=1"]

# grad_beta raises, grad_G2 drops the 1/N of the loss, grad_gamma is right: an error, a failure, a pass.
MIXED = '''\
import numpy as np


def _D(ctx):
    return (-2.0 / ctx.N) * (np.asarray(ctx.resid) @ np.asarray(ctx.G2).T) * np.asarray(ctx.dA)


def grad_beta(ctx):
    return _D(ctx).sum(axis=0) / ctx.no_such_field


def grad_gamma(ctx):
    return (_D(ctx) * np.asarray(ctx.Hhat)).sum(axis=0)


def grad_G2(ctx):
    return -2.0 * np.asarray(ctx.A).T @ np.asarray(ctx.resid)
'''

# The attributes the xunit2 schema (JUnit 10, as pytest's junit_family=xunit2 writes) allows.
XUNIT2 = {
    "testsuites": {"name", "time", "tests", "failures", "disabled", "errors"},
    "testsuite": {"name", "tests", "failures", "errors", "group", "time", "skipped", "timestamp", "hostname",
                  "id", "package", "file", "log", "url", "version"},
    "testcase": {"name", "assertions", "time", "timestamp", "classname", "status", "class", "file", "line",
                 "log", "group", "url"},
    "failure": {"message", "type"},
    "error": {"message", "type"},
    "skipped": {"message"},
}


def invoke(args):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    out = tmp_path_factory.mktemp("mixed")
    path = out / "mixed.py"
    path.write_text(MIXED, encoding="utf-8")
    result = invoke(["verify", path, *TINY, "--json", out / "report.json", "--junit", out / "report.xml"])
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    return result, report, ET.parse(out / "report.xml").getroot(), path


def test_junit_is_xunit2_with_one_testcase_per_check(mixed):
    result, report, root, path = mixed
    assert result.exit_code == 1
    for element in root.iter():
        assert element.tag in XUNIT2, element.tag
        assert set(element.attrib) <= XUNIT2[element.tag], (element.tag, element.attrib)
    assert root.tag == "testsuites"
    (suite,) = root.findall("testsuite")
    cases = suite.findall("testcase")
    names = [case.get("name") for case in cases]
    assert sorted(names) == sorted(c["name"] for c in report["checks"]) and len(set(names)) == len(names)
    assert all(case.get("classname") for case in cases)
    # The counts agree with the cases, as a CI system reads them.
    for kind, key in (("failure", "failures"), ("error", "errors"), ("skipped", "skipped")):
        assert int(suite.get(key)) == sum(len(case.findall(kind)) for case in cases), key
    assert int(suite.get("tests")) == len(cases) == int(root.get("tests"))

    by_name = {case.get("name"): case for case in cases}
    (error,) = by_name["grad_beta"].findall("error")
    assert error.get("type") == "exception" and "no_such_field" in error.get("message")
    assert f"{path}:9: return _D(ctx).sum(axis=0) / ctx.no_such_field" in error.text  # the user's own frame
    (failure,) = by_name["grad_G2"].findall("failure")
    assert failure.get("type") == "scale" and "off by a factor of N" in failure.get("message")
    assert "got " in failure.text and "want " in failure.text  # the worst entries
    assert list(by_name["grad_gamma"]) == []
    assert by_name["grad_G1"].find("skipped").get("message") == "not defined"


def test_the_error_map_is_in_the_json_and_on_the_terminal(mixed):
    result, report, _, _ = mixed
    G2 = next(c for c in report["checks"] if c["name"] == "grad_G2")
    m = G2["error_map"]
    assert m["shape"] == [2, 1] and len(m["grid"]) == 2
    assert m["entries"] and all(e["ratio"] == pytest.approx(5.0) for e in m["entries"])  # N = 5
    assert max(e["abs_err"] for e in m["entries"]) == m["max"] == pytest.approx(G2["max_abs_err"])
    assert "|got − ref| at the worst draw" in result.output and "█" in result.output
    assert next(c for c in report["checks"] if c["name"] == "grad_gamma")["error_map"] is None


def load(path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("as_module", [False, True], ids=["path", "module"])
def test_assert_derivation_passes_a_correct_derivation(as_module):
    path = DERIVATIONS / "correct_numpy.py"
    report = assert_derivation(load(path) if as_module else path, trials=3, shape="N=5,p1=3,p2=2,k=1")
    assert report.passed and report.checks


@pytest.mark.parametrize("as_module", [False, True], ids=["path", "module"])
def test_assert_derivation_raises_with_the_report_text(as_module):
    path = DERIVATIONS / "slip_dropped_inv_n.py"
    with pytest.raises(AssertionError) as raised:
        bncheck.assert_derivation(str(path) if not as_module else load(path), trials=3, shape="N=5,p1=3,p2=2,k=1")
    text = str(raised.value)
    assert "grad_G2  scale: off by a factor of N (= 5 at N = 5)" in text
    assert "replay: bncheck verify" in text and "FAIL  1 of 10 checks failed" in text
    assert "\x1b[" not in text  # plain text, no terminal codes


def test_assert_derivation_takes_a_config(tmp_path):
    config = tmp_path / "gate.toml"
    config.write_text(textwrap.dedent('''\
        require = "all"
        shape = "N=5,p1=3,p2=2,k=1"
        [sweep]
        trials = 2
    '''), encoding="utf-8")
    with pytest.raises(AssertionError, match="required but not defined"):
        assert_derivation(DERIVATIONS / "slip_dropped_inv_n.py", config=config)


# ------------------------------------------------------------------ a gate that user code cannot end with 0

SMALL_RUN = ["--shape", "N=4,p1=2,p2=2", "--trials", "2"]


def bncheck_process(args, cwd=None, **kwargs) -> subprocess.CompletedProcess:
    """`python -m bncheck ARGS` in a process of its own: for exits, signals, descriptors and encodings,
    which an in-process runner cannot show."""
    env = {**os.environ, "PYTHONPATH": str(REPO), **kwargs.pop("env", {})}
    return subprocess.run(
        [sys.executable, "-m", "bncheck", *map(str, args)], cwd=cwd, env=env, capture_output=True, text=True,
        timeout=300, **kwargs,
    )


def assert_no_pass(proc: subprocess.CompletedProcess) -> None:
    """A failed check (1) or one line of error (2): never 0, never a traceback."""
    assert proc.returncode in (1, 2), (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr + proc.stdout
    if proc.returncode == 2:
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("bncheck: error:"), proc.stderr


EXITS = {
    "sys-exit-0-in-a-function": "import sys\n\n\ndef grad_beta(ctx):\n    sys.exit(0)\n",
    "sys-exit-0-at-import": "import sys\n\nsys.exit(0)\n\n\ndef grad_beta(ctx):\n    return 0\n",
    "exit-none-in-a-function": "def grad_beta(ctx):\n    raise SystemExit\n",
    "generator-exit-in-a-function": "def grad_beta(ctx):\n    raise GeneratorExit('closed')\n",
    "base-exception-at-import": "class Stop(BaseException):\n    pass\n\n\nraise Stop('no')\n",
}


@pytest.mark.parametrize("source", EXITS.values(), ids=EXITS.keys())
def test_a_derivation_that_exits_never_passes_the_cli(tmp_path, source):
    path = tmp_path / "exits.py"
    path.write_text(source, encoding="utf-8")
    assert_no_pass(bncheck_process(["verify", path, *SMALL_RUN]))


def test_a_model_file_that_exits_never_passes(tmp_path):
    model = tmp_path / "model.py"
    model.write_text("import sys\n\nsys.exit(0)\n", encoding="utf-8")
    assert_no_pass(bncheck_process(["verify", "--model", model, "--trials", "1"]))
    assert_no_pass(bncheck_process(["models", model]))


class Stop(BaseException):
    pass


@pytest.mark.parametrize(
    "raised, named",
    [(SystemExit(0), "SystemExit(0)"), (SystemExit(None), "SystemExit(None)"), (GeneratorExit(), "GeneratorExit()"),
     (Stop("odd"), "Stop('odd')")],
    ids=["sys-exit-0", "sys-exit-none", "generator-exit", "base-exception"],
)
def test_a_base_exception_escaping_the_run_is_one_line_and_exit_2(monkeypatch, raised, named):
    # The CLI's last line of defence, whatever the call sites catch: nothing that reaches it ends the
    # process with the status it carries.
    def stopped(*args, **kwargs):
        raise raised

    monkeypatch.setattr(bncheck.pipeline, "verify", stopped)
    result = invoke(["verify", *SMALL_RUN])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bncheck: error: stopped by " + named), result.output

    debug = invoke(["verify", *SMALL_RUN, "--debug"])
    assert debug.exit_code == 2 and "Traceback" in debug.output and "bncheck: error: stopped by" in debug.output


def test_ctrl_c_says_interrupted_and_exits_130(tmp_path):
    started = tmp_path / "started"
    path = tmp_path / "slow.py"
    path.write_text(
        f"import pathlib, time\n\n\ndef grad_beta(ctx):\n    pathlib.Path({str(started)!r}).touch()\n    time.sleep(120)\n",
        encoding="utf-8",
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "bncheck", "verify", str(path), *SMALL_RUN], env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not started.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert started.exists(), proc.communicate()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, (out, err)
    assert err.strip().splitlines() == ["bncheck: interrupted"], err


@pytest.mark.parametrize("source", [EXITS["sys-exit-0-in-a-function"], EXITS["sys-exit-0-at-import"],
                                    EXITS["generator-exit-in-a-function"]], ids=["function", "import", "generator-exit"])
def test_assert_derivation_never_passes_a_derivation_that_exits(tmp_path, source):
    path = tmp_path / "exits.py"
    path.write_text(source, encoding="utf-8")
    with pytest.raises((AssertionError, bncheck.BncheckError)):
        assert_derivation(path, shape="N=4,p1=2,p2=2", trials=2)
