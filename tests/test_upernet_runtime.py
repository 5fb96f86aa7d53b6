"""What the jobs add around MMEngine: device choice, stops, RNG, history, metrics, weights."""

import hashlib
import json
import random
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from mmengine.config import Config

from common.download import DownloadError
from common.history import history_from_scalars as read_history
from common.hooks import NonFiniteLossHook, RngStateHook
from common.launch import adapt_to_device
from common.metric import StudyIoUMetric
from common.mmseg_config import PRETRAINED_URLS, pretrained_mirrors
from common.run_files import read_attempts
from common.work_dir import AttemptClock, NonFiniteBefore, mark_finished, prepare_work_dir, write_nonfinite
from fetch_pretrained import fetch
from mmseg.evaluation.metrics import IoUMetric


def test_non_finite_loss_stops_training_with_a_clear_error(tmp_path):
    hook, runner = NonFiniteLossHook(), SimpleNamespace(epoch=2, iter=41, work_dir=str(tmp_path))
    hook.after_train_iter(runner, 0, outputs={"loss": torch.tensor(1.5)})
    assert not (tmp_path / "nonfinite").exists()
    for bad in (float("nan"), float("inf")):
        with pytest.raises(FloatingPointError, match=r"at epoch 3, iteration 42.*no metrics are written"):
            hook.after_train_iter(runner, 0, outputs={"loss": torch.tensor(bad)})
        # recorded for the next attempt (see test_a_non_finite_loss_is_not_tried_again_with_the_same_config)
        assert json.loads((tmp_path / "nonfinite").read_text())["message"] == f"loss is {bad} at epoch 3, iteration 42"


def test_rng_states_travel_with_the_checkpoint():
    hook, checkpoint = RngStateHook(), {}
    runner = SimpleNamespace(logger=SimpleNamespace(info=lambda *a: None))
    hook.before_save_checkpoint(runner, checkpoint)
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    hook.after_load_checkpoint(runner, checkpoint)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected


def test_cpu_gets_bn_gloo_and_no_amp():
    cfg = Config(
        dict(
            model=dict(backbone=dict(norm_cfg=dict(type="SyncBN")), heads=[dict(norm_cfg=dict(type="SyncBN"))]),
            env_cfg=dict(dist_cfg=dict(backend="nccl")),
            optim_wrapper=dict(type="AmpOptimWrapper", loss_scale="dynamic"),
        )
    )
    assert not torch.cuda.is_available()
    assert adapt_to_device(cfg, distributed=True) == "cpu"
    assert cfg.model.backbone.norm_cfg.type == "BN" and cfg.model.heads[0].norm_cfg.type == "BN"
    assert cfg.env_cfg.dist_cfg.backend == "gloo"
    assert cfg.optim_wrapper == {"type": "OptimWrapper"}
    assert cfg.model_wrapper_cfg.device_ids is None


def write_scalars(folder, records):
    path = folder / "vis_data" / "scalars.json"
    path.parent.mkdir(parents=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def test_history_merges_attempts_and_averages_the_epoch_loss(tmp_path):
    write_scalars(tmp_path / "20260101_000000", [
        {"lr": 0.01, "loss": 3.0, "epoch": 1, "iter": 5, "step": 5},
        {"lr": 0.01, "loss": 2.0, "epoch": 1, "iter": 10, "step": 10},
        {"aAcc": 50.0, "mIoU": 10.0, "mAcc": 20.0, "step": 1},
        {"lr": 0.008, "loss": 9.0, "epoch": 2, "iter": 15, "step": 15},  # killed mid-epoch 2
    ])  # fmt: skip
    write_scalars(tmp_path / "20260101_010000", [
        {"lr": 0.008, "loss": 1.5, "epoch": 2, "iter": 20, "step": 20},
        {"aAcc": 60.0, "mIoU": 20.0, "mAcc": 30.0, "step": 2},
    ])  # fmt: skip
    rows = read_history(tmp_path)
    assert [r["epoch"] for r in rows] == [1, 2]
    assert rows[0] == {"epoch": 1, "mIoU": 10.0, "aAcc": 50.0, "mAcc": 20.0, "train_loss": 2.5, "lr": 0.01}
    assert rows[1]["train_loss"] == 1.5 and rows[1]["mIoU"] == 20.0  # the resumed attempt's epoch 2


def test_changed_config_sets_the_old_work_dir_aside(tmp_path):
    work = tmp_path / "work"
    assert prepare_work_dir(work, "a" * 64).latest is None
    (work / "epoch_1.pth").write_bytes(b"old")
    assert prepare_work_dir(work, "b" * 64).latest is None
    assert (tmp_path / "work.old-1" / "epoch_1.pth").exists()
    assert (work / "config.sha256").read_text().strip() == "b" * 64


def finished_work_dir(work, config="a" * 64, code="c1"):
    """A work dir as a finished run leaves it: two attempts, the last checkpoint, `finished`."""
    assert prepare_work_dir(work, config, code).latest is None
    (work / "epoch_2.pth").write_bytes(b"weights")
    (work / "last_checkpoint").write_text(str(work / "epoch_2.pth"))
    (work / "attempts.tsv").write_text(
        "attempt\tstarted\tseconds\tstatus\twhere\tstart\n"
        "1\t2026-01-01 00:00:00\t300.0\tterminated\tSLURM job 7 on n1\tepoch 0\n"
        "2\t2026-01-01 01:00:00\t60.5\tfinished\tSLURM job 9 on n2\tresumes epoch_1.pth\n"
    )
    mark_finished(work, work.parent / "final.pth")


def test_a_finished_run_of_the_same_config_and_code_is_restored_not_retrained(tmp_path):
    work = tmp_path / "work"
    finished_work_dir(work)
    start = prepare_work_dir(work, "a" * 64, "c1")
    assert start.restore and start.latest == str(work / "epoch_2.pth")
    assert not (tmp_path / "work.old-1").exists() and (work / "epoch_2.pth").exists()


@pytest.mark.parametrize("config, code", [("b" * 64, "c1"), ("a" * 64, "c2"), ("a" * 64, None)])
def test_a_finished_run_retrained_keeps_the_earlier_attempts_on_record(tmp_path, config, code):
    work = tmp_path / "work"
    finished_work_dir(work)
    start = prepare_work_dir(work, config, code)
    assert not start.restore and start.latest is None
    assert (tmp_path / "work.old-1" / "epoch_2.pth").exists()
    carried = read_attempts(work / "attempts.tsv")
    assert [(a["attempt"], a["seconds"]) for a in carried] == [(1, 300.0), (2, 60.5)]
    assert [a["status"] for a in carried] == ["terminated, set aside as work.old-1", "finished, set aside as work.old-1"]
    clock = AttemptClock(work, "host h", None)
    clock.finish("finished")
    assert [a["attempt"] for a in read_attempts(work / "attempts.tsv")] == [1, 2, 3]
    assert clock.total_seconds() >= 360.5


def test_an_attempt_left_running_is_marked_killed_by_the_next(tmp_path):
    work = tmp_path / "work"
    prepare_work_dir(work, "a" * 64, "c1")
    first = AttemptClock(work, "host h", None)
    first._stop.set()  # SIGKILL: the row stays "running"
    second = AttemptClock(work, "host h", None)
    second.finish("finished")
    assert [a["status"] for a in read_attempts(work / "attempts.tsv")] == ["killed", "finished"]


def test_a_non_finite_loss_is_not_tried_again_with_the_same_config(tmp_path):
    work = tmp_path / "work"
    prepare_work_dir(work, "a" * 64, "c1")
    write_nonfinite(work, "loss is nan at epoch 3, iteration 17")
    with pytest.raises(NonFiniteBefore, match=r"stopped on a non-finite loss .* \(loss is nan at epoch 3, iteration 17\)"):
        prepare_work_dir(work, "a" * 64, "c2")  # other code: the same config still diverges
    assert prepare_work_dir(work, "b" * 64, "c1").latest is None  # another config starts afresh
    assert (tmp_path / "work.old-1" / "nonfinite").exists() and not (work / "nonfinite").exists()


def sample(pred, label, name):
    return {
        # what the evaluator hands a metric: SegDataSample.to_dict()
        "pred_sem_seg": {"data": torch.tensor(pred)[None]},
        "gt_sem_seg": {"data": torch.tensor(label)[None]},
        "img_path": f"JPEGImages/{name}.jpg",
    }


def test_study_metric_agrees_with_mmsegs_iou_metric_and_keeps_confusions():
    rng = np.random.default_rng(0)
    samples = []
    for i in range(6):
        label = rng.integers(0, 4, size=(9, 11))
        label[0, :] = 255
        pred = np.where(rng.random(label.shape) < 0.7, label % 255, rng.integers(0, 21, label.shape))
        samples.append(sample(pred, label, f"2007_00000{i}"))
    meta = {"classes": [f"c{i}" for i in range(21)]}
    ours, theirs = StudyIoUMetric(), IoUMetric()
    for metric in (ours, theirs):
        metric.dataset_meta = meta
        metric.process({}, samples[:3])
        metric.process({}, samples[3:])
    summary = ours.evaluate(6)
    unrounded = summary.pop("mIoU_unrounded")  # ours also keeps the mIoU before MMSeg rounds it
    assert summary == theirs.evaluate(6)
    assert round(unrounded, 2) == pytest.approx(float(summary["mIoU"]), abs=1e-4) and unrounded != summary["mIoU"]
    assert ours.image_ids == [f"2007_00000{i}" for i in range(6)]
    confusion = ours.per_image_confusion.sum(0)
    assert confusion.sum() == sum(int((s["gt_sem_seg"]["data"] != 255).sum()) for s in samples)
    with np.errstate(invalid="ignore"):
        iou = np.diag(confusion) / (confusion.sum(0) + confusion.sum(1) - np.diag(confusion))
    np.testing.assert_allclose(iou, ours.per_class["IoU"], rtol=1e-6)
    assert (iou[:4] > 0.5).all() and (iou[4:] == 0).all()  # classes 4-20: only predicted


def test_fetch_checks_the_sha256_in_the_file_name(tmp_path):
    payload = b"weights" * 1000
    digest = hashlib.sha256(payload).hexdigest()
    good = tmp_path / f"resnet18_v1c-{digest[:8]}.pth"
    good.write_bytes(payload)
    dest = tmp_path / "out" / good.name
    assert fetch(good.as_uri(), dest).read_bytes() == payload
    bad = tmp_path / "resnet18_v1c-00000000.pth"
    bad.write_bytes(payload)
    with pytest.raises(DownloadError, match="sha256"):
        fetch(bad.as_uri(), tmp_path / "out" / bad.name)
    assert not (tmp_path / "out" / bad.name).exists() and not list((tmp_path / "out").glob("*.part"))


def test_fetch_tries_the_next_host_when_one_fails(tmp_path):
    payload = b"weights" * 1000
    name = f"resnet50_v1c-{hashlib.sha256(payload).hexdigest()[:8]}.pth"
    (tmp_path / "mirror").mkdir()
    (tmp_path / "mirror" / name).write_bytes(payload)
    (tmp_path / "tampered").mkdir()
    (tmp_path / "tampered" / name).write_bytes(payload[:-1] + b"!")
    gone, tampered, good = (tmp_path / folder / name for folder in ("gone", "tampered", "mirror"))
    dest = tmp_path / "out" / name
    assert fetch(gone.as_uri(), dest, mirrors=[gone.as_uri(), tampered.as_uri(), good.as_uri()]).read_bytes() == payload
    with pytest.raises(DownloadError, match=r"gone.* / .*tampered.*sha256"):
        fetch(gone.as_uri(), tmp_path / "again" / name, mirrors=[gone.as_uri(), tampered.as_uri()])
    assert pretrained_mirrors(PRETRAINED_URLS["open-mmlab://resnet50_v1c"]) == [
        "https://mmassets.onedl.ai/pretrain/third_party/resnet50_v1c-2cccc1ad.pth",
        "https://download.openmmlab.com/pretrain/third_party/resnet50_v1c-2cccc1ad.pth",
    ]
    assert pretrained_mirrors(PRETRAINED_URLS["torchvision://resnet50"]) == [PRETRAINED_URLS["torchvision://resnet50"]]


def test_local_pretrained_weights_initialise_the_backbone(tmp_path):
    from mmseg.registry import MODELS
    from mmseg.utils import register_all_modules

    register_all_modules()
    source = MODELS.build(dict(type="ResNetV1c", depth=18))
    path = tmp_path / "my_resnet18.pth"
    torch.save({"state_dict": source.state_dict()}, path)
    backbone = MODELS.build(dict(type="ResNetV1c", depth=18, init_cfg=dict(type="Pretrained", checkpoint=str(path))))
    backbone.init_weights()
    for key, value in source.state_dict().items():
        assert torch.equal(backbone.state_dict()[key], value), key
