"""`--reference fd`: central differences as a third opinion, and the report's account of who agrees."""

from __future__ import annotations

import json
from dataclasses import replace

from conftest import DERIVATIONS, SMALL
from typer.testing import CliRunner

from bncheck.cli import app
from bncheck.loader import load_derivation
from bncheck.models import get_model
from bncheck.pipeline import check
from bncheck.settings import resolve


def _references(report) -> dict[str, dict]:
    return {c.name: c.references for c in report.checks if c.status != "missing"}


def test_correct_derivations_agree_with_both_references_and_warn_of_nothing(run):
    for derivation in ("closed-form", "kronecker"):
        report = run(derivation, reference="fd")
        assert report.passed and report.warnings == []
        for name, refs in _references(report).items():
            assert set(refs) == {"jax.grad" if name.startswith("grad_") else
                                 "jax.jvp" if name.startswith("jvp_") else "jax.jacfwd", "fd"}
            assert all(refs.values()), (derivation, name, refs)


def test_correct_derivations_agree_with_fd_at_eps_0_and_in_float32(run):
    for flags in ({"activation": "tanh", "ddof": 1, "eps": 0.0}, {"dtype": "float32"}):
        report = run("closed-form", reference="fd", **flags)
        assert report.passed and report.warnings == [], flags
        assert all(refs["fd"] for refs in _references(report).values()), flags


def test_a_slip_disagrees_with_fd_too(run):
    report = run(str(DERIVATIONS / "slip_dropped_inv_n.py"), reference="fd")
    refs = _references(report)
    assert refs["grad_G2"] == {"jax.grad": False, "fd": False}
    assert refs["grad_beta"] == {"jax.grad": True, "fd": True}
    assert report.warnings == []


def test_autodiff_that_disagrees_with_the_forward_values_is_flagged():
    """A forward whose custom JVP doubles the tangent of gamma: jax.grad's dR/dgamma is twice the true
    one, which the differences of the forward values measure. The correct derivation then fails
    against jax.grad, agrees with fd, and the report warns that the two references disagree."""
    import jax

    @jax.custom_jvp
    def doubled_tangent(x):
        return x

    @doubled_tangent.defjvp
    def _(primals, tangents):
        return primals[0], 2 * tangents[0]

    settings = resolve({"reference": "fd", "activation": "tanh"}, SMALL)
    base = get_model(settings.model, settings.to_dict())
    model = replace(
        base, forward=lambda cfg, masks, **a: base.forward(cfg, masks, **{**a, "gamma": doubled_tangent(a["gamma"])})
    )
    derivation = load_derivation("closed-form", model)
    report = check(model, settings, derivation)
    refs = _references(report)
    assert refs["grad_gamma"] == {"jax.grad": False, "fd": True}
    assert refs["grad_beta"] == {"jax.grad": True, "fd": True}
    assert refs["jvp_B_gamma"] == {"jax.jvp": False, "fd": True}
    assert {w["check"] for w in report.warnings} == {"grad_gamma", "jvp_B_gamma"}
    assert any(w["message"].startswith("jax.grad and central differences disagree") for w in report.warnings)


def test_reference_from_the_config_file_and_in_the_json(tmp_path):
    config = tmp_path / "fd.toml"
    config.write_text('reference = "fd"\n' + SMALL.read_text())
    result = CliRunner().invoke(app, ["verify", "--config", str(config), "--trials", "3", "--json", "-"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["settings"]["reference"] == "fd" and report["warnings"] == []
    assert {c["name"]: c["references"] for c in report["checks"]}["grad_G1"] == {"jax.grad": True, "fd": True}


def test_an_unknown_reference_is_a_one_line_error():
    result = CliRunner().invoke(app, ["verify", "--reference", "numeric", "--trials", "1"])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert lines == ["bncheck: error: reference: unknown reference 'numeric'; choose one of autodiff, fd"]


def test_differences_across_a_relu_kink_give_no_opinion(run, monkeypatch):
    """With a step this large every perturbed forward moves some pre-activation across 0: those
    quotients straddle the kink, so they must be left out rather than compared."""
    import bncheck.references

    monkeypatch.setattr(bncheck.references, "FD_STEP", 10.0)
    report = run("closed-form", reference="fd", trials=4)
    assert report.passed
    refs = _references(report)
    # G2 acts after the activation: moving it moves no pre-activation, and R is quadratic in it.
    assert refs.pop("grad_G2")["fd"] is True
    assert all(r["fd"] is None for r in refs.values())
    assert {w["check"] for w in report.warnings} == set(refs)
    assert all(w["message"] == "fd: not run: every differenced draw crossed a relu kink" for w in report.warnings)
