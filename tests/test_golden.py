"""The installed stack computes what the stack of the study's first runs computed.

tests/golden/ was written with torch 2.1.2, mmcv 2.1.0, mmengine 0.10.7 and
mmsegmentation 1.2.2 (golden/stack.json; golden/make_golden.py says what each
file holds). Each test recomputes one of them with the installed stack and
compares: configs, the train pipeline's images and labels, the IoU metric and
an evaluation's confusion matrix exactly; logits, losses and trained weights
within the tolerances below.  A run's files written by the old stack (its work
dir's checkpoint, its final.pth) load, resume, evaluate and serve init_from
with the new one.
"""

from __future__ import annotations

import copy
import json
import shutil
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import make_golden as golden
from common.mmseg_config import ONEDL_ASSETS, OPENMMLAB_ASSETS

GOLDEN = golden.GOLDEN
RECORDED = json.loads((GOLDEN / "stack.json").read_text())

# Measured on this machine's CPU (golden written with torch 2.1.2, compared with 2.10.0);
# each tolerance is about ten times the largest difference seen:
# - logits: and the trained tiny checkpoint bit-identical; Swin 6.6e-07,
#   ConvNeXt 8.1e-07 of the largest |logit|;
# - a train step's losses identical, its gradient norm 1e-08 apart (relative);
# - one epoch resumed from the old epoch_39.pth: weights 8.5e-04 apart (relative to a
#   tensor's largest value), the epoch's mean train loss 1.0e-04, val mIoU the same. They
#   differ at all because torch's CPU bernoulli_ (the dropout masks) draws another
#   stream for a seed since torch 2.1; rand, randn and randperm (init, sampler) do not.
LOGITS_RTOL = 1e-5
LOSS_RTOL = 1e-6
RESUMED_WEIGHTS_RTOL = 1e-2
TRAIN_LOSS_RTOL = 1e-3


def relative_difference(new: np.ndarray, old: np.ndarray) -> float:
    """max |new - old| over max |old|: one number per output, for the log and the check."""
    return float(np.abs(new.astype(np.float64) - old).max() / max(np.abs(old).max(), 1e-12))


def test_the_golden_files_come_from_another_stack_than_the_installed_one():
    """The comparison means something: recorded with torch 2.1 / mmcv 2.1 (OpenMMLab's
    last releases), checked against the installed (maintained) stack."""
    from importlib.metadata import version

    assert RECORDED["torch"] == "2.1.2" and RECORDED["mmcv"] == "2.1.0" and RECORDED["mmsegmentation"] == "1.2.2"
    assert version("torch") != RECORDED["torch"]


# ---- configs: exactly ------------------------------------------------------------
def test_each_backbone_familys_rendered_config_resolves_to_the_recorded_one(tmp_path):
    recorded = json.loads((GOLDEN / "configs.json").read_text())
    resolved = json.loads(json.dumps(golden.resolved_configs(tmp_path)))
    assert sorted(resolved) == sorted(recorded) == sorted(golden.CONFIG_RUNS)
    # The one difference: MMSeg's ConvNeXt model file names its ImageNet weights at
    # OneDL's host now (same file, same hash); the run's own backbone init_cfg names
    # the file the workflow fetched, so the variable is read by nothing.
    old = recorded["convnext_tiny_vocaug"].pop("checkpoint_file")
    new = resolved["convnext_tiny_vocaug"].pop("checkpoint_file")
    assert old.startswith(OPENMMLAB_ASSETS) and new == ONEDL_ASSETS + old[len(OPENMMLAB_ASSETS) :]
    assert resolved["convnext_tiny_vocaug"]["model"]["backbone"]["init_cfg"]["checkpoint"].startswith("resources/")
    for name in golden.CONFIG_RUNS:
        assert resolved[name] == recorded[name], name


# ---- the train pipeline: exactly ------------------------------------------------
def test_the_train_pipeline_gives_the_recorded_images_and_labels(tmp_path):
    recorded = np.load(GOLDEN / "pipeline.npz")
    outputs = golden.pipeline_outputs(tmp_path)
    assert sorted(outputs) == sorted(recorded.files)
    for key in sorted(outputs):
        assert outputs[key].shape == recorded[key].shape, key
        if key.endswith("_image"):
            # JPEG decoding, resizing and the photometric distortion (opencv 4.10 -> 4.13)
            differ = outputs[key].astype(int) - recorded[key]
            assert np.abs(differ).max() == 0, f"{key}: {np.count_nonzero(differ)} values differ"
        else:
            assert np.array_equal(outputs[key], recorded[key]), key


# ---- the metric: exactly --------------------------------------------------------
def test_the_iou_metric_gives_the_recorded_values():
    recorded = json.loads((GOLDEN / "metric.json").read_text())
    now = golden.metric_outputs()
    # MMSeg's summary is rounded to two decimals; numpy 2 (NEP 50) keeps it float32, so
    # 71.18 reads 71.18000030517578 (metrics.json rounds it again: common/metric.py)
    summary = now.pop("summary")
    unrounded = summary.pop("mIoU_unrounded")  # logged beside MMSeg's since the new stack
    assert round(unrounded, 2) == recorded["summary"]["mIoU"] and unrounded != recorded["summary"]["mIoU"]
    assert {key: round(value, 2) for key, value in summary.items()} == recorded.pop("summary")
    assert now == recorded  # per-class IoU and Acc, per-image confusions: exactly


# ---- models: within measured tolerances ------------------------------------------
@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return golden.model_outputs(tmp_path_factory.mktemp("models"), GOLDEN / "checkpoint/final.pth")


@pytest.mark.parametrize("name", sorted(golden.LOGIT_MODELS))
def test_a_seeded_init_gives_the_recorded_weights_and_logits(models, name):
    arrays, _ = models
    recorded = np.load(GOLDEN / "logits.npz")
    assert np.array_equal(arrays[f"{name}_input"], recorded[f"{name}_input"])
    # the same seed draws the same weights: sums and sums of squares of every tensor
    np.testing.assert_allclose(arrays[f"{name}_digest"], recorded[f"{name}_digest"], rtol=1e-6, atol=1e-6)
    difference = relative_difference(arrays[f"{name}_logits"], recorded[f"{name}_logits"])
    print(f"{name}: logits differ by {difference:.2e} of their largest value")
    assert difference < LOGITS_RTOL


def test_the_trained_checkpoint_gives_the_recorded_logits_losses_and_gradients(models):
    arrays, numbers = models
    recorded = np.load(GOLDEN / "logits.npz")
    difference = relative_difference(arrays["tiny_checkpoint_logits"], recorded["tiny_checkpoint_logits"])
    print(f"tiny checkpoint: logits differ by {difference:.2e} of their largest value")
    assert difference < LOGITS_RTOL
    step = json.loads((GOLDEN / "train_step.json").read_text())["tiny_checkpoint_train_step"]
    now = numbers["tiny_checkpoint_train_step"]
    assert sorted(now) == sorted(step)
    for key, value in step.items():
        print(f"train step {key}: {now[key]!r} (recorded {value!r})")
        assert now[key] == pytest.approx(value, rel=LOSS_RTOL), key


# ---- a run's files written by the old stack ---------------------------------------
def test_the_study_models_call_no_compiled_mmcv_op(tmp_path):
    """mmcv's CUDA kernels never run for these models: an mmcv built without CUDA
    (or for other GPU architectures) trains them on any GPU that torch supports."""
    import mmcv._ext as ext

    calls = []
    functions = [name for name in dir(ext) if not name.startswith("_") and callable(getattr(ext, name))]
    assert len(functions) > 50  # nms, roi_align, deform_conv, ...
    saved = {name: getattr(ext, name) for name in functions}

    def counting(name):
        def call(*args, **kwargs):
            calls.append(name)
            return saved[name](*args, **kwargs)

        return call

    try:
        for name in functions:
            setattr(ext, name, counting(name))
        for name, (overrides, (height, width)) in golden.LOGIT_MODELS.items():
            (tmp_path / name).mkdir()
            model = golden.build_model(golden.load_config(golden.study_run(**overrides), tmp_path / name))
            golden.logits(model, golden.fixed_image(height, width, seed=0))
            images, labels = golden.train_batch()
            golden.train_step(model, images[:, :32, :32], labels[:, :32, :32])
    finally:
        for name, function in saved.items():
            setattr(ext, name, function)
    assert calls == []


@pytest.fixture
def golden_run(tmp_path):
    """The tiny run's work dir as the old stack left it after 39 epochs, and its config."""
    work_dir = tmp_path / "work"
    work_dir.mkdir()
    shutil.copy(GOLDEN / "checkpoint" / golden.RESUME_FROM, work_dir / golden.RESUME_FROM)
    (work_dir / "last_checkpoint").write_text(str(work_dir / golden.RESUME_FROM))
    cfg = golden.tiny_config(golden.VOC, work_dir, tmp_path)
    config = tmp_path / "run.py"
    cfg.dump(str(config))
    return SimpleNamespace(work_dir=work_dir, config=config, cfg=cfg)


def test_an_old_work_dir_resumes_and_trains_its_last_epoch_as_the_old_stack_did(golden_run, capsys):
    from train_upernet import train

    from common.history import history_from_scalars
    from common.work_dir import export_final

    train(golden_run.config, golden_run.work_dir, cfg=copy.deepcopy(golden_run.cfg))
    out = capsys.readouterr().out
    assert f"resumed epoch: {golden.TINY_EPOCHS - 1}" in out and "restored the RNG states of the checkpoint" in out
    final = golden_run.work_dir / "final.pth"
    export_final(golden_run.work_dir, final, golden.TINY_EPOCHS)
    now = torch.load(final, map_location="cpu")["state_dict"]
    recorded = torch.load(GOLDEN / "checkpoint/final.pth", map_location="cpu")["state_dict"]
    assert sorted(now) == sorted(recorded)
    floats = [key for key in recorded if recorded[key].is_floating_point()]
    worst, key = max((relative_difference(now[k].numpy(), recorded[k].numpy()), k) for k in floats)
    print(f"resumed epoch: weights differ by at most {worst:.2e} of a tensor's largest value ({key})")
    assert worst < RESUMED_WEIGHTS_RTOL
    history = {row["epoch"]: row for row in json.loads((GOLDEN / "checkpoint/history.json").read_text())}
    old, last = history[golden.TINY_EPOCHS], history_from_scalars(golden_run.work_dir)[-1]
    assert last["epoch"] == golden.TINY_EPOCHS
    print(f"resumed epoch: train loss {last['train_loss']:.6f} ({old['train_loss']:.6f}), mIoU {last['mIoU']} ({old['mIoU']})")
    assert last["train_loss"] == pytest.approx(old["train_loss"], rel=TRAIN_LOSS_RTOL)
    assert last["mIoU"] == pytest.approx(old["mIoU"], abs=0.05)


def test_an_old_final_checkpoint_evaluates_to_the_recorded_metrics(golden_run, tmp_path):
    from evaluate_upernet import evaluate

    document, confusion, _, image_ids = evaluate(golden_run.config, GOLDEN / "checkpoint/final.pth", scratch=tmp_path)
    recorded = json.loads((GOLDEN / "checkpoint/evaluation.json").read_text())
    assert image_ids == recorded["image_ids"] and document["num_images"] == recorded["num_images"]
    differ = np.abs(confusion - np.array(recorded["confusion"]))
    print(f"evaluation: {differ.sum() // 2} of {confusion.sum()} pixels change class")
    assert differ.sum() == 0
    for key in ("aAcc", "mIoU", "mAcc", "IoU", "Acc"):
        assert document[key] == recorded[key], key


def test_an_old_final_checkpoint_serves_init_from(tmp_path):
    """init_weights on the old final.pth, loaded by a 4-class model's init_cfg: the
    backbone is the old one's, the heads start afresh (another class count)."""
    import init_weights

    init = tmp_path / "init" / "shapes.pth"
    init.parent.mkdir()  # Snakemake makes an output's folder
    snakemake = SimpleNamespace(
        input=SimpleNamespace(checkpoint=str(GOLDEN / "checkpoint/final.pth")),
        params=SimpleNamespace(init_from={"run": "golden_tiny/e40-s0", "heads": False}),
        output=[str(init)],
        log=[str(tmp_path / "init_weights.log")],
    )
    stderr = sys.stderr
    try:
        init_weights.main(snakemake)
    finally:
        sys.stderr = stderr
    assert "skipped decode_head" in (tmp_path / "init_weights.log").read_text()
    cfg = golden.tiny_config(golden.VOC, tmp_path / "work", tmp_path)
    cfg.model.decode_head.num_classes = cfg.model.auxiliary_head.num_classes = 4
    cfg.model.init_cfg = dict(type="Pretrained", checkpoint=str(init))
    model = golden.build_model(cfg)
    recorded = torch.load(GOLDEN / "checkpoint/final.pth", map_location="cpu")["state_dict"]
    state = model.state_dict()
    backbone = [key for key in recorded if key.startswith("backbone.")]
    assert len(backbone) > 50 and all(torch.equal(state[key], recorded[key]) for key in backbone)
    assert state["decode_head.conv_seg.weight"].shape[0] == 4
