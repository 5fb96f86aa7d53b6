"""Each backbone family, tiny, on the mini VOC data: renders, builds, trains an epoch from
random init, resumes, evaluates; the lr moves inside an epoch; TensorBoard gets the scalars."""

import copy
import json
from pathlib import Path

import pytest
from conftest import DEMO
from mmengine.config import Config
from make_golden import study_run

from common.hooks import RngStateHook, ValidateResumedEpochHook
from common.launch import adapt_to_device
from common.mmseg_config import render_config
from common.subsets import iterations_per_epoch

# widths a CPU trains in seconds (the study's are MMSeg's: Swin-T, ConvNeXt-T, ResNet-50)
TINY = {
    "resnet": ({"depth": 18}, {}),
    "swin": ({"backbone": "swin"}, {"embed_dims": 16, "depths": [1, 1, 1, 1], "num_heads": [1, 1, 2, 2]}),
    "convnext": ({"backbone": "convnext"}, {"arch": {"depths": [1, 1, 1, 1], "channels": [8, 16, 32, 64]}}),
}


def tiny_run(family: str, data_root: Path, work_dir: Path, epochs: int) -> dict:
    images = len((data_root / "ImageSets/Segmentation/train.txt").read_text().split())
    settings, overrides = TINY[family]
    training = {**DEMO["training"], "pretrained": None, "log_interval": 1, "checkpoint_interval": 1}
    return study_run(
        **{**training, **settings}, backbone_overrides=overrides, variant=f"tiny_{family}", epochs=epochs,
        train_sets=[{"split": "train", "labels": "SegmentationClass"}], train_images=images,
        iterations_per_epoch=iterations_per_epoch(images, 1, training["batch_per_gpu"]),
        data_root=str(data_root), work_dir=str(work_dir),
    )  # fmt: skip


def runner_of(cfg: Config, name: str):
    """A Runner of ``cfg``; ``name``: its visualizer's (MMEngine keeps one per name per process)."""
    from mmengine.runner import Runner

    cfg = copy.deepcopy(cfg)
    cfg.visualizer.name = name
    adapt_to_device(cfg, distributed=False)
    runner = Runner.from_cfg(cfg)
    runner.register_hook(RngStateHook())
    runner.register_hook(ValidateResumedEpochHook())
    return runner


def scalars(work_dir: Path) -> list[dict]:
    """The local scalars of every attempt (a folder each)."""
    paths = sorted(work_dir.glob("*/vis_data/scalars.json"))
    return [json.loads(line) for path in paths for line in path.read_text().splitlines()]


@pytest.mark.parametrize("family", sorted(TINY))
def test_each_backbone_trains_resumes_and_evaluates(family, extracted, tmp_path, capsys):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    data_root, work_dir = extracted.root / "VOCdevkit/VOC2012", tmp_path / "work"
    path = tmp_path / "config.py"
    path.write_text(render_config(tiny_run(family, data_root, work_dir, epochs=2), tmp_path))
    cfg = Config.fromfile(str(path))
    steps = cfg.iterations_per_epoch

    # a job that stops after its first epoch's checkpoint (as a killed one does) ...
    first = copy.deepcopy(cfg)
    first.train_cfg.max_epochs = 1
    runner_of(first, f"{family}-first").train()
    assert (work_dir / "epoch_1.pth").exists()
    # ... and the next attempt, on the same config, resumes at epoch 2
    capsys.readouterr()
    runner = runner_of(cfg, f"{family}-resumed")
    runner.train()
    assert runner.epoch == 2 and runner.iter == 2 * steps
    assert "resumed epoch: 1" in capsys.readouterr().out
    metrics = runner.val()
    assert 0 <= metrics["mIoU"] <= 100 and 0 <= metrics["aAcc"] <= 100

    # the lr changes from one step to the next inside an epoch (poly decay, warm-up; the
    # step where poly takes over from the warm-up repeats its lr)
    lrs = [record["lr"] for record in scalars(work_dir) if "lr" in record and record["step"] <= steps]
    assert len(lrs) == steps and len(set(lrs)) >= steps - 1
    assert max(lrs) > 100 * min(lrs) if family != "resnet" else lrs == sorted(lrs, reverse=True)
    # TensorBoard's event files hold the loss of every logged step and each epoch's val mIoU
    folders = sorted({path.parent for path in work_dir.glob("*/vis_data/events.out.tfevents.*")})
    assert len(folders) == 2  # one per attempt
    steps_of = {}
    for folder in folders:
        events = EventAccumulator(str(folder))
        events.Reload()
        assert {"loss", "lr", "mIoU"} <= set(events.Tags()["scalars"])
        steps_of.update({tag: steps_of.get(tag, set()) | {e.step for e in events.Scalars(tag)} for tag in ("loss", "mIoU")})
    assert steps_of["mIoU"] == {1, 2} and len(steps_of["loss"]) == 2 * steps


def test_a_rendered_config_runs_with_mmsegs_own_train_script(extracted, tmp_path):
    """The delta config alone (its _base_ chain, custom_imports, the LLRD constructor)
    is what MMSeg's tools/train.py needs: one tiny ConvNeXt epoch, by hand."""
    import subprocess
    import sys

    import mmseg

    data_root, work_dir = extracted.root / "VOCdevkit/VOC2012", tmp_path / "work"
    path = tmp_path / "config.py"
    path.write_text(render_config(tiny_run("convnext", data_root, work_dir, epochs=1), tmp_path))
    train = Path(mmseg.__file__).parent / ".mim/tools/train.py"
    result = subprocess.run([sys.executable, str(train), str(path), "--work-dir", str(work_dir)],
                            capture_output=True, text=True, timeout=600)  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert (work_dir / "epoch_1.pth").exists()
    assert "Build LearningRateDecayOptimizerConstructor  stage_wise 0.9 - 8" in result.stdout + result.stderr


def test_a_tracking_backend_without_its_package_stops_the_run_naming_it(extracted, tmp_path):
    from train_upernet import train

    from common.mmseg_config import missing_tracking_packages

    assert missing_tracking_packages([{"type": "LocalVisBackend"}, {"type": "TensorboardVisBackend"}]) == []
    assert missing_tracking_packages([{"type": "WandbVisBackend"}, {"type": "MLflowVisBackend"}]) == ["wandb", "mlflow"]
    run = tiny_run("resnet", extracted.root / "VOCdevkit/VOC2012", tmp_path / "work", epochs=1)
    path = tmp_path / "config.py"
    path.write_text(render_config({**run, "tracking": ["tensorboard", "wandb"]}, tmp_path))
    assert [b["type"] for b in Config.fromfile(str(path)).visualizer.vis_backends] == [
        "LocalVisBackend", "TensorboardVisBackend", "WandbVisBackend"
    ]
    with pytest.raises(RuntimeError, match=r"tracking needs wandb, not installed .*pip install wandb"):
        train(path, tmp_path / "work")
    assert not (tmp_path / "work").exists()
