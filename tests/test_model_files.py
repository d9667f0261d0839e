"""`--model PATH.py` (CONTRACT §5): a user's own model file, verified like a built-in.

The example models under examples/ are written as a user would; their correct derivations must pass a
sweep and their slipped ones fail exactly the checks they break. Broken model files are exit 2 with a
one-line error.
"""

from __future__ import annotations

import json

import pytest
from conftest import REPO, failed, statuses
from test_cli import assert_one_line_error, invoke, write

EXAMPLES = REPO / "examples"
LAYERNORM = EXAMPLES / "layernorm" / "model.py"
SOFTMAX = EXAMPLES / "softmax-xent" / "model.py"


def verify(derivation, model, **flags):
    from bncheck import verify

    return verify(str(derivation), model=str(model), **{"trials": 12, **flags})


def test_layer_norm_correct_derivation_passes_a_sweep():
    report = verify(EXAMPLES / "layernorm" / "correct.py", LAYERNORM)
    assert report.passed, statuses(report)
    assert statuses(report) == {
        "grad_beta": "pass", "grad_gamma": "pass", "grad_x": "pass", "grad_dout": "pass", "jvp_y_gamma": "pass",
    }
    shapes = {tuple(c.worst["shape"].items()) for c in report.checks}
    assert all(dict(s).keys() == {"N", "D"} for s in shapes)


def test_layer_norm_slip_fails_only_the_check_it_breaks():
    report = verify(EXAMPLES / "layernorm" / "slipped.py", LAYERNORM)
    assert failed(report) == {"grad_x"}


def test_softmax_slip_is_a_dropped_one_over_n():
    report = verify(EXAMPLES / "softmax-xent" / "slipped.py", SOFTMAX)
    assert failed(report) == {"grad_W"}
    diagnosis = next(c.diagnosis for c in report.checks if c.name == "grad_W")
    assert diagnosis["code"] == "scale" and diagnosis["factor_name"] == "N"


def test_softmax_correct_derivation_passes_with_sampled_one_hot_targets():
    report = verify(EXAMPLES / "softmax-xent" / "correct.py", SOFTMAX, shape="N=6,D=3,K=4", trials=3)
    assert report.passed, statuses(report)


def test_sample_draws_the_arrays_it_names_and_the_rest_stay_normal():
    from bncheck.models import get_model
    from bncheck.settings import resolve
    from bncheck.draws import plan, sample

    model = get_model(str(SOFTMAX))
    draw = next(iter(plan(resolve({"model": str(SOFTMAX), "shape": "N=50,D=3,K=4", "trials": 1}), model)))
    sample(model, draw, "float64", set())
    t = draw.arrays["t"]
    assert set(t.ravel()) == {0.0, 1.0} and (t.sum(axis=1) == 1).all()
    assert draw.arrays["x"].std() > 0.5 and set(draw.arrays["x"].ravel()) != {0.0, 1.0}


def test_replay_names_the_model_file_and_its_dimensions(tmp_path):
    out = tmp_path / "report.json"
    result = invoke(["verify", EXAMPLES / "layernorm" / "slipped.py", "--model", LAYERNORM, "--trials", "4", "--json", out])
    assert result.exit_code == 1, result.output
    check = next(c for c in json.loads(out.read_text())["checks"] if c["name"] == "grad_x")
    assert f"--model {LAYERNORM}" in check["replay"] and "--shape N=" in check["replay"] and ",D=" in check["replay"]


def test_shape_flag_uses_the_model_dimension_names():
    result = invoke(["verify", EXAMPLES / "layernorm" / "correct.py", "--model", LAYERNORM, "--shape", "N=3,p1=4"])
    assert_one_line_error(result, "p1 is not a dimension", "N, D")


def test_models_command_shows_a_model_file():
    result = invoke(["models", SOFTMAX])
    assert result.exit_code == 0, result.output
    assert "Softmax cross-entropy" in result.output
    assert "W (D, K)" in result.output and "t (N, K)" in result.output
    assert "Z:" in result.output and "P:" in result.output


def test_option_a_model_does_not_read_is_an_error():
    result = invoke(["verify", EXAMPLES / "layernorm" / "correct.py", "--model", LAYERNORM, "--ddof", "1"])
    assert_one_line_error(result, "ddof: model", "has no option ddof")


GOOD_HEAD = """\
import jax.numpy as jnp
DIMS = {"N": (2, 4), "D": (1, 3)}
def inputs(d): return {"x": (d["N"], d["D"])}
def params(d): return {"w": (d["D"],)}
"""

FORWARD = "def forward(x, w): return {'R': (x @ w).sum()}\n"

BROKEN = {
    "no-forward": (GOOD_HEAD, "does not define forward"),
    "no-R": (GOOD_HEAD + "def forward(x, w): return {'loss': (x @ w).sum()}\n", "with the scalar loss under 'R'"),
    "non-scalar-R": (GOOD_HEAD + "def forward(x, w): return {'R': x @ w}\n", "R must be a scalar, got shape (2,)"),
    "shapes-disagree": (
        GOOD_HEAD.replace('(d["D"],)', '(d["D"] + 1,)') + "def forward(x, w): return {'R': (x @ w).sum()}\n",
        "forward raised TypeError at",
    ),
    "not-differentiable": (
        GOOD_HEAD + "import numpy as np\ndef forward(x, w): return {'R': jnp.asarray(np.asarray(x @ w).sum())}\n",
        "forward raised TracerArrayConversionError",
    ),
    "bad-dims": (GOOD_HEAD.replace('"D": (1, 3)', '"D": (3, 1)') + "def forward(x, w): return {'R': (x @ w).sum()}\n",
                 "DIMS must map each dimension name"),
    "import-raises": ("raise RuntimeError('no GPU here')\n", "importing"),
    "syntax": ("def forward(:\n", "syntax error"),
    "sample-shape": (
        GOOD_HEAD + "import numpy as np\n"
        "def sample(rng, d): return {'x': np.ones((d['N'] + 1, d['D']))}\n"
        "def forward(x, w): return {'R': (x @ w).sum()}\n",
        "sample(rng, d) gave x shape",
    ),
    # What a model file defines is checked, and whatever its functions raise (SystemExit included)
    # or wrongly return, wherever bncheck calls them, is one line naming the file and the function.
    "forward-not-a-function": (GOOD_HEAD + "forward = 3\n", "forward must be a function, got 3"),
    "outputs-not-a-dict": (GOOD_HEAD + FORWARD + "OUTPUTS = 5\n", "OUTPUTS must be a dict of field name -> description"),
    "outputs-not-returned": (GOOD_HEAD + FORWARD + "OUTPUTS = {'y': 'x w'}\n", "OUTPUTS describes y, which forward does not"),
    "dims-takes-no-argument": (
        GOOD_HEAD.replace('DIMS = {"N": (2, 4), "D": (1, 3)}', 'def DIMS(): return {"N": (2, 4), "D": (1, 3)}') + FORWARD,
        "DIMS(options) raised TypeError",
    ),
    "forward-exits": (GOOD_HEAD + "def forward(x, w):\n    raise SystemExit(0)\n", "forward raised SystemExit at"),
    "forward-returns-a-dict-in-the-dict": (
        GOOD_HEAD + "def forward(x, w): return {'R': (x @ w).sum(), 'aux': {'x': x}}\n",
        "forward must return a dict of name -> array",
    ),
    "output-named-like-an-input": (
        GOOD_HEAD + "def forward(x, w): return {'R': (x @ w).sum(), 'x': 2 * x}\n",
        "x is both an input and a field forward returns",
    ),
    "check-dims-exits": (GOOD_HEAD + FORWARD + "def check_dims(d, options):\n    raise SystemExit(0)\n",
                         "check_dims(d, options) raised SystemExit at"),
    "check-dims-returns-a-number": (GOOD_HEAD + FORWARD + "def check_dims(d, options): return 5\n",
                                    "check_dims(d, options) must return a sentence (str) or None, got 5"),
    "check-dims-not-a-function": (GOOD_HEAD + FORWARD + "check_dims = 3\n", "check_dims must be a function"),
    "kink-field-unknown": (GOOD_HEAD + FORWARD + "def kink_field(options): return 'B'\n",
                           "kink_field(options) names 'B', not a field forward returns"),
    "variants-raise": (GOOD_HEAD + FORWARD + "def variants(options): raise ValueError('no variants')\n",
                       "variants(options) raised ValueError at"),
    "invariants-not-a-dict": (GOOD_HEAD + FORWARD + "def invariants(options): return 3\n",
                              "invariants(options) must return a dict of check name -> function"),
    "invariant-raises": (GOOD_HEAD + FORWARD + "def invariants(options): return {'grad_w': lambda ctx, got: 1 / 0}\n",
                         "the invariant of grad_w raised ZeroDivisionError"),
    "sample-exits": (GOOD_HEAD + FORWARD + "def sample(rng, d):\n    raise SystemExit(0)\n", "sample(rng, d) raised SystemExit"),
    "inputs-exit-at-a-larger-draw": (
        GOOD_HEAD.replace('def inputs(d): return {"x": (d["N"], d["D"])}',
                          'def inputs(d):\n    if d["N"] > 2:\n        raise SystemExit(0)\n    return {"x": (d["N"], d["D"])}')
        + FORWARD,
        "inputs(d) raised SystemExit at",
    ),
    "options-unknown": (GOOD_HEAD + FORWARD + "OPTIONS = ('lr',)\n", "OPTIONS must be settings bncheck has"),
    "checks-unknown": (GOOD_HEAD + FORWARD + "CHECKS = ('grad_q',)\n", "CHECKS names grad_q"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_model_file_is_a_one_line_error(tmp_path, case):
    source, fragment = BROKEN[case]
    model = write(tmp_path / f"{case}.py", source)
    derivation = write(tmp_path / "derivation.py", "def grad_w(ctx):\n    return ctx.x.sum(axis=0)\n")
    result = invoke(["verify", derivation, "--model", model, "--trials", "2"])
    assert_one_line_error(result, "model:", fragment)


def test_a_built_in_derivation_a_model_file_cannot_import_is_a_one_line_error(tmp_path):
    model = write(tmp_path / "model.py", GOOD_HEAD + FORWARD + "DERIVATIONS = {'mine': 'no_such_module'}\n"
                  "DEFAULT_DERIVATION = 'mine'\n")
    result = invoke(["verify", "--model", model, "--trials", "2"])
    assert_one_line_error(result, "derivation: mine of model", "cannot be imported", "no_such_module")


def test_missing_model_file_is_a_one_line_error(tmp_path):
    result = invoke(["verify", "--model", tmp_path / "absent.py", "--trials", "2"])
    assert_one_line_error(result, "model: no such file")


def test_model_file_without_built_ins_needs_a_derivation():
    result = invoke(["verify", "--model", LAYERNORM, "--trials", "2"])
    assert_one_line_error(result, "has no built-in derivation; give a derivation file")


def test_model_file_can_honour_masks_to_share_one_compile(tmp_path):
    """A model file may take the built-ins' keyword-only masks: its draws then share one bucket."""
    model = write(
        tmp_path / "model.py",
        GOOD_HEAD + "def forward(x, w, *, masks):\n"
        "    rows = masks['N'][:, None]\n"
        "    return {'R': (rows * (x * w[None, :]) ** 2).sum() / masks['N'].sum()}\n",
    )
    derivation = write(tmp_path / "derivation.py", "def grad_w(ctx):\n    return 2 * (ctx.x**2).sum(axis=0) * ctx.w / ctx.N\n")
    from bncheck.models import get_model

    assert get_model(str(model)).paddable
    report = verify(derivation, model, trials=10)
    assert report.passed, statuses(report)


def test_a_model_that_cannot_pad_sweeps_a_pool_of_shapes():
    """Each distinct shape of a model without masks costs a compile: a sweep reuses the shapes of its
    first SHAPE_POOL draws, each later draw with data of its own seed."""
    from dataclasses import replace

    from bncheck.draws import SHAPE_POOL, plan
    from bncheck.models import get_model
    from bncheck.settings import resolve

    settings = resolve({"model": str(LAYERNORM), "trials": SHAPE_POOL + 8})
    model = get_model(str(LAYERNORM))
    swept = list(plan(settings, model))
    free = list(replace(plan(settings, model), pool=None))
    assert [d.seed for d in swept] == [d.seed for d in free]
    assert [d.dims for d in swept[:SHAPE_POOL]] == [d.dims for d in free[:SHAPE_POOL]]
    assert [d.dims for d in swept[SHAPE_POOL:]] == [d.dims for d in free[:8]]
    assert len({tuple(d.dims.items()) for d in free}) > len({tuple(d.dims.items()) for d in swept})
