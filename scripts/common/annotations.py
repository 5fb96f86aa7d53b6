"""How two annotations of the same images agree, and how often each class occurs.

* :func:`agreement_counts`: the 21x21 confusion of SBD's label against VOC's
  (rows VOC, columns SBD) over the pixels VOC labels (not 255) where SBD has
  a class; summed over images, :func:`agreement_iou` turns it into the IoU of
  each class of SBD with respect to VOC.
* :func:`class_counts` / :func:`class_frequency`: per class, its share of the
  labelled pixels of a training set and the number of its images that contain it.

Plain NumPy: the scripts read the files, the tests feed hand-made arrays.
"""

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from common.stats import iou_from_confusion
from common.voc import NUM_CLASSES


def valid_classes(label: np.ndarray) -> np.ndarray:
    """Where ``label`` holds a class index 0-20 (not 255, nothing else)."""
    label = np.asarray(label)
    valid = (label >= 0) & (label < NUM_CLASSES)
    if not np.issubdtype(label.dtype, np.integer):
        valid &= label == np.floor(label)
    return valid


def agreement_counts(voc_label: np.ndarray, sbd_label: np.ndarray) -> np.ndarray:
    """21x21 pixel counts ``[VOC class, SBD class]`` of one image.

    Pixels VOC marks 255 (object borders, "difficult" regions) are ignored, as
    are pixels where SBD's value is not a class index.  Both labels must have
    the same shape.
    """
    voc_label, sbd_label = np.asarray(voc_label), np.asarray(sbd_label)
    if voc_label.shape != sbd_label.shape:
        raise ValueError(f"the labels differ in size: VOC {voc_label.shape}, SBD {sbd_label.shape}")
    if voc_label.dtype == np.uint8 and sbd_label.dtype == np.uint8:
        # the common case: one histogram of all 256x256 value pairs, cut to the classes
        pairs = (voc_label.astype(np.uint16) << 8) | sbd_label
        counts = np.bincount(pairs.ravel(), minlength=256 * 256).reshape(256, 256)
        return counts[:NUM_CLASSES, :NUM_CLASSES].astype(np.int64)
    keep = valid_classes(voc_label) & valid_classes(sbd_label)
    pairs = voc_label[keep].astype(np.int64) * NUM_CLASSES + sbd_label[keep].astype(np.int64)
    counts = np.bincount(pairs, minlength=NUM_CLASSES * NUM_CLASSES)
    return counts.reshape(NUM_CLASSES, NUM_CLASSES)


def agreement_iou(confusion: np.ndarray) -> np.ndarray:
    """Per-class IoU (fraction) of SBD with respect to VOC; NaN where neither has the class."""
    return iou_from_confusion(confusion)


def classes_present(label: np.ndarray) -> np.ndarray:
    """21 booleans: which classes ``label`` contains (255 and other values ignored)."""
    return class_counts(label) > 0


def class_counts(label: np.ndarray) -> np.ndarray:
    """Pixels of each of the 21 classes in ``label`` (255 and other values not counted)."""
    label = np.asarray(label)
    if label.dtype == np.uint8:  # the common case: a histogram of all 256 values
        return np.bincount(label.ravel(), minlength=256)[:NUM_CLASSES].astype(np.int64)
    values = label[valid_classes(label)].astype(np.int64)
    return np.bincount(values, minlength=NUM_CLASSES).astype(np.int64)


@dataclass
class Frequency:
    """Class frequency of a set of labels: pixels and images per class, and the image count."""

    pixels: np.ndarray  # (21,) labelled pixels of each class
    images: np.ndarray  # (21,) images that contain the class
    total_images: int

    @property
    def share(self) -> np.ndarray:
        """Each class's fraction of all labelled pixels (255 excluded); NaN if there are none."""
        total = self.pixels.sum()
        return self.pixels / total if total else np.full(NUM_CLASSES, np.nan)

    def __add__(self, other: "Frequency") -> "Frequency":
        return Frequency(
            self.pixels + other.pixels,
            self.images + other.images,
            self.total_images + other.total_images,
        )


def class_frequency(per_image_counts: Iterable[np.ndarray]) -> Frequency:
    """Frequency from per-image class pixel counts (streamed, e.g. from a process pool)."""
    pixels = np.zeros(NUM_CLASSES, np.int64)
    images = np.zeros(NUM_CLASSES, np.int64)
    total = 0
    for counts in per_image_counts:
        counts = np.asarray(counts, dtype=np.int64)
        if counts.shape != (NUM_CLASSES,):
            raise ValueError(
                f"expected {NUM_CLASSES} class counts per image, got shape {counts.shape}"
            )
        pixels += counts
        images += counts > 0
        total += 1
    return Frequency(pixels, images, total)


def label_frequency(labels: Iterable[np.ndarray]) -> Frequency:
    """Frequency of a list of label arrays (pixels of 255 not counted)."""
    return class_frequency(class_counts(label) for label in labels)
