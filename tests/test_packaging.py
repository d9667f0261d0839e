"""What ships around the package agrees with it: the pinned constraints the Docker image installs,
the Dockerfile and its build context, and the settings the GitHub Actions example writes.

The image and the workflow themselves run elsewhere (a docker daemon, a GitHub runner); these tests
hold the parts that drift silently when the package changes beside them."""

from __future__ import annotations

import re
import textwrap
import tomllib
from importlib import metadata

from conftest import REPO
from packaging.requirements import Requirement
from packaging.version import Version

from bncheck.settings import resolve

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
DOCKERFILE = (REPO / "Dockerfile").read_text()
WORKFLOW = (REPO / "examples" / "github-actions" / "bncheck.yml").read_text()


def _pins() -> dict[str, str]:
    pins = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, sep, version = line.partition("==")
            assert sep, f"constraints.txt: {line!r} is not pinned with =="
            pins[_canonical(name)] = version.strip()
    return pins


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_constraints_pin_every_dependency_within_its_declared_range():
    pins = _pins()
    for text in PYPROJECT["project"]["dependencies"]:
        requirement = Requirement(text)
        name = _canonical(requirement.name)
        assert name in pins, f"{requirement.name} is a dependency but constraints.txt does not pin it"
        assert requirement.specifier.contains(pins[name]), f"{name}=={pins[name]} is outside {requirement.specifier}"


def test_constraints_pin_what_the_pinned_packages_need():
    # Checked where this environment holds a pinned package at its pinned version, so that its
    # metadata is the metadata of the pin.
    pins = _pins()
    checked = 0
    for name, version in pins.items():
        try:
            distribution = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        if distribution.version != version:
            continue
        checked += 1
        for text in distribution.requires or []:
            requirement = Requirement(text)
            if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
                continue
            needed = _canonical(requirement.name)
            assert needed in pins, f"{name}=={version} needs {requirement.name}, which constraints.txt does not pin"
            assert requirement.specifier.contains(pins[needed]), f"{name} needs {requirement}, pinned {pins[needed]}"
    assert checked, "no pinned package is installed at its pin here; the closure went unchecked"


def test_the_image_pins_its_python_and_installs_under_the_constraints():
    base = re.search(r"^FROM python:(\d+)\.(\d+)\.(\d+)-\S+$", DOCKERFILE, re.M)
    assert base, "the base image is not pinned to a patch release of python"
    python = Version(".".join(base.groups()))
    assert Requirement(f"python{PYPROJECT['project']['requires-python']}").specifier.contains(python)
    installs = [line for line in DOCKERFILE.splitlines() if "pip install" in line]
    assert installs and all("-c constraints.txt" in line for line in installs)


def test_the_image_runs_unprivileged_with_writable_home_and_cache():
    users = re.findall(r"^USER (\S+)$", DOCKERFILE, re.M)
    assert users and users[-1].split(":")[0] not in ("root", "0")
    env = dict(re.findall(r"\b(HOME|BNCHECK_COMPILE_CACHE)=(\S+)", DOCKERFILE))
    assert env["BNCHECK_COMPILE_CACHE"] == "/cache"
    # A uid given with --user has no home of its own: both folders must be writable by anyone.
    made = re.search(r"mkdir -m 1777 ([^\n&]+)", DOCKERFILE)
    assert made and {env["HOME"], "/cache"} <= set(made.group(1).split())


def test_the_build_context_holds_everything_the_image_copies():
    ignore = [line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()]
    ignore = [line for line in ignore if line and not line.startswith("#")]
    assert ignore[0] == "*", "the context is meant to be an allow-list"
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    copied = set()
    for line in DOCKERFILE.splitlines():
        if line.startswith("COPY "):
            copied.update(part.rstrip("/") for part in line.split()[1:-1] if not part.startswith("--"))
    assert copied and copied <= allowed, f"COPY names {sorted(copied - allowed)}, which .dockerignore leaves out"
    assert all((REPO / name).exists() for name in copied)


def test_the_workflow_writes_the_settings_of_configs_ci_toml(tmp_path):
    heredoc = re.search(r"<<'EOF'\n(.*?)\n *EOF\n", WORKFLOW, re.S)
    assert heredoc, "the workflow no longer writes its settings"
    written = tmp_path / "ci.toml"
    written.write_text(textwrap.dedent(heredoc.group(1)))
    assert resolve({}, written) == resolve({}, REPO / "configs" / "ci.toml")
