"""The report's numbers: the study's own table, bootstrap coverage, convergence."""

import numpy as np
import pytest

from common.stats import (
    convergence_epoch,
    improvement_counts,
    improvement_sentence,
    iou_from_confusion,
    paired_bootstrap,
)
from common.voc import CLASSES as VOC_CLASSES

# Per-class IoU on VOC 2012 val of ../shared/seed/study.md (original, augmented).
STUDY = {
    "background": (92.50, 93.83), "aeroplane": (85.25, 89.87), "bicycle": (64.18, 42.82),
    "bird": (75.19, 85.04), "boat": (55.88, 68.03), "bottle": (52.62, 72.38), "bus": (84.03, 94.19),
    "car": (82.53, 86.44), "cat": (81.57, 90.24), "chair": (23.88, 36.04), "cow": (70.78, 88.87),
    "diningtable": (49.58, 54.01), "dog": (68.51, 85.54), "horse": (74.61, 85.01),
    "motorbike": (77.79, 81.48), "person": (79.36, 84.03), "pottedplant": (50.85, 60.46),
    "sheep": (74.50, 86.16), "sofa": (44.04, 45.22), "train": (75.30, 89.34), "tvmonitor": (63.25, 61.11),
}  # fmt: skip


def test_the_studys_table_gives_19_improved_and_12_by_more_than_8_points():
    changes = [after - before for before, after in STUDY.values()]
    assert improvement_counts(changes) == (21, 19, 12)
    assert improvement_sentence(changes) == "19 of 21 classes improved, 12 by more than 8 points"
    assert np.mean([b for b, _ in STUDY.values()]) == pytest.approx(67.91, abs=0.005)
    assert np.mean([a for _, a in STUDY.values()]) == pytest.approx(75.24, abs=0.005)
    assert tuple(STUDY) == VOC_CLASSES


def test_iou_from_confusion():
    confusion = np.array([[8, 2, 0], [1, 4, 0], [0, 0, 0]])
    iou = iou_from_confusion(confusion)
    assert iou[0] == pytest.approx(8 / 11) and iou[1] == pytest.approx(4 / 7) and np.isnan(iou[2])


def test_convergence_epoch_on_a_known_curve():
    epochs = list(range(1, 11))
    curve = [10, 30, 50, 60, 65, 68, 69.5, 70, 69, 70]
    assert convergence_epoch(epochs, curve, 0.99) == 7  # 69.5 >= 0.99 * 70 = 69.3
    assert convergence_epoch(epochs, curve, 0.9) == 5
    assert convergence_epoch([1, 2, 3], [None, 5.0, None]) == 2
    assert convergence_epoch([1], [None]) is None


def synthetic_images(rng, n, accuracy, classes=3, pixels=200, labels=None):
    """Per-image confusion counts: each pixel's prediction is right with probability ``accuracy``."""
    per_image = np.zeros((n, classes, classes))
    for i in range(n):
        label = rng.integers(0, classes, pixels) if labels is None else labels[i]
        wrong = rng.random(pixels) > accuracy[label]
        pred = np.where(wrong, (label + 1 + rng.integers(0, classes - 1, pixels)) % classes, label)
        np.add.at(per_image[i], (label, pred), 1)
    return per_image


def test_bootstrap_intervals_cover_the_truth_at_about_the_nominal_rate():
    rng = np.random.default_rng(1)
    accuracy = np.array([0.9, 0.6, 0.75])
    truth = iou_from_confusion(synthetic_images(rng, 20000, accuracy).sum(0))
    trials, covered = 120, np.zeros(3)
    for trial in range(trials):
        sample = synthetic_images(rng, 40, accuracy)
        result = paired_bootstrap([sample], [sample], resamples=400, seed=trial)
        covered += (result["baseline_low"] <= truth) & (truth <= result["baseline_high"])
    rate = covered / trials
    assert ((rate > 0.86) & (rate <= 1.0)).all(), rate  # nominal 0.95; percentile intervals run a bit narrow


def test_paired_change_interval_excludes_zero_only_for_a_real_difference():
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 3, (200, 200))  # the same val images for both variants
    same = np.array([0.8, 0.8, 0.8])
    a, b = (synthetic_images(rng, 200, same, labels=labels) for _ in range(2))
    result = paired_bootstrap([a], [b], resamples=500, seed=0)
    assert ((result["change_low"] < 0) & (0 < result["change_high"])).all()  # no real difference
    better = synthetic_images(rng, 200, np.array([0.8, 0.95, 0.8]), labels=labels)
    result = paired_bootstrap([a], [better], resamples=500, seed=0)
    assert result["change_low"][1] > 0  # class 1 really improved


def test_bootstrap_is_deterministic_and_averages_seeds():
    rng = np.random.default_rng(3)
    a1, a2, b = (synthetic_images(rng, 30, np.array([0.7, 0.8, 0.9])) for _ in range(3))
    first = paired_bootstrap([a1, a2], [b], resamples=100, seed=5)
    again = paired_bootstrap([a1, a2], [b], resamples=100, seed=5)
    for key in first:
        np.testing.assert_array_equal(first[key], again[key])
    expected = (iou_from_confusion(a1.sum(0)) + iou_from_confusion(a2.sum(0))) / 2
    np.testing.assert_allclose(first["baseline"], expected)


# ---- history.csv: what the convergence epoch and the learning curves read --------------
def write_scalars(folder, records):
    """An attempt's MMEngine scalar log (``<timestamp>/vis_data/scalars.json``)."""
    import json

    path = folder / "vis_data" / "scalars.json"
    path.parent.mkdir(parents=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def test_convergence_epoch_is_decided_on_the_unrounded_mIoU_the_log_keeps(tmp_path):
    """MMSeg logs mIoU at two decimals: 49.50 >= 0.99 x 50.00 says epoch 2 converged,
    the unrounded 49.5004 < 0.99 x 50.004 = 49.50396 says epoch 3."""
    from common.history import history_from_scalars, read_miou_curve, write_history

    curve = [(1, 30.0, 30.0012), (2, 49.5, 49.5004), (3, 50.0, 50.004)]
    records = []
    for epoch, rounded, unrounded in curve:
        records.append({"lr": 0.01, "loss": 1.0, "epoch": epoch, "iter": 10 * epoch, "step": 10 * epoch})
        records.append({"aAcc": 80.0, "mIoU": rounded, "mAcc": 60.0, "mIoU_unrounded": unrounded, "step": epoch})
    write_scalars(tmp_path / "work/20260101_000000", records)
    rows = history_from_scalars(tmp_path / "work")
    assert [r["mIoU"] for r in rows] == [30.0, 49.5, 50.0]  # MMSeg's numbers, as before
    write_history(rows, tmp_path / "history.csv")
    epochs, miou = read_miou_curve(tmp_path / "history.csv")
    assert miou == [30.0012, 49.5004, 50.004]
    assert convergence_epoch(epochs, miou, 0.99) == 3
    assert convergence_epoch(epochs, [m for _, m, _ in curve], 0.99) == 2  # what the rounded values say


def test_an_epoch_validated_by_a_resumed_attempt_keeps_its_training_loss(tmp_path):
    """Killed after epoch 2's checkpoint, before its validation: the next attempt's log
    starts with epoch 2's validation (a repeat of the epoch's end), then trains epoch 3."""
    from common.history import history_from_scalars

    write_scalars(tmp_path / "20260101_000000", [
        {"lr": 0.01, "loss": 3.0, "epoch": 1, "iter": 10, "step": 10},
        {"aAcc": 50.0, "mIoU": 10.0, "mAcc": 20.0, "step": 1},
        {"lr": 0.008, "loss": 2.0, "epoch": 2, "iter": 10, "step": 20},
    ])  # fmt: skip
    write_scalars(tmp_path / "20260101_010000", [
        {"aAcc": 60.0, "mIoU": 20.0, "mAcc": 30.0, "step": 2},
        {"lr": 0.006, "loss": 1.0, "epoch": 3, "iter": 10, "step": 30},
        {"aAcc": 70.0, "mIoU": 30.0, "mAcc": 40.0, "step": 3},
    ])  # fmt: skip
    rows = history_from_scalars(tmp_path)
    assert [(r["epoch"], r["train_loss"], r["mIoU"]) for r in rows] == [(1, 3.0, 10.0), (2, 2.0, 20.0), (3, 1.0, 30.0)]
    assert rows[1]["lr"] == 0.008
