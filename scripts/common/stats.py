"""The numbers of the report: per-class IoU from confusion counts, the paired
bootstrap over val images, the study's improvement counts, convergence.

Plain NumPy, no plotting: tests feed it hand-made and synthetic numbers
(``group_per_image`` reads the runs' per-image confusions, through run_files).
"""

import math
import warnings
from pathlib import Path

import numpy as np

from common.run_files import read_per_image
from common.voc import NUM_CLASSES


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


def resample_weights(rng: np.random.Generator, n: int, size: int) -> np.ndarray:
    """(size, n) counts: how often each of n images is drawn in each resample (with replacement)."""
    drawn = rng.integers(0, n, (size, n)) + n * np.arange(size)[:, None]
    return np.bincount(drawn.ravel(), minlength=size * n).reshape(size, n).astype(np.float64)


def iou_parts(per_image: np.ndarray) -> np.ndarray:
    """(N, 3C): per image and class the intersection, ground-truth and predicted pixels:
    all that IoU needs (3C numbers instead of C^2; 7x less work for VOC's 21 classes)."""
    per_image = np.asarray(per_image, dtype=np.float64)
    return np.concatenate(
        [np.diagonal(per_image, axis1=1, axis2=2), per_image.sum(2), per_image.sum(1)], axis=1
    )


def resampled_iou(per_image: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """(B, C) per-class IoU of each resample of ``per_image`` (N, C, C), or of its
    ``iou_parts`` (N, 3C), drawn by ``weights`` (B, N).

    A class without ground-truth pixels in a resample has no IoU there (NaN), whatever
    the model predicted: every statistic leaves such resamples out for that class.
    """
    parts = iou_parts(per_image) if per_image.ndim == 3 else per_image
    intersect, truth, predicted = np.split(weights @ parts, 3, axis=1)
    union = truth + predicted - intersect
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(truth > 0, intersect / union, np.nan)


def present_iou(per_image: np.ndarray) -> np.ndarray:
    """Per-class IoU over all images of ``per_image``, NaN for a class without ground truth."""
    return resampled_iou(per_image, np.ones((1, per_image.shape[0])))[0]


def seed_mean(per_seed: np.ndarray, draws: np.ndarray | None = None) -> np.ndarray:
    """Mean over seeds of ``per_seed`` (S, B, ...); with ``draws`` (B, S), over the seeds each
    resample drew (with replacement), so the interval also covers training-seed variation."""
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN: the class is absent
        if draws is None or per_seed.shape[0] == 1:
            return np.nanmean(per_seed, axis=0)
        picked = per_seed[draws, np.arange(draws.shape[0])[:, None]]  # (B, S, ...)
        return np.nanmean(picked, axis=1)


def seed_draws(rng: np.random.Generator, seeds: int, size: int) -> np.ndarray | None:
    """(size, seeds) indices of the seeds each resample uses; None with one seed."""
    return rng.integers(0, seeds, (size, seeds)) if seeds > 1 else None


def percentile_interval(draws: np.ndarray, confidence: float) -> dict[str, np.ndarray]:
    """Percentile interval of ``draws`` (B, ...) along axis 0, NaN draws left out, with the
    Monte Carlo standard error of each bound.

    The error comes from the order statistics around the bound: the p-quantile of B
    draws lies between the (Bp - sqrt(Bp(1-p)))-th and (Bp + sqrt(Bp(1-p)))-th draws
    about 68% of the time (binomial count of draws below the true quantile), so half
    that range is the bound's standard error, distribution-free, lumpy
    distributions (a rare class on few images) included.
    """
    tail = (1 - confidence) / 2
    ordered = np.sort(draws, axis=0)  # NaN last
    valid = np.sum(~np.isnan(draws), axis=0)
    result = {}
    for name, p in (("low", tail), ("high", 1 - tail)):
        position = (valid - 1) * p  # numpy's default ("linear") percentile
        below, above = np.floor(position).astype(int), np.ceil(position).astype(int)
        fraction = position - below
        take = lambda index: np.take_along_axis(ordered, np.clip(index, 0, None)[None], 0)[0]  # noqa: E731
        bound = take(below) * (1 - fraction) + take(above) * fraction
        spread = np.sqrt(valid * p * (1 - p))
        low_index = np.clip(np.floor(valid * p - spread), 0, np.maximum(valid - 1, 0)).astype(int)
        high_index = np.clip(np.ceil(valid * p + spread), 0, np.maximum(valid - 1, 0)).astype(int)
        error = (take(high_index) - take(low_index)) / 2
        result[name] = np.where(valid > 0, bound, np.nan)
        result[f"{name}_error"] = np.where(valid > 0, error, np.nan)
    result["used"] = valid
    return result


def adaptive_bootstrap(
    draw, first: int, most: int, target: float, confidence: float, watched: tuple[str, ...]
) -> tuple[dict[str, dict], int, float]:
    """Resample until the Monte Carlo error of every bound of the ``watched`` statistics is
    at most ``target`` (doubling the number of resamples), or ``most`` resamples are drawn.

    ``draw(size)`` returns {statistic: (size, ...) array}.  Returns ({statistic:
    percentile_interval}, resamples drawn, largest error of a watched bound).
    """
    batches: dict[str, list[np.ndarray]] = {}
    total, size = 0, first
    while True:
        for name, values in draw(size).items():
            batches.setdefault(name, []).append(values)
        total += size
        intervals = {name: percentile_interval(np.concatenate(parts), confidence) for name, parts in batches.items()}
        errors = [intervals[name][f"{side}_error"] for name in watched for side in ("low", "high")]
        finite = [e[np.isfinite(e)] for e in errors]
        error = max((float(e.max()) for e in finite if e.size), default=0.0)
        if error <= target or total >= most:
            return intervals, total, error
        size = min(total, most - total)


def _class_mean(per_class: np.ndarray) -> np.ndarray:
    """mIoU: the mean over the classes that have a value (last axis)."""
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(per_class, axis=-1)


def paired_bootstrap(
    baseline: list[np.ndarray],
    other: list[np.ndarray],
    resamples: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
    max_resamples: int | None = None,
    mc_error: float = 0.0005,
    chunk: int = 2000,
) -> dict[str, np.ndarray]:
    """Percentile intervals of per-class IoU (fractions) of two variants and of their change.

    ``baseline`` and ``other`` hold one (N, C, C) array of per-image confusion
    counts per seed, all on the same N val images in the same order.  Each
    resample draws N images with replacement and applies the same draw to both
    variants (paired), so the interval of the change reflects the val set's
    sampling noise; with several seeds it also draws each variant's seeds with
    replacement, so the interval covers training-seed variation too.  A class
    without ground truth in a resample is left out of that resample.  Resampling
    goes on (up to ``max_resamples``, default ``resamples``) until every bound's
    Monte Carlo error is at most ``mc_error``; the result says how far it got.
    """
    n = baseline[0].shape[0]
    if any(run.shape[0] != n for run in [*baseline, *other]):
        raise ValueError("all runs must be evaluated on the same val images")
    rng = np.random.default_rng(seed)
    parts = {"baseline": [iou_parts(run) for run in baseline], "other": [iou_parts(run) for run in other]}

    def draw(size: int) -> dict[str, np.ndarray]:
        values = {"baseline": [], "other": []}
        for start in range(0, size, chunk):
            part = min(chunk, size - start)
            weights = resample_weights(rng, n, part)
            for name, runs in parts.items():
                per_seed = np.stack([resampled_iou(run, weights) for run in runs])
                values[name].append(seed_mean(per_seed, seed_draws(rng, len(runs), part)))
        a, b = np.concatenate(values["baseline"]), np.concatenate(values["other"])
        miou_a, miou_b = _class_mean(a), _class_mean(b)
        return {
            "baseline": a, "other": b, "change": b - a,
            "miou_baseline": miou_a, "miou_other": miou_b, "miou_change": miou_b - miou_a,
        }  # fmt: skip

    intervals, total, error = adaptive_bootstrap(
        draw, resamples, max(resamples, max_resamples or resamples), mc_error, confidence, ("change", "miou_change")
    )
    result = {
        "baseline": seed_mean(np.stack([iou_from_confusion(run.sum(0)) for run in baseline])),
        "other": seed_mean(np.stack([iou_from_confusion(run.sum(0)) for run in other])),
    }
    result["change"] = result["other"] - result["baseline"]
    result["miou_baseline"], result["miou_other"] = _class_mean(result["baseline"]), _class_mean(result["other"])
    result["miou_change"] = result["miou_other"] - result["miou_baseline"]
    for name, interval in intervals.items():
        for key in ("low", "high", "low_error", "high_error"):
            result[f"{name}_{key}"] = interval[key]
    result["resamples"] = total
    result["mc_error"] = error
    result["left_out"] = 1 - intervals["change"]["used"] / total  # share of resamples without the class
    return result


def change_columns(result: dict) -> dict[str, float]:
    """The mIoU change of a paired_bootstrap result and its interval, in points, with the
    Monte Carlo error of each bound (a table's change, low, high, *mc_error columns)."""
    low_error, high_error = float(result["miou_change_low_error"]), float(result["miou_change_high_error"])
    return {
        "change": 100 * float(result["miou_change"]),
        "low": 100 * float(result["miou_change_low"]),
        "high": 100 * float(result["miou_change_high"]),
        "mc_error": 100 * max(low_error, high_error),
        "low_mc_error": 100 * low_error,
        "high_mc_error": 100 * high_error,
    }


def set_bootstrap(
    sets: dict[str, list[np.ndarray]],
    gaps: list[tuple[str, str]],
    resamples: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
    max_resamples: int | None = None,
    mc_error: float = 0.0005,
    chunk: int = 2000,
) -> dict[str, dict]:
    """mIoU of one model (one array per seed) on several image sets, and the gaps between sets.

    ``sets``: {set name: [per-image confusion (N_set, C, C) per seed]}, every set with
    the same seeds in the same order.  mIoU is the mean over the classes with ground
    truth in the (resampled) set.  Each set's images are resampled on their own (the
    sets are different images); the seeds drawn are shared by all sets of a resample
    (a seed's model is the same on every set).  ``gaps``: (a, b) pairs, reported as a − b.
    Returns {name: {"value", "low", "high", "low_error", "high_error"}} for each set and
    each gap "a − b", plus "resamples" and "mc_error".
    """
    names = list(sets)
    seeds = {len(runs) for runs in sets.values()}
    if len(seeds) != 1:
        raise ValueError(f"every set needs the same seeds: {({k: len(v) for k, v in sets.items()})}")
    (seed_count,) = seeds
    rng = np.random.default_rng(seed)
    parts = {name: [iou_parts(run) for run in runs] for name, runs in sets.items()}

    miou = _class_mean

    def draw(size: int) -> dict[str, np.ndarray]:
        values = {name: [] for name in names}
        for start in range(0, size, chunk):
            part = min(chunk, size - start)
            chosen = seed_draws(rng, seed_count, part)
            for name in names:
                weights = resample_weights(rng, sets[name][0].shape[0], part)
                per_seed = np.stack([miou(resampled_iou(run, weights)) for run in parts[name]])
                values[name].append(seed_mean(per_seed[..., None], chosen)[:, 0])
        drawn = {name: np.concatenate(parts) for name, parts in values.items()}
        drawn.update({f"{a} − {b}": drawn[a] - drawn[b] for a, b in gaps})
        return drawn

    watched = (*names, *(f"{a} − {b}" for a, b in gaps))  # every printed bound
    intervals, total, error = adaptive_bootstrap(
        draw, resamples, max(resamples, max_resamples or resamples), mc_error, confidence, watched
    )
    values = {name: float(np.mean([miou(present_iou(run)) for run in runs])) for name, runs in sets.items()}
    values.update({f"{a} − {b}": values[a] - values[b] for a, b in gaps})
    result: dict[str, dict] = {}
    for name, value in values.items():
        interval = intervals[name]
        result[name] = {"value": value, **{k: float(interval[k]) for k in ("low", "high", "low_error", "high_error")}}
    result["resamples"] = total
    result["mc_error"] = error
    return result


def decimals_for(error: float, most: int = 1) -> int:
    """Decimals a number with Monte Carlo error ``error`` can show: the last printed digit
    must be larger than twice the error (one decimal needs an error of at most 0.05)."""
    decimals = most
    while decimals > 0 and error > 0.5 * 10.0**-decimals * (1 + 1e-9):
        decimals -= 1
    return decimals


# marks a printed bound whose Monte Carlo error is above half a unit of its last digit
MARK = "‡"


def signed(value: float, decimals: int) -> str:
    """``+1.2``, ``-0.3``: the value's own sign, also where it rounds to zero (a bound of
    -0.46 at whole points reads ``-0``, never ``+0``); an exact 0 has none."""
    return ("+" if value > 0 else "-" if value < 0 else "") + f"{abs(float(value)):.{decimals}f}"


def plain(value: float, decimals: int) -> str:
    """An unsigned number (an IoU, an mIoU), without the "-0" of a rounded tiny negative."""
    return f"{round(float(value), decimals) + 0.0:.{decimals}f}"


def unsettled(error: float | None, decimals: int) -> bool:
    """Whether Monte Carlo error ``error`` exceeds half a unit of the last of ``decimals``."""
    return error is not None and bool(np.isfinite(error)) and error > 0.5 * 10.0**-decimals * (1 + 1e-9)


def bound_text(value: float, error: float | None, decimals: int, sign: bool = True) -> str:
    """A printed bound, with MARK where its Monte Carlo error does not settle its last digit."""
    return (signed if sign else plain)(value, decimals) + (MARK if unsettled(error, decimals) else "")


def interval_text(value, low, high, decimals: int, errors=(None, None), sign: bool = True) -> str:
    """``+3 [+1, +5‡]``: a value and its interval, each bound marked by its own error."""
    number = (signed if sign else plain)(value, decimals)
    return f"{number} [{bound_text(low, errors[0], decimals, sign)}, {bound_text(high, errors[1], decimals, sign)}]"


def at_most(error: float) -> str:
    """``error`` rounded up to two significant digits: what "at most" may truthfully say."""
    if not error > 0:
        return "0"
    exponent = math.floor(math.log10(error)) - 1
    step = 10.0**exponent
    return f"{math.ceil(error / step * (1 - 1e-12)) * step:.{max(-exponent, 0)}f}"


def precision_note(largest: float, decimals: int, marked: int) -> str:
    """The footnote's claim on the printed bounds, no more than their resamples support:
    ``largest`` is the largest Monte Carlo error of a printed bound, ``marked`` how many
    carry MARK."""
    half = f"{0.5 * 10.0**-decimals:g}"
    digits = f"{decimals} decimal{'s' if decimals != 1 else ''}" if decimals else "whole points"
    text = (
        f"Monte Carlo standard error of a printed bound (its estimated standard deviation over bootstrap "
        f"seeds): at most {at_most(largest)} points. Printed to {digits}: the error of each bound is at most "
        f"half a unit of its last printed digit ({half} points)"
    )
    if marked:
        text += (
            f", except the {marked} bound{'s' if marked != 1 else ''} marked {MARK}, whose error is larger: "
            "their last printed digit is not settled (more resamples: report.bootstrap.max_resamples)"
        )
    return text + "."


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


def group_per_image(runs: list[dict], paths: list, classes: int = NUM_CLASSES) -> dict[tuple[str, str], list]:
    """{(variant, budget): [per-image confusion per seed]} of runs evaluated on the same
    images, every one in the first run's image order."""
    groups, order = {}, None
    for run, path in zip(runs, paths, strict=True):
        ids, confusion = read_per_image(Path(path), classes)
        order = ids if order is None else order
        groups.setdefault((run["variant"], run["budget"]), []).append(confusion[align(order, ids)])
    return groups
