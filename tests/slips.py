"""Slipped derivation files of one model (tests/derivations/<model>/): each declares the checks it
breaks (EXPECTED_FAIL) and the settings that show the slip (SETTINGS, model included)."""

import functools

from conftest import DERIVATIONS, failed
from slip_files import load_module


def files(model: str) -> list:
    return sorted((DERIVATIONS / model).glob("*.py"))


def declared(path) -> tuple[set[str], dict]:
    module = load_module(path)
    return module.EXPECTED_FAIL, module.SETTINGS


@functools.cache
def fails_exactly(path):
    """Runs one slipped file (once per session); asserts it fails exactly what it declares, diagnosed as
    its EXPECTED_DIAGNOSIS says where it has one, and passes the rest."""
    from bncheck import verify

    expected, settings = declared(path)
    report = verify(str(path), **settings)
    assert failed(report) == expected, [(c.name, c.status, c.diagnosis) for c in report.checks]
    for name, want in getattr(load_module(path), "EXPECTED_DIAGNOSIS", {}).items():
        got = next(c for c in report.checks if c.name == name).diagnosis
        assert {key: got.get(key) for key in want} == want, (name, got)
    ran = {c.name for c in report.checks if c.status in ("pass", "fail", "error")}
    assert expected <= ran and len(ran) > len(expected)  # the others ran and passed
    return report
