"""The pipeline behind verify(): settings -> draws -> references and derivation -> report, the whole pipeline in one call.

Many files in one run (`verify_files`, `bncheck verify A.py B.py ...`) are checked against the same
draws in one sweep: their functions join one derivation (each check named after its file), so each
draw's references are computed once, through one engine's compiled programs, and every file's
functions are called on them; the sweep's tallies are then split back by file, and each file is
assessed and reported on its own.

A run that sweeps model options (`--padding 0:2`) is a run per combination of their values, each with
its share of the draws and seeds of its own (Settings.by_value), each checked as above with the
options fixed; each file's reports are then merged into one (report.merged), so that a check fails if
it fails at any value and shows the value where it is worst, with a replay at that one value.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Sequence

from bncheck.conventions import convention, reshaped
from bncheck.errors import BncheckError, LoadError
from bncheck.loader import Derivation, load_derivation
from bncheck.models import Model, get_model, model_spec
from bncheck.report import Report, Reports, build_report, merged, unloaded
from bncheck.settings import Settings, resolve

Progress = Callable[[int, int], None]
Phase = Callable[[str], None]
# The model of a run's settings: the built-in or model file they name, with their options; a caller
# that wraps the model (verify-backward's layer) wraps each value's model of a swept run likewise.
ModelFor = Callable[[Settings], Model]


def model_of(settings: Settings) -> Model:
    return get_model(settings.model, settings.to_dict())


def verify(
    derivation: str | Path | ModuleType | None = None,
    settings: Settings | None = None,
    *,
    config: str | Path | None = None,
    on_progress: Progress = lambda done, total: None,
    on_phase: Phase = lambda text: None,
    **flags: Any,
) -> Report:
    """Verifies a derivation (path, built-in name or module; None for the model's default built-in).

    Settings come from `settings` if given, else from `config` and keyword flags as on the command
    line (`verify("mine.py", ddof=1, shape="N=10,p1=7,p2=4")`); `model` may be an imported module.
    """
    from bncheck.userfile import guarded, put_back

    # From the first line of a user's file (a model file is imported while the settings resolve) to
    # the report: see userfile.guarded.
    with guarded():
        if settings is None:
            if isinstance(flags.get("model"), ModuleType):
                flags["model"] = model_spec(flags["model"])
            settings = resolve(flags, config)
        model = get_model(settings.model, settings.to_dict())
        if derivation is None and model.default_derivation is None:
            raise BncheckError(f"derivation: model {model.name} has no built-in derivation; give a derivation file")
        spec = model.default_derivation if derivation is None else derivation
        loaded = _load(spec, model, settings)
        put_back()
        return check(model, settings, loaded, on_progress=on_progress, on_phase=on_phase)


def verify_files(
    derivations: Sequence[str | Path | ModuleType],
    settings: Settings | None = None,
    *,
    config: str | Path | None = None,
    on_progress: Progress = lambda done, total: None,
    on_phase: Phase = lambda text: None,
    **flags: Any,
) -> Reports:
    """Verifies several derivations against the same draws, sharing every compile (see the module
    docstring): one report per file, in the order given. A file that cannot be loaded is a report
    with its `error`, and the others still run; a BncheckError when none can be."""
    from bncheck.userfile import guarded, put_back

    with guarded():
        if settings is None:
            settings = resolve(flags, config)
        model = get_model(settings.model, settings.to_dict())
        loaded: list[Derivation | str] = []
        for spec in derivations:
            try:
                loaded.append(_load(str(spec) if isinstance(spec, Path) else spec, model, settings))
            except LoadError as err:
                loaded.append(str(err))
            put_back()
        return Reports(check_files(model, settings, loaded, [_name(spec) for spec in derivations],
                                   on_progress=on_progress, on_phase=on_phase))


def _name(spec: str | Path | ModuleType) -> str:
    return spec.__name__ if isinstance(spec, ModuleType) else str(spec)


def _load(spec: str | ModuleType, model: Model, settings: Settings) -> Derivation:
    """The derivation `spec` names, seeing arrays in the shapes --param-shapes declares."""
    loaded = load_derivation(str(spec) if isinstance(spec, Path) else spec, model)
    conv = convention(settings.param_shapes, model)
    return loaded if conv is None else reshaped(loaded, model, conv)


def check_files(
    model: Model,
    settings: Settings,
    loaded: Sequence[Derivation | str],
    names: Sequence[str],
    on_progress: Progress = lambda done, total: None,
    on_phase: Phase = lambda text: None,
    model_for: ModelFor = model_of,
) -> list[Report]:
    """One report per entry of `loaded`: a derivation, checked with the others in one sweep, or why
    the file `names` gives could not be loaded (a report holding that error). A BncheckError, naming
    each file and why, when none could be loaded. `model_for` gives the model of each value of swept
    options (see the module docstring)."""
    derivations = [d for d in loaded if isinstance(d, Derivation)]
    if not derivations:
        why = "; ".join(loaded)  # type: ignore[arg-type]
        raise BncheckError(why if len(loaded) == 1 else f"no file could be checked: {why}")
    reports = iter(check_many(model, settings, derivations, on_progress=on_progress, on_phase=on_phase,
                              model_for=model_for))
    return [next(reports) if isinstance(d, Derivation) else unloaded(model, settings, name, d)
            for d, name in zip(loaded, names)]


def check(
    model: Model,
    settings: Settings,
    derivation: Derivation,
    on_progress: Progress = lambda done, total: None,
    on_phase: Phase = lambda text: None,
) -> Report:
    """The whole run for a loaded model and derivation: the sweep, what is assessed after it
    (warnings, smallest failing cases, finite differences with `--reference fd`, diagnoses), and the
    report, every JAX computation of them inside one engine scope (the run's device and precision)."""
    return check_many(model, settings, [derivation], on_progress=on_progress, on_phase=on_phase)[0]


def check_many(
    model: Model,
    settings: Settings,
    derivations: Sequence[Derivation],
    on_progress: Progress = lambda done, total: None,
    on_phase: Phase = lambda text: None,
    model_for: ModelFor = model_of,
) -> list[Report]:
    """check() for several derivations at once, one sweep for all (see the module docstring)."""
    if not settings.by_value:
        return _check_many(model, settings, derivations, on_progress, on_phase)
    by_value, done = [], 0
    for run in settings.by_value:
        def progress(count: int, total: int, before: int = done) -> None:
            on_progress(before + count, settings.trials)

        by_value.append(_check_many(model_for(run), run, derivations, progress, on_phase))
        done += run.trials
    return [merged(settings, list(reports)) for reports in zip(*by_value)]


def _check_many(model: Model, settings: Settings, derivations: Sequence[Derivation], on_progress: Progress,
                on_phase: Phase) -> list[Report]:
    from bncheck.assess import assess
    from bncheck.draws import plan
    from bncheck.engine import Engine, choose_device, join, scope
    from bncheck.hosts import shared
    from bncheck.sweep import run_sweep

    if len(derivations) == 1:
        derivation, parts = derivations[0], [{}]
    else:
        derivation, parts = _joined(derivations)
        model = _joined_model(model, parts)
    place = join(settings)  # before JAX computes anything: a run over several processes
    with scope(choose_device(model, settings)):
        sweep = run_sweep(Engine(model, settings), derivation, plan(settings, model).share(*place),
                          on_progress=on_progress, on_phase=on_phase)
        if place[1] > 1:
            on_phase(f"gathering the draws of {place[1]} processes")
        sweep = shared(sweep, place)
        if sweep.draws:
            on_phase("diagnosing")
        reports = []
        for own, part in zip(derivations, parts):
            # Called as the sweep called them: a jax.numpy function through its traces.
            split, called = sweep, sweep.derivation
            if len(derivations) > 1:
                tallies = {name: dataclasses.replace(sweep.tallies[key], check=own.checks[name]) for key, name in part.items()}
                split = dataclasses.replace(sweep, tallies=tallies)
                called = dataclasses.replace(own, functions={
                    **own.functions, **{name: sweep.derivation.functions[key] for key, name in part.items()}})
            reports.append((own, split, assess(called, split)))
    return [build_report(model, settings, own, split, found) for own, split, found in reports]


def _joined(derivations: Sequence[Derivation]) -> tuple[Derivation, list[dict[str, str]]]:
    """One derivation holding every file's functions, each check named "<file index>:<name>", and per
    file the map from those names back to its own."""
    joined = Derivation(name=" ".join(d.name for d in derivations), file="")
    parts = []
    for i, derivation in enumerate(derivations):
        part = {}
        for name, c in derivation.checks.items():
            key = f"{i}:{name}"
            joined.functions[key] = derivation.functions[name]
            joined.checks[key] = dataclasses.replace(c, name=key)
            part[key] = name
        parts.append(part)
    return joined, parts


def _joined_model(model: Model, parts: list[dict[str, str]]) -> Model:
    """The model with its invariants under the joined derivation's check names."""
    def invariants(cfg: dict[str, Any]) -> dict[str, Callable]:
        own = model.invariants(cfg)
        return {key: own[name] for part in parts for key, name in part.items() if name in own}

    return dataclasses.replace(model, invariants=invariants)
