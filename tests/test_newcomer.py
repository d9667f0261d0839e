"""What a newcomer hit (issue 16, friction): what --require all means and --require grads, a model given as
a module, help that says what it does and is not cut, and counts in the singular."""

from __future__ import annotations

import re
from types import ModuleType

import pytest
from conftest import REPO
from typer.testing import CliRunner

from bncheck import verify
from bncheck.cli import app
from bncheck.testing import assert_derivation

TINY = ["--trials", "2", "--shape", "N=4,p1=2,p2=3"]
FOUR_GRADIENTS = "from bncheck.derivations.bn_mlp_closed_form import grad_beta, grad_gamma, grad_G1, grad_G2\n"


def invoke(args, width: int = 100):
    return CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": str(width)})


@pytest.fixture
def four_gradients(tmp_path):
    path = tmp_path / "mine.py"
    path.write_text(FOUR_GRADIENTS)
    return path


def test_require_grads_asks_for_every_gradient_and_all_for_every_function(four_gradients):
    # The README's pytest gate: a file with the four gradients passes `require="grads"`; `all` asks for
    # the jac_ and jvp_ forms as well, and says which are missing.
    assert_derivation(four_gradients, require="grads", shape="N=4,p1=2,p2=3", trials=2)
    report = verify(str(four_gradients), require="all", shape="N=4,p1=2,p2=3", trials=2)
    assert {c.name for c in report.failed} == {
        "jac_B_beta", "jac_B_gamma", "jac_B_G1", "jvp_B_beta", "jvp_B_gamma", "jvp_B_G1"
    }
    assert all(c.message == "required but not defined" for c in report.failed)


def test_require_grads_fails_a_file_missing_one(tmp_path):
    path = tmp_path / "three.py"
    path.write_text("from bncheck.derivations.bn_mlp_closed_form import grad_beta, grad_gamma, grad_G1\n")
    result = invoke(["verify", path, *TINY, "--require", "grads"])
    assert result.exit_code == 1 and "grad_G2  required but not defined" in result.output


def test_require_an_input_asks_for_its_gradient(four_gradients):
    # X is an input: its gradient grad_X was accepted by --require and then asked for by nothing.
    report = verify(str(four_gradients), require="X", shape="N=4,p1=2,p2=3", trials=2)
    assert [c.name for c in report.failed] == ["grad_X"] and report.failed[0].status == "missing"


def test_require_says_what_its_words_mean():
    text = " ".join(invoke(["verify", "--help"], width=400).output.split())
    assert "grads (every gradient the model lists)" in text
    assert "all (every function it lists: its jac_ and jvp_ forms too" in text
    assert "an input or parameter (beta, G1: its gradient)" in text
    result = invoke(["verify", "--require", "bogus", *TINY])
    assert result.exit_code == 2
    assert "an input or parameter (X, y, G1, G2, gamma, beta)" in result.output and "use grads" in result.output


def test_outputs_help_shows_no_default_that_is_not_applied():
    text = " ".join(invoke(["verify", "--help"], width=400).output.split())
    outputs = text[text.index("--outputs"):text.index("--activation")]
    assert "[default: 1]" not in outputs and "comes from the sweep" in outputs


@pytest.mark.parametrize("group", [[], ["case"], ["demo"]])
def test_no_command_s_help_is_cut_in_its_group_s_listing(group):
    out = invoke([*group, "--help"], width=80).output
    listing = out[out.index("Commands:"):]
    assert "..." not in listing, listing
    assert len(re.findall(r"^  \S+ +\S", listing, re.M)) >= 1


def test_a_model_may_be_a_module(tmp_path):
    # verify(model=<module>) raised on a module, where derivations may be modules.
    import importlib.util

    spec = importlib.util.spec_from_file_location("layernorm_model", REPO / "examples" / "layernorm" / "model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    report = verify(str(REPO / "examples" / "layernorm" / "correct.py"), model=module, trials=2)
    assert report.passed and report.model == str(REPO / "examples" / "layernorm" / "model.py")


def test_a_model_module_built_in_memory(tmp_path):
    import jax.numpy as jnp

    module = ModuleType("scaled")
    module.DIMS = {"N": (1, 4)}
    module.inputs = lambda d: {"x": (d["N"],)}
    module.params = lambda d: {"w": (d["N"],)}
    module.forward = lambda x, w: {"R": jnp.sum(w * x**2), "y": w * x}
    derivation = ModuleType("mine")
    derivation.grad_w = lambda ctx: ctx.x**2
    derivation.grad_x = lambda ctx: 3 * ctx.w * ctx.x  # 2 w x
    report = verify(derivation, model=module, trials=3)
    assert report.model == "<module scaled>"
    assert {c.name: c.status for c in report.checks} == {"grad_x": "fail", "grad_w": "pass"}


def test_one_of_a_thing_is_not_plural(tmp_path):
    path = tmp_path / "one.py"
    path.write_text("from bncheck.derivations.bn_mlp_closed_form import grad_beta\n")
    result = invoke(["verify", path, "--trials", "1", "--shape", "N=4,p1=2,p2=3"])
    assert result.exit_code == 0, result.output
    assert ": 1 draw, N=4" in result.output
    assert "PASS  1 check agrees with JAX over 1 draw\n" in result.output
