"""SegmentationClassAug: SBD pixels exactly, VOC's own labels where VOC has them."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
import scipy.io
import scipy.sparse
from conftest import read_ids
from PIL import Image

from common.labels import LabelError, UnknownMatLayout, read_gtcls_segmentation, read_sbd_label
from common.voc import palette as voc_palette
from convert_sbd import convert_all, plan_conversion
from make_mini_voc import mat_bytes, png_bytes, sbd_cls_mat


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
    (cls / "2007_000002.mat").write_bytes(sbd_cls_mat(ok))  # SBD annotates the VOC id too
    (voc / "2007_000002.png").write_bytes(png_bytes(ok if voc_label is None else voc_label, voc_palette()))
    plan = plan_conversion(["2007_000002"], ["2008_000001", "2007_000002"], voc, cls)
    return plan, tmp_path / "VOC2012" / "SegmentationClassAug"


def test_good_case_converts(tmp_path):
    plan, out = write_case(tmp_path)
    assert convert_all(plan, out) == {"voc": 1, "sbd": 1, "sbd_loadmat": 0}
    # with SegmentationClassSBD: SBD's label of the VOC id is read as well, once
    sbd = out.with_name("SegmentationClassSBD")
    assert convert_all(plan, out, sbd_dir=sbd) == {"voc": 1, "sbd": 2, "sbd_loadmat": 0}
    assert sorted(p.name for p in sbd.iterdir()) == ["2007_000002.png", "2008_000001.png"]


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


# ---- MAT layouts: the fast reader where it knows them, scipy's loadmat where not -----
def _element(e: str, mtype: int, data: bytes) -> bytes:
    if 0 < len(data) <= 4:  # MATLAB's small data element: size and type share one word
        return struct.pack(e + "I", (len(data) << 16) | mtype) + data.ljust(4, b"\0")
    return struct.pack(e + "II", mtype, len(data)) + data + b"\0" * (-len(data) % 8)


def _matrix(e: str, mx_class: int, dims, name: str, body: bytes) -> bytes:
    flags = _element(e, 6, struct.pack(e + "II", mx_class, 0))
    shape = _element(e, 5, struct.pack(e + f"{len(dims)}i", *dims))
    return _element(e, 14, flags + shape + _element(e, 1, name.encode()) + body)


def _numeric(e: str, array: np.ndarray, mx_class: int, stored: str) -> bytes:
    """A numeric matrix of MATLAB class ``mx_class`` whose values are stored as ``stored``
    (MATLAB writes a double array of small integers as miUINT8, say)."""
    mi = {"i1": 1, "u1": 2, "i2": 3, "u2": 4, "i4": 5, "u4": 6, "f4": 7, "f8": 9}[stored]
    data = np.asarray(array).astype(np.dtype(stored).newbyteorder(e)).tobytes(order="F")
    return _matrix(e, mx_class, array.shape, "", _element(e, mi, data))


def matlab_style_mat(path, segmentation, big_endian=False, compressed=True, mx_class=6, stored="u1"):
    """A GTcls file written the way MATLAB writes one, byte by byte, in either byte order."""
    e = ">" if big_endian else "<"
    fields = {
        "Boundaries": _numeric(e, np.zeros((20, 1)), 6, "u1"),
        "Segmentation": _numeric(e, segmentation, mx_class, stored),
        "CategoriesPresent": _numeric(e, np.array([[1], [15]]), 6, "u1"),
    }
    names = b"".join(name.encode().ljust(32, b"\0") for name in fields)
    body = _element(e, 5, struct.pack(e + "i", 32)) + _element(e, 1, names) + b"".join(fields.values())
    variable = _matrix(e, 2, (1, 1), "GTcls", body)
    if compressed:
        variable = struct.pack(e + "II", 15, len(packed := zlib.compress(variable))) + packed
    header = b"MATLAB 5.0 MAT-file, written by a test".ljust(116, b" ") + bytes(8)
    path.write_bytes(header + struct.pack(e + "H", 0x0100) + (b"MI" if big_endian else b"IM") + variable)
    return path


@pytest.mark.parametrize("big_endian", [False, True], ids=["little-endian", "big-endian"])
@pytest.mark.parametrize("compressed", [True, False], ids=["compressed", "plain"])
@pytest.mark.parametrize("mx_class, stored", [(6, "u1"), (9, "u1"), (6, "f8"), (6, "i2")],
                         ids=["double-as-uint8", "uint8", "double", "double-as-int16"])  # fmt: skip
def test_fast_reader_reads_matlab_written_layouts_without_falling_back(tmp_path, big_endian, compressed, mx_class, stored):
    segmentation = np.random.default_rng(5).integers(0, 21, size=(23, 31))
    path = matlab_style_mat(tmp_path / "2008_000002.mat", segmentation, big_endian, compressed, mx_class, stored)
    expected = loadmat_segmentation(path)
    np.testing.assert_array_equal(expected, segmentation)  # scipy agrees that the file is what we meant
    label, fell_back = read_sbd_label(path)
    assert not fell_back and label.dtype == expected.dtype.newbyteorder("=")  # native order
    np.testing.assert_array_equal(label, expected)


@pytest.mark.parametrize("oned_as", ["row", "column"])
@pytest.mark.parametrize("compressed", [True, False], ids=["compressed", "plain"])
def test_struct_arrays_with_extra_fields_and_oned_as(tmp_path, oned_as, compressed):
    segmentation = np.random.default_rng(6).integers(0, 21, size=(19, 17)).astype(np.uint8)
    gtcls = np.empty((1, 2), dtype=[("Extra", object), ("Segmentation", object), ("CategoriesPresent", object)])
    for k in range(2):
        gtcls[0, k]["Extra"] = np.arange(7)  # a 1-D array: written as a row or a column
        gtcls[0, k]["Segmentation"] = segmentation if k == 0 else np.zeros((2, 2), np.uint8)
        gtcls[0, k]["CategoriesPresent"] = np.array([3, 4])
    path = tmp_path / "2008_000003.mat"
    scipy.io.savemat(path, {"GTcls": gtcls, "after": "x"}, do_compression=compressed, oned_as=oned_as)
    label, fell_back = read_sbd_label(path)
    assert not fell_back
    np.testing.assert_array_equal(label, segmentation)


def sparse_gtcls(path, segmentation):
    """Segmentation stored as a sparse matrix: valid MATLAB, a layout the fast reader does not decode."""
    scipy.io.savemat(path, {"GTcls": {"Segmentation": scipy.sparse.csc_matrix(segmentation.astype(float))}})
    return path


def test_unknown_layout_falls_back_to_loadmat_and_is_counted(tmp_path):
    segmentation = np.random.default_rng(7).integers(0, 21, size=(12, 14)).astype(np.uint8)
    path = sparse_gtcls(tmp_path / "2008_000004.mat", segmentation)
    with pytest.raises(UnknownMatLayout, match="2008_000004.mat"):
        read_gtcls_segmentation(path)
    label, fell_back = read_sbd_label(path)
    assert fell_back
    np.testing.assert_array_equal(label, segmentation)
    normal = matlab_style_mat(tmp_path / "2008_000005.mat", segmentation)
    plan = plan_conversion([], ["2008_000004", "2008_000005"], tmp_path, tmp_path)
    out = tmp_path / "SegmentationClassAug"
    assert convert_all(plan, out, processes=2) == {"voc": 0, "sbd": 2, "sbd_loadmat": 1}
    np.testing.assert_array_equal(read_png(out / "2008_000004.png"), segmentation)
    np.testing.assert_array_equal(read_png(out / f"{normal.stem}.png"), segmentation)


def test_fallback_keeps_the_value_checks(tmp_path):
    segmentation = np.zeros((6, 6), np.uint8)
    segmentation[2, 3] = 30
    sparse_gtcls(tmp_path / "2008_000006.mat", segmentation)
    plan = plan_conversion([], ["2008_000006"], tmp_path, tmp_path)
    with pytest.raises(LabelError, match=r"2008_000006\.mat: label value 30"):
        convert_all(plan, tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "variables, why",
    [({"GTcls": {"Boundaries": np.zeros((2, 2))}}, "Segmentation"), ({"GTinst": {"Segmentation": np.zeros((2, 2))}}, "GTcls")],
    ids=["no-field", "no-variable"],
)  # fmt: skip
def test_a_file_neither_reader_can_use_is_named(tmp_path, variables, why):
    path = tmp_path / "2008_000007.mat"
    scipy.io.savemat(path, variables)
    with pytest.raises(LabelError, match=rf"2008_000007\.mat: .*{why}"):
        read_sbd_label(path)


@pytest.mark.parametrize("content", [b"", bytes(range(256)) * 2], ids=["empty", "garbage"])
def test_an_empty_or_garbage_file_is_named(tmp_path, content):
    path = tmp_path / "2008_000008.mat"
    path.write_bytes(content)
    with pytest.raises(LabelError, match=r"2008_000008\.mat: cannot read GTcls\.Segmentation"):
        read_sbd_label(path)
