"""`bncheck verify-rule`: a JAX custom rule against autodiff of its primal (CONTRACT §7, bncheck.rules).

A command of bncheck.cli's app, which registers it by importing this module; it reuses verify's
options, its error guard, its stdout discipline and its report writing, so that the exit status, the
reports and the one-line errors are verify's.
"""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from bncheck.cli import (
    AtolOption,
    DebugOption,
    DtypeOption,
    JsonOption,
    JunitOption,
    MaxMemoryOption,
    RtolOption,
    TimeoutOption,
    _finish,
    _guard,
    _setting,
    _stdout_for_reports,
    app,
    errors,
)


@app.command("verify-rule")
def verify_rule(
    rule: Annotated[
        str, typer.Argument(help="FILE.py:FUNC, a function decorated with jax.custom_vjp or jax.custom_jvp.")
    ],
    shapes: Annotated[
        str,
        typer.Option(
            "--shapes",
            help='The dimensions of each argument of FUNC, e.g. "x=N,D g=D" (a number is a fixed size, "s=" a '
            "scalar). Arguments left out keep their defaults.",
        ),
    ],
    dims: _setting(str, "--dims", "Inclusive sweep range of each dimension, e.g. N=2:64,D=1:32. [default: 1:16 each]") = None,
    trials: Annotated[Optional[int], typer.Option(help="Number of draws. [default: 200]")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Seed of the first draw; draw t has seed + t. [default: 0]")] = None,
    shape: Annotated[
        Optional[str], typer.Option(help="One fixed shape for every draw, e.g. N=3,D=2; else shapes are swept over --dims.")
    ] = None,
    dtype: DtypeOption = None,
    device: Annotated[Optional[str], typer.Option(help="cpu | gpu, where JAX computes. [default: cpu]")] = None,
    rtol: RtolOption = None,
    atol: AtolOption = None,
    max_memory_mb: MaxMemoryOption = None,
    timeout: TimeoutOption = None,
    json_path: JsonOption = None,
    junit: JunitOption = None,
    reference: _setting(
        str, "--reference", "autodiff, or fd to add float64 central differences on a few draws as a third opinion. "
        "[default: autodiff]"
    ) = None,
    debug: DebugOption = False,
) -> None:
    """Check a jax.custom_vjp / jax.custom_jvp rule against autodiff of the function without its rule.

    Checks vjp_<arg> (custom_vjp: the rule's VJP of a random cotangent) or jvp_<arg> (custom_jvp: its
    JVP along a random tangent) for each argument, and primal (the primal output the rule returns).
    """
    flags = dict(
        trials=trials, seed=seed, shape=shape, dtype=dtype, device=device, rtol=rtol, atol=atol,
        max_memory_mb=max_memory_mb, timeout=timeout, json=json_path, junit=junit, reference=reference,
    )
    with _guard(debug):
        with _stdout_for_reports():
            from bncheck.progress import sweep_progress
            from bncheck.rules import split_spec, verify_rule as run_rule
            from bncheck.settings import Settings, report_paths

            flags["json"], flags["junit"] = report_paths(json_path, junit, [split_spec(rule)[0]])
            quiet = "-" in (json_path, junit) or not errors.is_terminal
            with sweep_progress(errors, trials or Settings.trials, quiet) as (on_phase, on_progress):
                report, settings = run_rule(rule, shapes, dims, on_progress=on_progress, on_phase=on_phase, **flags)
        status = _finish(report, settings)
    raise typer.Exit(status)
