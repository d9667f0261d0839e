"""Draws sharded over several devices (a mesh over the draw axis) give the report one device gives:
devices simulated on the CPU (XLA_FLAGS=--xla_force_host_platform_device_count=N), one process each."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
from conftest import DERIVATIONS, REPO, SMALL

SCRIPT = textwrap.dedent(f"""
    import json, jax
    from bncheck import verify
    from bncheck.engine import Engine, scope
    from bncheck.loader import load_derivation
    from bncheck.models import get_model
    from bncheck.settings import resolve
    from bncheck.sweep import run_sweep

    def summary(checks):
        return {{c["name"]: [c["status"], (c.get("diagnosis") or {{}}).get("code"), c["max_abs_err"]] for c in checks}}

    # A slipped NumPy file over the small sweep: references sharded, the functions on the host.
    report = verify({str(DERIVATIONS / "slip_dropped_inv_n.py")!r}, config={str(SMALL)!r}, trials=40)
    data = report.to_dict()
    # The jax.numpy file compared beside its references (the accelerator's path, on the CPU).
    model = get_model("bn-mlp")
    with jax.numpy_rank_promotion("allow"), scope("cpu"):
        engine = Engine(model, resolve({{"shape": "N=7,p1=3,p2=4,k=2", "trials": 24}}, None))
        engine.derive_on_device = True
        sweep = run_sweep(engine, load_derivation({str(DERIVATIONS / "correct_jax.py")!r}, model))
    print(json.dumps({{"devices": data["devices"], "numpy": summary(data["checks"]),
                      "on_device": sorted(engine.on_device), "sweep_devices": sweep.devices,
                      "jax": {{n: [t.ran, t.failures, t.max_abs] for n, t in sweep.tallies.items()}}}}))
""")


def _report(devices: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO), "BNCHECK_COMPILE_CACHE": "off",
           "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, cwd=REPO,
                          timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _close(got: float | None, want: float | None) -> bool:
    """The same error to within rounding (None: no value could be compared)."""
    return got is None if want is None else got == pytest.approx(want, rel=1e-6, abs=1e-13)


def test_the_same_report_on_one_two_and_four_devices():
    reports = {n: _report(n) for n in (1, 2, 4)}
    one = reports[1]
    assert any(status == "fail" for status, _, _ in one["numpy"].values())  # the slip is found
    assert one["on_device"] and all(failures == 0 for _, failures, _ in one["jax"].values())
    for n, got in reports.items():
        assert got["devices"] == got["sweep_devices"] == n  # the report says how many ran
        assert got["on_device"] == one["on_device"]
        for name, (status, code, err) in one["numpy"].items():
            assert got["numpy"][name][:2] == [status, code], (n, name)
            assert _close(got["numpy"][name][2], err), (n, name)
        for name, (ran, failures, err) in one["jax"].items():
            assert got["jax"][name][:2] == [ran, failures], (n, name)
            assert _close(got["jax"][name][2], err), (n, name)
