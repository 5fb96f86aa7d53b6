"""A custom dataset in VOC layout: the generated shapes archive, and the check that stops bad ones."""

from __future__ import annotations

import shutil
import tarfile

import numpy as np
import pytest
from conftest import read_ids
from PIL import Image

from common.datasets import DatasetError, check_dataset
from common.voc import palette
from make_mini_custom import ARCHIVE_NAME, CLASSES, ROOT, build_custom_archive


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    out = tmp_path_factory.mktemp("custom")
    md5 = build_custom_archive(out, seed=0)[ARCHIVE_NAME]
    return out / ARCHIVE_NAME, md5


@pytest.fixture
def shapes(archive, tmp_path):
    """The archive unpacked afresh: a dataset folder each test may break."""
    with tarfile.open(archive[0]) as tar:
        tar.extractall(tmp_path, filter="data")
    return tmp_path / ROOT


def first_train_id(root):
    return read_ids(root / "ImageSets/Segmentation/train.txt")[0]


def test_archive_is_deterministic(archive, tmp_path):
    assert build_custom_archive(tmp_path, seed=0) == {ARCHIVE_NAME: archive[1]}
    assert build_custom_archive(tmp_path, seed=1) != {ARCHIVE_NAME: archive[1]}


def test_archive_passes_the_check_and_counts_its_lists(shapes):
    classes = (shapes / "classes.txt").read_text().splitlines()
    assert classes == list(CLASSES) == ["background", "disc", "square", "triangle"]
    train, val = (read_ids(shapes / f"ImageSets/Segmentation/{s}.txt") for s in ("train", "val"))
    assert len(train) == 16 and len(val) == 8 and not set(train) & set(val)
    summary = check_dataset(shapes, classes, "shapes")
    assert summary["classes"] == classes
    assert (summary["train"], summary["val"]) == (len(train), len(val))
    expected = np.zeros(len(classes), np.int64)
    for image_id in train:
        label = np.asarray(Image.open(shapes / f"SegmentationClass/{image_id}.png"))
        expected += np.bincount(label[label != 255], minlength=len(classes))
    assert summary["pixels_per_class"] == expected.tolist()
    assert all(n > 0 for n in summary["pixels_per_class"])


def test_label_values_are_voc_like(shapes):
    for path in sorted((shapes / "SegmentationClass").glob("*.png")):
        image = Image.open(path)
        assert image.mode == "P" and image.getpalette() == palette()[: len(image.getpalette())]
        assert set(np.unique(np.asarray(image))) <= {0, 1, 2, 3, 255} and 255 in np.asarray(image)


def test_label_value_outside_the_classes(shapes):
    image_id = first_train_id(shapes)
    path = shapes / f"SegmentationClass/{image_id}.png"
    label = np.asarray(Image.open(path)).copy()
    label[:2, :2] = 7
    Image.fromarray(label).save(path)  # uint8 2-D: mode L
    message = rf"^datasets\.shapes: .*{image_id}\.png holds values \[7\].*0\.\.3 for 4 classes"
    with pytest.raises(DatasetError, match=message):
        check_dataset(shapes, list(CLASSES), "shapes")


def test_listed_id_without_image(shapes):
    (shapes / "JPEGImages/shape_0017.jpg").unlink()
    message = r"^datasets\.shapes: .*val\.txt lists 'shape_0017', but .*JPEGImages/shape_0017\.jpg is missing"
    with pytest.raises(DatasetError, match=message):
        check_dataset(shapes, list(CLASSES), "shapes")


def test_rgb_label(shapes):
    image_id = first_train_id(shapes)
    path = shapes / f"SegmentationClass/{image_id}.png"
    Image.open(path).convert("RGB").save(path)
    with pytest.raises(DatasetError, match=rf"^datasets\.shapes: .*{image_id}\.png is a mode 'RGB' image"):
        check_dataset(shapes, list(CLASSES), "shapes")


def test_label_of_another_size_than_its_image(shapes):
    image_id = first_train_id(shapes)
    path = shapes / f"SegmentationClass/{image_id}.png"
    label = Image.open(path)
    width, height = label.size
    label.crop((0, 0, width - 3, height)).save(path)
    message = rf"^datasets\.shapes: .*{image_id}\.png is {width - 3}x{height} pixels, its image .*{width}x{height}"
    with pytest.raises(DatasetError, match=message):
        check_dataset(shapes, list(CLASSES), "shapes")


def test_class_that_no_training_label_has(shapes):
    message = r"^datasets\.shapes: class 4 \('pentagon'\) appears in no label of .*Segmentation/train\.txt"
    with pytest.raises(DatasetError, match=message):
        check_dataset(shapes, [*CLASSES, "pentagon"], "shapes")


def test_too_few_classes(shapes):
    with pytest.raises(DatasetError, match=r"^datasets\.shapes: 1 class\(es\) \['background'\]; at least 2"):
        check_dataset(shapes, ["background"], "shapes")


def test_missing_val_list(shapes):
    (shapes / "ImageSets/Segmentation/val.txt").unlink()
    with pytest.raises(DatasetError, match=r"^datasets\.shapes: list .*Segmentation/val\.txt is missing"):
        check_dataset(shapes, list(CLASSES), "shapes")


def test_missing_label_folder(shapes):
    shutil.rmtree(shapes / "SegmentationClass")
    with pytest.raises(DatasetError, match=r"^datasets\.mine: folder .*SegmentationClass is missing"):
        check_dataset(shapes, list(CLASSES), "mine")


def test_empty_train_list(shapes):
    (shapes / "ImageSets/Segmentation/train.txt").write_text("\n\n")
    with pytest.raises(DatasetError, match=r"^datasets\.shapes: list .*Segmentation/train\.txt is empty"):
        check_dataset(shapes, list(CLASSES), "shapes")
