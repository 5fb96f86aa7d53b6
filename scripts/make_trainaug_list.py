"""Write ``trainaug.txt`` and ``aug.txt`` beside VOC's own split lists.

* ``trainaug`` = (VOC train | SBD train | SBD val) - VOC val  (10,582 ids)
* ``aug``      = trainaug - VOC train                          (9,118 ids)
* ``train_sbd`` = VOC train & (SBD train | SBD val): the VOC train ids SBD also
  annotates, the same images under two annotators (its size is logged)

Both sorted, so the lists are the same on every run (MMSegmentation's
``voc_aug.py`` writes them in set order).  Every id must have its image in
``JPEGImages``.  With the official archives the official counts are checked.
"""


import logging
from pathlib import Path

from common.jobs import start_log, write_text
from common.voc import OFFICIAL_COUNTS, read_id_list

log = logging.getLogger("make_trainaug_list")


class SplitError(RuntimeError):
    pass


def trainaug_ids(voc_train, voc_val, sbd_train, sbd_val) -> list[str]:
    return sorted((set(voc_train) | set(sbd_train) | set(sbd_val)) - set(voc_val))


def aug_ids(trainaug, voc_train) -> list[str]:
    return sorted(set(trainaug) - set(voc_train))


def check_images(ids, image_dir: Path, list_name: str) -> None:
    missing = [i for i in ids if not (Path(image_dir) / f"{i}.jpg").is_file()]
    if missing:
        raise SplitError(
            f"{len(missing)} id(s) of {list_name} have no image in {image_dir}: "
            + ", ".join(missing[:5])
            + (" ..." if len(missing) > 5 else "")
        )


def check_counts(counts: dict[str, int], official: set[str]) -> None:
    """Compare the counts of the lists named in ``official`` with VOC's numbers."""
    wrong = {k: v for k, v in counts.items() if k in official and v != OFFICIAL_COUNTS[k]}
    if wrong:
        raise SplitError(
            "the archives carry the official md5s but the lists have "
            + ", ".join(f"{k}={v} (official {OFFICIAL_COUNTS[k]})" for k, v in wrong.items())
        )


def write_list(path: Path, ids: list[str]) -> None:
    write_text(path, "".join(f"{i}\n" for i in ids))


def make_lists(
    voc_train_txt: Path,
    voc_val_txt: Path,
    sbd_train_txt: Path,
    sbd_val_txt: Path,
    image_dir: Path,
    trainaug_txt: Path,
    aug_txt: Path,
    official: set[str] = frozenset(),
    train_sbd_txt: Path | None = None,
) -> dict[str, int]:
    voc_train, voc_val = read_id_list(voc_train_txt), read_id_list(voc_val_txt)
    sbd_train, sbd_val = read_id_list(sbd_train_txt), read_id_list(sbd_val_txt)
    overlap = sorted(set(voc_train) & set(voc_val))
    if overlap:
        raise SplitError(f"{voc_train_txt} and {voc_val_txt} share ids: {', '.join(overlap[:5])}")
    trainaug = trainaug_ids(voc_train, voc_val, sbd_train, sbd_val)
    aug = aug_ids(trainaug, voc_train)
    check_images(trainaug, image_dir, "trainaug")
    check_images(voc_val, image_dir, str(voc_val_txt))
    train_sbd = sorted(set(voc_train) & (set(sbd_train) | set(sbd_val)))
    counts = {
        "train": len(set(voc_train)), "val": len(set(voc_val)), "trainaug": len(trainaug), "aug": len(aug),
        "train_sbd": len(train_sbd),
    }  # fmt: skip
    check_counts(counts, set(official))
    write_list(trainaug_txt, trainaug)
    write_list(aug_txt, aug)
    if train_sbd_txt is not None:
        write_list(train_sbd_txt, train_sbd)
    log.info("counts: %s", ", ".join(f"{k}={v}" for k, v in counts.items()))
    return counts


def main(snakemake) -> None:
    start_log(snakemake)
    i, o = snakemake.input, snakemake.output
    make_lists(
        i.voc_train, i.voc_val, i.sbd_train, i.sbd_val, Path(i.images),
        o.trainaug, o.aug, set(snakemake.params.official_counts), o.train_sbd,
    )  # fmt: skip


if __name__ == "__main__" and "snakemake" in globals():
    main(snakemake)  # noqa: F821
