"""bncheck's speed against the floor and its peers, on the same draws (issue 3, docs/benchmarks.md).

For each shape (N, p1, p2), k = 1, and for a sweep over random shapes, it times

  bncheck      `bncheck verify --shape ... --json -` as a whole process (start-up, imports, compiles,
               the sweep), and the same sweep in this process with JAX already imported;
  floor        a hand-written jax.numpy closed form (the four gradients and the three differentials of
               B) next to jax.grad / jax.jvp of the model, jitted and vmapped over the draws: the least a
               JAX program doing the same checks can cost. Whole process, and in-process time;
  gradcheck    torch.autograd.gradcheck of a torch.autograd.Function whose backward is the closed form,
               slow mode (every entry by finite differences) and fast mode (one random projection);
  check_grads  jax.test_util.check_grads of a jax.custom_vjp function whose backward is the closed form.

and, on the default sweep, the seed network's ten functions written in jax.numpy
(tests/derivations/correct_jax.py) against the same in NumPy (correct_numpy.py), whole processes.
Where JAX sees a GPU, it also times issue 15's GPU rows: `--device gpu` against the floor on the GPU
at (4096, 512, 256) and (32768, 2048, 1024), and the default sweep with `--device gpu` against
`--device cpu`; where it sees none, the targets say so.

Every method sees the same draws: the arrays bncheck samples for seeds 0, 1, ... (the floor and the
peers take each draw's first attempt; bncheck redraws the few that sit on a relu kink). Peers that
would not finish within --budget seconds stop there and their time is extrapolated per draw from the
draws done; a peer whose single draw would overrun the budget is estimated from one forward pass
(slow gradcheck evaluates the loss twice per parameter entry) and not run. The table says which.
Settings are bncheck's defaults: relu, ddof 0, eps 1e-5, float64, with the persistent compilation
cache off unless --warm-cache (bncheck then runs twice and the second run is timed).

Run it (torch only for the benchmark, in its own venv; the script runs without torch and notes the
rows it skipped):

    python3 -m venv /tmp/venv-bench
    /tmp/venv-bench/bin/pip install jax==0.10.2 jaxlib numpy typer rich torch==2.13.0
    /tmp/venv-bench/bin/pip install -e .
    /tmp/venv-bench/bin/python bench/speed.py                  # the full run, writes docs/benchmarks.md
    /tmp/venv-bench/bin/python bench/speed.py --quick --no-write   # a minute's smoke run

Timings on a shared machine are noisy; the ratios are taken within one run, on the same draws.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
# (N, p1, p2) and draws per shape: the largest shapes get fewer draws so the run ends in minutes.
SHAPES = (((10, 7, 4), 1000), ((64, 32, 16), 1000), ((256, 64, 64), 1000), ((1024, 256, 128), 20),
          ((4096, 512, 256), 5))
RANDOM = {"N": (2, 256), "p1": (1, 64), "p2": (1, 64), "k": (1, 1)}
RANDOM_TRIALS = 200
JVP_CASE = ((1024, 256, 128), 10)
# Issue 15's GPU rows, run where JAX sees a GPU: (N, p1, p2), draws, and the target × the GPU floor.
GPU_SHAPES = (((4096, 512, 256), 200, 1.5), ((32768, 2048, 1024), 5, 2.0))
GPU_MEMORY_MB = 65536  # the largest GPU case needs more than the default --max-memory-mb; an H200 has 139 GiB
EPS = 1e-5
NOTES = (
    ("- Ratios are taken within one run, on the same draws. On a shared machine the absolute times move "
    "with the load (the load average at the start is above); rerun on a quiet machine for figures to quote."),
    ("- bncheck runs with the persistent compilation cache off (a cold run) unless the command says "
    "--warm-cache, which times a second run that loads its compiled references from the cache."),
    ("- bncheck's and the floor's whole-process seconds are the median of --repeat runs (3 unless the "
    "command says otherwise), run in turn; the random-shape floor, which stops at the budget, runs once."),
    ("- The floor and the peers take each draw's first attempt; bncheck redraws the draws with a relu "
    "pre-activation within 1e-8 · max(|B|, 1) of the kink (float64; the note counts them)."),
    ("- The default-sweep rows time the seed's ten functions as files: their × floor column is against "
    "the NumPy file, the jax.numpy file's target (issue 15)."),
    ("- Slow gradcheck compares every entry, by two loss evaluations per parameter entry; where one draw "
    "would overrun the budget its time is estimated from the quickest of five forward passes."),
)


def draws_for(trials: int, shape: tuple[int, int, int] | None, config: Path | None = None) -> list[dict[str, np.ndarray]]:
    """The arrays bncheck's sweep samples (first attempt) for seeds 0 .. trials-1."""
    from bncheck.models import get_model
    from bncheck.settings import resolve
    from bncheck.draws import plan, sample

    model = get_model("bn-mlp")
    settings = resolve(_settings_flags(trials, shape), config)
    draws = list(plan(settings, model))
    for d in draws:
        sample(model, d, "float64", {"G1", "gamma", "beta"})
    return [{**d.arrays, **{f"V_{t}": v for t, v in d.directions.items()}} for d in draws]


def _settings_flags(trials: int, shape: tuple[int, int, int] | None) -> dict:
    flags: dict = {"trials": trials}
    if shape is not None:
        flags["shape"] = "N={},p1={},p2={},k=1".format(*shape)
    return flags


def _random_config(folder: Path) -> Path:
    path = folder / "random.toml"
    lines = ["[sweep]"] + [f"{name} = [{lo}, {hi}]" for name, (lo, hi) in RANDOM.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


# --- the floor: hand-written jax.numpy, jitted and vmapped ------------------------------------------


def forward(xp, X, y, G1, G2, gamma, beta):
    """bn-mlp's forward at bncheck's defaults (relu, ddof 0, eps 1e-5); xp is jax.numpy or torch."""
    H = X @ G1
    mu = H.mean(0)
    sigma = xp.sqrt(((H - mu) ** 2).mean(0) + EPS)
    Hhat = (H - mu) / sigma
    B = gamma * Hhat + beta
    dA = (B > 0) * 1.0
    A = B * dA
    resid = y - A @ G2
    return (resid**2).sum() / X.shape[0], {"Hhat": Hhat, "B": B, "A": A, "dA": dA, "resid": resid, "sigma": sigma}


def closed_form(a: dict, f: dict):
    """The four gradients and dB(V) -> ... for G1 and gamma by the closed form (any array library)."""
    N = a["X"].shape[0]
    G = -(2 / N) * (f["resid"] @ a["G2"].T) * f["dA"]

    def through_stats(D):
        c = D - D.mean(0)
        return (a["gamma"] / f["sigma"]) * (c - f["Hhat"] * (f["Hhat"] * D).sum(0) / N)

    grads = {"beta": G.sum(0), "gamma": (G * f["Hhat"]).sum(0), "G1": a["X"].T @ through_stats(G),
             "G2": -(2 / N) * f["A"].T @ f["resid"]}
    return grads, {"gamma": lambda V: f["Hhat"] * V, "G1": lambda V: through_stats(a["X"] @ V)}


def floor_errors():
    """jit(vmap(draw -> max |closed form - autodiff| per check))."""
    import jax
    import jax.numpy as jnp

    params = ("G1", "G2", "gamma", "beta")

    def one(a):
        inputs = {k: v for k, v in a.items() if not k.startswith("V_")}
        _, f = forward(jnp, **inputs)
        grads, jvps = closed_form(inputs, f)
        jvps["beta"] = lambda V: jnp.broadcast_to(V, f["B"].shape)
        ref = jax.grad(lambda p: forward(jnp, **{**inputs, **p})[0])({k: inputs[k] for k in params})
        errs = [jnp.abs(grads[k] - ref[k]).max() for k in params]
        for t, jvp in jvps.items():
            def B_of(v, t=t):
                return forward(jnp, **{**inputs, t: v})[1]["B"]

            for V in a[f"V_{t}"]:
                errs.append(jnp.abs(jvp(V) - jax.jvp(B_of, (inputs[t],), (V,))[1]).max())
        return jnp.stack(errs)

    return jax, jax.jit(jax.vmap(one))


def floor_main(trials: int, shape: tuple[int, int, int] | None, config: Path | None, budget: float, chunk: int) -> None:
    """The floor as its own process: prints {"seconds", "draws", "max_err"} after the imports."""
    jax, fn = floor_errors()
    jax.config.update("jax_enable_x64", True)
    jax.config.update("jax_enable_compilation_cache", False)
    start = time.perf_counter()
    draws = draws_for(trials, shape, config)
    done, worst = 0, 0.0
    if shape is not None:
        # The floor always runs in full: it is what every other row is measured against.
        chunk = min(chunk, trials)
        for s in range(0, trials, chunk):
            # The last chunk is filled with copies, so one compile serves every call.
            part = (draws[s:s + chunk] + draws[:chunk])[:chunk]
            batch = {k: np.stack([d[k] for d in part]) for k in draws[0]}
            worst = max(worst, float(np.asarray(fn(batch)).max()))
            done = min(trials, s + chunk)
    else:
        # Random shapes: the naive way, one compile per shape.
        for d in draws:
            worst = max(worst, float(np.asarray(fn({k: v[None] for k, v in d.items()})).max()))
            done += 1
            if time.perf_counter() - start > budget:
                break
    print(json.dumps({"seconds": time.perf_counter() - start, "draws": done, "max_err": worst}))


# --- the peers: closed-form backward under torch gradcheck and jax check_grads ----------------------


def _torch_loss():
    import torch

    class Loss(torch.autograd.Function):
        @staticmethod
        def forward(ctx, X, y, G1, G2, gamma, beta):
            a = {"X": X, "y": y, "G1": G1, "G2": G2, "gamma": gamma, "beta": beta}
            R, ctx.record = forward(torch, **a)
            ctx.arrays = a
            return R

        @staticmethod
        def backward(ctx, g):
            grads, _ = closed_form(ctx.arrays, ctx.record)
            return (None, None, *(g * grads[k] for k in ("G1", "G2", "gamma", "beta")))

    return torch, Loss.apply


def _check_grads_loss(X, y):
    """The loss of the parameters alone (X and y held), with the closed form as its backward."""
    import jax
    import jax.numpy as jnp

    @jax.custom_vjp
    def loss(G1, G2, gamma, beta):
        return forward(jnp, X, y, G1, G2, gamma, beta)[0]

    def fwd(G1, G2, gamma, beta):
        a = {"X": X, "y": y, "G1": G1, "G2": G2, "gamma": gamma, "beta": beta}
        R, f = forward(jnp, **a)
        return R, (a, f)

    def bwd(res, g):
        grads, _ = closed_form(*res)
        return tuple(g * grads[k] for k in ("G1", "G2", "gamma", "beta"))

    loss.defvjp(fwd, bwd)
    return loss


@dataclass
class Row:
    case: str
    method: str
    seconds: float | None  # for all `trials` draws, measured or extrapolated
    draws_run: int
    trials: int
    note: str = ""
    in_process: float | None = None  # the same without start-up and imports


def _capped(method: str, case: str, trials: int, budget: float, run_one, estimate_one=None) -> Row:
    """Runs run_one(i) for draws 0.. until the budget is spent; extrapolates to `trials` draws."""
    if estimate_one is not None:
        guess = estimate_one()
        if guess > budget:
            return Row(case, method, guess * trials, 0, trials, f"estimated: {guess:.3g} s a draw from one forward, not run")
    start, done, failures = time.perf_counter(), 0, 0
    for i in range(trials):
        failures += 0 if run_one(i) else 1
        done += 1
        if time.perf_counter() - start > budget and done < trials:
            break
    spent = time.perf_counter() - start
    note = f"extrapolated from {done} draws" if done < trials else ""
    if failures:
        note = (note + "; " if note else "") + f"falsely failed {failures} of {done} correct draws"
    return Row(case, method, spent / done * trials, done, trials, note)


def peer_rows(case: str, draws: list[dict], budget: float) -> list[Row]:
    rows = []
    trials = len(draws)
    try:
        torch, loss = _torch_loss()
    except ImportError:
        rows.append(Row(case, "gradcheck slow / fast", None, 0, trials, "skipped: torch is not installed"))
    else:
        def args(i):
            a = draws[i]
            return tuple(torch.tensor(a[k], dtype=torch.float64, requires_grad=k not in ("X", "y"))
                         for k in ("X", "y", "G1", "G2", "gamma", "beta"))

        def forward_time() -> float:
            """Slow mode: two loss evaluations per parameter entry, plus one backward."""
            a = args(0)
            times = []
            with torch.no_grad():
                for _ in range(6):  # the first call warms torch up; the quickest of the rest counts
                    start = time.perf_counter()
                    forward(torch, *a)
                    times.append(time.perf_counter() - start)
            entries = sum(t.numel() for t in a if t.requires_grad)
            return min(times[1:]) * 2 * entries

        for mode, fast in (("slow", False), ("fast", True)):
            rows.append(_capped(f"gradcheck {mode}", case, trials, budget,
                                lambda i, fast=fast: torch.autograd.gradcheck(loss, args(i), fast_mode=fast,
                                                                              raise_exception=False),
                                None if fast else forward_time))
    from jax.test_util import check_grads

    def check_one(i) -> bool:
        a = draws[i]
        try:
            check_grads(_check_grads_loss(a["X"], a["y"]), tuple(a[k] for k in ("G1", "G2", "gamma", "beta")),
                        order=1, modes=("rev",))
        except AssertionError:
            return False
        return True

    rows.append(_capped("jax check_grads", case, trials, budget, check_one))
    return rows


# --- bncheck and the floor as processes -------------------------------------------------------------


def _timed(cmd: list[str], env: dict, repeat: int = 1) -> tuple[float, subprocess.CompletedProcess]:
    """The median wall time of `repeat` runs of cmd, and the last run's result."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        proc = subprocess.run(cmd, check=False, capture_output=True, text=True, env=env, cwd=ROOT)
        times.append(time.perf_counter() - start)
        if proc.returncode != 0:
            break
    return statistics.median(times), proc


def bncheck_rows(case: str, trials: int, shape, config: Path | None, env: dict, warm: bool,
                 repeat: int) -> list[Row]:
    from bncheck.pipeline import verify

    cmd = [sys.executable, "-m", "bncheck", "verify", "--trials", str(trials), "--json", "-"]
    if shape is not None:
        cmd += ["--shape", "N={},p1={},p2={},k=1".format(*shape)]
    if config is not None:
        cmd += ["--config", str(config)]
    if warm:
        _timed(cmd, env)
    seconds, proc = _timed(cmd, env, repeat)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} exited {proc.returncode}: {proc.stderr[-2000:]}")
    report = json.loads(proc.stdout)
    flags = _settings_flags(trials, shape)
    start = time.perf_counter()
    inproc = verify(None, config=config, **flags)
    in_process = time.perf_counter() - start
    assert inproc.passed and report["passed"], "the closed form must pass"
    redrawn = report["redrawn"]
    note = f"{redrawn} draw{'s' if redrawn != 1 else ''} redrawn off a relu kink" if redrawn else ""
    return [Row(case, "bncheck" + (" (warm cache)" if warm else ""), seconds, trials, trials, note, in_process)]


def floor_row(case: str, trials: int, shape, config: Path | None, budget: float, env: dict, repeat: int,
              device: str = "cpu", chunk: int = 32) -> Row:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--floor", "--trials", str(trials), "--budget", str(budget),
           "--floor-chunk", str(chunk)]
    if shape is not None:
        cmd += ["--floor-shape", ",".join(map(str, shape))]
    if config is not None:
        cmd += ["--floor-config", str(config)]
    # The floor computes where the bncheck row it is compared with does: on a GPU machine JAX's
    # default is the GPU, and the CPU rows' bncheck runs with --device cpu.
    env = {**env, "JAX_PLATFORMS": "cpu"} if device == "cpu" else env
    seconds, proc = _timed(cmd, env, repeat if shape is not None else 1)
    if proc.returncode != 0:
        raise SystemExit(f"the floor failed: {proc.stderr[-2000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    done = out["draws"]
    method = "floor" if shape is not None else "floor, one compile per shape"
    note = f"extrapolated from {done} draws" if done < trials else ""
    assert out["max_err"] < 1e-6, f"the floor's closed form disagrees with autodiff: {out['max_err']}"
    # Start-up and imports are paid once; only the in-process part scales with the draws.
    startup = seconds - out["seconds"]
    return Row(case, method, startup + out["seconds"] / done * trials, done, trials, note, out["seconds"] / done * trials)


def jvp_row(env: dict, trials: int) -> Row:
    (shape, _) = JVP_CASE
    case = "N={},p1={},p2={}".format(*shape)
    cmd = [sys.executable, "-m", "bncheck", "verify", "--shape", case + ",k=1", "--trials", str(trials),
           "--require", "jvp_B_G1", "--json", "-"]
    seconds, proc = _timed(cmd, env)
    report = json.loads(proc.stdout) if proc.stdout.strip() else {}
    check = next((c for c in report.get("checks", []) if c["name"] == "jvp_B_G1"), {})
    note = f"jvp_B_G1 {check.get('status', 'not run')} over {check.get('trials', 0)} draws; exit {proc.returncode}"
    return Row(f"jvp_B_G1 at ({case.replace('N=', '').replace('p1=', '').replace('p2=', '')})", "bncheck",
               seconds, trials, trials, note)


def gpu_rows(env: dict, repeat: int, budget: float, shapes=GPU_SHAPES, device: str = "gpu") -> list[Row]:
    """Issue 15's GPU rows: bncheck --device gpu against the floor on the GPU at each of `shapes`, and
    the default sweep with --device gpu against --device cpu. (`device` cpu runs the same rows on the
    CPU, to try this code on a machine without a GPU.)"""
    rows = []
    for shape, trials, _ in shapes:
        case = f"{device} " + "N={},p1={},p2={}".format(*shape)
        print(f"{case}: {trials} draws", file=sys.stderr, flush=True)
        rows.append(floor_row(case, trials, shape, None, budget, env, repeat, device=device, chunk=min(32, trials)))
        cmd = [sys.executable, "-m", "bncheck", "verify", "--device", device, "--trials", str(trials),
               "--shape", "N={},p1={},p2={},k=1".format(*shape), "--max-memory-mb", str(GPU_MEMORY_MB), "--json", "-"]
        seconds, proc = _timed(cmd, env, repeat)
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} exited {proc.returncode}: {proc.stderr[-2000:]}")
        report = json.loads(proc.stdout)
        rows.append(Row(case, "bncheck", seconds, trials, trials, f"on {report['devices']} {report['device']} device(s)"))
    for on in ("cpu", device):
        cmd = [sys.executable, "-m", "bncheck", "verify", "--device", on, "--json", "-"]
        seconds, proc = _timed(cmd, env, repeat)
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} exited {proc.returncode}: {proc.stderr[-2000:]}")
        report = json.loads(proc.stdout)
        rows.append(Row(GPU_DEFAULT_CASE, f"bncheck --device {on}", seconds, report["draws"], report["draws"],
                        f"ran on {report['device']}"))
    return rows


GPU_DEFAULT_CASE = "default sweep, --device gpu against cpu"
JAX_CASE = "default sweep, the seed's ten functions"


def jax_numpy_rows(env: dict, repeat: int) -> list[Row]:
    """The seed network's ten functions in jax.numpy (tests/derivations/correct_jax.py) and in NumPy
    (correct_numpy.py) on the default sweep: the jax.numpy file's × is against the NumPy file's."""
    rows = []
    for method, name in (("bncheck, NumPy file", "correct_numpy.py"), ("bncheck, jax.numpy file", "correct_jax.py")):
        cmd = [sys.executable, "-m", "bncheck", "verify", str(ROOT / "tests" / "derivations" / name), "--json", "-"]
        seconds, proc = _timed(cmd, env, repeat)
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} exited {proc.returncode}: {proc.stderr[-2000:]}")
        report = json.loads(proc.stdout)
        rows.append(Row(JAX_CASE, method, seconds, report["draws"], report["draws"]))
    return rows


# --- the table and docs/benchmarks.md ---------------------------------------------------------------


def _fmt(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x:.3g}" if x < 1000 else f"{x:,.0f}"


def table(rows: list[Row], floors: dict[str, Row]) -> list[str]:
    head = "| case | method | draws | seconds (whole process) | per draw, ms | × floor | in-process s | note |"
    lines = [head, "|" + " --- |" * 8]
    for r in rows:
        floor = floors.get(r.case)
        ratio = "" if floor is None or r.seconds is None else f"{r.seconds / floor.seconds:.2f}"
        per = None if r.seconds is None else 1000 * r.seconds / r.trials
        lines.append(f"| {r.case} | {r.method} | {r.trials} | {_fmt(r.seconds)} | {_fmt(per)} | {ratio} | "
                     f"{_fmt(r.in_process)} | {r.note} |")
    return lines


def targets(rows: list[Row], floors: dict[str, Row]) -> list[str]:
    def find(case, method):
        return next((r for r in rows if r.case == case and r.method == method), None)

    out = []
    mid = "N=64,p1=32,p2=16"
    bn, floor = find(mid, "bncheck"), floors.get(mid)
    rand = find("random shapes", "bncheck")
    slow, fast = find(mid, "gradcheck slow"), find(mid, "gradcheck fast")
    jvp = next((r for r in rows if r.case.startswith("jvp_B_G1")), None)

    def verdict(ok):
        return "met" if ok else "MISSED"

    if bn and floor:
        ratio = bn.seconds / floor.seconds
        out.append(f"- {bn.trials} draws at (64, 32, 16): {ratio:.2f}× the floor (target ≤ 1.5×): {verdict(ratio <= 1.5)}")
        if rand:
            # The target compares against the floor's 1,000 draws of one shape.
            base = floor.seconds if floor.trials == 1000 else None
            if base:
                r2 = rand.seconds / base
                out.append(f"- {rand.trials} random shapes: {r2:.2f}× the floor's 1,000 draws at (64, 32, 16) "
                           f"(target ≤ 2×): {verdict(r2 <= 2)}")
        for peer, label, need in ((slow, "slow", 25.0), (fast, "fast", 1.0)):
            if peer and peer.seconds:
                speedup = peer.seconds / bn.seconds
                out.append(f"- gradcheck {label} mode / bncheck at (64, 32, 16): {speedup:.1f}× "
                           f"(target ≥ {need:g}×): {verdict(speedup >= need)}")
    for case, floor_of in floors.items():
        other = find(case, "bncheck")
        if case != mid and not case.startswith("gpu ") and other and floor_of:
            out.append(f"- {case} (no target): bncheck took {other.seconds / floor_of.seconds:.2f}× the floor"
                       + (f"; {other.note}" if other.note else ""))
    numpy_file, jax_file = find(JAX_CASE, "bncheck, NumPy file"), find(JAX_CASE, "bncheck, jax.numpy file")
    if numpy_file and jax_file:
        r3 = jax_file.seconds / numpy_file.seconds
        out.append(f"- the seed's ten functions in jax.numpy, {jax_file.trials} draws of the default sweep: {r3:.2f}× "
                   f"the same in NumPy (target ≤ 2×, issue 15): {verdict(r3 <= 2)}")
    measured = False
    for shape, _, target in GPU_SHAPES:
        case = "gpu N={},p1={},p2={}".format(*shape)
        ran, floor_of = find(case, "bncheck"), floors.get(case)
        if ran and floor_of:
            measured = True
            ratio = ran.seconds / floor_of.seconds
            out.append(f"- {ran.trials} draws at {case.removeprefix('gpu ')} on the GPU: {ratio:.2f}× the GPU floor "
                       f"(target ≤ {target:g}×, issue 15): {verdict(ratio <= target)}")
    on_cpu, on_gpu = find(GPU_DEFAULT_CASE, "bncheck --device cpu"), find(GPU_DEFAULT_CASE, "bncheck --device gpu")
    if on_cpu and on_gpu:
        ratio = on_gpu.seconds / on_cpu.seconds
        out.append(f"- the default sweep with --device gpu: {ratio:.2f}× --device cpu, {on_gpu.note} (target ≤ 1×, "
                   f"issue 15): {verdict(ratio <= 1)}")
    elif not measured:
        out.append("- GPU rows (issue 15): not measured; JAX sees no GPU on this machine")
    if jvp:
        out.append(f"- {jvp.case}, dense Jacobian 34 GB: {jvp.seconds:.1f} s for {jvp.trials} draws, {jvp.note} "
                   f"(target ≤ 60 s): {verdict(jvp.seconds <= 60 and 'pass' in jvp.note)}")
    return out


def machine(load: tuple[float, float, float]) -> list[str]:
    import jax

    lines = [f"- Python {platform.python_version()}, jax {jax.__version__}, numpy {np.__version__}"]
    try:
        import torch

        lines[0] += f", torch {torch.__version__}"
    except ImportError:
        lines[0] += ", torch not installed"
    if shutil.which("lscpu"):
        info = subprocess.run(["lscpu"], check=False, capture_output=True, text=True).stdout
        keep = ("Architecture", "Model name", "CPU(s)", "Thread(s) per core", "L3 cache")
        pairs = (line.split(":", 1) for line in info.splitlines() if ":" in line)
        lines += [f"- {key.strip()}: {value.strip()}" for key, value in pairs if key.strip() in keep]
    lines.append(f"- load average at the start: {', '.join(f'{x:.2f}' for x in load)}")
    platforms = sorted({d.platform for d in jax.devices()})
    lines.append(f"- JAX sees: {', '.join(platforms)}" + ("" if "gpu" in platforms else
                 " (no GPU: every figure here is CPU; README \"GPU\" has the GPU measurement)"))
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tenth of the draws, the two smaller shapes")
    parser.add_argument("--budget", type=float, default=30.0, help="seconds each peer may run per case")
    parser.add_argument("--warm-cache", action="store_true", help="time bncheck's second run, cache warm")
    parser.add_argument("--repeat", type=int, default=3, help="whole-process runs of bncheck and the floor (median)")
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md")
    parser.add_argument("--shapes", default=None,
                        help="only these fixed shapes, e.g. 64x32x16,256x64x64 (with the random shapes and the "
                             "other rows), for a before/after comparison of a change")
    parser.add_argument("--floor", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--floor-shape", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--floor-config", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--floor-chunk", type=int, default=32, help=argparse.SUPPRESS)
    parser.add_argument("--trials", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.floor:
        shape = tuple(map(int, args.floor_shape.split(","))) if args.floor_shape else None
        floor_main(args.trials, shape, args.floor_config, args.budget, chunk=args.floor_chunk)
        return

    import jax

    load = os.getloadavg()
    jax.config.update("jax_enable_x64", True)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    cache = tempfile.mkdtemp(prefix="bncheck-bench-cache-")
    env["BNCHECK_COMPILE_CACHE"] = cache if args.warm_cache else "off"
    os.environ["BNCHECK_COMPILE_CACHE"] = env["BNCHECK_COMPILE_CACHE"]
    shapes = [(s, t // 10) for s, t in SHAPES[:2]] if args.quick else list(SHAPES)
    if args.shapes:
        wanted = {tuple(map(int, shape.split("x"))) for shape in args.shapes.split(",")}
        shapes = [(s, t) for s, t in shapes if s in wanted]
    rand_trials = RANDOM_TRIALS // 10 if args.quick else RANDOM_TRIALS

    rows: list[Row] = []
    floors: dict[str, Row] = {}
    with tempfile.TemporaryDirectory() as tmp:
        config = _random_config(Path(tmp))
        cases = [("N={},p1={},p2={}".format(*s), s, t, None) for s, t in shapes]
        cases.append(("random shapes", None, rand_trials, config))
        for case, shape, trials, cfg in cases:
            print(f"{case}: {trials} draws", file=sys.stderr, flush=True)
            floor = floor_row(case, trials, shape, cfg, args.budget, env, args.repeat)
            if shape is not None:
                floors[case] = floor
            rows.append(floor)
            rows += bncheck_rows(case, trials, shape, cfg, env, args.warm_cache, args.repeat)
            rows += peer_rows(case, draws_for(trials, shape, cfg), args.budget)
    floors["random shapes"] = floors.get("N=64,p1=32,p2=16")
    rows.append(jvp_row(env, JVP_CASE[1] // (5 if args.quick else 1)))
    jax_rows = jax_numpy_rows(env, args.repeat)
    rows += jax_rows
    floors[JAX_CASE] = jax_rows[0]
    if any(d.platform == "gpu" for d in jax.devices()):
        for row in gpu_rows(env, args.repeat, args.budget, GPU_SHAPES[:1] if args.quick else GPU_SHAPES):
            rows.append(row)
            if row.method.startswith("floor"):
                floors[row.case] = row
        floors[GPU_DEFAULT_CASE] = next(r for r in rows if r.method == "bncheck --device cpu")

    command = "python bench/speed.py " + " ".join(sys.argv[1:])
    lines = table(rows, floors)
    goals = targets(rows, {k: v for k, v in floors.items() if k != "random shapes"})
    print("\n".join(lines + [""] + goals))
    if args.no_write:
        return
    doc = ["# Benchmarks", "", f"Written by `{command.strip()}` ({time.strftime('%Y-%m-%d')}).", "",
           "## Machine", "", *machine(load), "",
           "## Targets (issue 3)", "", *goals, "",
           "## Reading these figures", "", *NOTES, "",
           "## All figures", "",
           ("Seconds are for all the draws (extrapolated where the note says so), whole process unless the "
           "column says in-process; × floor divides by the floor's whole-process time for the same case "
           "(for random shapes, the floor's 1,000 draws at (64, 32, 16)). The random-shape floor compiles once "
           "per shape, the naive way."), "", *lines, ""]
    (ROOT / "docs").mkdir(exist_ok=True)
    (ROOT / "docs" / "benchmarks.md").write_text("\n".join(doc))


if __name__ == "__main__":
    main()
