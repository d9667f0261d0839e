"""The command line, kept thin: parse -> settings -> verify -> report -> exit code.

Exit status: 0 every check passed (and at least one ran), 1 a check failed, 2 bncheck could not run.
JAX is imported only inside `verify`, so `--help` and `models` answer at once.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from bncheck.errors import BncheckError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    # Plain help text: rich markup would eat "[sweep]" and every "[default: ...]".
    rich_markup_mode=None,
    help="Verify hand-derived gradients and Kronecker-form Jacobians against JAX autodiff over randomized shape sweeps.",
)
console = Console()
errors = Console(stderr=True)


def _fail(message: str) -> None:
    errors.print(f"bncheck: error: {message}", markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(2)


@app.command()
def verify(
    derivation: Annotated[
        Optional[str],
        typer.Argument(help="A derivation .py file, or a built-in: closed-form (default), kronecker, seed-question."),
    ] = None,
    config: Annotated[Optional[Path], typer.Option(help="TOML file with any of these settings and a [sweep] table.")] = None,
    model: Annotated[Optional[str], typer.Option(help="Model to differentiate (see `bncheck models`). [default: bn-mlp]")] = None,
    activation: Annotated[
        Optional[str], typer.Option(help="relu | tanh | sigmoid | softplus | identity. [default: relu]")
    ] = None,
    ddof: Annotated[
        Optional[int], typer.Option(help="Variance divisor N - ddof: 0 as in the BN paper, 1 as R's scale(). [default: 0]")
    ] = None,
    eps: Annotated[Optional[float], typer.Option(help="Added to the variance under the square root. [default: 1e-5]")] = None,
    outputs: Annotated[Optional[int], typer.Option(help="Output columns k (fixes k for every draw). [default: 1]")] = None,
    trials: Annotated[Optional[int], typer.Option(help="Number of draws. [default: 200]")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Seed of the first draw; draw t has seed + t. [default: 0]")] = None,
    shape: Annotated[
        Optional[str], typer.Option(help="One fixed shape for every draw, e.g. N=10,p1=7,p2=4,k=1; else shapes are swept.")
    ] = None,
    dtype: Annotated[Optional[str], typer.Option(help="float64 | float32, with its own tolerances. [default: float64]")] = None,
    device: Annotated[Optional[str], typer.Option(help="cpu | gpu, where JAX computes the references. [default: cpu]")] = None,
    rtol: Annotated[
        Optional[float], typer.Option(help="Pass if max|got-ref| <= atol + rtol*max|ref|. [default: by dtype]")
    ] = None,
    atol: Annotated[Optional[float], typer.Option(help="Absolute tolerance. [default: by dtype]")] = None,
    require: Annotated[
        Optional[str], typer.Option(help="Checks that must be defined: all, or names such as beta,gamma,jac_B_G1.")
    ] = None,
    max_jacobian_mb: Annotated[
        Optional[float], typer.Option(
            help="Dense Jacobians larger than this are skipped; over a sixteenth of it, they are checked by "
            "products with jax.jvp / jax.vjp. [default: 256]"
        )
    ] = None,
    json_path: Annotated[
        Optional[str], typer.Option("--json", help="Write the JSON report here ('-' for standard output, table off).")
    ] = None,
    junit: Annotated[Optional[str], typer.Option(help="Write a JUnit XML report here.")] = None,
    debug: Annotated[bool, typer.Option(help="Show tracebacks for errors.")] = False,
) -> None:
    """Check a derivation's functions against jax.grad / jax.jacfwd / jax.jvp over a sweep of draws."""
    flags = dict(
        model=model, activation=activation, ddof=ddof, eps=eps, outputs=outputs, trials=trials, seed=seed,
        shape=shape, dtype=dtype, device=device, rtol=rtol, atol=atol, require=require,
        max_jacobian_mb=max_jacobian_mb, json=json_path, junit=junit,
    )
    try:
        from bncheck.settings import resolve

        settings = resolve(flags, config)
        report = _run(derivation, settings)
    except BncheckError as err:
        if debug:
            raise
        _fail(str(err))
    except Exception as err:
        if debug:
            raise
        _fail(f"internal error: {type(err).__name__}: {err} (run with --debug for the traceback)")

    from bncheck.report.console import ReportView

    if settings.json == "-":
        sys.stdout.write(json.dumps(report.to_dict(), indent=2) + "\n")
    else:
        console.print(ReportView(report))
    try:
        _write_files(report, settings)
    except OSError as err:
        if debug:
            raise
        _fail(f"cannot write report {err.filename}: {err.strerror}")
    raise typer.Exit(0 if report.passed else 1)


def _write_files(report, settings) -> None:
    from bncheck.report.jsonfile import write_json
    from bncheck.report.junit import write_junit

    if settings.json and settings.json != "-":
        write_json(report, settings.json)
    if settings.junit:
        write_junit(report, settings.junit)


def _run(derivation, settings):
    from bncheck.pipeline import verify as run_verify
    from bncheck.progress import sweep_progress

    quiet = settings.json == "-" or not errors.is_terminal
    with sweep_progress(errors, settings.trials, quiet) as (on_phase, on_progress):
        return run_verify(derivation, settings, on_progress=on_progress, on_phase=on_phase)


@app.command()
def models() -> None:
    """List the models: dimensions, parameters, ctx fields, checkable functions and built-in derivations."""
    from rich.table import Table

    from bncheck.models import get_model, model_names

    for name in model_names():
        m = get_model(name)
        dims = ", ".join(f"{d}∈[{lo},{hi}]" for d, (lo, hi) in m.dims.items())
        some = {d: lo for d, (lo, _) in m.dims.items()}
        table = Table(title=f"{m.name}: {m.summary}", title_justify="left", show_header=False, box=None)
        table.add_column(style="bold")
        table.add_column(overflow="fold")
        table.add_row("dimensions", f"{dims}  (default sweep ranges)")
        table.add_row("inputs", ", ".join(f"{n} ({', '.join(_symbolic(m, n))})" for n in m.inputs(some)))
        table.add_row("parameters", ", ".join(f"{n} ({', '.join(_symbolic(m, n))})" for n in m.params(some)))
        table.add_row("settings", ", ".join(m.options))
        table.add_row("ctx fields", "inputs and parameters above, " + ", ".join(m.dims) + ", " + ", ".join(m.options))
        for field, text in m.outputs.items():
            table.add_row("", f"{field}: {text}")
        table.add_row("functions", ", ".join(m.checks))
        table.add_row("", "also grad_<input>, jac_<field>_<target>, jvp_<field>_<target> for any ctx field")
        table.add_row("built-ins", ", ".join(f"{d}{' (default)' if d == m.default_derivation else ''}" for d in m.derivations))
        console.print(table)


def _symbolic(model, name: str) -> tuple[str, ...]:
    from bncheck.models import probe_dims, symbolic

    probe = probe_dims(model)
    return tuple(map(str, symbolic({**model.inputs(probe), **model.params(probe)}[name], probe)))


def main() -> None:
    app()
