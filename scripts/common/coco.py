"""COCO 2017 val as a PASCAL VOC segmentation set: the archives' facts and the conversion.

The conversion is torchvision's (``references/segmentation/coco_utils.py``),
which turns COCO instance annotations into VOC-style class maps:

* ``FilterAndRemapCocoCategories``: only annotations of the 20 COCO categories
  that VOC has are kept (:data:`VOC_FROM_COCO`), each remapped to its VOC index;
  all other categories become background.
* ``convert_coco_poly_to_mask``: every annotation is decoded with pycocotools
  (``frPyObjects`` then ``decode``); the mask of a polygon annotation is the
  union of its parts.  Crowd annotations (``iscrowd: 1``, stored as
  uncompressed RLE) are kept like the others.
* ``ConvertCocoPolysToMask``: the label is the maximum over instances of
  mask x class; a pixel covered by more than one instance becomes 255, so the
  evaluation ignores it.
* ``_coco_remove_images_without_annotations``: an image is kept only if it has
  a VOC-category annotation and the JSON ``area`` of those annotations (crowd
  ones included) sums to more than 1000 (:data:`MIN_AREA`).  torchvision
  applies this rule to its train split only; this study applies it to
  val2017 as well, so every image it evaluates has VOC objects to score.

Two deviations, both on inputs torchvision cannot read: an RLE whose
``counts`` is a compressed string (COCO's result format; the instances files
store RLE uncompressed) is decoded as pycocotools' ``annToRLE`` would, and
malformed segmentations raise :class:`CocoFormatError` naming the file and
the annotation instead of crashing inside pycocotools (an uncompressed RLE
whose counts do not add up to height x width would make pycocotools write
past its buffer).

pycocotools is imported only where masks are decoded, so the workflow can
import the archive facts while planning without it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from common.voc import CLASSES, IGNORE_INDEX

# --- the published archives -------------------------------------------------
IMAGES_ARCHIVE = "val2017.zip"
IMAGES_URL = "http://images.cocodataset.org/zips/val2017.zip"
IMAGES_MD5 = "442b8da7639aecaf257c1dceb8ba8c80"
ANNOTATIONS_ARCHIVE = "annotations_trainval2017.zip"
ANNOTATIONS_URL = "http://images.cocodataset.org/annotations/annotations_trainval2017.zip"
ANNOTATIONS_MD5 = "f4bbac642086de4f52a3fdda2de5fa2c"
IMAGES_DIR = "val2017"  # the images archive's members are val2017/<12-digit id>.jpg
INSTANCES_MEMBER = "annotations/instances_val2017.json"
VAL_IMAGES = 5000  # images in instances_val2017.json (and in val2017.zip)

MIN_AREA = 1000  # torchvision's _has_valid_annotation: the area sum must exceed this

# --- categories -------------------------------------------------------------
# Index = VOC class index, value = COCO category id (torchvision's CAT_LIST);
# 0 (background) is no COCO category.
VOC_FROM_COCO = (0, 5, 2, 16, 9, 44, 6, 3, 17, 62, 21, 67, 18, 19, 4, 1, 64, 20, 63, 7, 72)
COCO_TO_VOC = {coco: voc for voc, coco in enumerate(VOC_FROM_COCO) if voc}

# The 80 categories of the 2017 instances files: (id, name, supercategory).
CATEGORIES = (
    (1, "person", "person"), (2, "bicycle", "vehicle"), (3, "car", "vehicle"),
    (4, "motorcycle", "vehicle"), (5, "airplane", "vehicle"), (6, "bus", "vehicle"),
    (7, "train", "vehicle"), (8, "truck", "vehicle"), (9, "boat", "vehicle"),
    (10, "traffic light", "outdoor"), (11, "fire hydrant", "outdoor"), (13, "stop sign", "outdoor"),
    (14, "parking meter", "outdoor"), (15, "bench", "outdoor"), (16, "bird", "animal"),
    (17, "cat", "animal"), (18, "dog", "animal"), (19, "horse", "animal"), (20, "sheep", "animal"),
    (21, "cow", "animal"), (22, "elephant", "animal"), (23, "bear", "animal"), (24, "zebra", "animal"),
    (25, "giraffe", "animal"), (27, "backpack", "accessory"), (28, "umbrella", "accessory"),
    (31, "handbag", "accessory"), (32, "tie", "accessory"), (33, "suitcase", "accessory"),
    (34, "frisbee", "sports"), (35, "skis", "sports"), (36, "snowboard", "sports"),
    (37, "sports ball", "sports"), (38, "kite", "sports"), (39, "baseball bat", "sports"),
    (40, "baseball glove", "sports"), (41, "skateboard", "sports"), (42, "surfboard", "sports"),
    (43, "tennis racket", "sports"), (44, "bottle", "kitchen"), (46, "wine glass", "kitchen"),
    (47, "cup", "kitchen"), (48, "fork", "kitchen"), (49, "knife", "kitchen"), (50, "spoon", "kitchen"),
    (51, "bowl", "kitchen"), (52, "banana", "food"), (53, "apple", "food"), (54, "sandwich", "food"),
    (55, "orange", "food"), (56, "broccoli", "food"), (57, "carrot", "food"), (58, "hot dog", "food"),
    (59, "pizza", "food"), (60, "donut", "food"), (61, "cake", "food"), (62, "chair", "furniture"),
    (63, "couch", "furniture"), (64, "potted plant", "furniture"), (65, "bed", "furniture"),
    (67, "dining table", "furniture"), (70, "toilet", "furniture"), (72, "tv", "electronic"),
    (73, "laptop", "electronic"), (74, "mouse", "electronic"), (75, "remote", "electronic"),
    (76, "keyboard", "electronic"), (77, "cell phone", "electronic"), (78, "microwave", "appliance"),
    (79, "oven", "appliance"), (80, "toaster", "appliance"), (81, "sink", "appliance"),
    (82, "refrigerator", "appliance"), (84, "book", "indoor"), (85, "clock", "indoor"),
    (86, "vase", "indoor"), (87, "scissors", "indoor"), (88, "teddy bear", "indoor"),
    (89, "hair drier", "indoor"), (90, "toothbrush", "indoor"),
)  # fmt: skip
COCO_NAMES = {cat_id: name for cat_id, name, _ in CATEGORIES}

ANNOTATION_KEYS = ("id", "image_id", "category_id", "segmentation", "area", "iscrowd")
IMAGE_KEYS = ("id", "file_name", "height", "width")

assert len(CATEGORIES) == 80 and len(VOC_FROM_COCO) == len(CLASSES)


class CocoFormatError(ValueError):
    """An instances file the conversion cannot use; the message names the file."""


@dataclass(frozen=True)
class CocoImage:
    id: int
    file_name: str
    height: int
    width: int

    @property
    def stem(self) -> str:
        """The id VOC-style lists use: the file name without ``.jpg`` (12 digits)."""
        return self.file_name.removesuffix(".jpg")

    @property
    def member(self) -> str:
        return f"{IMAGES_DIR}/{self.file_name}"


@dataclass
class Instances:
    """A checked instances file: images in file order, annotations by image id."""

    source: str
    images: list[CocoImage]
    annotations: dict[int, list[dict]]
    categories: dict[int, str]
    annotation_count: int


@dataclass
class ConversionCounts:
    """What the conversion did, for the log."""

    images: int = 0  # images in the JSON
    annotations: int = 0  # annotations in the JSON
    kept: int = 0
    dropped_no_voc: int = 0  # no annotation of a VOC category
    dropped_small: int = 0  # VOC annotations whose areas sum to <= MIN_AREA
    annotations_used: int = 0  # VOC-category annotations of the kept images
    crowd_used: int = 0  # of which iscrowd = 1
    overlap_pixels: int = 0  # pixels set to 255 because instances overlap

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


# --- reading and checking the instances file --------------------------------
def _int(value, where: str, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise CocoFormatError(f"{where}: {key} is {value!r}, not an integer")
    return value


def _check_categories(raw: list, source: str) -> dict[int, str]:
    categories: dict[int, str] = {}
    for index, category in enumerate(raw):
        if not isinstance(category, dict) or "id" not in category or "name" not in category:
            raise CocoFormatError(f"{source}: categories[{index}] has no 'id' or no 'name'")
        cat_id = _int(category["id"], f"{source}: categories[{index}]", "id")
        if cat_id in categories:
            raise CocoFormatError(f"{source}: category id {cat_id} appears twice")
        categories[cat_id] = str(category["name"])
    for voc, coco in enumerate(VOC_FROM_COCO[1:], start=1):
        expected = COCO_NAMES[coco]
        if coco not in categories:
            raise CocoFormatError(
                f"{source}: has no category {coco} ({expected!r}, VOC's {CLASSES[voc]!r}); "
                "is it a COCO 2017 instances file?"
            )
        if categories[coco] != expected:
            raise CocoFormatError(
                f"{source}: category {coco} is {categories[coco]!r}, COCO's is {expected!r} "
                f"(VOC's {CLASSES[voc]!r}); is it a COCO 2017 instances file?"
            )
    return categories


def _check_image(raw, index: int, source: str) -> CocoImage:
    if not isinstance(raw, dict):
        raise CocoFormatError(f"{source}: images[{index}] is not an object")
    for key in IMAGE_KEYS:
        if key not in raw:
            raise CocoFormatError(f"{source}: images[{index}] has no '{key}'")
    image_id = _int(raw["id"], f"{source}: images[{index}]", "id")
    where = f"{source}: image {image_id}"
    height, width = _int(raw["height"], where, "height"), _int(raw["width"], where, "width")
    if height < 1 or width < 1:
        raise CocoFormatError(f"{where}: size {height}x{width}")
    file_name = raw["file_name"]
    # Output files are named after it: only the plain <12-digit id>.jpg of COCO is accepted.
    if file_name != f"{image_id:012d}.jpg":
        raise CocoFormatError(f"{where}: file_name is {file_name!r}, expected {image_id:012d}.jpg")
    return CocoImage(image_id, file_name, height, width)


def parse_instances(data, source: str) -> Instances:
    """Check a decoded instances JSON; ``source`` names the file in every error.

    It must have ``images``, ``annotations`` and ``categories``; the 20 VOC
    categories must be there under COCO's ids and names; every annotation must
    have the fields the conversion reads, a ``category_id`` among the file's
    categories and an ``image_id`` among its images.
    """
    if not isinstance(data, dict):
        raise CocoFormatError(f"{source}: is not a JSON object")
    for key in ("images", "annotations", "categories"):
        if key not in data:
            raise CocoFormatError(
                f"{source}: has no '{key}' (a COCO instances file has 'images', 'annotations' "
                "and 'categories')"
            )
        if not isinstance(data[key], list):
            raise CocoFormatError(f"{source}: '{key}' is not a list")
    categories = _check_categories(data["categories"], source)
    images = [_check_image(raw, index, source) for index, raw in enumerate(data["images"])]
    by_id: dict[int, list[dict]] = {}
    for image in images:
        if image.id in by_id:
            raise CocoFormatError(f"{source}: image id {image.id} appears twice")
        by_id[image.id] = []
    seen: set[int] = set()
    for index, annotation in enumerate(data["annotations"]):
        if not isinstance(annotation, dict):
            raise CocoFormatError(f"{source}: annotations[{index}] is not an object")
        for key in ANNOTATION_KEYS:
            if key not in annotation:
                name = annotation.get("id", f"[{index}]")
                raise CocoFormatError(f"{source}: annotation {name} has no '{key}'")
        ann_id = _int(annotation["id"], f"{source}: annotations[{index}]", "id")
        where = f"{source}: annotation {ann_id}"
        if ann_id in seen:
            raise CocoFormatError(f"{where}: the id appears twice")
        seen.add(ann_id)
        category_id = annotation["category_id"]
        if category_id not in categories:
            raise CocoFormatError(
                f"{where}: category_id {category_id!r} is not in the file's categories"
            )
        image_id = annotation["image_id"]
        if image_id not in by_id:
            raise CocoFormatError(f"{where}: image_id {image_id!r} is not in the file's images")
        area = annotation["area"]
        if isinstance(area, bool) or not isinstance(area, (int, float)) or area < 0:
            raise CocoFormatError(f"{where}: area is {area!r}, not a number >= 0")
        by_id[image_id].append(annotation)
    return Instances(source, images, by_id, categories, len(data["annotations"]))


def parse_instances_bytes(raw: bytes, source: str) -> Instances:
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CocoFormatError(f"{source}: is not valid JSON ({error})") from error
    return parse_instances(data, source)


def load_instances(path: Path) -> Instances:
    """Read and check an ``instances_*.json`` file (see :func:`parse_instances`)."""
    return parse_instances_bytes(Path(path).read_bytes(), str(path))


# --- selecting images (FilterAndRemapCocoCategories, _has_valid_annotation) --
def voc_annotations(annotations: list[dict]) -> list[tuple[int, dict]]:
    """(VOC index, annotation) of the VOC-category annotations, in file order."""
    return [
        (COCO_TO_VOC[a["category_id"]], a) for a in annotations if a["category_id"] in COCO_TO_VOC
    ]


def has_valid_annotation(annotations: list[dict]) -> bool:
    """torchvision's rule: some annotation, and their JSON ``area`` sums to > 1000."""
    return len(annotations) > 0 and sum(a["area"] for a in annotations) > MIN_AREA


def select_images(
    instances: Instances,
) -> tuple[list[tuple[CocoImage, list[tuple[int, dict]]]], ConversionCounts]:
    """The kept images, by id, each with its VOC annotations; and the counts so far."""
    counts = ConversionCounts(images=len(instances.images), annotations=instances.annotation_count)
    kept = []
    for image in sorted(instances.images, key=lambda image: image.id):
        voc = voc_annotations(instances.annotations[image.id])
        if not voc:
            counts.dropped_no_voc += 1
        elif not has_valid_annotation([a for _, a in voc]):
            counts.dropped_small += 1
        else:
            kept.append((image, voc))
            counts.kept += 1
            counts.annotations_used += len(voc)
            counts.crowd_used += sum(1 for _, a in voc if a["iscrowd"])
    return kept, counts


# --- masks (convert_coco_poly_to_mask) and labels (ConvertCocoPolysToMask) ---
def rle_string_counts(counts: str | bytes) -> list[int]:
    """The run lengths of a compressed COCO RLE string (pycocotools' ``rleFrString``)."""
    data = counts.encode("ascii") if isinstance(counts, str) else bytes(counts)
    runs: list[int] = []
    pos = 0
    while pos < len(data):
        value, shift, more = 0, 0, True
        while more:
            if pos >= len(data):
                raise ValueError("the string ends inside a number")
            c = data[pos] - 48
            value |= (c & 0x1F) << shift
            more = bool(c & 0x20)
            pos += 1
            shift += 5
            if not more and c & 0x10:
                value |= -1 << shift
        if len(runs) > 2:
            value += runs[-2]
        runs.append(value)
    return runs


def _rle_counts(segmentation: dict, height: int, width: int, where: str) -> list[int]:
    size = segmentation["size"]
    if size != [height, width]:
        raise CocoFormatError(f"{where}: RLE size {size!r} is not the image's [{height}, {width}]")
    counts = segmentation["counts"]
    if isinstance(counts, (str, bytes)):
        try:
            counts = rle_string_counts(counts)
        except ValueError as error:
            raise CocoFormatError(f"{where}: corrupt compressed RLE ({error})") from error
    if not isinstance(counts, list) or not all(
        isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in counts
    ):
        raise CocoFormatError(f"{where}: RLE counts are not a list of integers >= 0")
    if sum(counts) != height * width:
        raise CocoFormatError(
            f"{where}: RLE counts add up to {sum(counts)}, not {height} x {width} = {height * width}"
        )
    return counts


def instance_mask(segmentation, height: int, width: int, where: str = "annotation") -> np.ndarray:
    """The boolean HxW mask of one annotation's ``segmentation``, as torchvision decodes it.

    Polygons (a list of coordinate lists) go through ``frPyObjects`` as they
    are and the parts are united; an RLE (``{"counts", "size"}``, counts a list
    or a compressed string) is checked against the image size first.
    """
    from pycocotools import mask as coco_mask

    if isinstance(segmentation, list):
        if not segmentation or not all(
            isinstance(part, list)
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in part)
            for part in segmentation
        ):
            raise CocoFormatError(f"{where}: segmentation is not a list of coordinate lists")
        try:
            decoded = coco_mask.decode(coco_mask.frPyObjects(segmentation, height, width))
        except Exception as error:  # pycocotools raises bare Exceptions, TypeErrors, ...
            raise CocoFormatError(f"{where}: polygon cannot be decoded ({error})") from error
    elif isinstance(segmentation, dict) and "counts" in segmentation and "size" in segmentation:
        rle = {"counts": _rle_counts(segmentation, height, width, where), "size": [height, width]}
        decoded = coco_mask.decode(coco_mask.frPyObjects(rle, height, width))
    else:
        raise CocoFormatError(f"{where}: segmentation is neither polygons nor an RLE")
    if decoded.ndim == 3:
        decoded = decoded.any(axis=2)
    if decoded.shape != (height, width):
        raise CocoFormatError(f"{where}: mask is {decoded.shape}, the image ({height}, {width})")
    return decoded.astype(bool, copy=False)


def voc_label(
    image: CocoImage, annotations: list[tuple[int, dict]], source: str = "instances"
) -> tuple[np.ndarray, int]:
    """The uint8 HxW VOC label of one image and how many pixels overlap made 255.

    ``annotations`` are (VOC index, annotation) pairs, as :func:`select_images`
    gives them.  Like torchvision: the maximum over instances of mask x class,
    then 255 wherever two or more instances cover a pixel (whatever classes).
    """
    label = np.zeros((image.height, image.width), np.uint8)
    covered = np.zeros((image.height, image.width), np.uint16)
    for voc_index, annotation in annotations:
        where = f"{source}: annotation {annotation['id']} (image {image.id})"
        mask = instance_mask(annotation["segmentation"], image.height, image.width, where)
        np.maximum(label, mask.astype(np.uint8) * np.uint8(voc_index), out=label)
        covered += mask
    overlap = covered > 1
    label[overlap] = IGNORE_INDEX
    return label, int(np.count_nonzero(overlap))
