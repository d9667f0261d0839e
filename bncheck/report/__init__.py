"""The report as data: computed once from a sweep, rendered by the console, JSON and JUnit writers."""

from __future__ import annotations

import dataclasses
import math
import shlex
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bncheck.assess import Assessment
from bncheck.check import RAISE_SHAPES, REFERENCE_NAMES, Tally
from bncheck.compare import Comparison, error_map, overshoot
from bncheck.draws import Draw
from bncheck.loader import Derivation
from bncheck.models import Check, Model
from bncheck.text import counted, printable
from bncheck.settings import Settings
from bncheck.sweep import SweepResult


def json_safe(value: Any) -> Any:
    """`value` as strict JSON can hold it: a non-finite number (an infinite error, a ratio got/want
    that overflowed) becomes null, as JSON has no inf or nan and the diagnosis says what went wrong;
    NumPy scalars and arrays become numbers and lists; user text is cut and escaped (report.text)."""
    if isinstance(value, dict):
        return {str(key): json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    if isinstance(value, (np.generic, np.ndarray)):
        return json_safe(value.tolist())
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        return printable(value)
    return value


@dataclass
class CheckResult:
    name: str
    target: str | None
    kind: str
    reference: str | None
    status: str  # pass | fail | error | missing | skipped
    passed: bool
    trials: int
    # The largest errors over all draws, each maximised on its own (CONTRACT §4); inf where a value
    # could not be compared (a wrong shape, not finite).
    max_abs_err: float | None = None
    max_rel_err: float | None = None
    # The one draw the report shows (check.Tally.worst): shape, seed, index, and where its value could
    # be compared its abs_err, rel_err, allowed, share (of the allowance) and a `note`.
    worst: dict[str, Any] | None = None
    diagnosis: dict[str, Any] | None = None
    smallest: dict[str, Any] | None = None
    replay: str | None = None
    skipped: int = 0
    message: str | None = None
    # A failed value check: |got − ref| at the worst failing draw, downsampled, and its worst entries
    # (compare.error_map).
    error_map: dict[str, Any] | None = None
    # Which references the derivation agrees with ({"jax.grad": True, "fd": True}); None if it never ran.
    references: dict[str, bool | None] | None = None
    warnings: list[str] = field(default_factory=list)
    # The draws the function raised on, when it did: {"draws": n, "shapes": [the first few shapes],
    # "message", "line", "traceback"}; the errors above are those of the draws it did not raise on.
    raised: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return json_safe(vars(self))

    def raised_line(self) -> str | None:
        """Where a check that ran on other draws too raised: on how many draws, at which shapes, and
        what it raised unless the diagnosis says so already."""
        r = self.raised
        if r is None or r["draws"] == self.trials:
            return None
        shapes = "; ".join(" ".join(f"{k}={v}" for k, v in shape.items()) for shape in r["shapes"])
        said = "" if (self.diagnosis or {}).get("code") == "exception" else f": {r['message']}"
        return printable(f"raised on {r['draws']} of {self.trials} draws, at {shapes}{said}")


@dataclass
class Report:
    passed: bool
    model: str
    derivation: str
    settings: dict[str, Any]
    draws: int
    redrawn: int
    checks: list[CheckResult] = field(default_factory=list)
    # The settings the model reads (its forward's options), for the report's header.
    options: dict[str, Any] = field(default_factory=dict)
    # Why the file could not be checked at all, in a run of many files (Reports); None when it was.
    error: str | None = None
    # The kind of device the references ran on (--device auto and gpu choose by size), how many (of
    # every process together), and over how many processes the draws were shared (--processes).
    device: str = "cpu"
    devices: int = 1
    processes: int = 1

    @property
    def warnings(self) -> list[dict[str, str]]:
        return [{"check": c.name, "message": w} for c in self.checks for w in c.warnings]

    def to_dict(self) -> dict[str, Any]:
        return json_safe({
            "passed": self.passed,
            "model": self.model,
            "derivation": self.derivation,
            "settings": self.settings,
            "options": self.options,
            "draws": self.draws,
            "redrawn": self.redrawn,
            "device": self.device,
            "devices": self.devices,
            "processes": self.processes,
            "checks": [c.to_dict() for c in self.checks],
            "warnings": self.warnings,
            **({} if self.error is None else {"error": self.error}),
        })

    @property
    def failed(self) -> list[CheckResult]:
        return [c for c in self.checks if not c.passed]

    def __str__(self) -> str:
        """The terminal report, as plain text (print(report) in a notebook or a test)."""
        from bncheck.report.console import plain_text

        return plain_text(self)


@dataclass
class Reports:
    """The reports of a run of many files (CONTRACT §8), one per file in the order given."""

    files: list[Report]

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.files)

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "files": [r.to_dict() for r in self.files]}

    def __str__(self) -> str:
        from bncheck.report.console import plain_text

        return plain_text(self)


def unloaded(model: Model, settings: Settings, name: str, error: str) -> Report:
    """The report of a file that could not be loaded, in a run of many: failed, no checks, and why."""
    return Report(passed=False, model=model.name, derivation=name, settings=settings.to_dict(), draws=0, redrawn=0,
                  options=settings.model_options(model), error=error)


def _where(draw: Draw, index: tuple[int, ...] | None) -> dict[str, Any]:
    out: dict[str, Any] = {"shape": dict(draw.dims), "seed": draw.seed}
    if index is not None:
        out["index"] = list(index)
    return out


def _worst(draw: Draw, comparison: Comparison, settings: Settings) -> dict[str, Any]:
    """Where the worst draw is, its errors, its allowance and the share of it used (above 1: it failed),
    and, for a passing draw whose relative error is above rtol, why it passed (`note`)."""
    out = _where(draw, comparison.index)
    out.update(abs_err=comparison.abs_err, rel_err=comparison.rel_err, allowed=comparison.allowed,
               share=overshoot(comparison))
    if comparison.ok and comparison.rel_err > settings.rtol:
        # Only atol or the noise floor lets a draw pass with that ratio: its reference is zero up to
        # rounding (zeros would pass it too), or its computation amplifies rounding that much.
        out["note"] = "ref ~0" if comparison.scale <= comparison.allowed else "noise floor"
    return out


def _replay(derivation: Derivation, model: Model, settings: Settings, draw: Draw) -> str:
    shape = ",".join(f"{k}={v}" for k, v in draw.dims.items())
    args = ["bncheck", "verify", derivation.name, "--shape", shape, "--seed", str(draw.seed), "--trials", "1"]
    return shlex.join(args + settings.option_args(model))


def _from_tally(tally: Tally, found: Assessment, derivation: Derivation, model: Model, settings: Settings) -> CheckResult:
    c: Check = tally.check
    result = CheckResult(
        name=c.name,
        target=c.target,
        kind="gradient" if c.kind == "gradient" else "jacobian",
        reference=tally.reference or REFERENCE_NAMES[c.kind],
        status="pass",
        passed=True,
        trials=tally.ran,
        max_abs_err=tally.max_abs,
        max_rel_err=tally.max_rel,
        skipped=tally.skipped,
    )
    if tally.worst is not None:
        result.worst = _worst(*tally.worst, settings)
    if found.smallest is not None:
        result.smallest = _where(found.smallest, None)
    if tally.raises:
        _, message, frames = tally.error
        result.raised = {"draws": tally.raises, "shapes": [dict(s) for s in tally.raise_shapes], "message": message,
                         "line": frames[-1] if frames else None, "traceback": frames}
    if tally.raised_everywhere:
        draw = tally.error[0]
        result.status, result.passed = "error", False
        result.max_abs_err = result.max_rel_err = None
        result.worst = _where(draw, None)
        result.replay = _replay(derivation, model, settings, found.smallest or draw)
    elif tally.raises and not tally.failures:
        # Raised on some draws and agreed on the others: a failure, replayed where it raised.
        draw = tally.error[0]
        result.status, result.passed = "fail", False
        result.worst = _where(draw, None)
        result.replay = _replay(derivation, model, settings, found.smallest or draw)
    elif tally.failures:
        result.status, result.passed = "fail", False
        if tally.first_problem is not None:
            failing_draw, comparison = tally.first_problem
            result.worst = _where(failing_draw, comparison.index or None)
            result.max_abs_err = result.max_rel_err = math.inf
        else:
            failing_draw = tally.worst[0]
            result.error_map = error_map(*tally.worst_values)
        result.replay = _replay(derivation, model, settings, found.smallest or failing_draw)
    elif tally.ran == 0:
        result.status = "skipped"
        result.max_abs_err = result.max_rel_err = None
        result.message = tally.skip_reason
    elif tally.skipped:
        result.message = f"skipped at {tally.skipped} of {counted(tally.skipped + tally.ran, 'draw')}: {tally.skip_reason}"
    result.diagnosis = found.diagnosis
    if result.status in ("pass", "fail", "error"):
        result.references = {result.reference: result.status == "pass", **found.references}
    result.warnings = list(found.warnings)
    return result


def build_report(model: Model, settings: Settings, derivation: Derivation, sweep: SweepResult,
                 assessments: dict[str, Assessment]) -> Report:
    """The report of a sweep and what was assessed after it: data shaping only, nothing computed."""
    required = model.required(settings.require)

    results: dict[str, CheckResult] = {}
    for name, tally in sweep.tallies.items():
        results[name] = _from_tally(tally, assessments[name], derivation, model, settings)
    for name, why in derivation.unknown.items():
        results[name] = CheckResult(
            name=name, target=None, kind="gradient" if name.startswith("grad_") else "jacobian",
            reference=None, status="error", passed=False, trials=0,
            diagnosis=assessments[name].diagnosis, message=why,
        )
    for name in (*model.checks, *sorted(required - set(model.checks))):
        if name not in results:
            results[name] = CheckResult(
                name=name, target=model.check(name).target,
                kind="gradient" if name.startswith("grad_") else "jacobian",
                reference=None, status="missing", passed=name not in required, trials=0,
                message="required but not defined" if name in required else "not defined",
            )
        elif name in required and results[name].status == "skipped":
            results[name].passed = False

    order = {name: i for i, name in enumerate(model.checks)}
    checks = sorted(results.values(), key=lambda r: (order.get(r.name, len(order)), r.name))
    ran = any(c.status in ("pass", "fail", "error") for c in checks)
    return Report(
        passed=ran and all(c.passed for c in checks),
        model=model.name,
        derivation=derivation.name,
        settings=settings.to_dict(),
        draws=sweep.draws,
        redrawn=sweep.redrawn,
        checks=checks,
        options=settings.model_options(model),
        device=sweep.device,
        devices=sweep.devices,
        processes=sweep.processes,
    )


def merged(settings: Settings, reports: list[Report]) -> Report:
    """One report of a run that swept model options, from the report of each value (`reports[i]` ran
    under `settings.by_value[i]`): each check fails if it fails at any value and shows the value where
    it is worst (see _merged_check); counts are summed, largest errors maxed."""
    at = [{name: getattr(run, name) for name in settings.swept} for run in settings.by_value]
    first = reports[0]
    checks = [_merged_check([r.checks[i] for r in reports], at) for i in range(len(first.checks))]
    ran = any(c.status in ("pass", "fail", "error") for c in checks)
    options = {**first.options, **{name: list(bounds) for name, bounds in settings.swept.items()}}
    return Report(passed=ran and all(c.passed for c in checks), model=first.model, derivation=first.derivation,
                  settings=settings.to_dict(), draws=sum(r.draws for r in reports),
                  redrawn=sum(r.redrawn for r in reports), checks=checks, options=options, device=first.device,
                  devices=first.devices, processes=first.processes)


def _merged_check(results: list[CheckResult], at: list[dict[str, int]]) -> CheckResult:
    """A check's result over every value of the swept options: the row of the value where it is worst
    (failing first, then the largest share of its allowance used), its worst draw and smallest case
    saying at which values they are; trials, skips and raises summed; the largest errors maxed."""
    def badness(i: int) -> tuple:
        c = results[i]
        share = (c.worst or {}).get("share")
        return (not c.passed, c.status in ("pass", "fail", "error"), -math.inf if share is None else share)

    worst = max(range(len(results)), key=badness)
    out = dataclasses.replace(results[worst])
    for key in ("worst", "smallest"):
        if getattr(out, key) is not None:
            setattr(out, key, {**getattr(out, key), "options": at[worst]})
    out.passed = all(c.passed for c in results)
    out.trials = sum(c.trials for c in results)
    out.skipped = sum(c.skipped for c in results)
    raised = [c.raised for c in results if c.raised is not None]
    if raised:
        out.raised = {**raised[0], "draws": sum(r["draws"] for r in raised),
                      "shapes": [shape for r in raised for shape in r["shapes"]][:RAISE_SHAPES]}
        if out.status == "error" and out.raised["draws"] < out.trials:
            # Raised on every draw at one value and agreed at another: a failure, as within one run.
            out.status = "fail"
    if out.status != "error":
        for key in ("max_abs_err", "max_rel_err"):
            found = [getattr(c, key) for c in results if getattr(c, key) is not None]
            setattr(out, key, max(found) if found else None)
    if out.status == "pass" and out.skipped:
        # A value's message is its skip reason, or "skipped at n of m draws: <reason>".
        skipped = next(c for c in results if c.skipped)
        reason = skipped.message if skipped.status == "skipped" else skipped.message.split(": ", 1)[1]
        out.message = f"skipped at {out.skipped} of {counted(out.skipped + out.trials, 'draw')}: {reason}"
    if out.references is not None:
        agree: dict[str, bool | None] = {}
        for c in results:
            for name, agrees in (c.references or {}).items():
                agree[name] = agrees if agree.get(name) is None else agree[name] and agrees is not False
        out.references = agree
    out.warnings = list(dict.fromkeys(w for c in results for w in c.warnings))
    return out
