"""--device auto and gpu: a GPU only where a sweep's draws are large enough for it to pay, the CPU
below that, and the report says which ran. The choice is tested on the CPU, a GPU pretended."""

from __future__ import annotations

import jax
import pytest
from conftest import DERIVATIONS, SMALL

import bncheck.engine as engine
from bncheck.engine import choose_device
from bncheck.models import get_model
from bncheck.settings import resolve

MODEL = get_model("bn-mlp")


@pytest.fixture
def a_gpu(monkeypatch):
    """JAX seeing a GPU, as far as choose_device asks."""
    monkeypatch.setattr(engine, "_visible", lambda name: True)
    monkeypatch.setattr(engine, "device", lambda name: name)


@pytest.mark.parametrize("asked", ["gpu", "auto"])
def test_a_gpu_is_chosen_only_for_draws_large_enough_for_it_to_pay(a_gpu, asked):
    default = resolve({"device": asked}, None)  # the default sweep: draws of under 1 MB
    assert choose_device(MODEL, default) == "cpu"
    large = resolve({"device": asked, "shape": "N=4096,p1=512,p2=256,k=1", "max_memory_mb": 10**6}, None)
    assert choose_device(MODEL, large) == "gpu"
    assert choose_device(MODEL, resolve({"device": "cpu", "shape": "N=4096,p1=512,p2=256,k=1"}, None)) == "cpu"


def test_the_threshold_sits_between_the_measured_sizes():
    """Measured on an H200 machine: the default sweep and (64, 32, 16) ran faster on its CPU, (4096,
    512, 256) many times faster on its GPU."""
    def need(shape: str) -> int:
        settings = resolve({"shape": shape, "max_memory_mb": 10**6}, None)
        eng = engine.Engine(MODEL, settings)
        checks = [c for c in map(MODEL.check, MODEL.checks) if c is not None]
        return eng.draw_bytes(checks, eng.bucket(eng.largest))

    assert not engine.gpu_pays(need("N=64,p1=32,p2=16,k=1"))
    assert engine.gpu_pays(need("N=4096,p1=512,p2=256,k=1"))


def test_auto_without_a_gpu_runs_on_the_cpu_and_says_so(run):
    if engine._visible("gpu"):
        pytest.skip("JAX sees a GPU here")
    report = run(str(DERIVATIONS / "correct_numpy.py"), config=SMALL, device="auto", trials=4)
    assert report.passed and (report.device, report.devices) == ("cpu", len(jax.local_devices(backend="cpu")))
    assert report.to_dict()["device"] == "cpu"
