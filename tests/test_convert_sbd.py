"""SegmentationClassAug: SBD pixels exactly, VOC's own labels where VOC has them."""

from __future__ import annotations

import io

import numpy as np
import pytest
import scipy.io
from conftest import read_ids
from PIL import Image

from convert_sbd import LabelError, convert_all, plan_conversion, read_gtcls_segmentation
from make_mini_voc import mat_bytes, png_bytes, sbd_cls_mat, voc_palette


def loadmat_segmentation(path):
    """How MMSegmentation's voc_aug.py reads a label."""
    return scipy.io.loadmat(path)["GTcls"][0]["Segmentation"][0]


def plan_for(extracted):
    voc_ids = read_ids(extracted.voc_train) + read_ids(extracted.voc_val)
    sbd_ids = read_ids(extracted.sbd_train) + read_ids(extracted.sbd_val)
    return plan_conversion(voc_ids, sbd_ids, extracted.voc_labels, extracted.sbd_cls)


@pytest.fixture(scope="module")
def converted(extracted, tmp_path_factory):
    out = tmp_path_factory.mktemp("converted") / "SegmentationClassAug"
    counts = convert_all(plan_for(extracted), out, processes=2)
    return out, counts


def read_png(path):
    with Image.open(path) as image:
        assert image.mode == "L", f"{path} is not a single-channel PNG"
        return np.asarray(image)


def test_every_listed_id_gets_one_label(extracted, converted):
    out, counts = converted
    ids = set()
    for lst in (extracted.voc_train, extracted.voc_val, extracted.sbd_train, extracted.sbd_val):
        ids |= set(read_ids(lst))
    assert sorted(p.stem for p in out.glob("*.png")) == sorted(ids)
    assert counts["voc"] == len(set(read_ids(extracted.voc_train)) | set(read_ids(extracted.voc_val)))
    assert counts["voc"] + counts["sbd"] == len(ids)


def test_sbd_labels_equal_mat_segmentation_pixel_for_pixel(extracted, converted):
    out, _ = converted
    voc_ids = set(read_ids(extracted.voc_train)) | set(read_ids(extracted.voc_val))
    sbd_only = sorted((set(read_ids(extracted.sbd_train)) | set(read_ids(extracted.sbd_val))) - voc_ids)
    assert sbd_only
    for image_id in sbd_only:
        expected = loadmat_segmentation(extracted.sbd_cls / f"{image_id}.mat")
        np.testing.assert_array_equal(read_png(out / f"{image_id}.png"), expected)


def test_voc_annotated_ids_keep_voc_label_with_borders(extracted, converted):
    out, _ = converted
    both = sorted(set(read_ids(extracted.voc_train)) & set(read_ids(extracted.sbd_train)))
    assert both
    for image_id in both:
        voc = np.asarray(Image.open(extracted.voc_labels / f"{image_id}.png"))
        label = read_png(out / f"{image_id}.png")
        np.testing.assert_array_equal(label, voc)
        assert (label == 255).any()
        assert not np.array_equal(label, loadmat_segmentation(extracted.sbd_cls / f"{image_id}.mat"))


def test_fast_reader_matches_loadmat_on_every_mini_file(extracted):
    for path in sorted(extracted.sbd_cls.glob("*.mat")):
        expected = loadmat_segmentation(path)
        actual = read_gtcls_segmentation(path)
        assert actual.dtype == expected.dtype
        np.testing.assert_array_equal(actual, expected)


@pytest.mark.parametrize("compressed", [True, False])
@pytest.mark.parametrize("dtype", [np.uint8, np.float64, np.int32])
def test_fast_reader_matches_loadmat_on_other_encodings(tmp_path, compressed, dtype):
    rng = np.random.default_rng(3)
    segmentation = rng.integers(0, 21, size=(37, 53)).astype(dtype)
    gtcls = np.empty((1, 1), dtype=[("Boundaries", object), ("Segmentation", object), ("Other", object)])
    gtcls[0, 0]["Boundaries"] = np.zeros((20, 1))
    gtcls[0, 0]["Segmentation"] = segmentation
    gtcls[0, 0]["Other"] = "text"
    path = tmp_path / "x.mat"
    scipy.io.savemat(path, {"before": np.arange(5), "GTcls": gtcls}, do_compression=compressed)
    np.testing.assert_array_equal(read_gtcls_segmentation(path), loadmat_segmentation(path))


def test_non_mat_file_is_named(tmp_path):
    path = tmp_path / "2008_000001.mat"
    path.write_bytes(b"\x89HDF\r\n" + bytes(200))
    with pytest.raises(LabelError, match="2008_000001.mat"):
        read_gtcls_segmentation(path)


def write_case(tmp_path, sbd_label=None, voc_label=None):
    """One SBD id and one VOC id in fresh folders; return (plan, output folder)."""
    cls, voc = tmp_path / "cls", tmp_path / "SegmentationClass"
    cls.mkdir()
    voc.mkdir()
    ok = np.zeros((20, 30), np.uint8)
    ok[5:10, 5:10] = 7
    (cls / "2008_000001.mat").write_bytes(sbd_cls_mat(ok if sbd_label is None else sbd_label))
    (voc / "2007_000002.png").write_bytes(png_bytes(ok if voc_label is None else voc_label, voc_palette()))
    plan = plan_conversion(["2007_000002"], ["2008_000001", "2007_000002"], voc, cls)
    return plan, tmp_path / "VOC2012" / "SegmentationClassAug"


def test_good_case_converts(tmp_path):
    plan, out = write_case(tmp_path)
    assert convert_all(plan, out) == {"voc": 1, "sbd": 1}


@pytest.mark.parametrize("value", [21, 255])
def test_sbd_value_out_of_range_names_file_and_value(tmp_path, value):
    bad = np.zeros((20, 30), np.uint8)
    bad[3, 4] = value
    plan, out = write_case(tmp_path, sbd_label=bad)
    with pytest.raises(LabelError, match=rf"2008_000001\.mat: label value {value} "):
        convert_all(plan, out, processes=2)
    assert not out.parent.exists() or list(out.parent.iterdir()) == []


def test_voc_value_out_of_range_names_file_and_value(tmp_path):
    bad = np.zeros((20, 30), np.uint8)
    bad[0, 0] = 254
    plan, out = write_case(tmp_path, voc_label=bad)
    with pytest.raises(LabelError, match=r"2007_000002\.png: label value 254 "):
        convert_all(plan, out)
    assert not out.parent.exists() or list(out.parent.iterdir()) == []


def test_non_integer_mat_label_is_refused(tmp_path):
    gtcls = np.empty((1, 1), dtype=[("Segmentation", object)])
    gtcls[0, 0]["Segmentation"] = np.full((4, 4), 2.5)
    path = tmp_path / "2009_000003.mat"
    path.write_bytes(mat_bytes({"GTcls": gtcls}))
    plan = plan_conversion([], ["2009_000003"], tmp_path, tmp_path)
    with pytest.raises(LabelError, match=r"2009_000003\.mat: label value 2\.5"):
        convert_all(plan, tmp_path / "out")


def test_listed_id_without_mat_names_the_id(tmp_path):
    with pytest.raises(LabelError, match="id 2010_000404"):
        plan_conversion([], ["2010_000404"], tmp_path, tmp_path)


def test_listed_voc_id_without_png_names_the_id(tmp_path):
    with pytest.raises(LabelError, match="id 2010_000405"):
        plan_conversion(["2010_000405"], [], tmp_path, tmp_path)


def test_parallel_and_serial_write_the_same_pixels(extracted, converted, tmp_path):
    out, _ = converted
    serial = tmp_path / "serial"
    convert_all(plan_for(extracted), serial, processes=1)
    for path in sorted(out.glob("*.png")):
        np.testing.assert_array_equal(read_png(path), read_png(serial / path.name))


def test_rerun_replaces_an_existing_output(extracted, converted, tmp_path):
    out = tmp_path / "SegmentationClassAug"
    out.mkdir()
    (out / "stale.png").write_bytes(b"old")
    convert_all(plan_for(extracted)[:3], out)
    assert len(list(out.iterdir())) == 3 and not (out / "stale.png").exists()


def test_png_is_readable_by_pil_as_indices(converted):
    out, _ = converted
    path = next(iter(sorted(out.glob("*.png"))))
    assert Image.open(io.BytesIO(path.read_bytes())).mode == "L"
