"""The shipped configs say what they claim: default.toml is the built-in defaults written out, and
seed-question.toml is CONTRACT §1's reproduction of the seed question."""

from conftest import REPO

from bncheck.settings import Settings, resolve

CONFIGS = REPO / "configs"


def test_default_toml_is_the_builtin_default():
    assert resolve({}, CONFIGS / "default.toml") == resolve({})
    assert resolve({}).trials >= 200


def test_seed_question_toml_matches_the_contract():
    s = resolve({}, CONFIGS / "seed-question.toml")
    assert (s.activation, s.ddof, s.eps) == ("relu", 1, 0.0)
    assert dict(s.shape) == {"N": 10, "p1": 7, "p2": 4, "k": 1}


def test_ci_toml_is_small_and_requires_the_gradients():
    s = resolve({}, CONFIGS / "ci.toml")
    assert s.trials < Settings.trials
    assert set(s.require) == {"beta", "gamma", "G1", "G2"}


def test_a_config_never_imports_a_model_file(tmp_path):
    """Nothing read from a config is imported: a model file is named with --model or verify(model=...)."""
    import pytest

    from bncheck.errors import SettingsError

    (tmp_path / "model.py").write_text('import pathlib\npathlib.Path(__file__).with_name("PWNED").write_text("ran")\n')
    config = tmp_path / "config.toml"
    config.write_text(f'model = "{tmp_path / "model.py"}"\n')
    with pytest.raises(SettingsError, match="names a model file, and a config never does"):
        resolve({}, config)
    assert not (tmp_path / "PWNED").exists()
    config.write_text('model = "mlp"\n')
    assert resolve({}, config).model == "mlp"
