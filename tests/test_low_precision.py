"""bfloat16 and float16 (issue 15): the tolerances come from the noise floor recomputed in that dtype,
so every model's correct built-in passes, slips still fail, and nothing a float64 run gets away with
(a padded score pushed down by 1e30, which is inf in float16) turns a correct derivation into NaN."""

from __future__ import annotations

import pytest
from conftest import DERIVATIONS, failed, statuses

from bncheck.models import model_names

LOW = ("bfloat16", "float16")
# Every built-in model with its default options, and the MLP with the softmax loss, whose padded
# logits are masked like softmax-loss's scores.
CASES = [(name, {}) for name in model_names()] + [("mlp", {"loss": "xent"})]


@pytest.mark.parametrize("dtype", LOW)
@pytest.mark.parametrize(("model", "options"), CASES, ids=[m + "".join(f"-{v}" for v in o.values()) for m, o in CASES])
def test_every_models_built_in_derivation_passes_in_low_precision(run, model, options, dtype):
    report = run(None, config=None, model=model, dtype=dtype, trials=12, **options)
    assert report.passed, statuses(report)
    ran = [c for c in report.checks if c.status != "missing"]  # a built-in need not give every function
    assert ran and all(c.status == "pass" and c.trials == 12 and c.max_abs_err is not None for c in ran), statuses(report)


@pytest.mark.parametrize("dtype", LOW)
@pytest.mark.parametrize(("path", "flags"), [
    ("slip_dropped_inv_n.py", {}),
    ("slip_flipped_sign.py", {}),
    ("softmax_loss/slip_dropped_inv_n.py", {"model": "softmax-loss"}),
    ("mlp/slip_missing_activation_derivative.py", {"model": "mlp", "loss": "xent"}),
])
def test_a_slip_fails_in_low_precision_as_in_float64(run, path, flags, dtype):
    """The low-precision tolerance is a few ulps of that dtype, not a licence: a factor of N, a sign, a
    dropped derivative still fail, the same checks as in float64."""
    file = str(DERIVATIONS / path)
    want = failed(run(file, config=None, trials=12, **flags))
    assert want, "the slip must fail in float64"
    assert failed(run(file, config=None, dtype=dtype, trials=12, **flags)) == want
