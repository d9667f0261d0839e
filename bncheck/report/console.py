"""The terminal report: a rich renderable that never prints by itself (the CLI owns the Console).

Print it with `crop=False`: a replay command is one line however wide the console, so that a pasted
replay keeps all its flags, and cropping it at the console's width would cut them off instead.
"""

from __future__ import annotations

from rich.console import Console, ConsoleOptions, RenderResult
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from bncheck.report import CheckResult, Report, Reports
from bncheck.text import counted, fold_frames, printable

_STYLE = {"pass": "green", "fail": "bold red", "error": "bold red", "missing": "yellow", "skipped": "yellow"}


def _num(value: float | None) -> str:
    return "—" if value is None or value != value or value in (float("inf"), float("-inf")) else f"{value:.2e}"


def _errors(check: CheckResult) -> tuple[str, str]:
    """The worst draw's abs and rel err ("—" where its value could not be compared)."""
    worst = check.worst or {}
    return _num(worst.get("abs_err")), _num(worst.get("rel_err"))


def _case(check: CheckResult) -> str:
    if check.worst is None:
        return ""
    shape = " ".join(f"{k}={v}" for k, v in check.worst["shape"].items())
    where = f" at {check.worst['index']}" if check.worst.get("index") else ""
    # In a run that swept model options, the values the worst draw had.
    swept = "".join(f" {k} {v}" for k, v in check.worst.get("options", {}).items())
    return printable(f"{shape}{swept} seed {check.worst['seed']}{where}")


def _devices(r: Report) -> str:
    """Where the references ran: "cpu", "4 gpu devices", "4 cpu devices of 2 processes"."""
    where = r.device if r.devices == 1 else f"{r.devices} {r.device} devices"
    return where if r.processes == 1 else f"{where} of {r.processes} processes"


def _option(name: str, value) -> str:
    if isinstance(value, list):  # swept: its inclusive range
        return f"{name} {value[0]}:{value[1]} (swept)"
    return f"{name} {value:g}" if isinstance(value, float) else f"{name} {value}"


def _note(check: CheckResult) -> str:
    if check.diagnosis is not None:
        text = printable(f"{check.diagnosis['code']}: {check.diagnosis['message']}")
        frames = fold_frames(check.diagnosis.get("traceback") or [], prefix="at ")
        return "\n".join([text, *(f"  {frame}" for frame in frames)])
    return printable(check.message or "")


# Shades of a cell by its error relative to the map's largest, a decade a step: the structure of a slip
# (one column, every row, a block) shows whatever the error's range.
_SHADES = ((0.5, "██", "bold red"), (0.1, "▓▓", "red"), (1e-2, "▒▒", "red"), (1e-3, "░░", "dim red"))


def _cell(error: float, largest: float) -> Text:
    for share, glyph, style in _SHADES:
        if error >= share * largest:
            return Text(glyph, style=style)
    return Text("··" if error > 0 else "  ", style="dim")


def _error_map(check: CheckResult) -> RenderResult:
    """The worst failing draw's |got − ref| as a grid of shaded cells, and its worst entries."""
    m = check.error_map
    block = "" if m["block"] == [1, 1] else f", a cell per {m['block'][0]}×{m['block'][1]} block"
    shape = "×".join(map(str, m["shape"])) + (" entries" if len(m["shape"]) == 1 else "")
    yield Text.assemble(
        ("  |got − ref| at the worst draw", "dim"),
        f" ({shape}{block}): █ ≥ 1/2, ▓ ≥ 1/10, ▒ ≥ 1/100, ░ ≥ 1/1000 of the largest, {m['max']:.2e}",
    )
    for row in m["grid"]:
        yield Text.assemble("    ", *(_cell(e, m["max"]) for e in row))
    table = Table(box=None, pad_edge=False, header_style="dim", padding=(0, 2, 0, 0))
    for column in ("index", "got", "want", "got/want"):
        table.add_column(column, justify="left" if column == "index" else "right", no_wrap=True)
    for e in m["entries"]:
        table.add_row(str(e["index"]), f"{e['got']:.6g}", f"{e['want']:.6g}", _num(e["ratio"]))
    yield Padding(table, (0, 0, 0, 4), expand=False)


class ReportView:
    def __init__(self, report: Report):
        self.report = report

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        r, s = self.report, self.report.settings
        shapes = (
            " ".join(f"{k}={v}" for k, v in s["shape"].items())
            if s["shape"]
            else " ".join(f"{k}∈[{lo},{hi}]" for k, (lo, hi) in s["sweep"].items())
        )
        redrawn = f" ({r.redrawn} redrawn off a relu kink)" if r.redrawn else ""
        references = sorted({c.reference for c in r.checks if c.reference}) + (["fd"] if s.get("reference") == "fd" else [])
        options = ", ".join(_option(n, v) for n, v in r.options.items())
        options = f"{options}; " if options else ""
        yield Text.assemble(
            ("bncheck ", "bold"),
            printable(f"{r.derivation} on {r.model}: {counted(r.draws, 'draw')}{redrawn}, {shapes}") + "\n",
            (
                f"{s['dtype']}, rtol {s['rtol']:g}, atol {s['atol']:g}; {options}"
                f"seed {s['seed']}; against {', '.join(references) or 'nothing'}; "
                f"on {_devices(r)}",
                "dim",
            ),
        )
        shown = [c for c in r.checks if c.status != "missing" or not c.passed]
        table = Table(box=None, pad_edge=False, header_style="bold")
        table.add_column("check", no_wrap=True)
        table.add_column("status", no_wrap=True)
        # One draw a row, the worst (furthest past its allowance, or nearest to it): its errors, where
        # it is, and the heat map below are all of that draw.
        table.add_column("abs err", justify="right", no_wrap=True)
        table.add_column("rel err", justify="right", no_wrap=True)
        # Why a passing draw has a rel err above rtol, in a word ("ref ~0"), where any row needs one.
        notes = [(c.worst or {}).get("note") or "" for c in shown]
        if any(notes):
            table.add_column("", no_wrap=True, style="dim")
        table.add_column("worst draw")
        for c, note in zip(shown, notes):
            table.add_row(
                Text(printable(c.name)),
                Text(c.status if c.passed else c.status.upper(), style=_STYLE[c.status]),
                *_errors(c),
                *([note] if any(notes) else []),
                Text(_case(c)),
            )
        yield table
        absent = [c.name for c in r.checks if c.status == "missing" and c.passed]
        if absent:
            yield Text(f"not defined (not required): {', '.join(absent)}", style="dim")
        for c in r.checks:
            if c.passed and c.message and c.status != "missing":
                yield Text.assemble((f"{c.name}: ", "yellow"), printable(c.message))
        for w in r.warnings:
            yield Text.assemble(("warning: ", "yellow"), (f"{w['check']}: ", "yellow"), printable(w["message"]))
        for c in r.failed:
            yield Text.assemble(("\n✗ ", "bold red"), (printable(c.name), "bold"), "  ", _note(c))
            raised = c.raised_line()
            if raised is not None:
                yield Text(f"  {raised}", style="red")
                if (c.diagnosis or {}).get("code") != "exception":
                    for frame in fold_frames(c.raised["traceback"], prefix="at "):
                        yield Text(f"    {frame}")
            if c.replay:
                yield Text.assemble(("  replay: ", "dim"), printable(c.replay), no_wrap=True, overflow="ignore")
            if c.error_map is not None:
                yield from _error_map(c)
        yield Text("\n" + " ".join(verdict(r)), style="bold green" if r.passed else "bold red")


def verdict(r: Report) -> tuple[str, str]:
    """A report's verdict in two parts, PASS or FAIL (ERROR: a file that could not be loaded) and why."""
    if r.error is not None:
        return "ERROR", printable(r.error)
    ran = [c for c in r.checks if c.status in ("pass", "fail", "error")]
    if r.passed:
        agree = "agrees" if len(ran) == 1 else "agree"
        return "PASS ", f"{counted(len(ran), 'check')} {agree} with JAX over {counted(r.draws, 'draw')}"
    if not ran:
        return "FAIL ", "no check ran"
    return "FAIL ", f"{len(r.failed)} of {counted(len(r.checks), 'check')} failed"


class ReportsView:
    """Many files (CONTRACT §8): each file's report, then one summary line per file and the verdict."""

    def __init__(self, reports: Reports):
        self.reports = reports

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        files = self.reports.files
        for r in files:
            if r.error is None:
                yield ReportView(r)
                yield Text("")
        width = max(len(printable(r.derivation)) for r in files)
        for r in files:
            status, why = verdict(r)
            failed = ", ".join(f"{c.name} ({c.diagnosis['code']})" if c.diagnosis else c.name for c in r.failed)
            # One line a file, however long, so that a file's verdict can be found by its name.
            yield Text.assemble((status, "bold green" if r.passed else "bold red"), "  ",
                                printable(r.derivation).ljust(width), "  ", why + (f": {failed}" if failed else ""),
                                no_wrap=True, overflow="ignore")
        passed = sum(r.passed for r in files)
        if self.reports.passed:
            yield Text(f"\nPASS  {counted(len(files), 'file')} passed", style="bold green")
        else:
            yield Text(f"\nFAIL  {len(files) - passed} of {counted(len(files), 'file')} failed", style="bold red")


def plain_text(report: Report | Reports, width: int = 100) -> str:
    """The terminal report as plain text: no colour, no terminal codes."""
    import io

    out = io.StringIO()
    plain = Console(file=out, width=width, color_system=None, force_terminal=False, highlight=False)
    plain.print(ReportsView(report) if isinstance(report, Reports) else ReportView(report), crop=False)
    return out.getvalue()
