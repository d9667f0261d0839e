"""Broken and hostile inputs, each run through the command line as a user would (issue 12).

Every case is one `python -m bncheck ...` process in an empty folder of its own, holding only the
files the case writes there, with PYTHONPATH on this tree and the compile cache off. Each declares
the exit status CONTRACT §3 gives it (1: a check failed, which includes a derivation function that
raises, returns garbage or writes into ctx; 2: bncheck could not run; 130: an interrupt) and the
harness holds every case to the same rules:

- the exit status is a declared one, and never 0 for a broken or hostile input;
- exit 2 prints exactly one non-empty line on stderr, `bncheck: error: ...`, never an internal error;
- no `Traceback` on stdout or stderr;
- a report the case asks for (`--json F`, `--junit F`, `--json -`) exists and parses, the JSON
  strictly (no NaN or Infinity), and the checks the case did not sabotage keep their verdict;
- no code hidden in a data file ran (no PWNED marker), no report path was checked only after the
  user's functions ran where the case says so (no CALLED marker), and no file the case names as
  precious (the derivation, the case) was overwritten;
- the child's peak resident memory stays under a bound (every case has one; the cases about memory
  a tight one), read from /proc while it runs (every 20 ms) and enforced by stopping it.

Cases run in a small pool of processes in the background (they are mostly waiting on JAX's import
and compile, or on a time limit), so the file stays within a few minutes on two cores; each test
then asserts on its own case's outcome.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import xml.etree.ElementTree as ET
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]

TIMEOUT = "timeout"  # an allowed outcome where a case may run until the harness stops it
# The smallest shape, where a failing check has no smaller one for the shrinker to compile; identity,
# so that A = B is never all zero and a slip in grad_G2 always shows.
TINY = ("--shape", "N=2,p1=1,p2=1", "--trials", "2", "--activation", "identity")
# Where a case needs two columns (two entries of grad_beta, a jac_B_beta that is not all ones) or
# rows beyond N = 2 (eps = 0).
TINY4 = ("--shape", "N=4,p1=2,p2=2", "--trials", "2")
BUDGET_MB = 256  # the --max-memory-mb given where a case must not fit
# A tiny run holds about 250 MB (mostly JAX and XLA); a refusal before allocating stays near that.
TIGHT_MB = 1024
LOOSE_MB = 2500  # every other case: a safety net for the machine as much as an assertion
JOBS = int(os.environ.get("BNCHECK_HOSTILE_JOBS", "3"))


# ------------------------------------------------------------------------------------- the files

NP = "import numpy as np\n"
G2_OK = '''
def grad_G2(ctx):
    return (-2.0 / ctx.N) * np.asarray(ctx.A).T @ np.asarray(ctx.resid)
'''
G2_TWICE = '''
def grad_G2(ctx):  # a slip: twice the gradient
    return (-4.0 / ctx.N) * np.asarray(ctx.A).T @ np.asarray(ctx.resid)
'''
BETA = "((-2.0 / ctx.N) * (np.asarray(ctx.resid) @ np.asarray(ctx.G2).T) * np.asarray(ctx.dA)).sum(axis=0)"
G1_OK = '''
def grad_G1(ctx):
    X, Hhat, sigma, gamma = (np.asarray(a) for a in (ctx.X, ctx.Hhat, ctx.sigma, ctx.gamma))
    D = (-2.0 / ctx.N) * (np.asarray(ctx.resid) @ np.asarray(ctx.G2).T) * np.asarray(ctx.dA)
    E = D * gamma
    return X.T @ ((E - E.mean(axis=0) - Hhat * (E * Hhat).sum(axis=0) / (ctx.N - ctx.ddof)) / sigma)
'''
JVP_GAMMA_OK = '''
def jvp_B_gamma(ctx, V):
    return np.asarray(ctx.Hhat) * np.asarray(V)
'''
# Writes CALLED beside the file when bncheck calls it: a report path must be refused before that.
CALLED = 'import pathlib\npathlib.Path(__file__).with_name("CALLED").write_text("called")\n'
# Code a data file must never run: what the issue's attacker wrote into a case's "model".
EVIL = 'import pathlib\npathlib.Path(__file__).with_name("PWNED").write_text("ran")\nraise SystemExit(0)\n'


def beside_g2(body: str, head: str = "", g2: str = G2_OK, extra: str = "") -> str:
    """A derivation whose grad_beta runs `body`, defined first so that it runs first on each draw,
    beside a correct grad_G2 (or the given one)."""
    fn = "def grad_beta(ctx):\n" + textwrap.indent(textwrap.dedent(body).strip("\n"), "    ") + "\n"
    return NP + textwrap.dedent(head) + "\n\n" + fn + g2 + extra


def returning(expr: str, head: str = "") -> str:
    """grad_beta returns `expr` (garbage of some kind) beside a correct grad_G2."""
    return beside_g2(f"return {expr}", head)


LAYERNORM = '''\
import jax.numpy as jnp

DIMS = {"N": (1, 4), "D": (2, 4)}


def inputs(d):
    return {"x": (d["N"], d["D"]), "dout": (d["N"], d["D"])}


def params(d):
    return {"gamma": (d["D"],), "beta": (d["D"],)}


def forward(x, dout, gamma, beta):
    mu = x.mean(axis=1, keepdims=True)
    sigma = jnp.sqrt(((x - mu) ** 2).mean(axis=1, keepdims=True) + 1e-5)
    y = gamma[None, :] * (x - mu) / sigma + beta[None, :]
    return {"R": (y * dout).sum(), "y": y}
'''
LN_BETA_OK = "import numpy as np\n\ndef grad_beta(ctx):\n    return np.asarray(ctx.dout).sum(axis=0)\n"
LN_BETA_TWICE = "import numpy as np\n\ndef grad_beta(ctx):\n    return 2 * np.asarray(ctx.dout).sum(axis=0)\n"
LN_ARGS = ("--model", "m.py", "--shape", "N=2,D=2", "--trials", "1")


def layernorm(replace: dict[str, str] | None = None, add: str = "") -> str:
    text = LAYERNORM
    for old, new in (replace or {}).items():
        assert old in text, old
        text = text.replace(old, new)
    return text + add


# ---------------------------------------------------------------------------- case and values files


def _forward(a: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The bn-mlp forward record of CASE_HEADER's settings (relu, ddof 0, eps 1e-5), in NumPy."""
    N = a["X"].shape[0]
    H = a["X"] @ a["G1"]
    mu = H.mean(axis=0)
    sigma = np.sqrt(((H - mu) ** 2).sum(axis=0) / N + 1e-5)
    B = a["gamma"] * (H - mu) / sigma + a["beta"]
    A = np.maximum(B, 0.0)
    resid = a["y"] - A @ a["G2"]
    return {"N": N, "A": A, "dA": (B > 0).astype(float), "resid": resid}


def case_arrays() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    return {
        "X": rng.standard_normal((4, 2)), "y": rng.standard_normal((4, 1)), "G1": rng.standard_normal((2, 2)),
        "G2": rng.standard_normal((2, 1)), "gamma": rng.standard_normal(2), "beta": rng.standard_normal(2),
    }


def correct_values() -> dict[str, np.ndarray]:
    a = case_arrays()
    f = _forward(a)
    D = (-2.0 / f["N"]) * (f["resid"] @ a["G2"].T) * f["dA"]
    return {"grad_G2": (-2.0 / f["N"]) * f["A"].T @ f["resid"], "grad_beta": D.sum(axis=0)}


CASE_HEADER = {
    "model": "bn-mlp",
    "settings": {"activation": "relu", "ddof": 0, "eps": 1e-5, "dtype": "float64", "seed": 1,
                 "shape": {"N": 4, "p1": 2, "p2": 2, "k": 1}},
    "attempt": 0,
}


def case_json(model: str = "bn-mlp", arrays: dict | None = None, raw: dict[str, str] | None = None) -> str:
    """A bn-mlp case at N=4,p1=2,p2=2 as `case export` writes it; `raw` replaces an array's JSON text."""
    doc = {**CASE_HEADER, "model": model,
           "arrays": {n: a.tolist() for n, a in (arrays or case_arrays()).items()}}
    text = json.dumps(doc)
    for name, literal in (raw or {}).items():
        text = text.replace(json.dumps(name) + ": " + json.dumps(doc["arrays"][name]), json.dumps(name) + ": " + literal)
    return text


def values_json(raw: dict[str, str] | None = None, **values) -> str:
    arrays = {**{n: v.tolist() for n, v in correct_values().items()}, **values}
    text = json.dumps({"arrays": arrays})
    for name, literal in (raw or {}).items():
        text = text.replace(json.dumps(name) + ": " + json.dumps(arrays[name]), json.dumps(name) + ": " + literal)
    return text


def case_npz(model: str = "bn-mlp", arrays: dict | None = None) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        with path.open("wb") as fh:
            np.savez(fh, **(arrays or case_arrays()), **{"settings.json": np.array(json.dumps({**CASE_HEADER, "model": model}))})
    return write


def case_csv(model: str = "bn-mlp") -> Callable[[Path], None]:
    def write(folder: Path) -> None:
        folder.mkdir()
        (folder / "settings.json").write_text(json.dumps({**CASE_HEADER, "model": model}))
        for name, a in case_arrays().items():
            np.savetxt(folder / f"{name}.csv", a.reshape(len(a), -1), delimiter=",", fmt="%.17g")
    return write


def npz_with_header(entries: dict[str, np.ndarray], name: str, shape: tuple[int, ...], fill_bytes: int,
                    settings: bool = False) -> Callable[[Path], None]:
    """An .npz whose entry `name` declares `shape` (float64) and holds `fill_bytes` zero bytes: a
    header that lies (10^12 floats in 80 bytes) or a member that inflates (2 GiB from ~9 MB)."""
    def write(path: Path) -> None:
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as z:
            for other, a in entries.items():
                with z.open(f"{other}.npy", "w") as f:
                    np.lib.format.write_array(f, np.asarray(a), allow_pickle=False)
            if settings:
                with z.open("settings.json.npy", "w") as f:
                    np.lib.format.write_array(f, np.array(json.dumps(CASE_HEADER)), allow_pickle=False)
            with z.open(f"{name}.npy", "w", force_zip64=True) as f:
                np.lib.format.write_array_header_1_0(f, {"descr": "<f8", "fortran_order": False, "shape": shape})
                chunk = bytes(min(fill_bytes, 1 << 24))
                left = fill_bytes
                while left > 0:
                    f.write(chunk[:left])
                    left -= len(chunk)
    return write


def nested(depth: int) -> str:
    return "[" * depth + "1.0" + "]" * depth


# ------------------------------------------------------------------------------- setup helpers


def symlink(target: str) -> Callable[[Path], None]:
    return lambda path: path.symlink_to(target)


def loop(other: str) -> Callable[[Path], None]:
    def make(path: Path) -> None:
        path.symlink_to(path.with_name(other))
        path.with_name(other).symlink_to(path.name)
    return make


def fifo(path: Path) -> None:
    os.mkfifo(path)


def folder(path: Path) -> None:
    path.mkdir()


# ---------------------------------------------------------------------------------------- cases


@dataclass(frozen=True)
class Hostile:
    """One broken or hostile input and what the contract says bncheck must do with it."""

    id: str
    args: tuple[str, ...]
    exit: tuple  # the allowed exit statuses (TIMEOUT where the harness may stop a run it must not finish)
    item: str  # issue 12's item (1-9), or NEW
    files: dict = field(default_factory=dict)  # name -> str, bytes, or a callable(path) that makes it
    json: str | None = None  # a JSON report that must exist and parse strictly when the exit is 0 or 1
    junit: str | None = None
    stdout_json: bool = False  # stdout is the JSON report (--json -)
    verdicts: dict = field(default_factory=dict)  # check -> the status it keeps in the JSON
    broken: tuple[str, ...] = ()  # checks that must not pass in the JSON
    memory_mb: int = LOOSE_MB
    timeout: float = 90
    env: dict = field(default_factory=dict)
    stdout: str | None = None  # a file to give as stdout (/dev/full)
    stderr: str | None = None
    unchanged: tuple[str, ...] = ()  # files that must be byte-identical afterwards
    absent: tuple[str, ...] = ()  # markers that must not exist afterwards (PWNED always)
    max_output: int | None = None  # bytes of stdout + stderr
    extra: Callable | None = None  # extra assertions(outcome, folder)
    skip: str | None = None  # a platform feature the case needs, if it is missing


def H(id, args, exit, item, **kw) -> Hostile:
    exit = (exit,) if isinstance(exit, (int, str)) else tuple(exit)
    return Hostile(id, tuple(args), exit, item, **kw)


def replay_on_one_line(out, _folder: Path) -> None:
    lines = [line for line in out.stdout.splitlines() if "replay:" in line]
    assert lines, out.stdout
    assert all("--dtype" in line for line in lines), f"a replay command was wrapped:\n{out.stdout}"


def junit_dash(out, folder: Path) -> None:
    assert not (folder / "-").exists(), "--junit - wrote a file named '-'"
    if out.exit == 0:
        ET.fromstring(out.stdout)  # JUnit on standard output, and nothing else there


def no_escape_codes(out, _folder: Path) -> None:
    # Neither stream is a terminal, so an escape code there came from user text, unescaped.
    assert "\x1b" not in out.stdout + out.stderr, "a file name's escape sequence reached the terminal raw"


def chdir_reports(out, folder: Path) -> None:
    assert not (folder / "elsewhere" / "r.json").exists() and not (folder / "elsewhere" / "j.xml").exists(), (
        "a derivation's os.chdir moved the report paths"
    )


I1 = {"model.py": EVIL, "evil": EVIL, "grads.json": values_json()}
SWEEP_TOML = 'shape = "N=2,p1=1,p2=1"\ntrials = 2\nactivation = "identity"\n'

CASES = [
    # ---- 1. a case, values or config file names code: never imported
    H("case-json-names-model-py", ["verify-values", "e.json", "grads.json"], 2, "1",
      files={**I1, "e.json": case_json("model.py")}),
    H("case-npz-names-model-py", ["verify-values", "e.npz", "grads.json"], 2, "1",
      files={**I1, "e.npz": case_npz("model.py")}),
    H("case-csv-names-model-py", ["verify-values", "e", "grads.json"], 2, "1",
      files={**I1, "e": case_csv("model.py")}),
    H("case-json-names-absolute-model-py", ["verify-values", "e.json", "grads.json"], 2, "1",
      files={**I1, "e.json": lambda p: p.write_text(case_json(str(p.with_name("model.py"))))}),
    H("config-names-model-py", ["verify", "--config", "c.toml"], 2, "1",
      files={**I1, "c.toml": 'model = "model.py"\ntrials = 2\n'}),
    H("case-export-config-names-model-py", ["case", "export", "--config", "c.toml", "--out", "x.json"], 2, "1",
      files={**I1, "c.toml": 'model = "model.py"\nshape = "N=4,p1=2,p2=2"\n'}),
    H("case-json-names-model-without-suffix", ["verify-values", "e.json", "grads.json"], 2, "NEW",
      files={**I1, "e.json": case_json("./evil")}),
    H("config-names-model-without-suffix", ["verify", "--config", "c.toml"], 2, "NEW",
      files={**I1, "c.toml": 'model = "./evil"\ntrials = 2\n'}),
    H("case-json-names-etc-passwd", ["verify-values", "e.json", "grads.json"], 2, "NEW",
      files={**I1, "e.json": case_json("/etc/passwd")}),
    H("values-file-is-python", ["verify-values", "case.json", "model.py"], 2, "NEW",
      files={**I1, "case.json": case_json()}),

    # ---- 2. SystemExit, GeneratorExit, KeyboardInterrupt and other BaseExceptions from user code
    H("sys-exit-0-in-function", ["verify", "d.py", *TINY, "--json", "r.json"], 1, "2",
      files={"d.py": beside_g2("sys.exit(0)", "import sys")}, json="r.json",
      verdicts={"grad_G2": "pass"}, broken=("grad_beta",)),
    H("sys-exit-0-at-import", ["verify", "d.py", *TINY], 2, "2",
      files={"d.py": beside_g2(f"return {BETA}", "import sys\nsys.exit(0)")}),
    H("system-exit-2-in-function", ["verify", "d.py", *TINY, "--json", "r.json"], 1, "2",
      files={"d.py": beside_g2("raise SystemExit(2)")}, json="r.json",
      verdicts={"grad_G2": "pass"}, broken=("grad_beta",)),
    H("generator-exit-in-function", ["verify", "d.py", *TINY, "--json", "r.json"], 1, "2",
      files={"d.py": beside_g2("raise GeneratorExit")}, json="r.json",
      verdicts={"grad_G2": "pass"}, broken=("grad_beta",)),
    H("generator-exit-at-import", ["verify", "d.py", *TINY], 2, "2",
      files={"d.py": beside_g2(f"return {BETA}", "raise GeneratorExit")}),
    # Decided: a KeyboardInterrupt from user code is an interrupt, and the CLI ends with 130, quietly.
    H("keyboard-interrupt-in-function", ["verify", "d.py", *TINY], 130, "2",
      files={"d.py": beside_g2("raise KeyboardInterrupt")}),
    H("sys-exit-0-in-model-file", ["verify", "d.py", *LN_ARGS], 2, "2",
      files={"m.py": "import sys\nsys.exit(0)\n" + LAYERNORM, "d.py": LN_BETA_OK}),
    H("sys-exit-0-in-model-forward", ["verify", "d.py", *LN_ARGS], 2, "2",
      files={"m.py": layernorm({"    mu = x.mean": "    import sys\n    sys.exit(0)\n    mu = x.mean"}),
             "d.py": LN_BETA_OK}),
    H("base-exception-subclass-in-function", ["verify", "d.py", *TINY, "--json", "r.json"], 1, "NEW",
      files={"d.py": beside_g2("raise Stop('no')", "class Stop(BaseException):\n    pass\n")}, json="r.json",
      verdicts={"grad_G2": "pass"}, broken=("grad_beta",)),
    H("os-exit-0-in-function", ["verify", "d.py", *TINY, "--json", "r.json"], 1, "NEW",
      files={"d.py": beside_g2("os._exit(0)", "import os")}, json="r.json",
      verdicts={"grad_G2": "pass"}, broken=("grad_beta",)),
    H("thread-calls-os-exit-0-after-import", ["verify", "d.py", *TINY], 1, "NEW",
      files={"d.py": beside_g2(f"return {BETA}", """\
          import os, threading, time
          threading.Thread(target=lambda: (time.sleep(0.5), os._exit(0)), daemon=True).start()
          """, g2=G2_TWICE)}),

    # ---- 3. checks share one mutable ctx
    H("ctx-resid-scaled-in-place", ["verify", "d.py", *TINY, "--json", "r.json"], 1, "3",
      files={"d.py": beside_g2("""\
          r = ctx.resid
          r *= -2 / ctx.N
          return ((np.asarray(r) @ np.asarray(ctx.G2).T) * np.asarray(ctx.dA)).sum(axis=0)
          """)}, json="r.json", verdicts={"grad_G2": "pass"}, broken=("grad_beta",)),
    H("ctx-resid-zeroed", ["verify", "d.py", *TINY, "--json", "r.json"], 1, "3",
      files={"d.py": beside_g2(f"value = {BETA}\nctx.resid[:] = 0\nreturn value")}, json="r.json",
      verdicts={"grad_G2": "pass"}, broken=("grad_beta",)),
    H("ctx-N-set-to-1", ["verify", "d.py", *TINY, "--json", "r.json"], 1, "3",
      files={"d.py": beside_g2(f"value = {BETA}\nctx.N = 1\nreturn value")}, json="r.json",
      verdicts={"grad_G2": "pass"}, broken=("grad_beta",)),
    # Decided: V belongs to the call as ctx does; writing into it fails that function, and the
    # other checks keep their verdicts.
    H("jvp-zeroes-its-V", ["verify", "d.py", *TINY, "--json", "r.json"], 1, "3",
      files={"d.py": NP + '''
def jvp_B_beta(ctx, V):
    out = np.broadcast_to(np.asarray(V), np.shape(ctx.Hhat)).copy()
    V[...] = 0
    return out
''' + JVP_GAMMA_OK + G2_OK}, json="r.json",
      verdicts={"grad_G2": "pass", "jvp_B_gamma": "pass"}, broken=("jvp_B_beta",)),
    H("ctx-field-deleted", ["verify", "d.py", *TINY, "--json", "r.json"], 1, "NEW",
      files={"d.py": beside_g2(f"value = {BETA}\ndel ctx.resid\nreturn value")}, json="r.json",
      verdicts={"grad_G2": "pass"}, broken=("grad_beta",)),
    H("ctx-dict-cleared", ["verify", "d.py", *TINY, "--json", "r.json"], 1, "NEW",
      files={"d.py": beside_g2(f"value = {BETA}\nvars(ctx).clear()\nreturn value")}, json="r.json",
      verdicts={"grad_G2": "pass"}, broken=("grad_beta",)),
    H("ctx-class-patched", ["verify", "d.py", *TINY, "--json", "r.json"], 1, "NEW",
      files={"d.py": beside_g2(f"""\
          value = {BETA}
          cls, real = type(ctx), type(ctx).__getattribute__
          cls.__getattribute__ = lambda self, name: real(self, name) * 0 if name == "resid" else real(self, name)
          return value
          """)}, json="r.json", verdicts={"grad_G2": "pass"}, broken=("grad_beta",)),
    # Flipping the writeable flag back is deliberate; whatever grad_beta's own verdict, grad_G2 keeps its.
    H("ctx-writeable-flag-flipped", ["verify", "d.py", *TINY, "--json", "r.json"], (0, 1), "NEW",
      files={"d.py": beside_g2(f"""\
          value = {BETA}
          r = ctx.resid
          r.flags.writeable = True
          r *= 0
          return value
          """)}, json="r.json", verdicts={"grad_G2": "pass"}),

    # ---- 4. false alarms on correct built-ins (the issue's replays)
    H("false-alarm-bn-mlp-N2-eps0", ["verify", "--trials", "1", "--seed", "12234", "--ddof", "1", "--eps", "0"], 0, "4"),
    H("false-alarm-bn-mlp-N2-eps0-tanh",
      ["verify", "--trials", "1", "--seed", "32777", "--activation", "tanh", "--ddof", "1", "--eps", "0"], 0, "4"),
    H("false-alarm-bn-mlp-N2-eps0-tanh-float32",
      ["verify", "--trials", "1", "--seed", "2082", "--activation", "tanh", "--ddof", "1", "--eps", "0",
       "--dtype", "float32"], 0, "4"),
    H("false-alarm-mlp-xent-M1-float32",
      ["verify", "--model", "mlp", "--loss", "xent", "--layers", "4", "--dtype", "float32", "--trials", "1",
       "--seed", "9977"], 0, "4"),

    # ---- 5. memory: sized before allocating, flat in --trials
    H("shape-N-1e6-over-budget", ["verify", "--shape", "N=1000000,p1=16,p2=16", "--trials", "2",
                                  "--max-memory-mb", str(BUDGET_MB)], 2, "5", memory_mb=TIGHT_MB),
    H("shape-N-1e8-default-budget", ["verify", "--shape", "N=100000000,p1=16,p2=16", "--trials", "2"], 2, "5",
      memory_mb=TIGHT_MB),
    H("outputs-1e6-over-budget", ["verify", "--outputs", "1000000", "--shape", "N=256,p1=8,p2=8", "--trials", "2",
                                  "--max-memory-mb", str(BUDGET_MB)], 2, "5", memory_mb=TIGHT_MB),
    H("outputs-1e9-default-budget", ["verify", "--outputs", "1000000000", *TINY], 2, "5", memory_mb=TIGHT_MB),
    H("case-export-shape-over-budget", ["case", "export", "--shape", "N=1000000,p1=16,p2=16",
                                        "--max-memory-mb", str(BUDGET_MB), "--out", "c.json"], 2, "5",
      memory_mb=TIGHT_MB),
    H("case-export-shape-N-1e8", ["case", "export", "--shape", "N=100000000,p1=16,p2=16", "--out", "c.json"], 2, "5",
      memory_mb=TIGHT_MB),
    # Refused, or streamed: either way the run must not grow; the harness stops it after 20 s.
    H("trials-1e8", ["verify", "d.py", "--trials", "100000000", "--shape", "N=4,p1=2,p2=2"], (2, TIMEOUT), "5",
      files={"d.py": NP + G2_OK}, memory_mb=TIGHT_MB, timeout=20),
    H("toml-trials-1e20", ["verify", "d.py", "--config", "c.toml"], (2, TIMEOUT), "5",
      files={"d.py": NP + G2_OK, "c.toml": 'shape = "N=4,p1=2,p2=2"\n[sweep]\ntrials = 99999999999999999999\n'},
      memory_mb=TIGHT_MB, timeout=20),
    # A 9 MB values file whose grad_G1 inflates to 2 GiB: refused, or failed on its declared shape,
    # never loaded whole.
    H("values-npz-inflates-to-2GiB", ["verify-values", "case.json", "v.npz", "--max-memory-mb", str(BUDGET_MB)],
      (1, 2), "5", files={"case.json": case_json(),
                          "v.npz": npz_with_header(correct_values(), "grad_G1", (2**28,), 2**31)},
      memory_mb=TIGHT_MB),
    H("case-npz-inflates-to-2GiB", ["verify-values", "case.npz", "grads.json", "--max-memory-mb", str(BUDGET_MB)],
      2, "NEW", files={"grads.json": values_json(),
                       "case.npz": npz_with_header({k: v for k, v in case_arrays().items() if k != "X"},
                                                   "X", (2**28,), 2**31, settings=True)},
      memory_mb=TIGHT_MB),
    H("sweep-range-up-to-1e30", ["verify", "--config", "c.toml"], 2, "NEW",
      files={"c.toml": "[sweep]\ntrials = 2\nN = [2, 1000000000000000000000000000000]\n"}, memory_mb=TIGHT_MB),
    H("shape-N-1e23", ["verify", "--shape", "N=100000000000000000000000,p1=2,p2=2", "--trials", "1"], 2, "NEW",
      memory_mb=TIGHT_MB),
    H("model-file-dims-up-to-1e12", ["verify", "d.py", "--model", "m.py", "--trials", "2"], 2, "NEW",
      files={"m.py": layernorm({'"N": (1, 4)': '"N": (1, 10**12)'}), "d.py": LN_BETA_OK}, memory_mb=TIGHT_MB),
    H("mlp-layers-1e6", ["verify", "--model", "mlp", "--layers", "1000000", "--trials", "1",
                         "--max-memory-mb", str(BUDGET_MB)], (2, TIMEOUT), "NEW", memory_mb=TIGHT_MB, timeout=30),
    H("config-is-dev-zero", ["verify", "--config", "/dev/zero", *TINY], 2, "NEW", memory_mb=TIGHT_MB, timeout=30),
    H("values-json-is-dev-zero", ["verify-values", "case.json", "v.json"], 2, "NEW",
      files={"case.json": case_json(), "v.json": symlink("/dev/zero")}, memory_mb=TIGHT_MB, timeout=30),
    H("case-csv-array-is-dev-zero", ["verify-values", "e", "grads.json"], 2, "NEW",
      files={"grads.json": values_json(),
             "e": lambda p: (case_csv()(p), (p / "X.csv").unlink(), (p / "X.csv").symlink_to("/dev/zero"))},
      memory_mb=TIGHT_MB, timeout=30),
    H("returns-broadcast-view-of-1e12-entries", ["verify", "d.py", *TINY, "--json", "r.json"], 1, "NEW",
      files={"d.py": returning("np.broadcast_to(np.float64(0.0), (10**6, 10**6))")}, json="r.json",
      verdicts={"grad_G2": "pass"}, broken=("grad_beta",), memory_mb=TIGHT_MB),
    H("case-shape-N-1e12-small-arrays", ["verify-values", "e.json", "grads.json"], 2, "NEW",
      files={"grads.json": values_json(),
             "e.json": case_json().replace('"N": 4', '"N": 1000000000000')}, memory_mb=TIGHT_MB),

    # ---- 6. a bad return value or a bad exception fails that check, never the run
    H("array-dunder-raises", ["verify", "d.py", *TINY, "--json", "r.json"], 1, "6",
      files={"d.py": returning("Tensor()", head='''
          class Tensor:
              def __array__(self, *args, **kwargs):
                  raise RuntimeError("Can't call numpy() on Tensor that requires grad.")
          ''')}, json="r.json", verdicts={"grad_G2": "pass"}, broken=("grad_beta",)),
    H("exception-str-raises", ["verify", "d.py", *TINY, "--json", "r.json"], 1, "6",
      files={"d.py": beside_g2("raise Nasty()", head='''
          class Nasty(Exception):
              def __str__(self):
                  raise RuntimeError("no str for you")
          ''')}, json="r.json", verdicts={"grad_G2": "pass"}, broken=("grad_beta",)),
    H("ctx-N-set-to-0-before-an-invariant", ["verify", "d.py", *TINY4, "--eps", "0", "--ddof", "1", "--json", "r.json"],
      1, "6", files={"d.py": beside_g2(f"value = {BETA}\nctx.N = 0\nreturn value", extra=G1_OK)}, json="r.json",
      verdicts={"grad_G2": "pass", "grad_G1": "pass"}, broken=("grad_beta",)),
    H("exception-str-returns-int", ["verify", "d.py", *TINY, "--json", "r.json"], 1, "NEW",
      files={"d.py": beside_g2("raise Odd()", head='''
          class Odd(Exception):
              def __str__(self):
                  return 42
          ''')}, json="r.json", verdicts={"grad_G2": "pass"}, broken=("grad_beta",)),
    H("array-dunder-returns-strings", ["verify", "d.py", *TINY, "--json", "r.json"], 1, "NEW",
      files={"d.py": returning("Liar()", head='''
          class Liar:
              def __array__(self, *args, **kwargs):
                  return np.array(["a", "b"])
          ''')}, json="r.json", verdicts={"grad_G2": "pass"}, broken=("grad_beta",)),
    H("returns-generator", ["verify", "d.py", *TINY, "--json", "r.json"], 1, "NEW",
      files={"d.py": returning(f"(x for x in {BETA})")}, json="r.json",
      verdicts={"grad_G2": "pass"}, broken=("grad_beta",)),
    H("returns-dict", ["verify", "d.py", *TINY, "--json", "r.json"], 1, "NEW",
      files={"d.py": returning(f"{{'beta': {BETA}}}")}, json="r.json",
      verdicts={"grad_G2": "pass"}, broken=("grad_beta",)),
    H("returns-ndarray-subclass-lying-about-shape", ["verify", "d.py", *TINY4, "--json", "r.json"], 1, "NEW",
      files={"d.py": returning("np.arange(5.0).view(Liar)", head='''
          class Liar(np.ndarray):
              shape = property(lambda self: (2,))
          ''')}, json="r.json", verdicts={"grad_G2": "pass"}, broken=("grad_beta",)),
    H("returns-complex", ["verify", "d.py", *TINY, "--json", "r.json"], 1, "NEW",
      files={"d.py": returning(f"{BETA} + 1j")}, json="r.json", verdicts={"grad_G2": "pass"}, broken=("grad_beta",)),
    H("returns-coroutine", ["verify", "d.py", *TINY, "--json", "r.json"], 1, "NEW",
      files={"d.py": NP + f"\nasync def grad_beta(ctx):\n    return {BETA}\n" + G2_OK}, json="r.json",
      verdicts={"grad_G2": "pass"}, broken=("grad_beta",)),
    H("returns-object-whose-del-raises", ["verify", "d.py", *TINY, "--json", "r.json"], (0, 1), "NEW",
      files={"d.py": returning(f"np.asarray({BETA}).view(Grumpy)", head='''
          class Grumpy(np.ndarray):
              def __del__(self):
                  raise RuntimeError("gone")
          ''')}, json="r.json", verdicts={"grad_G2": "pass"}),
    H("returns-object-with-recursive-getattr", ["verify", "d.py", *TINY, "--json", "r.json"], 1, "NEW",
      files={"d.py": returning("Loop()", head='''
          class Loop:
              def __getattr__(self, name):
                  return getattr(self, name + "_")
          ''')}, json="r.json", verdicts={"grad_G2": "pass"}, broken=("grad_beta",)),
    # grad_beta returns twice its gradient and grad_G2, called after it, halves that array in place:
    # a value must be judged as it was returned, not as it is when the verdict is settled.
    H("returned-value-repaired-later", ["verify", "d.py", *TINY, "--json", "r.json"], 1, "NEW",
      files={"d.py": NP + f"""
_returned = []


def grad_beta(ctx):
    out = 2 * {BETA}
    _returned.append(out)
    return out


def grad_G2(ctx):
    for value in _returned:
        value /= 2
    _returned.clear()
    return (-2.0 / ctx.N) * np.asarray(ctx.A).T @ np.asarray(ctx.resid)
"""}, json="r.json", verdicts={"grad_G2": "pass"}, broken=("grad_beta",)),
    H("infinite-recursion-in-function", ["verify", "d.py", *TINY, "--json", "r.json"], 1, "NEW",
      files={"d.py": beside_g2("return grad_beta(ctx)")}, json="r.json",
      verdicts={"grad_G2": "pass"}, broken=("grad_beta",)),
    H("exception-str-raises-at-import", ["verify", "d.py", *TINY], 2, "NEW",
      files={"d.py": beside_g2(f"return {BETA}", head='''
          class Nasty(Exception):
              def __str__(self):
                  raise RuntimeError("no str for you")
          raise Nasty()
          ''')}),
    H("multi-line-exception-at-import", ["verify", "d.py", *TINY], 2, "NEW",
      files={"d.py": beside_g2(f"return {BETA}", head='raise ValueError("first line\\nsecond line\\nthird line")')}),
    H("multi-line-exception-in-model-file", ["verify", "d.py", *LN_ARGS], 2, "NEW",
      files={"m.py": 'raise ValueError("first line\\nsecond line")\n' + LAYERNORM, "d.py": LN_BETA_OK}),
    # R is NaN: the references are NaN, and a derivation returning NaN must not match them.
    H("model-forward-returns-nan-loss", ["verify", "d.py", *LN_ARGS], (1, 2), "NEW",
      files={"m.py": layernorm({'"R": (y * dout).sum()': '"R": (y * dout).sum() * jnp.nan'}),
             "d.py": "import numpy as np\n\ndef grad_beta(ctx):\n    return np.full(np.shape(ctx.beta), np.nan)\n"}),

    # ---- 7. reports are what they claim
    H("print-with-json-to-stdout", ["verify", "d.py", *TINY, "--json", "-"], 0, "7",
      files={"d.py": beside_g2(f"print('debugging', ctx.N)\nreturn {BETA}")}, stdout_json=True,
      verdicts={"grad_G2": "pass", "grad_beta": "pass"}),
    H("os-write-fd1-with-json-to-stdout", ["verify", "d.py", *TINY, "--json", "-"], 0, "7",
      files={"d.py": beside_g2(f"os.write(1, b'raw bytes on fd 1\\n')\nreturn {BETA}", "import os")},
      stdout_json=True, verdicts={"grad_G2": "pass", "grad_beta": "pass"}),
    H("error-map-ratio-infinite", ["verify", "d.py", *TINY4, "--json", "r.json", "--junit", "j.xml"], 1, "7",
      files={"d.py": NP + "\ndef jac_B_beta(ctx):\n    N, p2 = np.shape(ctx.Hhat)\n    return np.ones((N * p2, p2))\n"
             + G2_OK}, json="r.json", junit="j.xml", verdicts={"grad_G2": "pass"}, broken=("jac_B_beta",)),
    H("relative-error-overflows", ["verify", "d.py", *TINY4, "--json", "r.json", "--junit", "j.xml"], 1, "7",
      files={"d.py": returning("np.array([1.7e308, -1.7e308])")}, json="r.json", junit="j.xml",
      verdicts={"grad_G2": "pass"}, broken=("grad_beta",)),
    H("returns-nan-and-inf", ["verify", "d.py", *TINY4, "--json", "r.json", "--junit", "j.xml"], 1, "7",
      files={"d.py": returning("np.array([np.nan, np.inf])")}, json="r.json", junit="j.xml",
      verdicts={"grad_G2": "pass"}, broken=("grad_beta",)),
    H("max-jacobian-mb-inf", ["verify", *TINY, "--max-jacobian-mb", "inf"], 2, "7"),
    H("control-characters-in-message", ["verify", "d.py", *TINY, "--json", "r.json", "--junit", "j.xml"], 1, "7",
      files={"d.py": beside_g2('raise ValueError("bad\\x00\\x01\\x08\\x0b\\x1b[31m red \\x7f\\ufffe end")')},
      json="r.json", junit="j.xml", verdicts={"grad_G2": "pass"}, broken=("grad_beta",)),
    H("lone-surrogate-in-message", ["verify", "d.py", *TINY, "--json", "r.json", "--junit", "j.xml"], 1, "NEW",
      files={"d.py": beside_g2('raise ValueError("half a pair: \\udcff")')},
      json="r.json", junit="j.xml", verdicts={"grad_G2": "pass"}, broken=("grad_beta",)),
    H("escape-sequence-in-derivation-name", ["verify", "d\x1b[31m.py", *TINY, "--json", "r.json", "--junit", "j.xml"],
      1, "NEW", files={"d\x1b[31m.py": NP + G2_TWICE}, json="r.json", junit="j.xml", broken=("grad_G2",),
      extra=no_escape_codes),
    H("unwritable-json-path", ["verify", "d.py", *TINY, "--json", "/proc/bncheck-r.json", "--junit", "j.xml"], 2, "7",
      files={"d.py": CALLED + NP + G2_OK}, absent=("CALLED",)),
    H("chdir-in-function-relative-reports", ["verify", "d.py", *TINY, "--json", "r.json", "--junit", "j.xml"], 0, "7",
      files={"d.py": beside_g2(f"os.chdir(os.path.join(os.path.dirname(__file__), 'elsewhere'))\nreturn {BETA}",
                               "import os"),
             "elsewhere": folder}, json="r.json", junit="j.xml",
      verdicts={"grad_G2": "pass", "grad_beta": "pass"}, extra=chdir_reports),
    H("json-is-the-derivation-itself", ["verify", "d.py", *TINY, "--json", "d.py"], 2, "7",
      files={"d.py": CALLED + NP + G2_OK}, unchanged=("d.py",), absent=("CALLED",)),
    H("json-empty-path", ["verify", "d.py", *TINY, "--json", ""], 2, "7",
      files={"d.py": CALLED + NP + G2_OK}, absent=("CALLED",)),
    # Either a clear refusal, or JUnit on stdout (and then nothing else there); never a file named "-".
    H("junit-dash", ["verify", "d.py", *TINY, "--junit", "-"], (0, 2), "7",
      files={"d.py": NP + G2_OK}, extra=junit_dash),
    H("json-and-junit-same-path", ["verify", "d.py", *TINY, "--json", "x", "--junit", "x"], 2, "7",
      files={"d.py": CALLED + NP + G2_OK}, absent=("CALLED", "x")),
    H("json-path-is-a-folder", ["verify", "d.py", *TINY, "--json", "sub"], 2, "NEW",
      files={"d.py": CALLED + NP + G2_OK, "sub": folder}, absent=("CALLED",)),
    H("junit-is-the-derivation-itself", ["verify", "d.py", *TINY, "--junit", "d.py"], 2, "NEW",
      files={"d.py": CALLED + NP + G2_OK}, unchanged=("d.py",), absent=("CALLED",)),
    H("json-is-the-case-file", ["verify-values", "case.json", "grads.json", "--json", "case.json"], 2, "NEW",
      files={"case.json": case_json(), "grads.json": values_json()}, unchanged=("case.json",)),
    H("json-is-the-config-file", ["verify", "d.py", "--config", "c.toml", "--json", "c.toml"], 2, "NEW",
      files={"d.py": CALLED + NP + G2_OK, "c.toml": SWEEP_TOML}, unchanged=("c.toml",), absent=("CALLED",)),
    H("json-config-names-the-derivation", ["verify", "d.py", "--config", "c.toml"], 2, "NEW",
      files={"d.py": CALLED + NP + G2_OK, "c.toml": SWEEP_TOML + 'json = "d.py"\n'}, unchanged=("d.py",),
      absent=("CALLED",)),
    H("json-path-is-a-symlink-loop", ["verify", "d.py", *TINY, "--json", "r.json"], 2, "NEW",
      files={"d.py": CALLED + NP + G2_OK, "r.json": loop("s.json")}, absent=("CALLED",)),
    H("json-path-is-a-fifo", ["verify", "d.py", *TINY, "--json", "r.json"], 2, "NEW",
      files={"d.py": CALLED + NP + G2_OK, "r.json": fifo}, absent=("CALLED",), timeout=30),
    H("json-path-300-characters", ["verify", "d.py", *TINY, "--json", "r" * 300 + ".json"], 2, "NEW",
      files={"d.py": CALLED + NP + G2_OK}, absent=("CALLED",)),
    H("stdout-replaced-in-function-json-to-stdout", ["verify", "d.py", *TINY, "--json", "-"], (0, 1), "NEW",
      files={"d.py": beside_g2(f"sys.stdout = open(os.devnull, 'w')\nreturn {BETA}", "import os, sys")},
      stdout_json=True, verdicts={"grad_G2": "pass"}),
    H("stdout-closed-in-function-json-to-stdout", ["verify", "d.py", *TINY, "--json", "-"], (0, 1), "NEW",
      files={"d.py": beside_g2(f"sys.stdout.close()\nreturn {BETA}", "import sys")},
      stdout_json=True, verdicts={"grad_G2": "pass"}),
    H("fd1-closed-in-function", ["verify", "d.py", *TINY, "--json", "r.json"], (0, 1), "NEW",
      files={"d.py": beside_g2(f"os.close(1)\nreturn {BETA}", "import os")}, json="r.json",
      verdicts={"grad_G2": "pass"}),

    # ---- 8. tracebacks without --debug
    H("models-broken-dims-without-argument", ["models", "m.py"], 2, "8",
      files={"m.py": layernorm({'DIMS = {"N": (1, 4), "D": (2, 4)}': 'def DIMS():\n    return {"N": (1, 4), "D": (2, 4)}'})}),
    H("models-broken-forward-is-3", ["models", "m.py"], 2, "8",
      files={"m.py": layernorm(add="\nforward = 3\n")}),
    H("models-broken-inputs-raise", ["models", "m.py"], 2, "8",
      files={"m.py": layernorm({'    return {"x"': '    raise KeyError("x")\n    return {"x"'})}),
    H("models-broken-outputs-is-5", ["models", "m.py"], 2, "8",
      files={"m.py": layernorm(add="\nOUTPUTS = 5\n")}),
    H("pythonioencoding-ascii-passing-run", ["verify", "--trials", "2"], 0, "8", env={"PYTHONIOENCODING": "ascii"}),
    H("pythonioencoding-ascii-failing-run", ["verify", "d.py", *TINY], 1, "NEW",
      files={"d.py": NP + G2_TWICE}, env={"PYTHONIOENCODING": "ascii"}),
    H("stdout-is-dev-full", ["verify", "d.py", *TINY], 2, "8", files={"d.py": NP + G2_OK}, stdout="/dev/full",
      skip=None if os.path.exists("/dev/full") else "no /dev/full"),
    H("stdout-is-dev-full-json-to-stdout", ["verify", "d.py", *TINY, "--json", "-"], 2, "NEW",
      files={"d.py": NP + G2_OK}, stdout="/dev/full", skip=None if os.path.exists("/dev/full") else "no /dev/full"),
    H("demo-centering-lr-1e308", ["demo", "centering", "--lr", "1e308"], (0, 2), "8"),
    H("demo-centering-lr-nan", ["demo", "centering", "--lr", "nan"], (0, 2), "NEW"),
    H("demo-centering-steps-negative", ["demo", "centering", "--steps", "-1"], (0, 2), "NEW"),
    H("demo-centering-steps-1e9", ["demo", "centering", "--steps", "1000000000"], (0, 2, TIMEOUT), "NEW",
      memory_mb=TIGHT_MB, timeout=20),

    # ---- 9. smaller
    H("case-array-nan", ["verify-values", "e.json", "grads.json"], 2, "9",
      files={"grads.json": values_json(), "e.json": case_json(raw={"X": "[[NaN, 1.0], [0.5, 1.0], [0.2, 0.1], [1.0, 2.0]]"})}),
    H("case-array-inf-npz", ["verify-values", "e.npz", "grads.json"], 2, "9",
      files={"grads.json": values_json(), "e.npz": case_npz(arrays={**case_arrays(), "G1": np.full((2, 2), np.inf)})}),
    H("mlp-layers-15", ["verify", "--model", "mlp", "--layers", "15", "--trials", "1"], (0, 2), "9"),
    H("binary-config", ["verify", "--config", "c.toml", *TINY], 2, "9", files={"c.toml": bytes(range(256)) * 4}),
    H("shape-superscript-two", ["verify", "--shape", "N=²", "--trials", "1"], 2, "9"),
    H("case-json-integer-1e400", ["verify-values", "e.json", "grads.json"], 2, "9",
      files={"grads.json": values_json(),
             "e.json": case_json(raw={"gamma": "[1" + "0" * 400 + ", 1.0]"})}),
    H("case-json-float-1e400", ["verify-values", "e.json", "grads.json"], 2, "9",
      files={"grads.json": values_json(), "e.json": case_json(raw={"gamma": "[1e400, 1.0]"})}),
    H("values-json-integer-1e400", ["verify-values", "case.json", "v.json", "--json", "r.json"], (1, 2), "9",
      files={"case.json": case_json(), "v.json": values_json(raw={"grad_beta": "[1" + "0" * 400 + ", 1.0]"})},
      json="r.json", verdicts={"grad_G2": "pass"}, broken=("grad_beta",)),
    H("case-json-nested-5000-deep", ["verify-values", "e.json", "grads.json"], 2, "9",
      files={"grads.json": values_json(), "e.json": case_json(raw={"gamma": nested(5000)})}),
    H("values-json-nested-5000-deep", ["verify-values", "case.json", "v.json"], (1, 2), "9",
      files={"case.json": case_json(), "v.json": values_json(raw={"grad_beta": nested(5000)})}),
    H("case-npz-header-declares-1e12-floats", ["verify-values", "e.npz", "grads.json"], 2, "9",
      files={"grads.json": values_json(),
             "e.npz": npz_with_header({k: v for k, v in case_arrays().items() if k != "X"}, "X", (10**12,), 80,
                                      settings=True)}, memory_mb=TIGHT_MB),
    H("values-npz-header-declares-1e12-floats", ["verify-values", "case.json", "v.npz"], (1, 2), "9",
      files={"case.json": case_json(), "v.npz": npz_with_header(correct_values(), "grad_G1", (10**12,), 80)},
      memory_mb=TIGHT_MB),
    H("derivation-path-300-characters", ["verify", "d" * 300 + ".py", *TINY], 2, "9"),
    H("config-path-300-characters", ["verify", "--config", "c" * 300 + ".toml", *TINY], 2, "NEW"),
    H("model-forward-is-3", ["verify", "d.py", *LN_ARGS], 2, "9",
      files={"m.py": layernorm(add="\nforward = 3\n"), "d.py": LN_BETA_OK}),
    H("model-outputs-is-5", ["verify", "d.py", *LN_ARGS], 2, "9",
      files={"m.py": layernorm(add="\nOUTPUTS = 5\n"), "d.py": LN_BETA_OK}),
    H("model-dims-without-argument", ["verify", "d.py", *LN_ARGS], 2, "9",
      files={"m.py": layernorm({'DIMS = {"N": (1, 4), "D": (2, 4)}': 'def DIMS():\n    return {"N": (1, 4), "D": (2, 4)}'}),
             "d.py": LN_BETA_OK}),
    H("model-check-dims-raises", ["verify", "d.py", *LN_ARGS], 2, "9",
      files={"m.py": layernorm(add="\ndef check_dims(dims, cfg):\n    raise RuntimeError('hook')\n"), "d.py": LN_BETA_OK}),
    H("model-sample-raises", ["verify", "d.py", *LN_ARGS], 2, "9",
      files={"m.py": layernorm(add="\ndef sample(rng, d):\n    raise RuntimeError('hook')\n"), "d.py": LN_BETA_OK}),
    H("model-invariants-raises", ["verify", "d.py", *LN_ARGS], 2, "9",
      files={"m.py": layernorm(add="\ndef invariants(cfg):\n    raise RuntimeError('hook')\n"), "d.py": LN_BETA_OK}),
    H("model-kink-field-raises", ["verify", "d.py", *LN_ARGS], 2, "9",
      files={"m.py": layernorm(add="\ndef kink_field(cfg):\n    raise RuntimeError('hook')\n"), "d.py": LN_BETA_OK}),
    # The variants are asked for only to diagnose a failure: a wrong derivation makes them run.
    H("model-variants-raises", ["verify", "d.py", *LN_ARGS], (1, 2), "9",
      files={"m.py": layernorm(add="\ndef variants(cfg):\n    raise RuntimeError('hook')\n"), "d.py": LN_BETA_TWICE}),
    H("model-invariant-function-raises", ["verify", "d.py", *LN_ARGS], (1, 2), "NEW",
      files={"m.py": layernorm(add="\ndef invariants(cfg):\n    return {'grad_beta': lambda ctx, got: 1 / 0}\n"),
             "d.py": LN_BETA_OK}),
    H("model-forward-takes-star-args", ["verify", "d.py", *LN_ARGS], 2, "NEW",
      files={"m.py": layernorm({"def forward(x, dout, gamma, beta):": "def forward(*args):\n    x, dout, gamma, beta = args"}),
             "d.py": LN_BETA_OK}),
    H("model-output-named-like-an-input", ["verify", "d.py", *LN_ARGS], 2, "9",
      files={"m.py": layernorm({'"y": y}': '"y": y, "x": y * 0}'}), "d.py": LN_BETA_OK}),
    H("conv-padding-1e5", ["verify", "--model", "conv", "--padding", "100000", "--trials", "1"], 2, "9",
      memory_mb=TIGHT_MB),
    H("conv-stride-0", ["verify", "--model", "conv", "--stride", "0", "--trials", "1"], 2, "9"),
    H("conv-stride-1e11", ["verify", "--model", "conv", "--stride", "99999999999", "--trials", "1"], (0, 2), "NEW"),
    H("utf8-bom-accepted", ["verify", "d.py", *TINY], 0, "9", files={"d.py": b"\xef\xbb\xbf" + (NP + G2_OK).encode()}),
    H("latin1-coding-cookie-accepted", ["verify", "d.py", *TINY], 0, "9",
      files={"d.py": ("# -*- coding: latin-1 -*-\n# d\xe9rivation de \xb5 et \xdf\n" + NP + G2_OK).encode("latin-1")}),
    H("replay-command-not-wrapped", ["verify", "d.py", *TINY], 1, "9", files={"d.py": NP + G2_TWICE},
      extra=replay_on_one_line),
    H("grad-beta-not-callable", ["verify", "d.py", *TINY, "--json", "r.json"], 1, "9",
      files={"d.py": NP + "\ngrad_beta = np.zeros(3)\n" + G2_OK}, json="r.json", verdicts={"grad_G2": "pass"}),
    H("message-of-5MB", ["verify", "d.py", *TINY, "--json", "r.json"], 1, "9",
      files={"d.py": beside_g2("raise ValueError('x' * 5_000_000)")}, json="r.json",
      verdicts={"grad_G2": "pass"}, broken=("grad_beta",), max_output=200_000),
    # Decided: no new flag; the fixed tool ends the call within its own limit and fails that check.
    H("sleep-3600-in-function", ["verify", "d.py", *TINY, "--json", "r.json"], 1, "9",
      files={"d.py": beside_g2(f"time.sleep(3600)\nreturn {BETA}", "import time")}, json="r.json",
      verdicts={"grad_G2": "pass"}, broken=("grad_beta",), timeout=120),
    H("kronecker-over-budget-skipped", ["verify", "kronecker", "--shape", "N=1000,p1=64,p2=64", "--trials", "1"],
      0, "9", timeout=120),

    # ---- NEW: the environment a derivation can reach
    # Refused (2) once bncheck sees its own tools replaced, or failed (1): never a pass.
    H("numpy-functions-monkeypatched", ["verify", "d.py", *TINY], (1, 2), "NEW",
      files={"d.py": NP + '''
np.abs = np.absolute = lambda x, *a, **k: np.zeros(np.shape(x))
np.max = np.amax = np.nanmax = lambda x, *a, **k: 0.0
np.allclose = lambda *a, **k: True
np.isclose = lambda a, b, *r, **k: np.ones(np.broadcast_shapes(np.shape(a), np.shape(b)), bool)
np.isfinite = lambda x, *a, **k: np.ones(np.shape(x), bool)
''' + G2_TWICE}),
    H("jax-autodiff-monkeypatched", ["verify", "d.py", *TINY], (1, 2), "NEW",
      files={"d.py": NP + '''
import jax
import jax.numpy as jnp

def _zeros(f, *args, **kwargs):
    return lambda *a, **k: jax.tree_util.tree_map(jnp.zeros_like, a[0] if len(a) == 1 else a)

jax.grad = jax.jacfwd = jax.jacrev = _zeros
jax.jvp = lambda f, primals, tangents, *a, **k: (f(*primals), jax.tree_util.tree_map(jnp.zeros_like, f(*primals)))
''' + "\ndef grad_G2(ctx):\n    return np.zeros(np.shape(ctx.G2))\n"}),
    H("jax-x64-disabled-at-import-small-slip", ["verify", "d.py", *TINY], 1, "NEW",
      files={"d.py": NP + "import jax\njax.config.update('jax_enable_x64', False)\n"
             + G2_OK.replace("-2.0 / ctx.N", "-2.0 * (1 + 1e-6) / ctx.N")}),
    H("jax-x64-disabled-at-import-correct", ["verify", "d.py", *TINY], 0, "NEW",
      files={"d.py": NP + "import jax\njax.config.update('jax_enable_x64', False)\n" + G2_OK}),
    H("jax-matmul-precision-bfloat16-at-import", ["verify", "d.py", *TINY], 0, "NEW",
      files={"d.py": NP + "import jax\njax.config.update('jax_default_matmul_precision', 'bfloat16')\n" + G2_OK}),
    H("jax-rank-promotion-raise-at-import", ["verify", "d.py", *TINY], 0, "NEW",
      files={"d.py": NP + "import jax\njax.config.update('jax_numpy_rank_promotion', 'raise')\n" + G2_OK}),
    H("numpy-seterr-raise-at-import", ["verify", "d.py", *TINY4, "--json", "r.json"], 1, "NEW",
      files={"d.py": NP + "np.seterr(all='raise')\n\ndef jac_B_beta(ctx):\n    N, p2 = np.shape(ctx.Hhat)\n"
             "    return np.ones((N * p2, p2))\n" + G2_OK}, json="r.json",
      verdicts={"grad_G2": "pass"}, broken=("jac_B_beta",)),
    H("warnings-are-errors-at-import", ["verify", "d.py", *TINY], 0, "NEW",
      files={"d.py": NP + "import warnings\nwarnings.simplefilter('error')\n" + G2_OK}),
    H("sys-modules-jax-set-to-none", ["verify", "d.py", *TINY], (1, 2), "NEW",
      files={"d.py": NP + "import sys\nsys.modules['jax'] = None\nsys.modules['jax.numpy'] = None\n" + G2_TWICE}),
    H("sys-modules-bncheck-deleted-in-function", ["verify", "d.py", *TINY], (1, 2), "NEW",
      files={"d.py": beside_g2(f"""\
          for name in [m for m in sys.modules if m.startswith("bncheck")]:
              del sys.modules[name]
          return {BETA}
          """, "import sys", g2=G2_TWICE)}),

    # ---- NEW: files that are not what they seem
    H("config-unicode-key", ["verify", "--config", "c.toml", *TINY], 2, "NEW",
      files={"c.toml": '"\u0430ctivation" = "tanh"\n'}),  # a Cyrillic a
    H("config-duplicate-key", ["verify", "--config", "c.toml", *TINY], 2, "NEW",
      files={"c.toml": 'ddof = 0\nddof = 1\n'}),
    H("config-key-wrong-type-huge-float", ["verify", "--config", "c.toml", *TINY], 2, "NEW",
      files={"c.toml": "eps = 1e400\n"}),
    H("empty-derivation", ["verify", "d.py", *TINY], 2, "NEW", files={"d.py": ""}),
    H("empty-case", ["verify-values", "e.json", "grads.json"], 2, "NEW", files={"e.json": "", "grads.json": values_json()}),
    H("empty-config-accepted", ["verify", "d.py", "--config", "c.toml", *TINY], 0, "NEW",
      files={"c.toml": "", "d.py": NP + G2_OK}),
    H("derivation-is-a-folder", ["verify", "x.py", *TINY], 2, "NEW", files={"x.py": folder}),
    H("model-is-a-folder", ["verify", "d.py", "--model", "m.py", "--trials", "1"], 2, "NEW",
      files={"m.py": folder, "d.py": LN_BETA_OK}),
    H("config-is-a-folder", ["verify", "--config", "c.toml", *TINY], 2, "NEW", files={"c.toml": folder}),
    H("derivation-symlink-loop", ["verify", "a.py", *TINY], 2, "NEW", files={"a.py": loop("b.py")}),
    H("config-symlink-loop", ["verify", "--config", "a.toml", *TINY], 2, "NEW", files={"a.toml": loop("b.toml")}),
    H("config-is-a-fifo", ["verify", "--config", "c.toml", *TINY], 2, "NEW", files={"c.toml": fifo}, timeout=30),
    H("case-is-a-fifo", ["verify-values", "e.json", "grads.json"], 2, "NEW",
      files={"e.json": fifo, "grads.json": values_json()}, timeout=30),
    H("values-extra-names", ["verify-values", "case.json", "v.json", "--json", "r.json"], 1, "NEW",
      files={"case.json": case_json(), "v.json": values_json(foo=[1.0], grad_G_2=[[1.0], [2.0]], X=[[0.0]])},
      json="r.json", verdicts={"grad_G2": "pass", "grad_beta": "pass"}),
    # A name written twice (a C++ writer that appends): wrong first, right last. Never a pass.
    H("values-json-duplicate-name", ["verify-values", "case.json", "v.json"], (1, 2), "NEW",
      files={"case.json": case_json(),
             "v.json": values_json().replace('{"arrays": {', '{"arrays": {"grad_G2": [[0.0], [0.0]], ', 1)}),
    H("values-nan", ["verify-values", "case.json", "v.json", "--json", "r.json"], 1, "NEW",
      files={"case.json": case_json(), "v.json": values_json(raw={"grad_beta": "[NaN, 1.0]"})},
      json="r.json", verdicts={"grad_G2": "pass"}, broken=("grad_beta",)),
    H("values-infinity-literal", ["verify-values", "case.json", "v.json", "--json", "r.json"], 1, "NEW",
      files={"case.json": case_json(), "v.json": values_json(raw={"grad_beta": "[Infinity, -Infinity]"})},
      json="r.json", verdicts={"grad_G2": "pass"}, broken=("grad_beta",)),
    H("nul-bytes-in-derivation", ["verify", "d.py", *TINY], 2, "NEW",
      files={"d.py": (NP + G2_OK).encode() + b"\n# \x00\x00\n"}),
    H("nul-bytes-in-model", ["verify", "d.py", *LN_ARGS], 2, "NEW",
      files={"m.py": LAYERNORM.encode() + b"\n# \x00\n", "d.py": LN_BETA_OK}),
    H("unknown-coding-cookie", ["verify", "d.py", *TINY], 2, "NEW",
      files={"d.py": "# -*- coding: no-such-codec -*-\n" + NP + G2_OK}),
    H("bom-and-latin1-cookie-disagree", ["verify", "d.py", *TINY], 2, "NEW",
      files={"d.py": b"\xef\xbb\xbf# -*- coding: latin-1 -*-\n" + (NP + G2_OK).encode()}),
    H("newline-in-derivation-name-syntax-error", ["verify", "bad\nname.py", *TINY], 2, "NEW",
      files={"bad\nname.py": "def grad_G2(ctx:\n"}),
    H("newline-in-case-name-invalid-json", ["verify-values", "bad\nname.json", "grads.json"], 2, "NEW",
      files={"bad\nname.json": "{not json", "grads.json": values_json()}),
    H("seed-above-2-to-the-64", ["verify", "d.py", *TINY, "--seed", "99999999999999999999"], (0, 2), "NEW",
      files={"d.py": NP + G2_OK}),
    H("stderr-is-dev-full-bad-flag", ["verify", "--shape", "N=0", "--trials", "1"], 2, "NEW", stderr="/dev/full",
      skip=None if os.path.exists("/dev/full") else "no /dev/full"),
]

assert len({c.id for c in CASES}) == len(CASES), "case ids must be unique"


# --------------------------------------------------------------------------------------- harness


@dataclass
class Outcome:
    exit: int | str  # the exit status, or TIMEOUT
    stdout: str
    stderr: str
    peak_mb: float
    wall_s: float
    killed_for_memory: bool


def _strict_json(text: str, where: str):
    def refuse(constant):
        raise ValueError(f"{constant} is not JSON")

    try:
        return json.loads(text, parse_constant=refuse)
    except ValueError as err:
        pytest.fail(f"{where} is not strict JSON: {err}; it begins {text[:200]!r}")


def _make(folder: Path, name: str, content) -> None:
    path = folder / name
    if callable(content):
        content(path)
    elif isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")


def _memory_mb(pid: int) -> tuple[float, float]:
    """(resident now, peak resident) of a running process, in MB, from /proc: VmHWM is the peak of
    the program after exec. wait4's ru_maxrss would also count the forked test process itself, which
    is large late in a full test session."""
    found = {"VmRSS:": 0.0, "VmHWM:": 0.0}
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                key = line.split(maxsplit=1)[0] if line.strip() else ""
                if key in found:
                    found[key] = int(line.split()[1]) / 1024
    except OSError:
        pass
    return found["VmRSS:"], found["VmHWM:"]


def run_case(case: Hostile, folder: Path) -> Outcome:
    work, io = folder / "work", folder / "io"
    work.mkdir()
    io.mkdir()
    for name, content in case.files.items():
        _make(work, name, content)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHONIO")}
    env.update(PYTHONPATH=str(REPO), BNCHECK_COMPILE_CACHE="off", **case.env)
    out_path, err_path = io / "stdout", io / "stderr"
    with open(case.stdout or out_path, "wb") as out, open(case.stderr or err_path, "wb") as err:
        start = time.monotonic()
        proc = subprocess.Popen([sys.executable, "-m", "bncheck", *case.args], cwd=work, env=env,
                                stdin=subprocess.DEVNULL, stdout=out, stderr=err, start_new_session=True)
    killed_for_memory = timed_out = False
    peak_mb = 0.0
    while True:
        pid, status = os.waitpid(proc.pid, os.WNOHANG)
        if pid:
            break
        now_mb, high_mb = _memory_mb(proc.pid)
        peak_mb = max(peak_mb, now_mb, high_mb)
        if peak_mb > case.memory_mb and not killed_for_memory:
            killed_for_memory = True
            os.killpg(proc.pid, signal.SIGKILL)
        elif time.monotonic() - start > case.timeout and not timed_out:
            timed_out = True
            os.killpg(proc.pid, signal.SIGKILL)
        time.sleep(0.02)
    proc.returncode = os.waitstatus_to_exitcode(status)
    # Anything the case left running in its session (a daemon's child) goes with it.
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    read = lambda p: p.read_bytes().decode("utf-8", "replace") if p.exists() else ""  # noqa: E731
    return Outcome(
        exit=TIMEOUT if timed_out else proc.returncode,
        stdout="" if case.stdout else read(out_path),
        stderr="" if case.stderr else read(err_path),
        peak_mb=peak_mb,
        wall_s=time.monotonic() - start,
        killed_for_memory=killed_for_memory,
    )


class Pool:
    """Runs the selected cases in the background, the longest first, and hands out each outcome."""

    def __init__(self, cases: list[Hostile], base: Path):
        self.folders = {c.id: base / f"case{i}" for i, c in enumerate(cases)}
        self.executor = concurrent.futures.ThreadPoolExecutor(max_workers=max(1, JOBS))
        self.futures = {}
        for case in sorted(cases, key=lambda c: -c.timeout):
            self.folders[case.id].mkdir()
            self.futures[case.id] = self.executor.submit(run_case, case, self.folders[case.id])

    def get(self, case: Hostile) -> tuple[Outcome, Path]:
        return self.futures[case.id].result(), self.folders[case.id] / "work"


@pytest.fixture(scope="session")
def hostile_pool(request, tmp_path_factory):
    selected = [
        item.callspec.params["case"] for item in request.session.items
        if getattr(item, "callspec", None) and isinstance(item.callspec.params.get("case"), Hostile)
        and not item.callspec.params["case"].skip
    ]
    pool = Pool(selected, tmp_path_factory.mktemp("hostile"))
    yield pool
    pool.executor.shutdown(wait=True, cancel_futures=True)


def _report_of(doc: dict) -> dict[str, str]:
    reports = doc["files"] if "files" in doc else [doc]
    return {c["name"]: c["status"] for r in reports for c in r["checks"]}


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in CASES])
def test_hostile(case: Hostile, hostile_pool):
    if case.skip:
        pytest.skip(case.skip)
    snapshot = {name: case.files[name] for name in case.unchanged}
    out, folder = hostile_pool.get(case)
    shown = (f"exit {out.exit}, {out.wall_s:.1f} s, peak {out.peak_mb:.0f} MB\n"
             f"stdout:\n{out.stdout[-3000:]}\nstderr:\n{out.stderr[-3000:]}")

    assert not out.killed_for_memory, f"grew past {case.memory_mb} MB and was stopped; {shown}"
    assert out.peak_mb <= case.memory_mb, f"peak {out.peak_mb:.0f} MB over the bound {case.memory_mb} MB; {shown}"
    assert out.exit in case.exit, f"expected exit {' or '.join(map(str, case.exit))}; {shown}"
    assert "Traceback" not in out.stdout + out.stderr, f"a traceback leaked; {shown}"
    assert "internal error" not in out.stderr, f"an internal error; {shown}"
    if out.exit == 2 and not case.stderr:
        lines = out.stderr.rstrip("\n").split("\n")
        said = lines[0].removeprefix("bncheck: error:").strip()
        assert len(lines) == 1 and lines[0].startswith("bncheck: error:") and said, (
            f"exit 2 must say why on exactly one line, got {len(lines)}; {shown}"
        )
    if case.max_output is not None:
        size = len(out.stdout) + len(out.stderr)
        assert size <= case.max_output, f"{size} characters of output, over {case.max_output}; {shown[:2000]}"

    for marker in ("PWNED", *case.absent):
        found = list(folder.rglob(marker))
        assert not found, f"{marker} exists: {found}; {shown}"
    for name, content in snapshot.items():
        expected = content if isinstance(content, bytes) else content.encode()
        assert (folder / name).read_bytes() == expected, f"{name} was overwritten; {shown}"

    if out.exit in (0, 1):
        docs = []
        if case.stdout_json:
            docs.append(_strict_json(out.stdout, "standard output"))
        if case.json:
            path = folder / case.json
            assert path.is_file(), f"{case.json} was not written; {shown}"
            docs.append(_strict_json(path.read_text(encoding="utf-8"), case.json))
        if case.junit:
            path = folder / case.junit
            assert path.is_file(), f"{case.junit} was not written; {shown}"
            try:
                ET.parse(path)
            except ET.ParseError as err:
                pytest.fail(f"{case.junit} is not well-formed XML: {err}")
        for doc in docs:
            statuses = _report_of(doc)
            for name, status in case.verdicts.items():
                assert statuses.get(name) == status, f"{name}: {statuses.get(name)}, expected {status}; {statuses}"
            for name in case.broken:
                assert statuses.get(name) not in (None, "pass"), f"{name} must not pass: {statuses}"
    if case.extra is not None:
        case.extra(out, folder)


def test_every_issue_item_is_covered():
    assert {c.item for c in CASES} >= {"1", "2", "3", "4", "5", "6", "7", "8", "9"}
    assert sum(c.item == "NEW" for c in CASES) >= 25
