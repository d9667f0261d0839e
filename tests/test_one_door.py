"""The house: JAX is reached through one engine, entered once per run, and left as it was found; the
report only shapes data; a model file is traced once; diagnosis codes come from one table."""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import DERIVATIONS, REPO

ENV = {**os.environ, "PYTHONPATH": str(REPO), "BNCHECK_COMPILE_CACHE": "off",
       "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}


def _python(code: str) -> str:
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=ENV,
                          cwd=REPO, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_every_computation_of_a_run_is_on_the_device_it_asked_for():
    """With the ambient default device cpu:1, a run asking for --device cpu (cpu:0) computes its sweep,
    its diagnoses (variants), its smallest cases and its finite differences on cpu:0, every one."""
    out = _python(f"""
        import json, jax, jax.numpy as jnp
        import bncheck.engine as engine
        from bncheck import verify

        seen = []
        run = engine.Engine.run
        def spy(self, fn, draws, *args, **kwargs):
            seen.append(next(iter(jnp.zeros(()).devices())).id)
            return run(self, fn, draws, *args, **kwargs)
        engine.Engine.run = spy
        jax.config.update("jax_default_device", jax.devices("cpu")[1])
        report = verify({str(DERIVATIONS / "slip_batch_stats_constant.py")!r}, shape="N=6,p1=3,p2=2", trials=4,
                        activation="tanh", reference="fd")
        print(json.dumps({{"seen": sorted(set(seen)), "calls": len(seen), "passed": report.passed,
                          "codes": [c.diagnosis["code"] for c in report.checks if c.diagnosis],
                          "smallest": [c.smallest for c in report.checks if c.smallest],
                          "after": jax.config.jax_default_device.id}}))
    """)
    found = json.loads(out.strip().splitlines()[-1])
    assert not found["passed"] and "batch-stats-constant" in found["codes"] and found["smallest"]
    assert found["calls"] > 4  # the sweep, the floors, shrinking, fd and the variants all ran
    assert found["seen"] == [0], found
    assert found["after"] == 1  # the ambient device is left as it was


def test_verify_leaves_jax_as_it_found_it():
    out = _python("""
        import jax
        from bncheck import verify
        before = (jax.config.jax_enable_x64, jax.config.jax_default_matmul_precision)
        verify(None, shape="N=4,p1=2,p2=2", trials=2)
        verify("examples/layernorm/correct.py", model="examples/layernorm/model.py", trials=2)
        import jax.numpy as jnp
        print(before, (jax.config.jax_enable_x64, jax.config.jax_default_matmul_precision), jnp.zeros(1).dtype)
    """)
    assert out.split() == ["(False,", "None)", "(False,", "None)", "float32"], out


def test_no_module_of_the_report_imports_jax_or_the_engine():
    for path in (REPO / "bncheck" / "report").glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            for name in names:
                assert not name.startswith("jax") and name not in ("bncheck.engine", "bncheck.references"), (path, name)
    # Not even on the way in: rendering a report never loads JAX.
    out = _python("""
        import sys
        import bncheck.report, bncheck.report.console, bncheck.report.jsonfile, bncheck.report.junit
        print(sorted(m for m in sys.modules if m == "jax" or m.startswith("jax.")))
    """)
    assert out.strip() == "[]"


def test_a_model_file_is_traced_once_per_run(monkeypatch, tmp_path):
    import shutil

    import bncheck.models as models
    from bncheck import verify

    calls = []
    trace = models.trace_forward
    monkeypatch.setattr(models, "trace_forward", lambda *args: calls.append(1) or trace(*args))
    model = tmp_path / "model.py"  # a file no earlier run loaded
    shutil.copy(REPO / "examples/layernorm/model.py", model)
    report = verify(str(REPO / "examples/layernorm/correct.py"), model=str(model), trials=2, config=None)
    assert report.passed and len(calls) == 1


def _codes_of(report) -> dict[str, str]:
    return {c.name: c.diagnosis["code"] for c in report.checks if c.diagnosis}


def test_the_same_slip_gets_the_same_code_through_verify_and_verify_values(tmp_path, monkeypatch):
    """A value that is not an array of numbers, and a value off by a factor, diagnosed alike whether a
    derivation returned it or a values file held it; every code is one of the table's, which the
    README's table lists too."""
    from bncheck import verify
    from bncheck.assess.diagnose import CODES
    from bncheck.case import export_case, verify_values
    from bncheck.settings import resolve

    monkeypatch.chdir(tmp_path)
    shape = "N=5,p1=3,p2=2,k=1"
    settings = resolve({"shape": shape, "seed": 3, "trials": 1})
    export_case(settings, tmp_path / "case.json", "json")
    case = json.loads((tmp_path / "case.json").read_text())
    derivation = tmp_path / "slips.py"
    derivation.write_text(
        "from bncheck.derivations.bn_mlp_closed_form import grad_G2 as exact\n"
        "def grad_G2(ctx):\n    return 2 * exact(ctx)\n"
        "def grad_beta(ctx):\n    return 'not numbers'\n"
    )
    by_verify = _codes_of(verify(str(derivation), shape=shape, seed=3, trials=1))

    from bncheck.derivations.bn_mlp_closed_form import grad_G2
    from bncheck.draws import Ctx
    from bncheck.models import get_model

    model = get_model("bn-mlp")
    arrays = {k: __import__("numpy").array(v) for k, v in case["arrays"].items()}
    record = {k: __import__("numpy").array(v) for k, v in case["forward"].items()}
    dims = case["settings"]["shape"]
    values = {"grad_G2": (2 * grad_G2(Ctx({**arrays, **record, **dims, "N": 5}))).tolist(), "grad_beta": "x"}
    (tmp_path / "values.json").write_text(json.dumps({"arrays": values}))
    by_values = _codes_of(verify_values(tmp_path / "case.json", tmp_path / "values.json", {})[0])
    assert by_verify == by_values == {"grad_G2": "scale", "grad_beta": "shape"}

    readme = (REPO / "README.md").read_text(encoding="utf-8")
    table = set(re.findall(r"^\| `([a-z-]+)` \|", readme.split("## What the diagnosis says")[1], re.M))
    assert table == set(CODES)
