"""The study's claims as numbers: the training-image sample, the generalization table,
the Findings, and that none of it retrains a model."""

import csv
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import DATA_KEY, DEMO, DEMO_RUNS, DEMO_VOC, OUT, planned_jobs, run_snakemake, write_config
from sample_train_images import draw_sample, training_pool, write_sample


def write_list(path: Path, ids) -> Path:
    path.write_text("".join(f"{i}\n" for i in ids))
    return path


# ---- the training-image sample ---------------------------------------------------
def test_train_sample_is_deterministic_and_keeps_each_images_training_label(tmp_path):
    ids = [f"2008_{i:06d}" for i in range(100)]
    first = draw_sample(ids, 20, seed=0)
    assert first == draw_sample(list(reversed(ids)), 20, seed=0)  # the list's order does not matter
    assert first == sorted(first) and len(set(first)) == 20 and set(first) <= set(ids)
    assert draw_sample(ids, 20, seed=1) != first
    assert draw_sample(ids[:5], 20, seed=0) == ids[:5]  # fewer images than asked: all of them

    voc, aug = tmp_path / "SegmentationClass", tmp_path / "SegmentationClassAug"
    images = tmp_path / "JPEGImages"
    for folder in (voc, aug, images):
        folder.mkdir()
    for i in ids:
        (images / f"{i}.jpg").write_bytes(b"jpeg " + i.encode())
        (aug / f"{i}.png").write_bytes(b"aug " + i.encode())
    for i in ids[:30]:
        (voc / f"{i}.png").write_bytes(b"voc " + i.encode())
    train = write_list(tmp_path / "train.txt", ids[:30])
    extra = write_list(tmp_path / "aug.txt", ids[20:])  # overlaps train: train's label wins
    sets = [{"split": "train", "labels": "SegmentationClass"}, {"split": "aug", "labels": "SegmentationClassAug"}]
    pool = training_pool(sets, [train, extra], [voc, aug])
    assert len(pool) == 100 and pool[ids[25]] == voc / f"{ids[25]}.png" and pool[ids[40]] == aug / f"{ids[40]}.png"
    out = tmp_path / "sample"
    write_sample(draw_sample(list(pool), 50, 0), pool, images, out)
    listed = (out / "list.txt").read_text().split()
    assert listed == draw_sample(ids, 50, 0)
    for i in listed:
        label = (out / "SegmentationClass" / f"{i}.png").read_bytes()
        assert label == (b"voc " if ids.index(i) < 30 else b"aug ") + i.encode()
        assert (out / "JPEGImages" / f"{i}.jpg").read_bytes() == b"jpeg " + i.encode()
        assert not os.path.isabs(os.readlink(out / "JPEGImages" / f"{i}.jpg"))  # relative: the tree can move


def test_a_listed_image_without_its_label_is_named_and_nothing_is_left(tmp_path):
    images, labels = tmp_path / "JPEGImages", tmp_path / "labels"
    images.mkdir(), labels.mkdir()
    (images / "a.jpg").write_bytes(b"x")
    pool = training_pool([{"split": "train", "labels": "labels"}], [write_list(tmp_path / "t.txt", ["a"])], [labels])
    with pytest.raises(FileNotFoundError, match=str(labels / "a.png")):
        write_sample(["a"], pool, images, tmp_path / "sample")
    assert not (tmp_path / "sample").exists() and not (tmp_path / ".sample.tmp").exists()
    with pytest.raises(ValueError, match="empty"):
        training_pool([{"split": "train", "labels": "labels"}], [write_list(tmp_path / "e.txt", [])], [labels])


# ---- on the finished demo ----------------------------------------------------------
def read_csv(path: Path) -> list[dict]:
    with open(path) as handle:
        return list(csv.DictReader(handle))


def test_generalization_table_has_every_set_and_gap_with_intervals(study):
    rows = read_csv(study / OUT / "tables/generalization.csv")
    assert {(r["variant"], r["budget"]) for r in rows} == {(v, b) for v, b, _ in DEMO_RUNS}
    for row in rows:
        assert int(row["seeds"]) == sum((v, b) == (row["variant"], row["budget"]) for v, b, _ in DEMO_RUNS)
        trained = json.loads((study / OUT / f"runs/{row['variant']}/{row['budget']}-s0/train_set.json").read_text())
        assert int(row["train images"]) == min(DEMO["evaluation"]["train_sample"], trained["images"])
        assert int(row["coco images"]) > 0 and int(row["val images"]) == 30
        for name in ("train mIoU", "val mIoU", "coco mIoU", "gap train-val", "gap val-coco"):
            value, low, high = (float(row[name.replace(" mIoU", "") + s] if s else row[name]) for s in ("", " low", " high"))
            assert low <= value + 1e-6 and value <= high + 1e-6, (name, row)
        gap = float(row["val mIoU"]) - float(row["coco mIoU"])
        assert float(row["gap val-coco"]) == pytest.approx(gap, abs=1e-3)
    # the sample each run was measured on is its own training list's
    sample = next((study / f"resources/data/{DATA_KEY}/train_samples").glob("train-SegmentationClass_n*"))
    train = set((study / DEMO_VOC / "ImageSets/Segmentation/train.txt").read_text().split())
    assert set((sample / "list.txt").read_text().split()) <= train
    md = (study / OUT / "tables/generalization.md").read_text()
    assert "Monte Carlo standard error" in md and "COCO" in md


def test_report_opens_with_findings_from_the_tables(study):
    text = (study / OUT / "report/workflow.rst").read_text()
    assert text.startswith("Findings")
    per_class = read_csv(study / OUT / "tables/per_class_iou.csv")
    miou = next(r for r in per_class if r["class"] == "mIoU")
    epochs = DEMO["epochs"][-1]
    assert f"{epochs} epochs: {float(miou[f'change e{epochs}']):+.0f}" in text or f"{float(miou[f'change e{epochs}']):+.1f}" in text
    assert "Generalization gaps" in text and "agreement" in text
    assert text.count("``") >= 6  # three classes named
    assert (study / "report/workflow.rst").read_text() in text  # the workflow's own description follows


def test_adding_evaluations_to_a_finished_study_retrains_nothing(study_copy):
    copy = study_copy
    # as if the study had finished before evaluation.ood and the train sample existed
    for variant, budget, seed in DEMO_RUNS:  # the VOC runs (a dataset's runs have neither)
        run = copy / OUT / f"runs/{variant}/{budget}-s{seed}"
        shutil.rmtree(run / "ood")
        shutil.rmtree(run / "train_sample")
    shutil.rmtree(copy / f"resources/data/{DATA_KEY}/train_samples")
    result = run_snakemake(copy, "-n", "--configfile", "config/demo.yaml")
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = planned_jobs(result)
    # each VOC run evaluated again (VOC val, its training sample and COCO: one job), none trained
    assert jobs.get("evaluate_upernet") == len(DEMO_RUNS) and "evaluate_upernet_dataset" not in jobs
    assert "train_upernet" not in jobs and "render_mmseg_config" not in jobs
    # another sample size: a new sample and its evaluations, still no training
    config = write_config(copy, "bigger", evaluation={"train_sample": 20})
    jobs = planned_jobs(run_snakemake(copy, "-n", "--configfile", config))
    # one sample per set of training lists: voc's, vocaug's, and each train_sbd subset's
    assert jobs.get("sample_train_images") == 4 and "train_upernet" not in jobs


def test_bootstrap_of_the_demo_tables_is_reproducible(study):
    """The per-class intervals come from a seeded bootstrap: the same table twice."""
    import compare_per_class

    runs = [r for r in (study / OUT / "runs").glob("*/*") if r.parent.name in ("voc", "vocaug")]
    assert runs
    paths, spec = [], []
    for run in sorted(runs):
        variant, name = run.parent.name, run.name
        budget, seed = name.split("-")
        spec.append({"variant": variant, "budget": budget, "seed": int(seed[1:])})
        paths.append(run / "confusion_per_image.npz")
    bootstrap = {"resamples": 500, "max_resamples": 2000, "mc_error": 0.05, "seed": 0, "confidence": 0.95}
    first = compare_per_class.compare(spec, paths, ["voc", "vocaug"], bootstrap)
    again = compare_per_class.compare(spec, paths, ["voc", "vocaug"], bootstrap)
    for epochs in first:
        np.testing.assert_array_equal(first[epochs]["change_high"], again[epochs]["change_high"])


def test_a_coco_archive_with_a_wrong_md5_is_named_and_nothing_is_written(workflow_copy):
    wrong = "0" * 32
    data = {**DEMO["data"], "coco_images": {**DEMO["data"]["coco_images"], "md5": wrong}}
    config = write_config(workflow_copy, "bad_coco", data=data)
    annotations = DEMO["data"]["coco_annotations"]["md5"][:8]
    target = f"resources/coco_voc/images-{wrong[:8]}_annotations-{annotations}/val.txt"
    result = run_snakemake(workflow_copy, target, "--cores", "1", "--configfile", config)
    assert result.returncode != 0
    log = next((workflow_copy / "logs/convert_coco").glob("*.log")).read_text()
    assert "data.coco_images.md5" in log and "val2017_mini.zip" in log, log[-2000:]
    assert not list((workflow_copy / "resources/coco_voc").rglob("*.png"))
    assert not (workflow_copy / target).exists()
