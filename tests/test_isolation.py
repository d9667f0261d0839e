"""A user's function is untrusted: whatever it raises, returns or tries fails its own check on that draw,
never another check, never the run, and never with a pass."""

from __future__ import annotations

import pytest
from conftest import failed, statuses

CORRECT = "from bncheck.derivations.bn_mlp_closed_form import grad_gamma, grad_G2, jvp_B_beta\n"
SMALL_RUN = {"shape": "N=6,p1=3,p2=2", "trials": 3}


def _run(run, tmp_path, body: str, **flags):
    path = tmp_path / "derivation.py"
    path.write_text(CORRECT + body)
    return run(str(path), **{**SMALL_RUN, **flags})


def _check(report, name):
    return {c.name: c for c in report.checks}[name]


@pytest.mark.parametrize("body, words", [
    ("def grad_beta(ctx):\n    r = ctx.resid\n    r *= -2 / ctx.N\n    return r.sum() * 0 + ctx.beta\n", "read-only"),
    ("def grad_beta(ctx):\n    ctx.resid[:] = 0\n    return ctx.beta\n", "read-only"),
    ("def grad_beta(ctx):\n    ctx.N = 1\n    return ctx.beta\n", "ctx is read-only"),
    ("def grad_beta(ctx):\n    ctx.__dict__['N'] = 1\n    return ctx.beta\n", None),
    ("def grad_beta(ctx):\n    import numpy as np\n    np.asarray(ctx.G2).setflags(write=True)\n    return ctx.beta\n", "WRITEABLE"),
])
def test_a_function_that_writes_into_ctx_fails_alone(run, tmp_path, body, words):
    """The common NumPy aliasing slip in one function must not be blamed on another: the correct
    grad_gamma and grad_G2 see the ctx they always see, and pass."""
    report = _run(run, tmp_path, body)
    assert statuses(report)["grad_gamma"] == "pass" and statuses(report)["grad_G2"] == "pass"
    assert statuses(report)["jvp_B_beta"] == "pass"
    if words is not None:
        check = _check(report, "grad_beta")
        assert check.status == "error" and words in check.diagnosis["message"], check.diagnosis


def test_a_jvp_that_writes_into_its_direction_fails_alone(run, tmp_path):
    body = ("from bncheck.derivations.bn_mlp_closed_form import jvp_B_G1 as exact\n"
            "def jvp_B_G1(ctx, V):\n    out = exact(ctx, V)\n    V[:] = 0\n    return out\n"
            "def jvp_B_gamma(ctx, V):\n    from bncheck.derivations.bn_mlp_closed_form import jvp_B_gamma\n"
            "    return jvp_B_gamma(ctx, V)\n")
    report = _run(run, tmp_path, body)
    assert _check(report, "jvp_B_G1").status == "error"
    assert "read-only" in _check(report, "jvp_B_G1").diagnosis["message"]
    assert statuses(report)["jvp_B_gamma"] == "pass"


@pytest.mark.parametrize("raise_, words", [
    ("import sys\n    sys.exit(0)", "SystemExit"),
    ("raise SystemExit", "sys.exit"),
    ("raise GeneratorExit('x')", "GeneratorExit"),
    ("class Odd(BaseException): pass\n    raise Odd('odd')", "Odd: odd"),
])
def test_any_base_exception_fails_its_check_and_the_others_keep_their_verdicts(run, tmp_path, raise_, words):
    report = _run(run, tmp_path, f"def grad_beta(ctx):\n    {raise_}\n")
    check = _check(report, "grad_beta")
    assert check.status == "error" and words in check.diagnosis["message"]
    assert not report.passed and failed(report) == {"grad_beta"}


def test_a_bad_return_value_or_a_bad_exception_fails_its_check_only(run, tmp_path):
    body = (
        "class Lying:\n    shape = (2,)\n    dtype = 'float64'\n"
        "    def __array__(self, *a, **k):\n        raise RuntimeError('requires_grad')\n"
        "def grad_beta(ctx):\n    return Lying()\n"
        "class Unprintable(Exception):\n    def __str__(self):\n        raise ValueError('no')\n"
        "def grad_G1(ctx):\n    raise Unprintable()\n"
        "def jac_B_beta(ctx):\n    raise ValueError('x' * 5_000_000 + '\\x1b[31m\\x07')\n"
    )
    report = _run(run, tmp_path, body)
    assert _check(report, "grad_beta").status == "error"
    assert "requires_grad" in _check(report, "grad_beta").diagnosis["message"]
    assert "could not be read" in _check(report, "grad_G1").diagnosis["message"]
    long = _check(report, "jac_B_beta").diagnosis["message"]
    assert len(long) < 3000 and "more characters cut" in long
    assert failed(report) == {"grad_beta", "grad_G1", "jac_B_beta"}


def test_a_returned_generator_or_dict_is_not_an_array(run, tmp_path):
    body = "def grad_beta(ctx):\n    return (x for x in ctx.beta)\ndef grad_G1(ctx):\n    return {'G1': ctx.G1}\n"
    report = _run(run, tmp_path, body)
    for name in ("grad_beta", "grad_G1"):
        assert _check(report, name).status == "fail" and _check(report, name).diagnosis["code"] == "shape"


def test_a_call_that_takes_too_long_fails_its_check(run, tmp_path):
    body = "import time\ndef grad_beta(ctx):\n    while True:\n        try:\n            time.sleep(100)\n        except Exception:\n            pass\n"
    report = _run(run, tmp_path, body, timeout=0.5, trials=2)
    check = _check(report, "grad_beta")
    assert check.status == "error" and "--timeout 0.5" in check.diagnosis["message"]
    assert statuses(report)["grad_G2"] == "pass"


def test_a_function_out_of_memory_is_skipped_like_a_jacobian_over_budget(run, tmp_path):
    report = _run(run, tmp_path, "def grad_beta(ctx):\n    raise MemoryError()\n")
    check = _check(report, "grad_beta")
    assert check.status == "skipped" and "ran out of memory" in check.message
    assert report.passed
    required = _run(run, tmp_path, "def grad_beta(ctx):\n    raise MemoryError()\n", require="beta")
    assert not required.passed


def test_an_invariant_that_cannot_be_evaluated_says_nothing(run, tmp_path):
    """bn-mlp's eps = 0 invariant on grad_G1 meets a value it cannot use: no warning, no crash."""
    body = "from bncheck.derivations.bn_mlp_closed_form import grad_G1 as exact\n" \
           "def grad_G1(ctx):\n    return exact(ctx)\n"
    report = _run(run, tmp_path, body, ddof=1, eps=0.0)
    assert report.passed


@pytest.mark.parametrize("body", [
    "def grad_beta(ctx):\n    import numpy as np\n    np.asarray(ctx.G2).base.setflags(write=True)\n    return ctx.beta\n",
    "def grad_beta(ctx):\n    type(ctx).__getattr__ = lambda self, name: 0\n    del type(ctx).__getattr__\n    return ctx.beta\n",
])
def test_ctx_arrays_and_class_cannot_be_made_writeable(run, tmp_path, body):
    report = _run(run, tmp_path, body)
    assert statuses(report)["grad_G2"] == "pass" and statuses(report)["grad_gamma"] == "pass"


@pytest.mark.parametrize("patch", [
    "import numpy as np\nnp.abs = lambda x: x * 0\n",
    "import jax\njax.grad = lambda f, *a, **k: (lambda *x, **y: 0)\n",
    "import bncheck.compare as c\nc.compare = lambda *a, **k: None\n",
    "import sys\nsys.modules['jax'] = None\nsys.modules['jax.numpy'] = None\n",
])
def test_a_file_that_replaces_what_bncheck_relies_on_is_refused(run, tmp_path, patch):
    from bncheck.errors import BncheckError

    path = tmp_path / "derivation.py"
    path.write_text(patch + "def grad_beta(ctx):\n    return ctx.beta * 0\n")
    with pytest.raises(BncheckError, match="replaced"):
        run(str(path), **SMALL_RUN)
    import jax
    import numpy as np

    assert np.abs(-1) == 1 and jax.grad.__module__.startswith("jax")  # put back


def test_os_exit_from_a_function_fails_its_check(run, tmp_path):
    report = _run(run, tmp_path, "def grad_beta(ctx):\n    import os\n    os._exit(0)\n")
    check = _check(report, "grad_beta")
    assert check.status == "error" and "os._exit(0)" in check.diagnosis["message"]
    import os

    assert os._exit.__module__ in ("posix", "nt")  # put back


def test_a_function_that_empties_its_ctx_fails(run, tmp_path):
    body = "def grad_beta(ctx):\n    value = ctx.beta * 0 + 1\n    vars(ctx).clear()\n    return value\n"
    report = _run(run, tmp_path, body)
    assert "changed its ctx" in _check(report, "grad_beta").diagnosis["message"]
    assert statuses(report)["grad_G2"] == "pass"


def test_a_huge_wrongly_shaped_value_fails_its_check(run, tmp_path):
    body = "import numpy as np\ndef grad_beta(ctx):\n    return np.broadcast_to(np.float64(0.0), (10**6, 10**6))\n"
    report = _run(run, tmp_path, body)
    check = _check(report, "grad_beta")
    assert check.status == "fail" and check.diagnosis["code"] == "shape"
    assert statuses(report)["grad_G2"] == "pass"
