"""bncheck as a CI gate: the JUnit file (xunit2), the error map in the reports, and
bncheck.testing.assert_derivation."""

from __future__ import annotations

import importlib.util
import json
import textwrap
import xml.etree.ElementTree as ET

import pytest
from conftest import DERIVATIONS
from typer.testing import CliRunner

import bncheck
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
