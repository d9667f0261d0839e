"""A backward pass as written (CONTRACT §6): `bncheck verify-backward` and `bncheck.check_backward` on
the corpus in tests/backward/, a course's layers.py, its slips, (1, D) parameters and a layer class.

Sweeps are a few draws at small shapes (tests/backward/small.toml): bn-layer pads, so a sweep is one
compile; conv cannot, so its runs fix one shape.
"""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import pytest
from test_cli import assert_one_line_error, invoke

from bncheck import check_backward
from bncheck.errors import SettingsError

CORPUS = Path(__file__).parent / "backward"
LAYERS, SLIPPED, ROWS = CORPUS / "layers.py", CORPUS / "slipped.py", CORPUS / "rows.py"
SMALL = CORPUS / "small.toml"  # bn-layer draws of N in [2, 6], D in [1, 4]: N = 2 among them
BN_FORWARD = 'batchnorm_forward(x, gamma, beta, {"mode": "train", "eps": eps})'
BN = ["--model", "bn-layer", "--wrt", "x,gamma,beta", "--config", SMALL]
CONV_FORWARD = 'conv_forward_naive(x, K, b, {"stride": stride, "pad": padding})'
CONV = ["--model", "conv", "--wrt", "x,K,b", "--trials", "2", "--shape", "N=2,C=2,O=3,kh=3,kw=2,H=5,W=4"]

sys.path.insert(0, str(CORPUS))
from layer_class import BatchNorm, BatchNormWithoutGamma  # noqa: E402
import layers as course  # noqa: E402


def backward_run(tmp_path, file, forward, backward, *flags, status=None):
    """verify-backward's JSON report, {check name: entry} beside it, after asserting the exit status."""
    out = tmp_path / "report.json"
    result = invoke(["verify-backward", file, "--forward", forward, "--backward", backward, *flags, "--json", out])
    if status is not None:
        assert result.exit_code == status, result.output
    report = json.loads(out.read_text())
    return report, {c["name"]: c for c in report["checks"]}


def statuses(checks: dict) -> dict[str, str]:
    return {name: c["status"] for name, c in checks.items()}


def codes(checks: dict) -> dict[str, str]:
    return {name: c["diagnosis"]["code"] for name, c in checks.items() if c["diagnosis"]}


# ---- a course's pairs, right ---------------------------------------------------------------------------


@pytest.mark.parametrize("backward", ["batchnorm_backward", "batchnorm_backward_alt"])
def test_a_course_batchnorm_pair_passes_with_its_forward_checked(tmp_path, backward):
    report, checks = backward_run(tmp_path, LAYERS, BN_FORWARD, f"{backward}(dout, cache)", *BN, status=0)
    assert statuses(checks) == {"forward": "pass", "grad_x": "pass", "grad_gamma": "pass", "grad_beta": "pass"}
    assert list(checks) == ["forward", "grad_x", "grad_gamma", "grad_beta"]
    forward = checks["forward"]
    assert forward["target"] == "y" and forward["reference"] == "bn-layer's y" and forward["trials"] == 12
    assert report["settings"]["forward"] == BN_FORWARD and report["settings"]["wrt"] == ["x", "gamma", "beta"]


def test_spatial_batchnorm_passes_under_the_conv_layout(tmp_path):
    _, checks = backward_run(
        tmp_path, LAYERS, 'spatial_batchnorm_forward(x, gamma, beta, {"mode": "train"})',
        "spatial_batchnorm_backward(dout, cache)", "--model", "bn-layer", "--layout", "conv", "--wrt", "x,gamma,beta",
        "--trials", "3", status=0,
    )
    assert set(statuses(checks).values()) == {"pass"}


@pytest.mark.parametrize("padding", ["0", "1"])
def test_a_course_conv_pair_passes_at_each_padding(tmp_path, padding):
    _, checks = backward_run(tmp_path, LAYERS, CONV_FORWARD, "conv_backward_naive(dout, cache)", *CONV,
                             "--padding", padding, status=0)
    assert statuses(checks) == {"forward": "pass", "grad_x": "pass", "grad_K": "pass", "grad_b": "pass"}


# ---- slips ---------------------------------------------------------------------------------------------


def test_a_pad_minus_pad_crop_is_an_empty_dx_at_padding_0_and_right_at_padding_1(tmp_path):
    _, checks = backward_run(tmp_path, SLIPPED, CONV_FORWARD, "conv_backward_crop(dout, cache)", *CONV,
                             "--padding", "0", status=1)
    assert statuses(checks) == {"forward": "pass", "grad_x": "fail", "grad_K": "pass", "grad_b": "pass"}
    assert codes(checks) == {"grad_x": "shape"} and "(2, 2, 0, 0)" in checks["grad_x"]["diagnosis"]["message"]
    backward_run(tmp_path, SLIPPED, CONV_FORWARD, "conv_backward_crop(dout, cache)", *CONV, "--padding", "1", status=0)


def test_an_eps_of_its_own_is_diagnosed_eps_with_the_value_it_matches(tmp_path):
    _, checks = backward_run(tmp_path, SLIPPED, 'batchnorm_forward_eps8(x, gamma, beta, {"mode": "train"})',
                             "batchnorm_backward(dout, cache)", *BN, status=1)
    assert statuses(checks) == {"forward": "fail", "grad_x": "fail", "grad_gamma": "fail", "grad_beta": "pass"}
    assert codes(checks) == {"forward": "eps", "grad_x": "eps", "grad_gamma": "eps"}
    for name in ("forward", "grad_x", "grad_gamma"):
        diagnosis = checks[name]["diagnosis"]
        assert diagnosis["eps"] == 1e-8 and "eps = 1e-08" in diagnosis["message"] and "1e-05" in diagnosis["message"]
    # Under its own eps, the same pair passes.
    backward_run(tmp_path, SLIPPED, 'batchnorm_forward_eps8(x, gamma, beta, {"mode": "train"})',
                 "batchnorm_backward(dout, cache)", *BN, "--eps", "1e-8", "--trials", "4", status=0)


def test_a_forward_that_computes_something_else_fails_the_forward_check_alone(tmp_path):
    _, checks = backward_run(tmp_path, SLIPPED, 'batchnorm_forward_no_beta(x, gamma, beta, {"mode": "train"})',
                             "batchnorm_backward(dout, cache)", *BN, status=1)
    assert statuses(checks) == {"forward": "fail", "grad_x": "pass", "grad_gamma": "pass", "grad_beta": "pass"}
    assert checks["forward"]["max_abs_err"] > 0.1


def test_keepdims_gradients_are_the_shape_slip_they_are(tmp_path):
    _, checks = backward_run(tmp_path, SLIPPED, BN_FORWARD, "batchnorm_backward_keepdims(dout, cache)", *BN, status=1)
    assert statuses(checks) == {"forward": "pass", "grad_x": "pass", "grad_gamma": "fail", "grad_beta": "fail"}
    for name in ("grad_gamma", "grad_beta"):
        diagnosis = checks[name]["diagnosis"]
        assert diagnosis["code"] == "shape" and diagnosis["repair"] == "flatten" and diagnosis["repaired"] is None


def test_a_backward_that_raises_at_n_2_is_still_compared_at_every_other_n(tmp_path):
    _, checks = backward_run(tmp_path, SLIPPED, BN_FORWARD, "batchnorm_backward_no_mean_path(dout, cache)", *BN,
                             status=1)
    assert statuses(checks) == {"forward": "pass", "grad_x": "fail", "grad_gamma": "fail", "grad_beta": "fail"}
    for name in ("grad_x", "grad_gamma", "grad_beta"):
        raised = checks[name]["raised"]
        assert 0 < raised["draws"] < checks[name]["trials"]
        assert raised["shapes"] and all(shape["N"] == 2 for shape in raised["shapes"])
        assert raised["message"] == "ValueError: a batch of two gives a degenerate variance"
        # The user's own lines: the expression, then the student's helper where it raised.
        assert raised["traceback"][0].startswith("--backward:1: batchnorm_backward_no_mean_path")
        assert raised["line"].endswith('raise ValueError("a batch of two gives a degenerate variance")')
        assert "slipped.py:" in raised["line"]
    # Wrong where it did not raise: named as the slip it is there.
    assert checks["grad_x"]["diagnosis"]["variant"] == "batch-stats-constant:mean"
    assert checks["grad_x"]["smallest"]["shape"]["N"] > 2
    # Right where it did not raise: the raise is the failure.
    assert codes(checks)["grad_gamma"] == "exception" and checks["grad_gamma"]["max_abs_err"] < 1e-12


def test_a_failed_checks_replay_reproduces_it(tmp_path):
    _, checks = backward_run(tmp_path, SLIPPED, BN_FORWARD, "batchnorm_backward_no_mean_path(dout, cache)", *BN)
    replay = checks["grad_x"]["replay"]
    args = shlex.split(replay)
    assert args[:3] == ["bncheck", "verify-backward", str(SLIPPED)] and "--trials" in args
    out = tmp_path / "replay.json"
    result = invoke([*args[1:], "--json", out])
    assert result.exit_code == 1, result.output
    again = {c["name"]: c for c in json.loads(out.read_text())["checks"]}
    assert again["grad_x"]["status"] == "fail" and again["grad_x"]["worst"]["shape"] == checks["grad_x"]["smallest"]["shape"]


def test_backward_values_that_do_not_match_wrt_fail_each_check_with_the_reason(tmp_path):
    report, checks = backward_run(tmp_path, LAYERS, BN_FORWARD, "batchnorm_backward(dout, cache)[:2]", *BN, status=1)
    assert statuses(checks) == {"forward": "pass", "grad_x": "error", "grad_gamma": "error", "grad_beta": "error"}
    assert "backward returned 2 values, but --wrt names 3" in checks["grad_x"]["diagnosis"]["message"]


# ---- shapes of the user's own ----------------------------------------------------------------------------


def test_row_parameters_declared_once_pass(tmp_path):
    _, checks = backward_run(tmp_path, ROWS, "batchnorm_forward(x, gamma, beta, eps)", "batchnorm_backward(dout, cache)",
                             *BN, "--param-shapes", "gamma=1,D beta=1,D", status=0)
    assert set(statuses(checks).values()) == {"pass"}


def test_row_parameters_undeclared_fail_where_the_code_asserts_its_shapes(tmp_path):
    _, checks = backward_run(tmp_path, ROWS, "batchnorm_forward(x, gamma, beta, eps)", "batchnorm_backward(dout, cache)",
                             *BN, "--trials", "2", status=1)
    assert set(statuses(checks).values()) == {"error"}
    assert "gamma must be a (1, D) row, got (" in checks["grad_x"]["diagnosis"]["message"]


def test_a_column_returned_where_a_row_is_declared_is_still_a_shape_slip(tmp_path):
    _, checks = backward_run(tmp_path, ROWS, "batchnorm_forward(x, gamma, beta, eps)",
                             "[g.T if g.shape[0] == 1 else g for g in batchnorm_backward(dout, cache)]", *BN,
                             "--param-shapes", "gamma=1,D beta=1,D", "--trials", "3", status=1)
    assert statuses(checks) == {"forward": "pass", "grad_x": "pass", "grad_gamma": "fail", "grad_beta": "fail"}
    diagnosis = checks["grad_gamma"]["diagnosis"]
    assert diagnosis["code"] == "shape" and diagnosis["message"].startswith("returned shape (")
    assert ", 1), expected (" in diagnosis["message"]


@pytest.mark.parametrize("declared, fragment", [
    ("gamma=D,D", "no reshape of the model's gamma (D)"),
    ("w=1,D", "w is no input or parameter of model bn-layer"),
    ("gamma=1,Q", "gamma's Q is no dimension of model bn-layer"),
    ("gamma", "cannot parse 'gamma'"),
])
def test_a_declared_shape_that_is_no_reshape_is_one_line(declared, fragment):
    result = invoke(["verify-backward", LAYERS, "--forward", BN_FORWARD, "--backward", "batchnorm_backward(dout, cache)",
                     *BN, "--param-shapes", declared])
    assert_one_line_error(result, "param_shapes:", fragment)


def test_param_shapes_serve_a_derivation_file_of_verify_too(tmp_path):
    derivation = tmp_path / "rows_derivation.py"
    derivation.write_text(
        "def grad_beta(ctx):\n"
        "    assert ctx.gamma.shape == (1, ctx.D)\n"
        "    return ctx.dout.sum(axis=0, keepdims=True)\n"
        "def grad_gamma(ctx):\n"
        "    return 2 * (ctx.xhat * ctx.dout).sum(axis=0, keepdims=True)\n"
    )
    from bncheck import verify

    report = verify(str(derivation), model="bn-layer", param_shapes="gamma=1,D beta=1,D", trials=3)
    checks = {c.name: c for c in report.checks}
    assert checks["grad_beta"].status == "pass"
    # Reshaped, the slip is named as it would be in the model's shape, and its replay keeps the shapes.
    assert checks["grad_gamma"].diagnosis["code"] == "scale" and checks["grad_gamma"].diagnosis["factor_name"] == "2"
    assert "--param-shapes 'gamma=1,D beta=1,D'" in checks["grad_gamma"].replay
    undeclared = {c.name: c for c in verify(str(derivation), model="bn-layer", trials=2).checks}
    assert undeclared["grad_beta"].status == "error"  # its assert: undeclared, ctx.gamma is (D,)
    assert undeclared["grad_gamma"].diagnosis["code"] == "shape"


# ---- bad input ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("args, fragments", [
    (["--forward", "batchnorm_forwrd(x, gamma, beta, {})", "--backward", "batchnorm_backward(dout, cache)", *BN],
     ("--forward reads batchnorm_forwrd", "did you mean batchnorm_forward?")),
    (["--forward", "batchnorm_forward(x, gamma,", "--backward", "batchnorm_backward(dout, cache)", *BN],
     ("forward:", "is no Python expression")),
    (["--forward", BN_FORWARD, "--backward", "batchnorm_backward(dout, cache)", "--model", "bn-layer", "--wrt", "x,w"],
     ("wrt: w is no input or parameter of model bn-layer",)),
    (["--forward", BN_FORWARD, "--backward", "batchnorm_backward(dout, cache)", "--wrt", "x"],
     ("model: bn-mlp is no layer model",)),
    (["--forward", BN_FORWARD, "--backward", "batchnorm_backward(dout, cash)", *BN],
     ("--backward reads cash", "did you mean cache?")),
])
def test_what_cannot_be_checked_is_one_line_and_exit_2(args, fragments):
    assert_one_line_error(invoke(["verify-backward", LAYERS, *args]), *fragments)


def test_a_layer_file_that_cannot_be_imported_is_one_line(tmp_path):
    broken = tmp_path / "layers.py"
    broken.write_text("import numpy as np\nraise SystemExit(0)\n")
    result = invoke(["verify-backward", broken, "--forward", BN_FORWARD, "--backward", "batchnorm_backward(dout, cache)", *BN])
    assert_one_line_error(result, "layer file: importing", "layers.py:2", "SystemExit")


# ---- the Python form -------------------------------------------------------------------------------------


def _class_pair(cls):
    layer = cls()

    def forward(x, gamma, beta):
        layer.gamma, layer.beta = gamma, beta
        return layer.forward(x)

    def backward(dout):
        dx = layer.backward(dout)
        return dx, layer.dgamma, layer.dbeta

    return forward, backward


def test_a_layer_class_with_gradients_as_attributes_passes_through_check_backward():
    report = check_backward(*_class_pair(BatchNorm), model="bn-layer", wrt=("x", "gamma", "beta"), config=SMALL)
    assert report.passed and [c.name for c in report.checks] == ["forward", "grad_x", "grad_gamma", "grad_beta"]
    # Printed, it is the terminal table.
    assert "forward     pass" in str(report) and "PASS  4 checks agree with JAX over 12 draws" in str(report)


def test_a_layer_class_that_forgets_gamma_in_dx_fails_grad_x_per_column():
    report = check_backward(*_class_pair(BatchNormWithoutGamma), model="bn-layer", wrt="x,gamma,beta", config=SMALL)
    failed = {c.name: c for c in report.checks if not c.passed}
    assert set(failed) == {"grad_x"}
    diagnosis = failed["grad_x"].diagnosis
    assert diagnosis["code"] == "scale" and diagnosis["field"] == "gamma" and diagnosis["power"] == -1
    assert failed["grad_x"].replay.startswith("check_backward(_class_pair.<locals>.forward, _class_pair.<locals>.backward, ")


def test_forward_and_backward_are_each_called_once_per_draw():
    calls = {"forward": 0, "backward": 0}

    def forward(x, gamma, beta, eps):
        calls["forward"] += 1
        return course.batchnorm_forward(x, gamma, beta, {"mode": "train", "eps": eps})

    def backward(dout, cache):
        calls["backward"] += 1
        return course.batchnorm_backward(dout, cache)

    report = check_backward(forward, backward, model="bn-layer", wrt=("x", "gamma", "beta"), trials=5)
    assert report.passed and calls == {"forward": 5, "backward": 5}


def test_a_loss_without_an_upstream_gradient_gets_dout_1_and_its_out_checked(tmp_path):
    """A model file whose R is its output (a loss): backward gets dout = 1, forward's out is the loss."""
    model = tmp_path / "mean_square.py"
    model.write_text(
        "DIMS = {'N': (1, 4), 'D': (1, 3)}\n"
        "def inputs(d): return {'x': (d['N'], d['D'])}\n"
        "def params(d): return {}\n"
        "def forward(x):\n"
        "    out = (x ** 2).sum() / x.shape[0]\n"
        "    return {'R': out, 'out': out}\n"
    )
    seen = []

    def forward(x):
        return (x ** 2).sum() / x.shape[0], x

    def backward(dout, cache):
        seen.append(float(dout))
        return dout * 2 * cache / cache.shape[0]

    report = check_backward(forward, backward, model=str(model), wrt="x", trials=3)
    assert report.passed, [(c.name, c.status, c.diagnosis) for c in report.checks]
    assert seen == [1.0, 1.0, 1.0]

    def halved(dout, cache):
        return dout * cache / cache.shape[0]

    failed = check_backward(forward, halved, model=str(model), wrt="x", trials=3)
    assert [c.name for c in failed.checks if not c.passed] == ["grad_x"]
    assert failed.checks[1].diagnosis["factor_name"] == "1/2"


def test_check_backward_refuses_a_forward_asking_for_what_no_draw_gives():
    with pytest.raises(SettingsError, match="forward: asks for bn_param.*gives: x, dout, gamma, beta"):
        check_backward(course.batchnorm_forward, course.batchnorm_backward, model="bn-layer", wrt="x,gamma,beta")


def test_check_backward_takes_row_parameters_declared_once():
    import rows

    report = check_backward(lambda x, gamma, beta: rows.batchnorm_forward(x, gamma, beta), rows.batchnorm_backward,
                            model="bn-layer", wrt=("x", "gamma", "beta"), param_shapes="gamma=1,D beta=1,D", trials=4)
    assert report.passed
