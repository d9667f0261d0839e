"""bncheck: verify hand-derived gradients and Kronecker-form Jacobians against JAX autodiff.

The public API, imported lazily so that `bncheck --help` does not pay for JAX:

    from bncheck import verify
    report = verify("my_derivation.py", ddof=1)
    assert report.passed
"""

from importlib import import_module

__version__ = "0.1.0"

_EXPORTS = {
    "verify": "bncheck.pipeline",
    "verify_files": "bncheck.pipeline",
    "check_backward": "bncheck.backward",
    "check_rule": "bncheck.rules",
    "resolve": "bncheck.settings",
    "Settings": "bncheck.settings",
    "load_derivation": "bncheck.loader",
    "get_model": "bncheck.models",
    "Report": "bncheck.report",
    "Reports": "bncheck.report",
    "CheckResult": "bncheck.report",
    "Ctx": "bncheck.sweep",
    "BncheckError": "bncheck.errors",
    "assert_derivation": "bncheck.testing",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'bncheck' has no attribute {name!r}")
