"""trainaug.txt and aug.txt: the set algebra of MMSegmentation's voc_aug.py, sorted."""

from __future__ import annotations

import pytest
from conftest import read_ids

from make_trainaug_list import OFFICIAL_COUNTS, SplitError, aug_ids, make_lists, trainaug_ids


def build(extracted, out, official=frozenset()):
    out.mkdir(parents=True, exist_ok=True)
    counts = make_lists(
        extracted.voc_train, extracted.voc_val, extracted.sbd_train, extracted.sbd_val,
        extracted.images, out / "trainaug.txt", out / "aug.txt", official,
    )  # fmt: skip
    return counts, read_ids(out / "trainaug.txt"), read_ids(out / "aug.txt")


@pytest.fixture(scope="module")
def lists(extracted, tmp_path_factory):
    return build(extracted, tmp_path_factory.mktemp("lists"))


def test_trainaug_excludes_voc_val(extracted, lists):
    _, trainaug, _ = lists
    assert not set(trainaug) & set(read_ids(extracted.voc_val))
    # the mini SBD train list does reach into VOC val, so this is a real subtraction
    assert set(read_ids(extracted.sbd_train)) & set(read_ids(extracted.voc_val))


def test_trainaug_is_union_of_voc_train_and_both_sbd_lists_minus_val(extracted, lists):
    _, trainaug, _ = lists
    union = set(read_ids(extracted.voc_train)) | set(read_ids(extracted.sbd_train)) | set(read_ids(extracted.sbd_val))
    assert set(trainaug) == union - set(read_ids(extracted.voc_val))
    assert set(read_ids(extracted.voc_train)) <= set(trainaug)


def test_aug_is_trainaug_minus_voc_train(extracted, lists):
    _, trainaug, aug = lists
    assert set(aug) == set(trainaug) - set(read_ids(extracted.voc_train))
    assert len(aug) == len(trainaug) - len(set(read_ids(extracted.voc_train)))


def test_lists_are_sorted_unique_and_deterministic(extracted, lists, tmp_path):
    counts, trainaug, aug = lists
    assert trainaug == sorted(set(trainaug)) and aug == sorted(set(aug))
    assert build(extracted, tmp_path / "again") == lists
    assert counts == {"train": 40, "val": 30, "trainaug": len(trainaug), "aug": len(aug), "train_sbd": 20}


def test_set_functions_on_hand_made_ids():
    voc_train, voc_val = ["a", "b"], ["c"]
    trainaug = trainaug_ids(voc_train, voc_val, ["c", "d", "b"], ["e", "a"])
    assert trainaug == ["a", "b", "d", "e"]
    assert aug_ids(trainaug, voc_train) == ["d", "e"]


def test_official_counts_are_checked_loudly(extracted, tmp_path):
    with pytest.raises(SplitError) as error:
        build(extracted, tmp_path, official=set(OFFICIAL_COUNTS))
    message = str(error.value)
    assert "train=40 (official 1464)" in message and "trainaug=" in message and "(official 10582)" in message
    assert not (tmp_path / "trainaug.txt").exists() and not (tmp_path / "aug.txt").exists()


def test_missing_image_names_the_id(extracted, tmp_path):
    sbd_val = tmp_path / "val.txt"
    sbd_val.write_text(extracted.sbd_val.read_text() + "2011_999999\n")
    with pytest.raises(SplitError, match="2011_999999"):
        make_lists(
            extracted.voc_train, extracted.voc_val, extracted.sbd_train, sbd_val,
            extracted.images, tmp_path / "trainaug.txt", tmp_path / "aug.txt",
        )  # fmt: skip
    assert not (tmp_path / "trainaug.txt").exists()


def test_voc_train_and_val_must_not_overlap(extracted, tmp_path):
    voc_val = tmp_path / "val.txt"
    first_train = read_ids(extracted.voc_train)[0]
    voc_val.write_text(extracted.voc_val.read_text() + first_train + "\n")
    with pytest.raises(SplitError, match=first_train):
        make_lists(
            extracted.voc_train, voc_val, extracted.sbd_train, extracted.sbd_val,
            extracted.images, tmp_path / "trainaug.txt", tmp_path / "aug.txt",
        )  # fmt: skip
