"""Tables, figures and the HTML report of the demo study, and what regenerates them."""

import csv
import json
import os
import re

import numpy as np
import pytest
from PIL import Image
from conftest import DEMO, DEMO_RUNS, DEMO_VOC, planned_jobs, read_ids, run_dir, run_snakemake, write_config

from common.stats import convergence_epoch, improvement_sentence
from common.voc import CLASSES as VOC_CLASSES

FIGURES = ["per_class_iou", "per_class_change", "learning_curves", "miou_vs_epochs", "qualitative", "confusion_hard_classes"]
FIGURE_RULES = {"summarize_runs", "compare_per_class", "plot_per_class", "plot_learning_curves", "plot_qualitative", "plot_confusion"}


def read_csv(path):
    with open(path) as handle:
        return list(csv.DictReader(handle))


@pytest.mark.parametrize("name", FIGURES)
def test_every_figure_exists_as_png_and_pdf(study, name):
    png = study / f"results/demo/figures/{name}.png"
    with Image.open(png) as image:
        assert image.format == "PNG" and image.width > 600 and image.height > 300
        assert len(np.unique(np.asarray(image.convert("L")))) > 10, "the figure is not blank"
    assert (study / f"results/demo/figures/{name}.pdf").read_bytes()[:5] == b"%PDF-"


def test_summary_has_one_row_per_run_with_computed_columns(study):
    rows = read_csv(study / "results/demo/tables/summary.csv")
    assert sorted((r["variant"], r["budget"], int(r["seed"])) for r in rows) == sorted(DEMO_RUNS)
    for row in rows:
        out = run_dir(study, row["variant"], row["budget"], int(row["seed"]))
        assert int(row["epochs"]) == json.loads((out / "train_set.json").read_text())["epochs"]
        metrics = json.loads((out / "metrics.json").read_text())
        assert float(row["mIoU"]) == pytest.approx(metrics["mIoU"], abs=0.01)
        history = read_csv(out / "history.csv")
        # decided on the unrounded mIoU the metric logs (MMSeg's column keeps two decimals)
        assert all(round(float(h["mIoU_unrounded"]), 2) == float(h["mIoU"]) for h in history)
        miou = [float(h["mIoU_unrounded"]) for h in history]
        expected = convergence_epoch([int(h["epoch"]) for h in history], miou, 0.99)
        assert int(row["converged_epoch"]) == expected
        assert float(row["train_hours"]) > 0 and float(row["gpu_hours"]) == pytest.approx(float(row["train_hours"]))
        assert row["mIoU_tta"] == ""
    assert "| variant | budget | seed | epochs | train_images | mIoU |" in (study / "results/demo/tables/summary.md").read_text()


def test_per_class_table_has_the_studys_layout_and_computed_counts(study):
    rows = read_csv(study / "results/demo/tables/per_class_iou.csv")
    assert [r["class"] for r in rows] == [*VOC_CLASSES, "mIoU"]
    markdown = (study / "results/demo/tables/per_class_iou.md").read_text()
    for epochs in DEMO["epochs"]:
        assert {f"voc e{epochs}", f"vocaug e{epochs}", f"change e{epochs}"} <= set(rows[0])
        changes = [float(r[f"change e{epochs}"]) for r in rows[:-1] if r[f"change e{epochs}"]]
        for r in rows[:-1]:
            if r[f"change e{epochs}"]:
                change = float(r[f"vocaug e{epochs}"]) - float(r[f"voc e{epochs}"])
                assert float(r[f"change e{epochs}"]) == pytest.approx(change, abs=1e-3)
                assert float(r[f"change e{epochs} low"]) <= float(r[f"change e{epochs}"]) + 1e-6
                assert float(r[f"change e{epochs}"]) <= float(r[f"change e{epochs} high"]) + 1e-6
        sentence = improvement_sentence(changes, 8)
        assert f"- {epochs:,} epochs (vocaug vs voc): {sentence}." in markdown
        # the mean over seeds of each run's mIoU (MMSeg's, from metrics.json)
        miou = [
            json.loads((run_dir(study, "vocaug", epochs, seed) / "metrics.json").read_text())["mIoU"]
            for seed in DEMO["seeds"]
        ]
        assert float(rows[-1][f"vocaug e{epochs}"]) == pytest.approx(np.mean(miou), abs=0.01)
    assert "†" in markdown  # with 30 val images some intervals include 0, and are marked


def test_report_builds_with_every_figure_and_table(study):
    result = run_snakemake(study, "--report", "results/demo/report.html", "--configfile", "config/demo.yaml")
    assert result.returncode == 0, result.stderr[-3000:]
    html = (study / "results/demo/report.html").read_text()
    for name in [*(f"{f}.png" for f in FIGURES), "summary.csv", "per_class_iou.csv", "recipe_check.csv"]:
        assert name in html, name


def test_editing_a_plotting_script_redraws_only_its_figures(study):
    script = study / "scripts/plot_learning_curves.py"
    original, stat = script.read_text(), script.stat()
    script.write_text(original + "\nEDITED = True\n")  # a real edit (comments re-run nothing)
    try:
        result = run_snakemake(study, "-n", "--configfile", "config/demo.yaml")
    finally:
        script.write_text(original)
        os.utime(script, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # Snakemake also compares mtimes
    assert planned_jobs(result) == {"plot_learning_curves": 1, "all": 1}


def test_editing_a_figure_setting_redraws_only_that_figure(study):
    config = write_config(study, "hard", report={"hard_classes": ["chair", "person"]})
    assert planned_jobs(run_snakemake(study, "-n", "--configfile", config)) == {"plot_confusion": 1, "all": 1}


def test_adding_a_seed_trains_only_the_new_runs_and_redraws_everything(study):
    seeds = [*DEMO["seeds"], max(DEMO["seeds"]) + 1]
    result = run_snakemake(study, "-n", "--configfile", write_config(study, "seeds", seeds=seeds))
    jobs = planned_jobs(result)
    new = 2 * len(DEMO["epochs"])  # the new seed of both variants at every epoch count
    assert jobs["train_upernet"] == new and jobs["evaluate_upernet"] == new
    every_run = {"summarize_runs", "compare_per_class", "plot_per_class", "plot_learning_curves"}
    assert all(jobs.get(r) == 1 for r in every_run)
    # the qualitative panel and the confusion figure show each variant's first seed
    assert "plot_qualitative" not in jobs and "plot_confusion" not in jobs
    assert f"output: results/demo/runs/voc/e{DEMO['epochs'][0]}-s0/final.pth" not in result.stdout


def test_snapshot_draws_the_finished_runs_without_training_the_others(study):
    config = write_config(study, "sweep", epochs=[*DEMO["epochs"], 12])
    plan = planned_jobs(run_snakemake(study, "snapshot", "-n", "--configfile", config))
    assert "train_upernet" not in plan and "evaluate_upernet" not in plan
    assert FIGURE_RULES <= set(plan)
    result = run_snakemake(study, "snapshot", "--cores", "2", "--configfile", config)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = read_csv(study / "results/demo/snapshot/tables/summary.csv")
    assert {r["budget"] for r in rows} == {b for _, b, _ in DEMO_RUNS}
    assert (study / "results/demo/snapshot/figures/qualitative.png").exists()
    assert not (study / "results/demo/runs/voc/e12-s0").exists()


def test_qualitative_images_are_configurable_and_checked(study):
    val = read_ids(study / f"{DEMO_VOC}/ImageSets/Segmentation/val.txt")
    good = write_config(study, "qual", report={"qualitative_images": val[:2]})
    assert planned_jobs(run_snakemake(study, "-n", "--configfile", good)) == {"plot_qualitative": 1, "all": 1}
    bad = write_config(study, "qual_bad", report={"qualitative_images": ["2099_000001"]})
    # in the snapshot view, so that the failed job takes no figure of the full report with it
    result = run_snakemake(study, "results/demo/snapshot/figures/qualitative.png", "--cores", "1", "--configfile", bad)
    assert result.returncode != 0
    log = (study / "logs/plot_qualitative/results/demo/snapshot.log").read_text()
    assert re.search(r"report.qualitative_images: not in val.txt: 2099_000001", log)
