"""The pipeline behind verify(): settings -> draws -> references and derivation -> report, the whole pipeline in one call."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any, Callable

from bncheck.errors import BncheckError
from bncheck.loader import Derivation, load_derivation
from bncheck.models import Model, get_model, model_spec
from bncheck.report import Report, build_report
from bncheck.settings import Settings, resolve


def verify(
    derivation: str | Path | ModuleType | None = None,
    settings: Settings | None = None,
    *,
    config: str | Path | None = None,
    on_progress: Callable[[int, int], None] = lambda done, total: None,
    on_phase: Callable[[str], None] = lambda text: None,
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
        loaded = load_derivation(str(spec) if isinstance(spec, Path) else spec, model)
        put_back()
        return check(model, settings, loaded, on_progress=on_progress, on_phase=on_phase)


def check(
    model: Model,
    settings: Settings,
    derivation: Derivation,
    on_progress: Callable[[int, int], None] = lambda done, total: None,
    on_phase: Callable[[str], None] = lambda text: None,
) -> Report:
    """The whole run for a loaded model and derivation: the sweep, what is assessed after it
    (warnings, smallest failing cases, finite differences with `--reference fd`, diagnoses), and the
    report, every JAX computation of them inside one engine scope (the run's device and precision)."""
    from bncheck.assess import assess
    from bncheck.engine import Engine, scope
    from bncheck.sweep import run_sweep

    with scope(settings.device):
        sweep = run_sweep(Engine(model, settings), derivation, on_progress=on_progress, on_phase=on_phase)
        if sweep.draws:
            on_phase("diagnosing")
        assessments = assess(derivation, sweep)
    return build_report(model, settings, derivation, sweep, assessments)
