"""A fixed, seeded sample of a variant's training images, in VOC's layout
(rule sample_train_images): what the overfitting measure evaluates a run on.

The sample depends only on the training lists, their label folders, the size and
the seed, so every run of the same training sets (every epoch count and training
seed) is measured on the same images.  Each sampled image keeps the label it was
trained with (e.g. VOC's own for VOC train ids, the converted SBD one for the
other ``aug`` ids): ``JPEGImages/`` and ``SegmentationClass/`` hold relative
links to the data stage's files, ``list.txt`` the sampled ids.
"""

import logging
import os
import shutil
from pathlib import Path

import numpy as np

from common.jobs import start_log, write_text
from common.voc import read_id_list

log = logging.getLogger("sample_train_images")


def training_pool(train_sets: list[dict], lists: list[Path], label_dirs: list[Path]) -> dict[str, Path]:
    """{id: its label file} over the training sets in order (an id in two sets keeps the first)."""
    pool: dict[str, Path] = {}
    for train_set, list_path, label_dir in zip(train_sets, lists, label_dirs, strict=True):
        for image_id in read_id_list(list_path):
            pool.setdefault(image_id, Path(label_dir) / f"{image_id}.png")
    if not pool:
        raise ValueError(f"the training lists {', '.join(map(str, lists))} are empty")
    return pool


def draw_sample(ids: list[str], size: int, seed: int) -> list[str]:
    """``size`` ids (all when there are fewer), drawn without replacement; sorted."""
    ordered = sorted(ids)
    if size >= len(ordered):
        return ordered
    rng = np.random.default_rng(seed)
    return sorted(ordered[i] for i in rng.choice(len(ordered), size=size, replace=False))


def link(target: Path, link_path: Path) -> None:
    if not target.is_file():
        raise FileNotFoundError(f"{target} does not exist (listed for training)")
    os.symlink(os.path.relpath(target.resolve(), link_path.parent.resolve()), link_path)


def write_sample(sample: list[str], pool: dict[str, Path], images: Path, out: Path) -> None:
    """The sample folder, built beside ``out`` and renamed into place when complete."""
    staging = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(staging, ignore_errors=True)
    (staging / "JPEGImages").mkdir(parents=True)
    (staging / "SegmentationClass").mkdir()
    try:
        for image_id in sample:
            link(Path(images) / f"{image_id}.jpg", staging / "JPEGImages" / f"{image_id}.jpg")
            link(pool[image_id], staging / "SegmentationClass" / f"{image_id}.png")
        write_text(staging / "list.txt", "".join(f"{i}\n" for i in sample))
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    shutil.rmtree(out, ignore_errors=True)
    os.replace(staging, out)


def main(snakemake) -> None:
    start_log(snakemake)
    p = snakemake.params
    pool = training_pool(p.train_sets, snakemake.input.lists, p.label_dirs)
    sample = draw_sample(list(pool), p.size, p.seed)
    write_sample(sample, pool, Path(snakemake.input.images), Path(snakemake.output[0]))
    log.info("%d of %d training images sampled (seed %d)", len(sample), len(pool), p.seed)


if __name__ == "__main__" and "snakemake" in globals():
    main(snakemake)  # noqa: F821
