"""Data quantity, annotation source and compute, separated: subsets, label sources,
iteration budgets and the attribution table."""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys

import numpy as np
import pytest
import yaml
from conftest import DEMO_VOC, OUT, REPO, planned_jobs, read_ids, run_snakemake, write_config
from PIL import Image

from attribution import attribute
from common.attribution import model_key, plan_attribution
from common.labels import read_sbd_label
from common.subsets import SubsetError, annotation_source, budget_epochs, choose_subset, iterations_per_epoch
from common.subsets import subset_size
from convert_sbd import convert_all, plan_conversion
from make_trainaug_list import make_lists

NO_CONDA = ("--software-deployment-method", "env-modules")


# ---- subsets -----------------------------------------------------------------------
def test_subsets_are_deterministic_and_nested():
    train = [f"2007_{i:06d}" for i in range(300)]
    aug = [f"2008_{i:06d}" for i in range(700)]
    subsets = {size: choose_subset([train, aug], size, seed=0) for size in (10, 100, 250, 1000)}
    assert choose_subset([train, aug], 100, seed=0) == subsets[100]  # deterministic
    assert choose_subset([list(reversed(train)), aug], 100, 0)[0] == list(reversed(subsets[100][0]))  # order-free
    for small, large in ((10, 100), (100, 250), (250, 1000)):
        for member in (0, 1):
            assert set(subsets[small][member]) <= set(subsets[large][member])
        assert sum(map(len, subsets[small])) == small
    assert subsets[1000] == [train, aug]
    # another seed: another subset of the same size, also nested
    other = {size: choose_subset([train, aug], size, seed=1) for size in (100, 250)}
    assert other[100] != subsets[100]
    assert set(other[100][1]) <= set(other[250][1])
    # both lists are sampled in proportion (a hash order, not the first list first)
    assert 10 < len(subsets[100][0]) < 50


def test_an_id_ranks_the_same_in_every_set_it_belongs_to():
    """The aug ids a trainaug subset keeps are the lowest-ranked of aug itself: aug's
    subsets and trainaug's agree on the order of their common ids."""
    train = [f"2007_{i:06d}" for i in range(100)]
    aug = [f"2008_{i:06d}" for i in range(400)]
    for size in (50, 200, 450):
        kept = choose_subset([train, aug], size, seed=0)[1]
        assert sorted(kept) == sorted(choose_subset([aug], len(kept), seed=0)[0])


@pytest.mark.parametrize(
    "spec, message",
    [
        ({"size": 2000}, "subset.size: 2,000 is larger than its training set (1,464 images)"),
        ({"size": 0}, "subset.size: 0 is not a whole number > 0"),
        ({"size": -3}, "subset.size: -3 is not a whole number > 0"),
        ({"fraction": 0}, "subset.fraction: 0 is outside (0, 1]"),
        ({"fraction": 1.5}, "subset.fraction: 1.5 is outside (0, 1]"),
        ({"size": 10, "fraction": 0.5}, "subset: give either size or fraction, not both"),
        ({}, "subset: give either size or fraction, not neither"),
        ({"fraction": 0.0001}, "subset.fraction: 0.0001 of 1,464 images is no image"),
    ],
)
def test_subset_errors_name_the_variant(spec, message):
    with pytest.raises(SubsetError) as error:
        subset_size(spec, 1464, "variants.small")
    assert str(error.value).startswith("variants.small.") and message in str(error.value)


def test_fractions_round_to_the_nearest_image():
    assert subset_size({"fraction": 0.5}, 10582, "v") == 5291
    assert subset_size({"fraction": 1}, 1464, "v") == 1464
    assert subset_size({"fraction": 0.25}, 142, "v") == 36  # 35.5 rounds up


@pytest.mark.parametrize(
    "variant, expected",
    [
        ({"subset": {"size": 500}}, "variants.small.subset.size: 500 is larger than its training set (40 images)"),
        ({"subset": {"size": 5, "fraction": 0.5}}, "variants.small.subset: give either size or fraction, not both"),
        ({"subset": {"fraction": 2}}, "variants.small.subset.fraction: 2 is outside (0, 1]"),
        ({"subset_seed": 3}, "variants.small.subset_seed: the variant has no subset"),
        ({"train_sets": [{"split": "trainaug", "labels": "SegmentationClassSBD"}]},
         "variants.small.train_sets[0]: SegmentationClassSBD has no label for every id of trainaug"),
        ({"epochs": [], "iterations": []}, "variants.small: no run to train"),
    ],
    ids=["too-large", "both", "fraction", "seed-without-subset", "labels", "no-budget"],
)  # fmt: skip
def test_bad_subsets_and_label_sources_fail_at_planning_naming_the_variant(workflow_copy, variant, expected):
    small = {"train_sets": [{"split": "train", "labels": "SegmentationClass"}], **variant}
    config = write_config(workflow_copy, "bad", variants={"small": small})
    result = run_snakemake(workflow_copy, "-n", "--configfile", config)
    assert result.returncode != 0
    assert expected in result.stdout + result.stderr, (result.stdout + result.stderr)[-2000:]


# ---- iteration budgets ---------------------------------------------------------------
@pytest.mark.parametrize(
    "images, gpus, batch, budget, epochs",
    [
        (10582, 2, 8, "i20000", 31),  # 662 steps per epoch: 30 epochs are 19,860 < 20,000
        (1464, 2, 8, "i20000", 218),  # 92 per epoch: 217 x 92 = 19,964 < 20,000 <= 218 x 92
        (1464, 4, 4, "i20000", 218),  # the same 16 images per step
        (40, 1, 2, "i60", 3),  # the demo: 20 steps per epoch
        (142, 1, 2, "i60", 1),  # 71 per epoch: one epoch passes 60
        (20, 1, 2, "i60", 6),
        (10, 1, 2, "i30", 6),
        (10582, 2, 8, "e30", 30),  # an epoch count is itself
        (92 * 16, 2, 8, "i92", 1),  # exactly one epoch
    ],
)
def test_an_iteration_budget_trains_the_fewest_epochs_that_reach_it(images, gpus, batch, budget, epochs):
    assert budget_epochs(budget, images, gpus, batch) == epochs
    if budget.startswith("i"):
        steps = int(budget[1:])
        per_epoch = iterations_per_epoch(images, gpus, batch)
        assert epochs * per_epoch >= steps > (epochs - 1) * per_epoch


# ---- label sources ---------------------------------------------------------------------
def read_png(path):
    with Image.open(path) as image:
        return np.asarray(image)


def test_train_sbd_and_segmentation_class_sbd_keep_each_sources_own_pixels(extracted, tmp_path):
    splits = tmp_path / "ImageSets"
    splits.mkdir()
    counts = make_lists(
        extracted.voc_train, extracted.voc_val, extracted.sbd_train, extracted.sbd_val, extracted.images,
        splits / "trainaug.txt", splits / "aug.txt", train_sbd_txt=splits / "train_sbd.txt",
    )  # fmt: skip
    voc_train = set(read_ids(extracted.voc_train))
    sbd = set(read_ids(extracted.sbd_train)) | set(read_ids(extracted.sbd_val))
    train_sbd = read_ids(splits / "train_sbd.txt")
    assert train_sbd == sorted(voc_train & sbd) and counts["train_sbd"] == len(train_sbd) == 20
    voc_ids = read_ids(extracted.voc_train) + read_ids(extracted.voc_val)
    plan = plan_conversion(voc_ids, sorted(sbd), extracted.voc_labels, extracted.sbd_cls)
    aug_dir, sbd_dir = tmp_path / "SegmentationClassAug", tmp_path / "SegmentationClassSBD"
    read = convert_all(plan, aug_dir, processes=2, sbd_dir=sbd_dir)
    assert read["sbd"] == len(sbd)  # every .mat read once, for both folders
    assert sorted(p.stem for p in sbd_dir.glob("*.png")) == sorted(sbd)
    differs = 0
    for image_id in train_sbd:  # annotated by both: each folder keeps its own source's pixels
        voc = read_png(extracted.voc_labels / f"{image_id}.png")
        sbd_label = read_sbd_label(extracted.sbd_cls / f"{image_id}.mat")[0]
        assert np.array_equal(read_png(aug_dir / f"{image_id}.png"), voc)
        assert np.array_equal(read_png(sbd_dir / f"{image_id}.png"), sbd_label)
        differs += not np.array_equal(voc, sbd_label)
    assert differs == len(train_sbd)  # VOC's 255 borders, SBD's coarser outlines
    for image_id in sorted(sbd - set(voc_ids))[:10]:  # SBD only: the same label in both folders
        assert np.array_equal(read_png(aug_dir / f"{image_id}.png"), read_png(sbd_dir / f"{image_id}.png"))
    assert not list(tmp_path.glob(".*tmp*"))


def test_annotation_sources_of_the_label_folders():
    sets = lambda *pairs: [{"split": s, "labels": l} for s, l in pairs]  # noqa: E731
    assert annotation_source(sets(("train", "SegmentationClass"))) == "VOC"
    assert annotation_source(sets(("train_sbd", "SegmentationClassSBD"))) == "SBD"
    assert annotation_source(sets(("aug", "SegmentationClassAug"))) == "SBD"
    assert annotation_source(sets(("trainaug", "SegmentationClassAug"))) == "mixed"
    assert annotation_source(sets(("train", "SegmentationClass"), ("aug", "SegmentationClassAug"))) == "mixed"


# ---- the attribution ---------------------------------------------------------------------
def synthetic_runs(correct: float, images: int = 40, classes: int = 3) -> np.ndarray:
    """(images, C, C) confusion counts: per image 100 pixels of each class, `correct` of
    them right and the rest predicted as the next class: every IoU is correct/(2-correct)."""
    confusion = np.zeros((images, classes, classes))
    for c in range(classes):
        confusion[:, c, c] = 100 * correct
        confusion[:, c, (c + 1) % classes] = 100 * (1 - correct)
    return confusion


def test_attribution_arithmetic_on_synthetic_counts_with_a_known_answer():
    iou = lambda p: p / (2 - p)  # noqa: E731  (I / (I + 2 x errors): every error counts twice)
    groups = {
        ("voc", "e6"): [synthetic_runs(0.5)],
        ("vocaug", "e6"): [synthetic_runs(0.8)],
        ("voc", "i100"): [synthetic_runs(0.6), synthetic_runs(0.7)],  # two seeds: their mean
    }
    parts = [
        {"part": "total", "question": "q", "from": {"variant": "voc", "budget": "e6"},
         "to": {"variant": "vocaug", "budget": "e6"}, "missing": None},
        {"part": "compute", "question": "q", "from": {"variant": "voc", "budget": "e6"},
         "to": {"variant": "voc", "budget": "i100"}, "missing": None},
        {"part": "quantity", "question": "q", "from": None, "to": None, "missing": "add a subset"},
    ]  # fmt: skip
    bootstrap = {"resamples": 200, "max_resamples": 400, "mc_error": 0.05, "seed": 0, "confidence": 0.95}
    rows = {r["part"]: r for r in attribute(parts, groups, bootstrap)}
    assert rows["total"]["change"] == pytest.approx(100 * (iou(0.8) - iou(0.5)))
    assert rows["total"]["from_mIoU"] == pytest.approx(100 * iou(0.5))
    assert rows["compute"]["change"] == pytest.approx(100 * ((iou(0.6) + iou(0.7)) / 2 - iou(0.5)))
    assert rows["compute"]["seeds_to"] == 2
    # identical images: the interval of the total is the point; the seeds widen the compute one
    assert rows["total"]["low"] == pytest.approx(rows["total"]["change"])
    assert rows["compute"]["low"] < rows["compute"]["change"] < rows["compute"]["high"]
    assert rows["compute"]["low"] == pytest.approx(100 * (iou(0.6) - iou(0.5)), abs=1e-6)
    assert rows["compute"]["high"] == pytest.approx(100 * (iou(0.7) - iou(0.5)), abs=1e-6)
    assert not rows["quantity"]["measured"] and rows["quantity"]["to_measure"] == "add a subset"


def config_variants(*files):
    """Variants of the study config with the given files on top (as Snakemake merges them)."""
    config = {}
    for path in ("config/config.yaml", *files):
        loaded = yaml.safe_load((REPO / path).read_text())
        for key, value in loaded.items():
            if key == "variants":
                config.setdefault("variants", {}).update(value)
            else:
                config[key] = value
    return config


def test_config_attribution_yaml_measures_every_part():
    config = config_variants("config/attribution.yaml")
    sizes = {"train": 1464, "val": 1449, "trainaug": 10582, "aug": 9118, "train_sbd": 1100}
    settings, budgets, images, steps = {}, {}, {}, {}
    for name, variant in config["variants"].items():
        settings[name] = {"train_sets": variant["train_sets"], "depth": 50}
        if "subset" in variant:
            settings[name]["subset"] = {**variant["subset"], "seed": 0}
        total = sum(sizes[s["split"]] for s in variant["train_sets"])
        images[name] = variant.get("subset", {}).get("size", total)
        budgets[name] = [f"e{e}" for e in variant.get("epochs", config["epochs"])]
        budgets[name] += [f"i{i}" for i in variant.get("iterations", config["iterations"])]
        for budget in budgets[name]:
            epochs = budget_epochs(budget, images[name], 2, 8)
            steps[(name, budget)] = epochs * iterations_per_epoch(images[name], 2, 8)
    parts = {p["part"]: p for p in plan_attribution(settings, budgets, ["voc", "vocaug"], images, steps)}
    name = lambda run: f"{run['variant']} {run['budget']}"  # noqa: E731
    assert {k: (name(p["from"]), name(p["to"])) for k, p in parts.items()} == {
        "total": ("voc e30", "vocaug e30"),
        "annotation source": ("train_sbd_voc i20000", "train_sbd_sbd i20000"),
        "quantity": ("trainaug_1464 i20000", "vocaug i20000"),
        "images": ("voc i20000", "aug_1464 i20000"),
        "compute": ("voc e30", "voc i20000"),
    }
    # another model setting is not a part of the same comparison
    settings["aug_1464"]["depth"] = 101
    assert model_key(settings["aug_1464"]) != model_key(settings["voc"])
    parts = {p["part"]: p for p in plan_attribution(settings, budgets, ["voc", "vocaug"], images, steps)}
    assert parts["images"]["from"] is None and "aug" in parts["images"]["missing"]


def test_attribution_config_plans_on_a_login_node_and_costs_gpu_hours(login_node):
    workdir, env = login_node
    configs = ("--configfile", "config/config.yaml", "config/attribution.yaml")
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--profile", "profiles/slurm", *NO_CONDA, *configs],
        cwd=workdir, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    jobs = planned_jobs(result)
    # voc, vocaug at e30 and i20000 + 6 variants at i20000, 3 seeds each
    assert jobs["train_upernet"] == (2 * 2 + 6) * 3 == 30
    assert jobs["make_subset"] == 4  # three trainaug subsets (one list each) + aug's
    assert "results/attribution/runs/trainaug_1464/i20000-s2/final.pth" in result.stdout
    cost = subprocess.run(
        [sys.executable, "-m", "snakemake", "cost", "--cores", "1", *configs],
        cwd=workdir, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert cost.returncode == 0, cost.stderr[-3000:]
    match = re.search(r"run grid: 30 training jobs of 2 GPU\(s\) each .* about ([\d.]+) GPU-hours", cost.stderr)
    assert match, cost.stderr[-2000:]
    # every i20000 run sees about 20,000 x 16 images; the e30 runs 30 epochs of theirs
    images_seen = 3 * (8 * 20000 * 16 + 30 * (1464 + 10582))
    assert images_seen / 20 / 3600 < float(match.group(1)) < 1.3 * images_seen / 20 / 3600


# ---- the demo ---------------------------------------------------------------------------
def test_demo_trains_a_subset_a_label_source_and_an_iteration_budget(study):
    runs = study / OUT / "runs"
    lists = study / DEMO_VOC / "ImageSets/Segmentation"
    subsets = sorted((lists / "subsets").iterdir())
    assert [p.name for p in subsets] == [
        "train_sbd-SegmentationClassSBD_n10_s0", "train_sbd-SegmentationClass_n10_s0"
    ]  # fmt: skip
    # the same 10 images under either label folder: subsets rank ids alone
    kept = [read_ids(next(p.iterdir())) for p in subsets]
    assert kept[0] == kept[1] and len(kept[0]) == 10 and set(kept[0]) <= set(read_ids(lists / "train_sbd.txt"))
    for variant, subset in (("train_sbd_sbd_i", subsets[0]), ("train_sbd_voc_i", subsets[1])):
        run = runs / variant / "i30-s0"
        trained = json.loads((run / "train_set.json").read_text())
        assert (trained["images"], trained["epochs"], trained["iterations"]) == (10, 6, 30)
        log = (run / "train.log").read_text()
        ann_file = f"ImageSets/Segmentation/subsets/{subset.name}/{next(subset.iterdir()).name}"
        assert f"training list {ann_file}: 10 ids, sha256 {trained['lists'][0]['sha256'][:16]}" in log
        assert "budget i30: 6 epochs x 5 steps = 30 optimizer steps" in log
        config = (run / "config.py").read_text()
        assert f"ann_file='{ann_file}'" in config and "max_epochs = 6" in config
    assert "seg_map_path='SegmentationClassSBD'" in (runs / "train_sbd_sbd_i/i30-s0/config.py").read_text()


def test_demo_writes_the_attribution_table_and_the_data_scaling_figure(study):
    with open(study / OUT / "tables/attribution.csv") as handle:
        rows = {r["part"]: r for r in csv.DictReader(handle)}
    measured = {part for part, row in rows.items() if row["measured"] == "True"}
    assert measured == {"total", "annotation source"}
    assert (rows["total"]["from"], rows["total"]["to"]) == ("voc e6", "vocaug e6")
    assert (rows["annotation source"]["from"], rows["annotation source"]["to"]) == (
        "train_sbd_voc_i i30", "train_sbd_sbd_i i30"
    )  # fmt: skip
    # the parts without their runs say which variant would measure them
    assert "subset: {size: 40} and one with all of trainaug" in rows["quantity"]["to_measure"]
    assert "aug" in rows["images"]["to_measure"] and "size: 40" in rows["images"]["to_measure"]
    assert rows["compute"]["to_measure"] == "voc with iterations: [30] beside its epoch count"
    for part in measured:
        row = rows[part]
        assert float(row["low"]) <= float(row["change"]) <= float(row["high"])
        assert float(row["change"]) == pytest.approx(float(row["to_mIoU"]) - float(row["from_mIoU"]), abs=1e-6)
    assert "What moved the numbers" in (study / OUT / "report/workflow.rst").read_text()
    with open(study / OUT / "figures/data_scaling.csv") as handle:
        points = list(csv.DictReader(handle))
    assert {(p["variant"], p["source"], int(p["images"]), p["budget"]) for p in points} == {
        ("train_sbd_voc_i", "VOC", 10, "i30"), ("train_sbd_sbd_i", "SBD", 10, "i30")
    }  # fmt: skip
    assert {p["set"] for p in points} == {"val", "coco"}
    assert (study / OUT / "figures/data_scaling.png").stat().st_size > 10_000


def test_the_rendered_run_counts_its_lists_and_refuses_an_empty_one(tmp_path):
    from render_mmseg_config import train_set

    run = {"variant": "sbd_only", "budget": "i100", "seed": 0, "gpus": 2, "batch_per_gpu": 4,
           "train_sets": [{"split": "train_sbd", "labels": "SegmentationClassSBD", "ann_file": "x.txt"}]}  # fmt: skip
    ids = tmp_path / "x.txt"
    ids.write_text("".join(f"2008_{i:06d}\n" for i in range(37)))
    trained = train_set(run, [ids])
    # 37 images on 2 GPUs: 19 per rank, 5 steps of 4; 100 steps need 20 epochs
    assert (trained["images"], trained["iterations_per_epoch"], trained["epochs"]) == (37, 5, 20)
    assert trained["iterations"] == 100 and trained["iteration_budget"] == 100
    ids.write_text("")
    with pytest.raises(ValueError, match=r"variant sbd_only: its training lists are empty"):
        train_set(run, [ids])


def test_learning_curves_can_read_runs_at_equal_images_seen(tmp_path):
    from plot_learning_curves import seed_curves

    header = "epoch,mIoU,aAcc,mAcc,train_loss,lr\n"
    small, large = tmp_path / "small.csv", tmp_path / "large.csv"
    small.write_text(header + "".join(f"{e},{10 * e},50,20,{2 / e},0.01\n" for e in range(1, 7)))
    large.write_text(header + "".join(f"{e},{30 * e},50,20,1.0,0.01\n" for e in range(1, 3)))
    runs = [{"variant": "voc_i", "budget": "i60", "seed": 0}, {"variant": "trainaug_i", "budget": "i60", "seed": 0}]
    by_epochs = seed_curves(runs, [small, large])
    assert by_epochs[("voc_i", "i60")][0] == [1, 2, 3, 4, 5, 6]
    by_images = seed_curves(runs, [small, large], sizes=[40, 142], x="images")
    assert by_images[("voc_i", "i60")][0] == [40, 80, 120, 160, 200, 240]
    assert by_images[("trainaug_i", "i60")][0] == [142, 284]
    np.testing.assert_array_equal(by_images[("trainaug_i", "i60")][1], [[30, 60]])
    # the figure's lower panel: the training loss of the same epochs
    losses = seed_curves(runs, [small, large], column="train_loss")
    np.testing.assert_allclose(losses[("voc_i", "i60")][1], [[2 / e for e in range(1, 7)]])


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "the file is empty"),
        ('{"images": 40, "epochs": 3', "not valid JSON"),
        ('{"images": 40, "epochs": 3}', "no iterations"),
        ('{"images": 0, "epochs": 3, "iterations": 60}', "images is 0, not a whole number > 0"),
    ],
    ids=["empty", "truncated", "incomplete", "no-images"],
)
def test_a_broken_train_set_json_is_an_error_naming_the_file(tmp_path, text, message):
    from common.run_files import RunFileError, read_train_set

    path = tmp_path / "train_set.json"
    path.write_text(text)
    with pytest.raises(RunFileError, match=f"{path}: {re.escape(message)}"):
        read_train_set(path)
