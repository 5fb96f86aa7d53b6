"""Shared fixtures: the mini archives, their extracted contents, a workflow copy."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
from pathlib import Path
from types import SimpleNamespace

import pytest

from make_mini_voc import SBD_ARCHIVE_NAME, VOC_ARCHIVE_NAME, build_archives

REPO = Path(__file__).resolve().parent.parent
WORKFLOW_FILES = ["Snakefile", "rules", "scripts", "config", "envs"]


@pytest.fixture(scope="session")
def mini_archives(tmp_path_factory) -> SimpleNamespace:
    out = tmp_path_factory.mktemp("archives")
    md5s = build_archives(out, seed=0)
    return SimpleNamespace(voc=out / VOC_ARCHIVE_NAME, sbd=out / SBD_ARCHIVE_NAME, md5s=md5s, dir=out)


@pytest.fixture(scope="session")
def extracted(mini_archives, tmp_path_factory) -> SimpleNamespace:
    """The mini archives unpacked as they are (a trusted reference for the tests)."""
    root = tmp_path_factory.mktemp("extracted")
    for archive in (mini_archives.voc, mini_archives.sbd):
        with tarfile.open(archive) as tar:
            tar.extractall(root, filter="data")
    voc, sbd = root / "VOCdevkit/VOC2012", root / "benchmark_RELEASE/dataset"
    sets = voc / "ImageSets/Segmentation"
    return SimpleNamespace(
        root=root,
        images=voc / "JPEGImages",
        voc_labels=voc / "SegmentationClass",
        voc_train=sets / "train.txt",
        voc_val=sets / "val.txt",
        sbd_cls=sbd / "cls",
        sbd_train=sbd / "train.txt",
        sbd_val=sbd / "val.txt",
    )


def read_ids(path: Path) -> list[str]:
    return [line.strip() for line in Path(path).read_text().splitlines() if line.strip()]


def run_snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "snakemake", *args],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=1800,
    )


@pytest.fixture
def workflow_copy(tmp_path, mini_archives) -> Path:
    """The workflow in a fresh directory, with the demo archives where config/demo.yaml expects them."""
    for name in WORKFLOW_FILES:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, tmp_path / name)
    demo = tmp_path / "resources/demo"
    demo.mkdir(parents=True)
    for archive in (mini_archives.voc, mini_archives.sbd):
        shutil.copy(archive, demo / archive.name)
    return tmp_path
