"""The numbers of the report: per-class IoU from confusion counts, the paired
bootstrap over val images, the study's improvement counts, convergence.

Plain NumPy, no plotting: tests feed it hand-made and synthetic numbers.
"""

import numpy as np


def iou_from_confusion(confusion: np.ndarray) -> np.ndarray:
    """Per-class IoU (fraction) of ``confusion[..., gt, pred]``; NaN where a class is absent."""
    confusion = np.asarray(confusion, dtype=np.float64)
    intersect = np.diagonal(confusion, axis1=-2, axis2=-1)
    union = confusion.sum(-1) + confusion.sum(-2) - intersect
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, intersect / union, np.nan)


def align(ids_a, ids_b):
    """Indices that put run b's images in run a's order (paired resampling needs it)."""
    position = {image_id: i for i, image_id in enumerate(ids_b)}
    missing = [i for i in ids_a if i not in position]
    if missing or len(ids_a) != len(ids_b):
        raise ValueError(f"the runs were evaluated on different images (e.g. {missing[:3]})")
    return np.array([position[i] for i in ids_a])


def _seed_mean_iou(per_image_runs: list[np.ndarray], weights: np.ndarray) -> np.ndarray:
    """Mean over seeds of the per-class IoU of each resample; ``weights`` is (B, N)."""
    ious = []
    for per_image in per_image_runs:
        flat = per_image.reshape(per_image.shape[0], -1).astype(np.float64)
        confusion = (weights @ flat).reshape(weights.shape[0], *per_image.shape[1:])
        ious.append(iou_from_confusion(confusion))
    with np.errstate(invalid="ignore"):
        return np.nanmean(np.stack(ious), axis=0) if len(ious) > 1 else ious[0]


def paired_bootstrap(
    baseline: list[np.ndarray],
    other: list[np.ndarray],
    resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
    chunk: int = 250,
) -> dict[str, np.ndarray]:
    """Percentile intervals of per-class IoU of two variants and of their change.

    ``baseline`` and ``other`` hold one (N, C, C) array of per-image confusion
    counts per seed, all on the same N val images in the same order.  Each
    resample draws N images with replacement and applies the same draw to both
    variants (paired), so the interval of the change reflects the val set's
    sampling noise, not just each variant's.
    """
    n = baseline[0].shape[0]
    if any(run.shape[0] != n for run in [*baseline, *other]):
        raise ValueError("all runs must be evaluated on the same val images")
    rng = np.random.default_rng(seed)
    samples = {"baseline": [], "other": []}
    for start in range(0, resamples, chunk):
        size = min(chunk, resamples - start)
        weights = np.stack([np.bincount(rng.integers(0, n, n), minlength=n) for _ in range(size)]).astype(np.float64)
        samples["baseline"].append(_seed_mean_iou(baseline, weights))
        samples["other"].append(_seed_mean_iou(other, weights))
    a, b = np.concatenate(samples["baseline"]), np.concatenate(samples["other"])
    full = np.ones((1, n))
    tail = (1 - confidence) / 2 * 100
    result = {
        "baseline": _seed_mean_iou(baseline, full)[0],
        "other": _seed_mean_iou(other, full)[0],
    }
    result["change"] = result["other"] - result["baseline"]
    for name, draws in (("baseline", a), ("other", b), ("change", b - a)):
        with np.errstate(invalid="ignore"):
            result[f"{name}_low"], result[f"{name}_high"] = np.nanpercentile(draws, [tail, 100 - tail], axis=0)
    return result


def improvement_counts(changes, threshold: float = 8.0) -> tuple[int, int, int]:
    """(classes compared, classes improved, classes improved by more than ``threshold`` points)."""
    changes = np.asarray([c for c in changes if c is not None and not np.isnan(c)], dtype=float)
    return len(changes), int((changes > 0).sum()), int((changes > threshold).sum())


def improvement_sentence(changes, threshold: float = 8.0) -> str:
    total, improved, big = improvement_counts(changes, threshold)
    return f"{improved} of {total} classes improved, {big} by more than {threshold:g} points"


def convergence_epoch(epochs, miou, fraction: float = 0.99):
    """First epoch at which val mIoU reached ``fraction`` of its best; None without values."""
    pairs = [(e, m) for e, m in zip(epochs, miou) if m is not None and not np.isnan(m)]
    if not pairs:
        return None
    best = max(m for _, m in pairs)
    return next(e for e, m in pairs if m >= fraction * best)
