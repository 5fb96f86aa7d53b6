"""Write a tiny custom dataset in VOC layout: ``shapes_mini.tar.gz``.

The archive stands in for a user's own dataset declared for fine-tuning (CI,
laptops, tests).  It has the layout such a dataset must have:

* ``shapes/JPEGImages/<id>.jpg``: JPEG images of different sizes;
* ``shapes/SegmentationClass/<id>.png``: palette PNG labels (VOC's palette),
  class indices 0..3 and 255 on object borders, as VOC marks them;
* ``shapes/ImageSets/Segmentation/{train,val}.txt``: the id lists;
* ``shapes/classes.txt``: the class names, one a line, in index order.

Its classes are not VOC's (:data:`CLASSES`: background, disc, square,
triangle).  Images are learnable: each class has its own colour and stripe
texture plus noise, and every training image holds 1-3 shapes, so a small
network separates the classes within a few epochs.

The output is byte-for-byte deterministic for a given seed (fixed tar
metadata and gzip mtime 0, by ``tools/make_mini_voc.py``'s ``write_tar``), so
a config can carry the archive's md5 sum.
"""

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
from common.jobs import md5sum  # noqa: E402
from common.voc import IGNORE_INDEX, palette  # noqa: E402
from make_mini_voc import border_band, jpeg_bytes, list_bytes, png_bytes, write_tar  # noqa: E402

ARCHIVE_NAME = "shapes_mini.tar.gz"
ROOT = "shapes"
CLASSES = ("background", "disc", "square", "triangle")
TRAIN_IMAGES, VAL_IMAGES = 16, 8

# RGB colour of each class, and (angle in radians, period in pixels) of each shape's stripes.
COLOURS = np.array([(110, 110, 100), (220, 60, 50), (50, 190, 70), (60, 80, 220)], np.float32)
STRIPES = {1: (0.0, 4.0), 2: (np.pi / 2, 7.0), 3: (np.pi / 4, 10.0)}


def draw_shapes(rng: np.random.Generator, classes: list[int], height: int, width: int):
    """Return (RGB uint8 image, class map) with one shape per entry of ``classes``."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    phase = rng.uniform(0, 2 * np.pi, size=2)
    field = np.sin(xx / 23.0 + phase[0]) * np.cos(yy / 17.0 + phase[1])
    image = COLOURS[0] + 12 * field[..., None]  # smooth background, unlike any object
    label = np.zeros((height, width), np.uint8)
    for cls in classes:
        side = int(rng.integers(min(height, width) // 3, min(height, width) * 2 // 3))
        y0, x0 = int(rng.integers(0, height - side)), int(rng.integers(0, width - side))
        canvas = Image.new("L", (width, height), 0)
        draw = ImageDraw.Draw(canvas)
        box = [x0, y0, x0 + side, y0 + side]
        if CLASSES[cls] == "disc":
            draw.ellipse(box, fill=1)
        elif CLASSES[cls] == "square":
            draw.rectangle(box, fill=1)
        else:
            draw.polygon([(x0 + side // 2, y0), (x0, y0 + side), (x0 + side, y0 + side)], fill=1)
        mask = np.asarray(canvas, dtype=bool)
        angle, period = STRIPES[cls]
        stripes = 30 * np.sin(2 * np.pi * (xx * np.cos(angle) + yy * np.sin(angle)) / period)
        image[mask] = COLOURS[cls] + stripes[mask][:, None]
        label[mask] = cls
    image += rng.normal(0, 10, size=image.shape)
    return np.clip(image, 0, 255).astype(np.uint8), label


def pick_classes(rng: np.random.Generator, index: int) -> list[int]:
    """1-3 distinct shape classes; the first cycles so that every class appears in train."""
    first = 1 + index % (len(CLASSES) - 1)
    others = [int(c) for c in rng.permutation(np.arange(1, len(CLASSES))) if c != first]
    return [first] + others[: int(rng.integers(0, len(CLASSES) - 1))]


def build_custom_archive(out_dir: Path, seed: int = 0) -> dict[str, str]:
    """Write the shapes archive into ``out_dir``; return {file name: md5}."""
    rng = np.random.default_rng(seed)
    ids = [f"shape_{n:04d}" for n in range(TRAIN_IMAGES + VAL_IMAGES)]
    colours = palette()
    files: dict[str, bytes] = {}
    for index, image_id in enumerate(ids):
        height, width = int(rng.integers(64, 121)), int(rng.integers(64, 121))
        image, label = draw_shapes(rng, pick_classes(rng, index), height, width)
        label = np.where(border_band(label), IGNORE_INDEX, label).astype(np.uint8)
        files[f"{ROOT}/JPEGImages/{image_id}.jpg"] = jpeg_bytes(image)
        files[f"{ROOT}/SegmentationClass/{image_id}.png"] = png_bytes(label, colours)
    files[f"{ROOT}/ImageSets/Segmentation/train.txt"] = list_bytes(ids[:TRAIN_IMAGES])
    files[f"{ROOT}/ImageSets/Segmentation/val.txt"] = list_bytes(ids[TRAIN_IMAGES:])
    files[f"{ROOT}/classes.txt"] = list_bytes(list(CLASSES))

    out_dir.mkdir(parents=True, exist_ok=True)
    write_tar(out_dir / ARCHIVE_NAME, files, gzipped=True)
    return {ARCHIVE_NAME: md5sum(out_dir / ARCHIVE_NAME)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("resources/demo"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    for name, md5 in build_custom_archive(args.out, args.seed).items():
        print(f"{md5}  {args.out / name}")


if __name__ == "__main__":
    main()
