"""The terminal report: a rich renderable that never prints by itself (the CLI owns the Console)."""

from __future__ import annotations

from rich.console import Console, ConsoleOptions, RenderResult
from rich.table import Table
from rich.text import Text

from bncheck.report import CheckResult, Report

_STYLE = {"pass": "green", "fail": "bold red", "error": "bold red", "missing": "yellow", "skipped": "yellow"}


def _num(value: float | None) -> str:
    return "—" if value is None or value != value or value in (float("inf"), float("-inf")) else f"{value:.2e}"


def _case(check: CheckResult) -> str:
    if check.worst is None:
        return ""
    shape = " ".join(f"{k}={v}" for k, v in check.worst["shape"].items())
    where = f" at {check.worst['index']}" if check.worst.get("index") else ""
    return f"{shape} seed {check.worst['seed']}{where}"


def _note(check: CheckResult) -> str:
    if check.diagnosis is not None:
        text = f"{check.diagnosis['code']}: {check.diagnosis['message']}"
        line = check.diagnosis.get("line")
        return f"{text}\n  at {line}" if line else text
    return check.message or ""


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
        options = "".join(f"{name} {value:g}; " if isinstance(value, float) else f"{name} {value}; " for name, value in r.options.items())
        yield Text.assemble(
            ("bncheck ", "bold"),
            f"{r.derivation} on {r.model}: {r.draws} draws{redrawn}, {shapes}\n",
            (
                f"{s['dtype']}, rtol {s['rtol']:g}, atol {s['atol']:g}; {options}"
                f"seed {s['seed']}; against {', '.join(references) or 'nothing'}",
                "dim",
            ),
        )
        shown = [c for c in r.checks if c.status != "missing" or not c.passed]
        table = Table(box=None, pad_edge=False, header_style="bold")
        table.add_column("check", no_wrap=True)
        table.add_column("status", no_wrap=True)
        table.add_column("max abs err", justify="right", no_wrap=True)
        table.add_column("max rel err", justify="right", no_wrap=True)
        table.add_column("worst draw")
        for c in shown:
            table.add_row(
                c.name,
                Text(c.status if c.passed else c.status.upper(), style=_STYLE[c.status]),
                _num(c.max_abs_err),
                _num(c.max_rel_err),
                _case(c),
            )
        yield table
        absent = [c.name for c in r.checks if c.status == "missing" and c.passed]
        if absent:
            yield Text(f"not defined (not required): {', '.join(absent)}", style="dim")
        for c in r.checks:
            if c.passed and c.message and c.status != "missing":
                yield Text.assemble((f"{c.name}: ", "yellow"), c.message)
        for w in r.warnings:
            yield Text.assemble(("warning: ", "yellow"), (f"{w['check']}: ", "yellow"), w["message"])
        for c in r.failed:
            yield Text.assemble(("\n✗ ", "bold red"), (c.name, "bold"), "  ", _note(c))
            if c.replay:
                yield Text.assemble(("  replay: ", "dim"), c.replay)
        ran = [c for c in r.checks if c.status in ("pass", "fail", "error")]
        if r.passed:
            yield Text(f"\nPASS  {len(ran)} checks agree with JAX over {r.draws} draws", style="bold green")
        elif not ran:
            yield Text("\nFAIL  no check ran", style="bold red")
        else:
            yield Text(f"\nFAIL  {len(r.failed)} of {len(r.checks)} checks failed", style="bold red")
