"""envs/*.yaml pin exactly what the tested .venv has, and every code rule names one."""

from __future__ import annotations

import re
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest
import yaml
from conftest import REPO

from render_envs import CONDA_NAMES, ENVS, python_version, read_pins, render

PIP_NAMES = {conda: pip for pip, conda in CONDA_NAMES.items()}
ENV_FILES = sorted((REPO / "envs").glob("*.yaml"))


def installed(distribution: str) -> str:
    try:
        return version(distribution)
    except PackageNotFoundError:
        pytest.fail(f"{distribution} is pinned but not installed in {sys.prefix}")


def test_each_rule_kind_has_an_env_file():
    assert [p.stem for p in ENV_FILES] == sorted(ENVS)


@pytest.mark.parametrize("path", ENV_FILES, ids=lambda p: p.name)
def test_env_file_is_rendered_from_requirements(path):
    assert path.read_text() == render(path.stem, read_pins(), python_version()), (
        f"{path} differs from requirements.txt: run `make envs`"
    )


@pytest.mark.parametrize("path", ENV_FILES, ids=lambda p: p.name)
def test_env_pins_equal_the_installed_versions(path):
    env = yaml.safe_load(path.read_text())
    assert env["channels"] == ["conda-forge", "nodefaults"]
    checked = 0
    for dependency in env["dependencies"]:
        if isinstance(dependency, dict):
            lines = [line for line in dependency["pip"] if not line.startswith("-")]
            pins = [re.fullmatch(r"([\w.\-]+)==(\S+)", line).groups() for line in lines]
        else:
            name, pinned = re.fullmatch(r"([\w.\-]+) =(\S+)", dependency).groups()
            pins = [(PIP_NAMES.get(name, name), pinned)]
        for name, pinned in pins:
            if name == "python":
                assert f"{sys.version_info.major}.{sys.version_info.minor}" == pinned
            else:
                assert installed(name) == pinned, f"{path.name}: {name}"
            checked += 1
    assert checked >= 5


def test_requirements_pins_equal_the_installed_versions():
    pins = read_pins()
    assert {"torch", "onedl-mmcv", "onedl-mmsegmentation", "snakemake"} <= set(pins)
    wrong = {name: (pinned, installed(name)) for name, pinned in pins.items() if installed(name) != pinned}
    assert not wrong, f"pinned vs installed: {wrong}"


def rule_blocks(text: str):
    """(rule name, body) of each rule in a Snakefile or .smk file."""
    for match in re.finditer(r"^(?:local)?rule (\w+):\n((?:[ \t]+.*\n|\n)*)", text, re.M):
        yield match.group(1), match.group(2)


def test_every_rule_that_runs_code_names_a_conda_env():
    checked = 0
    for path in [REPO / "Snakefile", *sorted((REPO / "rules").glob("*.smk"))]:
        for name, body in rule_blocks(path.read_text()):
            if not re.search(r"^\s+(script|shell|run|notebook|wrapper):", body, re.M):
                continue
            match = re.search(r"^\s+conda:\s*\n\s+\"\.\./envs/(\w+)\.yaml\"", body, re.M)
            assert match, f"{path.name}: rule {name} runs code but names no envs/*.yaml"
            assert (REPO / "envs" / f"{match.group(1)}.yaml").is_file()
            checked += 1
    assert checked >= 5


# ---- the lock: the whole environment --------------------------------------------
def installed_distributions() -> dict[str, str]:
    """What pip installed into this environment's site-packages (not the copies that
    setuptools vendors, which importing pkg_resources puts on sys.path)."""
    import sysconfig
    from importlib.metadata import distributions

    from lock import normalize

    site = sorted({sysconfig.get_path("purelib"), sysconfig.get_path("platlib")})
    return {normalize(d.metadata["Name"]): d.version for d in distributions(path=site)}


def test_lock_pins_exactly_the_installed_environment():
    from lock import LOCK, pins

    locked, present = pins(LOCK), installed_distributions()
    assert len(locked) > 60, "the lock should pin the whole environment, not only requirements.txt"
    assert {n: v for n, v in locked.items() if present.get(n) != v} == {}, "locked but not installed as locked"
    assert {n: v for n, v in present.items() if locked.get(n) != v} == {}, "installed but not locked"


def test_lock_was_compiled_from_this_requirements_file_and_hashes_every_pin():
    from lock import LOCK, check, entries

    assert check() == []
    unhashed = [name for name, _, lines in entries(LOCK.read_text()) if "--hash=sha256:" not in lines]
    assert unhashed == []


def test_an_edited_requirements_file_makes_the_lock_stale(tmp_path):
    from lock import LOCK, check

    edited = tmp_path / "requirements.txt"
    edited.write_text((REPO / "requirements.txt").read_text().replace("pandas==", "pandas==0.0.1\n# was "))
    problems = check(LOCK, edited)
    assert any("make lock" in p for p in problems) and any("pandas==0.0.1" in p for p in problems)


def test_the_two_install_stages_cover_the_lock_once():
    from lock import LOCK, entries, stage

    first, second = stage(LOCK, exclude=("onedl-mmcv",)), stage(LOCK, only=("onedl-mmcv",))
    assert [name for name, _, _ in entries(second)] == ["onedl-mmcv"]
    assert sorted(n for n, _, _ in entries(first + second)) == sorted(n for n, _, _ in entries(LOCK.read_text()))
