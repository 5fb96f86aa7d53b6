"""Published references: the nearest-reference choice, the flag rule, the study's
published per-class columns, and `snakemake check` on a config with known deviations."""

import csv
import subprocess
import sys

import pytest
import yaml
from conftest import REPO

from common.references import (
    ReferenceError,
    check_run,
    iterations_per_epoch,
    load_references,
    nearest_reference,
    published_reference,
    reference_flag,
    run_recipe,
    seed_interval,
    variant_recipe,
)
from common.voc import CLASSES

REFERENCES = load_references(REPO / "config/references.yaml")
SCHEMA = yaml.safe_load((REPO / "config/schemas/config.schema.yaml").read_text())
TRAINING = {k: v["default"] for k, v in SCHEMA["properties"]["training"]["properties"].items() if "default" in v}
VOC = [{"split": "train", "labels": "SegmentationClass"}]
VOCAUG = [*VOC, {"split": "aug", "labels": "SegmentationClassAug"}]


def recipe(epochs, images=None, train_sets=VOCAUG, official=True, **training):
    settings = {**TRAINING, **training, "train_sets": train_sets}
    if images is None:
        images = 1464 if train_sets == VOC else 10582
    return run_recipe(variant_recipe(settings, official, REFERENCES["datasets"]), epochs, images)


def nearest(*args, **kwargs):
    return nearest_reference(recipe(*args, **kwargs), REFERENCES["references"], REFERENCES["datasets"])["name"]


@pytest.mark.parametrize(
    "images, gpus, batch, expected",
    [
        (10582, 2, 8, 662),  # ceil(5291 / 8)
        (10582, 1, 16, 662),
        (10582, 4, 2, 1323),  # ceil(2645.5) = 2646 samples per process, / 2
        (10582, 1, 8, 1323),
        (1464, 4, 4, 92),  # 366 per process, ceil(91.5)
        (1464, 1, 16, 92),
        (7, 2, 2, 2),  # 4 samples per process (the sampler pads), 2 batches
        (40, 1, 2, 20),
        (0, 1, 2, 0),
    ],
)
def test_iterations_per_epoch_follow_the_sampler_and_the_last_short_batch(images, gpus, batch, expected):
    assert iterations_per_epoch(images, gpus, batch) == expected


@pytest.mark.parametrize(
    "epochs, training, expected",
    [
        (30, {}, "upernet_r50_4xb4-20k_voc12aug-512x512"),  # 19,860 steps at 2 x 8: the example
        (60, {}, "upernet_r50_4xb4-40k_voc12aug-512x512"),  # 39,720
        (100, {}, "upernet_r50_4xb4-40k_voc12aug-512x512"),  # 66,200: nearer 40k than the study's 132,400
        (200, {}, "study vocaug, 200 epochs"),
        (15, {"gpus": 1, "batch_per_gpu": 8}, "upernet_r50_4xb4-20k_voc12aug-512x512"),  # 19,845 at batch 8
        (30, {"gpus": 1, "batch_per_gpu": 8}, "upernet_r50_4xb4-40k_voc12aug-512x512"),  # 39,690
        (30, {"gpus": 4, "batch_per_gpu": 8}, "upernet_r50_4xb4-20k_voc12aug-512x512"),  # 9,930: 20k by ratio
        (30, {"depth": 101}, "upernet_r101_4xb4-20k_voc12aug-512x512"),
        (60, {"depth": 101}, "upernet_r101_4xb4-40k_voc12aug-512x512"),
        (30, {"depth": 18}, "upernet_r18_4xb4-20k_voc12aug-512x512"),
        (500, {"depth": 18}, "upernet_r18_4xb4-20k_voc12aug-512x512"),  # the only R-18 entry
    ],
)
def test_nearest_reference_is_chosen_in_optimizer_iterations(epochs, training, expected):
    assert nearest(epochs, **training) == expected


def test_nearest_reference_prefers_the_same_data_then_depth_then_crop():
    # VOC train alone: only the study's voc run trained on it, whatever the schedule
    assert nearest(30, train_sets=VOC) == "study voc, 200 epochs"
    assert nearest(30, train_sets=VOC, depth=18) == "study voc, 200 epochs"
    # trainaug as one list is the same data as train + aug
    assert nearest(30, train_sets=[{"split": "trainaug", "labels": "SegmentationClassAug"}]) == (
        "upernet_r50_4xb4-20k_voc12aug-512x512"
    )
    # the demo: R-18, 64x64 crops, mini archives: the R-18 entry, crop and data differing
    demo = recipe(6, images=142, official=False, depth=18, crop_size=[64, 64], gpus=1, batch_per_gpu=2,
                  base_lr=0.32, pretrained=None, head_channels=64)  # fmt: skip
    check = check_run(demo, REFERENCES)
    assert check["reference"]["name"] == "upernet_r18_4xb4-20k_voc12aug-512x512"
    assert {"data", "crop", "pretrained", "head channels", "iterations", "total batch", "lr", "norm"} <= set(
        check["differences"]
    )
    assert "backbone" not in check["differences"] and "loss" not in check["differences"]


def test_study_run_meets_its_own_published_numbers():
    check = check_run(recipe(200, pretrained="torchvision://resnet50"), REFERENCES)
    assert check["reference"]["name"] == "study vocaug, 200 epochs"
    assert check["differences"] == []  # the study's recipe, its batch unpublished
    assert check["warnings"] == []


def test_flag_rule_three_points_or_the_seed_interval():
    assert reference_flag(72.0, [72.0], 74.82, 0.95) == ""  # 2.8 points below
    assert reference_flag(71.5, [71.5], 74.82, 0.95).startswith("far below: 3.3 points below")
    assert reference_flag(80.0, [80.0], 74.82, 0.95) == ""  # above is not flagged
    # three seeds close together: less than 3 points below, but the reference is above their interval
    seeds = [74.0, 74.2, 74.1]
    low, high = seed_interval(seeds, 0.95)
    assert (low, high) == pytest.approx((74.1 - 4.302653 * 0.1 / 3**0.5, 74.1 + 4.302653 * 0.1 / 3**0.5), abs=1e-4)
    flag = reference_flag(74.2, seeds, 74.82, 0.95)
    assert "reference above the 95% seed interval [73.9, 74.3]" in flag and "points below" not in flag
    # two seeds far apart: the interval holds the reference; only the worse seed is > 3 points below
    assert reference_flag(78.0, [70.0, 78.0], 74.82, 0.95) == ""
    assert reference_flag(70.0, [70.0, 78.0], 74.82, 0.95) == "far below: 4.8 points below"


def test_published_per_class_columns_only_for_the_studys_recipe_and_epochs():
    at_200 = recipe(200, pretrained="torchvision://resnet50")
    published = published_reference(at_200, REFERENCES["references"])
    assert published["name"] == "study vocaug, 200 epochs"
    assert published["per_class"]["bicycle"] == 42.82
    assert published_reference(recipe(200, train_sets=VOC), REFERENCES["references"])["per_class"]["bicycle"] == 64.18
    assert published_reference(recipe(100), REFERENCES["references"]) is None
    assert published_reference(recipe(200, depth=18), REFERENCES["references"]) is None
    assert published_reference(recipe(200, crop_size=[64, 64]), REFERENCES["references"]) is None


def test_per_class_table_sets_the_published_iou_beside_the_reproduced():
    from compare_per_class import add_published, markdown, table_columns

    per_class = {name: REFERENCES["references"][-1]["per_class"][name] for name in CLASSES}
    published = {"e200": {"vocaug": ["study vocaug, 200 epochs", per_class]}}
    columns = table_columns(["voc", "vocaug"], ["e100", "e200"], published)
    assert columns[columns.index("vocaug e200") + 1] == "vocaug e200 published"
    assert "vocaug e100 published" not in columns and "voc e200 published" not in columns
    rows = [{"class": name} for name in [*CLASSES, "mIoU"]]
    add_published(rows, published)
    assert rows[CLASSES.index("bicycle")]["vocaug e200 published"] == 42.82
    assert rows[-1]["vocaug e200 published"] == pytest.approx(75.24, abs=0.005)
    nan = float("nan")
    for row in rows:
        row.update({f"{k} e200": 50.0 for k in ("voc", "vocaug")})
        row.update({"change e200": 0.0, "change e200 low": -1.0, "change e200 high": 1.0})
    result = {"change": [0.0] * 21, "change_low_error": [nan], "change_high_error": [nan]}
    import numpy as np

    result = {k: np.array(v) for k, v in result.items()} | {
        "miou_change_low_error": np.array(0.0), "miou_change_high_error": np.array(0.0),
        "resamples": 2000, "seeds": (1, 1), "images": 30, "left_out": np.zeros(21),
    }  # fmt: skip
    text = markdown({"e200": result}, rows, ["voc", "vocaug"], 8, 0.95, published)
    assert "| class | voc e200 | vocaug e200 | vocaug e200 (published) | change e200 [95% CI] |" in text
    assert "| bicycle | 50.0 | 50.0 | 42.82 |" in text
    assert "vocaug e200 (published): study vocaug, 200 epochs" in text


def test_published_tables_agree_with_their_mIoU():
    for reference in REFERENCES["references"]:
        if "per_class" in reference:
            assert sum(reference["per_class"].values()) / 21 == pytest.approx(reference["mIoU"], abs=0.01)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda d: d["references"][0].update(mIoU="high"), "references[0].mIoU: 'high' is not of type 'number'"),
        (lambda d: d["references"][0].update(source="nowhere"), "unknown source 'nowhere'"),
        (lambda d: d["references"][5]["per_class"].update(bicycle=99.0), "the mean of per_class is 69.57, not its mIoU 67.91"),
        (lambda d: d["references"][5]["per_class"].pop("sofa"), "per_class must name the 21 VOC classes"),
        (lambda d: d["references"][0]["recipe"].update(epochs=30), "as iterations or as epochs"),
        (lambda d: d["sources"]["mmseg_zoo"]["recipe"].pop("stem"), "its recipe (with its source's) lacks stem"),
    ],
)
def test_a_broken_references_file_is_an_error_naming_file_and_entry(tmp_path, edit, message):
    data = yaml.safe_load((REPO / "config/references.yaml").read_text())
    edit(data)
    path = tmp_path / "refs.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ReferenceError, match=str(path)) as error:
        load_references(path)
    assert message in str(error.value)


DEVIATIONS = {
    "variants": {
        "voc": {"train_sets": VOC},
        "vocaug": {"train_sets": VOCAUG},
        "tv": {"train_sets": [{"split": "trainaug", "labels": "SegmentationClassAug"}],
               "pretrained": "torchvision://resnet50"},
        "scratch": {"train_sets": VOCAUG, "pretrained": None, "loss": "focal", "augment": {"photometric": False}},
    },
    "epochs": [15, 30],
    "training": {"gpus": 1, "batch_per_gpu": 8, "base_batch_size": 8},
}  # fmt: skip


def test_snakemake_check_lists_each_deviation_without_torch(login_node):
    workdir, env = login_node
    (workdir / "config/deviations.yaml").write_text(yaml.safe_dump(DEVIATIONS))
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "check", "--cores", "1",
         "--configfile", "config/config.yaml", "config/deviations.yaml"],
        cwd=workdir, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "# Recipe check" in result.stdout
    with open(workdir / "results/tables/recipe_check.csv") as handle:
        rows = list(csv.DictReader(handle))
    differs, warnings, references = {}, {}, {}
    for row in rows:
        key = (row["variant"], int(row["epochs"]))
        references[key] = row["reference"]
        if row["setting"] == "warning":
            warnings.setdefault(key, []).append(row["run"])
        elif row["differs"] == "True":
            differs.setdefault(key, set()).add(row["setting"])
    # batch 8 on one GPU: 1,323 steps per epoch of trainaug, so 15 epochs meet 20k and 30 meet 40k
    assert references[("vocaug", 15)] == "upernet_r50_4xb4-20k_voc12aug-512x512"
    assert references[("vocaug", 30)] == "upernet_r50_4xb4-40k_voc12aug-512x512"
    assert references[("voc", 30)] == "study voc, 200 epochs"
    every = {"total batch", "lr", "norm"}  # 8 images on one process, lr not scaled from 16
    assert differs[("vocaug", 30)] == every
    assert differs[("tv", 30)] == every | {"backbone", "pretrained"}
    assert differs[("scratch", 30)] == every | {"pretrained", "loss", "augmentation"}
    assert differs[("voc", 30)] == {"lr", "norm", "backbone", "pretrained", "iterations"}
    traps = {key: " | ".join(texts) for key, texts in warnings.items()}
    assert "without linear scaling" in traps[("vocaug", 30)] and "SyncBN with one process" in traps[("vocaug", 30)]
    assert "torchvision weights (ResNet, plain stem)" in traps[("tv", 30)]
    assert "pretrained: null on the official data" in traps[("scratch", 30)]
    assert "torchvision" not in traps[("vocaug", 30)] and "pretrained: null" not in traps[("tv", 30)]
    # every run's iteration count is printed
    for epochs, steps in ((15, "19,845"), (30, "39,690")):
        assert f"| vocaug | e{epochs} | {epochs} | 0 | 10,582 | {steps} |" in result.stdout


def test_snakemake_check_of_the_study_config(login_node):
    workdir, env = login_node
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "check", "--cores", "1", "--configfile", "config/config.yaml"],
        cwd=workdir, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    for line in (
        "| vocaug | e30 | 30 | 0 | 10,582 | 19,860 | upernet_r50_4xb4-20k_voc12aug-512x512 | 74.82 | nothing | 0 |",
        "| vocaug | e100 | 100 | 0 | 10,582 | 66,200 | upernet_r50_4xb4-40k_voc12aug-512x512 | 75.92 | iterations | 0 |",
        "| voc | e200 | 200 | 0 | 1,464 | 18,400 | study voc, 200 epochs | 67.91 | backbone, pretrained | 0 |",
    ):
        assert line in result.stdout, result.stdout[:3000]


def test_demo_summary_sets_every_run_beside_its_reference_and_says_it_is_far_below(study):
    from conftest import DEMO, DEMO_VOC, OUT, read_ids

    with open(study / f"{OUT}/tables/summary.csv") as handle:
        rows = list(csv.DictReader(handle))
    sets = {"voc": ["train"], "vocaug": ["train", "aug"]}
    expected = {"voc": ("study voc, 200 epochs", 67.91), "vocaug": ("upernet_r18_4xb4-20k_voc12aug-512x512", 72.9)}
    for row in [r for r in rows if r["variant"] in expected]:  # the demo's other variants: tests/test_attribution.py
        name, miou = expected[row["variant"]]
        images = sum(len(read_ids(study / f"{DEMO_VOC}/ImageSets/Segmentation/{s}.txt")) for s in sets[row["variant"]])
        assert int(row["train_images"]) == images
        assert int(row["iterations"]) == int(row["epochs"]) * -(-images // DEMO["training"]["batch_per_gpu"])
        assert (row["reference"], float(row["reference_mIoU"])) == (name, miou)
        assert float(row["vs_reference"]) == pytest.approx(float(row["mIoU"]) - miou, abs=0.011)
        assert row["reference_flag"].startswith("far below: ")  # tiny CPU runs, tens of points below
        assert {"data", "crop", "pretrained", "iterations"} <= set(row["reference_differs"].split(", "))
        assert row["reference_mIoU_msflip"] == "" and row["vs_reference_tta"] == ""  # TTA is off
    summary = (study / f"{OUT}/tables/summary.md").read_text()
    assert f"**Far below their reference: {len(rows)} of {len(rows)} runs**" in summary
    findings = (study / f"{OUT}/report/workflow.rst").read_text()
    assert "**Against published references**" in findings and "far below" in findings
    with open(study / f"{OUT}/tables/recipe_check.csv") as handle:
        checks = list(csv.DictReader(handle))
    warnings = [r["run"] for r in checks if r["setting"] == "warning"]
    assert warnings and all("SyncBN with one process" in w for w in warnings)  # the demo trains on one process
    with open(study / f"{OUT}/tables/per_class_iou.csv") as handle:
        assert not any("published" in column for column in next(csv.reader(handle)))  # no 200-epoch R-50 run


def test_findings_say_how_each_variant_and_epoch_count_compares():
    from findings import reference_findings

    row = {"variant": "vocaug", "budget": "e30", "epochs": "30", "reference": "upernet_r50_4xb4-20k_voc12aug-512x512",
           "reference_mIoU": "74.82", "reference_differs": "nothing", "reference_flag": ""}  # fmt: skip
    healthy = reference_findings([{**row, "seed": "0", "mIoU": "75.1"}, {**row, "seed": "1", "mIoU": "74.9"}])
    assert "vocaug (30 epochs, 2 seeds): 75.0 against 74.82 for upernet_r50_4xb4-20k_voc12aug-512x512 (+0.2;" in healthy[0]
    assert healthy[0].endswith("None is far below its reference.")
    low = reference_findings([{**row, "seed": "0", "mIoU": "60.0", "reference_flag": "far below: 14.8 points below"}])
    assert "(-14.8 — far below; differs in nothing)" in low[0] and "1 of 1 variant and budget pairs" in low[0]
    assert reference_findings([]) == []


def test_a_reference_that_publishes_its_batch_but_not_its_gpus_is_compared_on_the_batch():
    reference = {**REFERENCES["references"][1], "recipe": {**REFERENCES["references"][1]["recipe"], "gpus": None}}
    rows = {r["setting"]: r for r in check_run(recipe(30), {**REFERENCES, "references": [reference]})["rows"]}
    assert rows["total batch"]["reference"] == "16" and not rows["total batch"]["differs"]
    rows = {r["setting"]: r for r in check_run(recipe(30, gpus=1), {**REFERENCES, "references": [reference]})["rows"]}
    assert rows["total batch"]["differs"] and rows["total batch"]["run"] == "8 (1 GPU x 8)"
