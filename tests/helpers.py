"""Helpers the tests share, reaching bncheck's internals through its public doors only."""

from bncheck.engine import Engine, scope
from bncheck.sweep import run_sweep as _run_sweep


def run_sweep(model, settings, derivation, **options):
    """The sweep alone (no shrinking, no report), inside the run's engine scope, as pipeline.check runs it."""
    with scope(settings.device):
        return _run_sweep(Engine(model, settings), derivation, **options)
