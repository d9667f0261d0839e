"""The one small exception hierarchy: every error bncheck raises on bad input is a `BncheckError`.

The CLI turns each into a one-line message and exit status 2; anything else is a bug and keeps its
traceback under `--debug`.
"""


class BncheckError(Exception):
    """bncheck could not run: bad settings, an unreadable derivation or model, a missing device."""


class SettingsError(BncheckError):
    """A flag or config value is out of its domain."""


class LoadError(BncheckError):
    """A derivation or model file could not be found, parsed or imported."""


class CaseError(BncheckError):
    """An exported case or a file of values computed elsewhere could not be read or is malformed."""
