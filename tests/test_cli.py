"""The command line (CONTRACT §3, §4), driven in-process through typer's CliRunner.

Every verify run uses a tiny sweep (a few draws at a fixed small shape) so the file stays fast; the
expensive seed-question and default runs are shared by module-scoped fixtures.
"""

from __future__ import annotations

import json
import re
import shlex
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
        (["--dtype", "float16"], ["dtype", "float16", "float64"]),
        (["--require", "bogus"], ["require", "bogus"]),
    ],
    ids=["ddof-2", "eps-negative", "activation-swish", "dtype-float16", "require-bogus"],
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
