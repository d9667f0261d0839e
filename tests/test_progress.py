"""The progress display names each long step and shows draws per second and the time left."""

import io
import re
import time

from rich.console import Console

from bncheck.progress import sweep_progress


def _render(quiet: bool) -> str:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=140)
    with sweep_progress(console, trials=40, quiet=quiet) as (on_phase, on_progress):
        on_phase("compiling and computing references")
        time.sleep(0.3)  # rich redraws ten times a second
        on_phase("checking draws")
        for done in range(1, 41):
            on_progress(done, 40)
            time.sleep(0.01)
    return out.getvalue()


def test_progress_names_phases_and_shows_rate_and_time_left():
    shown = _render(quiet=False)
    assert "compiling and computing references" in shown
    assert "checking draws" in shown and "/40" in shown
    assert "draws/s" in shown and "left" in shown


def test_each_time_is_labelled_as_what_it_is():
    # The elapsed time first, then the time left, each with its label after it (issue 16: the elapsed
    # time read "0:00:08 left 0:00:02").
    shown = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", _render(quiet=False))
    assert re.search(r"\d+:\d\d:\d\d elapsed\s+(\d+:\d\d:\d\d|-:--:--) left", shown), shown[-400:]


def test_quiet_progress_prints_nothing():
    assert _render(quiet=True) == ""
