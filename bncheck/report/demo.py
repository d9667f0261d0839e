"""The terminal view of `bncheck demo centering`: a chart of ‖b‖ and the loss per step, and a table."""

from __future__ import annotations

import math

import numpy as np
from rich.console import Console, ConsoleOptions, RenderResult
from rich.table import Table
from rich.text import Text

from bncheck.demo import CenteringDemo

_LEVELS = "▁▂▃▄▅▆▇█"
CHART_WIDTH = 28  # two charts and the labels fit an 80-column terminal


def sparkline(values: tuple[float, ...], top: float) -> str:
    """One block per value, its height the value's share of `top` (0 at the bottom); at most
    CHART_WIDTH blocks: longer runs are sampled evenly, the first and last step kept."""
    if len(values) > CHART_WIDTH:
        values = tuple(values[i] for i in np.linspace(0, len(values) - 1, CHART_WIDTH).round().astype(int))
    if top <= 0:
        return _LEVELS[0] * len(values)
    return "".join(_LEVELS[min(len(_LEVELS) - 1, round(v / top * (len(_LEVELS) - 1)))] for v in values)


def _norm(v: tuple[float, ...]) -> float:
    return math.sqrt(sum(x * x for x in v))


class CenteringView:
    def __init__(self, demo: CenteringDemo):
        self.demo = demo

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        d = self.demo
        runs = (("naive", d.naive), ("honest", d.honest))
        shape = " ".join(f"{k}={v}" for k, v in d.dims.items())
        yield Text.assemble(
            ("bncheck demo centering", "bold"),
            ": the BN paper's section 2 (seed 002)\n",
            "x = x1 W + b,  xhat = x - E[x],  R = sum((xhat - t)^2) / N\n",
            (f"{shape}, seed {d.seed}: {d.steps} steps b <- b - lr dR/db on b alone, lr {d.lr:g}\n", "dim"),
            ("naive: dR/db with E[x] held constant (built-in naive); honest: closed-form", "dim"),
        )

        top_b = max(max(t.b_norm) for _, t in runs)
        top_loss = max(max(t.loss) for _, t in runs)
        chart = Table(box=None, pad_edge=False, header_style="bold")
        chart.add_column("")
        chart.add_column(f"‖b‖, steps 0-{d.steps} (0 to {top_b:.3g})", no_wrap=True)
        chart.add_column(f"loss (0 to {top_loss:.3g})", no_wrap=True)
        for label, t in runs:
            chart.add_row(label, Text(sparkline(t.b_norm, top_b), style="cyan"), Text(sparkline(t.loss, top_loss), style="magenta"))
        yield Text("")
        yield chart

        table = Table(box=None, pad_edge=False, header_style="bold")
        table.add_column("")
        for column in ("‖dR/db‖", "‖b‖ first → last", "per step", "loss first → last", "max |Δloss|"):
            table.add_column(column, justify="right", no_wrap=True)
        for label, t in runs:
            table.add_row(
                label,
                f"{_norm(t.grad_b):.3g}",
                f"{t.b_norm[0]:.3g} → {t.b_norm[-1]:.3g}",
                f"+{t.growth_per_step:.3g}",
                f"{t.loss[0]:.4g} → {t.loss[-1]:.4g}",
                f"{t.loss_change:.0e}",
            )
        yield Text("")
        yield table
        yield Text(
            f"\nEach naive step moves b and E[x] together: xhat and the loss stay put while b moves "
            f"{d.naive.growth_per_step:.3g} further, every step, without bound. The honest dR/db is zero "
            f"(jax.grad gives ‖dR/db‖ = {_norm(d.autodiff_grad_b):.0e}), and b stays where it is."
        )
