"""Model options swept over a range (`--padding 0:1`, a config's [sweep] padding = [0, 1]): the draws
shared among the values, one report whose checks fail if they fail at any value, shown and replayed at
the value where they are worst; and the ranges that cannot be swept, each one line and exit 2."""

import importlib
import json
import shlex
from types import ModuleType

import pytest
from conftest import DERIVATIONS, REPO, failed
from typer.testing import CliRunner

from bncheck import check_backward, verify, verify_files
from bncheck.cli import app
from bncheck.settings import resolve

CROP = DERIVATIONS / "conv" / "slip_crop_empty_at_padding_0.py"  # grad_x empty at padding 0 only
SHAPE = "N=1,C=2,O=2,kh=3,kw=3,H=4,W=4"
SMALL_CONV = dict(model="conv", shape=SHAPE, trials=4)


def invoke(*args: str):
    return CliRunner().invoke(app, [str(a) for a in args])


def assert_one_line_error(result, *fragments: str) -> None:
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and lines[0].startswith("bncheck: error:"), result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_a_padding_slip_passes_at_padding_1_and_fails_swept_with_a_replay_at_padding_0():
    assert verify(str(CROP), **SMALL_CONV, padding=1).passed
    report = verify(str(CROP), **SMALL_CONV, padding="0:1")
    assert failed(report) == {"grad_x"}
    grad_x = next(c for c in report.checks if c.name == "grad_x")
    assert grad_x.worst["options"] == {"padding": 0}
    assert grad_x.trials == 4 and report.draws == 4  # the 4 draws shared, not 4 per value
    assert "--padding 0" in grad_x.replay and "--padding 1" not in grad_x.replay
    args = shlex.split(grad_x.replay)
    assert args[:2] == ["bncheck", "verify"]
    replayed = invoke(*args[1:], "--json", "-")
    assert replayed.exit_code == 1, replayed.output
    again = json.loads(replayed.stdout)
    assert again["options"]["padding"] == 0 and again["settings"]["swept"] == {}
    assert {c["name"] for c in again["checks"] if not c["passed"]} == {"grad_x"}
    assert next(c for c in again["checks"] if c["name"] == "grad_x")["diagnosis"] == grad_x.diagnosis


def test_a_correct_derivation_passes_with_draws_at_every_value_and_seeds_of_their_own():
    seen = []
    builtin = importlib.import_module("bncheck.derivations.conv_closed_form")
    mine = ModuleType("recording_conv")
    for name in ("grad_K", "grad_b", "grad_x"):
        def recorded(ctx, fn=getattr(builtin, name), name=name):
            seen.append((name, ctx.padding))
            return fn(ctx)
        setattr(mine, name, recorded)

    report = verify(mine, model="conv", trials=7, padding=(0, 2))
    assert report.passed, [(c.name, c.status) for c in report.failed]
    assert {padding for name, padding in seen if name == "grad_x"} == {0, 1, 2}
    assert report.draws == 7 and all(c.trials == 7 for c in report.checks)
    assert report.settings["swept"] == {"padding": [0, 2]} and report.options["padding"] == [0, 2]
    settings = resolve({"model": "conv", "trials": 7, "padding": (0, 2)})
    runs = [(run.padding, run.seed, run.trials) for run in settings.by_value]
    assert runs == [(0, 0, 3), (1, 3, 2), (2, 5, 2)]  # every draw its own seed: 0..6


def test_the_config_sweeps_as_the_flag_does(tmp_path):
    config = tmp_path / "sweep.toml"
    config.write_text(f'model = "conv"\nshape = "{SHAPE}"\n\n[sweep]\ntrials = 4\npadding = [0, 1]\n')
    by_config = verify(str(CROP), config=config)
    by_flag = verify(str(CROP), **SMALL_CONV, padding="0:1")
    assert by_config.settings["swept"] == by_flag.settings["swept"] == {"padding": [0, 1]}
    for a, b in zip(by_config.checks, by_flag.checks):
        assert (a.name, a.status, a.trials, a.worst["seed"], a.worst["options"], a.replay) == \
            (b.name, b.status, b.trials, b.worst["seed"], b.worst["options"], b.replay)
    # A flag's single value overrides the config's range.
    assert verify(str(CROP), config=config, padding=1).passed


def test_many_files_sweep_together():
    reports = verify_files([str(CROP), str(REPO / "bncheck" / "derivations" / "conv_closed_form.py")],
                           **SMALL_CONV, padding="0:1")
    assert [r.passed for r in reports.files] == [False, True]
    assert failed(reports.files[0]) == {"grad_x"}
    assert all(c.trials == 4 for r in reports.files for c in r.checks)


BACKWARD = ["verify-backward", REPO / "tests" / "backward" / "slipped.py", "--model", "conv",
            "--forward", 'conv_forward_naive(x, K, b, {"stride": stride, "pad": padding})',
            "--backward", "conv_backward_crop(dout, cache)", "--wrt", "x,K,b", "--shape", SHAPE, "--trials", "4"]


def test_verify_backward_sweeps_the_padding_and_replays_the_failing_value():
    assert invoke(*BACKWARD, "--padding", "1").exit_code == 0
    result = invoke(*BACKWARD, "--padding", "0:1")
    assert result.exit_code == 1, result.output
    replay = next(line for line in result.output.splitlines() if "replay:" in line).split("replay: ")[1]
    assert "--padding 0" in replay and "verify-backward" in replay
    replayed = invoke(*shlex.split(replay)[1:])
    assert replayed.exit_code == 1 and "✗ grad_x" in replayed.output, replayed.output


def test_check_backward_replays_in_python_at_the_failing_value():
    import sys

    sys.path.insert(0, str(REPO / "tests" / "backward"))
    try:
        slipped = importlib.import_module("slipped")
    finally:
        sys.path.pop(0)
    report = check_backward(lambda x, K, b, padding: slipped.conv_forward_naive(x, K, b, {"stride": 1, "pad": padding}),
                            slipped.conv_backward_crop, wrt="x,K,b", **SMALL_CONV, padding=(0, 1))
    grad_x = next(c for c in report.checks if c.name == "grad_x")
    assert not grad_x.passed and grad_x.worst["options"] == {"padding": 0}
    assert "padding=0" in grad_x.replay and "padding=1" not in grad_x.replay


@pytest.mark.parametrize("args,fragments", [
    (["--model", "bn-mlp", "--padding", "0:1"], ["padding: model bn-mlp has no option padding"]),
    (["--model", "conv", "--padding", "2:1"], ["padding: the range 2:1 is inverted"]),
    (["--model", "conv", "--stride", "0:2"], ["stride:", "got 0 (in the range 0:2)"]),
    (["--model", "conv", "--padding", "0-2"], ["padding: cannot parse '0-2'"]),
    (["--model", "conv", "--padding", "0:3"], ["padding 3 (of the swept padding 0:3)", "smaller than the largest kernel"]),
    (["--model", "conv", "--padding", "0:2", "--trials", "2"], ["trials: 2 draws cannot cover the 3 values"]),
    (["--model", "conv", "--stride", "1:2147483647"], ["stride 1:2147483647: 2,147,483,647 combinations", "past the 1,000"]),
    (["--model", "group-norm", "--groups", "3:4", "--shape", "N=1,C=4,H=2,W=2"],
     ["groups 3 (of the swept groups 3:4)", "groups=3 does not divide C=4"]),
])
def test_a_range_that_cannot_be_swept_is_one_line(args, fragments):
    assert_one_line_error(invoke("verify", *args), *fragments)


@pytest.mark.parametrize("table,fragments", [
    ('model = "group-norm"\n[sweep]\ngroups = [3, 4]\nC = [1, 2]\n',
     ["groups 3 (of the swept groups 3:4)", "holds no multiple of 3"]),
    ('model = "conv"\n[sweep]\npadding = [1, 0]\n', ["[sweep] padding: the range 1:0 is inverted"]),
    ('model = "conv"\npadding = 1\n[sweep]\npadding = [0, 1]\n', ["padding is set both at the top level and in [sweep]"]),
    ('model = "conv"\n[sweep]\npadding = [0, 1.5]\n', ["[sweep] padding: a range must be [min, max] of two integers"]),
])
def test_a_config_range_that_cannot_be_swept_is_one_line(tmp_path, table, fragments):
    config = tmp_path / "bad.toml"
    config.write_text(table)
    assert_one_line_error(invoke("verify", "--config", config), *fragments)


def test_a_case_is_exported_at_one_value(tmp_path):
    assert_one_line_error(invoke("case", "export", "--model", "conv", "--padding", "0:1", "--out", tmp_path / "c.json"),
                          "padding: a case is one draw")


def test_a_pool_slip_at_overlapping_windows_fails_at_stride_1_of_a_swept_stride():
    from bncheck.report.junit import junit_bytes

    slip = DERIVATIONS / "max_pool" / "slip_overlaps_overwritten.py"
    settings = dict(model="max-pool", pool=2, shape="N=1,C=2,H=5,W=4", trials=4)
    assert verify(str(slip), **settings, stride=2).passed  # no windows overlap at stride 2
    report = verify(str(slip), **settings, stride="1:2")
    grad_x = next(c for c in report.checks if c.name == "grad_x")
    assert not grad_x.passed and grad_x.worst["options"] == {"stride": 1}
    assert "--stride 1" in grad_x.replay
    assert b"at the worst draw (N=1 C=2 H=5 W=4 stride 1 seed" in junit_bytes(report)
