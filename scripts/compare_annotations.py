"""results/tables/annotations.{csv,md}: do SBD and VOC draw the classes alike, and
how often does each class occur in each variant's training set?

VOC 2012 (``SegmentationClass``) and SBD (``cls/<id>.mat``) both annotate the
ids of VOC's train/val lists that SBD's train/val lists also hold (2,800-odd
of the real ones).  Per class:

* ``images both``: those ids whose VOC or SBD label contains the class;
* ``agreement IoU``: the IoU (percent) of SBD's label with respect to VOC's,
  from the 21x21 pixel counts summed over those ids, over the pixels VOC
  labels (its 255 borders and "difficult" regions are ignored).  A class SBD
  outlines coarser than VOC (bicycles filled in, loose boundaries) scores low;
* ``pixel share <variant>``: the class's share (percent) of the labelled
  pixels of the variant's training labels (``params.variants``: per variant
  its training sets, each a list under the splits folder and a label folder);
* ``images <variant>``: the variant's training images that contain the class.

A last row ``all`` holds the mean agreement IoU over the classes and the image
counts of all images.  Files are read in a process pool (``threads``).
A listed id without its label, an unreadable .mat and labels of different
sizes stop the job, naming the file.
"""

import logging
import time
from multiprocessing import Pool
from pathlib import Path

import numpy as np

from common.annotations import (
    Frequency,
    agreement_counts,
    agreement_iou,
    class_counts,
    class_frequency,
)
from common.jobs import markdown_table, start_log, write_csv, write_text
from common.labels import LabelError, check_label, read_sbd_label, read_voc_label
from common.voc import CLASSES, NUM_CLASSES, read_id_list

log = logging.getLogger("compare_annotations")

ALL_ROW = "all"


# --- what to read ----------------------------------------------------------
def plan_agreement(
    voc_ids: list[str], sbd_ids: list[str], voc_label_dir: Path, cls_dir: Path
) -> list[tuple[str, str, str]]:
    """(id, VOC png, SBD mat) for every id both annotate; a missing file is an error."""
    plan = []
    for image_id in sorted(set(voc_ids) & set(sbd_ids)):
        png, mat = Path(voc_label_dir) / f"{image_id}.png", Path(cls_dir) / f"{image_id}.mat"
        for path in (png, mat):
            if not path.is_file():
                raise LabelError(f"id {image_id}: listed by VOC and SBD but {path} does not exist")
        plan.append((image_id, str(png), str(mat)))
    return plan


def split_paths(paths: list) -> dict[str, Path]:
    """{split name: list file}, the name being the file's stem (``train.txt`` -> ``train``)."""
    splits: dict[str, Path] = {}
    for path in map(Path, paths):
        if path.stem in splits and splits[path.stem].resolve() != path.resolve():
            raise ValueError(f"two lists are called {path.stem!r}: {splits[path.stem]} and {path}")
        splits[path.stem] = path
    return splits


def plan_training_sets(
    variants: dict[str, list[dict]], splits: dict[str, Path], label_dirs: dict[str, Path]
) -> dict[tuple[str, str], list[str]]:
    """{(split, labels): label files} of every training set any variant uses.

    A split or label folder the rule does not give, or a listed id without its
    label file, is an error naming it.
    """
    plan: dict[tuple[str, str], list[str]] = {}
    for variant, train_sets in variants.items():
        for train_set in train_sets:
            key = (train_set["split"], train_set["labels"])
            if key in plan:
                continue
            if key[0] not in splits:
                raise ValueError(
                    f"variant {variant}: no input list for split {key[0]!r} (have {sorted(splits)})"
                )
            if key[1] not in label_dirs:
                raise ValueError(
                    f"variant {variant}: no input label folder {key[1]!r} (have {sorted(label_dirs)})"
                )
            files = []
            for image_id in read_id_list(splits[key[0]]):
                path = Path(label_dirs[key[1]]) / f"{image_id}.png"
                if not path.is_file():
                    raise LabelError(
                        f"id {image_id}: listed in {splits[key[0]]} but {path} does not exist"
                    )
                files.append(str(path))
            plan[key] = files
    return plan


# --- per image (in worker processes) ----------------------------------------
def compare_one(task: tuple[str, str, str]) -> tuple[np.ndarray, np.ndarray, int, int, int, bool]:
    """(21x21 counts, classes in either label, pixels, VOC 255 pixels, SBD non-class pixels, fell back)."""
    _, png, mat = task
    voc = check_label(read_voc_label(Path(png)), Path(png), allow_ignore=True)
    try:
        sbd, fell_back = read_sbd_label(Path(mat))
    except LabelError:
        raise
    except Exception as error:  # an unreadable file: name it
        raise LabelError(
            f"{mat}: cannot read GTcls.Segmentation ({type(error).__name__}: {error})"
        ) from error
    if voc.shape != sbd.shape:
        raise LabelError(
            f"{mat}: SBD label is {sbd.shape[0]}x{sbd.shape[1]}, {png} is {voc.shape[0]}x{voc.shape[1]}"
        )
    voc_classes, sbd_classes = class_counts(voc), class_counts(sbd)
    return (
        agreement_counts(voc, sbd),
        (voc_classes > 0) | (sbd_classes > 0),
        voc.size,
        voc.size - int(voc_classes.sum()),  # check_label leaves only 255 besides the classes
        sbd.size - int(sbd_classes.sum()),
        fell_back,
    )


def count_one(path: str) -> np.ndarray:
    """Pixels of each class in one training label (PNG of class indices, 255 ignored)."""
    return class_counts(check_label(read_voc_label(Path(path)), Path(path), allow_ignore=True))


# --- the whole data set -----------------------------------------------------
def measure(
    agreement_plan: list[tuple[str, str, str]],
    training_plan: dict[tuple[str, str], list[str]],
    processes: int = 1,
) -> dict:
    """Sum the per-image results: agreement counts and class frequency of each training set."""
    pool = Pool(processes) if processes > 1 else None
    mapper = (lambda f, tasks: pool.imap(f, tasks, chunksize=16)) if pool else map
    try:
        confusion = np.zeros((NUM_CLASSES, NUM_CLASSES), np.int64)
        images_both = np.zeros(NUM_CLASSES, np.int64)
        totals = np.zeros(
            4, np.int64
        )  # pixels, VOC 255 pixels, SBD non-class pixels, loadmat files
        for counts, present, *numbers in mapper(compare_one, agreement_plan):
            confusion += counts
            images_both += present
            totals += numbers
        frequency = {
            key: class_frequency(mapper(count_one, paths)) for key, paths in training_plan.items()
        }
    finally:
        if pool:
            pool.close()
            pool.join()
    return {
        "confusion": confusion,
        "images_both": images_both,
        "ids_both": len(agreement_plan),
        "pixels": int(totals[0]),
        "voc_ignored": int(totals[1]),
        "sbd_invalid": int(totals[2]),
        "loadmat": int(totals[3]),
        "frequency": frequency,
    }


def variant_frequency(
    variants: dict[str, list[dict]], frequency: dict[tuple[str, str], Frequency]
) -> dict:
    """{variant: Frequency of all its training sets together}."""
    result = {}
    for variant, train_sets in variants.items():
        total = Frequency(np.zeros(NUM_CLASSES, np.int64), np.zeros(NUM_CLASSES, np.int64), 0)
        for train_set in train_sets:
            total = total + frequency[(train_set["split"], train_set["labels"])]
        result[variant] = total
    return result


# --- the table --------------------------------------------------------------
def table_columns(variants) -> list[str]:
    columns = ["class", "images both", "agreement IoU"]
    for variant in variants:
        columns += [f"pixel share {variant}", f"images {variant}"]
    return columns


def _round(value, digits: int = 4):
    return None if value is None or np.isnan(value) else round(float(value), digits)


def table_rows(measured: dict, by_variant: dict[str, Frequency]) -> list[dict]:
    """One row per class (percent values), then the ``all`` row."""
    iou = agreement_iou(measured["confusion"]) * 100
    rows = []
    for index, name in enumerate(CLASSES):
        row = {
            "class": name,
            "images both": int(measured["images_both"][index]),
            "agreement IoU": _round(iou[index]),
        }
        for variant, frequency in by_variant.items():
            row[f"pixel share {variant}"] = _round(frequency.share[index] * 100)
            row[f"images {variant}"] = int(frequency.images[index])
        rows.append(row)
    mean = np.nanmean(iou) if np.isfinite(iou).any() else np.nan
    row = {"class": ALL_ROW, "images both": measured["ids_both"], "agreement IoU": _round(mean)}
    for variant, frequency in by_variant.items():
        row[f"pixel share {variant}"] = None
        row[f"images {variant}"] = frequency.total_images
    rows.append(row)
    return rows


def markdown(columns: list[str], rows: list[dict], measured: dict) -> str:
    def shown(row):
        return {
            k: (f"{v:.1f}" if k == "agreement IoU" else f"{v:.2f}") if isinstance(v, float) else v
            for k, v in row.items()
        }

    text = markdown_table(columns, [shown(row) for row in rows])
    ignored = measured["voc_ignored"] / measured["pixels"] * 100 if measured["pixels"] else 0.0
    text += (
        f"\nAgreement: {measured['ids_both']} ids have both a VOC label (train/val) and an SBD "
        "`cls/*.mat` (train/val); per class the IoU (%) of SBD's `GTcls.Segmentation` with respect to "
        f"VOC's `SegmentationClass`, summed over those ids. Ignored: VOC's 255 pixels ({ignored:.1f}% "
        f"of their pixels: object borders, difficult regions) and {measured['sbd_invalid']} SBD pixels "
        "without a class. `images both`: ids whose VOC or SBD label has the class. `pixel share`: the "
        "class's share (%) of the labelled (non-255) pixels of a variant's training labels; `images`: "
        f"its training images with the class. Row `{ALL_ROW}`: mean agreement IoU over the classes, "
        "and the image counts.\n"
    )
    return text


def main(snakemake) -> None:
    start_log(snakemake)
    start = time.perf_counter()
    inputs, params = snakemake.input, snakemake.params
    voc_ids = read_id_list(inputs.voc_train) + read_id_list(inputs.voc_val)
    sbd_ids = read_id_list(inputs.sbd_train) + read_id_list(inputs.sbd_val)
    agreement_plan = plan_agreement(voc_ids, sbd_ids, Path(inputs.voc_labels), Path(inputs.sbd_cls))
    lists = inputs.lists if isinstance(inputs.lists, (list, tuple)) else [inputs.lists]
    splits = split_paths([inputs.voc_train, inputs.voc_val, *lists])
    label_dirs = {Path(inputs.voc_labels).name: Path(inputs.voc_labels)}
    for folder in ("aug_labels", "sbd_labels"):
        if getattr(inputs, folder, None):
            label_dirs[Path(getattr(inputs, folder)).name] = Path(getattr(inputs, folder))
    variants = {name: list(train_sets) for name, train_sets in dict(params.variants).items()}
    training_plan = plan_training_sets(variants, splits, label_dirs)
    files = sum(len(paths) for paths in training_plan.values())
    log.info(
        "%d ids annotated by both VOC (%d listed) and SBD (%d listed); %d training labels in %d sets",
        len(agreement_plan), len(set(voc_ids)), len(set(sbd_ids)), files, len(training_plan),
    )  # fmt: skip
    measured = measure(agreement_plan, training_plan, int(getattr(snakemake, "threads", 1) or 1))
    by_variant = variant_frequency(variants, measured["frequency"])
    columns = table_columns(variants)
    rows = table_rows(measured, by_variant)
    write_csv(Path(snakemake.output.csv), columns, rows)
    text = markdown(columns, rows, measured)
    write_text(Path(snakemake.output.md), text)
    seconds = time.perf_counter() - start
    images = len(agreement_plan) + files
    log.info(
        "read %d label pairs and %d training labels in %.1f s (%.0f labels/s); VOC 255 pixels ignored: "
        "%d of %d; SBD pixels without a class: %d; SBD files read with scipy.io.loadmat: %d",
        len(agreement_plan), files, seconds, images / seconds if seconds else 0.0,
        measured["voc_ignored"], measured["pixels"], measured["sbd_invalid"], measured["loadmat"],
    )  # fmt: skip
    log.info("\n%s", text)


if __name__ == "__main__" and "snakemake" in globals():
    main(snakemake)  # noqa: F821
