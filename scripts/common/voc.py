"""PASCAL VOC 2012 facts: classes, label values, the colour palette, id lists."""

from pathlib import Path

CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip
NUM_CLASSES = len(CLASSES)  # 21: background + 20 object classes
IGNORE_INDEX = 255  # VOC's object borders and "difficult" regions

# ImageSets/Segmentation sizes of VOC 2012 and of the SBD-augmented set.
OFFICIAL_COUNTS = {"train": 1464, "val": 1449, "trainaug": 10582, "aug": 9118}


def palette() -> list[int]:
    """The 256-entry PASCAL VOC colour map (bit-interleaved class index), flat RGB."""
    colours = []
    for index in range(256):
        r = g = b = 0
        c = index
        for shift in range(7, -1, -1):
            r |= ((c >> 0) & 1) << shift
            g |= ((c >> 1) & 1) << shift
            b |= ((c >> 2) & 1) << shift
            c >>= 3
        colours.extend((r, g, b))
    return colours


def read_id_list(path: Path) -> list[str]:
    """The ids of an ``ImageSets`` list (one per line, blank lines ignored)."""
    with open(path) as handle:
        return [line.strip() for line in handle if line.strip()]
