"""JAX runs strictly in the tests: float64 on, and implicit rank promotion is an error."""

import os
from pathlib import Path

# Tests leave the user's compilation cache alone; tests/test_speed.py checks the cache on its own.
os.environ.setdefault("BNCHECK_COMPILE_CACHE", "off")

import jax
import pytest

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_rank_promotion", "raise")

REPO = Path(__file__).resolve().parents[1]
DERIVATIONS = REPO / "tests" / "derivations"
# Small shapes and few draws: each distinct bucket costs an XLA compile on a 2-core machine.
SMALL = REPO / "tests" / "small.toml"


@pytest.fixture
def run():
    from bncheck import verify

    def _run(derivation=None, config=SMALL, **flags):
        return verify(derivation, config=config, **flags)

    return _run


def statuses(report) -> dict[str, str]:
    return {c.name: c.status for c in report.checks}


def failed(report) -> set[str]:
    return {c.name for c in report.checks if not c.passed}
