"""A run over several processes (--processes, jax.distributed): each process sweeps its share of the
draws, and their tallies merge into those one process would have kept (bncheck.hosts)."""

from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import sys
from dataclasses import replace

import pytest
from conftest import DERIVATIONS, REPO, SMALL
from test_cli import all_output, assert_one_line_error, invoke

from bncheck.draws import plan
from bncheck.engine import Engine, scope
from bncheck.errors import BncheckError
from bncheck.hosts import digest, merged
from bncheck.loader import load_derivation
from bncheck.models import get_model
from bncheck.settings import resolve
from bncheck.sweep import run_sweep as sweep_engine

# A derivation wrong in several ways at some draws and right at the others: each of its checks keeps a
# different kind of draw, for the merge to put back in draw order.
MIXED = (DERIVATIONS / "correct_numpy.py").read_text(encoding="utf-8") + '''

_grad_beta, _grad_gamma, _grad_G2 = grad_beta, grad_gamma, grad_G2


def grad_beta(ctx):  # raises where N is a multiple of 3
    if ctx.N % 3 == 0:
        raise ValueError(f"no beta at N = {ctx.N}")
    return _grad_beta(ctx)


def grad_gamma(ctx):  # 1.5 times too large where N is a multiple of 4
    return _grad_gamma(ctx) * (1.5 if ctx.N % 4 == 0 else 1.0)


def grad_G2(ctx):  # transposed where p2 = 3 and k = 1: the wrong shape
    g = _grad_G2(ctx)
    return g.T if ctx.p2 == 3 and ctx.k == 1 else g
'''


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    path = tmp_path_factory.mktemp("hosts") / "mixed.py"
    path.write_text(MIXED, encoding="utf-8")
    return path


def _draw_of(found) -> int | None:
    return None if found is None else found[0].seed


def test_the_shares_of_three_processes_merge_into_the_tallies_of_one_sweep(mixed):
    """Without jax.distributed: the draws shared three ways, each share swept on its own, and their
    digests merged, give the counts, worst draws, first problems, raises and samples of one sweep."""
    settings = resolve({"trials": 40}, SMALL)
    model = get_model(settings.model, settings.to_dict())
    derivation = load_derivation(str(mixed), model)
    with scope(settings.device):
        engine = Engine(model, settings)
        whole = sweep_engine(engine, derivation)
        digests = [digest(sweep_engine(engine, derivation, plan(settings, model).share(i, 3))) for i in range(3)]
        shared = merged(whole, digests)
    assert shared.draws == whole.draws == 40 and shared.processes == 3
    assert shared.chunk == whole.chunk  # a round of shrinking takes as many draws as one process's would
    assert shared.redrawn == whole.redrawn
    for name, one in whole.tallies.items():
        got = shared.tallies[name]
        for key in ("ran", "compared", "skipped", "failures", "raises", "vanishing", "broken"):
            assert getattr(got, key) == getattr(one, key), (name, key)
        assert got.max_abs == pytest.approx(one.max_abs, rel=1e-6, abs=1e-13), name
        assert (got.worst is None) == (one.worst is None)
        assert _draw_of(got.first_problem) == _draw_of(one.first_problem), name
        assert _draw_of(got.error) == _draw_of(one.error), name
        assert got.raise_shapes == one.raise_shapes, name
        assert [d.seed for d, _, _ in got.samples] == [d.seed for d, _, _ in one.samples], name
        if one.failures and one.first_problem is None:
            assert got.worst[0].seed == one.worst[0].seed, name
            assert got.worst_values[0] == pytest.approx(one.worst_values[0], rel=1e-9, abs=1e-12)
            # A draw from another process is made again: the diagnosis and shrinking read its arrays.
            assert got.worst[0].arrays.keys() == one.worst[0].arrays.keys()
            for key, array in one.worst[0].arrays.items():
                assert (got.worst[0].arrays[key] == array).all(), key
    # Each kind of draw is there to be merged: a failure by value, a wrong shape, a raise.
    assert whole.tallies["grad_gamma"].failures and whole.tallies["grad_gamma"].first_problem is None
    assert whole.tallies["grad_G2"].first_problem is not None
    assert whole.tallies["grad_beta"].raises and len(whole.tallies["grad_beta"].raise_shapes) > 1
    assert shared.tallies["grad_beta"].error[1] == whole.tallies["grad_beta"].error[1]


def test_a_share_without_draws_adds_none_and_processes_of_other_runs_are_refused():
    settings = resolve({"trials": 2}, SMALL)
    model = get_model(settings.model, settings.to_dict())
    derivation = load_derivation(str(DERIVATIONS / "slip_flipped_sign.py"), model)
    with scope(settings.device):
        engine = Engine(model, settings)
        sweeps = [sweep_engine(engine, derivation, plan(settings, model).share(i, 3)) for i in range(3)]
        assert [s.draws for s in sweeps] == [1, 1, 0]
        shared = merged(sweeps[0], [digest(s) for s in sweeps])
        assert shared.draws == 2 and {t.ran for t in shared.tallies.values()} == {2}
        assert shared.tallies["grad_beta"].failures == 2 and shared.tallies["grad_gamma"].failures == 0
        other = replace(settings, seed=1)
        elsewhere = sweep_engine(Engine(model, other), derivation, plan(other, model).share(1, 2))
        with pytest.raises(BncheckError, match=r"^processes: process 1 ran with seed 1, process 0 with 0; give every"):
            merged(sweeps[0], [digest(sweeps[0]), digest(elsewhere)])


@pytest.mark.parametrize("flags, fragments", [
    (["--process-id", "1"], ["process_id:", "--processes N"]),
    (["--coordinator", "localhost:4321"], ["coordinator:", "--processes N"]),
    (["--processes", "2", "--coordinator", "localhost:4321"], ["processes:", "--process-id", "0 to 1"]),
    (["--processes", "2", "--process-id", "0"], ["processes:", "--coordinator HOST:PORT"]),
    (["--processes", "2", "--process-id", "2", "--coordinator", "localhost:4321"], ["process_id:", "below"]),
    (["--processes", "2", "--process-id", "0", "--coordinator", "localhost"], ["coordinator:", "HOST:PORT"]),
    (["--processes", "2", "--process-id", "0", "--coordinator", "host:99999"], ["coordinator:", "HOST:PORT"]),
    (["--processes", "0"], ["processes:", "between 1 and"]),
])
def test_a_run_over_several_processes_is_refused_in_one_line_without_what_it_needs(flags, fragments):
    assert_one_line_error(invoke(["verify", "--trials", "2", *flags]), *fragments)


def _free_port() -> int:
    """A port free now, below Linux's ephemeral range (32768 and up), where the connections the
    processes open between themselves cannot take it before process 0 listens on it."""
    for port in random.sample(range(20000, 32000), 100):
        with socket.socket() as s:
            try:
                s.bind(("localhost", port))
            except OSError:
                continue
            return port
    raise OSError("no free port between 20000 and 32000")


def _bncheck(args: list[str], processes: int = 1, devices: int = 1) -> list[subprocess.CompletedProcess]:
    """bncheck verify as `processes` processes joined on this host, each with `devices` CPU devices."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "BNCHECK_COMPILE_CACHE": "off",
           "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}
    base = [sys.executable, "-m", "bncheck", "verify", *map(str, args)]
    if processes == 1:
        return [subprocess.run(base, capture_output=True, text=True, env=env, timeout=600)]
    where = ["--processes", str(processes), "--coordinator", f"localhost:{_free_port()}"]
    runs = [subprocess.Popen([*base, *where, "--process-id", str(i)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, env=env) for i in range(processes)]
    done = []
    for run in runs:
        out, err = run.communicate(timeout=600)
        done.append(subprocess.CompletedProcess(run.args, run.returncode, out, err))
    return done


def test_two_processes_report_what_one_process_reports_and_exit_alike(mixed, tmp_path):
    files = [DERIVATIONS / "correct_numpy.py", mixed, DERIVATIONS / "slip_batch_stats_constant.py"]
    common = [*files, "--config", SMALL, "--trials", "30", "--activation", "tanh"]
    one, = _bncheck([*common, "--json", tmp_path / "one.json"])
    two = _bncheck([*common, "--json", tmp_path / "two.json"], processes=2)
    for run in (one, *two):
        assert run.returncode == 1, run.stderr[-3000:]
    assert two[1].stdout == ""  # process 1 holds the same report and leaves it to process 0
    assert "cpu devices of 2 processes" in two[0].stdout.replace("\n", " ")
    alone, joined = (json.loads((tmp_path / name).read_text()) for name in ("one.json", "two.json"))
    assert (alone["passed"], joined["passed"]) == (False, False)
    for a, b in zip(alone["files"], joined["files"], strict=True):
        assert (a["draws"], a["redrawn"], a["processes"], b["processes"], b["devices"]) == (30, b["redrawn"], 1, 2, 2)
        for x, y in zip(a["checks"], b["checks"], strict=True):
            assert (x["name"], x["status"], x["trials"], x.get("raised")) == (y["name"], y["status"], y["trials"],
                                                                            y.get("raised")), x["name"]
            assert (x["diagnosis"] or {}).get("code") == (y["diagnosis"] or {}).get("code"), x["name"]
            if x["status"] == "fail":
                assert (x["worst"]["seed"], x["worst"]["shape"]) == (y["worst"]["seed"], y["worst"]["shape"])
                assert x["replay"] == y["replay"] and x.get("smallest") == y.get("smallest")
            if x["max_abs_err"] is not None:
                assert y["max_abs_err"] == pytest.approx(x["max_abs_err"], rel=1e-6, abs=1e-13)
    statuses = {c["name"]: c["status"] for c in joined["files"][1]["checks"]}
    assert (statuses["grad_beta"], statuses["grad_gamma"], statuses["grad_G2"], statuses["grad_G1"]) == (
        "fail", "fail", "fail", "pass")


def test_two_processes_of_two_devices_pass_a_right_derivation_and_both_exit_0(tmp_path):
    runs = _bncheck([DERIVATIONS / "correct_numpy.py", "--config", SMALL, "--trials", "8", "--json",
                     tmp_path / "report.json"], processes=2, devices=2)
    assert [r.returncode for r in runs] == [0, 0], runs[0].stderr[-3000:] + runs[1].stderr[-3000:]
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["passed"] and report["draws"] == 8 and (report["processes"], report["devices"]) == (2, 4)
    assert all(c["trials"] == 8 for c in report["checks"] if c["status"] == "pass")


def test_two_processes_sweeping_a_model_option_join_once_and_report_what_one_process_reports(tmp_path):
    """A swept option is a run per value, each over both processes: the reports merge per value, then
    over the values, as in one process (the smallest case too: shrinking takes one process's rounds)."""
    common = [DERIVATIONS / "group_norm" / "slip_statistics_over_wrong_axes.py", "--model", "group-norm",
              "--groups", "1:2", "--trials", "12"]
    one, = _bncheck([*common, "--json", tmp_path / "one.json"])
    two = _bncheck([*common, "--json", tmp_path / "two.json"], processes=2)
    assert [r.returncode for r in (one, *two)] == [1, 1, 1], two[0].stderr[-3000:] + two[1].stderr[-3000:]
    alone, joined = (json.loads((tmp_path / name).read_text()) for name in ("one.json", "two.json"))
    assert (alone["processes"], joined["processes"], joined["devices"]) == (1, 2, 2)
    for x, y in zip(alone["checks"], joined["checks"], strict=True):
        for key in ("status", "trials", "worst", "smallest", "replay", "diagnosis"):
            if key == "worst" and x["status"] == "pass":
                continue  # the draw nearest its allowance among passing draws: rounding may pick another
            assert x[key] == y[key], (x["name"], key)


def test_a_process_that_used_jax_before_joining_is_told_why_it_cannot_join():
    code = ("import jax.numpy as jnp; jnp.zeros(2) + 1\n"
            "from bncheck import verify\n"
            f"verify(None, trials=2, processes=2, process_id=0, coordinator='localhost:{_free_port()}')\n")
    env = {**os.environ, "PYTHONPATH": str(REPO), "BNCHECK_COMPILE_CACHE": "off"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("bncheck.errors.BncheckError: coordinator: process 0 of 2 could not join"), last
    assert "before any JAX calls" in last or "initialize" in last, last


def test_one_process_needs_no_coordinator_and_runs_alone(tmp_path):
    result = invoke(["verify", "--config", SMALL, "--trials", "3", "--processes", "1", "--json", tmp_path / "r.json"])
    assert result.exit_code == 0, all_output(result)
    report = json.loads((tmp_path / "r.json").read_text())
    assert (report["passed"], report["draws"], report["processes"]) == (True, 3, 1)
