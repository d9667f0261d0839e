"""The progress display of `bncheck verify` (rich, on stderr): each long step by name with a spinner
and the time spent, then the draws with a bar, draws per second and the time left."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text


class RateColumn(ProgressColumn):
    """Draws per second, once rich has timed a few."""

    def render(self, task: Task) -> Text:
        if not task.speed:
            return Text("")
        rate = f"{task.speed:,.0f}"
        return Text(f"{rate} draw{'' if rate == '1' else 's'}/s", style="progress.data.speed")


@contextmanager
def sweep_progress(console: Console, trials: int, quiet: bool) -> Iterator[tuple[Callable, Callable]]:
    """Yields (on_phase, on_progress) for pipeline.verify; shows nothing when quiet."""
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(),
        # Each time with its own label after it: "0:00:08 elapsed 0:00:02 left".
        TimeElapsedColumn(),
        TextColumn("elapsed"),
        TimeRemainingColumn(),
        TextColumn("left"),
        console=console,
        transient=True,
        disable=quiet,
    ) as progress:
        # No total while compiles and references run: the bar pulses and the clock still moves.
        task = progress.add_task("starting", total=None)

        def on_phase(text: str) -> None:
            progress.update(task, description=text, total=trials if text == "checking draws" else None)

        def on_progress(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        yield on_phase, on_progress
