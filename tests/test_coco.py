"""COCO val2017 -> VOC labels: torchvision's conversion, the mini archives, the rule's script."""

from __future__ import annotations

import io
import json
import logging
import sys
import zipfile
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as coco_mask

import convert_coco
from common.coco import (
    CATEGORIES,
    INSTANCES_MEMBER,
    CocoFormatError,
    CocoImage,
    has_valid_annotation,
    instance_mask,
    load_instances,
    parse_instances,
    rle_string_counts,
    voc_label,
)
from common.archives import ArchiveError
from common.voc import CLASSES
from make_mini_coco import (
    ANNOTATIONS_ARCHIVE_NAME,
    IMAGES_ARCHIVE_NAME,
    build_coco_archives,
    write_zip,
)

KEYS = ("data.coco_images.md5", "data.coco_annotations.md5")
# COCO's names of VOC's classes where they differ (the mapping checked independently of VOC_FROM_COCO)
VOC_NAME = {"airplane": "aeroplane", "motorcycle": "motorbike", "couch": "sofa", "tv": "tvmonitor",
            "dining table": "diningtable", "potted plant": "pottedplant"}  # fmt: skip
VOC_OF = {
    cat_id: CLASSES.index(VOC_NAME.get(name, name))
    for cat_id, name, _ in CATEGORIES
    if VOC_NAME.get(name, name) in CLASSES
}


@pytest.fixture(scope="module")
def coco(tmp_path_factory) -> SimpleNamespace:
    out = tmp_path_factory.mktemp("coco")
    md5s = build_coco_archives(out, seed=0)
    with zipfile.ZipFile(out / ANNOTATIONS_ARCHIVE_NAME) as archive:
        instances = json.loads(archive.read(INSTANCES_MEMBER))
    return SimpleNamespace(
        dir=out,
        images=out / IMAGES_ARCHIVE_NAME,
        annotations=out / ANNOTATIONS_ARCHIVE_NAME,
        md5s=md5s,
        json=instances,
        by_image={
            image["id"]: [a for a in instances["annotations"] if a["image_id"] == image["id"]]
            for image in instances["images"]
        },
        size={image["id"]: (image["height"], image["width"]) for image in instances["images"]},
    )


def outputs(root):
    return SimpleNamespace(
        images=root / "JPEGImages", labels=root / "SegmentationClass", list=root / "val.txt"
    )


@pytest.fixture(scope="module")
def converted(coco, tmp_path_factory) -> SimpleNamespace:
    out = outputs(tmp_path_factory.mktemp("converted"))
    counts = convert_coco.convert(coco.images, coco.annotations, out.images, out.labels, out.list)
    ids = out.list.read_text().split()
    return SimpleNamespace(out=out, counts=counts, ids=ids)


def label_of(converted, image_id: int) -> np.ndarray:
    with Image.open(converted.out.labels / f"{image_id:012d}.png") as image:
        assert image.mode == "L"
        return np.asarray(image)


def mask_of(coco, annotation) -> np.ndarray:
    """pycocotools' mask of one fixture annotation (polygons united), as torchvision gets it."""
    height, width = coco.size[annotation["image_id"]]
    decoded = coco_mask.decode(coco_mask.frPyObjects(annotation["segmentation"], height, width))
    return (decoded if decoded.ndim == 3 else decoded[..., None]).any(axis=2)


def torchvision_reference(coco, image_id: int) -> np.ndarray | None:
    """references/segmentation/coco_utils.py, line by line in NumPy (None: image dropped)."""
    anno = [obj for obj in coco.by_image[image_id] if obj["category_id"] in VOC_OF]
    if not (len(anno) > 0 and sum(obj["area"] for obj in anno) > 1000):
        return None
    masks = np.stack([mask_of(coco, obj) for obj in anno]).astype(np.uint8)
    cats = np.array([VOC_OF[obj["category_id"]] for obj in anno], np.uint8)
    target = (masks * cats[:, None, None]).max(axis=0)
    target[masks.sum(0) > 1] = 255
    return target


# --- the mini archives ---------------------------------------------------------
def test_archives_are_byte_deterministic(coco, tmp_path):
    again = build_coco_archives(tmp_path, seed=0)
    assert again == coco.md5s
    assert set(again) == {IMAGES_ARCHIVE_NAME, ANNOTATIONS_ARCHIVE_NAME}
    assert build_coco_archives(tmp_path / "other", seed=1) != coco.md5s


def test_archives_have_cocos_layout_and_fields(coco):
    instances = coco.json
    assert list(instances) == ["info", "licenses", "images", "annotations", "categories"]
    assert [(c["id"], c["name"], c["supercategory"]) for c in instances["categories"]] == list(
        CATEGORIES
    )
    with zipfile.ZipFile(coco.images) as archive:
        names = archive.namelist()
    expected = {f"val2017/{image['id']:012d}.jpg" for image in instances["images"]}
    assert sorted(names) == names and set(names) == {"val2017/"} | expected
    assert all(image["file_name"] == f"{image['id']:012d}.jpg" for image in instances["images"])
    with zipfile.ZipFile(coco.annotations) as archive:
        assert INSTANCES_MEMBER in archive.namelist()
    annotations = instances["annotations"]
    fields = {"id", "image_id", "category_id", "segmentation", "area", "bbox", "iscrowd"}
    assert all(set(a) == fields for a in annotations)
    crowd = [a for a in annotations if a["iscrowd"]]
    assert len(crowd) == 1 and isinstance(crowd[0]["segmentation"]["counts"], list)
    rle = [a for a in annotations if isinstance(a["segmentation"], dict)]
    assert len(rle) == 2  # the crowd and one ordinary object
    assert any(
        len(a["segmentation"]) == 2 for a in annotations if isinstance(a["segmentation"], list)
    )
    assert any(a["category_id"] not in VOC_OF for a in annotations)
    assert any(not anns for anns in coco.by_image.values())  # an image without any annotation
    assert 25 <= len(instances["images"]) <= 35


# --- the conversion on the fixture ---------------------------------------------
def test_counts(converted):
    counts = converted.counts
    assert (counts.images, counts.kept, counts.dropped_no_voc, counts.dropped_small) == (
        30,
        26,
        3,
        1,
    )
    assert counts.crowd_used == 1 and counts.overlap_pixels > 0
    assert counts.annotations == 67 and counts.annotations_used < counts.annotations
    assert len(converted.ids) == counts.kept and converted.ids == sorted(converted.ids)


def test_every_label_equals_torchvisions(coco, converted):
    kept = []
    for image_id in sorted(coco.by_image):
        expected = torchvision_reference(coco, image_id)
        if expected is None:
            assert not (converted.out.labels / f"{image_id:012d}.png").exists()
            continue
        kept.append(f"{image_id:012d}")
        np.testing.assert_array_equal(label_of(converted, image_id), expected)
    assert kept == converted.ids


def test_categories_map_to_voc_indices(coco, converted):
    checked = set()
    for image_id in map(int, converted.ids):
        label = label_of(converted, image_id)
        voc = [a for a in coco.by_image[image_id] if a["category_id"] in VOC_OF]
        masks = [mask_of(coco, a) for a in voc]
        for annotation, mask in zip(voc, masks):
            alone = mask & ~np.any(
                [m for m in masks if m is not mask] or [np.zeros_like(mask)], axis=0
            )
            assert alone.any()
            assert set(np.unique(label[alone])) == {VOC_OF[annotation["category_id"]]}
            checked.add(annotation["category_id"])
    assert len(checked) >= 15  # most of the 20 categories appear


def test_overlapping_instances_become_255(coco, converted):
    same_class = False
    found = 0
    for image_id in map(int, converted.ids):
        voc = [a for a in coco.by_image[image_id] if a["category_id"] in VOC_OF]
        for i, first in enumerate(voc):
            for second in voc[i + 1 :]:
                both = mask_of(coco, first) & mask_of(coco, second)
                if both.sum() > 30:
                    found += 1
                    same_class |= first["category_id"] == second["category_id"]
                    assert (label_of(converted, image_id)[both] == 255).all()
    assert found >= 2 and same_class


def test_small_objects_drop_their_image(coco, converted):
    small = [
        image_id
        for image_id, anns in coco.by_image.items()
        if 0 < sum(a["area"] for a in anns if a["category_id"] in VOC_OF) <= 1000
    ]
    assert len(small) == 1
    assert f"{small[0]:012d}" not in converted.ids
    # its other (non-VOC) object is large: only VOC objects count
    assert sum(a["area"] for a in coco.by_image[small[0]] if a["category_id"] not in VOC_OF) > 1000


def test_crowd_annotation_is_labelled(coco, converted):
    (crowd,) = [a for a in coco.json["annotations"] if a["iscrowd"]]
    assert f"{crowd['image_id']:012d}" in converted.ids
    mask = mask_of(coco, crowd)
    assert mask.sum() > 50
    assert (label_of(converted, crowd["image_id"])[mask] == VOC_OF[crowd["category_id"]]).all()


def test_other_categories_are_background(coco, converted):
    seen = 0
    for image_id in map(int, converted.ids):
        anns = coco.by_image[image_id]
        voc = np.zeros(coco.size[image_id], bool)
        for a in anns:
            if a["category_id"] in VOC_OF:
                voc |= mask_of(coco, a)
        for a in anns:
            if a["category_id"] not in VOC_OF:
                only = mask_of(coco, a) & ~voc
                seen += int(only.sum())
                assert (label_of(converted, image_id)[only] == 0).all()
    assert seen > 1000
    no_voc = [
        i for i, anns in coco.by_image.items() if not any(a["category_id"] in VOC_OF for a in anns)
    ]
    assert len(no_voc) == 3 and not {f"{i:012d}" for i in no_voc} & set(converted.ids)


def test_images_are_the_archives_jpegs(coco, converted):
    with zipfile.ZipFile(coco.images) as archive:
        for stem in converted.ids:
            data = (converted.out.images / f"{stem}.jpg").read_bytes()
            assert data == archive.read(f"val2017/{stem}.jpg")
    assert len(list(converted.out.images.iterdir())) == len(converted.ids)


# --- decoding, by hand ---------------------------------------------------------
def test_polygon_masks_match_hand_drawn_ones():
    expected = np.zeros((10, 12), bool)
    expected[1:6, 1:8] = True  # a polygon with corners (1, 1) and (8, 6) covers pixels 1..7 x 1..5
    np.testing.assert_array_equal(instance_mask([[1, 1, 8, 1, 8, 6, 1, 6]], 10, 12), expected)
    two = instance_mask(
        [[1, 1, 4, 1, 4, 3, 1, 3], [6.0, 5.0, 9.0, 5.0, 9.0, 8.0, 6.0, 8.0]], 10, 12
    )
    expected = np.zeros((10, 12), bool)
    expected[1:3, 1:4] = expected[5:8, 6:9] = True  # the union of the parts
    np.testing.assert_array_equal(two, expected)


def test_rle_masks_match_hand_decoded_ones():
    expected = np.array([[0, 1, 0], [0, 1, 1], [1, 0, 1], [0, 0, 0]], bool)
    counts = [2, 1, 1, 2, 3, 2, 1]  # column by column: 0 0 1 0 | 1 1 0 0 | 0 1 1 0
    np.testing.assert_array_equal(instance_mask({"counts": counts, "size": [4, 3]}, 4, 3), expected)
    compressed = coco_mask.frPyObjects({"counts": counts, "size": [4, 3]}, 4, 3)["counts"]
    assert rle_string_counts(compressed) == counts
    np.testing.assert_array_equal(
        instance_mask({"counts": compressed.decode(), "size": [4, 3]}, 4, 3), expected
    )


def test_fixture_rles_decode_like_a_plain_run_length_decoder(coco):
    for annotation in coco.json["annotations"]:
        segmentation = annotation["segmentation"]
        if isinstance(segmentation, dict):
            height, width = segmentation["size"]
            values = np.arange(len(segmentation["counts"])) % 2
            flat = np.repeat(values, segmentation["counts"]).astype(bool)
            expected = flat.reshape((height, width), order="F")
            np.testing.assert_array_equal(instance_mask(segmentation, height, width), expected)


def test_overlap_of_two_hand_drawn_instances():
    image = CocoImage(7, "000000000007.jpg", 6, 8)
    first = {"id": 1, "segmentation": [[0, 0, 5, 0, 5, 4, 0, 4]]}  # rows 0-3, cols 0-4
    second = {"id": 2, "segmentation": [[3, 2, 8, 2, 8, 6, 3, 6]]}  # rows 2-5, cols 3-7
    label, overlap = voc_label(image, [(15, first), (13, second)])
    expected = np.zeros((6, 8), np.uint8)
    expected[0:4, 0:5] = 15
    expected[2:6, 3:8] = 13
    expected[2:4, 3:5] = 255
    np.testing.assert_array_equal(label, expected)
    assert overlap == 4


@pytest.mark.parametrize("area, kept", [(1000, False), (1000.5, True)])
def test_area_rule_is_torchvisions(area, kept):
    assert has_valid_annotation([{"area": area - 400}, {"area": 400}]) is kept
    assert has_valid_annotation([]) is False


@pytest.mark.parametrize(
    "segmentation, why",
    [
        ({"counts": [2, 1, 1], "size": [4, 3]}, "add up to 4"),
        ({"counts": [12], "size": [3, 4]}, "not the image's"),
        ([], "not a list of coordinate lists"),
        ([[1, 2, "x", 4, 5, 6]], "not a list of coordinate lists"),
        ({"size": [4, 3]}, "neither polygons nor an RLE"),
    ],
)  # fmt: skip
def test_bad_segmentations_are_named(segmentation, why):
    with pytest.raises(CocoFormatError, match=rf"annotation 42: .*{why}"):
        instance_mask(segmentation, 4, 3, "annotation 42")


# --- bad input -----------------------------------------------------------------
def write_instances(tmp_path, instances) -> object:
    path = tmp_path / "annotations_trainval2017.zip"
    write_zip(path, {INSTANCES_MEMBER: json.dumps(instances).encode()})
    return path


def assert_nothing_written(out):
    for path in (out.images, out.labels, out.list):
        assert not path.exists()
    parent = out.images.parent
    assert not parent.exists() or not [p for p in parent.iterdir() if p.name.startswith(".")]


def test_missing_key_names_file_and_key(coco, tmp_path):
    broken = {k: v for k, v in coco.json.items() if k != "annotations"}
    out = outputs(tmp_path / "out")
    with pytest.raises(CocoFormatError, match=r"instances_val2017\.json: has no 'annotations'"):
        convert_coco.convert(
            coco.images, write_instances(tmp_path, broken), out.images, out.labels, out.list
        )
    assert_nothing_written(out)
    path = tmp_path / "instances_val2017.json"
    path.write_text(json.dumps({k: v for k, v in coco.json.items() if k != "categories"}))
    with pytest.raises(CocoFormatError, match=rf"{path}: has no 'categories'"):
        load_instances(path)


def test_unknown_category_names_annotation_and_category(coco, tmp_path):
    broken = json.loads(json.dumps(coco.json))
    annotation = broken["annotations"][5]
    annotation["category_id"] = 12  # an id COCO skips: no category has it
    out = outputs(tmp_path / "out")
    match = rf"instances_val2017\.json: annotation {annotation['id']}: category_id 12 is not in"
    with pytest.raises(CocoFormatError, match=match):
        convert_coco.convert(
            coco.images, write_instances(tmp_path, broken), out.images, out.labels, out.list
        )
    assert_nothing_written(out)


def test_unknown_image_and_renamed_category_are_named(coco):
    broken = json.loads(json.dumps(coco.json))
    broken["annotations"][0]["image_id"] = 1
    with pytest.raises(CocoFormatError, match=r"x\.json: annotation \d+: image_id 1 is not in"):
        parse_instances(broken, "x.json")
    broken = json.loads(json.dumps(coco.json))
    next(c for c in broken["categories"] if c["id"] == 63)["name"] = "sofa"
    with pytest.raises(CocoFormatError, match=r"x\.json: category 63 is 'sofa', COCO's is 'couch'"):
        parse_instances(broken, "x.json")


def test_missing_member_names_archive_and_member(coco, converted, tmp_path):
    with zipfile.ZipFile(coco.images) as archive:
        files = {name: archive.read(name) for name in archive.namelist() if not name.endswith("/")}
    gone = f"val2017/{converted.ids[3]}.jpg"
    del files[gone]
    images = tmp_path / "val2017.zip"
    write_zip(images, files)
    out = outputs(tmp_path / "out")
    with pytest.raises(ArchiveError, match=rf"{images}: has no member {gone}"):
        convert_coco.convert(images, coco.annotations, out.images, out.labels, out.list)
    assert_nothing_written(out)


def test_not_a_zip_is_named(coco, tmp_path):
    fake = tmp_path / "val2017.zip"
    fake.write_bytes(b"<html>503 Service Unavailable</html>")
    out = outputs(tmp_path / "out")
    with pytest.raises(ArchiveError, match=rf"{fake}: is not a readable zip"):
        convert_coco.convert(fake, coco.annotations, out.images, out.labels, out.list)
    assert_nothing_written(out)


def test_unexpected_kept_count_stops_before_writing(coco, tmp_path):
    out = outputs(tmp_path / "out")
    with pytest.raises(
        ArchiveError, match=r"keeps 26 of its 30 images, but the official val2017 gives 25"
    ):
        convert_coco.convert(coco.images, coco.annotations, out.images, out.labels, out.list, 25)
    assert_nothing_written(out)


# --- the rule's script ------------------------------------------------------------
@pytest.fixture
def run_main(monkeypatch):
    """Call ``convert_coco.main``; undo what its start_log does to stderr and logging."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    monkeypatch.setattr(sys, "stderr", sys.stderr)
    original = sys.stderr
    yield convert_coco.main
    for handler in root.handlers[:]:
        if handler not in handlers:
            root.removeHandler(handler)
    for handler in handlers:
        if handler not in root.handlers:
            root.addHandler(handler)
    root.setLevel(level)
    if sys.stderr is not original:
        sys.stderr.close()


def fake_snakemake(coco, root, md5_images=None, md5_annotations=None, expected=None):
    out = outputs(root / "coco")
    params = SimpleNamespace(
        md5_images=md5_images,
        md5_annotations=md5_annotations,
        md5_keys=KEYS,
        expected_images=expected,
        code="test",
    )
    snakemake = SimpleNamespace(
        input=SimpleNamespace(images=str(coco.images), annotations=str(coco.annotations)),
        output=SimpleNamespace(images=str(out.images), labels=str(out.labels), list=str(out.list)),
        params=params,
        log=[str(root / "convert_coco.log")],
        threads=1,
    )
    return snakemake, out


def test_main_writes_the_three_outputs(coco, tmp_path, run_main):
    snakemake, out = fake_snakemake(
        coco,
        tmp_path,
        coco.md5s[IMAGES_ARCHIVE_NAME],
        coco.md5s[ANNOTATIONS_ARCHIVE_NAME],
        expected=1,
    )  # the expected count applies to the official archives only: not checked here
    run_main(snakemake)
    ids = out.list.read_text().split()
    assert len(ids) == 26 and ids == sorted(ids)
    assert sorted(p.stem for p in out.images.glob("*.jpg")) == ids
    assert sorted(p.stem for p in out.labels.glob("*.png")) == ids
    with (
        Image.open(out.labels / f"{ids[0]}.png") as label,
        Image.open(out.images / f"{ids[0]}.jpg") as jpeg,
    ):
        assert label.mode == "L" and label.size == jpeg.size
    log = (tmp_path / "convert_coco.log").read_text()
    assert "30 images in the JSON (67 annotations): kept 26" in log
    assert "(1 of them crowd)" in log and "verified" in log


def test_wrong_md5_names_the_key_and_writes_nothing(coco, tmp_path, run_main):
    snakemake, out = fake_snakemake(coco, tmp_path, md5_annotations="0" * 32)
    with pytest.raises(ArchiveError, match=r"annotations_trainval2017_mini\.zip: md5 is \w+, but "
                       r"data\.coco_annotations\.md5 says 0{32}"):  # fmt: skip
        run_main(snakemake)
    assert not (tmp_path / "coco").exists()


def test_jpeg_of_another_size_is_named(coco, converted, tmp_path):
    with zipfile.ZipFile(coco.images) as archive:
        files = {name: archive.read(name) for name in archive.namelist() if not name.endswith("/")}
    height, width = coco.size[int(converted.ids[0])]
    name = f"val2017/{converted.ids[0]}.jpg"
    buffer = io.BytesIO()
    Image.new("RGB", (width + 1, height)).save(buffer, format="JPEG")
    files[name] = buffer.getvalue()
    images = tmp_path / "val2017.zip"
    write_zip(images, files)
    out = outputs(tmp_path / "out")
    with pytest.raises(ArchiveError, match=rf"member {name} is {width + 1}x{height}, but"):
        convert_coco.convert(images, coco.annotations, out.images, out.labels, out.list)
    assert_nothing_written(out)
