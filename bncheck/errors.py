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


def describe(err: BaseException, at: str = "", limit: int = 300) -> str:
    """`Type at: first line of the message`, cut to `limit` characters, for a one-line error about an
    exception a user's file raised (`at`: where, such as " at model.py:12"). Never raises itself:
    the message is the user's code too."""
    try:
        text = str(err)
    except Exception:
        text = "(its message could not be shown: str() raised)"
    lines = text.strip().splitlines()
    first = lines[0] if lines else ""
    if len(first) > limit:
        first = first[:limit] + "…"
    return f"{type(err).__name__}{at}: {first}" if first else f"{type(err).__name__}{at}"


def as_exception(err: BaseException) -> Exception:
    """err itself when it is an Exception; else (SystemExit, GeneratorExit, a BaseException of the
    user's own) an Exception of the same name and message, so that a handler that turns a user's
    exceptions into a verdict or one line handles it too, and names it as the user's code raised it."""
    if isinstance(err, Exception):
        return err
    return type(type(err).__name__, (Exception,), {})(*err.args)
