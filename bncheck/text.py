"""User text as a report can carry it: an exception message, a file name or a source line comes from
the user's code and may be megabytes long, hold terminal escapes or NUL bytes, or be no valid Unicode
(a lone surrogate); a report keeps its start, says how much it cut, and shows what it cannot hold as
escapes (\\x1b, \\udc80)."""

from __future__ import annotations

import re

# A message longer than this is cut in every report: console, JSON and JUnit alike.
MESSAGE_LIMIT = 2000
# Frames of one traceback shown, the outermost and the innermost, once repeats are folded.
FRAMES_SHOWN = (3, 8)

# C0 and C1 controls but tab and newline, surrogates (valid in no encoding) and the two noncharacters
# XML 1.0 forbids: what neither a terminal, a JSON reader nor an XML parser can take as it is.
_UNPRINTABLE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")
_UNPRINTABLE_OR_BREAK = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")


def _escape(match: re.Match) -> str:
    return repr(match.group())[1:-1]


def shorten(text: str, limit: int = MESSAGE_LIMIT) -> str:
    """`text`, or its first `limit` characters and how many were cut."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]} ... [{len(text) - limit:,} more characters cut]"


def printable(text: str, limit: int = MESSAGE_LIMIT) -> str:
    """`text` shortened, with every character but tab and newline that a terminal, JSON or XML 1.0
    cannot carry written as its Python escape."""
    return _UNPRINTABLE.sub(_escape, shorten(text, limit))


def one_line(text: str, limit: int = MESSAGE_LIMIT) -> str:
    """`printable`, with line breaks and tabs escaped too: for a message promised on one line."""
    return _UNPRINTABLE_OR_BREAK.sub(_escape, shorten(text, limit))


def fold_frames(frames: list[str], prefix: str = "") -> list[str]:
    """Traceback lines, each frame after `prefix`, as a reader can take them: a run of one repeated
    frame (a recursion) as the frame and a count, as Python's own tracebacks do; past FRAMES_SHOWN, the
    outermost and innermost frames around a count of those left out."""
    folded: list[str] = []
    i = 0
    while i < len(frames):
        run = 1
        while i + run < len(frames) and frames[i + run] == frames[i]:
            run += 1
        folded.append(prefix + printable(frames[i]))
        if run > 1:
            folded.append(f"[the frame above repeated {run - 1} more times]")
        i += run
    outer, inner = FRAMES_SHOWN
    if len(folded) > outer + inner + 1:
        folded = [*folded[:outer], f"[{len(folded) - outer - inner} more frames]", *folded[-inner:]]
    return folded


def counted(n: int, word: str) -> str:
    """'1 draw', '2 draws': a count and its noun, in the plural where it takes one."""
    return f"{n:,} {word}" if n == 1 else f"{n:,} {word}s"


def describe(err: BaseException) -> str:
    """`err` as one short line, `SystemExit(0)`, even when its own repr raises."""
    try:
        text = repr(err)
    except Exception:  # a user's exception class may break its own repr; its name still says enough
        text = type(err).__name__
    return one_line(text, 200)


def exception_text(err: BaseException) -> str:
    """`TypeError: message`, even when the exception's own str raises."""
    try:
        message = str(err)
    except BaseException:  # noqa: BLE001 - a user's exception may break even this
        message = "(its message could not be read: str() of it raised)"
    return f"{type(err).__name__}: {message}" if message else type(err).__name__
