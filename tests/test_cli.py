"""The command line (CONTRACT §3, §4), driven in-process through typer's CliRunner.

Every verify run uses a tiny sweep (a few draws at a fixed small shape) so the file stays fast; the
expensive seed-question and default runs are shared by module-scoped fixtures.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bncheck.cli import app
from bncheck.errors import BncheckError

TINY = ["--trials", "3", "--shape", "N=5,p1=3,p2=2"]
SEED_QUESTION_FAILING = {"grad_beta", "grad_gamma", "grad_G1", "grad_G2"}
CHECK_KEYS = {
    "name", "target", "kind", "reference", "status", "passed", "trials", "max_abs_err", "max_rel_err",
    "worst", "diagnosis", "smallest", "replay",
}

# A correct grad_beta in plain NumPy (CONTRACT §2: NumPy derivations must be accepted); no grad_G1.
GRAD_BETA_ONLY = '''\
import numpy as np


def grad_beta(ctx):
    D = (-2.0 / ctx.N) * (np.asarray(ctx.resid) @ np.asarray(ctx.G2).T) * np.asarray(ctx.dA)
    return D.sum(axis=0)
'''


# ---------------------------------------------------------------------------------------------- helpers


def invoke(args: list[str]):
    # catch_exceptions=True (the default) so that --debug's propagated exception lands in
    # result.exception instead of aborting the test.
    return CliRunner().invoke(app, [str(a) for a in args])


def all_output(result) -> str:
    """stdout and stderr together. In click >= 8.2 (and typer's vendored click) `output` always mixes
    both; in older click `output` mixes them when mix_stderr=True (the default there)."""
    return result.output


def stdout_of(result) -> str:
    """Standard output alone where the runner keeps it apart, else the mixed output."""
    try:
        return result.stdout
    except (ValueError, AttributeError):  # pragma: no cover - very old click
        return result.output


def assert_one_line_error(result, *fragments: str) -> str:
    out = all_output(result)
    assert result.exit_code == 2, f"exit {result.exit_code}, output:\n{out}\nexception: {result.exception!r}"
    assert "Traceback" not in out
    lines = [line for line in out.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected exactly one line of error output, got:\n{out}"
    line = lines[0]
    assert line.startswith("bncheck: error:"), line
    for fragment in fragments:
        assert fragment in line, f"{fragment!r} not in {line!r}"
    # The runner reports a plain exit, not an exception escaping the command.
    assert result.exception is None or isinstance(result.exception, SystemExit)
    return line


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def checks_by_name(report: dict) -> dict[str, dict]:
    return {c["name"]: c for c in report["checks"]}


def jax_sees_gpu() -> bool:
    import jax

    try:
        return bool(jax.devices("gpu"))
    except RuntimeError:
        return False


# --------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def repo_root() -> Path:
    return Path(__file__).parents[1]


@pytest.fixture(scope="module")
def seed_question(repo_root, tmp_path_factory):
    """`bncheck verify seed-question --config configs/seed-question.toml --trials 3` with both reports."""
    out = tmp_path_factory.mktemp("seed_question")
    json_path, junit_path = out / "report.json", out / "report.xml"
    result = invoke([
        "verify", "seed-question", "--config", repo_root / "configs" / "seed-question.toml", "--trials", "3",
        "--json", json_path, "--junit", junit_path,
    ])
    return result, json_path, junit_path


@pytest.fixture(scope="module")
def default_run(tmp_path_factory):
    """The built-in default derivation on a tiny sweep, with a JSON report."""
    json_path = tmp_path_factory.mktemp("default") / "report.json"
    result = invoke(["verify", *TINY, "--json", json_path])
    return result, json_path


@pytest.fixture
def grad_beta_only(tmp_path) -> Path:
    return write(tmp_path / "beta_only.py", GRAD_BETA_ONLY)


# ------------------------------------------------------------------ 1. bad input: exit 2, one line, no traceback


def test_missing_derivation_file(tmp_path):
    missing = tmp_path / "nope.py"
    assert_one_line_error(invoke(["verify", missing, *TINY]), "no such file", "nope.py")


def test_syntax_error_names_file_and_line(tmp_path):
    bad = write(tmp_path / "syntax.py", """\
        import numpy as np


        def grad_beta(ctx)
            return np.zeros(3)
        """)
    line = assert_one_line_error(invoke(["verify", bad, *TINY]), "syntax")
    assert f"{bad}:4" in line


def test_import_time_exception_names_file_line_and_exception(tmp_path):
    bad = write(tmp_path / "raises.py", """\
        import numpy as np

        SCALE = 2.0
        raise ValueError("boom at import")


        def grad_beta(ctx):
            return np.zeros(3)
        """)
    line = assert_one_line_error(invoke(["verify", bad, *TINY]), "ValueError", "boom at import")
    assert f"{bad}:4" in line


def test_unknown_builtin_lists_the_builtins():
    line = assert_one_line_error(invoke(["verify", "no-such-derivation", *TINY]), "no-such-derivation")
    for builtin in ("closed-form", "kronecker", "seed-question"):
        assert builtin in line


def test_file_without_checkable_function(tmp_path):
    bad = write(tmp_path / "helpers.py", """\
        def helper(ctx):
            return 0


        gradient = 3
        """)
    line = assert_one_line_error(invoke(["verify", bad, *TINY]), "no checkable function")
    assert "grad_G1" in line  # tells the user what to define


def test_missing_config(tmp_path):
    assert_one_line_error(invoke(["verify", "--config", tmp_path / "absent.toml", *TINY]), "absent.toml")


def test_config_that_is_not_toml(tmp_path):
    bad = write(tmp_path / "bad.toml", "ddof = = 1\n[sweep\n")
    assert_one_line_error(invoke(["verify", "--config", bad, *TINY]), "bad.toml", "TOML")


def test_config_with_unknown_key(tmp_path):
    bad = write(tmp_path / "unknown.toml", "ddof = 1\nlearning_rate = 0.1\n")
    assert_one_line_error(invoke(["verify", "--config", bad, *TINY]), "learning_rate")


def test_config_with_inverted_sweep_range(tmp_path):
    bad = write(tmp_path / "inverted.toml", "[sweep]\ntrials = 3\nN = [10, 2]\n")
    assert_one_line_error(invoke(["verify", "--config", bad]), "N", "inverted")


@pytest.mark.parametrize(
    "flags, fragments",
    [
        (["--ddof", "2"], ["ddof", "2"]),
        (["--eps", "-1"], ["eps"]),
        (["--activation", "swish"], ["activation", "swish", "relu"]),
        (["--dtype", "float8"], ["dtype", "float8", "float64"]),
        (["--require", "bogus"], ["require", "bogus"]),
    ],
    ids=["ddof-2", "eps-negative", "activation-swish", "dtype-float8", "require-bogus"],
)
def test_bad_flag_values(flags, fragments):
    assert_one_line_error(invoke(["verify", *TINY, *flags]), *fragments)


@pytest.mark.parametrize(
    "flags, fragments",
    [
        (["--shape", "N10"], ["shape", "N10"]),
        (["--shape", "N=1,p1=2,p2=2", "--ddof", "1"], ["shape", "N"]),
        (["--shape", "Q=3,p1=2,p2=2"], ["shape", "Q"]),
    ],
    ids=["unparseable", "N-not-above-ddof", "unknown-dimension"],
)
def test_bad_shapes(flags, fragments):
    assert_one_line_error(invoke(["verify", "--trials", "3", *flags]), *fragments)


@pytest.mark.skipif(jax_sees_gpu(), reason="this machine has a GPU, so --device gpu is valid here")
def test_device_gpu_without_gpu():
    assert_one_line_error(invoke(["verify", *TINY, "--device", "gpu"]), "gpu")


@pytest.mark.parametrize("option", ["--json", "--junit"])
def test_unwritable_report_path_is_a_one_line_error(tmp_path, option):
    # A report that cannot be written is a bad flag (exit 2, one line), not a crash with a traceback,
    # and never exit 1, which would read as "a check failed".
    # Checked up front, the error is the only output; caught after the run, it follows the table. Either
    # way: exit 2, no traceback, exactly one error line, naming the path.
    target = tmp_path / "no" / "such" / "dir" / "report.out"
    result = invoke(["verify", *TINY, option, target])
    out = all_output(result)
    assert result.exit_code == 2, f"exit {result.exit_code}, exception {result.exception!r}, output:\n{out}"
    assert "Traceback" not in out
    errors = [line for line in out.splitlines() if line.startswith("bncheck: error:")]
    assert len(errors) == 1 and "report.out" in errors[0], out
    assert result.exception is None or isinstance(result.exception, SystemExit)


def _bad_import_args(tmp_path):
    bad = write(tmp_path / "raises.py", "raise RuntimeError('kaput')\n")
    return ["verify", bad, *TINY]


@pytest.mark.parametrize(
    "make_args",
    [
        _bad_import_args,
        lambda tmp_path: ["verify", *TINY, "--ddof", "2"],
        lambda tmp_path: ["verify", *TINY, "--config", tmp_path / "absent.toml"],
        lambda tmp_path: ["verify", "no-such-derivation", *TINY],
    ],
    ids=["import-error", "ddof-2", "missing-config", "unknown-builtin"],
)
def test_debug_turns_the_error_line_into_a_traceback(tmp_path, make_args):
    args = make_args(tmp_path)
    plain = invoke(args)
    assert_one_line_error(plain)

    debug = invoke([*args, "--debug"])
    # The exception propagates out of the command instead of becoming exit 2 and one line.
    assert isinstance(debug.exception, BncheckError), repr(debug.exception)
    assert debug.exit_code != 2
    assert debug.exc_info is not None and debug.exc_info[2] is not None  # a traceback to show
    assert "bncheck: error:" not in all_output(debug)
    assert str(debug.exception) in plain.output  # same message, now with its traceback


# --------------------------------------------------------------------------------------- 2. exit 0 and exit 1


def test_default_builtin_passes_on_a_tiny_sweep(default_run):
    result, _ = default_run
    assert result.exit_code == 0, all_output(result)
    assert "Traceback" not in all_output(result)


def test_seed_question_fails_with_exit_1(seed_question):
    result, _, _ = seed_question
    assert result.exit_code == 1, all_output(result)
    assert "Traceback" not in all_output(result)
    for name in SEED_QUESTION_FAILING:
        assert name in all_output(result)


# ------------------------------------------------------------------- 3. flags > config file > defaults


def test_flags_beat_config_which_beats_defaults(tmp_path):
    config = write(tmp_path / "mine.toml", """\
        ddof = 1
        trials = 4
        activation = "tanh"
        shape = "N=6,p1=2,p2=2"
        """)
    report_path = tmp_path / "report.json"
    result = invoke([
        "verify", "--config", config, "--trials", "2", "--shape", "N=5,p1=3,p2=2", "--json", report_path,
    ])
    assert result.exit_code == 0, all_output(result)
    report = json.loads(report_path.read_text(encoding="utf-8"))
    settings = report["settings"]
    assert settings["ddof"] == 1  # from the file, over the default 0
    assert settings["activation"] == "tanh"  # from the file, over the default relu
    assert settings["trials"] == 2  # the flag, over the file's 4
    assert settings["shape"] == {"N": 5, "p1": 3, "p2": 2, "k": 1}  # the flag, over the file's shape
    assert settings["eps"] == 1e-5  # a default neither set
    assert report["draws"] == 2
    for check in report["checks"]:
        if check["status"] == "pass":
            assert check["trials"] == 2


def test_sweep_table_trials_and_seed_are_read(tmp_path):
    config = write(tmp_path / "sweep.toml", """\
        [sweep]
        trials = 2
        seed = 5
        N = [4, 6]
        p1 = [2, 3]
        p2 = [1, 2]
        """)
    report_path = tmp_path / "report.json"
    result = invoke(["verify", "--config", config, "--json", report_path])
    assert result.exit_code == 0, all_output(result)
    report = json.loads(report_path.read_text(encoding="utf-8"))
    assert report["settings"]["trials"] == 2
    assert report["settings"]["seed"] == 5
    assert report["settings"]["sweep"]["N"] == [4, 6]
    assert report["draws"] == 2
    for check in report["checks"]:
        if check["worst"] is not None:
            assert 4 <= check["worst"]["shape"]["N"] <= 6
            assert check["worst"]["seed"] in (5, 6)


# ------------------------------------------------------------------------------------- 4. the JSON report


def test_json_report_matches_contract(default_run):
    result, json_path = default_run
    report = json.loads(json_path.read_text(encoding="utf-8"))
    assert {"passed", "model", "derivation", "settings", "checks"} <= set(report)
    assert report["passed"] is True
    assert report["model"] == "bn-mlp"
    assert report["derivation"] == "closed-form"
    settings = report["settings"]
    for key in ("model", "activation", "ddof", "eps", "outputs", "trials", "seed", "shape", "dtype", "device",
                "rtol", "atol", "require"):
        assert key in settings, key
    assert settings["trials"] == 3
    assert settings["shape"] == {"N": 5, "p1": 3, "p2": 2, "k": 1}
    assert settings["activation"] == "relu" and settings["ddof"] == 0 and settings["dtype"] == "float64"

    checks = checks_by_name(report)
    assert {"grad_beta", "grad_gamma", "grad_G1", "grad_G2"} <= set(checks)
    ran = [c for c in report["checks"] if c["status"] == "pass"]
    assert ran, "no check ran"
    for c in report["checks"]:
        assert CHECK_KEYS <= set(c), CHECK_KEYS - set(c)
        assert c["status"] in ("pass", "fail", "error", "missing", "skipped")
        assert c["kind"] in ("gradient", "jacobian")
        assert c["passed"] is (c["status"] in ("pass", "missing", "skipped"))
    for c in ran:
        assert c["passed"] is True
        assert c["trials"] == 3
        assert c["reference"] == {"grad": "jax.grad", "jac": "jax.jacfwd", "jvp": "jax.jvp"}[c["name"].split("_")[0]]
        assert c["kind"] == ("gradient" if c["name"].startswith("grad_") else "jacobian")
        assert c["target"] == c["name"].rsplit("_", 1)[-1]
        assert isinstance(c["max_abs_err"], float) and 0 <= c["max_abs_err"] < 1e-8
        assert isinstance(c["max_rel_err"], float) and 0 <= c["max_rel_err"] <= settings["rtol"]
        worst = c["worst"]
        assert set(worst) >= {"shape", "seed", "index"}
        assert worst["shape"] == {"N": 5, "p1": 3, "p2": 2, "k": 1}
        assert worst["seed"] in (0, 1, 2)
        assert isinstance(worst["index"], list) and all(isinstance(i, int) for i in worst["index"])
        assert c["diagnosis"] is None and c["smallest"] is None and c["replay"] is None
    assert checks["grad_G1"]["target"] == "G1"
    assert len(checks["grad_G1"]["worst"]["index"]) == 2  # an index into a p1 x p2 gradient
    assert len(checks["grad_beta"]["worst"]["index"]) == 1


def test_json_report_for_failures(seed_question):
    _, json_path, _ = seed_question
    report = json.loads(json_path.read_text(encoding="utf-8"))
    assert report["passed"] is False
    assert report["derivation"] == "seed-question"
    settings = report["settings"]
    # configs/seed-question.toml: relu, ddof = 1, eps = 0, N = 10, p1 = 7, p2 = 4, k = 1; --trials 3 wins.
    assert (settings["activation"], settings["ddof"], settings["eps"], settings["trials"], settings["seed"]) == (
        "relu", 1, 0.0, 3, 1)
    assert settings["shape"] == {"N": 10, "p1": 7, "p2": 4, "k": 1}
    checks = checks_by_name(report)
    for name, c in checks.items():
        assert CHECK_KEYS <= set(c)
        if name in SEED_QUESTION_FAILING:
            assert c["status"] == "fail" and c["passed"] is False, (name, c["status"])
            assert isinstance(c["diagnosis"], dict) and c["diagnosis"]["code"] and c["diagnosis"]["message"]
            assert c["replay"].startswith("bncheck verify ")
            assert c["worst"]["shape"] == {"N": 10, "p1": 7, "p2": 4, "k": 1}
        else:
            assert c["status"] == "missing" and c["passed"] is True, (name, c["status"])
    # The seed question's grad_beta and grad_G2 are off by a factor of N.
    assert checks["grad_beta"]["diagnosis"]["code"] == "scale"
    assert checks["grad_G2"]["diagnosis"]["code"] == "scale"
    assert checks["grad_gamma"]["diagnosis"]["code"] == "shape"


def test_json_to_stdout_is_parseable_json():
    result = invoke(["verify", *TINY, "--seed", "4", "--json", "-"])
    assert result.exit_code == 0, all_output(result)
    report = json.loads(stdout_of(result))  # nothing but the JSON on stdout: no table
    assert report["passed"] is True
    assert report["settings"]["seed"] == 4
    assert {c["name"] for c in report["checks"]} >= {"grad_beta", "grad_G1"}


# --------------------------------------------------------------------------------------- 5. reproducibility


def test_same_seed_same_report_bytes_and_other_seed_differs(tmp_path):
    path = tmp_path / "report.json"  # one path: the report records it in its settings

    def run(seed: str) -> bytes:
        result = invoke(["verify", *TINY, "--seed", seed, "--json", path])
        assert result.exit_code == 0, all_output(result)
        return path.read_bytes()

    first, second, other = run("7"), run("7"), run("8")
    assert first == second
    assert first != other
    assert json.loads(other)["settings"]["seed"] == 8


# ------------------------------------------------------------------------------------------- 6. JUnit XML


def test_junit_marks_exactly_the_failing_checks(seed_question):
    _, json_path, junit_path = seed_question
    root = ET.parse(junit_path).getroot()
    cases = {case.get("name"): case for case in root.iter("testcase")}
    report = json.loads(json_path.read_text(encoding="utf-8"))
    assert set(cases) == {c["name"] for c in report["checks"]}
    for name, case in cases.items():
        failures = case.findall("failure")
        if name in SEED_QUESTION_FAILING:
            assert len(failures) == 1, name
            assert failures[0].get("message")
        else:
            assert failures == [], name
            assert case.findall("error") == [], name
    suites = list(root.iter("testsuite"))
    assert len(suites) == 1
    assert suites[0].get("tests") == str(len(cases))
    assert suites[0].get("failures") == str(len(SEED_QUESTION_FAILING))


# ------------------------------------------------------------------------------------------ 7. replay


def test_replay_commands_reproduce_the_failures(seed_question):
    _, json_path, _ = seed_question
    report = json.loads(json_path.read_text(encoding="utf-8"))
    failing = [c for c in report["checks"] if c["status"] == "fail"]
    assert {c["name"] for c in failing} == SEED_QUESTION_FAILING
    by_replay: dict[str, list[dict]] = {}
    for c in failing:
        by_replay.setdefault(c["replay"], []).append(c)
    for replay, checks in by_replay.items():
        argv = shlex.split(replay)
        assert argv[:2] == ["bncheck", "verify"], replay
        assert "--trials" in argv and argv[argv.index("--trials") + 1] == "1"
        result = invoke([*argv[1:], "--json", "-"])
        assert result.exit_code == 1, (replay, all_output(result))
        again = checks_by_name(json.loads(stdout_of(result)))
        seed = int(argv[argv.index("--seed") + 1])
        for c in checks:
            assert again[c["name"]]["status"] == "fail", (replay, c["name"])
            # The replay is of the smallest failing case found, not of the sweep's worst draw.
            assert again[c["name"]]["worst"]["seed"] == seed == c["smallest"]["seed"]
            assert again[c["name"]]["worst"]["shape"] == c["smallest"]["shape"]
            assert again[c["name"]]["diagnosis"]["code"] == c["diagnosis"]["code"]


# -------------------------------------------------------------------------------------- 8. models and help


def test_models_lists_model_functions_and_builtins():
    result = invoke(["models"])
    assert result.exit_code == 0, all_output(result)
    out = result.output
    for word in ("bn-mlp", "grad_G1", "jac_B_G1", "jvp_B_G1", "closed-form", "kronecker", "seed-question"):
        assert re.search(rf"(?<![\w-]){re.escape(word)}(?![\w-])", out), word


def test_top_level_help():
    result = invoke(["--help"])
    assert result.exit_code == 0, all_output(result)
    assert "verify" in result.output and "models" in result.output


def _flat(text: str) -> str:
    """Help text with rich's box characters removed and all whitespace runs collapsed."""
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", text).split())


def test_verify_help_mentions_every_option():
    result = invoke(["verify", "--help"])
    assert result.exit_code == 0, all_output(result)
    for option in ("--model", "--activation", "--ddof", "--eps", "--outputs", "--trials", "--seed", "--shape",
                   "--dtype", "--device", "--rtol", "--atol", "--require", "--json", "--junit", "--config"):
        assert re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", result.output), option


def test_verify_help_keeps_bracketed_text():
    # Help strings hold literal brackets ("a [sweep] table", "[default: 200]"); rendered as rich markup
    # they vanish, and with them the documented defaults.
    flat = _flat(invoke(["verify", "--help"]).output)
    assert "[sweep]" in flat
    assert "[default: 200]" in flat
    assert "[default: relu]" in flat


# --------------------------------------------------------------------------------- 9. a typo'd function name


def test_typod_function_name_is_an_error_with_a_hint(tmp_path):
    typo = write(tmp_path / "typo.py", GRAD_BETA_ONLY + textwrap.dedent("""\


        def grad_G_1(ctx):
            return np.zeros(np.shape(ctx.G1))
        """))
    report_path = tmp_path / "report.json"
    result = invoke(["verify", typo, *TINY, "--json", report_path])
    assert result.exit_code == 1, all_output(result)
    checks = checks_by_name(json.loads(report_path.read_text(encoding="utf-8")))
    assert checks["grad_G_1"]["status"] == "error"
    assert checks["grad_G_1"]["passed"] is False
    hint = json.dumps(checks["grad_G_1"])
    assert "did you mean grad_G1" in hint
    assert checks["grad_beta"]["status"] == "pass"  # the rest still ran
    assert checks["grad_G1"]["status"] == "missing"
    assert "grad_G_1" in all_output(result)


# --------------------------------------------------------------------------------------------- 10. --require


def test_require_names_a_missing_function(grad_beta_only, tmp_path):
    report_path = tmp_path / "report.json"
    result = invoke(["verify", grad_beta_only, *TINY, "--require", "G1", "--json", report_path])
    assert result.exit_code == 1, all_output(result)
    report = json.loads(report_path.read_text(encoding="utf-8"))
    assert report["passed"] is False
    assert report["settings"]["require"] == ["G1"]
    checks = checks_by_name(report)
    assert checks["grad_G1"]["status"] == "missing"
    assert checks["grad_G1"]["passed"] is False
    assert checks["grad_beta"]["status"] == "pass"
    assert checks["grad_gamma"]["status"] == "missing" and checks["grad_gamma"]["passed"] is True


def test_without_require_missing_functions_do_not_fail(grad_beta_only, tmp_path):
    report_path = tmp_path / "report.json"
    result = invoke(["verify", grad_beta_only, *TINY, "--json", report_path])
    assert result.exit_code == 0, all_output(result)
    report = json.loads(report_path.read_text(encoding="utf-8"))
    assert report["passed"] is True
    checks = checks_by_name(report)
    assert checks["grad_beta"]["status"] == "pass"  # a plain-NumPy derivation is accepted
    assert checks["grad_G1"]["status"] == "missing" and checks["grad_G1"]["passed"] is True


# ------------------------------------------------------------- 9. reports on stdout, report paths, consoles

SMALL_RUN = ["--shape", "N=4,p1=2,p2=2", "--trials", "2"]

# A correct grad_beta that writes to stdout every way it can, at import and when called.
NOISY = '''\
import os
import sys

import numpy as np

print("print at import")
os.write(1, b"os.write at import\\n")


def grad_beta(ctx):
    print("print in grad_beta")
    sys.__stdout__.write("sys.__stdout__ in grad_beta\\n")
    os.write(1, b"os.write in grad_beta\\n")
    D = (-2.0 / ctx.N) * (np.asarray(ctx.resid) @ np.asarray(ctx.G2).T) * np.asarray(ctx.dA)
    return D.sum(axis=0)
'''


def bncheck_process(args, cwd=None, env=None, stdout=subprocess.PIPE) -> subprocess.CompletedProcess:
    """`python -m bncheck ARGS` in a process of its own, with this tree's bncheck: for what an in-process
    runner cannot show (file descriptors, encodings, a working folder that user code changes)."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1]), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "bncheck", *map(str, args)], cwd=cwd, env=env, stdout=stdout, stderr=subprocess.PIPE,
        text=True, timeout=300,
    )


def strict_json(text: str):
    def refuse(constant):
        raise ValueError(f"not strict JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


@pytest.mark.parametrize("option", ["--json", "--junit"])
def test_a_derivations_output_never_corrupts_the_report_on_stdout(tmp_path, option):
    noisy = write(tmp_path / "noisy.py", NOISY)
    proc = bncheck_process(["verify", noisy, *SMALL_RUN, option, "-"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    if option == "--json":
        assert strict_json(proc.stdout)["passed"] is True
    else:
        assert ET.fromstring(proc.stdout).get("failures") == "0"
    # What the derivation wrote is not lost: it is on stderr (the table is not: the report took stdout).
    for written in ("print at import", "os.write at import", "print in grad_beta", "sys.__stdout__ in grad_beta",
                    "os.write in grad_beta"):
        assert written in proc.stderr
    assert "PASS" not in proc.stderr


def test_junit_dash_is_standard_output_and_nothing_else(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = invoke(["verify", *SMALL_RUN, "--junit", "-"])
    assert result.exit_code == 0, result.output
    assert ET.fromstring(result.stdout_bytes).tag == "testsuites"
    assert "PASS" not in result.stderr
    assert list(tmp_path.iterdir()) == []  # no file named "-"


def _report_path_cases():
    """(id, args given the folder, the derivation and a config file, fragments of the error)."""
    return [
        ("json-empty", lambda d, mine, cfg: ["--json", ""], ["json", "empty"]),
        ("junit-empty", lambda d, mine, cfg: ["--junit", ""], ["junit", "empty"]),
        ("both-stdout", lambda d, mine, cfg: ["--json", "-", "--junit", "-"], ["standard output"]),
        ("same-file", lambda d, mine, cfg: ["--json", d / "r.out", "--junit", d / "r.out"], ["r.out", "both"]),
        ("same-file-relative", lambda d, mine, cfg: ["--json", "r.out", "--junit", d / "r.out"], ["r.out", "both"]),
        ("a-folder", lambda d, mine, cfg: ["--json", d], ["json", "folder"]),
        ("the-derivation", lambda d, mine, cfg: ["--json", mine], ["json", "mine.py"]),
        ("another-py-file", lambda d, mine, cfg: ["--junit", d / "helpers.py"], ["junit", "helpers.py", "Python"]),
        ("the-config", lambda d, mine, cfg: ["--config", cfg, "--junit", cfg], ["junit", "gate.toml"]),
        ("config-says-empty", lambda d, mine, cfg: ["--config", write(d / "empty.toml", 'json = ""\n')], ["json", "empty"]),
    ]


@pytest.mark.parametrize("case", _report_path_cases(), ids=[c[0] for c in _report_path_cases()])
def test_bad_report_paths_are_refused_before_anything_runs(tmp_path, monkeypatch, case):
    _, make_args, fragments = case
    monkeypatch.chdir(tmp_path)
    ran = tmp_path / "imported"
    mine = write(tmp_path / "mine.py", f"import pathlib\npathlib.Path({str(ran)!r}).touch()\n\n" + GRAD_BETA_ONLY)
    write(tmp_path / "helpers.py", "HELP = 1\n")
    config = write(tmp_path / "gate.toml", "[sweep]\ntrials = 2\n")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    assert_one_line_error(invoke(["verify", mine, *SMALL_RUN, *make_args(tmp_path, mine, config)]), *fragments)
    assert not ran.exists()  # refused before the derivation was imported
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file() and p.name in before} == before


@pytest.mark.parametrize("option", ["--json", "--junit"])
@pytest.mark.parametrize("victim", ["case", "values", "a-file-of-a-csv-case"])
def test_verify_values_never_writes_a_report_over_its_inputs(tmp_path, option, victim):
    csv = victim == "a-file-of-a-csv-case"
    case = tmp_path / ("case" if csv else "case.json")
    export = ["case", "export", "--shape", "N=4,p1=2,p2=2,k=1", "--out", case, *(["--format", "csv"] if csv else [])]
    assert invoke(export).exit_code == 0
    values = write(tmp_path / "values.json", '{"arrays": {"grad_beta": [0.0, 0.0]}}\n')
    target = {"case": case, "values": values, "a-file-of-a-csv-case": case / "X.csv"}[victim]
    before = target.read_bytes()
    assert_one_line_error(invoke(["verify-values", case, values, option, target]), target.name)
    assert target.read_bytes() == before


def test_report_paths_do_not_move_when_user_code_changes_folder(tmp_path):
    here, elsewhere = tmp_path / "here", tmp_path / "elsewhere"
    here.mkdir(), elsewhere.mkdir()
    wanders = write(here / "wanders.py", f"import os\nos.chdir({str(elsewhere)!r})\n\n" + GRAD_BETA_ONLY.replace(
        "def grad_beta(ctx):\n", f"def grad_beta(ctx):\n    os.chdir({str(elsewhere)!r})\n"))
    proc = bncheck_process(["verify", "wanders.py", *SMALL_RUN, "--json", "r.json", "--junit", "r.xml"], cwd=here)
    assert proc.returncode == 0, proc.stderr
    assert strict_json((here / "r.json").read_text(encoding="utf-8"))["passed"] is True
    ET.parse(here / "r.xml")
    assert list(elsewhere.iterdir()) == []
    assert wanders.exists()


@pytest.mark.parametrize("lost", ["--json", "--junit"])
def test_a_report_that_cannot_be_written_does_not_keep_the_other_from_being_written(tmp_path, lost):
    """Report paths are checked before the run; a folder removed while it runs (here by the derivation
    itself) makes its report fail at the end, after the table, and the other report is written."""
    gone = tmp_path / "gone"
    gone.mkdir()
    derivation = tmp_path / "d.py"
    derivation.write_text(
        "import shutil\nfrom bncheck.derivations.bn_mlp_closed_form import grad_beta as exact\n"
        f"def grad_beta(ctx):\n    shutil.rmtree({str(gone)!r}, ignore_errors=True)\n    return exact(ctx)\n"
    )
    other = {"--json": "--junit", "--junit": "--json"}[lost]
    path = tmp_path / "other.out"
    result = invoke(["verify", str(derivation), *SMALL_RUN, lost, gone / "report.out", other, path])
    line = assert_one_line_error_after_table(result)
    assert "report.out" in line
    if other == "--json":
        assert strict_json(path.read_text(encoding="utf-8"))["passed"] is True
    else:
        assert ET.parse(path).getroot().get("failures") == "0"


def assert_one_line_error_after_table(result) -> str:
    """Exit 2 and exactly one error line, after the table of a run that went to its end."""
    out = all_output(result)
    assert result.exit_code == 2, out
    assert "Traceback" not in out and "PASS" in out
    errors = [line for line in out.splitlines() if line.startswith("bncheck: error:")]
    assert len(errors) == 1, out
    return errors[0]


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
@pytest.mark.parametrize("extra", [[], ["--json", "-"], ["--junit", "-"]], ids=["table", "json", "junit"])
def test_stdout_on_a_full_disk_is_one_line_and_exit_2(extra):
    with open("/dev/full", "w") as full:
        proc = bncheck_process(["verify", *SMALL_RUN, *extra], stdout=full)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and "Exception ignored" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("bncheck: error:")]
    assert len(errors) == 1 and "standard output" in errors[0] and "No space left" in errors[0], proc.stderr


@pytest.mark.parametrize(
    "args, status",
    [(["verify", "--config", "tests/small.toml", "--trials", "2"], 0),  # the header's N∈[2,12]
     (["verify", "tests/derivations/slip_dropped_inv_n.py", *SMALL_RUN], 1)],  # ✗, the error map's shades
    ids=["passing", "failing"],
)
def test_an_ascii_console_degrades_characters_and_keeps_the_status(repo_root, args, status):
    proc = bncheck_process(args, cwd=repo_root, env={"PYTHONIOENCODING": "ascii"})
    assert proc.returncode == status, proc.stderr
    assert proc.stderr == "" and ("PASS" if status == 0 else "FAIL") in proc.stdout
    assert "N?[2,12]" in proc.stdout if status == 0 else "? grad_G2" in proc.stdout


MODEL_BASE = '''\
def inputs(d):
    return {"x": (d["N"],)}


def params(d):
    return {"w": (d["N"],)}


def forward(x, w):
    return {"R": (x * w).sum()}
'''


@pytest.mark.parametrize(
    "source",
    ['DIMS = {"N": (1, 4)}\nOPTIONS = 5\n' + MODEL_BASE, 'DIMS = {"N": (1, 4)}\nOUTPUTS = 5\n' + MODEL_BASE,
     "import sys\n\nsys.exit(0)\n", "raise GeneratorExit\n"],
    ids=["options-not-a-list", "outputs-not-a-dict", "sys-exit-0", "generator-exit"],
)
def test_models_of_a_broken_model_file_is_one_line(tmp_path, source):
    model = write(tmp_path / "broken.py", source)
    assert_one_line_error(invoke(["models", model]))


def test_models_shows_a_model_files_names_as_they_are(tmp_path):
    # Names and descriptions are the file author's: brackets in them are text, not rich markup.
    model = write(tmp_path / "brackets.py", '''\
        DIMS = {"N": (1, 4)}
        SUMMARY = "a [/bold] summary"


        def inputs(d):
            return {"x[/red]": (d["N"],)}


        def params(d):
            return {"w": (d["N"],)}


        def forward(**arrays):
            return {"R": (arrays["x[/red]"] * arrays["w"]).sum()}
        ''')
    result = invoke(["models", model])
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    if result.exit_code == 2:  # a model file's names may be refused, on one line
        assert_one_line_error(result)
    else:
        shown = " ".join(result.output.split())
        assert result.exit_code == 0 and "a [/bold] summary" in shown and "x[/red]" in shown


def test_the_python_api_checks_and_fixes_report_paths_too(tmp_path, monkeypatch):
    from bncheck import BncheckError, resolve, verify

    monkeypatch.chdir(tmp_path)
    settings = resolve({"json": "r.json", "junit": "sub/../r.xml"})
    assert (settings.json, settings.junit) == (str(tmp_path / "r.json"), str(tmp_path / "r.xml"))
    with pytest.raises(BncheckError, match="^json: the path is empty"):
        verify(json="", trials=1)
