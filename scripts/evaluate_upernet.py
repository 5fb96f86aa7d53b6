"""Evaluate a trained run on VOC 2012 val with MMSeg's IoUMetric (rule evaluate_upernet),
and in the same job on the sets beyond it the config asks for (its training-image
sample, each ood set: each into its folder of the run); a run on a dataset of
``datasets`` on that dataset's val list (evaluate_upernet_dataset).

Writes ``metrics.json`` (per-class IoU and Acc, aAcc, mIoU, mAcc, class
names, hashes of checkpoint and config), ``confusion.npy`` (21x21 pixel
counts, rows = ground truth) and ``confusion_per_image.npz`` (the same per val
image, for bootstrap statistics).  With ``tta`` the model is MMSeg's
SegTTAModel over the config's ``tta_pipeline`` (flip x six scales).
"""

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

log = logging.getLogger("upernet")


def evaluate(
    config_path: Path,
    checkpoint: Path,
    tta: bool = False,
    scratch: Path | None = None,
    predictions: Path | None = None,
    dataset: dict | None = None,
):
    """Return (metrics document, total confusion, per-image confusion, image ids).

    With ``predictions``, MMSeg's IoUMetric also writes each val prediction there
    as a PNG of class indices (``<id>.png``).  ``dataset`` ({"images", "labels",
    "list"}: folders of JPEGs and single-channel PNG labels in VOC's layout, and the
    id list) replaces VOC val, with the same test pipeline: a run's own training
    images, or a set from outside VOC.
    """
    from mmengine.config import Config
    from mmengine.runner import Runner

    from common.jobs import sha256sum
    from common.launch import adapt_to_device
    from common.metric import metrics_document  # also registers StudyIoUMetric

    from common.run_files import check_checkpoint

    check_checkpoint(checkpoint)  # MMEngine's loader would fail naming no file
    cfg = Config.fromfile(str(config_path))
    work_dir = Path(tempfile.mkdtemp(prefix="evaluate-", dir=scratch))
    try:
        cfg.work_dir = str(work_dir)
        cfg.load_from = str(checkpoint)
        cfg.resume = False
        cfg.launcher = "none"
        cfg.test_evaluator = dict(type="StudyIoUMetric", iou_metrics=["mIoU"])
        # a visualizer of its own per evaluation (MMEngine keeps one per name and process,
        # bound to the first one's work dir); no tracking of an evaluation
        cfg.visualizer.name = f"visualizer-{work_dir.name}"
        cfg.visualizer.vis_backends = [dict(type="LocalVisBackend")]
        if dataset is not None:
            test_set = cfg.test_dataloader.dataset
            test_set.data_root = ""
            test_set.data_prefix = dict(
                img_path=os.path.abspath(dataset["images"]), seg_map_path=os.path.abspath(dataset["labels"])
            )
            test_set.ann_file = os.path.abspath(dataset["list"])
        if predictions is not None:
            cfg.test_evaluator["output_dir"] = str(predictions)
        if tta:
            cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline
            cfg.tta_model.module = cfg.model
            cfg.model = cfg.tta_model
        adapt_to_device(cfg, distributed=False)
        # validation during training is not what we evaluate here
        cfg.train_dataloader = cfg.train_cfg = cfg.optim_wrapper = cfg.val_dataloader = None
        cfg.val_cfg = cfg.val_evaluator = cfg.param_scheduler = None
        runner = Runner.from_cfg(cfg)
        summary = runner.test()
        metric = runner.test_evaluator.metrics[0]
        classes = metric.dataset_meta["classes"]
        document = metrics_document(
            metric,
            summary,
            classes,
            {
                "config": str(config_path),
                "config_sha256": sha256sum(config_path),
                "checkpoint": str(checkpoint),
                "checkpoint_sha256": sha256sum(checkpoint),
                "tta": tta,
                "images": dataset or "VOC 2012 val",
            },
        )
        per_image = metric.per_image_confusion.astype(np.uint32)
        return document, per_image.sum(axis=0, dtype=np.int64), per_image, metric.image_ids
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)


def write_outputs(document, confusion, per_image, image_ids, metrics_path, confusion_path, per_image_path):
    from common.jobs import atomic_path, write_text

    write_text(Path(metrics_path), json.dumps(document, indent=2) + "\n")
    with atomic_path(confusion_path) as tmp:
        np.save(tmp, confusion)
    with atomic_path(per_image_path) as tmp:
        np.savez_compressed(tmp, image_ids=np.array(image_ids), confusion=per_image)


def extra_set(inputs, folder: str) -> dict:
    """The images, labels and list of an evaluation beyond VOC val (a run folder's name:
    ``train_sample``, ``ood/<set>``), from the rule's inputs."""
    if folder == "train_sample":  # a folder in VOC's layout
        root = Path(inputs.sample)
        return {"images": root / "JPEGImages", "labels": root / "SegmentationClass", "list": root / "list.txt"}
    name = folder.split("/", 1)[1]
    return {key: inputs[f"ood_{name}_{key}"] for key in ("images", "labels", "list")}


def main(snakemake) -> None:
    import torch

    from common.jobs import start_log
    from common.launch import cpu_threads

    start_log(snakemake, stdout=True)
    torch.set_num_threads(cpu_threads(snakemake.threads))
    out, config, checkpoint = snakemake.output, Path(snakemake.input.config), Path(snakemake.input.checkpoint)
    scratch = checkpoint.parent
    predictions = Path(out.predictions)
    staging = predictions.with_name(f".{predictions.name}.tmp")
    shutil.rmtree(staging, ignore_errors=True)
    results = evaluate(config, checkpoint, snakemake.params.tta, scratch, staging)
    write_outputs(*results, out.metrics, out.confusion, out.per_image)
    shutil.rmtree(predictions, ignore_errors=True)
    os.replace(staging, predictions)
    log.info("val: mIoU %.2f, aAcc %.2f, mAcc %.2f", results[0]["mIoU"], results[0]["aAcc"], results[0]["mAcc"])
    for folder, key in snakemake.params.sets.items():  # {run folder: its outputs' name}
        dataset = {name: str(value) for name, value in extra_set(snakemake.input, folder).items()}
        results = evaluate(config, checkpoint, False, scratch, None, dataset)
        write_outputs(*results, *(out[f"{key}_{kind}"] for kind in ("metrics", "confusion", "per_image")))
        log.info("%s: mIoU %.2f, aAcc %.2f, mAcc %.2f", folder, results[0]["mIoU"], results[0]["aAcc"], results[0]["mAcc"])


if __name__ == "__main__" and "snakemake" in globals():
    main(snakemake)  # noqa: F821
