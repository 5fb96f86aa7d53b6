"""Your own VOC-format dataset, and fine-tuning on it from a trained run (datasets, init_from)."""

import csv
import json
import re
import shutil
import subprocess
import sys
import tarfile

import numpy as np
import pytest
import torch
import yaml
from conftest import DEMO, NO_CONDA, OUT, planned_jobs, run_dir, run_snakemake, write_config
from mmengine.config import Config
from PIL import Image

from common.voc import palette

SHAPES = DEMO["datasets"]["shapes"]
SHAPES_VAL = f"resources/datasets/shapes-{SHAPES['md5'][:8]}/ImageSets/Segmentation/val.txt"


def test_the_demo_fine_tunes_vocaug_on_its_own_dataset(study):
    source, tuned = run_dir(study, "vocaug", 6), run_dir(study, "shapes_vocaug", 6)
    scratch = run_dir(study, "shapes_scratch", 6)
    # the init weights: vocaug's backbone as it was trained, its 21-class heads left out
    init = torch.load(study / OUT / "init/shapes_vocaug.pth", map_location="cpu")
    trained = torch.load(source / "final.pth", map_location="cpu")["state_dict"]
    backbone = [k for k in trained if k.startswith("backbone.")]
    assert sorted(init["state_dict"]) == sorted(backbone)
    assert all(torch.equal(init["state_dict"][k], trained[k]) for k in backbone)
    log = (study / OUT / "init/shapes_vocaug.log").read_text()
    assert re.search(r"loaded  backbone +\d+ tensors", log)
    assert re.search(r"skipped decode_head +\d+ tensors \(another class count", log)
    assert re.search(r"skipped auxiliary_head", log)
    # the run's config: 4 classes, the segmentor initialised from those weights, no ImageNet ones
    cfg = Config.fromfile(str(tuned / "config.py"))
    assert cfg.model.decode_head.num_classes == 4 == len(cfg.train_dataloader.dataset.metainfo.classes)
    assert cfg.model.init_cfg.checkpoint == f"{OUT}/init/shapes_vocaug.pth"
    assert cfg.model.backbone.init_cfg is None
    assert "init_from run vocaug/e6-s0: backbone (heads re-initialised: other classes)" in (tuned / "train.log").read_text()
    assert "init_cfg" not in Config.fromfile(str(scratch / "config.py")).model
    # evaluated on the dataset's own val list, with its classes
    metrics = json.loads((tuned / "metrics.json").read_text())
    assert metrics["classes"] == list(metrics["IoU"]) == SHAPES["classes"]
    per_image = np.load(tuned / "confusion_per_image.npz")
    assert list(per_image["image_ids"]) == (study / SHAPES_VAL).read_text().split()
    assert per_image["confusion"].shape[1:] == (4, 4)
    # the comparison: one row, both mIoUs, the change and its interval
    (row,) = csv.DictReader((study / OUT / "tables/finetune.csv").open())
    assert (row["dataset"], row["scratch"], row["finetuned"], row["init_from"]) == (
        "shapes", "shapes_scratch", "shapes_vocaug", "vocaug/e6-s0"
    )
    change, low, high = float(row["change"]), float(row["low"]), float(row["high"])
    assert low <= change <= high
    assert change == pytest.approx(float(row["finetuned_mIoU"]) - float(row["scratch_mIoU"]), abs=1e-6)
    assert (study / OUT / "figures/finetune.png").stat().st_size > 0
    # the VOC study's tables leave the dataset runs out
    summary = list(csv.DictReader((study / OUT / "tables/summary.csv").open()))
    assert not {r["variant"] for r in summary} & {"shapes_scratch", "shapes_vocaug"}


# ---- bad datasets: a clear error naming the file, before any of its runs trains ------
def shapes_folder(mini_archives, dest):
    with tarfile.open(mini_archives.custom) as tar:
        tar.extractall(dest, filter="data")
    return dest / "shapes"


def break_label(root):
    path = root / "SegmentationClass/shape_0003.png"
    label = np.array(Image.open(path))
    label[:4, :4] = 7
    image = Image.fromarray(label)  # mode L, P once it has a palette
    image.putpalette(palette())
    image.save(path)
    return "shape_0003.png holds values [7]"


def drop_image(root):
    (root / "JPEGImages/shape_0005.jpg").unlink()
    return "train.txt lists 'shape_0005', but"


def wrong_classes(root):
    return "class 4 ('pentagon') appears in no label"


@pytest.mark.parametrize("damage", [break_label, drop_image, wrong_classes])
def test_a_bad_dataset_stops_before_its_runs_train(workflow_copy, mini_archives, tmp_path, damage):
    root = shapes_folder(mini_archives, tmp_path / "mine")
    expected = damage(root)
    classes = [*SHAPES["classes"], "pentagon"] if damage is wrong_classes else SHAPES["classes"]
    config = write_config(
        workflow_copy, "bad", study_variants_only=True,
        datasets={"mine": {"folder": str(root), "classes": classes}},
        variants={"mine_scratch": {"dataset": "mine", "seeds": [0]}},
    )  # fmt: skip
    target = f"{OUT}/runs/mine_scratch/e6-s0/final.pth"
    result = run_snakemake(workflow_copy, target, "--cores", "2", "--configfile", config)
    assert result.returncode != 0
    log = (workflow_copy / OUT / "datasets/mine.log").read_text()
    assert "datasets.mine: " in log and expected in log, log[-2000:]
    assert not (workflow_copy / OUT / "datasets/mine.json").exists()
    assert not (workflow_copy / OUT / "runs/mine_scratch/e6-s0/train.log").exists()


@pytest.mark.parametrize(
    "datasets, variants, expected",
    [
        ({}, {"x": {"dataset": "nope"}}, "variants.x.dataset: 'nope' is not in datasets"),
        ({"d": {"classes": ["a", "b"]}}, {}, "datasets.d: give either folder or archive"),
        ({}, {"x": {"train_sets": [{"split": "train", "labels": "SegmentationClass"}],
                    "init_from": {"variant": "nope", "epochs": 6}}}, "variants.x.init_from.variant: 'nope' is not a variant"),
        ({}, {"x": {"train_sets": [{"split": "train", "labels": "SegmentationClass"}],
                    "init_from": {"variant": "voc"}}}, "variants.x.init_from: give the source run's epochs or its iterations"),
        ({}, {"x": {"train_sets": [{"split": "train", "labels": "SegmentationClass"}], "depth": 50,
                    "init_from": {"variant": "voc", "epochs": 6}}}, "variants.x.init_from: depth is 50 here but 18 in voc"),
        ({}, {"x": {"train_sets": [{"split": "train", "labels": "SegmentationClass"}], "init_from": {"variant": "y", "epochs": 6}},
              "y": {"train_sets": [{"split": "train", "labels": "SegmentationClass"}], "init_from": {"variant": "x", "epochs": 6}}},
         "a cycle of init_from (x -> y -> x)"),
    ],
    ids=["unknown-dataset", "no-folder-nor-archive", "unknown-source", "no-budget", "other-model", "cycle"],
)  # fmt: skip
def test_bad_datasets_and_init_from_fail_at_planning(workflow_copy, datasets, variants, expected):
    config = write_config(workflow_copy, "bad", study_variants_only=True, datasets=datasets, variants=variants)
    result = run_snakemake(workflow_copy, "-n", "--configfile", config)
    assert result.returncode != 0
    assert expected in result.stdout + result.stderr, (result.stdout + result.stderr)[-2000:]


def test_the_next_steps_plan_on_a_login_node(login_node, mini_archives, tmp_path):
    """Swin-T and ConvNeXt-T variants of vocaug and a fine-tuned one on your own folder,
    planned on the login node (no torch, mmseg or data) for the SLURM profile."""
    workdir, env = login_node
    root = shapes_folder(mini_archives, tmp_path / "mine")
    aug = [{"split": "train", "labels": "SegmentationClass"}, {"split": "aug", "labels": "SegmentationClassAug"}]
    config = {
        "datasets": {"mine": {"folder": str(root), "classes": SHAPES["classes"]}},
        "variants": {
            "vocaug_swin": {"train_sets": aug, "backbone": "swin", "pretrained": "mmseg://swin_tiny"},
            "vocaug_convnext": {"train_sets": aug, "backbone": "convnext", "pretrained": "mmpretrain://convnext_tiny"},
            "mine_swin": {"dataset": "mine", "backbone": "swin", "epochs": [50], "init_from": {"variant": "vocaug_swin", "epochs": 30}},
            "mine_scratch": {"dataset": "mine", "backbone": "swin", "pretrained": "mmseg://swin_tiny", "epochs": [50]},
        },
    }  # fmt: skip
    (workdir / "config/next.yaml").write_text(yaml.safe_dump(config))
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--profile", "profiles/slurm", *NO_CONDA,
         "--configfile", "config/config.yaml", "config/next.yaml"],
        cwd=workdir, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    jobs = planned_jobs(result)
    # voc and vocaug, the Swin and the ConvNeXt variant at 3 epoch counts each, one run per dataset variant
    assert jobs["train_upernet"] == 4 * 3 + 2, jobs
    assert jobs["fetch_pretrained"] == 3 and jobs["init_weights"] == 1 and jobs["check_dataset"] == 1
    assert jobs["compare_finetuning"] == 1 and "extract_dataset" not in jobs
    assert "resources/pretrained/swin_tiny_patch4_window7_224_20220317-1cdeb081.pth" in result.stdout
    # the fine-tuned variant's source run is trained first: its final.pth is an input
    block = result.stdout.split("rule init_weights:")[1].split("\n\n")[0]
    assert "results/runs/vocaug_swin/e30-s0/final.pth" in block
    # and it goes first when jobs wait for a slot: the only train job with a priority
    trains = [b.split("\n\n")[0] for b in result.stdout.split("rule train_upernet:")[1:]]
    first = [re.search(r"output: (\S+)/final\.pth", b).group(1) for b in trains if "priority: 1" in b]
    assert first == ["results/runs/vocaug_swin/e30-s0"]


def test_folder_and_archive_datasets_need_no_copy(login_node, mini_archives, tmp_path):
    """An archive is extracted once under resources/datasets (named by its md5); a folder is read in place."""
    workdir, env = login_node
    shutil.copy(mini_archives.custom, workdir / "shapes.tar.gz")
    config = {
        "datasets": {"shapes": {"archive": "shapes.tar.gz", "md5": SHAPES["md5"], "root": "shapes",
                                "classes": SHAPES["classes"]}},
        "variants": {"shapes_scratch": {"dataset": "shapes", "pretrained": None}},
    }  # fmt: skip
    (workdir / "config/mine.yaml").write_text(yaml.safe_dump(config))
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "results/runs/shapes_scratch/e30-s0/metrics.json", "-n", *NO_CONDA,
         "--configfile", "config/config.yaml", "config/mine.yaml"],
        cwd=workdir, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    jobs = planned_jobs(result)
    assert jobs["extract_dataset"] == 1 and jobs["check_dataset"] == 1 and jobs["train_upernet"] == 1, jobs
    assert f"resources/datasets/shapes-{SHAPES['md5'][:8]}/JPEGImages" in result.stdout
