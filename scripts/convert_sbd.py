"""Build ``SegmentationClassAug`` and ``SegmentationClassSBD``: one single-channel
PNG of class indices per id.

``SegmentationClassAug``, for every id of the VOC and SBD segmentation lists:

* ids that VOC annotates itself (its ``train``/``val`` lists) keep VOC's
  ``SegmentationClass`` label, 255 borders included, as MMSegmentation's
  voc12aug config does;
* all other ids take ``GTcls.Segmentation`` from SBD's ``cls/<id>.mat``,
  pixel for pixel (MMSegmentation's ``voc_aug.py``).

``SegmentationClassSBD``: SBD's label for every id SBD annotates, VOC's never
substituted, written in the same pass (each ``.mat`` file is read once): with it
the VOC train ids SBD also annotates (``train_sbd.txt``) can be trained on under
either annotator.

Labels outside 0-20 (255 also allowed for VOC) stop the job, naming the
file and the value.  The output folders are written under temporary names and
renamed when complete, so a failure leaves no partial folder behind.

Reading (``common/labels.py``): SBD's ``.mat`` files through a reader that
decodes just ``GTcls.Segmentation`` from the MAT 5 structure; a file whose
structure it does not know is read with ``scipy.io.loadmat`` instead, the same
value checks follow, and the log says how many files took that path.
"""


import logging
import os
import shutil
import time
from multiprocessing import Pool
from pathlib import Path

from common.jobs import start_log
from common.labels import LabelError, check_label, read_sbd_label, read_voc_label, write_label_png
from common.voc import read_id_list

log = logging.getLogger("convert_sbd")


def convert_one(task: tuple[str, str, str, list[str]]) -> str:
    """Write ``<out_dir>/<id>.png`` into every target folder from a VOC png or an SBD mat
    (read once, encoded once, copied to a second folder).

    Returns how it was read: ``voc``, ``sbd`` or ``sbd_loadmat`` (the fallback).
    """
    image_id, source, path, out_dirs = task
    if source == "voc":
        label = check_label(read_voc_label(Path(path)), Path(path), allow_ignore=True)
    else:
        segmentation, fell_back = read_sbd_label(Path(path))
        label = check_label(segmentation, Path(path), allow_ignore=False)
        source = "sbd_loadmat" if fell_back else "sbd"
    first = Path(out_dirs[0]) / f"{image_id}.png"
    write_label_png(first, label)
    for out_dir in out_dirs[1:]:
        shutil.copyfile(first, Path(out_dir) / f"{image_id}.png")
    return source


def plan_conversion(
    voc_ids: list[str], sbd_ids: list[str], voc_label_dir: Path, cls_dir: Path
) -> list[tuple[str, str, str, tuple[str, ...]]]:
    """(id, 'voc' | 'sbd', source file, target folders) for every label to write.

    Targets: ``aug`` (SegmentationClassAug: VOC's label where VOC annotates the id,
    else SBD's) and ``sbd`` (SegmentationClassSBD: SBD's label for every id SBD
    annotates, VOC's never substituted).  An SBD-only id is read once for both.
    """
    plan = []
    voc, sbd = set(voc_ids), set(sbd_ids)
    for image_id in sorted(voc):
        path = Path(voc_label_dir) / f"{image_id}.png"
        if not path.is_file():
            raise LabelError(f"id {image_id}: listed by VOC but {path} does not exist")
        plan.append((image_id, "voc", str(path), ("aug",)))
    for image_id in [*sorted(sbd - voc), *sorted(sbd & voc)]:
        path = Path(cls_dir) / f"{image_id}.mat"
        if not path.is_file():
            raise LabelError(f"id {image_id}: listed by SBD but {path} does not exist")
        plan.append((image_id, "sbd", str(path), ("sbd",) if image_id in voc else ("aug", "sbd")))
    return plan


def convert_all(plan, out_dir: Path, processes: int = 1, sbd_dir: Path | None = None) -> dict[str, int]:
    """Convert every planned label into ``out_dir`` (SegmentationClassAug) and, given
    ``sbd_dir``, SBD's into it too (SegmentationClassSBD); each folder is renamed
    into place once every label is written, so a failure leaves neither half-written.

    Returns counts of labels read by source: ``voc``, ``sbd`` (all SBD files) and
    ``sbd_loadmat`` (those of them read through the loadmat fallback).
    """
    folders = {"aug": Path(out_dir)} | ({"sbd": Path(sbd_dir)} if sbd_dir else {})
    staging = {key: path.with_name(f".{path.name}.tmp-{os.getpid()}") for key, path in folders.items()}
    tasks = []
    for entry in plan:
        image_id, source, path = entry[:3]
        targets = [t for t in (entry[3] if len(entry) > 3 else ("aug",)) if t in folders]
        if targets:
            tasks.append((image_id, source, path, [str(staging[t]) for t in targets]))
    counts = {"voc": 0, "sbd": 0, "sbd_loadmat": 0}
    try:
        for tmp in staging.values():
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        if processes > 1:
            with Pool(processes) as pool:
                sources = list(pool.imap_unordered(convert_one, tasks, chunksize=32))
        else:
            sources = [convert_one(task) for task in tasks]
        for source in sources:
            counts[source] += 1
            if source == "sbd_loadmat":
                counts["sbd"] += 1
        for key, final in folders.items():
            if final.exists():
                shutil.rmtree(final)
            os.replace(staging[key], final)
    finally:
        for tmp in staging.values():
            shutil.rmtree(tmp, ignore_errors=True)
    return counts


def main(snakemake) -> None:
    start_log(snakemake)
    start = time.perf_counter()
    inputs = snakemake.input
    voc_ids = read_id_list(inputs.voc_train) + read_id_list(inputs.voc_val)
    sbd_ids = read_id_list(inputs.sbd_train) + read_id_list(inputs.sbd_val)
    plan = plan_conversion(voc_ids, sbd_ids, Path(inputs.voc_labels), Path(inputs.sbd_cls))
    out = snakemake.output
    counts = convert_all(plan, Path(out.labels), snakemake.threads, Path(out.sbd_labels))
    seconds = time.perf_counter() - start
    aug = sum("aug" in entry[3] for entry in plan)
    sbd = sum("sbd" in entry[3] for entry in plan)
    log.info(
        "read %d labels (%d from VOC SegmentationClass, %d from SBD cls) with %d processes "
        "in %.1f s (%.0f labels/s): %d in %s, %d in %s (%d of them ids VOC also annotates)",
        len(plan), counts["voc"], counts["sbd"], snakemake.threads, seconds, len(plan) / seconds,
        aug, Path(out.labels).name, sbd, Path(out.sbd_labels).name, len(plan) - aug,
    )  # fmt: skip
    if counts["sbd_loadmat"]:
        log.info(
            "%d of %d SBD files had a MAT layout the fast reader does not decode: read with scipy.io.loadmat",
            counts["sbd_loadmat"], counts["sbd"],
        )  # fmt: skip


if __name__ == "__main__" and "snakemake" in globals():
    main(snakemake)  # noqa: F821
