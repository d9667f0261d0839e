"""Demonstrations that run a seed's argument on numbers. `centering`: the BN paper's section 2 (seed 002).

The paper: a layer adds a learned bias, x = u + b, and normalises by centring, x̂ = x − E[x]. If a
gradient step ignores that E[x] depends on b, it moves b by Δb ∝ −∂ℓ/∂x̂ and then

    u + (b + Δb) − E[u + (b + Δb)] = u + b − E[u + b]

so neither the layer's output nor the loss changes, and the next step moves b again: b grows without
bound while the loss stays where it is. Here both built-in derivations of the `centering` model drive
gradient descent on b alone (x₁, W and the target t fixed): `naive` (E[x] held constant) and
`closed-form` (the honest gradient, which is zero). The computation returns data; the rendering is
bncheck.report.demo.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from bncheck.errors import SettingsError

DEFAULT_DIMS = {"N": 8, "m": 3, "n": 4}
MAX_STEPS = 100_000


@dataclass(frozen=True)
class Trajectory:
    """Gradient descent on b with one derivation's ∂R/∂b; entry k is after k steps (0: the start)."""

    derivation: str
    grad_b: tuple[float, ...]  # the derivation's ∂R/∂b at the start
    b_norm: tuple[float, ...]  # ‖b_k‖
    drift: tuple[float, ...]  # ‖b_k − b_0‖
    loss: tuple[float, ...]  # R at b_k

    @property
    def growth_per_step(self) -> float:
        return self.drift[-1] / (len(self.drift) - 1)

    @property
    def loss_change(self) -> float:
        """The largest |R_k − R_0| over the run."""
        return max(abs(r - self.loss[0]) for r in self.loss)


@dataclass(frozen=True)
class CenteringDemo:
    dims: dict[str, int]
    steps: int
    lr: float
    seed: int
    naive: Trajectory
    honest: Trajectory
    autodiff_grad_b: tuple[float, ...]  # jax.grad's ∂R/∂b at the start, for comparison


def _check(steps: int, lr: float, seed: int) -> None:
    if not 1 <= steps <= MAX_STEPS:
        raise SettingsError(f"steps: must be between 1 and {MAX_STEPS}, got {steps}")
    if not (math.isfinite(lr) and lr > 0):
        raise SettingsError(f"lr: must be a finite number > 0, got {lr}")
    if seed < 0:
        raise SettingsError(f"seed: must be >= 0, got {seed}")


def centering(steps: int = 40, lr: float = 1.0, seed: int = 0, dims: dict[str, int] | None = None) -> CenteringDemo:
    """Runs `steps` gradient steps b ← b − lr ∂R/∂b with the naive and the honest gradient from the
    same start (x₁, t, W, b standard normal, drawn from `seed`)."""
    _check(steps, lr, seed)
    from bncheck.draws import Ctx, Draw
    from bncheck.engine import Engine, Record, scope
    from bncheck.loader import load_derivation
    from bncheck.models import get_model
    from bncheck.settings import resolve

    dims = dict(dims or DEFAULT_DIMS)
    settings = resolve({"model": "centering", "shape": ",".join(f"{k}={v}" for k, v in dims.items()), "trials": 1})
    model = get_model("centering")
    rng = np.random.default_rng(seed)
    start = {name: rng.standard_normal(shape) for name, shape in {**model.inputs(dims), **model.params(dims)}.items()}

    def run(engine: Engine, derivation: str) -> Trajectory:
        grad_b = load_derivation(derivation, model).functions["grad_b"]
        arrays = dict(start)
        norms, drifts, losses, first = [], [], [], None
        for k in range(steps + 1):
            record = engine.forward_record(Draw(seed, dims, arrays=arrays), "float64")
            # Overflow is checked below, as a message: numpy's warnings would only precede it.
            with np.errstate(over="ignore", invalid="ignore"):
                norms.append(float(np.linalg.norm(arrays["b"])))
                drifts.append(float(np.linalg.norm(arrays["b"] - start["b"])))
            losses.append(float(record.pop("R")))
            if not all(map(math.isfinite, (norms[-1], drifts[-1], losses[-1]))):
                raise SettingsError(
                    f"lr: {lr:g} is too large: b overflows after {k} of {steps} steps "
                    f"(each naive step moves it by lr·‖dR/db‖); choose a smaller lr"
                )
            if k == steps:
                break
            g = np.asarray(grad_b(Ctx({**arrays, **record, **dims})), dtype=np.float64)
            first = g if first is None else first
            with np.errstate(over="ignore", invalid="ignore"):
                arrays = {**arrays, "b": arrays["b"] - lr * g}
        return Trajectory(derivation, tuple(map(float, first)), tuple(norms), tuple(drifts), tuple(losses))

    with scope(settings.device):
        engine = Engine(model, settings)
        naive, honest = run(engine, "naive"), run(engine, "closed-form")
        records: dict[int, Record] = {}
        draw = Draw(seed, dims, arrays=start)
        engine.references([model.check("grad_b")], [draw], records, 1)
        autodiff = records[id(draw)].exact["grad_b"]
    return CenteringDemo(
        dims=dims, steps=steps, lr=lr, seed=seed,
        naive=naive, honest=honest,
        autodiff_grad_b=tuple(map(float, np.asarray(autodiff))),
    )
