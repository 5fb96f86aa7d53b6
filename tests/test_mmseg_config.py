"""The rendered MMSeg config is MMSeg's voc12aug config, except where the study differs."""

import json
from pathlib import Path

import pytest
import yaml
from conftest import REPO
from mmengine.config import Config

import mmseg
from common.mmseg_config import PRETRAINED_URLS, ConfigError, render_config

SHIPPED = Path(mmseg.__file__).parent / ".mim/configs/upernet/upernet_r50_4xb4-40k_voc12aug-512x512.py"
VOCAUG = [{"split": "train", "labels": "SegmentationClass"}, {"split": "aug", "labels": "SegmentationClassAug"}]


def study_run(**overrides) -> dict:
    """A run with the schema's defaults (config/config.yaml's study settings)."""
    schema = yaml.safe_load((REPO / "config/schemas/config.schema.yaml").read_text())
    training = {
        key: spec["default"]
        for key, spec in schema["properties"]["training"]["properties"].items()
        if "default" in spec
    }
    run = {
        **training,
        "variant": "vocaug",
        "epochs": 30,
        "seed": 0,
        "train_sets": VOCAUG,
        "data_root": "resources/VOCdevkit/VOC2012",
        "work_dir": "results/work/vocaug/e30-s0",
    }
    run.update(overrides)
    return run


def plain(node):
    """Config values as plain data, without the `_scope_` keys of cross-package inheritance."""
    if isinstance(node, dict):
        return {k: plain(v) for k, v in node.items() if k != "_scope_"}
    if isinstance(node, (list, tuple)):
        return type(node)(plain(v) for v in node)
    return node


def load(run: dict, tmp_path: Path) -> Config:
    path = tmp_path / "config.py"
    path.write_text(render_config(run))
    return Config(plain(Config.fromfile(str(path)).to_dict()))


@pytest.fixture(scope="module")
def shipped():
    return Config(plain(Config.fromfile(str(SHIPPED)).to_dict()))


@pytest.fixture
def rendered(tmp_path):
    return load(study_run(), tmp_path)


def without(d: dict, *keys) -> dict:
    return {k: v for k, v in d.items() if k not in keys}


def test_model_is_mmsegs_except_the_weights_source(rendered, shipped):
    model, reference = rendered.model, shipped.model
    # MMSeg: pretrained='open-mmlab://resnet50_v1c'; the study: pretrained=None plus the
    # backbone's init_cfg pointing at the same weights, fetched beforehand.
    assert reference["pretrained"] == "open-mmlab://resnet50_v1c" and model["pretrained"] is None
    assert model["backbone"]["init_cfg"] == {
        "type": "Pretrained",
        "checkpoint": "resources/pretrained/" + PRETRAINED_URLS["open-mmlab://resnet50_v1c"].rsplit("/", 1)[1],
    }
    assert without(model, "pretrained", "backbone") == without(reference, "pretrained", "backbone")
    assert without(model["backbone"], "init_cfg") == reference["backbone"]


def test_data_pipelines_and_datasets_are_mmsegs(rendered, shipped):
    assert rendered.train_pipeline == shipped.train_pipeline
    assert rendered.test_pipeline == shipped.test_pipeline
    assert rendered.tta_pipeline == shipped.tta_pipeline
    ours, theirs = rendered.train_dataloader.dataset, shipped.train_dataloader.dataset
    assert ours.type == theirs.type == "ConcatDataset"
    for a, b in zip(ours.datasets, theirs.datasets, strict=True):
        assert without(a, "data_root") == without(b, "data_root")
        assert a.data_root == "resources/VOCdevkit/VOC2012"
    assert without(rendered.val_dataloader.dataset, "data_root") == without(shipped.val_dataloader.dataset, "data_root")
    assert rendered.val_evaluator == shipped.val_evaluator


def test_optimizer_is_mmsegs_and_lr_follows_the_linear_scaling_rule(rendered, shipped):
    assert rendered.optim_wrapper == shipped.optim_wrapper  # 2 GPUs x 8 = MMSeg's 4 x 4: lr 0.01
    assert rendered.gpus * rendered.train_dataloader.batch_size == 4 * shipped.train_dataloader.batch_size


def test_schedule_is_epoch_based_where_mmseg_counts_iterations(rendered, shipped):
    assert shipped.train_cfg.type == "IterBasedTrainLoop"
    assert rendered.train_cfg == {"type": "EpochBasedTrainLoop", "max_epochs": 30, "val_interval": 1}
    assert shipped.train_dataloader.sampler.type == "InfiniteSampler"
    assert rendered.train_dataloader.sampler == {"type": "DefaultSampler", "shuffle": True}
    (ours,), (theirs,) = rendered.param_scheduler, shipped.param_scheduler
    assert without(ours, "end", "by_epoch") == without(theirs, "end", "by_epoch")
    assert ours.by_epoch and ours.end == 30 and not theirs.by_epoch
    assert rendered.default_hooks.checkpoint.by_epoch and not shipped.default_hooks.checkpoint.by_epoch
    assert rendered.log_processor.by_epoch
    assert set(rendered.default_hooks) == set(shipped.default_hooks)


@pytest.mark.parametrize("gpus, batch, expected", [(1, 16, 0.01), (1, 8, 0.005), (4, 8, 0.02), (2, 2, 0.0025)])
def test_linear_scaling_rule(tmp_path, gpus, batch, expected):
    cfg = load(study_run(gpus=gpus, batch_per_gpu=batch), tmp_path)
    assert cfg.optim_wrapper.optimizer.lr == pytest.approx(expected)
    assert cfg.train_dataloader.batch_size == batch


def test_single_train_set_is_a_plain_dataset(tmp_path):
    cfg = load(study_run(train_sets=VOCAUG[:1], variant="voc"), tmp_path)
    dataset = cfg.train_dataloader.dataset
    assert dataset.type == "PascalVOCDataset" and "datasets" not in dataset
    assert dataset.ann_file == "ImageSets/Segmentation/train.txt"
    assert dataset.data_prefix.seg_map_path == "SegmentationClass"


def test_depth_18_takes_mmsegs_r18_head_inputs(tmp_path):
    shipped18 = Config.fromfile(str(SHIPPED).replace("upernet_r50_", "upernet_r18_"))
    cfg = load(study_run(depth=18, pretrained="open-mmlab://resnet18_v1c"), tmp_path)
    assert cfg.model.backbone.depth == 18
    assert cfg.model.decode_head.in_channels == shipped18.model.decode_head.in_channels
    assert cfg.model.auxiliary_head.in_channels == shipped18.model.auxiliary_head.in_channels


def test_torchvision_weights_use_the_plain_resnet_stem(tmp_path):
    cfg = load(study_run(pretrained="torchvision://resnet50"), tmp_path)
    assert cfg.model.backbone.type == "ResNet"
    assert cfg.model.backbone.init_cfg.checkpoint == "resources/pretrained/resnet50-0676ba61.pth"


def test_random_init_and_local_weights(tmp_path):
    assert load(study_run(pretrained=None), tmp_path).model.backbone.init_cfg is None
    cfg = load(study_run(pretrained="/data/my_resnet50.pth"), tmp_path)
    assert cfg.model.backbone.init_cfg.checkpoint == "/data/my_resnet50.pth"


def test_focal_loss_and_augment_switches(tmp_path):
    cfg = load(study_run(loss="focal", augment={"photometric": False, "flip": False}), tmp_path)
    assert cfg.model.decode_head.loss_decode.type == "FocalLoss"
    assert cfg.model.auxiliary_head.loss_decode.loss_weight == 0.4
    steps = [step["type"] for step in cfg.train_pipeline]
    assert "PhotoMetricDistortion" not in steps and "RandomFlip" not in steps and "RandomResize" in steps


def test_pretrained_of_another_depth_is_refused():
    with pytest.raises(ConfigError, match="does not fit depth 18"):
        render_config(study_run(depth=18))


def test_unknown_scheme_is_refused():
    with pytest.raises(ConfigError, match="unknown weights"):
        render_config(study_run(pretrained="open-mmlab://resnet50_v1d"))


def test_known_weights_are_the_ones_mmengine_lists():
    import mmengine

    hub = Path(mmengine.__file__).parent / "hub"
    tables = {
        "open-mmlab": json.loads((hub / "openmmlab.json").read_text()),
        "torchvision": json.loads((hub / "torchvision_0.12.json").read_text()),
    }
    for name, url in PRETRAINED_URLS.items():
        scheme, key = name.split("://")
        assert tables[scheme][key] == url, name
