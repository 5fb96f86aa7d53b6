"""Write a small COCO 2017 val image zip and annotations zip in the exact real formats.

The two archives stand in for ``val2017.zip`` and
``annotations_trainval2017.zip`` wherever the real ones cannot be downloaded
(CI, laptops, tests).  They keep every detail the COCO conversion reads:

* images: ``val2017/<12-digit id>.jpg``, JPEGs of the sizes the annotations give;
* annotations: ``annotations/instances_val2017.json`` with COCO's fields
  (``info``, ``licenses``, ``images`` with ``file_name``/``height``/``width``/``id``,
  ``annotations`` with ``id``/``image_id``/``category_id``/``segmentation``/
  ``area``/``bbox``/``iscrowd``, and all 80 ``categories`` under their real ids,
  names and supercategories), compact JSON as COCO writes it.  (The real zip
  also holds the train, captions and keypoints files, which nothing here reads.)
* the cases the conversion must handle: polygon masks (one of two parts),
  uncompressed RLE masks (the one ``iscrowd: 1`` annotation, as COCO stores
  crowds, and one ordinary object), overlapping instances of different and of
  the same class, objects of categories VOC does not have, images with no VOC
  object (one with no annotation at all), and one image whose VOC objects'
  areas sum to <= 1000, which the conversion drops.

The scenes reuse the mini VOC classes' colours and stripe textures
(``tools/make_mini_voc.py``), so a model trained on the mini VOC can find the
objects, but in a shifted style, as real COCO photos differ from VOC's:
brighter textured backgrounds, other image sizes, smaller objects of more
varied shapes, stripes of another scale, a colour cast per image and lower
JPEG quality.  A model trained on the mini VOC should score lower here.

The output is byte-for-byte deterministic for a given seed (fixed zip
timestamps and attributes, sorted members, fixed JPEG settings), so a config
can carry the archives' md5 sums.
"""

import argparse
import io
import json
import os
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from pycocotools import mask as coco_mask

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
from common.coco import CATEGORIES, INSTANCES_MEMBER, IMAGES_DIR, VOC_FROM_COCO  # noqa: E402
from common.jobs import md5sum  # noqa: E402
from make_mini_voc import class_colours  # noqa: E402

IMAGES_ARCHIVE_NAME = "val2017_mini.zip"
ANNOTATIONS_ARCHIVE_NAME = "annotations_trainval2017_mini.zip"
ZIP_DATE_TIME = (2017, 9, 1, 0, 0, 0)  # COCO 2017's release; fixed so md5s are stable
ZIP_LEVEL = 6  # zip's default deflate level

# (height, width): COCO's mix of landscape, portrait and square, unlike the mini VOC's sizes
SIZES = ((120, 160), (160, 120), (132, 176), (176, 132), (144, 144))
# Categories VOC lacks, drawn (and annotated) but never labelled; colours no VOC class has.
OTHER_CATEGORIES = (22, 8, 47, 73, 15, 28)  # elephant, truck, cup, laptop, bench, umbrella
OTHER_COLOURS = np.array(
    [
        (240, 140, 40),
        (240, 140, 140),
        (240, 140, 240),
        (240, 240, 40),
        (240, 240, 140),
        (200, 200, 200),
    ],
    dtype=np.float32,
)
# What each image shows; the special cases once or twice, the rest ordinary scenes.
SPECIAL_KINDS = ("overlap", "overlap_same", "crowd", "rle", "two_parts", "no_voc", "no_voc",
                 "empty", "small")  # fmt: skip
IMAGE_COUNT = 30
LICENSES = (
    (1, "Attribution-NonCommercial-ShareAlike License", "http://creativecommons.org/licenses/by-nc-sa/2.0/"),
    (2, "Attribution-NonCommercial License", "http://creativecommons.org/licenses/by-nc/2.0/"),
    (3, "Attribution-NonCommercial-NoDerivs License", "http://creativecommons.org/licenses/by-nc-nd/2.0/"),
    (4, "Attribution License", "http://creativecommons.org/licenses/by/2.0/"),
    (5, "Attribution-ShareAlike License", "http://creativecommons.org/licenses/by-sa/2.0/"),
    (6, "Attribution-NoDerivs License", "http://creativecommons.org/licenses/by-nd/2.0/"),
    (7, "No known copyright restrictions", "http://flickr.com/commons/usage/"),
    (8, "United States Government Work", "http://www.usa.gov/copyright.shtml"),
)  # fmt: skip


@dataclass
class Scene:
    """One image being drawn: its pixels so far and its annotations."""

    image_id: int
    height: int
    width: int
    pixels: np.ndarray
    stripe_scale: float
    cast: np.ndarray  # the image's colour cast, added to every object colour
    annotations: list[dict] = field(default_factory=list)


# --- shapes -------------------------------------------------------------------
def _round(points: np.ndarray, height: int, width: int) -> list[float]:
    """Polygon points inside the image, as COCO's flat [x1, y1, x2, y2, ...] with 2 decimals."""
    points = np.stack([np.clip(points[:, 0], 0, width), np.clip(points[:, 1], 0, height)], axis=1)
    return [round(float(v), 2) for v in points.ravel()]


def shape_polygon(
    rng: np.random.Generator, centre: tuple[float, float], radii: tuple[float, float], kind: str
) -> np.ndarray:
    """The points of one object outline: an irregular blob, an ellipse, a rotated box,
    a wedge, a bar or an L."""
    cx, cy = centre
    rx, ry = radii
    if kind == "blob":
        n = int(rng.integers(8, 13))
        angles = np.sort(rng.uniform(0, 2 * np.pi, n))
        scale = rng.uniform(0.65, 1.0, n)
        unit = np.stack([np.cos(angles) * scale, np.sin(angles) * scale], axis=1)
    elif kind == "ellipse":
        angles = np.linspace(0, 2 * np.pi, 20, endpoint=False)
        unit = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    elif kind == "box":
        unit = np.array([(-1, -1), (1, -1), (1, 1), (-1, 1)], dtype=float)
    elif kind == "wedge":
        unit = np.array([(0, -1), (1, 0.9), (-1, 0.9)], dtype=float)
    elif kind == "bar":
        unit = np.array([(-1, -0.3), (1, -0.3), (1, 0.3), (-1, 0.3)], dtype=float)
    else:  # "L"
        unit = np.array([(-1, -1), (-0.2, -1), (-0.2, 0.3), (1, 0.3), (1, 1), (-1, 1)], dtype=float)
    theta = rng.uniform(0, np.pi) if kind != "ellipse" else rng.uniform(0, np.pi / 2)
    rotation = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    return (unit * (rx, ry)) @ rotation.T + (cx, cy)


def polygon_area(flat: list[float]) -> float:
    """The shoelace area of a flat polygon (COCO's ``area`` of polygon annotations).

    Exact, in integer hundredths of the 2-decimal points: a floating-point dot
    product (BLAS) sums in a CPU-dependent order, and since such an area has five
    decimals, rounding it to four often meets a tie, so the bytes of the archive
    (and the md5 in config/demo.yaml) would depend on the machine."""
    x = [round(v * 100) for v in flat[0::2]]
    y = [round(v * 100) for v in flat[1::2]]
    twice = sum(x[i] * y[i - 1] - y[i] * x[i - 1] for i in range(len(x)))
    return abs(twice) / 20000


def polygons_mask(polygons: list[list[float]], height: int, width: int) -> np.ndarray:
    """The union of the polygons' pycocotools masks: what the conversion will decode."""
    return coco_mask.decode(coco_mask.frPyObjects(polygons, height, width)).any(axis=2)


def rle_counts(mask: np.ndarray) -> list[int]:
    """COCO's uncompressed RLE counts: run lengths in column-major order, zeros first."""
    flat = np.asarray(mask, dtype=np.uint8).ravel(order="F")
    changes = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], changes, [flat.size]])
    runs = np.diff(bounds).tolist()
    return ([0] + runs) if flat.size and flat[0] == 1 else runs


# --- drawing --------------------------------------------------------------------
def background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A brighter, textured field with a tint: unlike the mini VOC's smooth grey."""
    base = class_colours()[0] * rng.uniform(1.3, 1.6) + rng.uniform(-15, 15, size=3)
    coarse = rng.integers(0, 256, size=(4, 5), dtype=np.uint8)
    blotches = np.asarray(
        Image.fromarray(coarse).resize((width, height), Image.Resampling.BILINEAR),
        dtype=np.float32,
    )
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    phase = rng.uniform(0, 2 * np.pi)
    weave = 8 * np.sin(xx / 3.1 + phase) * np.sin(yy / 2.7)
    return base + (0.25 * (blotches - 128) + weave)[..., None]


def paint(scene: Scene, mask: np.ndarray, colour: np.ndarray, texture: np.ndarray) -> None:
    scene.pixels[mask] = colour + scene.cast + texture[mask][:, None]


def stripes(scene: Scene, voc_class: int) -> np.ndarray:
    """The class's stripe texture of the mini VOC (angle and period per class), rescaled."""
    yy, xx = np.mgrid[0 : scene.height, 0 : scene.width].astype(np.float32)
    angle = np.pi * voc_class / 20.0
    period = (4.0 + (voc_class % 5) * 2.0) * scene.stripe_scale
    # float32 scalars, so that numpy 2 computes in float32 as numpy 1 did (same bytes)
    cos, sin = np.float32(np.cos(angle)), np.float32(np.sin(angle))
    return 26 * np.sin(2 * np.pi * (xx * cos + yy * sin) / period)


def checks(scene: Scene, cell: int) -> np.ndarray:
    yy, xx = np.mgrid[0 : scene.height, 0 : scene.width]
    return 25.0 * (((yy // cell) + (xx // cell)) % 2 * 2 - 1)


def add_annotation(
    scene: Scene, rng: np.random.Generator, category_id: int, segmentation, iscrowd: int = 0
) -> None:
    """Record one annotation as COCO does (area and bbox from the polygons, or from the RLE)."""
    if isinstance(segmentation, list):
        area = round(sum(polygon_area(part) for part in segmentation), 4)
        xs = [v for part in segmentation for v in part[0::2]]
        ys = [v for part in segmentation for v in part[1::2]]
        bbox = [min(xs), min(ys), round(max(xs) - min(xs), 2), round(max(ys) - min(ys), 2)]
    else:
        rle = coco_mask.frPyObjects(segmentation, scene.height, scene.width)
        area = int(coco_mask.area(rle))
        bbox = [float(v) for v in coco_mask.toBbox(rle)]
    ann_id = 900100000000 + scene.image_id if iscrowd else int(rng.integers(100_000, 2_300_000))
    scene.annotations.append(
        {
            "segmentation": segmentation,
            "area": area,
            "iscrowd": iscrowd,
            "image_id": scene.image_id,
            "bbox": bbox,
            "category_id": category_id,
            "id": ann_id,
        }
    )


def place(rng: np.random.Generator, scene: Scene, low: float, high: float) -> tuple[tuple, tuple]:
    """A centre and radii for an object of ``low``-``high`` of the image's size."""
    ry = scene.height * rng.uniform(low, high) / 2
    rx = scene.width * rng.uniform(low, high) / 2
    cx = rng.uniform(0.6 * rx, scene.width - 0.6 * rx)
    cy = rng.uniform(0.6 * ry, scene.height - 0.6 * ry)
    return (cx, cy), (rx, ry)


def draw_voc(
    rng: np.random.Generator, scene: Scene, voc_class: int, polygons: list[np.ndarray],
    as_rle: bool = False, iscrowd: int = 0,
) -> np.ndarray:  # fmt: skip
    """Draw and annotate one object of a VOC class; return its mask."""
    flat = [_round(points, scene.height, scene.width) for points in polygons]
    mask = polygons_mask(flat, scene.height, scene.width)
    colour = class_colours()[voc_class] * rng.uniform(0.85, 1.1)
    paint(scene, mask, colour, stripes(scene, voc_class))
    segmentation = (
        {"counts": rle_counts(mask), "size": [scene.height, scene.width]} if as_rle else flat
    )
    add_annotation(scene, rng, VOC_FROM_COCO[voc_class], segmentation, iscrowd)
    return mask


def draw_other(rng: np.random.Generator, scene: Scene, points: np.ndarray | None = None) -> None:
    """Draw and annotate an object of a category VOC does not have."""
    which = int(rng.integers(len(OTHER_CATEGORIES)))
    if points is None:
        centre, radii = place(rng, scene, 0.25, 0.5)
        points = shape_polygon(rng, centre, radii, str(rng.choice(["box", "blob", "bar"])))
    flat = [_round(points, scene.height, scene.width)]
    mask = polygons_mask(flat, scene.height, scene.width)
    paint(scene, mask, OTHER_COLOURS[which], checks(scene, int(rng.integers(3, 6))))
    add_annotation(scene, rng, OTHER_CATEGORIES[which], flat)


def voc_area(scene: Scene) -> float:
    voc_ids = set(VOC_FROM_COCO[1:])
    return sum(a["area"] for a in scene.annotations if a["category_id"] in voc_ids)


def draw_scene(rng: np.random.Generator, scene: Scene, kind: str, classes: list[int]) -> None:
    """Draw the objects of one image of the given ``kind`` (see SPECIAL_KINDS)."""
    shapes = ["blob", "ellipse", "box", "wedge", "bar", "L"]
    if kind in ("overlap", "overlap_same"):
        (cx, cy), (rx, ry) = place(rng, scene, 0.35, 0.45)
        cx = min(cx, scene.width - 1.5 * rx)
        first = draw_voc(
            rng, scene, classes[0], [shape_polygon(rng, (cx, cy), (rx, ry), "ellipse")]
        )
        second_class = classes[0] if kind == "overlap_same" else classes[1]
        centre = (cx + 0.9 * rx, cy + 0.3 * ry)
        second = draw_voc(
            rng, scene, second_class, [shape_polygon(rng, centre, (rx, ry), "ellipse")]
        )
        assert (first & second).sum() > 30, "the overlap scene must overlap"
    elif kind == "crowd":
        # A crowd of small people, one RLE annotation with iscrowd 1, plus one object.
        crowd = np.zeros((scene.height, scene.width), bool)
        x0 = rng.uniform(0.1, 0.3) * scene.width
        for k in range(5):
            centre = (x0 + k * scene.width * 0.1, scene.height * rng.uniform(0.2, 0.35))
            points = shape_polygon(
                rng, centre, (scene.width * 0.045, scene.height * 0.1), "ellipse"
            )
            crowd |= polygons_mask(
                [_round(points, scene.height, scene.width)], scene.height, scene.width
            )
        paint(scene, crowd, class_colours()[15], stripes(scene, 15))
        segmentation = {"counts": rle_counts(crowd), "size": [scene.height, scene.width]}
        add_annotation(scene, rng, VOC_FROM_COCO[15], segmentation, iscrowd=1)
        centre = (scene.width * rng.uniform(0.3, 0.7), scene.height * 0.7)
        radii = (scene.width * 0.2, scene.height * 0.2)
        draw_voc(rng, scene, classes[0], [shape_polygon(rng, centre, radii, "blob")])
    elif kind == "rle":
        centre, radii = place(rng, scene, 0.4, 0.55)
        draw_voc(rng, scene, classes[0], [shape_polygon(rng, centre, radii, "blob")], as_rle=True)
    elif kind == "two_parts":
        # An object cut in two by a pole in front of it: one annotation, two polygons.
        cx, cy = scene.width / 2, scene.height / 2
        rx, ry, gap = scene.width * 0.3, scene.height * 0.25, scene.width * 0.08
        left = np.linspace(np.pi / 2, 3 * np.pi / 2, 10)
        right = np.linspace(-np.pi / 2, np.pi / 2, 10)
        parts = [
            np.stack([cx - gap / 2 + rx * np.cos(left), cy + ry * np.sin(left)], axis=1),
            np.stack([cx + gap / 2 + rx * np.cos(right), cy + ry * np.sin(right)], axis=1),
        ]
        draw_voc(rng, scene, classes[0], parts)
        pole = np.array([(cx - gap / 2, 2), (cx + gap / 2, 2), (cx + gap / 2, scene.height - 2),
                         (cx - gap / 2, scene.height - 2)])  # fmt: skip
        draw_other(rng, scene, pole)
    elif kind == "no_voc":
        for _ in range(int(rng.integers(1, 3))):
            draw_other(rng, scene)
    elif kind == "small":
        # Two small VOC objects (areas far below 1000 together) next to a large other object.
        draw_other(rng, scene)
        for k, voc_class in enumerate(classes[:2]):
            centre = (scene.width * (0.2 + 0.6 * k), scene.height * 0.8)
            draw_voc(rng, scene, voc_class, [shape_polygon(rng, centre, (7, 6), "ellipse")])
        assert 0 < voc_area(scene) <= 1000
    elif kind == "normal":
        # Other objects behind, then 1-3 VOC objects, each large enough that the image is
        # kept and mostly clear of the others (COCO's instances seldom overlap much).
        if rng.random() < 0.5:
            draw_other(rng, scene)
        occupied = np.zeros((scene.height, scene.width), bool)
        for voc_class in classes[: int(rng.integers(1, 4))]:
            for _ in range(30):
                centre, radii = place(rng, scene, 0.25, 0.55)
                points = shape_polygon(rng, centre, radii, str(rng.choice(shapes)))
                flat = _round(points, scene.height, scene.width)
                mask = polygons_mask([flat], scene.height, scene.width)
                if polygon_area(flat) > 1100 and (mask & occupied).sum() < 0.05 * mask.sum():
                    break
            occupied |= draw_voc(rng, scene, voc_class, [points])
        assert voc_area(scene) > 1000, "an ordinary scene must be kept"
    # kind == "empty": background only, no annotation (COCO has such images)


def assign_classes(rng: np.random.Generator, count: int) -> list[list[int]]:
    """Three distinct VOC classes per image, cycling so that every class appears often;
    a scene draws as many of them as it needs."""
    cycle: list[int] = []
    out = []
    for _ in range(count):
        picked: list[int] = []
        while len(picked) < 3:
            if not cycle:
                cycle = [int(c) for c in rng.permutation(np.arange(1, 21))]
            cls = cycle.pop()
            if cls not in picked:
                picked.append(cls)
        out.append(picked)
    return out


def jpeg_bytes(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=85)  # uint8 HxWx3: RGB
    return buffer.getvalue()


def build_dataset(seed: int = 0) -> tuple[dict, dict[str, bytes]]:
    """The instances JSON (as a dict) and the images (member name -> JPEG bytes)."""
    rng = np.random.default_rng(seed)
    ids = sorted(int(i) for i in rng.choice(np.arange(1, 581930), IMAGE_COUNT, replace=False))
    kinds = list(SPECIAL_KINDS) + ["normal"] * (IMAGE_COUNT - len(SPECIAL_KINDS))
    kinds = [kinds[i] for i in rng.permutation(IMAGE_COUNT)]
    classes = assign_classes(rng, IMAGE_COUNT)
    images, annotations, jpegs = [], [], {}
    for image_id, kind, picked in zip(ids, kinds, classes):
        height, width = SIZES[int(rng.integers(len(SIZES)))]
        scene = Scene(
            image_id, height, width, background(rng, height, width),
            stripe_scale=float(rng.uniform(0.8, 1.3)), cast=rng.uniform(-20, 20, size=3),
        )  # fmt: skip
        draw_scene(rng, scene, kind, picked)
        pixels = scene.pixels * rng.uniform(0.9, 1.1, size=3) + rng.normal(0, 8, scene.pixels.shape)
        file_name = f"{image_id:012d}.jpg"
        jpegs[f"{IMAGES_DIR}/{file_name}"] = jpeg_bytes(np.clip(pixels, 0, 255).astype(np.uint8))
        images.append(
            {
                "license": int(rng.integers(1, 9)),
                "file_name": file_name,
                "coco_url": f"http://images.cocodataset.org/{IMAGES_DIR}/{file_name}",
                "height": height,
                "width": width,
                "date_captured": f"2013-11-{int(rng.integers(10, 25))} 1{int(rng.integers(10))}:"
                f"{int(rng.integers(10, 60))}:{int(rng.integers(10, 60))}",
                "flickr_url": f"http://farm{int(rng.integers(1, 10))}.staticflickr.com/mini/{file_name}",
                "id": image_id,
            }
        )
        annotations.extend(scene.annotations)
    # COCO's files are in no particular order; the conversion must not rely on one.
    images = [images[i] for i in rng.permutation(len(images))]
    instances = {
        "info": {
            "description": "COCO 2017 Dataset (mini, generated by tools/make_mini_coco.py)",
            "url": "http://cocodataset.org",
            "version": "1.0",
            "year": 2017,
            "contributor": "COCO Consortium",
            "date_created": "2017/09/01",
        },
        "licenses": [{"url": url, "id": i, "name": name} for i, name, url in LICENSES],
        "images": images,
        "annotations": annotations,
        "categories": [{"supercategory": s, "id": i, "name": n} for i, n, s in CATEGORIES],
    }
    return instances, jpegs


def _zipinfo(name: str, directory: bool = False) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=ZIP_DATE_TIME)
    info.create_system = 3  # Unix, whatever the platform building it
    info.external_attr = ((0o40755 << 16) | 0x10) if directory else (0o100644 << 16)
    info.compress_type = zipfile.ZIP_STORED if directory else zipfile.ZIP_DEFLATED
    return info


def write_zip(path: Path, files: dict[str, bytes]) -> None:
    """Write ``files`` (member name -> bytes) with their folders, deterministically, atomically."""
    directories = set()
    for name in files:
        parts = name.split("/")[:-1]
        directories.update("/".join(parts[: i + 1]) for i in range(len(parts)))
    tmp = path.with_name(path.name + ".tmp")
    with zipfile.ZipFile(tmp, "w") as archive:
        for name in sorted(directories):
            archive.writestr(_zipinfo(name + "/", directory=True), b"")
        for name in sorted(files):
            archive.writestr(_zipinfo(name), files[name], compresslevel=ZIP_LEVEL)
    os.replace(tmp, path)


def build_coco_archives(out_dir: Path, seed: int = 0) -> dict[str, str]:
    """Write both mini archives into ``out_dir``; return {file name: md5}."""
    instances, jpegs = build_dataset(seed)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_zip(out_dir / IMAGES_ARCHIVE_NAME, jpegs)
    text = json.dumps(instances, separators=(",", ":")).encode()
    write_zip(out_dir / ANNOTATIONS_ARCHIVE_NAME, {INSTANCES_MEMBER: text})
    return {
        name: md5sum(out_dir / name) for name in (IMAGES_ARCHIVE_NAME, ANNOTATIONS_ARCHIVE_NAME)
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("resources/demo"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    for name, md5 in build_coco_archives(args.out, args.seed).items():
        print(f"{md5}  {args.out / name}")


if __name__ == "__main__":
    main()
