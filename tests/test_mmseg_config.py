"""The rendered MMSeg config is MMSeg's voc12aug config, except where the study differs."""

import json
from pathlib import Path

import pytest
from conftest import REPO
from mmengine.config import Config

import mmseg
from common.mmseg_config import PRETRAINED_URLS, ConfigError, render_config
from make_golden import VOCAUG, plain, study_run  # the study's defaults (config/config.yaml)

SHIPPED = Path(mmseg.__file__).parent / ".mim/configs/upernet/upernet_r50_4xb4-40k_voc12aug-512x512.py"


def load(run: dict, tmp_path: Path) -> Config:
    path = tmp_path / "config.py"
    path.write_text(render_config(run, tmp_path))
    return Config(plain(Config.fromfile(str(path)).to_dict()))


@pytest.fixture(scope="module")
def shipped():
    return Config(plain(Config.fromfile(str(SHIPPED)).to_dict()))


@pytest.fixture
def rendered(tmp_path):
    return load(study_run(), tmp_path)


def without(d: dict, *keys) -> dict:
    return {k: v for k, v in d.items() if k not in keys}


VENDORED = REPO / "scripts/common/configs/mmseg"


@pytest.mark.parametrize("path", sorted(VENDORED.rglob("*.py")), ids=lambda p: str(p.relative_to(VENDORED)))
def test_the_study_builds_on_the_installed_mmsegs_own_base_files(path):
    """The copies the study's configs inherit from (by path: `mmseg::` finds no
    `mmsegmentation` distribution beside onedl-mmsegmentation) are MMSeg's files."""
    installed = Path(mmseg.__file__).parent / ".mim/configs" / path.relative_to(VENDORED)
    assert path.read_bytes() == installed.read_bytes(), f"{path} differs from {installed}: copy it again"
    assert "mmseg::" not in "".join(p.read_text() for p in (REPO / "scripts/common/configs").glob("*.py"))


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
    assert without(ours, "end", "by_epoch", "convert_to_iter_based") == without(theirs, "end", "by_epoch")
    # epochs in the config, but the lr decays every step as in MMSeg's iteration schedules
    assert ours.by_epoch and ours.convert_to_iter_based and ours.end == 30 and not theirs.by_epoch
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


SHIPPED_DIR = SHIPPED.parent.parent
FAMILY_CONFIGS = {
    ("swin", size): SHIPPED_DIR / f"swin/swin-{size}-patch4-window7-in1k-pre_upernet_8xb2-160k_ade20k-512x512.py"
    for size in ("tiny", "small", "base")
} | {
    ("convnext", size): SHIPPED_DIR / f"convnext/convnext-{size}_upernet_8xb2-amp-160k_ade20k-512x512.py"
    for size in ("tiny", "small", "base")
}
WEIGHTS = {"swin": "mmseg://swin_{}", "convnext": "mmpretrain://convnext_{}"}


def test_known_weights_are_the_ones_mmengine_and_mmseg_list():
    import mmengine

    hub = Path(mmengine.__file__).parent / "hub"
    tables = {
        "open-mmlab": json.loads((hub / "openmmlab.json").read_text()),
        "torchvision": json.loads((hub / "torchvision_0.12.json").read_text()),
    }
    for name, url in PRETRAINED_URLS.items():
        scheme, key = name.split("://")
        if scheme in tables:
            assert tables[scheme][key] == url, name
    for (family, size), path in FAMILY_CONFIGS.items():
        assert PRETRAINED_URLS[WEIGHTS[family].format(size)] == Config.fromfile(str(path)).checkpoint_file


@pytest.mark.parametrize("family, size", sorted(FAMILY_CONFIGS))
def test_swin_and_convnext_are_mmsegs_except_classes_schedule_units_and_crop(tmp_path, family, size):
    """Model and optimizer of MMSeg's ADE20K UPerNet config of the family and size."""
    weights = WEIGHTS[family].format(size)
    cfg = load(study_run(backbone=family, size=size, pretrained=weights, amp=family == "convnext"), tmp_path)
    shipped = Config(plain(Config.fromfile(str(FAMILY_CONFIGS[family, size])).to_dict()))
    ours, theirs = cfg.model, shipped.model
    # the weights: fetched beforehand to resources/pretrained/, MMSeg reads its URL
    assert ours.backbone.init_cfg.pop("checkpoint") == "resources/pretrained/" + PRETRAINED_URLS[weights].rsplit("/", 1)[1]
    assert theirs.backbone.init_cfg.pop("checkpoint") == PRETRAINED_URLS[weights]
    assert ours.backbone == theirs.backbone
    for head in ("decode_head", "auxiliary_head"):
        assert (ours[head].num_classes, theirs[head].num_classes) == (21, 150)
        assert without(ours[head], "num_classes") == without(theirs[head], "num_classes")
    assert without(ours, "data_preprocessor", "decode_head", "auxiliary_head", "test_cfg") == without(
        theirs, "data_preprocessor", "decode_head", "auxiliary_head", "test_cfg"
    )
    assert ours.data_preprocessor.size == (512, 512) == theirs.data_preprocessor.size
    # 2 GPUs x 8 images = MMSeg's 8 x 2: the recipe's lr unscaled
    assert cfg.optim_wrapper == shipped.optim_wrapper
    warmup, poly = cfg.param_scheduler
    shipped_warmup, shipped_poly = shipped.param_scheduler
    unit_keys = ("begin", "end", "by_epoch", "convert_to_iter_based")
    assert without(warmup, *unit_keys) == without(shipped_warmup, *unit_keys)
    assert without(poly, *unit_keys) == without(shipped_poly, *unit_keys)
    # MMSeg warms up for 1,500 of 160,000 steps; the study for the same share of its steps
    steps = 30 * 662
    assert warmup.end * 662 == pytest.approx(steps * 1500 / 160000, abs=1) and poly.begin == warmup.end
    assert poly.end == 30 and warmup.convert_to_iter_based and poly.convert_to_iter_based


def test_a_short_run_warms_up_for_ten_steps(tmp_path):
    """MMEngine's LinearLR ends at 1 - 1/n of the lr: one warm-up step would leave it at 1e-6."""
    cfg = load(study_run(backbone="swin", pretrained=None, epochs=2, iterations_per_epoch=20), tmp_path)
    warmup, poly = cfg.param_scheduler
    assert round(warmup.end * 20) == 10 and poly.begin == warmup.end


def test_swin_and_convnext_take_their_head_inputs_from_the_backbone_widths(tmp_path):
    tiny_swin = {"embed_dims": 16, "depths": [1, 1, 1, 1], "num_heads": [1, 1, 2, 2]}
    cfg = load(study_run(backbone="swin", pretrained=None, backbone_overrides=tiny_swin), tmp_path)
    assert cfg.model.decode_head.in_channels == [16, 32, 64, 128] and cfg.model.auxiliary_head.in_channels == 64
    tiny_convnext = {"arch": {"depths": [1, 1, 1, 1], "channels": [8, 16, 32, 64]}}
    cfg = load(study_run(backbone="convnext", pretrained=None, backbone_overrides=tiny_convnext), tmp_path)
    assert cfg.model.decode_head.in_channels == [8, 16, 32, 64] and cfg.model.auxiliary_head.in_channels == 32
    assert cfg.model.backbone.init_cfg is None and cfg.custom_imports.imports == "mmpretrain.models"


def test_weights_of_another_backbone_are_refused():
    with pytest.raises(ConfigError, match="does not fit backbone swin small .*mmseg://swin_small"):
        render_config(study_run(backbone="swin", size="small", pretrained="mmseg://swin_tiny"))
    with pytest.raises(ConfigError, match="does not fit backbone convnext tiny"):
        render_config(study_run(backbone="convnext", pretrained="open-mmlab://resnet50_v1c"))


def test_a_run_config_is_a_short_delta_over_the_study_base(tmp_path):
    text = render_config(study_run(), tmp_path)
    assert text.count("_base_") == 2  # the comment and the one line
    assert "${" not in text and len(text.splitlines()) < 110
