"""The terminal report: a rich renderable that never prints by itself (the CLI owns the Console)."""

from __future__ import annotations

from rich.console import Console, ConsoleOptions, RenderResult
from rich.table import Table
from rich.text import Text

from bncheck.report import CheckResult, Report

_STYLE = {"pass": "green", "fail": "bold red", "error": "bold red", "missing": "yellow", "skipped": "yellow"}


def _num(value: float | None) -> str:
    return "—" if value is None else f"{value:.2e}"


def _case(check: CheckResult, dtype: str) -> str:
    if check.worst is None:
        return ""
    shape = ",".join(f"{k}={v}" for k, v in check.worst["shape"].items())
    where = f" @ {check.worst['index']}" if check.worst.get("index") else ""
    return f"{dtype}[{shape}]#seed{check.worst['seed']}{where}"


def _note(check: CheckResult) -> str:
    if check.diagnosis is not None:
        text = f"{check.diagnosis['code']}: {check.diagnosis['message']}"
        line = check.diagnosis.get("line")
        return f"{text} ({line})" if line else text
    return check.message or ""


class ReportView:
    def __init__(self, report: Report):
        self.report = report

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        r, s = self.report, self.report.settings
        shapes = (
            ",".join(f"{k}={v}" for k, v in s["shape"].items())
            if s["shape"]
            else " ".join(f"{k}∈[{lo},{hi}]" for k, (lo, hi) in s["sweep"].items())
        )
        redrawn = f", {r.redrawn} redrawn off a relu kink" if r.redrawn else ""
        yield Text.assemble(
            ("bncheck ", "bold"),
            f"model {r.model} · derivation {r.derivation} · {r.draws} draws{redrawn} · {shapes}\n",
            f"{s['dtype']} · rtol {s['rtol']:g} · atol {s['atol']:g} · activation {s['activation']} · "
            f"ddof {s['ddof']} · eps {s['eps']:g} · seed {s['seed']}",
            style="dim",
        )
        table = Table(show_edge=False, pad_edge=False, expand=False)
        table.add_column("check")
        table.add_column("status")
        table.add_column("reference", style="dim")
        table.add_column("max abs err", justify="right")
        table.add_column("max rel err", justify="right")
        table.add_column("worst draw", overflow="fold")
        table.add_column("diagnosis", overflow="fold")
        for c in r.checks:
            table.add_row(
                c.name,
                Text(c.status.upper() if not c.passed else c.status, style=_STYLE[c.status]),
                c.reference or "",
                _num(c.max_abs_err),
                _num(c.max_rel_err),
                _case(c, s["dtype"]),
                _note(c),
            )
        yield table
        for c in r.failed:
            if c.replay:
                yield Text.assemble(("replay ", "dim"), (c.name, "bold"), ("  " + c.replay, ""))
        ran = [c for c in r.checks if c.status in ("pass", "fail", "error")]
        if r.passed:
            yield Text(f"PASS  {len(ran)} checks agree with JAX over {r.draws} draws", style="bold green")
        elif not ran:
            yield Text("FAIL  no check ran", style="bold red")
        else:
            yield Text(f"FAIL  {len(r.failed)} of {len(r.checks)} checks failed", style="bold red")
