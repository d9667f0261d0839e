"""A function that raises on some draws keeps being checked on the others, everywhere (`verify` too);
the report says on how many draws and at which shapes it raised, and the traceback frames are the
user's own wherever they are, a module the derivation imports included. Model files get their options
from the load-time trace on."""

from __future__ import annotations

import json
import textwrap

from test_cli import assert_one_line_error, invoke

from bncheck import verify

HELPER = '''\
def checked_batch(N):
    if N == 2:
        raise ValueError("a batch of two is refused")
    return N
'''

DERIVATION = '''\
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from partly_helpers import checked_batch
from bncheck.derivations.bn_layer_closed_form import grad_beta as exact_beta, grad_gamma as exact_gamma


def grad_gamma(ctx):
    checked_batch(ctx.N)
    return 2 * exact_gamma(ctx)


def grad_beta(ctx):
    checked_batch(ctx.N)
    return exact_beta(ctx)


def grad_x(ctx):
    raise NotImplementedError("later")
'''


def _files(tmp_path):
    (tmp_path / "partly_helpers.py").write_text(HELPER)
    derivation = tmp_path / "partly.py"
    derivation.write_text(DERIVATION)
    return derivation


def test_a_derivation_that_raises_on_some_draws_is_compared_on_the_others(tmp_path):
    out = tmp_path / "r.json"
    result = invoke(["verify", _files(tmp_path), "--model", "bn-layer", "--config", CONFIG(tmp_path), "--json", out])
    assert result.exit_code == 1, result.output
    checks = {c["name"]: c for c in json.loads(out.read_text())["checks"]}
    # Raised on every draw it ran on: an error, as before.
    assert checks["grad_x"]["status"] == "error" and checks["grad_x"]["raised"]["draws"] == checks["grad_x"]["trials"] == 12
    # Raised at N = 2 alone, and off by 2 elsewhere: that slip, and where it raised.
    gamma = checks["grad_gamma"]
    assert gamma["status"] == "fail" and gamma["diagnosis"]["code"] == "scale" and gamma["diagnosis"]["factor_name"] == "2"
    assert 0 < gamma["raised"]["draws"] < 12 and {s["N"] for s in gamma["raised"]["shapes"]} == {2}
    assert gamma["raised"]["message"] == "ValueError: a batch of two is refused"
    # Raised at N = 2 alone, and right elsewhere: a failure, named by the raise.
    beta = checks["grad_beta"]
    assert beta["status"] == "fail" and beta["diagnosis"]["code"] == "exception"
    assert beta["max_abs_err"] < 1e-12 and beta["worst"]["shape"]["N"] == 2
    # The user's frames, in the derivation and in the module it imports.
    frames = beta["diagnosis"]["traceback"]
    assert [f.split(":")[0].rsplit("/", 1)[-1] for f in frames] == ["partly.py", "partly_helpers.py"]
    assert frames[-1].endswith('raise ValueError("a batch of two is refused")')
    # The terminal says it too.
    assert "raised on" in result.output and "at N=2" in result.output


def CONFIG(tmp_path):
    config = tmp_path / "small.toml"
    config.write_text("[sweep]\ntrials = 12\nseed = 0\nN = [2, 5]\nD = [1, 3]\n")
    return config


def test_a_timeout_stops_calling_the_function(tmp_path):
    slow = tmp_path / "slow.py"
    slow.write_text("import time\n\ndef grad_beta(ctx):\n    time.sleep(5)\n    return ctx.dout.sum(axis=0)\n")
    report = verify(str(slow), model="bn-layer", trials=5, shape="N=3,D=2", timeout=0.2)
    check = next(c for c in report.checks if c.name == "grad_beta")
    assert check.status == "error" and check.trials == 1 and "--timeout" in check.diagnosis["message"]


def test_an_import_error_inside_the_users_module_names_its_line(tmp_path):
    (tmp_path / "broken_helpers.py").write_text("x = 1\ny = undefined_name\n")
    derivation = tmp_path / "imports.py"
    derivation.write_text(textwrap.dedent('''\
        import os, sys
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        import broken_helpers
        def grad_beta(ctx): return 0
    '''))
    result = invoke(["verify", derivation, "--model", "bn-layer"])
    assert_one_line_error(result, "imports.py:3 (at ", "broken_helpers.py:2)", "NameError")


MODEL = '''\
import jax.numpy as jnp

DIMS = {"N": (2, 5), "D": (1, 3)}
OPTIONS = ("eps", "ddof")


def inputs(d): return {"x": (d["N"], d["D"]), "dout": (d["N"], d["D"])}
def params(d): return {}


def forward(x, dout, *, options):
    mu = x.mean(axis=0)
    sigma = jnp.sqrt(((x - mu[None, :]) ** 2).sum(axis=0) / (x.shape[0] - options["ddof"]) + options["eps"])
    y = (x - mu[None, :]) / sigma[None, :]
    return {"R": (y * dout).sum(), "sigma": sigma, "y": y}
'''

NORMALISED = '''\
def grad_x(ctx):
    y, dout, n = ctx.y, ctx.dout, ctx.N - ctx.ddof
    return (dout - dout.mean(axis=0) - y * (y * dout).sum(axis=0) / n) / ctx.sigma
'''


def test_a_model_files_options_reach_forward_at_load_and_in_the_run(tmp_path):
    model, derivation = tmp_path / "normalise.py", tmp_path / "normalise_grad.py"
    model.write_text(MODEL)
    derivation.write_text(NORMALISED)
    for flags in ({}, {"ddof": 1, "eps": 1e-3}):
        report = verify(str(derivation), model=str(model), trials=4, **flags)
        assert report.passed, [(c.name, c.status, c.diagnosis) for c in report.checks]
        assert report.options == {"eps": flags.get("eps", 1e-5), "ddof": flags.get("ddof", 0)}
