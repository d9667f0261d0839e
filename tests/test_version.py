"""`bncheck --version`: one line naming the version, exit 0, and no JAX import on the way."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

from typer.testing import CliRunner

import bncheck
from bncheck.cli import app

ROOT = Path(__file__).resolve().parent.parent


def test_version_prints_the_package_version():
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0, result.output
    assert result.output == f"bncheck {bncheck.__version__}\n"


def test_version_agrees_with_the_distribution_metadata():
    # pyproject.toml's version is what pip records and what a CI cache key built from `bncheck --version`
    # stands for; __version__ must not drift from it.
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert bncheck.__version__ == declared


def test_version_does_not_import_jax():
    # -X importtime lists every module the process imports, on stderr.
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "bncheck", "--version"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"bncheck {bncheck.__version__}\n"
    imported = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if "|" in line}
    assert "typer" in imported  # the listing is real, so the absence below means something
    assert not {name for name in imported if name == "jax" or name.startswith(("jax.", "jaxlib"))}


def test_a_command_still_runs_and_unknown_options_still_fail():
    # The top-level option must not swallow the commands or turn a bad option into a pass.
    assert CliRunner().invoke(app, ["models"]).exit_code == 0
    assert CliRunner().invoke(app, ["--versoin"]).exit_code == 2
