"""SBD-vs-VOC label agreement and class frequency (compare_annotations, plot_annotations)."""

from __future__ import annotations

import csv
import logging
import shutil
import sys
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import read_ids

import compare_annotations
from common.annotations import (
    agreement_counts,
    agreement_iou,
    class_counts,
    class_frequency,
    label_frequency,
)
from common.labels import LabelError
from common.voc import CLASSES
from convert_sbd import convert_all, plan_conversion
from make_mini_voc import COARSE_CLASSES
from plot_annotations import agreement_and_change, correlations, plot

VARIANTS = {
    "voc": [{"split": "train", "labels": "SegmentationClass"}],
    "vocaug": [
        {"split": "train", "labels": "SegmentationClass"},
        {"split": "aug", "labels": "SegmentationClassAug"},
    ],
}


# ---- agreement and frequency on hand-made labels -----------------------------------
# VOC: a 2x2 bicycle (2) with one 255 border pixel beside it, a 1-pixel person (15).
VOC = np.array(
    [
        [0, 0, 0, 0, 0],
        [0, 2, 2, 255, 0],
        [0, 2, 2, 0, 0],
        [0, 0, 0, 0, 15],
    ],
    np.uint8,
)
# SBD: the bicycle one column wider (over the 255 pixel and one background pixel).
SBD = np.array(
    [
        [0, 0, 0, 0, 0],
        [0, 2, 2, 2, 0],
        [0, 2, 2, 2, 0],
        [0, 0, 0, 0, 15],
    ],
    np.uint8,
)


def test_agreement_counts_and_iou_by_hand():
    counts = agreement_counts(VOC, SBD)
    assert counts.shape == (21, 21)
    assert counts.sum() == VOC.size - 1  # the 255 pixel is left out
    # bicycle: VOC 4 pixels, SBD 4 of them + 1 background pixel of VOC -> IoU 4 / 5
    # background: VOC 14 pixels, SBD 13 of them -> IoU 13 / 14
    assert counts[2, 2] == 4 and counts[0, 2] == 1 and counts[0, 0] == 13 and counts[15, 15] == 1
    iou = agreement_iou(counts)
    assert iou[2] == pytest.approx(4 / 5)
    assert iou[0] == pytest.approx(13 / 14)
    assert iou[15] == 1.0
    assert np.isnan(iou[1])  # neither label has an aeroplane


def test_voc_255_pixels_are_ignored_whatever_sbd_says_there():
    sbd = SBD.copy()
    sbd[1, 3] = 7  # under VOC's 255: no effect
    np.testing.assert_array_equal(agreement_counts(VOC, sbd), agreement_counts(VOC, SBD))


def test_sbd_pixels_without_a_class_are_ignored_and_other_dtypes_agree():
    sbd = SBD.astype(np.float64)
    sbd[0, 0] = 255
    counts = agreement_counts(VOC.astype(np.int32), sbd)
    assert counts.sum() == VOC.size - 2 and counts[0, 0] == 12
    uint8 = SBD.copy()
    uint8[0, 0] = 255
    np.testing.assert_array_equal(agreement_counts(VOC, uint8), counts)


def test_labels_of_different_sizes_are_refused():
    with pytest.raises(ValueError, match="differ in size"):
        agreement_counts(VOC, SBD[:, :4])


def test_class_frequency_by_hand():
    other = np.full((2, 5), 15, np.uint8)
    other[0, 0] = 255
    frequency = label_frequency([VOC, other])
    # labelled pixels: 19 + 9 = 28; background 14, bicycle 4, person 1 + 9
    assert frequency.pixels.sum() == 28 and frequency.total_images == 2
    assert frequency.share[0] == pytest.approx(14 / 28)
    assert frequency.share[2] == pytest.approx(4 / 28)
    assert frequency.share[15] == pytest.approx(10 / 28)
    assert frequency.images[0] == 1 and frequency.images[2] == 1 and frequency.images[15] == 2
    assert frequency.images[1] == 0
    # streamed counts give the same, and sets add up
    streamed = class_frequency([class_counts(VOC), class_counts(other)])
    np.testing.assert_array_equal(streamed.pixels, frequency.pixels)
    both = class_frequency([class_counts(VOC)]) + class_frequency([class_counts(other)])
    np.testing.assert_array_equal(both.images, frequency.images)
    assert both.total_images == 2


# ---- the script on the mini archives ---------------------------------------------
@pytest.fixture(scope="module")
def demo_data(extracted, tmp_path_factory):
    """The extracted mini data plus SegmentationClassAug and aug.txt, as the data stage writes them."""
    root = tmp_path_factory.mktemp("annotations")
    voc_ids = read_ids(extracted.voc_train) + read_ids(extracted.voc_val)
    sbd_ids = read_ids(extracted.sbd_train) + read_ids(extracted.sbd_val)
    aug_labels = root / "SegmentationClassAug"
    convert_all(
        plan_conversion(voc_ids, sbd_ids, extracted.voc_labels, extracted.sbd_cls), aug_labels
    )
    trainaug = (set(read_ids(extracted.voc_train)) | set(sbd_ids)) - set(
        read_ids(extracted.voc_val)
    )
    aug = root / "aug.txt"
    aug.write_text("".join(f"{i}\n" for i in sorted(trainaug - set(read_ids(extracted.voc_train)))))
    return SimpleNamespace(extracted=extracted, aug_labels=aug_labels, aug=aug, root=root)


def fake_snakemake(data, out: Path, **inputs) -> SimpleNamespace:
    e = data.extracted
    given = dict(
        voc_labels=str(e.voc_labels), sbd_cls=str(e.sbd_cls), voc_train=str(e.voc_train),
        voc_val=str(e.voc_val), sbd_train=str(e.sbd_train), sbd_val=str(e.sbd_val),
        aug_labels=str(data.aug_labels), lists=[str(e.voc_train), str(data.aug)],
    )  # fmt: skip
    given.update(inputs)
    out.mkdir(parents=True, exist_ok=True)
    return SimpleNamespace(
        input=SimpleNamespace(**given),
        params=SimpleNamespace(variants=VARIANTS, code="test"),
        output=SimpleNamespace(csv=str(out / "annotations.csv"), md=str(out / "annotations.md")),
        log=[str(out / "compare_annotations.log")],
        threads=2,
    )


@contextmanager
def script_log():
    """Undo a script's start_log afterwards: stderr and the logging handlers go back."""
    stderr, root = sys.stderr, logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        yield
    finally:
        if sys.stderr is not stderr:
            sys.stderr.close()
        sys.stderr = stderr
        root.handlers[:] = handlers
        root.setLevel(level)


@pytest.fixture(scope="module")
def table(demo_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("table")
    with script_log():
        compare_annotations.main(fake_snakemake(demo_data, out))
    with open(out / "annotations.csv", newline="") as handle:
        rows = {row["class"]: row for row in csv.DictReader(handle)}
    return SimpleNamespace(rows=rows, out=out)


def test_table_has_a_row_per_class_and_the_columns(table):
    assert list(table.rows) == [*CLASSES, "all"]
    assert list(next(iter(table.rows.values()))) == [
        "class", "images both", "agreement IoU",
        "pixel share voc", "images voc", "pixel share vocaug", "images vocaug",
    ]  # fmt: skip


def test_coarsened_classes_agree_less_than_the_others(table):
    coarse = {CLASSES[c] for c in COARSE_CLASSES}
    agreement = {name: float(row["agreement IoU"]) for name, row in table.rows.items()}
    others = [agreement[name] for name in CLASSES if name not in coarse]
    # the other object classes are drawn alike (VOC's 255 borders ignored) ...
    assert all(agreement[name] == 100.0 for name in CLASSES[1:] if name not in coarse)
    # ... background loses only what the coarse classes spread over it
    assert 95 < agreement["background"] < 100
    assert max(agreement[name] for name in coarse) < min(others) - 4
    assert all(50 < agreement[name] < 97 for name in coarse)


def test_counts_match_the_lists(table, demo_data):
    e = demo_data.extracted
    voc_ids = set(read_ids(e.voc_train)) | set(read_ids(e.voc_val))
    sbd_ids = set(read_ids(e.sbd_train)) | set(read_ids(e.sbd_val))
    both = len(voc_ids & sbd_ids)
    rows = table.rows
    assert int(rows["all"]["images both"]) == both
    assert int(rows["all"]["images voc"]) == len(read_ids(e.voc_train))
    assert int(rows["all"]["images vocaug"]) == len(read_ids(e.voc_train)) + len(
        read_ids(demo_data.aug)
    )
    for variant in ("voc", "vocaug"):
        shares = [float(rows[name][f"pixel share {variant}"]) for name in CLASSES]
        assert sum(shares) == pytest.approx(100, abs=0.01)
        images = [int(rows[name][f"images {variant}"]) for name in CLASSES]
        assert max(images) <= int(rows["all"][f"images {variant}"]) and min(images) > 0
    assert all(0 < int(rows[name]["images both"]) <= both for name in CLASSES)
    text = (table.out / "annotations.md").read_text()
    assert f"{both} ids have both a VOC label" in text and "255" in text
    log = (table.out / "compare_annotations.log").read_text()
    assert f"read {both} label pairs" in log


def test_a_listed_id_without_its_label_is_named(demo_data, tmp_path):
    aug_labels = tmp_path / "SegmentationClassAug"
    shutil.copytree(demo_data.aug_labels, aug_labels)
    missing = read_ids(demo_data.aug)[3]
    (aug_labels / f"{missing}.png").unlink()
    snakemake = fake_snakemake(demo_data, tmp_path / "out", aug_labels=str(aug_labels))
    with pytest.raises(
        LabelError, match=rf"id {missing}: listed in .*aug\.txt but .*{missing}\.png does not exist"
    ):
        with script_log():
            compare_annotations.main(snakemake)
    assert not (tmp_path / "out/annotations.csv").exists()


def test_missing_voc_png_and_unreadable_mat_are_named(demo_data, tmp_path):
    e = demo_data.extracted
    ids = sorted(set(read_ids(e.voc_train)) & set(read_ids(e.sbd_train)))[:2]
    voc, cls = tmp_path / "SegmentationClass", tmp_path / "cls"
    voc.mkdir(), cls.mkdir()
    for image_id in ids:
        shutil.copy(e.voc_labels / f"{image_id}.png", voc)
        shutil.copy(e.sbd_cls / f"{image_id}.mat", cls)
    (voc / f"{ids[0]}.png").unlink()
    with pytest.raises(LabelError, match=rf"{ids[0]}\.png does not exist"):
        compare_annotations.plan_agreement(ids, ids, voc, cls)
    (cls / f"{ids[1]}.mat").write_bytes(b"not a mat file" * 20)
    with pytest.raises(LabelError, match=rf"{ids[1]}\.mat: cannot read"):
        compare_annotations.measure(
            compare_annotations.plan_agreement(ids[1:], ids[1:], e.voc_labels, cls), {}
        )


def test_a_split_or_label_folder_the_rule_does_not_give_is_named(demo_data):
    e = demo_data.extracted
    splits = compare_annotations.split_paths([e.voc_train])
    labels = {"SegmentationClass": e.voc_labels}
    with pytest.raises(ValueError, match="variant vocaug: no input list for split 'aug'"):
        compare_annotations.plan_training_sets(VARIANTS, splits, labels)
    splits = compare_annotations.split_paths([e.voc_train, demo_data.aug])
    with pytest.raises(
        ValueError, match="variant vocaug: no input label folder 'SegmentationClassAug'"
    ):
        compare_annotations.plan_training_sets(VARIANTS, splits, labels)


# ---- the figure's numbers ----------------------------------------------------------
def write_rows(path: Path, rows: list[dict]) -> Path:
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_plot_pairs_agreement_with_the_change_at_the_longest_epoch_count(tmp_path):
    table = write_rows(
        tmp_path / "annotations.csv",
        [
            {"class": "background", "images both": 9, "agreement IoU": 98.0},
            {"class": "bicycle", "images both": 3, "agreement IoU": 60.0},
            {"class": "chair", "images both": 4, "agreement IoU": 80.0},
            {"class": "cat", "images both": 2, "agreement IoU": 95.0},
            {"class": "dog", "images both": 0, "agreement IoU": ""},
            {"class": "all", "images both": 9, "agreement IoU": 83.25},
        ],
    )
    per_class = write_rows(
        tmp_path / "per_class_iou.csv",
        [
            {"class": name, "voc e3": 1, "vocaug e3": 2, "change e3": 1, "change e3 low": 0, "change e3 high": 2,
             "voc e10": 50, "vocaug e10": 50 + change, "change e10": change,
             "change e10 low": "" if name == "mIoU" else change - 1, "change e10 high": "" if name == "mIoU" else change + 2}
            for name, change in [("background", 1.0), ("bicycle", -20.0), ("chair", -5.0), ("cat", 3.0),
                                 ("dog", 4.0), ("mIoU", -4.0)]
        ],
    )  # fmt: skip
    pairs = agreement_and_change(table, per_class)
    assert pairs.budget == "e10"
    assert pairs.classes == ["background", "bicycle", "chair", "cat"]  # dog: no agreement
    np.testing.assert_array_equal(pairs.agreement, [98, 60, 80, 95])
    np.testing.assert_array_equal(pairs.change, [1, -20, -5, 3])
    np.testing.assert_array_equal(pairs.low, [0, -21, -6, 2])
    np.testing.assert_array_equal(pairs.high, [3, -18, -3, 5])
    x, y = np.array([98, 60, 80, 95.0]), np.array([1, -20, -5, 3.0])
    expected = ((x - x.mean()) * (y - y.mean())).sum() / np.sqrt(
        ((x - x.mean()) ** 2).sum() * ((y - y.mean()) ** 2).sum()
    )
    assert pairs.pearson == pytest.approx(expected)
    # ranks: agreement 4 1 2 3, change 3 1 2 4 -> d = 1 0 0 1, rho = 1 - 6 * 2 / (4 * (16 - 1))
    assert pairs.spearman == pytest.approx(1 - 6 * 2 / (4 * 15))
    fig = plot(pairs, ["voc", "vocaug"])
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert any("Spearman ρ = +0.80" in t for t in texts)
    assert any(t == "bicycle" for t in texts)


def test_correlation_of_too_few_or_constant_values_is_nan():
    assert all(np.isnan(correlations([1, 2], [3, 4])))
    assert all(np.isnan(correlations([100, 100, 100], [1, 2, 3])))
