"""The command line, kept thin: parse -> settings -> verify -> report -> exit code.

Exit status: 0 every check passed (and at least one ran), 1 a check failed, 2 bncheck could not run,
130 interrupted. Nothing that happens inside a command, a `sys.exit(0)` in user code included, ends it
with 0 unless the report passed. JAX is imported only inside `verify`, so `--help` and `models` answer
at once.
"""

from __future__ import annotations

import gc
import inspect
import os
import sys
import traceback
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, NoReturn, Optional

import typer
from rich.console import Console

from bncheck.errors import BncheckError
from bncheck.options import OPTIONS, names

OPTION_NAMES = tuple(o.name for o in OPTIONS)

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


def _fail(message: str) -> NoReturn:
    from bncheck.text import one_line

    errors.print(f"bncheck: error: {one_line(message)}", markup=False, highlight=False, emoji=False, soft_wrap=True)
    raise typer.Exit(2)


ConfigOption = Annotated[
    Optional[Path], typer.Option("--config", help="TOML file with any of these settings and a [sweep] table.")
]
DebugOption = Annotated[bool, typer.Option(help="Show tracebacks for errors.")]


def command(group: typer.Typer, name: str, settings: tuple[str, ...], *fixed: inspect.Parameter,
            short_help: str | None = None):
    """Registers the decorated function as command `name` of `group`, taking the parameters `fixed`
    and an option for each of `settings`, declared once in bncheck.options (type, help, default);
    None means "not given", so that the config file and the defaults apply. The function gets the
    fixed parameters by name, `debug`, and the settings given as a dict `flags`. `short_help` is its
    line in the group's --help, short enough that click does not cut it."""
    from bncheck.options import BY_NAME

    options = [
        inspect.Parameter(
            BY_NAME[key].name, inspect.Parameter.KEYWORD_ONLY, default=None,
            annotation=Annotated[Optional[BY_NAME[key].flag_kind],
                                 typer.Option(BY_NAME[key].flag, help=BY_NAME[key].help_text())],
        )
        for key in settings
    ]
    debug = inspect.Parameter("debug", inspect.Parameter.KEYWORD_ONLY, default=False, annotation=DebugOption)
    parameters = [*fixed, *options, debug]

    def register(body):
        def run(**given):
            kept = {p.name: given.pop(p.name) for p in fixed}
            return body(**kept, debug=given.pop("debug"), flags=given)

        run.__signature__ = inspect.Signature(parameters)
        run.__annotations__ = {p.name: p.annotation for p in parameters}
        run.__doc__ = body.__doc__
        group.command(name, short_help=short_help)(run)
        return body

    return register


def _argument(name: str, kind, help: str, default=inspect.Parameter.empty) -> inspect.Parameter:
    return inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=default,
                             annotation=Annotated[kind, typer.Argument(help=help)])


def _option(name: str, kind, flag: str, help: str, default=None) -> inspect.Parameter:
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default,
                             annotation=Annotated[kind, typer.Option(flag, help=help)])


_CONFIG = inspect.Parameter("config", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=ConfigOption)


@contextmanager
def _guard(debug: bool, blame: str = "internal error"):
    """Whatever escapes a command's body ends it with one line on stderr and exit 2: bncheck's own
    errors; any other exception, a bug (or the user file `blame` names), re-raised with its traceback
    under --debug; and a SystemExit, GeneratorExit or other BaseException from user code that got this
    far, which would otherwise end the process with the status it chose, 0 included, and no verdict.
    KeyboardInterrupt goes on: typer makes it exit 130, and main says so."""
    try:
        yield
    except KeyboardInterrupt:
        raise
    except BncheckError as err:
        if debug:
            raise
        _fail(str(err))
    except Exception as err:
        if debug:
            raise
        from bncheck.text import exception_text

        _fail(f"{blame}: {exception_text(err)} (run with --debug for the traceback)")
    except BaseException as err:
        from bncheck.text import describe

        if debug:
            traceback.print_exception(err)
        called = "; does the derivation or model file call sys.exit()?" if isinstance(err, SystemExit) else ""
        _fail(f"stopped by {describe(err)} raised inside the run, before any verdict{called}")


@contextmanager
def _stdout_for_reports():
    """Standard output is bncheck's alone while a command runs: what user code prints, with print or
    os.write(1, ...), and what JAX writes there go to stderr, so that `--json -` or `--junit -` on
    stdout is the report and nothing else. sys.stdout and file descriptor 1 both point at stderr
    until the run is over and the report is written."""
    real = sys.stdout
    saved = None
    try:
        real.flush()
        fd, saved = real.fileno(), os.dup(real.fileno())
        os.dup2(sys.stderr.fileno(), fd)
    except (AttributeError, ValueError, OSError):  # no descriptor (a test's in-memory stream): sys.stdout alone
        if saved is not None:
            os.close(saved)
        saved = None
    sys.stdout = sys.stderr
    try:
        yield
    finally:
        # What user code left in buffers goes out now, to stderr, and not before the report.
        for stream in (sys.stdout, sys.stderr, real):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        sys.stdout = real
        if saved is not None:
            os.dup2(saved, fd)
            os.close(saved)


def _print(target: Console, renderable) -> None:
    """Prints on `target` uncropped (see report.console), or fails with one line where the stream is
    gone: a full disk, /dev/full, a closed pipe."""
    try:
        target.print(renderable, crop=False)
        target.file.flush()
    except OSError as err:
        if not target.stderr:
            _lose_stdout()
        stream = "standard error" if target.stderr else "standard output"
        raise BncheckError(f"cannot write to {stream}: {err.strerror or err}") from None


def _lose_stdout() -> None:
    """After a write to stdout failed, what is still buffered for it is dropped: flushed at exit, it
    would fail again there, as a traceback and status 120."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (AttributeError, ValueError, OSError):
        pass


def _print_version(asked: bool) -> None:
    if asked:
        from bncheck import __version__

        typer.echo(f"bncheck {__version__}")
        raise typer.Exit()


@app.callback()
def _top(
    version: Annotated[
        bool, typer.Option("--version", callback=_print_version, is_eager=True, help="Print bncheck's version and exit.")
    ] = False,
) -> None:
    pass


@command(
    app, "verify", OPTION_NAMES,
    _argument("derivation", Optional[list[str]], "A derivation .py file, or a built-in of the model (bn-mlp: "
              "closed-form (default), kronecker, seed-question; see `bncheck models`). Several files are checked "
              "against the same draws, with one summary line each.", None),
    _CONFIG,
    short_help="Check a derivation against JAX autodiff.",
)
def verify(derivation: list[str] | None, config: Path | None, debug: bool, flags: dict) -> None:
    """Check a derivation's functions against jax.grad / jax.jacfwd / jax.jvp over a sweep of draws."""
    files = derivation or [None]
    with _guard(debug):
        with _stdout_for_reports():
            from bncheck.settings import report_paths, resolve

            settings = resolve(flags, config)
            report_paths(settings.json, settings.junit, files)
            report = _run(files, settings)
        status = _finish(report, settings)
    raise typer.Exit(status)


def _finish(report, settings) -> int:
    """The table, the reports, and the exit status: 0 passed, 1 failed. The table goes to stdout, unless
    a report takes stdout: then there is no table (a pipeline reads the report; a person reads its
    exit status and, for an error, one line on stderr). A report that cannot be written does not keep the others from
    being written; it makes the run exit 2, with one line."""
    from bncheck.report import Reports
    from bncheck.report.console import ReportsView, ReportView
    from bncheck.report.jsonfile import to_json, write_json
    from bncheck.report.junit import junit_bytes, write_junit

    if settings.process_id:
        # Every process of a run over several holds the same report (bncheck.hosts); process 0 shows it.
        return 0 if report.passed else 1
    problems = []
    on_stdout = "-" in (settings.json, settings.junit)
    if not on_stdout:
        try:
            _print(console, ReportsView(report) if isinstance(report, Reports) else ReportView(report))
        except BncheckError as err:
            problems.append(str(err))
    else:
        try:
            _write_stdout(to_json(report).encode() if settings.json == "-" else junit_bytes(report))
        except OSError as err:
            _lose_stdout()
            problems.append(f"cannot write the report to standard output: {err.strerror or err}")
    for path, write in ((settings.json, write_json), (settings.junit, write_junit)):
        if path and path != "-":
            try:
                write(report, path)
            except OSError as err:
                problems.append(f"cannot write report {path}: {err.strerror or err}")
    if problems:
        raise BncheckError("; ".join(problems))
    return 0 if report.passed else 1


def _write_stdout(data: bytes) -> None:
    sys.stdout.flush()
    buffer = getattr(sys.stdout, "buffer", None)
    if buffer is None:
        sys.stdout.write(data.decode("utf-8"))
        sys.stdout.flush()
    else:
        buffer.write(data)
        buffer.flush()


def _quiet(settings) -> bool:
    """No progress display: a report on stdout, stderr not a terminal, or a process of a run over
    several other than process 0."""
    return "-" in (settings.json, settings.junit) or not errors.is_terminal or bool(settings.process_id)


def _run(files: list[str | None], settings):
    """verify one file, or many against the same draws."""
    from bncheck.pipeline import verify as run_verify, verify_files
    from bncheck.progress import sweep_progress

    with sweep_progress(errors, settings.trials, _quiet(settings)) as (on_phase, on_progress):
        if len(files) == 1:
            return run_verify(files[0], settings, on_progress=on_progress, on_phase=on_phase)
        return verify_files(files, settings, on_progress=on_progress, on_phase=on_phase)


case_app = typer.Typer(
    no_args_is_help=True,
    rich_markup_mode=None,
    help="One draw as a file, for gradients computed in another language; check them with verify-values.",
)
app.add_typer(case_app, name="case", short_help="Export one draw, to check values from elsewhere.")


@command(
    case_app, "export", names("model", "option", besides=("seed", "shape", "dtype", "device", "max_memory_mb")),
    _option("out", Path, "--out", "Where to write: a .json or .npz file, or a folder for csv.", inspect.Parameter.empty),
    _option("format", Optional[str], "--format", "json | npz | csv (a folder). [default: npz for a .npz --out, else json]"),
    _CONFIG,
    short_help="Write one draw to a file.",
)
def case_export(out: Path, format: str | None, config: Path | None, debug: bool, flags: dict) -> None:
    """Write one draw: its settings, every input and parameter, and the forward record.

    JSON: {"model", "settings", "attempt", "arrays": {"X": [[row], ...], "gamma": [...], ...},
    "forward": {"H": ..., "mu": ..., ...}}; matrices are lists of rows, vectors flat lists. npz: an
    entry per array, "forward/H" and so on, and "settings.json". csv: a folder with settings.json,
    X.csv (one line per row, no header; a vector one value per line) and forward/H.csv, ...
    "arrays" are what the references are computed on; "forward" (the ctx fields H, mu, sigma, Hhat,
    B, A, dA, yhat, resid, R) is for your program's convenience and never read back. Jacobians you
    write back use column-major vec (vec(M) stacks the columns of M): jac_B_G1 = dvec(B)/dvec(G1)' is
    (N*p2, p1*p2), jac_B_beta and jac_B_gamma are (N*p2, p2).
    """
    with _guard(debug):
        from bncheck.case import FORMATS, export_case
        from bncheck.errors import SettingsError
        from bncheck.settings import resolve

        fmt = format or ("npz" if out.suffix.lower() == ".npz" else "json")
        if fmt not in FORMATS:
            raise SettingsError(f"format: unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
        settings = resolve(flags, config)
        if settings.swept:
            name, (lo, hi) = next(iter(settings.swept.items()))
            raise SettingsError(f"{name}: a case is one draw, at one {name}; give one value, not the range {lo}:{hi}")
        export_case(settings, out, fmt)


@command(
    app, "verify-values", ("model", "max_memory_mb", *names("tolerance", "report")),
    _argument("case", Path, "A case written by `bncheck case export` (.json, .npz or csv folder)."),
    _argument("values", Path, "Your values, named as the functions (grad_beta, grad_G1, jac_B_G1, ...), in the case's layout."),
    short_help="Check values computed elsewhere on a case.",
)
def verify_values(case: Path, values: Path, debug: bool, flags: dict) -> None:
    """Check gradients and Jacobians computed elsewhere on an exported case, reporting as verify does.

    The references are recomputed from the case's own arrays. A value of the wrong shape or not made
    of numbers fails its check and says so; a name that matches no function is an error like a
    misspelt function; jvp_ values are not accepted (a case carries no direction V).

    --model: the model file PATH.py of a case exported from one, checked against the case.
    """
    with _guard(debug):
        with _stdout_for_reports():
            from bncheck.case import verify_values as run_values
            from bncheck.settings import report_paths

            report_paths(flags.get("json"), flags.get("junit"), [case, values])
            report, settings = run_values(case, values, flags)
        status = _finish(report, settings)
    raise typer.Exit(status)


@app.command(short_help="List the models and what they check.")
def models(
    model: Annotated[
        Optional[str], typer.Argument(help="Show only this model: a built-in name or a model file PATH.py.")
    ] = None,
    debug: DebugOption = False,
) -> None:
    """List the models: dimensions, parameters, ctx fields, checkable functions and built-in derivations."""
    # An error listing a model file is the file's, as a model file's code runs to list it.
    with _guard(debug, blame=f"model: {model}" if model and Path(model).is_file() else "internal error"):
        from bncheck.models import get_model, model_names

        tables = [_model_table(get_model(name)) for name in ([model] if model else model_names())]
        for table in tables:
            _print(console, table)


def _model_table(m):
    from rich.table import Table
    from rich.text import Text

    from bncheck.text import printable

    def row(label: str, text: str) -> None:
        # Text, not markup: summaries hold the seeds' notation (E[x]), and a model file's names and
        # descriptions are its author's, brackets included.
        table.add_row(label, Text(printable(text)))

    dims = ", ".join(
        f"{d}∈[{lo},{hi}]" + (f" in multiples of {m.dim_multiples[d]}" if d in m.dim_multiples else "")
        for d, (lo, hi) in m.dims.items()
    )
    some = {d: lo for d, (lo, _) in m.dims.items()}
    table = Table(title=Text(printable(f"{m.name}: {m.summary}")), title_justify="left", show_header=False, box=None)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    row("dimensions", f"{dims}  (default sweep ranges)")
    row("inputs", ", ".join(f"{n} ({', '.join(_symbolic(m, n))})" for n in m.inputs(some)))
    row("parameters", ", ".join(f"{n} ({', '.join(_symbolic(m, n))})" for n in m.params(some)) or "none")
    if m.options:
        row("settings", ", ".join(m.options))
    row("ctx fields", "inputs and parameters above, " + ", ".join([*m.dims, *m.options]))
    for field, text in m.outputs.items():
        row("", f"{field}: {text}")
    if m.layer_output is not None:
        upstream = "R = sum(out * dout)" if "dout" in m.targets() else "R is out, dout = 1"
        row("layer output", f"{m.layer_output}: verify-backward checks a forward's out against it ({upstream})")
    row("functions", ", ".join(m.checks))
    row("", "also grad_<input>, jac_<field>_<target>, jvp_<field>_<target> for any ctx field")
    if m.derivations:
        row("built-ins", ", ".join(f"{d}{' (default)' if d == m.default_derivation else ''}" for d in m.derivations))
    return table


def _symbolic(model, name: str) -> tuple[str, ...]:
    from bncheck.models import probe_dims, symbolic

    probe = probe_dims(model)
    doubled = {d: 2 * size for d, size in probe.items()}
    shapes = [symbolic({**model.inputs(p), **model.params(p)}[name], p) for p in (probe, doubled)]
    # A size that names no dimension yet moves with them is a formula (a strided output): "?".
    return tuple(str(a) if a == b else "?" for a, b in zip(*shapes))


demo_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None, help="Run a seed's argument on numbers and show it.")
app.add_typer(demo_app, name="demo")


@demo_app.command(short_help="Seed 002: the naive dR/db on numbers.")
def centering(
    steps: Annotated[int, typer.Option(help="Gradient steps on b.")] = 40,
    lr: Annotated[float, typer.Option(help="Learning rate of each step b <- b - lr dR/db.")] = 1.0,
    seed: Annotated[int, typer.Option(help="Seed of the draw of x1, t, W and the starting b.")] = 0,
    debug: DebugOption = False,
) -> None:
    """The BN paper's section 2 (seed 002): with the naive dR/db, b grows without bound while the loss stays put."""
    with _guard(debug):
        from bncheck.demo import centering as run_centering
        from bncheck.report.demo import CenteringView

        _print(console, CenteringView(run_centering(steps=steps, lr=lr, seed=seed)))


@command(
    app, "verify-rule", names("draws", "run", "tolerance", "report", but=("require", "max_jacobian_mb", "param_shapes", "processes",
                                                        "process_id", "coordinator")),
    _argument("rule", str, "FILE.py:FUNC, a function decorated with jax.custom_vjp or jax.custom_jvp."),
    _option("shapes", str, "--shapes", 'The dimensions of each argument of FUNC, e.g. "x=N,D g=D" (a number is a '
            'fixed size, "s=" a scalar). Arguments left out keep their defaults.', inspect.Parameter.empty),
    _option("dims", Optional[str], "--dims", "Inclusive sweep range of each dimension, e.g. N=2:64,D=1:32. "
            "[default: 1:16 each]"),
    short_help="Check a jax.custom_vjp / custom_jvp rule.",
)
def verify_rule(rule: str, shapes: str, dims: str | None, debug: bool, flags: dict) -> None:
    """Check a jax.custom_vjp / jax.custom_jvp rule against autodiff of the function without its rule.

    Checks vjp_<arg> (custom_vjp: the rule's VJP of a random cotangent) or jvp_<arg> (custom_jvp: its
    JVP along a random tangent) for each argument, and primal (the primal output the rule returns).
    """
    with _guard(debug):
        with _stdout_for_reports():
            from bncheck.progress import sweep_progress
            from bncheck.rules import split_spec, verify_rule as run_rule
            from bncheck.settings import Settings, report_paths

            flags["json"], flags["junit"] = report_paths(flags.get("json"), flags.get("junit"), [split_spec(rule)[0]])
            quiet = "-" in (flags["json"], flags["junit"]) or not errors.is_terminal
            with sweep_progress(errors, flags.get("trials") or Settings.trials, quiet) as (on_phase, on_progress):
                report, settings = run_rule(rule, shapes, dims, on_progress=on_progress, on_phase=on_phase, **flags)
        status = _finish(report, settings)
    raise typer.Exit(status)


@command(
    app, "verify-backward", names("model", "option", "draws", "run", "tolerance", "report", but=("require",)),
    _argument("files", list[str], "Your module(s) FILE.py, imported as they are; several are checked against the "
              "same draws, with one summary line each."),
    _option("forward", str, "--forward", "A Python expression over your module's names and the draw's (the model's "
            "inputs, parameters, dimensions and settings such as eps), evaluated once per draw: the layer's out, or "
            "(out, cache, ...), e.g. 'batchnorm_forward(x, gamma, beta, {\"mode\": \"train\", \"eps\": eps})'.",
            inspect.Parameter.empty),
    _option("backward", str, "--backward", "A Python expression evaluated once per draw with dout and cache bound too: "
            "one gradient per name of --wrt, in that order, e.g. 'batchnorm_backward(dout, cache)'.",
            inspect.Parameter.empty),
    _option("wrt", str, "--wrt", "The names backward returns gradients for, in its order, e.g. x,gamma,beta.",
            inspect.Parameter.empty),
    _CONFIG,
    short_help="Check a layer's forward and backward functions.",
)
def verify_backward(files: list[str], forward: str, backward: str, wrt: str, config: Path | None, debug: bool,
                    flags: dict) -> None:
    """Check a layer's forward and backward functions, as written, against a layer model (--model).

    Checks grad_<name> for each name of --wrt, and forward: the out your forward returns against the
    model's output. Reports, exit status and replays are verify's.
    """
    with _guard(debug):
        with _stdout_for_reports():
            from bncheck.backward import verify_backward as run_backward
            from bncheck.progress import sweep_progress
            from bncheck.settings import report_paths, resolve

            settings = resolve(flags, config)
            report_paths(settings.json, settings.junit, files)
            with sweep_progress(errors, settings.trials, _quiet(settings)) as (on_phase, on_progress):
                reports, settings = run_backward(files, forward, backward, wrt, settings,
                                                 on_progress=on_progress, on_phase=on_phase)
        status = _finish(reports.files[0] if len(files) == 1 else reports, settings)
    raise typer.Exit(status)


def _forgiving_streams() -> None:
    """A console that cannot encode a character (PYTHONIOENCODING=ascii, a C locale) shows it as ? on
    stdout and as an escape on stderr, as Python's own stderr does, rather than failing the run
    after its verdict; the JSON and XML reports are written as bytes and lose nothing."""
    for stream, errors_handler in ((sys.stdout, "replace"), (sys.stderr, "backslashreplace")):
        try:
            stream.reconfigure(errors=errors_handler)
        except (AttributeError, ValueError, OSError):  # not a text file with an encoding: nothing to do
            pass


def _interrupted() -> None:
    try:
        sys.stderr.write("bncheck: interrupted\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


def main() -> None:
    _forgiving_streams()
    try:
        app()
    except SystemExit as done:
        # Typer turns a KeyboardInterrupt anywhere in a command into exit 130, silently.
        if done.code == 130:
            _interrupted()
        raise
    except KeyboardInterrupt:  # before typer took over, or after
        _interrupted()
        raise SystemExit(130) from None
    except Exception as err:
        # The commands' guards leave exceptions to escape only under --debug, for their tracebacks;
        # one that escapes from outside a command (typer itself, writing --help to a full disk) is
        # still one line.
        if "--debug" in sys.argv[1:]:
            raise
        from bncheck.text import exception_text, one_line

        try:
            sys.stderr.write(f"bncheck: error: {one_line(exception_text(err))}\n")
            sys.stderr.flush()
        except (OSError, ValueError):  # stderr itself is gone (a full disk): the status still says it
            pass
        raise SystemExit(2) from None
    finally:
        # Interpreter shutdown collects every object a sweep leaves behind, most of them JAX's: 0.2 s
        # on this project's 2-core machine, for nothing, as the process is ending. Frozen, they are
        # left to the operating system.
        gc.freeze()
