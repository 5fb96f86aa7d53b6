"""The planning rules of common/plan.py on config dicts, without Snakemake: the run
grid, the cross-key checks, init_from, subsets, sizing, the report's run selection
and the fine-tuning pairs; what is out of date said in the config's terms; code
hashes computed once per file."""

from __future__ import annotations

import copy
import hashlib
import sys

import pytest
import yaml
from conftest import REPO

sys.path.insert(0, str(REPO / "scripts"))
from common import code as code_module  # noqa: E402
from common.config_errors import validate_config  # noqa: E402
from common.outdated import dict_changes, outdated_runs_text, param_change  # noqa: E402
from common.plan import ConfigError, Paths, Plan, canonical, expand_paths, source_key  # noqa: E402
from common.voc import OFFICIAL_COUNTS  # noqa: E402

SCHEMA = REPO / "config/schemas/config.schema.yaml"
STUDY = yaml.safe_load((REPO / "config/config.yaml").read_text())
OFFICIAL_MD5 = {name: STUDY["data"][name]["md5"] for name in STUDY["data"]}
VOC_ONLY = {"voc": {"train_sets": [{"split": "train", "labels": "SegmentationClass"}]}}
PATHS = Paths(voc="data/VOC2012", splits="data/VOC2012/ImageSets/Segmentation", subsets="data/subsets", results="out")


def merged(base: dict, layer: dict) -> dict:
    """``layer`` over ``base`` key by key, as Snakemake merges config files."""
    out = copy.deepcopy(base)
    for key, value in layer.items():
        out[key] = merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def plan(monkeypatch, **layer) -> Plan:
    """The plan of config/config.yaml with ``layer`` over it (the schema's defaults filled in)."""
    monkeypatch.chdir(REPO)  # report.references is relative to the workflow
    config = merged(STUDY, layer)
    validate_config(config, SCHEMA, [])
    expand_paths(config)
    return Plan(config, OFFICIAL_MD5, PATHS)


def error(monkeypatch, **layer) -> str:
    with pytest.raises(ConfigError) as caught:
        plan(monkeypatch, **layer)
    return str(caught.value)


def test_the_grid_is_variants_by_budgets_by_seeds_with_each_variants_own(monkeypatch):
    study = plan(
        monkeypatch, epochs=[10, 20], seeds=[0, 1],
        variants={"vocaug": {"epochs": [5], "iterations": [100], "seeds": [3]}},
    )  # fmt: skip
    assert [(r["variant"], r["budget"], r["seed"]) for r in study.all_runs] == [
        ("voc", "e10", 0), ("voc", "e10", 1), ("voc", "e20", 0), ("voc", "e20", 1),
        ("vocaug", "e5", 3), ("vocaug", "i100", 3),
    ]  # fmt: skip
    assert study.study_runs == study.all_runs and study.dataset_runs == []
    assert study.variant_lists["vocaug"] == [f"{PATHS.splits}/train.txt", f"{PATHS.splits}/aug.txt"]


def test_reordered_keys_give_the_same_run_settings(monkeypatch):
    """Snakemake compares params as text: YAML key order must not retrain a run."""
    first = plan(monkeypatch, training={"base_lr": 0.02, "crop_size": [64, 64]})
    second = plan(monkeypatch, training={"crop_size": [64, 64], "base_lr": 0.02})
    one, two = (p.run_settings("voc", "e10", "0", "out/work/voc/e10-s0") for p in (first, second))
    assert repr(one) == repr(two) and one["base_lr"] == 0.02 and one["seed"] == 0
    assert list(canonical({"b": {"d": 1, "c": 2}, "a": [{"z": 0, "y": 1}]})) == ["a", "b"]
    assert list(canonical({"a": [{"z": 0, "y": 1}]})["a"][0]) == ["y", "z"]


def test_init_from_a_cycle_or_a_run_outside_the_grid_fails_naming_the_key(monkeypatch):
    cycle = {
        "x": {**VOC_ONLY["voc"], "init_from": {"variant": "y", "epochs": 10}},
        "y": {**VOC_ONLY["voc"], "init_from": {"variant": "x", "epochs": 10}},
    }
    assert error(monkeypatch, epochs=[10], variants=cycle) == "variants.x.init_from: a cycle of init_from (x -> y -> x)"
    typo = {"ft": {**VOC_ONLY["voc"], "init_from": {"variant": "voc", "epochs": 11}}}
    message = error(monkeypatch, epochs=[10], variants=typo)
    assert message.startswith("variants.ft.init_from.epochs: voc has no run of 11 epochs in the grid (its epoch counts: 10)")
    seed = {"ft": {**VOC_ONLY["voc"], "init_from": {"variant": "voc", "epochs": 10, "seed": 4}}}
    assert "variants.ft.init_from.seed: voc has no run of seed 4" in error(monkeypatch, epochs=[10], variants=seed)
    other = {"ft": {**VOC_ONLY["voc"], "depth": 101, "init_from": {"variant": "voc", "epochs": 10}}}
    assert "depth is 101 here but 50 in voc" in error(monkeypatch, epochs=[10], variants=other)


def test_a_fine_tuned_variant_starts_from_its_source_run_which_goes_first(monkeypatch):
    variants = {"ft": {**VOC_ONLY["voc"], "init_from": {"variant": "voc", "epochs": 10}}}
    study = plan(monkeypatch, epochs=[10], seeds=[0], variants=variants)
    assert study.init_sources == {"ft": {"variant": "voc", "budget": "e10", "seed": 0}}
    init = study.settings["ft"]["init_from"]
    assert init == {"run": "voc/e10-s0", "checkpoint": "out/init/ft.pth", "heads": True}
    assert study.settings["ft"]["pretrained"] is None
    assert study.init_source_runs == {("voc", "e10", "0")}


@pytest.mark.parametrize(
    "layer, expected",
    [
        ({"report": {"compare": ["voc", "nope"]}}, "report.compare: 'nope' is not a variant on VOC (voc, vocaug)"),
        ({"estimates": {"gpu_model": "B300"}}, "estimates.gpu_model: 'B300' is not in estimates.images_per_second"),
        ({"data": {"voc": {"archive": "/nowhere/voc.tar"}}}, "data.voc.archive: no such file '/nowhere/voc.tar'"),
        ({"variants": {"voc": {"subset_seed": 3}}}, "variants.voc.subset_seed: the variant has no subset"),
        ({"variants": {"voc": {"epochs": [], "iterations": []}}}, "variants.voc: no run to train"),
        ({"variants": {"voc": {"subset": {"size": 2000}}}}, "variants.voc"),
        ({"variants": {"mine": {"dataset": "mine"}}}, "variants.mine.dataset: 'mine' is not in datasets (none)"),
    ],
    ids=["compare", "gpu-model", "archive", "subset-seed", "no-budget", "subset-too-large", "dataset"],
)
def test_cross_key_checks_fail_with_one_line_naming_the_key(monkeypatch, layer, expected):
    assert error(monkeypatch, **layer).startswith(expected)


def test_planned_sizes_come_from_official_counts_or_estimates(monkeypatch):
    study = plan(monkeypatch, variants={"half": {**VOC_ONLY["voc"], "subset": {"size": 700}}})
    assert study.official_counts() == ["train", "val", "trainaug", "aug"]
    assert study.planned_images("voc") == OFFICIAL_COUNTS["train"]
    assert study.planned_images("vocaug") == OFFICIAL_COUNTS["train"] + OFFICIAL_COUNTS["aug"]
    assert study.planned_images("half") == 700
    other = plan(monkeypatch, data={"voc": {"md5": None}}, estimates={"split_sizes": {"train": 40, "val": 30}})
    assert other.official_counts() == [] and other.planned_images("voc") == 40
    assert other.planned_val_images("voc") == 30
    assert source_key(other.config, "voc").startswith("nomd5-") and source_key(study.config, "voc") == "6cd6e144"


def test_runtime_requests_follow_the_epochs_left_and_the_partition_limit(monkeypatch, tmp_path):
    study = plan(monkeypatch, epochs=[40], estimates={"partition_time_limit": 600})
    args = dict(work_dir=tmp_path, config_text="cfg", code="abc", images=None, val_images=None)
    fresh = study.train_runtime("vocaug", "e40", 1, **args)
    assert fresh == min(600, int(1.5 * study.run_minutes("vocaug", "e40") + 15) + 1)
    (tmp_path / "last_checkpoint").write_text(str(tmp_path / "epoch_30.pth"))
    resumed = study.train_runtime("vocaug", "e40", 1, **args)
    assert resumed < fresh and study.train_runtime("vocaug", "e40", 2, **args) > resumed
    (tmp_path / "finished").touch()  # a finished run of this config and code
    (tmp_path / "config.sha256").write_text(hashlib.sha256(b"cfg").hexdigest())
    (tmp_path / "code.sha256").write_text("abc")
    assert study.train_runtime("vocaug", "e40", 1, **args) == 15  # restored: no training
    assert "at 20 images/s per GPU" in study.cost_summary()
    big = plan(monkeypatch, epochs=[4000], estimates={"partition_time_limit": 600})
    assert big.train_runtime("vocaug", "e4000", 1, **{**args, "work_dir": tmp_path / "new"}) == 600
    assert "capped there" in big.cost_summary()


def test_the_report_compares_common_budgets_and_draws_the_longest(monkeypatch):
    study = plan(monkeypatch, epochs=[10, 20], iterations=[500], seeds=[0, 1], variants={"vocaug": {"epochs": [20, 30]}})
    compared = study.compared_runs(study.all_runs)
    assert {(r["variant"], r["budget"]) for r in compared} == {("voc", "e20"), ("vocaug", "e20"), ("voc", "i500"), ("vocaug", "i500")}
    final = study.final_runs(study.all_runs)
    assert [(r["variant"], r["budget"], r["seed"]) for r in final] == [("voc", "e20", 0), ("vocaug", "e30", 0)]
    only_iterations = [r for r in study.all_runs if r["budget"] == "i500"]
    assert [r["budget"] for r in study.final_runs(only_iterations)] == ["i500", "i500"]
    assert {r["budget"] for r in study.scaling_runs(study.all_runs)} == {"i500"}
    assert set(study.annotation_sources) == {"voc", "vocaug"}


def test_fine_tuning_pairs_each_fine_tuned_variant_with_each_from_scratch(monkeypatch, tmp_path):
    folder = tmp_path / "shapes"
    folder.mkdir()
    datasets = {"shapes": {"folder": str(folder), "classes": ["background", "disc"]}}
    variants = {
        "scratch": {"dataset": "shapes", "pretrained": None, "epochs": [2, 4]},
        "tuned": {"dataset": "shapes", "epochs": [4], "init_from": {"variant": "vocaug", "epochs": 10}},
    }
    study = plan(monkeypatch, epochs=[10], seeds=[0], datasets=datasets, variants=variants)
    assert study.dataset_variants == ["scratch", "tuned"] and study.variant_root("tuned") == str(folder)
    assert study.finetune_pairs == [
        {"dataset": "shapes", "budget": "e4", "scratch": "scratch", "finetuned": "tuned", "init_from": "vocaug/e10-s0"}
    ]
    assert study.finetune_missing == [] and study.dataset_classes == {"shapes": 2}
    assert study.settings["tuned"]["init_from"]["heads"] is False  # 2 classes, not VOC's 21
    alone = plan(monkeypatch, epochs=[10], seeds=[0], datasets=datasets, variants={"scratch": variants["scratch"]})
    assert alone.finetune_missing == ["shapes: nothing to compare; add a variant on it with init_from"]
    bad = {"scratch": {**variants["scratch"], "subset": {"size": 3}}}
    assert error(monkeypatch, datasets=datasets, variants=bad) == (
        "variants.scratch: subsets are drawn from VOC lists, not from a dataset"
    )


def test_outdated_reasons_are_said_in_the_configs_terms():
    assert dict_changes({"lr": 0.01, "augment": {"flip": True}}, {"lr": 0.02, "augment": {"flip": False}, "x": 1}) == [
        "augment.flip True -> False", "lr 0.01 -> 0.02", "x unset -> 1",
    ]  # fmt: skip
    assert param_change("train_upernet", "run", "{'lr': 0.02}", {"{'lr': 0.01}"}) == "settings changed: lr 0.01 -> 0.02"
    assert param_change("findings", "level", "0.9", {"0.95"}) == "findings param level changed: 0.95 -> 0.9"
    text = outdated_runs_text({"voc e10-s0": ["settings changed: lr", "code"], "voc e20-s0": ["code"]})
    assert text.splitlines() == [
        "2 run(s) made with other settings or code than this config asks for: voc e10-s0, voc e20-s0",
        "  - settings changed: lr: voc e10-s0",
        "  - code",
    ]


def test_code_hashes_parse_each_file_once_and_see_edits(tmp_path):
    scripts = tmp_path / "scripts"
    (scripts / "common").mkdir(parents=True)
    (scripts / "common/__init__.py").write_text("")
    (scripts / "common/shared.py").write_text("X = 1\n")
    for name in ("a.py", "b.py"):
        (scripts / name).write_text("from common.shared import X\nprint(X)\n")
    code_module._imports.cache_clear()
    code_module._content_digest.cache_clear()
    first = [code_module.code_digest(scripts / n) for n in ("a.py", "b.py", "a.py")]
    assert first[0] == first[2] != first[1]  # a hash names its script
    assert code_module._content_digest.cache_info().misses == 4  # a, b, shared, __init__: once each
    assert code_module._imports.cache_info().misses == 4
    (scripts / "common/shared.py").write_text("X = 22\n")
    assert code_module.code_digest(scripts / "a.py") != first[0]  # an edit is seen in the same process
