"""The data stage as real `snakemake` invocations on the mini archives."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import scipy.io
import yaml
from conftest import DATA_KEY, DEMO_DATASET_RUNS, DEMO_RUNS, DEMO_VOC, REPO, planned_jobs, read_ids, run_snakemake, write_config
from PIL import Image

DEMO = ("data", "--cores", "2", "--configfile", "config/demo.yaml")  # the data stage alone
VOC = DEMO_VOC


def test_data_stage_runs_on_mini_archives_and_then_has_nothing_to_do(workflow_copy, extracted):
    result = run_snakemake(workflow_copy, *DEMO)
    assert result.returncode == 0, result.stderr
    voc = workflow_copy / VOC
    sets = voc / "ImageSets/Segmentation"
    assert read_ids(sets / "train.txt") == read_ids(extracted.voc_train)
    assert read_ids(sets / "val.txt") == read_ids(extracted.voc_val)
    trainaug, aug = read_ids(sets / "trainaug.txt"), read_ids(sets / "aug.txt")
    assert set(trainaug) == (
        set(read_ids(extracted.voc_train)) | set(read_ids(extracted.sbd_train)) | set(read_ids(extracted.sbd_val))
    ) - set(read_ids(extracted.voc_val))
    assert set(aug) == set(trainaug) - set(read_ids(extracted.voc_train))
    labels = voc / "SegmentationClassAug"
    assert {p.stem for p in labels.glob("*.png")} == set(trainaug) | set(read_ids(extracted.voc_val))
    for image_id in trainaug[:5]:
        assert (voc / "JPEGImages" / f"{image_id}.jpg").is_file()
        assert Image.open(labels / f"{image_id}.png").mode == "L"
    assert sorted(p.name for p in (voc / "SegmentationClass").glob("*.png")) == sorted(
        p.name for p in extracted.voc_labels.glob("*.png")
    )
    sbd_cls = workflow_copy / f"resources/data/{DATA_KEY}/VOCdevkit/VOCaug/dataset/cls"
    assert len(list(sbd_cls.glob("*.mat"))) == len(list(extracted.sbd_cls.glob("*.mat")))
    assert not list((workflow_copy / "resources").rglob(".extract-*"))
    log = (workflow_copy / f"logs/convert_sbd/{DATA_KEY}.log").read_text()
    sbd_ids = set(read_ids(extracted.sbd_train)) | set(read_ids(extracted.sbd_val))
    assert f": {len(trainaug) + len(read_ids(extracted.voc_val))} in SegmentationClassAug, {len(sbd_ids)} in " in log
    assert {p.stem for p in (voc / "SegmentationClassSBD").glob("*.png")} == sbd_ids
    lists = (workflow_copy / f"logs/make_trainaug_list/{DATA_KEY}.log").read_text()
    assert "counts: train=40, val=30" in lists and "train_sbd=20" in lists
    # SBD-only ids: exactly what voc_aug.py reads from the .mat
    voc_ids = set(read_ids(extracted.voc_train)) | set(read_ids(extracted.voc_val))
    for image_id in sorted(set(read_ids(extracted.sbd_train)) - voc_ids)[:10]:
        expected = scipy.io.loadmat(extracted.sbd_cls / f"{image_id}.mat")["GTcls"][0]["Segmentation"][0]
        np.testing.assert_array_equal(np.asarray(Image.open(labels / f"{image_id}.png")), expected)

    again = run_snakemake(workflow_copy, *DEMO, "--dry-run")
    assert again.returncode == 0, again.stderr
    assert "Nothing to be done" in again.stdout + again.stderr


def demo_data():
    return yaml.safe_load((REPO / "config/demo.yaml").read_text())["data"]


def test_unknown_key_fails_before_any_job_with_its_name(workflow_copy):
    data = demo_data()
    data["voc"]["md55"] = data["voc"].pop("md5")
    result = run_snakemake(workflow_copy, "--cores", "1", "--configfile", write_config(workflow_copy, "bad", data=data))
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "config/bad.yaml: unknown key 'data.voc.md55' (did you mean 'data.voc.md5'?)" in output, output[-2000:]
    assert not (workflow_copy / "resources/data").exists()


@pytest.mark.parametrize(
    "source, key, value, expected",
    [
        ("sbd", "md5", 12345, ["config/bad.yaml: data.sbd.md5 is 12345, an integer; it must be a string or null"]),
        ("voc", "archive", "nowhere/VOCtrainval.tar", ["data.voc.archive", "nowhere/VOCtrainval.tar"]),
    ],
    ids=["wrong-type", "missing-archive"],
)
def test_bad_config_fails_at_planning_with_the_key_name(workflow_copy, source, key, value, expected):
    data = demo_data()
    data[source][key] = value
    result = run_snakemake(workflow_copy, "-n", "--configfile", write_config(workflow_copy, "bad", data=data))
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert all(text in output for text in expected), output[-2000:]


def test_wrong_md5_stops_extraction_with_nothing_left(workflow_copy):
    data = demo_data()
    data["voc"]["md5"] = "0" * 32
    result = run_snakemake(workflow_copy, "--cores", "1", "--configfile", write_config(workflow_copy, "bad", data=data))
    assert result.returncode != 0
    (log,) = (workflow_copy / "logs/extract_voc").glob("voc-00000000_sbd-*.log")
    assert "but data.voc.md5 says 00000000" in log.read_text()
    assert not list((workflow_copy / "resources/data").glob("*/VOCdevkit/VOC2012/JPEGImages"))
    assert not list((workflow_copy / "resources").rglob(".extract-*"))


def test_default_config_plans_the_downloads_on_a_login_node(workflow_copy):
    result = run_snakemake(workflow_copy, "-n", "--quiet", "rules")
    assert result.returncode == 0, result.stderr
    plan = result.stdout + result.stderr
    # VOC, SBD and COCO's two archives (evaluation.ood: [coco])
    for rule, count in [("download_archive", 4), ("extract_voc", 1), ("extract_sbd", 1), ("convert_sbd", 1)]:
        assert any(line.split()[:2] == [rule, str(count)] for line in plan.splitlines()), plan


def test_snakemake_lint_is_clean():
    result = run_snakemake(REPO, "--lint")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Lints for" not in result.stdout + result.stderr


def test_snakefmt_check_is_clean():
    result = subprocess.run(
        [sys.executable, "-m", "snakefmt", "--check", "Snakefile", "rules"],
        cwd=REPO, capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr



def test_epochs_and_seeds_from_the_command_line_are_numbers(workflow_copy):
    # Snakemake's --config parser hands list items over as strings
    result = run_snakemake(
        workflow_copy, "-n", "--configfile", "config/demo.yaml", "--config", "epochs=[1,6]", "seeds=[0,1]"
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    jobs = planned_jobs(result)
    # voc and vocaug x epochs x seeds (vocaug/e6-s0 among them: shapes_vocaug is fine-tuned
    # from it), and the demo's single-seed variants at their own budgets
    assert jobs["train_upernet"] == 2 * 2 * 2 + len(DEMO_RUNS) - 2 * 2 + len(DEMO_DATASET_RUNS), jobs
    assert "results/demo/runs/vocaug/e1-s1/final.pth" in result.stdout


@pytest.mark.parametrize("value", ["epochs=[ten]", "seeds=[0,x]", "epochs=[1.5]"])
def test_a_wrong_epoch_or_seed_from_the_command_line_names_the_key(workflow_copy, value):
    result = run_snakemake(workflow_copy, "-n", "--configfile", "config/demo.yaml", "--config", value)
    assert result.returncode != 0
    key = value.split("=")[0]
    assert f"config key {key}:" in result.stdout + result.stderr, (result.stdout + result.stderr)[-2000:]


def test_resource_numbers_live_in_the_rules_and_the_profile_names_the_cluster():
    profile = yaml.safe_load((REPO / "profiles/slurm/config.yaml").read_text())
    assert "set-threads" not in profile
    cluster_names = {"slurm_partition", "slurm_account", "gpu_model", "constraint", "slurm_extra"}
    for rule, resources in profile["set-resources"].items():
        assert set(resources) <= cluster_names, f"profiles/slurm sets {set(resources) - cluster_names} for {rule}"
    rules = "".join(p.read_text() for p in sorted((REPO / "rules").glob("*.smk")))
    for rule in ("train_upernet", "evaluate_upernet", "convert_sbd"):
        body = rules.split(f"rule {rule}:", 1)[1].split("\nrule ", 1)[0]
        assert "mem_mb=" in body and "runtime=" in body, rule


TRAIN_SETS = [{"split": "train", "labels": "SegmentationClass"}]


@pytest.mark.parametrize(
    "variant, expected",
    [
        ({"depth": 50, "pretrained": "open-mmlab://resnet18_v1c"},
         "variants.bad: pretrained 'open-mmlab://resnet18_v1c' does not fit depth 50"),
        ({"pretrained": "weights/none.pth"}, "variants.bad.pretrained: no such file 'weights/none.pth'"),
    ],
    ids=["depth-mismatch", "missing-local-weights"],
)  # fmt: skip
def test_a_variant_whose_weights_do_not_fit_fails_at_planning(workflow_copy, variant, expected):
    config = write_config(workflow_copy, "bad", variants={"bad": {"train_sets": TRAIN_SETS, **variant}})
    result = run_snakemake(workflow_copy, "-n", "--configfile", config)
    assert result.returncode != 0
    assert expected in result.stdout + result.stderr, (result.stdout + result.stderr)[-2000:]
