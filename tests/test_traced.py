"""jax.numpy derivations run as JAX traces them: each shape's trace evaluated on the host, or on an
accelerator compiled beside the references and compared there; NumPy derivations are never traced;
and every guarantee of calling a user's function stays (its exception and line, its return value as it
is, a function that is not the same on every call)."""

from __future__ import annotations

import logging

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import DERIVATIONS, SMALL, statuses
from jax import lax

from helpers import run_sweep

import bncheck.engine as engine
from bncheck.draws import Ctx
from bncheck.engine import Engine, scope
from bncheck.hostrun import evaluate
from bncheck.loader import load_derivation
from bncheck.models import get_model
from bncheck.settings import resolve
from bncheck.sweep import run_sweep as sweep_with
from bncheck.traced import Traced, _dimension_class, fields_read, uses_jax

MODEL = get_model("bn-mlp")
CORRECT_JAX = str(DERIVATIONS / "correct_jax.py")
# The jax.numpy file's functions, one of them slipped by 1% (a value mismatch, diagnosed as a scale).
JAX_SLIP = (
    "import jax.numpy as jnp\n"
    f"exec(open({CORRECT_JAX!r}).read())\n"
    "_grad_G1 = grad_G1\n"
    "def grad_G1(ctx):\n"
    "    return 1.01 * _grad_G1(ctx)\n"
)


# A JAX without the symbolic shapes a family trace needs traces every shape on its own (pyproject
# allows JAX back to 0.4.30): the verdicts are the same, the tests that count families do not apply.
families = pytest.mark.skipif(_dimension_class() is None, reason="this JAX has no usable symbolic shapes")


@pytest.fixture(autouse=True)
def user_broadcasts():
    # A user's jax.numpy code may broadcast implicitly: the strict mode is for bncheck's own code.
    with jax.numpy_rank_promotion("allow"):
        yield


def _file(tmp_path, body: str, name: str = "derivation") -> str:
    path = tmp_path / f"{name}.py"
    path.write_text(body)
    return str(path)


def _sweep(path: str, on_device: bool = False, **flags):
    """The sweep of `path` on the host, or on the engine's device path (the CPU standing in for an
    accelerator), and the phases it announced."""
    settings = resolve(flags, None if "shape" in flags else SMALL)
    phases: list[str] = []
    with scope("cpu"):
        eng = Engine(MODEL, settings)
        eng.derive_on_device = on_device
        return sweep_with(eng, load_derivation(path, MODEL), on_phase=phases.append), phases


def test_functions_that_use_jax_are_told_from_numpy_ones(tmp_path):
    jax_file = load_derivation(CORRECT_JAX, MODEL)
    assert all(uses_jax(fn) for fn in jax_file.functions.values())
    numpy_file = load_derivation(str(DERIVATIONS / "correct_numpy.py"), MODEL)
    assert not any(uses_jax(fn) for fn in numpy_file.functions.values())
    mixed = load_derivation(_file(tmp_path, (
        "import numpy as np\nimport jax.numpy as jnp\nimport jax\n"
        "def _dR_dB(ctx):\n    return jnp.asarray(-2 / ctx.N * (ctx.resid @ ctx.G2.T) * ctx.dA)\n"
        "def grad_beta(ctx):\n    return _dR_dB(ctx).sum(axis=0)\n"            # jax through a helper
        "def grad_gamma(ctx):\n    return np.sum(ctx.Hhat, axis=0)\n"            # NumPy, jax imported
        "def grad_G2(ctx, grad=jax.grad):\n    return ctx.A.T @ ctx.resid\n"     # jax in a default only
    )), MODEL)
    # A default is code the function can call, so jax there counts (a trace is confirmed by a call).
    assert {n: uses_jax(f) for n, f in mixed.functions.items()} == {
        "grad_beta": True, "grad_gamma": False, "grad_G2": True}


def _primitives():
    """Functions whose traces use the primitives the host evaluator implements, and some it hands to
    JAX (sort, erf, cumsum in reverse), with arguments."""
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((5, 4)), rng.standard_normal((4, 3))
    b = rng.standard_normal((2, 5, 4))
    i = np.array([[-7, 7, 3], [5, -2, -9]])
    return [
        (lambda x, y: x @ y, (x, y)),
        (lambda b, y: jnp.einsum("bij,jk->bik", b, y), (b, y)),
        (lambda b: jnp.einsum("bij,bij->b", b, b), (b,)),
        (lambda x: jnp.kron(jnp.eye(2), x), (x,)),
        (lambda x: jnp.where(x > 0, x, 0.5 * x).mean(axis=0), (x,)),
        (lambda x: lax.pad(x, 0.5, ((1, -2, 1), (-1, 2, 0))), (x,)),
        (lambda x: jnp.concatenate([x, 2 * x], axis=1), (x,)),
        (lambda x: lax.dynamic_slice(x, (3, 2), (3, 2)), (x,)),  # starts clamped, as lax does
        (lambda x: lax.dynamic_update_slice(x, jnp.ones((2, 2)), (4, -1)), (x,)),
        (lambda x: (lax.cumsum(x, axis=0, reverse=True), jnp.cumprod(x, axis=1), lax.cummax(x, axis=1)), (x,)),
        (lambda x: jnp.argmax(x, axis=1) + jnp.argmin(x, axis=0)[:, None].sum(), (x,)),
        (lambda x: x ** -2 + x ** 3 + jnp.sqrt(jnp.abs(x)) + lax.rsqrt(1 + x * x), (x,)),
        (lambda i: (lax.div(i, 4), lax.rem(i, 4), i // 4, i % 4), (i,)),
        (lambda x: (jnp.round(2.5 * x), lax.round(2.5 * x), jnp.clip(x, -0.5, 0.5)), (x,)),
        (lambda x: lax.select_n(jnp.argmax(x, axis=1) % 3, x[:, 0], x[:, 1], x[:, 2]), (x,)),
        (lambda x: (jnp.flip(x, 0), x.T.reshape(2, 10), jnp.squeeze(x[None]), lax.iota(jnp.int32, 7)), (x,)),
        (lambda x: (x.max(0), x.min(1), x.prod(0), jnp.any(x > 1), jax.nn.sigmoid(x), jnp.tanh(x)), (x,)),
        (lambda x: (jnp.sort(x, axis=0), jax.scipy.special.erf(x)), (x,)),
        (lambda x, y: (x.astype(jnp.bfloat16) @ y.astype(jnp.bfloat16)).sum(0), (x, y)),
        # Indexing: gather, with static and array indices, clamped and filled out of bounds.
        (lambda x: (x[0], x[:, 1], x[-1, 2], x[jnp.array([4, 0, 2])], x[::2, jnp.array([3, 1])]), (x,)),
        (lambda x, i: (x[jnp.arange(2), i[:, 0] % 4], x[i[1] % 5], jnp.take_along_axis(x, jnp.tile(i[:1] % 4, (5, 1)), axis=1)), (x, i)),
        (lambda b, i: (b[:, i[0] % 5], b[1, :, i % 4], b[..., 0]), (b, i)),
        (lambda x: (x.at[jnp.array([7, -9, 1])].get(mode="fill", fill_value=-1.0), x.at[jnp.array([7, 2])].get(mode="clip"),
                    x.at[jnp.array([[5, 1]])].get(mode="fill")), (x,)),
        (lambda i: i.at[jnp.array([3, 0])].get(mode="fill"), (i,)),
    ]


@pytest.mark.parametrize("n", range(len(_primitives())))
def test_a_trace_evaluated_on_the_host_gives_what_jax_gives(n):
    fn, args = _primitives()[n]
    with scope("cpu"):
        closed = jax.make_jaxpr(fn)(*args)
        got = evaluate(closed.jaxpr, closed.consts, list(args))
        want = jax.tree_util.tree_leaves(jax.jit(fn)(*args))
    assert len(got) == len(want)
    for g, w in zip(got, want):
        w = np.asarray(w)
        assert g.shape == w.shape and g.dtype == w.dtype
        tol = 1e-2 if w.dtype == jnp.bfloat16 else 1e-12
        np.testing.assert_allclose(g.astype(np.float64), w.astype(np.float64), rtol=tol, atol=tol)


def test_a_jax_numpy_derivation_runs_as_its_traces_with_the_verdicts_of_calling_it():
    traced, phases = _sweep(CORRECT_JAX, trials=24)
    assert all(t.failures == 0 and t.error is None and t.ran == 24 for t in traced.tallies.values())
    assert not any("eagerly" in p for p in phases)  # no function fell back to eager jax.numpy
    numpy, _ = _sweep(str(DERIVATIONS / "correct_numpy.py"), trials=24)
    for name, tally in numpy.tallies.items():
        assert traced.tallies[name].max_abs == pytest.approx(tally.max_abs, rel=1e-3, abs=1e-13), name


def test_a_slip_in_jax_numpy_is_found_and_diagnosed_as_in_numpy(run, tmp_path):
    report = run(_file(tmp_path, JAX_SLIP), trials=24)
    check = {c.name: c for c in report.checks}["grad_G1"]
    assert statuses(report)["grad_G1"] == "fail" and sum(not c.passed for c in report.checks) == 1
    assert check.diagnosis["code"] == "scale" and check.diagnosis["factor"] == pytest.approx(1.01, rel=1e-3)
    assert check.error_map is not None and check.smallest is not None


def test_a_function_jax_cannot_trace_is_called_as_it_is_and_the_sweep_says_it_is_slow(tmp_path):
    path = _file(tmp_path, (
        "import jax.numpy as jnp\n"
        f"exec(open({CORRECT_JAX!r}).read())\n"
        "_grad_beta = grad_beta\n"
        "def grad_beta(ctx):\n"
        "    if float(jnp.sum(ctx.resid)) > 1e300:  # reads a value: no trace can\n"
        "        raise AssertionError\n"
        "    return _grad_beta(ctx)\n"
    ))
    sweep, phases = _sweep(path, shape="N=5,p1=3,p2=2,k=1", trials=4)
    assert all(t.failures == 0 and t.error is None for t in sweep.tallies.values())
    eager = [p for p in phases if "eagerly" in p]
    assert eager and "grad_beta" in eager[0] and "grad_gamma" not in eager[0], phases


def test_a_raise_while_tracing_is_reported_as_the_call_reports_it(run, tmp_path):
    path = _file(tmp_path, (
        "import jax.numpy as jnp\n"
        "def grad_beta(ctx):\n"
        "    if ctx.N == 3:\n"
        "        raise ValueError('no batches of three')\n"
        "    return jnp.sum(-2 / ctx.N * (ctx.resid @ ctx.G2.T) * ctx.dA, axis=0)\n"
    ))
    report = run(path, shape="N=3,p1=2,p2=2,k=1", trials=2)
    check = report.checks[0]
    assert check.status == "error" and "ValueError: no batches of three" in check.diagnosis["message"]
    assert check.diagnosis["line"].endswith("raise ValueError('no batches of three')")
    assert run(path, shape="N=4,p1=2,p2=2,k=1", trials=2).passed


def test_a_function_that_is_not_the_same_on_every_call_is_called_on_every_draw(run, tmp_path):
    """Traced once, it would hold its first call's value for every draw and pass; called on every
    draw, as a per-draw check calls it, it drifts and fails."""
    path = _file(tmp_path, (
        "import itertools\nimport jax.numpy as jnp\n"
        "calls = itertools.count(1)\n"
        "def grad_beta(ctx):\n"
        "    grad = jnp.sum(-2 / ctx.N * (ctx.resid @ ctx.G2.T) * ctx.dA, axis=0)\n"
        "    return grad * (1 + 0.01 * (next(calls) - 1))\n"
    ))
    report = run(path, shape="N=5,p1=3,p2=2,k=1", trials=4)
    assert report.checks[0].status == "fail"


def test_a_jax_function_returns_what_it_returns(run, tmp_path):
    """A tuple is no array: the trace does not stand in for it, and the report says what a call says."""
    body = "def grad_beta(ctx):\n    return (ctx.beta, ctx.beta)\n"
    numpy = run(_file(tmp_path, body), shape="N=5,p1=3,p2=2,k=1", trials=2)
    jax_ = run(_file(tmp_path, "import jax.numpy as jnp\n" + body.replace("ctx.beta)", "jnp.asarray(ctx.beta))"), "jax_"),
               shape="N=5,p1=3,p2=2,k=1", trials=2)
    assert jax_.checks[0].status == numpy.checks[0].status == "fail"
    assert "tuple" in jax_.checks[0].diagnosis["message"] and "tuple" in numpy.checks[0].diagnosis["message"]


def test_only_the_fields_a_function_reads_come_to_the_host(tmp_path):
    seen: list[set[str]] = []
    # The derivation notes the ctx it was given (a NumPy function: called as it is).
    path = _file(tmp_path, "def grad_beta(ctx):\n    SEEN.append(set(vars(ctx)))\n"
                           "    return (-2 / ctx.N * (ctx.resid @ ctx.G2.T) * ctx.dA).sum(axis=0)\n")
    loaded = load_derivation(path, MODEL)
    loaded.functions["grad_beta"].__globals__["SEEN"] = seen
    assert fields_read(loaded.functions.values(), [*MODEL.outputs, "R"]) is None  # vars() reads anything
    settings = resolve({"shape": "N=5,p1=3,p2=2,k=1", "trials": 2}, None)
    run_sweep(MODEL, settings, loaded)
    assert {"H", "Hhat", "yhat"} <= seen[0]  # every field, since its code does not say which

    plain = load_derivation(_file(tmp_path, "def grad_beta(ctx):\n    SEEN.append(ctx.copy())\n"
                                            "    return (-2 / ctx.N * (ctx.resid @ ctx.G2.T) * ctx.dA).sum(axis=0)\n",
                                  "plain"), MODEL)
    plain.functions["grad_beta"].__globals__["SEEN"] = seen
    seen.clear()
    run_sweep(MODEL, settings, plain)
    forward = {name for name in vars(seen[0]) if name in MODEL.outputs}
    assert forward == {"resid", "dA", "B"}  # what it reads, and the relu kink field the sweep reads


@pytest.mark.parametrize("source", [
    # A helper reached through a default argument.
    "def _helper(ctx):\n    return (-2 / ctx.N * (ctx.resid @ ctx.G2.T) * ctx.dA).sum(axis=0)\n"
    "def grad_beta(ctx, helper=_helper):\n    return helper(ctx)\n",
    # Through a module of the user's (here made on the fly), as `import mylib; mylib.grad(ctx)` is.
    "import types\nmylib = types.ModuleType('mylib')\n"
    "exec('def grad(ctx):\\n    return (-2 / ctx.N * (ctx.resid @ ctx.G2.T) * ctx.dA).sum(axis=0)', vars(mylib))\n"
    "def grad_beta(ctx):\n    return mylib.grad(ctx)\n",
    # Through a table of functions, and through an object of the user's.
    "def _helper(ctx):\n    return (-2 / ctx.N * (ctx.resid @ ctx.G2.T) * ctx.dA).sum(axis=0)\n"
    "TABLE = {'beta': _helper}\ndef grad_beta(ctx):\n    return TABLE['beta'](ctx)\n",
    "class Layer:\n    def grad(self, ctx):\n        return (-2 / ctx.N * (ctx.resid @ ctx.G2.T) * ctx.dA).sum(axis=0)\n"
    "LAYER = Layer()\ndef grad_beta(ctx):\n    return LAYER.grad(ctx)\n",
])
def test_a_field_read_through_a_default_a_module_a_table_or_an_object_is_given(tmp_path, source):
    loaded = load_derivation(_file(tmp_path, source), MODEL)
    found = fields_read(loaded.functions.values(), [*MODEL.outputs, "R"])
    assert found is None or {"resid", "dA"} <= found
    report = run_sweep(MODEL, resolve({"shape": "N=5,p1=3,p2=2,k=1", "trials": 2}, None), loaded)
    assert report.tallies["grad_beta"].error is None and report.tallies["grad_beta"].failures == 0


def _same_tallies(a, b, rounding=1e-13):
    """The same verdicts, and the same largest errors to within `rounding` (absolute): two programs
    round differently, so a float32 error of a few ulps may come out as another few ulps."""
    for name, want in a.tallies.items():
        got = b.tallies[name]
        assert (got.ran, got.failures, got.compared, got.error is None) == (want.ran, want.failures, want.compared,
                                                                           want.error is None), name
        assert got.max_abs == pytest.approx(want.max_abs, rel=1e-6, abs=rounding), name


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_on_an_accelerator_a_traced_derivation_is_compared_beside_its_references(monkeypatch, dtype):
    """Compiled beside its references, only each draw's error summary comes back: a correct
    derivation's values are never read (Rows), and its verdicts are the host's, errors to rounding."""
    read = []
    monkeypatch.setattr(engine.Rows, "__getitem__", lambda self, row, get=engine.Rows.__getitem__: read.append(row) or get(self, row))
    flags = {"shape": "N=7,p1=3,p2=4,k=2", "trials": 40, "dtype": dtype}
    device, _ = _sweep(CORRECT_JAX, on_device=True, **flags)
    # Every gradient and JVP check ran there; dense Jacobians (small, within their budget) stay home.
    assert device.engine.on_device == {n for n, t in device.tallies.items() if t.check.kind != "jacobian"}
    assert read == []
    host, _ = _sweep(CORRECT_JAX, **flags)
    # float32: about a hundred ulps of values of order one.
    _same_tallies(host, device, rounding=1e-5 if dtype == "float32" else 1e-13)


def test_on_an_accelerator_noise_floors_and_failures_give_the_hosts_verdicts(tmp_path):
    """At eps = 0, held to rtol 1e-15, a correct derivation fails some ill-conditioned draws without
    the noise floor: on the device path they wait for it as on the host. A slip fails with the same
    diagnosis and error map."""
    flags = {"shape": "N=2,p1=3,p2=3,k=1", "trials": 24, "activation": "tanh", "ddof": 1, "eps": 0.0,
             "rtol": 1e-15, "atol": 0.0}
    device, _ = _sweep(CORRECT_JAX, on_device=True, **flags)
    host, _ = _sweep(CORRECT_JAX, **flags)
    assert ("rough", "noisy") in device.engine.compiled_passes()  # some draws did wait for their floors
    _same_tallies(host, device)

    slip = _file(tmp_path, JAX_SLIP)
    flags = {"shape": "N=6,p1=3,p2=4,k=1", "trials": 40}
    device, _ = _sweep(slip, on_device=True, **flags)
    host, _ = _sweep(slip, **flags)
    _same_tallies(host, device)
    want, got = host.tallies["grad_G1"], device.tallies["grad_G1"]
    assert got.worst_failure[0].seed == want.worst_failure[0].seed
    np.testing.assert_allclose(got.worst_values[0], want.worst_values[0], rtol=1e-12)
    assert [d.seed for d, _, _ in got.samples] == [d.seed for d, _, _ in want.samples]


def test_on_an_accelerator_a_function_that_cannot_trace_stays_on_the_host(tmp_path):
    path = _file(tmp_path, (
        "import jax.numpy as jnp\n"
        f"exec(open({CORRECT_JAX!r}).read())\n"
        "_grad_beta = grad_beta\n"
        "def grad_beta(ctx):\n"
        "    if ctx.N == 7:\n"
        "        raise ValueError('seven')\n"
        "    return _grad_beta(ctx)\n"
    ))
    device, _ = _sweep(path, on_device=True, shape="N=7,p1=3,p2=4,k=2", trials=6)
    assert "seven" in device.tallies["grad_beta"].error[1]
    assert all(t.error is None and t.failures == 0 for n, t in device.tallies.items() if n != "grad_beta")
    assert "grad_beta" not in device.engine.on_device and "grad_G1" in device.engine.on_device


def test_a_traced_function_reads_the_ctx_it_is_given():
    """The trace's inputs are the ctx's fields as the function reads them, whatever their order."""
    rng = np.random.default_rng(1)
    fields = {"b": rng.standard_normal((2, 3)), "a": rng.standard_normal((3,))}
    traced = Traced.of({"f": lambda ctx: jnp.sum(ctx.b * ctx.a, axis=0) - ctx.a})
    value = traced.hosted()["f"](Ctx({**fields, "N": 2}))
    np.testing.assert_allclose(value, (fields["b"] * fields["a"]).sum(0) - fields["a"], rtol=1e-14)


def test_a_jax_function_that_writes_into_ctx_in_place_fails_as_when_it_is_called(run, tmp_path):
    """A tracer is no NumPy array: `r = ctx.dA; r *= 1` rebinds r in a trace, and writes into ctx's
    read-only array when called. The call decides: the check errors, as its NumPy twin does, and no
    other check changes."""
    body = ("def grad_beta(ctx):\n    r = ctx.dA\n    r *= 1\n"
            "    return {wrap}(-2 / ctx.N * (ctx.resid @ ctx.G2.T) * r).sum(axis=0)\n")
    numpy = run(_file(tmp_path, body.format(wrap="")), shape="N=5,p1=3,p2=2,k=1", trials=2)
    jax_ = run(_file(tmp_path, "import jax.numpy as jnp\n" + body.format(wrap="jnp.asarray"), "jax_"),
               shape="N=5,p1=3,p2=2,k=1", trials=2)
    assert jax_.checks[0].status == numpy.checks[0].status == "error"
    assert "read-only" in jax_.checks[0].diagnosis["message"]


def test_a_jax_function_whose_numpy_aliasing_changes_its_value_is_judged_by_its_calls(run, tmp_path):
    """`a = ctx.resid + 0; b = a; a *= 2` doubles b in NumPy and not in a trace: the trace would pass
    where every call of the function returns twice the gradient. The call's value is judged."""
    path = _file(tmp_path, (
        "import jax.numpy as jnp\n"
        "def grad_beta(ctx):\n"
        "    a = ctx.resid + 0\n    b = a\n    a *= 2\n"
        "    return jnp.sum(-2 / ctx.N * (b @ ctx.G2.T) * ctx.dA, axis=0)\n"
    ))
    report = run(path, shape="N=5,p1=3,p2=2,k=1", trials=3)
    assert report.checks[0].status == "fail"
    assert report.checks[0].diagnosis["factor"] == pytest.approx(2.0, rel=1e-6)


def test_on_an_accelerator_the_users_function_runs_only_inside_check_call(monkeypatch, tmp_path):
    """The programs that compare beside the references replay the traces: the user's function itself
    runs only inside check.call, where its timeout and its isolation (sys.exit, ctx writes) hold."""
    import bncheck.check as check
    import bncheck.sweep as sweep

    inside: list[bool] = []
    depth = [0]
    real = sweep.call

    def watched(*args, **kwargs):
        depth[0] += 1
        try:
            return real(*args, **kwargs)
        finally:
            depth[0] -= 1

    monkeypatch.setattr(sweep, "call", watched)
    monkeypatch.setattr(check, "call", watched)
    path = _file(tmp_path, (
        "import jax.numpy as jnp\n"
        "def grad_beta(ctx):\n"
        "    SEEN.append(None)\n"
        "    return jnp.sum(-2 / ctx.N * (ctx.resid @ ctx.G2.T) * ctx.dA, axis=0)\n"
    ))
    loaded = load_derivation(path, MODEL)
    loaded.functions["grad_beta"].__globals__["SEEN"] = type("Seen", (), {"append": lambda self, _: inside.append(depth[0] > 0)})()
    settings = resolve({"shape": "N=6,p1=3,p2=2,k=1", "trials": 8}, None)
    with scope("cpu"):
        eng = Engine(MODEL, settings)
        eng.derive_on_device = True
        result = sweep_with(eng, loaded)
    assert result.engine.on_device == {"grad_beta"} and result.tallies["grad_beta"].failures == 0
    assert inside and all(inside), inside


def _shaped(N: int, p: int, seed: int = 0) -> Ctx:
    rng = np.random.default_rng(seed)
    return Ctx({"X": rng.standard_normal((N, p)), "w": rng.standard_normal((p,)), "N": N, "p": p, "ddof": 0})


@families
def test_a_sweep_of_many_shapes_traces_each_function_once_for_each_family_of_shapes():
    """Sizes of 2 or more are symbols: every shape where they all differ is one family, traced once,
    and the trace's value at each shape is the function's."""
    def f(ctx):
        Xc = ctx.X - jnp.mean(ctx.X, axis=0)
        return jnp.eye(ctx.p)[0] + (Xc * ctx.w).T @ jnp.ones(ctx.N) / (ctx.N - ctx.ddof) + jnp.arange(ctx.p)

    traced = Traced.of({"f": f})
    hosted = traced.hosted()["f"]
    shapes = [(N, p) for N in (2, 3, 5, 8, 13) for p in (1, 2, 4, 7)]
    for N, p in shapes:
        ctx = _shaped(N, p)
        Xc = ctx.X - ctx.X.mean(axis=0)
        want = np.eye(p)[0] + (Xc * ctx.w).sum(axis=0) / N + np.arange(p)
        np.testing.assert_allclose(hosted(ctx), want, rtol=1e-13, atol=1e-13, err_msg=f"N={N} p={p}")
    assert not traced.eager and not traced.impure
    # Families: N and p distinct and >= 2; p = 1; N = p (2, 2). A shape may still be traced on its own
    # where JAX compared a symbol with a size its caches hold from another test's trace.
    assert len(traced.families) == 3 and len(traced.traces) <= 2


@pytest.mark.parametrize("branch", [
    "ctx.N == 5", "ctx.X.shape[0] == 2 * ctx.X.shape[1]", "ctx.p != 3", "ctx.p == 3.0",
    # A size as a truth value, and looked up by hash (a set, a dict), where no equality is asked.
    "ctx.N % 2", "not ctx.N % 3", "ctx.p in {3, 5}", "{4: True}.get(ctx.p, False)",
    # Against a 0-d array, and a size as text.
    "ctx.p == jnp.int32(4)", "ctx.N == np.array(5)", "f'{ctx.p}' == '3'", "str(ctx.N) in {'5', '10'}",
])
def test_a_branch_on_an_equality_of_sizes_is_followed_at_the_shapes_where_it_holds(branch):
    """JAX takes an equality of symbolic sizes it cannot decide as false: the family's trace holds
    the other branch. Where the equality holds the shape is traced on its own, and takes its branch."""
    scope_: dict = {"jnp": jnp, "np": np}
    exec(f"def f(ctx):\n    return 2 * jnp.asarray(ctx.w) if {branch} else 3 * jnp.asarray(ctx.w)\n", scope_)
    f = scope_["f"]
    traced = Traced.of({"f": f})
    hosted = traced.hosted()["f"]
    for N, p in [(7, 3), (5, 4), (6, 3), (10, 5), (9, 4), (5, 2)]:
        ctx = _shaped(N, p)
        with scope("cpu"):
            want = np.asarray(f(ctx))
        np.testing.assert_allclose(hosted(ctx), want, rtol=0, atol=0, err_msg=f"{branch} at N={N} p={p}")
    assert traced.traces, "no shape was traced on its own"
    # A size compared with a JAX value is a JAX value at a shape of its own, which `if` cannot read:
    # there the function is called as it is.
    assert not traced.eager or "jnp." in branch


@families
def test_a_function_that_needs_its_sizes_as_numbers_is_traced_at_each_shape():
    """`range(ctx.N)` and `int(...)` need a number: the family trace fails and each shape is traced."""
    def f(ctx):
        return sum(jnp.asarray(ctx.X)[i] for i in range(ctx.N)) * ctx.w

    traced = Traced.of({"f": f})
    hosted = traced.hosted()["f"]
    for N, p in [(3, 2), (4, 5), (6, 3)]:
        ctx = _shaped(N, p)
        np.testing.assert_allclose(hosted(ctx), ctx.X.sum(0) * ctx.w, rtol=1e-13)
    assert set(traced.families.values()) == {None} and len(traced.traces) == 3 and not traced.eager
    # JAX's equality of symbolic sizes is its own again once a trace is done, failed or not.
    dim = jax.export.symbolic_shape("a")[0]
    for method in ("__eq__", "__hash__", "__str__", "__repr__"):
        assert "_equalities" not in repr(vars(type(dim))[method]), method
    assert "__bool__" not in vars(type(dim))


@families
@pytest.mark.parametrize("sizes", [{"a": 2, "b": 3}, {"a": 7, "b": 4}])
def test_a_symbolic_trace_evaluated_at_given_sizes_gives_what_jax_gives_at_that_shape(sizes):
    a, b = jax.export.symbolic_shape("a, b")

    def fn(x):  # iota, broadcast, reshape, a size as a value, pad, slice: sizes in shapes and parameters
        y = jnp.reshape(x.T, (-1,)) * x.shape[0] + jnp.arange(x.shape[1] * x.shape[0])
        z = jnp.pad(jnp.broadcast_to(x[:, :1], x.shape), ((0, 1), (1, 0)))
        return y.sum() + z[1:, :-1] / x.shape[1] + jnp.eye(x.shape[0], x.shape[1])

    x = np.random.default_rng(2).standard_normal((sizes["a"], sizes["b"]))
    closed = jax.make_jaxpr(fn)(jax.ShapeDtypeStruct((a, b), jnp.float64))
    (got,) = evaluate(closed.jaxpr, closed.consts, [x], sizes)
    with scope("cpu"):
        np.testing.assert_allclose(got, np.asarray(jax.jit(fn)(x)), rtol=1e-13)


def test_tracing_and_confirming_a_function_over_many_shapes_compiles_nothing(caplog):
    """Eager jax.numpy compiles each operation at each new shape (about 0.15 s a function of the seed
    network, per shape). Neither the traces nor the check of the first one against a call of the
    function compile: the call's JAX operations are staged and evaluated like a trace."""
    def f(ctx):
        Z = jnp.einsum("ij,j->ij", ctx.X, ctx.w) - jnp.mean(ctx.X, axis=0)
        return jnp.einsum("ij,ij->j", Z, ctx.X) / ctx.N + jnp.kron(jnp.eye(ctx.p), jnp.ones((1, 1)))[0]

    traced = Traced.of({"f": f})
    hosted = traced.hosted()["f"]
    with jax.log_compiles(True), caplog.at_level(logging.WARNING, logger="jax"):
        for N, p in [(5, 3), (9, 4), (3, 3), (6, 1), (4, 2)]:
            ctx = _shaped(N, p)
            Z = ctx.X * ctx.w - ctx.X.mean(axis=0)
            np.testing.assert_allclose(hosted(ctx), (Z * ctx.X).sum(axis=0) / N + np.eye(p)[0], rtol=1e-13)
    assert traced.confirmed == {"f"} and not traced.eager and not traced.impure
    assert not [r.getMessage() for r in caplog.records if "Compiling" in r.getMessage()]


@families
def test_a_branch_on_a_directions_size_is_followed_where_only_the_direction_has_sizes():
    """The symbols may come from a JVP direction alone (every ctx array of size 1): the equalities
    JAX takes as false about them are noted as about any other."""
    def f(ctx, V):
        return jnp.asarray(V) * (2.0 if V.shape[0] == 3 else 3.0) + ctx.b

    traced = Traced.of({"f": f})
    hosted = traced.hosted()["f"]
    ctx = Ctx({"b": np.ones(1)})
    for n in (2, 3, 4, 3):
        V = np.arange(float(n))
        np.testing.assert_allclose(hosted(ctx, V), V * (2.0 if n == 3 else 3.0) + 1.0, rtol=0, err_msg=f"n={n}")
    assert traced.families and not traced.eager
