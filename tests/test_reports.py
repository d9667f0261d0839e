"""The reports are always what they claim: the JSON strict JSON, the JUnit well-formed XML, a replay
command one line however narrow the console, and a user's huge or hostile exception message cut and
escaped in every one of them."""

from __future__ import annotations

import json
import shlex
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from conftest import DERIVATIONS
from typer.testing import CliRunner

from bncheck import CheckResult, Report, resolve
from bncheck.cli import app
from bncheck.report.jsonfile import to_json
from bncheck.report.junit import junit_bytes
from bncheck.text import MESSAGE_LIMIT
from bncheck.testing import assert_derivation, report_text

TINY = ["--shape", "N=4,p1=2,p2=2", "--trials", "2"]
SLIP = DERIVATIONS / "slip_dropped_inv_n.py"  # grad_G2 without the loss's 1/N
CUT = "more characters cut"
HUGE = 5_000_000


def invoke(args):
    return CliRunner().invoke(app, [str(a) for a in args])


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def strict_json(text: str):
    """json.loads that refuses what strict JSON has not: Infinity, -Infinity, NaN."""

    def refuse(constant):
        raise ValueError(f"not strict JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


def report_with(check: CheckResult) -> Report:
    return Report(
        passed=False, model="bn-mlp", derivation="mine.py", settings=resolve({}).to_dict(), draws=2, redrawn=0,
        checks=[check],
    )


def failed_check(**fields) -> CheckResult:
    base = dict(name="grad_beta", target="beta", kind="gradient", reference="jax.grad", status="fail", passed=False, trials=2)
    return CheckResult(**{**base, **fields})


def rendered(report: Report, width: int = 80) -> str:
    return report_text(report, width=width)


# ------------------------------------------------------------------------------------------ strict JSON


def test_json_has_no_infinity_or_nan_anywhere():
    inf, nan = float("inf"), float("nan")
    check = failed_check(
        max_abs_err=inf, max_rel_err=nan,
        diagnosis={"code": "scale", "message": "off by a factor", "factor": inf, "factors": [1.0, -inf, (nan, 2.0)]},
        error_map={
            "shape": [2], "block": [1, 1], "grid": [[inf, 1.0]], "max": inf,
            "entries": [{"index": [0], "got": 1e308, "want": 0.5, "abs_err": inf, "ratio": inf}],
        },
    )
    report = report_with(check)
    doc = strict_json(to_json(report))
    (entry,) = doc["checks"]
    assert entry["max_abs_err"] is None and entry["max_rel_err"] is None
    assert entry["diagnosis"]["factor"] is None and entry["diagnosis"]["factors"] == [1.0, None, [None, 2.0]]
    assert entry["error_map"]["grid"] == [[None, 1.0]] and entry["error_map"]["max"] is None
    assert entry["error_map"]["entries"][0]["ratio"] is None
    assert entry["error_map"]["entries"][0]["got"] == 1e308  # finite numbers stay as they are
    assert strict_json(json.dumps(report.to_dict(), allow_nan=False)) == doc


def test_an_overflowing_ratio_in_a_real_run_is_null_in_the_json(tmp_path):
    # got/want = 1e308/0.5 overflows: the error map's ratio was written as Infinity, which no strict
    # JSON reader accepts.
    huge = write(tmp_path / "huge.py", """\
        import numpy as np


        def grad_beta(ctx):
            return np.full(ctx.p2, 1e308)
        """)
    result = invoke(["verify", huge, *TINY, "--json", tmp_path / "report.json"])
    assert result.exit_code == 1, result.output
    doc = strict_json((tmp_path / "report.json").read_text(encoding="utf-8"))
    (beta,) = [c for c in doc["checks"] if c["name"] == "grad_beta"]
    assert beta["status"] == "fail"
    assert beta["error_map"]["entries"] and all(e["got"] == 1e308 for e in beta["error_map"]["entries"])
    assert any(e["ratio"] is None for e in beta["error_map"]["entries"])


# --------------------------------------------------------------------------------------- hostile messages


HOSTILE = "\x1b[2J\x1b[31mred\x00nul\x01\x08bs \udc80lone \ufffe end"


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory):
    """A derivation whose exception message holds a terminal escape, NUL and other C0 controls, a lone
    surrogate and an XML noncharacter."""
    out = tmp_path_factory.mktemp("hostile")
    path = write(out / "hostile.py", f"""\
        def grad_beta(ctx):
            raise ValueError({HOSTILE!r})
        """)
    result = invoke(["verify", path, *TINY, "--json", out / "report.json", "--junit", out / "report.xml"])
    return result, out


def test_junit_is_well_formed_with_control_characters_and_surrogates(hostile_run):
    result, out = hostile_run
    assert result.exit_code == 1, result.output
    root = ET.parse(out / "report.xml").getroot()  # raised "not well-formed" before
    (case,) = [c for c in root.iter("testcase") if c.get("name") == "grad_beta"]
    (error,) = case.findall("error")
    # What XML cannot carry is shown as its escape; the rest of the message is kept.
    for shown in (r"\x1b[31mred", r"\x00nul", r"\udc80lone", r"\ufffe end"):
        assert shown in error.get("message"), error.get("message")
    assert "ValueError" in error.text


def test_json_and_console_show_hostile_characters_as_escapes(hostile_run):
    result, out = hostile_run
    doc = strict_json((out / "report.json").read_text(encoding="utf-8"))
    (beta,) = [c for c in doc["checks"] if c["name"] == "grad_beta"]
    message = beta["diagnosis"]["message"]
    assert r"\x1b[2J" in message and r"\udc80lone" in message
    assert not any(0xD800 <= ord(ch) <= 0xDFFF for ch in json.dumps(doc, ensure_ascii=False))
    # The terminal gets no escape sequence of the user's: nothing clears the screen or colours it.
    assert "\x1b" not in result.output and "\x00" not in result.output
    assert r"\x1b[2J\x1b[31mred" in result.output


def test_junit_to_stdout_of_a_hostile_run_parses(hostile_run, tmp_path):
    _, out = hostile_run
    result = invoke(["verify", out / "hostile.py", *TINY, "--junit", "-"])
    assert result.exit_code == 1
    ET.fromstring(result.stdout_bytes)


# --------------------------------------------------------------------------------------- long messages


def test_a_5_mb_message_is_cut_in_console_json_and_junit():
    message = "start of the message " + "x" * HUGE
    frames = [f"mine.py:{n}: return f(n + 1)" for n in (10, 11, 12)] + ["mine.py:2: return f(n + 1)"] * 990
    report = report_with(failed_check(
        status="error", diagnosis={"code": "exception", "message": f"raised ValueError: {message}", "traceback": frames},
        message=message,
    ))
    text = rendered(report)
    assert len(text) < 20_000 and "raised ValueError: start of the message" in text
    cut = len(f"exception: raised ValueError: {message}") - MESSAGE_LIMIT
    assert f"[{cut:,} {CUT}]" in " ".join(text.split())
    # A recursion's thousand identical frames are one frame and a count, as in Python's tracebacks.
    assert "[the frame above repeated 989 more times]" in text and text.count("return f(n + 1)") < 10

    doc = strict_json(to_json(report))
    assert len(json.dumps(doc)) < 100_000
    (entry,) = doc["checks"]
    assert entry["diagnosis"]["message"].startswith("raised ValueError: start of the message xxx")
    assert entry["diagnosis"]["message"].endswith(CUT + "]") and entry["message"].endswith(CUT + "]")

    xml = junit_bytes(report)
    assert len(xml) < 50_000
    error = ET.fromstring(xml).find(".//error")
    assert "start of the message xxx" in error.get("message") and CUT in error.get("message")


def test_a_5_mb_exception_in_a_real_run_is_cut_everywhere(tmp_path):
    path = write(tmp_path / "long.py", f"""\
        def grad_beta(ctx):
            raise ValueError("the start " + "y" * {HUGE})
        """)
    result = invoke(["verify", path, *TINY, "--json", tmp_path / "r.json", "--junit", tmp_path / "r.xml"])
    assert result.exit_code == 1
    assert len(result.output) < 50_000 and "the start" in result.output and "y" * 1000 in "".join(result.output.split())
    assert (tmp_path / "r.json").stat().st_size < 100_000 and (tmp_path / "r.xml").stat().st_size < 100_000
    doc = strict_json((tmp_path / "r.json").read_text(encoding="utf-8"))
    assert "the start yyy" in next(c for c in doc["checks"] if c["name"] == "grad_beta")["diagnosis"]["message"]
    ET.parse(tmp_path / "r.xml")


# ------------------------------------------------------------------------------------------- replays


@pytest.fixture(scope="module")
def slip_json(tmp_path_factory):
    path = tmp_path_factory.mktemp("replay") / "report.json"
    result = invoke(["verify", SLIP, *TINY, "--ddof", "1", "--eps", "0", "--json", path])
    assert result.exit_code == 1
    return result, json.loads(path.read_text(encoding="utf-8"))


def test_replay_is_one_line_on_a_console_that_is_not_a_terminal(slip_json):
    # The runner's console is no terminal and 80 columns wide; the replays are longer.
    result, doc = slip_json
    replays = {c["replay"] for c in doc["checks"] if c["replay"]}
    assert replays and all(len(r) > 100 for r in replays)
    lines = [line.strip().removeprefix("replay: ") for line in result.output.splitlines() if "replay:" in line]
    assert set(lines) == replays
    for line in lines:
        argv = shlex.split(line)
        assert argv[argv.index("--dtype") + 1] == "float64"  # the last flag, pasted with the rest


def test_replay_is_one_line_in_assert_derivations_text():
    with pytest.raises(AssertionError) as raised:
        assert_derivation(SLIP, shape="N=4,p1=2,p2=2", trials=2)
    lines = [line for line in str(raised.value).splitlines() if "replay:" in line]
    assert lines and all(len(line) > 100 for line in lines)
    assert all(line.rstrip().endswith("--dtype float64") for line in lines)


def test_a_long_replay_is_never_cropped_either():
    replay = "bncheck verify " + "/very/long/folder" * 20 + "/mine.py --shape N=2,p1=1,p2=1,k=1 --seed 3 --dtype float64"
    report = report_with(failed_check(replay=replay, diagnosis={"code": "unknown", "message": "m"}))
    assert f"  replay: {replay}" in rendered(report, width=60).splitlines()
