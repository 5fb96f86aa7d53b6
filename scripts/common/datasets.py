"""A user's own dataset in VOC layout, checked before any training job (plain Python, no torch).

The layout is VOC 2012's: ``JPEGImages/<id>.jpg``, ``SegmentationClass/<id>.png``
(single-channel or palette PNGs whose values are class indices, 255 ignored) and
``ImageSets/Segmentation/{train,val}.txt``.  The check (rule check_dataset, which
every run on the dataset waits for) reads every label once and every image's size,
so a wrong class list, a broken label or a label of another size than its image
stops the workflow before any of the dataset's runs trains.
"""

from pathlib import Path

import numpy as np
from PIL import Image

from common.voc import IGNORE_INDEX, read_id_list

SPLITS = ("train", "val")
LABEL_MODES = ("L", "P")  # single-channel values, or palette indices


class DatasetError(ValueError):
    """A dataset training cannot use; the message names the dataset and the file."""


def _label_values(path: Path, picture: Path, where: str) -> tuple[np.ndarray, np.ndarray]:
    """The distinct values of a label PNG and their pixel counts; it must have its picture's size."""
    try:
        with Image.open(picture) as image:
            size = image.size
        with Image.open(path) as image:
            if image.mode not in LABEL_MODES:
                raise DatasetError(
                    f"{where}: {path} is a mode {image.mode!r} image; labels must be single-channel "
                    "('L') or palette ('P') PNGs of class indices"
                )
            if image.size != size:
                raise DatasetError(
                    f"{where}: {path} is {image.size[0]}x{image.size[1]} pixels, its image {picture} "
                    f"{size[0]}x{size[1]}: a label must cover its image pixel for pixel"
                )
            return np.unique(np.asarray(image), return_counts=True)
    except OSError as error:
        raise DatasetError(f"{where}: {path} or {picture} is not a readable image ({error})") from error


def check_dataset(root: Path, classes: list[str], name: str) -> dict:
    """Check the dataset at ``root`` against its class list; return its summary:
    ``{"classes", "train", "val", "pixels_per_class"}`` (list sizes, and pixels of each
    class over the training labels, 255 not counted)."""
    where = f"datasets.{name}"
    root = Path(root)
    if len(classes) < 2:
        raise DatasetError(f"{where}: {len(classes)} class(es) {list(classes)}; at least 2 are needed")
    images, labels = root / "JPEGImages", root / "SegmentationClass"
    lists = {split: root / "ImageSets/Segmentation" / f"{split}.txt" for split in SPLITS}
    for path in (images, labels):
        if not path.is_dir():
            raise DatasetError(f"{where}: folder {path} is missing")
    for path in lists.values():
        if not path.is_file():
            raise DatasetError(f"{where}: list {path} is missing")
    ids = {split: read_id_list(path) for split, path in lists.items()}
    for split, path in lists.items():
        if not ids[split]:
            raise DatasetError(f"{where}: list {path} is empty")
        for image_id in ids[split]:
            for needed in (images / f"{image_id}.jpg", labels / f"{image_id}.png"):
                if not needed.is_file():
                    raise DatasetError(f"{where}: {path} lists {image_id!r}, but {needed} is missing")

    pixels = np.zeros(len(classes), np.int64)
    for split in SPLITS:
        for image_id in ids[split]:
            label = labels / f"{image_id}.png"
            values, counts = _label_values(label, images / f"{image_id}.jpg", where)
            bad = values[(values >= len(classes)) & (values != IGNORE_INDEX)]
            if bad.size:
                raise DatasetError(
                    f"{where}: {label} holds values {bad.tolist()}, neither a class index "
                    f"(0..{len(classes) - 1} for {len(classes)} classes) nor {IGNORE_INDEX} (ignored)"
                )
            if split == "train":
                kept = values != IGNORE_INDEX
                pixels[values[kept]] += counts[kept]
    absent = [f"{i} ({classes[i]!r})" for i in np.flatnonzero(pixels == 0)]
    if absent:
        raise DatasetError(
            f"{where}: class{'es' if len(absent) > 1 else ''} {', '.join(absent)} "
            f"{'appear' if len(absent) > 1 else 'appears'} in no label of {lists['train']}; "
            f"the {len(classes)} class names disagree with the labels"
        )
    return {
        "classes": list(classes),
        "train": len(ids["train"]),
        "val": len(ids["val"]),
        "pixels_per_class": pixels.tolist(),
    }
