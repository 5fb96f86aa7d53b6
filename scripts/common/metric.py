"""``StudyIoUMetric``: MMSeg's ``IoUMetric`` that also keeps per-class values
and per-image confusion matrices, and the content of ``metrics.json``."""

from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
from mmseg.evaluation.metrics import IoUMetric
from mmseg.registry import METRICS


@METRICS.register_module()
class StudyIoUMetric(IoUMetric):
    """MMSeg's IoUMetric, keeping per-class values and per-image confusion matrices.

    IoU itself is MMSeg's: ``intersect_and_union`` per image and
    ``total_area_to_metrics`` over the set.
    """

    def process(self, data_batch, data_samples) -> None:
        start = len(self.results)
        super().process(data_batch, data_samples)
        for index, data_sample in enumerate(data_samples):
            pred = data_sample["pred_sem_seg"]["data"].squeeze()
            label = data_sample["gt_sem_seg"]["data"].squeeze().to(pred)
            keep = label != self.ignore_index
            classes = len(self.dataset_meta["classes"])  # VOC's 21, or a dataset's of `datasets`
            pairs = label[keep].long() * classes + pred[keep].long()
            confusion = torch.bincount(pairs, minlength=classes**2).reshape(classes, classes)
            image_id = Path(data_sample["img_path"]).stem
            self.results[start + index] = (*self.results[start + index], confusion.cpu(), image_id)

    def compute_metrics(self, results: list) -> dict:
        self.image_ids = [r[5] for r in results]
        self.per_image_confusion = torch.stack([r[4] for r in results]).numpy()
        areas = [r[:4] for r in results]
        totals = [sum(column) for column in zip(*areas)]
        per_class = self.total_area_to_metrics(*totals, self.metrics, self.nan_to_num, self.beta)
        self.per_class = OrderedDict((k, v) for k, v in per_class.items() if k != "aAcc")
        summary = super().compute_metrics(areas)
        # MMSeg rounds mIoU to two decimals; the convergence epoch is decided on this
        # one (common/history.py: a run may clear its threshold by less than 0.01)
        summary["mIoU_unrounded"] = float(np.nanmean(self.per_class["IoU"]) * 100)
        return summary


def metrics_document(metric: StudyIoUMetric, summary: dict, classes, extra: dict) -> dict:
    """The content of metrics.json (percentages, like MMSeg's logs)."""

    def percent(values):
        return {c: (None if np.isnan(v) else round(float(v) * 100, 4)) for c, v in zip(classes, values)}

    # MMSeg rounds them to two decimals; under numpy 2 they stay float32 (71.18 would be
    # written 71.18000030517578): round again, to MMSeg's number as a float64
    return {
        **extra,
        "aAcc": round(float(summary["aAcc"]), 2),
        "mIoU": round(float(summary["mIoU"]), 2),
        "mAcc": round(float(summary["mAcc"]), 2),
        "classes": list(classes),
        "IoU": percent(metric.per_class["IoU"]),
        "Acc": percent(metric.per_class["Acc"]),
        "num_images": len(metric.image_ids),
    }
