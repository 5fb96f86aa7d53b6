"""Shared fixtures: the mini archives, their extracted contents, a workflow copy."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from make_mini_coco import ANNOTATIONS_ARCHIVE_NAME as COCO_ANNOTATIONS_NAME
from make_mini_coco import IMAGES_ARCHIVE_NAME as COCO_IMAGES_NAME
from make_mini_coco import build_coco_archives
from make_mini_custom import ARCHIVE_NAME as CUSTOM_ARCHIVE_NAME
from make_mini_custom import build_custom_archive
from make_mini_voc import SBD_ARCHIVE_NAME, VOC_ARCHIVE_NAME, build_archives

REPO = Path(__file__).resolve().parent.parent
DEMO = yaml.safe_load((REPO / "config/demo.yaml").read_text())


def _demo_runs(on_datasets: bool) -> list[tuple[str, str, int]]:
    """(variant, budget, seed) of the demo's runs: on VOC (the study's voc and vocaug at
    the demo's epochs and seeds, and the demo's own VOC variants at their own budgets),
    or ``on_datasets`` (its variants on a dataset of `datasets`, apart from the study)."""
    runs = [] if on_datasets else [(v, f"e{e}", s) for v in ("voc", "vocaug") for e in DEMO["epochs"] for s in DEMO["seeds"]]
    for name, variant in DEMO.get("variants", {}).items():
        if ("dataset" in variant) != on_datasets:
            continue
        for kind, prefix in (("epochs", "e"), ("iterations", "i")):
            for amount in variant.get(kind, DEMO.get(kind, [])):
                runs += [(name, f"{prefix}{amount}", s) for s in variant.get("seeds", DEMO["seeds"])]
    return runs


DEMO_RUNS = _demo_runs(on_datasets=False)  # the VOC study's: every table and figure
DEMO_DATASET_RUNS = _demo_runs(on_datasets=True)  # fine-tuning on the demo's own dataset
DEMO_ALL_RUNS = DEMO_RUNS + DEMO_DATASET_RUNS
WORKFLOW_FILES = ["Snakefile", "rules", "scripts", "config", "envs", "report", "profiles"]
# where the demo config puts its data (keyed by the archives' md5s) and its results
DATA_KEY = f"voc-{DEMO['data']['voc']['md5'][:8]}_sbd-{DEMO['data']['sbd']['md5'][:8]}"
DEMO_VOC = f"resources/data/{DATA_KEY}/VOCdevkit/VOC2012"
OUT = DEMO["results"]
# as `make demo`: the model jobs on one thread each, two at a time on 2 cores
ONE_THREAD = (
    "--set-threads",
    *(f"{rule}=1" for rule in ("train_upernet", "evaluate_upernet", "evaluate_upernet_dataset")),
)


@pytest.fixture(scope="session")
def mini_archives(tmp_path_factory) -> SimpleNamespace:
    out = tmp_path_factory.mktemp("archives")
    md5s = build_archives(out, seed=0)
    md5s.update(build_coco_archives(out, seed=0))
    md5s.update(build_custom_archive(out, seed=0))
    return SimpleNamespace(
        custom=out / CUSTOM_ARCHIVE_NAME,
        voc=out / VOC_ARCHIVE_NAME,
        sbd=out / SBD_ARCHIVE_NAME,
        coco_images=out / COCO_IMAGES_NAME,
        coco_annotations=out / COCO_ANNOTATIONS_NAME,
        md5s=md5s,
        dir=out,
    )


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


def demo_archives(mini_archives) -> list[Path]:
    return [mini_archives.voc, mini_archives.sbd, mini_archives.coco_images, mini_archives.coco_annotations,
            mini_archives.custom]  # fmt: skip


def copy_workflow(dest: Path, mini_archives) -> Path:
    """The workflow in ``dest``, with the demo archives where config/demo.yaml expects them."""
    for name in WORKFLOW_FILES:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, dest / name)
    demo = dest / "resources/demo"
    demo.mkdir(parents=True)
    for archive in demo_archives(mini_archives):
        shutil.copy(archive, demo / archive.name)
    return dest


@pytest.fixture
def workflow_copy(tmp_path, mini_archives) -> Path:
    return copy_workflow(tmp_path, mini_archives)


def write_config(workdir: Path, name: str, study_variants_only: bool = False, **sections) -> str:
    """config/<name>.yaml: config/demo.yaml with top-level sections replaced; with
    ``study_variants_only``, without the demo's single-seed iteration-budget variants
    (voc and vocaug only: small grids for the tests that train from scratch)."""
    config = yaml.safe_load((REPO / "config/demo.yaml").read_text())
    if study_variants_only:
        del config["variants"]
    config.update(sections)
    (workdir / "config" / f"{name}.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return f"config/{name}.yaml"


# conda itself is not installed here (its channels are unreachable), and Snakemake
# asks `conda info` even when planning with the SLURM profile: dry runs swap only that setting.
NO_CONDA = ("--software-deployment-method", "env-modules")


def planned_jobs(result: subprocess.CompletedProcess) -> dict[str, int]:
    """{rule: count} from the job table of a dry run."""
    jobs, table = {}, False
    for line in (result.stdout + result.stderr).splitlines():
        parts = line.split()
        if parts[:2] == ["job", "count"]:
            table = True
        elif table and len(parts) == 2 and parts[1].isdigit() and parts[0] != "total":
            jobs[parts[0]] = int(parts[1])
        elif table and parts[:1] == ["total"]:
            break
    return jobs


def runtimes(result: subprocess.CompletedProcess) -> dict[str, int]:
    """{output of each train_upernet job: its runtime request} from a dry run."""
    found, rule, output = {}, None, None
    for line in (result.stdout + result.stderr).splitlines():
        line = line.strip()
        if line.startswith("rule ") or line.startswith("localrule "):
            rule = line.split()[1].rstrip(":")
        elif line.startswith("output:"):
            output = line.split()[1].rstrip(",")
        elif line.startswith("resources:") and rule == "train_upernet":
            found[output] = int(re.search(r"runtime=(\d+)", line).group(1))
    return found


# What `make demo` leaves in the checkout and the study fixture can start from:
# the archives, the data and COCO conversion, the results, logs and Snakemake's records.
DEMO_STATE = ["resources/demo", f"resources/data/{DATA_KEY}", "resources/coco_voc", "resources/datasets", OUT, "logs",
              ".snakemake/metadata"]  # fmt: skip


def reuse_demo(workdir: Path, mini_archives) -> bool:
    """Start from the checkout's finished `make demo` (as CI runs it just before the
    tests), copied with its timestamps: Snakemake then reruns only what is out of
    date by its own rules (content of code and params, inputs), which is nothing
    when the demo ran from this code. Without one (or with other archives), nothing
    is copied and the fixture runs the whole study."""
    if not (REPO / OUT / "report.html").exists() or not all((REPO / p).exists() for p in DEMO_STATE):
        return False
    for archive in demo_archives(mini_archives):
        if not (REPO / "resources/demo" / archive.name).exists():
            return False
        if (REPO / "resources/demo" / archive.name).read_bytes() != archive.read_bytes():
            return False
    for path in DEMO_STATE:
        shutil.rmtree(workdir / path, ignore_errors=True)
        shutil.copytree(REPO / path, workdir / path, symlinks=True)
    # not the demo's: a GPU check of this machine (`make gpu-check`) would size the tests' runs
    shutil.rmtree(workdir / OUT / "gpu_check", ignore_errors=True)
    # outputs of a later `make demo` killed midway: Snakemake's markers make them rerun
    if (REPO / ".snakemake/incomplete").exists():
        shutil.copytree(REPO / ".snakemake/incomplete", workdir / ".snakemake/incomplete")
    return True


@pytest.fixture(scope="session")
def study(tmp_path_factory, mini_archives) -> Path:
    """The whole demo workflow, run once: data, 4 trainings, evaluations, tables and figures
    (from `make demo`'s finished state when the checkout has one, see reuse_demo)."""
    workdir = copy_workflow(tmp_path_factory.mktemp("study"), mini_archives)
    reused = reuse_demo(workdir, mini_archives)
    result = run_snakemake(workdir, "--cores", "2", *ONE_THREAD, "--configfile", "config/demo.yaml")
    print(f"study fixture: {'from make demo, ' if reused else ''}{result.stderr.count('Finished jobid')} jobs ran")
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-5000:]
    return workdir


def copy_study(study: Path, dest: Path) -> Path:
    """``study`` copied to ``dest`` with Snakemake's metadata and mtimes, without the
    training work dirs (every epoch's checkpoints, GBs): for tests of what follows
    training, which never read them."""
    results = study / OUT
    shutil.copytree(study, dest, symlinks=True, ignore=lambda folder, _: ["work"] if Path(folder) == results else [])
    return dest


@pytest.fixture
def study_copy(study, tmp_path) -> Path:
    """A copy of the finished demo study, for a test to change (see copy_study)."""
    return copy_study(study, tmp_path / "study")


def run_dir(workdir: Path, variant: str, epochs: int | str, seed: int = 0) -> Path:
    """A run's folder: ``epochs`` a count (e<N>) or a budget's name (``e6``, ``i60``)."""
    budget = epochs if isinstance(epochs, str) else f"e{epochs}"
    return workdir / f"{OUT}/runs/{variant}/{budget}-s{seed}"


@pytest.fixture
def login_node(tmp_path):
    """A fresh checkout (no data, no results) and a Python that cannot import torch or mm*."""
    workdir = tmp_path / "checkout"
    workdir.mkdir()
    for name in ("Snakefile", "rules", "scripts", "config", "envs", "report", "profiles"):
        source = REPO / name
        (shutil.copytree if source.is_dir() else shutil.copy)(source, workdir / name)
    blocked = tmp_path / "blocked"
    blocked.mkdir()
    for module in ("torch", "torchvision", "mmcv", "mmengine", "mmseg"):
        (blocked / f"{module}.py").write_text(f"raise ImportError('no {module} on the login node')\n")
    env = {**os.environ, "PYTHONPATH": str(blocked)}
    probe = subprocess.run([sys.executable, "-c", "import torch"], env=env, capture_output=True, text=True)
    assert "no torch on the login node" in probe.stderr
    return workdir, env
