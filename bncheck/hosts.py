"""A run over several processes (--processes, through jax.distributed), on one host or several.

Each process sweeps its share of the draws (draw t goes to process t mod n) on its own devices. Then
every process sends every other a digest of its tallies (Engine.gather): the counts, the largest
errors, and the draws a report shows with their values. Each merges them into the tallies one process
would have kept over the whole sweep: the same counts and largest errors, the same worst draw (the
furthest past its allowance, the first by seed of equals), the first draw by seed that could not be
compared, raised or broke an invariant, and the first failing values by seed that fit the sample
budget. A draw is made again from its seed, shape and attempt (bncheck.draws.sample is deterministic),
so the steps after the sweep (a smaller failing case, finite differences, the diagnosis) run on it as
on a draw of their own; its values travel with it, and the derivation is not called on it again.

Every process merges the same digests in the same way, and so holds the same report and exits with
the same status; process 0 alone prints it. A digest is a NumPy archive read with allow_pickle=False:
numbers and text, never code.
"""

from __future__ import annotations

import dataclasses
import io
import json
import reprlib
from typing import Any

import numpy as np

from bncheck.check import RAISE_SHAPES, Tally, sample_budget
from bncheck.compare import Comparison, NotAnArray, as_array, overshoot
from bncheck.draws import Draw, sample
from bncheck.errors import BncheckError
from bncheck.sweep import SweepResult, name_reference

# The settings that may differ between the processes of one run: a process's number and reports, the
# coordinator's address as each reaches it, and the kind of device each asked for.
OWN = ("process_id", "json", "junit", "coordinator", "device")
# The counts of a Tally, each summed over the processes.
COUNTS = ("ran", "compared", "skipped", "failures", "raises", "dense_draws", "product_draws", "vanishing", "broken")


def shared(sweep: SweepResult, place: tuple[int, int]) -> SweepResult:
    """The sweep of every process of the run (`place`: this one's number, and how many), merged; the
    sweep itself in a run of one process."""
    if place[1] == 1:
        return sweep
    return merged(sweep, sweep.engine.gather(digest(sweep)))


def digest(sweep: SweepResult) -> bytes:
    """What the other processes need of this one's sweep (see the module docstring), as bytes."""
    arrays: dict[str, np.ndarray] = {}

    def value(got) -> dict[str, str]:
        array = None if isinstance(got, NotAnArray) else as_array(got)
        if array is None:
            return {"kind": got.kind if isinstance(got, NotAnArray) else type(got).__name__}
        key = f"a{len(arrays)}"
        arrays[key] = np.ascontiguousarray(array)
        return {"array": key}

    def at(draw: Draw) -> dict[str, Any]:
        return {"seed": draw.seed, "dims": dict(draw.dims), "attempt": draw.attempt}

    checks = {}
    for name, t in sweep.tallies.items():
        checks[name] = {
            **{key: getattr(t, key) for key in COUNTS},
            "max_abs": t.max_abs, "max_rel": t.max_rel, "stopped": t.stopped, "skip_reason": t.skip_reason,
            "worst": None if t.worst is None else {
                "draw": at(t.worst[0]), "comparison": _from_comparison(t.worst[1]),
                "values": None if t.worst_values is None else [value(v) for v in t.worst_values]},
            "first_problem": None if t.first_problem is None else {
                "draw": at(t.first_problem[0]), "comparison": _from_comparison(t.first_problem[1])},
            "error": None if t.error is None else {"draw": at(t.error[0]), "message": t.error[1], "frames": t.error[2]},
            "first_broken": None if t.first_broken is None else {"draw": at(t.first_broken[0]),
                                                                 "message": t.first_broken[1]},
            "raised": [{"seed": seed, "dims": dims} for seed, dims in zip(t.raise_seeds, t.raise_shapes)],
            "samples": [{"draw": at(d), "got": value(got), "ref": value(ref)} for d, got, ref in t.samples],
        }
    # What every process must share for their draws to be one sweep's: the settings (but OWN) and the checks.
    run = {key: value for key, value in sweep.engine.settings.to_dict().items() if key not in OWN}
    head = {"run": {**run, "checks": list(checks)}, "draws": sweep.draws, "redrawn": sweep.redrawn,
            "devices": sweep.devices, "checks": checks}
    out = io.BytesIO()
    np.savez(out, digest=np.frombuffer(json.dumps(head, default=_plain).encode(), np.uint8), **arrays)
    return out.getvalue()


def merged(sweep: SweepResult, digests: list[bytes]) -> SweepResult:
    """This process's sweep with its tallies, counts and devices replaced by those of every process
    whose digest is in `digests` (in process order; this one's among them)."""
    engine = sweep.engine
    model, settings = engine.model, engine.settings
    parts = [_read(d) for d in digests]
    _same_run([head["run"] for head, _ in parts])
    jvp_targets = {t.check.target for t in sweep.tallies.values() if t.check.kind == "jvp"}
    made: dict[tuple[int, int], Draw] = {}

    def draw(at: dict[str, Any]) -> Draw:
        key = (at["seed"], at["attempt"])
        if key not in made:
            made[key] = Draw(at["seed"], {k: int(v) for k, v in at["dims"].items()}, at["attempt"])
            sample(model, made[key], settings.dtype, jvp_targets)
        return made[key]

    tallies = {}
    for name, own in sweep.tallies.items():
        views = [(head["checks"][name], arrays) for head, arrays in parts]
        t = Tally(own.check)
        for key in COUNTS:
            setattr(t, key, sum(v[key] for v, _ in views))
        t.max_abs = max(v["max_abs"] for v, _ in views)
        t.max_rel = max(v["max_rel"] for v, _ in views)
        t.stopped = any(v["stopped"] for v, _ in views)
        t.skip_reason = next((v["skip_reason"] for v, _ in views if v["skip_reason"]), None)

        # In seed order, as one process would have met them; an equal overshoot keeps the first.
        for found, arrays in sorted(((v["worst"], a) for v, a in views if v["worst"]), key=lambda f: f[0]["draw"]["seed"]):
            comparison = _to_comparison(found["comparison"])
            if t.worst is None or overshoot(comparison) > overshoot(t.worst[1]):
                t.worst = (draw(found["draw"]), comparison)
                t.worst_values = None if found["values"] is None else tuple(_value(x, arrays) for x in found["values"])
        if (found := _first(views, "first_problem")) is not None:
            t.first_problem = (draw(found[0]["draw"]), _to_comparison(found[0]["comparison"]))
        if (found := _first(views, "error")) is not None:
            t.error = (draw(found[0]["draw"]), found[0]["message"], list(found[0]["frames"]))
        if (found := _first(views, "first_broken")) is not None:
            t.first_broken = (draw(found[0]["draw"]), found[0]["message"])
        for raised in sorted((r for v, _ in views for r in v["raised"]), key=lambda r: r["seed"]):
            if len(t.raise_shapes) < RAISE_SHAPES and raised["dims"] not in t.raise_shapes:
                t.raise_shapes.append(dict(raised["dims"]))
                t.raise_seeds.append(raised["seed"])
        budget = sample_budget(settings)
        for kept, arrays in sorted(((s, a) for v, a in views for s in v["samples"]), key=lambda s: s[0]["draw"]["seed"]):
            t.keep(draw(kept["draw"]), _value(kept["got"], arrays), _value(kept["ref"], arrays), budget)
        name_reference(t, settings)
        tallies[name] = t
    draws = sum(h["draws"] for h, _ in parts)
    # The steps after the sweep take a chunk of draws at a time (a round of shrinking, the draws of
    # finite differences): as many as one process sweeping every draw would, for the same report.
    chunk = engine.chunk([t.check for t in tallies.values()], draws)
    return dataclasses.replace(sweep, tallies=tallies, draws=draws, redrawn=sum(h["redrawn"] for h, _ in parts),
                               chunk=chunk, devices=sum(h["devices"] for h, _ in parts), processes=len(parts))


def _same_run(runs: list[dict[str, Any]]) -> None:
    """Refuses processes whose settings or checks differ: their draws are not one sweep's."""
    for index, run in enumerate(runs[1:], start=1):
        differs = next((key for key in runs[0] if runs[0][key] != run.get(key)), None)
        if differs is not None:
            raise BncheckError(
                f"processes: process {index} ran with {differs} {reprlib.repr(run.get(differs))}, process 0 with "
                f"{reprlib.repr(runs[0][differs])}; give every process the same command and files, but for --process-id")


def _first(views: list[tuple[dict, dict]], key: str) -> tuple[dict, dict] | None:
    """The processes' `key` entry with the lowest seed: the one a single process would have met first."""
    found = [(v[key], arrays) for v, arrays in views if v[key] is not None]
    return min(found, key=lambda f: f[0]["draw"]["seed"], default=None)


def _plain(value):
    """A NumPy number as the Python number JSON writes."""
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} in a digest")


def _read(data: bytes) -> tuple[dict, dict[str, np.ndarray]]:
    with np.load(io.BytesIO(data), allow_pickle=False) as archive:
        arrays = {key: archive[key] for key in archive.files}
    return json.loads(arrays.pop("digest").tobytes()), arrays


def _value(sent: dict[str, str], arrays: dict[str, np.ndarray]):
    if "array" in sent:
        return arrays[sent["array"]]
    return NotAnArray(None, kind=sent["kind"])


def _from_comparison(c: Comparison) -> dict[str, Any]:
    return dataclasses.asdict(c)


def _to_comparison(sent: dict[str, Any]) -> Comparison:
    got_shape = sent["got_shape"]
    return Comparison(**{**sent, "index": tuple(sent["index"]),
                         "got_shape": None if got_shape is None else tuple(got_shape)})
