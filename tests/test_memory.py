"""Memory stays flat in the number of draws, and a shape that cannot fit is refused before anything
is allocated."""

import os
import subprocess
import sys

import pytest
from conftest import REPO

ENV = {**os.environ, "PYTHONPATH": str(REPO), "BNCHECK_COMPILE_CACHE": "off"}


def _peak_mb(*args: str) -> tuple[float, subprocess.CompletedProcess]:
    """Peak resident memory (MB) of `bncheck ARGS` run in a child of a fresh child, and its result."""
    code = (
        "import resource, subprocess, sys\n"
        "proc = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)\n"
        "sys.stderr.write(proc.stderr); sys.exit(proc.returncode)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code, sys.executable, "-m", "bncheck", *args],
                          capture_output=True, text=True, env=ENV, timeout=600)
    return float(proc.stdout.strip().splitlines()[-1]), proc


def test_memory_does_not_grow_with_the_number_of_draws():
    args = ("verify", "--shape", "N=64,p1=16,p2=16", "--json", os.devnull)
    few, proc = _peak_mb(*args, "--trials", "100")
    assert proc.returncode == 0, proc.stderr
    many, proc = _peak_mb(*args, "--trials", "2500")
    assert proc.returncode == 0, proc.stderr
    # Holding every draw's references (as bncheck once did) took 400 MB more here.
    assert many - few < 60, (few, many)


@pytest.mark.parametrize("args", [
    ("verify", "--shape", "N=1000000,p1=16,p2=16"),
    ("verify", "--outputs", "1000000"),
    ("verify", "--shape", "N=256,p1=32,p2=32", "--max-memory-mb", "1"),
    ("case", "export", "--shape", "N=1000000,p1=16,p2=16", "--out", os.devnull),
])
def test_a_draw_that_cannot_fit_is_refused_before_it_is_allocated(args):
    peak, proc = _peak_mb(*args)
    assert proc.returncode == 2, proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("bncheck: error: max_memory_mb: ") and "--max-memory-mb" in line
    assert peak < 1000, peak
