"""The shortcuts that make sweeps fast must not change a verdict: the float32 reference computed only
for draws that need their noise floor, and JAX's persistent compilation cache."""

import json
import os
import subprocess
import sys

import pytest
from conftest import DERIVATIONS, REPO, SMALL

from bncheck.loader import load_derivation
from bncheck.models import get_model
from bncheck.settings import resolve
from bncheck.sweep import run_sweep

MODEL = get_model("bn-mlp")


@pytest.mark.parametrize("derivation", ["correct_numpy", "slip_dropped_inv_n", "slip_batch_stats_constant"])
def test_lazy_noise_floor_gives_the_verdicts_of_the_full_one(derivation):
    # tanh at N = 2 is where the noise floor is largest: the lazy path must compute it there.
    settings = resolve({"activation": "tanh", "trials": 12}, SMALL)
    loaded = load_derivation(str(DERIVATIONS / f"{derivation}.py"), MODEL)
    lazy = run_sweep(MODEL, settings, loaded)
    full = run_sweep(MODEL, settings, loaded, every_floor=True)
    for name, tally in full.tallies.items():
        other = lazy.tallies[name]
        assert (other.ran, other.failures, other.error is None) == (tally.ran, tally.failures, tally.error is None), name
        assert other.max_abs == tally.max_abs and other.max_rel == tally.max_rel, name
        # Without the floor the allowance can only be smaller: a share used can only be larger.
        assert all(a >= b for a, b in zip(other.used, tally.used)), name


def _verify(env: dict) -> dict:
    cmd = [sys.executable, "-m", "bncheck", "verify", "--shape", "N=6,p1=3,p2=2", "--trials", "3", "--json", "-"]
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True, env=env, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_compilation_cache_is_written_reused_and_can_be_switched_off(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO), "XDG_CACHE_HOME": str(tmp_path / "xdg")}
    env["BNCHECK_COMPILE_CACHE"] = str(tmp_path / "cache")
    first = _verify(env)
    entries = set(os.listdir(tmp_path / "cache"))
    assert entries, "the first run writes its compiled references"
    assert _verify(env) == first  # the second run loads them and reports the same
    assert set(os.listdir(tmp_path / "cache")) == entries  # nothing recompiled

    env["BNCHECK_COMPILE_CACHE"] = "off"
    assert _verify(env) == first
    assert not (tmp_path / "xdg").exists()  # off means no default folder either
