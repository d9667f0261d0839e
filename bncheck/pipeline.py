"""The pipeline behind verify(): settings -> draws -> references and derivation -> report, the whole pipeline in one call."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any, Callable

from bncheck.errors import BncheckError
from bncheck.loader import load_derivation
from bncheck.models import get_model
from bncheck.report import Report, build_report
from bncheck.settings import Settings, resolve


def _device(name: str):
    import jax

    try:
        devices = jax.devices(name)
    except RuntimeError:
        devices = []
    if not devices:
        seen = ", ".join(sorted({d.platform for d in jax.devices()}))
        raise BncheckError(
            f"device: --device {name} was asked for, but JAX sees no {name.upper()} (it sees: {seen}); "
            f"install a CUDA build of jaxlib, or use --device cpu"
        )
    return devices[0]


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
    line (`verify("mine.py", ddof=1, shape="N=10,p1=7,p2=4")`).
    """
    import jax

    from bncheck.guards import warn
    from bncheck.shrink import shrink_failures
    from bncheck.sweep import run_sweep

    if settings is None:
        settings = resolve(flags, config)
    model = get_model(settings.model, settings.to_dict())
    if derivation is None and model.default_derivation is None:
        raise BncheckError(f"derivation: model {model.name} has no built-in derivation; give a derivation file")
    spec = model.default_derivation if derivation is None else derivation
    loaded = load_derivation(str(spec) if isinstance(spec, Path) else spec, model)
    device = _device(settings.device)
    with jax.default_device(device):
        sweep = run_sweep(model, settings, loaded, on_progress, on_phase=on_phase)
        warn(sweep, settings.dtype)
        shrink_failures(model, settings, loaded, sweep)
        if settings.reference == "fd":
            from bncheck.fd import triangulate

            triangulate(model, settings, loaded, sweep)
    return build_report(model, settings, loaded, sweep)
