"""The layer models of CONTRACT §6 (layer-norm, group-norm, max-pool, affine, relu, softmax-loss): each
forward against an independent transcription, padding that leaves the real entries exact, the
built-in derivations over a sweep, slipped derivations, the options' validation, the sizes a sweep
keeps to (DIM_MULTIPLES) and the kink fields."""

import functools

import jax
import numpy as np
import pytest
from conftest import DERIVATIONS, failed
from slip_files import assert_diagnosed, assert_variants_reproduce, declared
from test_cli import assert_one_line_error, invoke, write

from bncheck.errors import LoadError, SettingsError
from bncheck.models import get_model, model_names
from bncheck.options import MODEL_OPTIONS

LAYERS = ("layer-norm", "group-norm", "max-pool", "affine", "relu", "softmax-loss")
DIMS = {
    "layer-norm": {"N": 5, "D": 4},
    "group-norm": {"N": 2, "C": 6, "H": 3, "W": 2},
    "max-pool": {"N": 2, "C": 2, "H": 5, "W": 4},
    "affine": {"N": 5, "D": 3, "M": 4},
    "relu": {"N": 5, "D": 4},
    "softmax-loss": {"N": 6, "C": 4},
}
SLIPS = sorted(p for model in LAYERS for p in (DERIVATIONS / model.replace("-", "_")).glob("*.py"))


def cfg(model, **options):
    return {name: options.get(name, MODEL_OPTIONS[name]) for name in model.options}


def draw(model, dims, seed=0):
    rng = np.random.default_rng(seed)
    arrays = {n: rng.standard_normal(s) for n, s in {**model.inputs(dims), **model.params(dims)}.items()}
    if model.sample is not None:
        arrays.update(model.sample(rng, dims))
    return arrays


def ones(dims):
    return {name: np.ones(size) for name, size in dims.items()}


# ---- forward passes, against transcriptions written another way -----------------------------------


def numpy_layer_norm(x, dout, gamma, beta, ddof, eps):
    out = np.empty_like(x)
    for n, row in enumerate(x):
        sigma = np.sqrt(((row - row.mean()) ** 2).sum() / (len(row) - ddof) + eps)
        out[n] = gamma * (row - row.mean()) / sigma + beta
    return out


def numpy_group_norm(x, dout, gamma, beta, groups, ddof, eps):
    out = np.empty_like(x)
    per_group = x.shape[1] // groups
    for n in range(x.shape[0]):
        for g in range(groups):
            block = x[n, g * per_group : (g + 1) * per_group]
            sigma = np.sqrt(((block - block.mean()) ** 2).sum() / (block.size - ddof) + eps)
            out[n, g * per_group : (g + 1) * per_group] = (block - block.mean()) / sigma
    return gamma[None, :, None, None] * out + beta[None, :, None, None]


@pytest.mark.parametrize("ddof,eps", [(0, 1e-5), (1, 0.0)])
def test_layer_norm_forward(ddof, eps):
    model = get_model("layer-norm")
    arrays = draw(model, DIMS["layer-norm"])
    got = model.forward(cfg(model, ddof=ddof, eps=eps), ones(DIMS["layer-norm"]), **arrays)
    want = numpy_layer_norm(**arrays, ddof=ddof, eps=eps)
    np.testing.assert_allclose(np.asarray(got["out"]), want, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(float(got["R"]), (want * arrays["dout"]).sum(), rtol=1e-12)
    np.testing.assert_allclose(np.asarray(got["mu"]), arrays["x"].mean(axis=1), rtol=1e-12)


@pytest.mark.parametrize("groups,ddof,eps", [(1, 0, 1e-5), (2, 1, 0.0), (3, 0, 1e-5), (6, 0, 1e-5)])
def test_group_norm_forward(groups, ddof, eps):
    """G = 1 is layer norm over (C, H, W) and G = C instance norm; the model's one-hot membership
    against explicit channel blocks."""
    model = get_model("group-norm", {"groups": groups})
    dims = DIMS["group-norm"]
    arrays = draw(model, dims)
    got = model.forward(cfg(model, groups=groups, ddof=ddof, eps=eps), ones(dims), **arrays)
    want = numpy_group_norm(**arrays, groups=groups, ddof=ddof, eps=eps)
    np.testing.assert_allclose(np.asarray(got["out"]), want, rtol=1e-12, atol=1e-14)
    assert np.shape(got["mu"]) == np.shape(got["sigma"]) == (dims["N"], groups)


@pytest.mark.parametrize("pool,stride", [(2, 2), (2, 1), (3, 2), (1, 1)])
def test_max_pool_forward_matches_reduce_window(pool, stride):
    model = get_model("max-pool", {"pool": pool, "stride": stride})
    dims = DIMS["max-pool"]
    arrays = draw(model, dims)
    got = model.forward(cfg(model, pool=pool, stride=stride), {}, **arrays)
    want = jax.lax.reduce_window(arrays["x"], -np.inf, jax.lax.max, (1, 1, pool, pool), (1, 1, stride, stride), "VALID")
    assert got["out"].shape == want.shape == arrays["dout"].shape
    np.testing.assert_array_equal(np.asarray(got["out"]), np.asarray(want))
    if pool > 1:  # the gap is the window's top entry less its runner-up
        windows = np.lib.stride_tricks.sliding_window_view(arrays["x"], (pool, pool), axis=(2, 3))[:, :, ::stride, ::stride]
        top = np.sort(windows.reshape(*windows.shape[:4], -1), axis=-1)
        np.testing.assert_allclose(np.asarray(got["gap"]), top[..., -1] - top[..., -2], rtol=1e-15)
    else:
        assert "gap" not in got and model.kink_field(cfg(model, pool=1)) is None


def test_affine_relu_and_softmax_loss_forwards():
    affine = get_model("affine")
    a = draw(affine, DIMS["affine"])
    out = affine.forward({}, ones(DIMS["affine"]), **a)["out"]
    np.testing.assert_allclose(np.asarray(out), np.einsum("nd,dm->nm", a["x"], a["w"]) + a["b"], rtol=1e-13)

    relu = get_model("relu")
    r = draw(relu, DIMS["relu"])
    got = relu.forward({}, ones(DIMS["relu"]), **r)
    np.testing.assert_array_equal(np.asarray(got["out"]), np.maximum(r["x"], 0))
    # relu'(0) = 0: jax's own maximum(x, 0) would give the kink 1/2.
    at_kink = jax.grad(lambda x: relu.forward({}, ones({"N": 1, "D": 3}), x=x, dout=np.ones((1, 3)))["R"])(np.zeros((1, 3)))
    np.testing.assert_array_equal(np.asarray(at_kink), 0.0)

    softmax = get_model("softmax-loss")
    s = draw(softmax, DIMS["softmax-loss"])
    got = softmax.forward({}, ones(DIMS["softmax-loss"]), **s)
    x, y = s["x"], s["y"].astype(int)
    logp = x - np.log(np.exp(x).sum(axis=1, keepdims=True))
    want = -logp[np.arange(len(y)), y].mean()
    np.testing.assert_allclose(float(got["out"]), want, rtol=1e-13)
    assert float(got["R"]) == float(got["out"])
    np.testing.assert_allclose(np.asarray(got["probs"]), np.exp(logp), rtol=1e-13)


def test_softmax_labels_are_integers_in_range():
    model = get_model("softmax-loss")
    y = model.sample(np.random.default_rng(3), {"N": 400, "C": 5})["y"]
    assert y.shape == (400,) and set(np.unique(y)) == {0.0, 1.0, 2.0, 3.0, 4.0}


# ---- padding -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", [m for m in LAYERS if m != "max-pool"])
def test_padding_leaves_real_entries_exact(name):
    """Zero-padded to a larger bucket with masks, each paddable layer gives its unpadded values and
    gradients on the real entries: one compile serves a sweep of many sizes."""
    options = {"groups": 2, "ddof": 1, "eps": 0.0}
    model = get_model(name, options)
    assert model.paddable
    c = cfg(model, **options)
    dims = DIMS[name]
    bucket = {n: size + 3 for n, size in dims.items()}
    arrays = draw(model, dims, seed=5)
    shapes = {**model.inputs(bucket), **model.params(bucket)}
    padded = {n: np.pad(a, [(0, b - s) for s, b in zip(a.shape, shapes[n])]) for n, a in arrays.items()}
    masks = {n: (np.arange(b) < dims[n]).astype(float) for n, b in bucket.items()}

    def record_and_grads(values, m):
        record = model.forward(c, m, **values)
        grads = jax.grad(lambda v: model.forward(c, m, **v)["R"])(values)
        return record, grads

    want, want_grads = record_and_grads(arrays, ones(dims))
    got, got_grads = record_and_grads(padded, masks)
    for field, value in [*want.items(), *(("grad_" + n, g) for n, g in want_grads.items())]:
        padded_value = got[field] if field in got else got_grads[field.removeprefix("grad_")]
        cut = np.asarray(padded_value)[tuple(slice(0, s) for s in np.shape(value))]
        np.testing.assert_allclose(cut, np.asarray(value), rtol=1e-12, atol=1e-14, err_msg=field)


def test_max_pool_cannot_pad():
    assert not get_model("max-pool").paddable


# ---- the built-in derivations and slipped ones -----------------------------------------------------


@pytest.mark.parametrize(
    "name,options",
    [
        ("layer-norm", {}),
        ("layer-norm", {"ddof": 1, "eps": 0.0, "dtype": "float32"}),
        ("group-norm", {}),
        ("group-norm", {"groups": 3, "ddof": 1, "eps": 0.0}),
        ("group-norm", {"groups": 1, "dtype": "float32"}),
        ("max-pool", {}),
        ("max-pool", {"pool": 3, "stride": 2}),
        ("max-pool", {"pool": 2, "stride": 2, "dtype": "float32"}),
        ("affine", {}),
        ("relu", {"dtype": "float32"}),
        ("softmax-loss", {}),
        ("softmax-loss", {"dtype": "float32"}),
    ],
)
def test_builtin_passes(name, options):
    from bncheck import verify

    model = get_model(name, options)
    report = verify(model=name, trials=6, **options)
    assert report.passed and report.derivation == "closed-form", [(c.name, c.status, c.max_rel_err) for c in report.failed]
    assert {c.name for c in report.checks if c.status == "pass"} == set(model.checks)


@functools.cache
def slip_report(path):
    """The report of one slipped file under its SETTINGS (once per session)."""
    from bncheck import verify

    return verify(str(path), model=path.parent.name.replace("_", "-"), **{"trials": 8, **declared(path)[2]})


@pytest.mark.parametrize("path", SLIPS, ids=[f"{p.parent.name}/{p.stem}" for p in SLIPS])
def test_slips_fail_exactly_what_they_break(path):
    expected, diagnoses, _ = declared(path)
    assert set(diagnoses) == expected
    report = slip_report(path)
    assert failed(report) == expected, [(c.name, c.status, c.diagnosis) for c in report.checks]
    for c in report.checks:
        assert c.status == ("fail" if c.name in expected else "pass" if c.status != "missing" else "missing")
        if c.name in diagnoses:
            assert_diagnosed(c, diagnoses[c.name])


def test_a_dropped_sigma_path_is_named():
    diagnosis = next(c.diagnosis for c in slip_report(DERIVATIONS / "layer_norm" / "slip_dropped_sigma_path.py").checks
                     if c.name == "grad_x")
    assert diagnosis["message"] == (
        "matches the gradient with sigma held constant (sigma's dependence on the input is missing)"
    )


VARIANT_SLIPS = [p for p in SLIPS if '"variant"' in p.read_text()]


@pytest.mark.parametrize("path", VARIANT_SLIPS, ids=[p.stem for p in VARIANT_SLIPS])
def test_variants_reproduce_the_slips_they_name(path):
    assert_variants_reproduce(path, path.parent.name.replace("_", "-"))


def test_overwritten_overlaps_pass_without_overlap():
    """The max-pool slip loses terms only where windows overlap: at stride = pool it is correct."""
    from bncheck import verify

    path = DERIVATIONS / "max_pool" / "slip_overlaps_overwritten.py"
    shape = "N=2,C=2,H=7,W=6"
    assert verify(str(path), model="max-pool", pool=2, stride=2, shape=shape, trials=3).passed
    assert failed(verify(str(path), model="max-pool", pool=3, stride=2, shape=shape, trials=3)) == {"grad_x"}


def test_group_norm_slip_shrinks_to_a_size_the_layer_accepts():
    """The smallest failing case keeps C a multiple of G, and C/G > 1, where the slip shows."""
    report = slip_report(DERIVATIONS / "group_norm" / "slip_statistics_over_wrong_axes.py")
    assert report.settings["groups"] == 2
    smallest = next(c for c in report.checks if c.name == "grad_x").smallest
    assert smallest is not None and smallest["shape"]["C"] == 4, smallest


# ---- options, and the sizes a sweep keeps to -------------------------------------------------------


@pytest.mark.parametrize(
    "args,message",
    [
        (["--model", "group-norm", "--groups", "0"], "groups: must be between 1 and 2147483647, got 0"),
        (["--model", "max-pool", "--pool", "0"], "pool: must be between 1 and 2147483647, got 0"),
        (["--model", "max-pool", "--stride", "0"], "stride: must be between 1 and 2147483647, got 0"),
        (["--model", "group-norm", "--shape", "N=2,C=3,H=2,W=2"],
         "shape: groups=2 does not divide C=3 (each group takes C/groups channels; need C a multiple of 2)"),
        (["--model", "group-norm", "--groups", "4", "--shape", "N=2,C=2,H=2,W=2"], "shape: groups=4 does not divide C=2"),
        (["--model", "group-norm", "--groups", "2", "--ddof", "1", "--shape", "N=2,C=2,H=1,W=1"],
         "shape: C/groups*H*W=1 leaves no degree of freedom with ddof=1"),
        (["--model", "max-pool", "--pool", "3", "--shape", "N=1,C=1,H=4,W=2"],
         "shape: the window does not fit: pool=3 is larger than W=2 (need pool <= W)"),
        (["--model", "softmax-loss", "--shape", "N=3,C=1"], "shape: C=1 gives the softmax one class"),
        (["--model", "layer-norm", "--ddof", "1", "--shape", "N=3,D=1"], "shape: D=1 leaves no degree of freedom"),
        (["--model", "layer-norm", "--groups", "3"], "groups: model layer-norm has no option groups (it reads ddof, eps)"),
        (["--model", "affine", "--pool", "3"], "pool: model affine has no option pool (it has no options)"),
    ],
)
def test_bad_options_and_shapes_are_one_line_errors(args, message):
    result = invoke(["verify", *args, "--trials", "1"])
    assert_one_line_error(result)
    assert message in result.output


def test_a_sweep_range_the_window_does_not_fit_is_refused(tmp_path):
    config = write(tmp_path / "pool.toml", 'model = "max-pool"\npool = 3\n[sweep]\nH = [2, 5]\n')
    result = invoke(["verify", "--config", config])
    assert_one_line_error(result)
    assert "sweep: the window does not fit: pool=3 is larger than H=2" in result.output


def test_group_norm_sweeps_only_multiples_of_groups(tmp_path):
    from bncheck.draws import plan
    from bncheck.settings import resolve

    config = write(tmp_path / "gn.toml", 'model = "group-norm"\ngroups = 3\n[sweep]\ntrials = 60\nC = [2, 13]\n')
    settings = resolve({}, config)
    assert settings.sweep["C"] == (3, 12)  # narrowed to the multiples the range holds
    sizes = {d.dims["C"] for d in plan(settings, get_model("group-norm", settings.to_dict()))}
    assert sizes == {3, 6, 9, 12}
    result = invoke(["verify", "--config", write(tmp_path / "none.toml", 'model = "group-norm"\ngroups = 4\n[sweep]\nC = [5, 7]\n')])
    assert_one_line_error(result)
    assert "sweep: C = [5, 7] holds no multiple of 4, and model group-norm takes C only in multiples of 4" in result.output


MODEL_WITH_MULTIPLES = """
DIMS = {"N": (1, 9), "D": (1, 9)}
DIM_MULTIPLES = {"D": 4}

def inputs(d):
    return {"x": (d["N"], d["D"])}

def params(d):
    return {"w": (d["D"],)}

def forward(x, w):
    return {"R": (x * w[None, :]).sum()}
"""


def test_a_model_file_declares_multiples(tmp_path):
    from bncheck.draws import plan
    from bncheck.settings import resolve

    path = str(write(tmp_path / "model.py", MODEL_WITH_MULTIPLES))
    settings = resolve({"model": path, "trials": 30})
    assert settings.sweep == {"N": (1, 9), "D": (4, 8)}
    draws = list(plan(settings, get_model(path)))
    assert {d.dims["D"] for d in draws} == {4, 8} and len({d.dims["N"] for d in draws}) > 3
    broken = str(write(tmp_path / "broken.py", MODEL_WITH_MULTIPLES.replace('{"D": 4}', '{"K": 0}')))
    with pytest.raises(LoadError, match="DIM_MULTIPLES must map dimensions of DIMS to integers >= 1"):
        get_model(broken)


def test_multiples_of_one_draw_the_shapes_they_always_drew():
    """A dimension with no multiple is drawn from the same stream as before the hook: replays and
    recorded reports of every other model keep their shapes."""
    from dataclasses import replace

    from bncheck.draws import STREAMS, plan
    from bncheck.settings import resolve

    settings = resolve({"model": "affine", "trials": 5, "seed": 11})
    for t, d in enumerate(plan(settings, get_model("affine"))):
        rng = np.random.default_rng([11 + t, STREAMS["shape"]])
        assert d.dims == {n: int(rng.integers(lo, hi + 1)) for n, (lo, hi) in settings.sweep.items()}
    assert replace(plan(settings, get_model("affine")), multiples={"D": 1}).dims(3) == plan(settings, get_model("affine")).dims(3)


# ---- kinks ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name,shape,field", [("relu", "N=16,D=16", "kink"), ("max-pool", "N=2,C=2,H=9,W=9", "gap")])
def test_draws_near_a_kink_are_redrawn(name, shape, field):
    """relu's kink is x = 0, max-pool's a tie for a window's maximum: a float32 sweep, whose margin is
    wide, meets draws near one and redraws them, so no checked draw sits within the margin."""
    from helpers import run_sweep

    from bncheck.compare import TOLERANCES
    from bncheck.engine import Engine, scope
    from bncheck.loader import load_derivation
    from bncheck.settings import resolve
    from bncheck.sweep import prepare

    settings = resolve({"model": name, "shape": shape, "trials": 40, "dtype": "float32"})
    model = get_model(name, settings.to_dict())
    assert model.kink_field(settings.model_options(model)) == field
    derivation = load_derivation("closed-form", model)
    result = run_sweep(model, settings, derivation)
    assert result.redrawn > 0 and all(t.failures == 0 and t.error is None for t in result.tallies.values())
    from bncheck.draws import plan

    draws = list(plan(settings, model))
    records = {}
    with scope("cpu"):
        prepare(Engine(model, settings), list(derivation.checks.values()), draws, records, {}, len(draws))
    margin = TOLERANCES["float32"].kink
    for d in draws:
        value = np.abs(records[id(d)].forward[field])
        assert value.min() >= margin * max(value.max(), 1.0)


# ---- listing -------------------------------------------------------------------------------------


def test_models_lists_the_layer_models():
    assert set(LAYERS) <= set(model_names())
    result = invoke(["models"])
    assert result.exit_code == 0
    for name in LAYERS:
        assert f"{name}: " in result.output
    # Rows compared with their label's padding taken out: the widest label sets the column.
    listing = " ".join(invoke(["models", "group-norm"]).output.split())
    assert "C∈[2,8] in multiples of 2" in listing and "settings groups, ddof, eps" in listing
    listing = " ".join(invoke(["models", "max-pool"]).output.split())
    assert "dout (N, C, ?, ?)" in listing and "parameters none" in listing
    listing = " ".join(invoke(["models", "softmax-loss"]).output.split())
    assert "inputs x (N, C), y (N)" in listing and "functions grad_x" in listing
