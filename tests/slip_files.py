"""Runs the slipped derivation files of one model (tests/derivations/<model>/): each declares
EXPECTED_FAIL, EXPECTED_DIAGNOSIS and SETTINGS, and must fail exactly the checks it breaks.

Each failing check's diagnosis must carry what EXPECTED_DIAGNOSIS declares (its code, and a factor's
name where one is declared).
"""

import importlib.util

import jax
import numpy as np

from bncheck.models import get_model
from bncheck.options import MODEL_OPTIONS
from bncheck.draws import Ctx


def load_module(path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def declared(path):
    module = load_module(path)
    return module.EXPECTED_FAIL, module.EXPECTED_DIAGNOSIS, module.SETTINGS


def assert_diagnosed(check, expected: dict) -> None:
    for key, want in expected.items():
        assert check.diagnosis.get(key) == want, (check.name, key, check.diagnosis)


def run_slip_file(run, path, model: str, **defaults) -> None:
    expected, diagnoses, settings = declared(path)
    assert set(diagnoses) == expected
    # A user's jax.numpy code may broadcast implicitly: the strict mode is for bncheck's own code.
    with jax.numpy_rank_promotion("allow"):
        report = run(str(path), model=model, **{**defaults, **settings}, config=None)
    failing = {c.name for c in report.checks if not c.passed}
    assert failing == expected, [(c.name, c.status, c.diagnosis) for c in report.checks]
    defined = {c.name for c in report.checks if c.status != "missing"}
    assert expected <= defined and len(defined) > len(expected)  # the others ran and passed
    for c in report.checks:
        if c.name in diagnoses:
            assert_diagnosed(c, diagnoses[c.name])


def assert_variants_reproduce(path, model_name: str) -> None:
    """Where EXPECTED_DIAGNOSIS names a model variant, jax.grad under that variant is exactly the file's
    gradient on a draw: what lets a diagnosis name the slip, whichever engine does the naming."""
    module = load_module(path)
    model = get_model(model_name, module.SETTINGS)
    cfg = {name: module.SETTINGS.get(name, MODEL_OPTIONS[name]) for name in model.options}
    dims = {name: max(lo, min(hi, 4 + i)) for i, (name, (lo, hi)) in enumerate(model.dims.items())}
    rng = np.random.default_rng(0)
    arrays = {n: rng.standard_normal(s) for n, s in {**model.inputs(dims), **model.params(dims)}.items()}
    masks = {name: np.ones(size) for name, size in dims.items()}
    record = {k: np.asarray(v) for k, v in model.forward(cfg, masks, **arrays).items()}
    ctx = Ctx({**arrays, **record, **dims, **cfg})
    named = {name: d["variant"] for name, d in module.EXPECTED_DIAGNOSIS.items() if "variant" in d}
    assert named, f"{path.name} names no variant"
    for name, variant in named.items():
        target = name.removeprefix("grad_")
        held = model.variants(cfg)[variant]
        ref = jax.grad(lambda v, held=held, target=target: model.forward(held, masks, **{**arrays, target: v})["R"])(
            arrays[target]
        )
        np.testing.assert_allclose(getattr(module, name)(ctx), np.asarray(ref), rtol=1e-10, atol=1e-12, err_msg=name)
