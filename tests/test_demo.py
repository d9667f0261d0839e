"""`bncheck demo centering`: the numbers of the BN paper's thought experiment, and the command."""

import numpy as np
import pytest
from test_cli import assert_one_line_error, invoke

from bncheck.demo import centering
from bncheck.errors import SettingsError
from bncheck.report.demo import sparkline


@pytest.fixture(scope="module")
def demo():
    return centering(steps=60, lr=0.7, seed=3)


def test_naive_b_grows_linearly_without_bound(demo):
    naive = demo.naive
    step = 0.7 * np.linalg.norm(naive.grad_b)
    assert step > 0.1
    # Every step moves b by the same vector, so ‖b_k − b_0‖ = k · lr · ‖dR/db‖ exactly.
    np.testing.assert_allclose(naive.drift, step * np.arange(61), rtol=1e-10, atol=1e-12)
    assert naive.b_norm[-1] > naive.b_norm[0] + 0.9 * 60 * step
    assert all(later > earlier for earlier, later in zip(naive.b_norm[30:], naive.b_norm[31:]))


def test_honest_b_stays_where_it_is(demo):
    honest = demo.honest
    assert honest.grad_b == (0.0,) * 4
    assert set(honest.b_norm) == {demo.naive.b_norm[0]} and set(honest.drift) == {0.0}
    assert np.abs(demo.autodiff_grad_b).max() < 1e-12  # jax.grad agrees with the honest zero


def test_loss_stays_where_it_is_under_both(demo):
    for trajectory in (demo.naive, demo.honest):
        np.testing.assert_allclose(trajectory.loss, trajectory.loss[0], rtol=1e-12)
        assert trajectory.loss_change <= 1e-12 * trajectory.loss[0]
    assert demo.naive.loss[0] == demo.honest.loss[0]


def test_the_naive_step_is_the_papers_delta_b(demo):
    """Seed 002: Δb ∝ −∂ℓ/∂x̂, summed over the batch; with ℓ = Σ(x̂ − t)²/N and Σ x̂ = 0 that is the
    batch sum of the target, (2/N) Σ t, the same at every b."""
    rng = np.random.default_rng(3)
    rng.standard_normal((8, 3))  # x1, drawn first
    t = rng.standard_normal((8, 4))
    np.testing.assert_allclose(demo.naive.grad_b, -(2 / 8) * t.sum(axis=0), rtol=1e-12)


@pytest.mark.parametrize("kwargs,field", [({"steps": 0}, "steps"), ({"lr": -1.0}, "lr"), ({"lr": float("nan")}, "lr"), ({"seed": -2}, "seed")])
def test_bad_settings_name_the_field(kwargs, field):
    with pytest.raises(SettingsError, match=f"^{field}: "):
        centering(**kwargs)


def test_sparkline_scales_to_the_top_and_samples_long_runs():
    assert sparkline((0.0, 0.5, 1.0), 1.0) == "▁▅█"
    assert sparkline((3.0,) * 5, 0.0) == "▁▁▁▁▁"
    line = sparkline(tuple(float(k) for k in range(1000)), 999.0)
    assert len(line) == 28 and line[0] == "▁" and line[-1] == "█"


def test_command_shows_chart_and_table():
    result = invoke(["demo", "centering", "--steps", "12", "--lr", "0.5", "--seed", "2"])
    assert result.exit_code == 0, result.output
    run = centering(steps=12, lr=0.5, seed=2)
    out = result.output
    assert "naive" in out and "honest" in out and "E[x]" in out
    assert f"{run.naive.b_norm[0]:.3g} → {run.naive.b_norm[-1]:.3g}" in out  # ‖b‖ grows under naive
    assert f"{run.honest.b_norm[0]:.3g} → {run.honest.b_norm[0]:.3g}" in out  # and stays under honest
    assert f"{run.naive.loss[0]:.4g} → {run.naive.loss[0]:.4g}" in out
    chart_naive, chart_honest = (next(line for line in out.splitlines() if line.startswith(w + " ")) for w in ("naive", "honest"))
    assert chart_naive.split()[1].endswith("█")  # the chart's ‖b‖ ends at the top under naive
    assert len(set(chart_honest.split()[1])) == 1  # and is flat under honest


def test_command_rejects_bad_steps():
    assert_one_line_error(invoke(["demo", "centering", "--steps", "0"]), "steps: must be between 1 and")


@pytest.mark.parametrize("lr", ["1e308", "1e200"])
def test_a_learning_rate_that_overflows_b_is_one_line_naming_lr(lr):
    line = assert_one_line_error(invoke(["demo", "centering", "--lr", lr]), "lr: ", "overflows")
    assert "choose a smaller lr" in line
    with pytest.raises(SettingsError, match="^lr: .* overflows after"):
        centering(lr=float(lr))
