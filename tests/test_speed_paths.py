"""The shortcuts that make sweeps fast must not change a verdict: JAX's persistent compilation cache."""

import json
import os
import subprocess
import sys

from conftest import REPO


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
