"""results/figures/annotation_agreement.{png,pdf}: does a class's IoU change follow how
differently SBD draws it? (rule plot_annotations)

Per class, the SBD-vs-VOC agreement IoU (``annotations.csv``) beside the
class's IoU change, other − baseline, at the longest budget of the
per-class table (``per_class_iou.csv``), with its bootstrap interval:

* left, a scatter of agreement (x) against change (y), the classes named,
  with the Pearson and Spearman correlation over the classes;
* right, the same two numbers as paired bars, classes sorted by agreement.

If SBD's coarser outlines (not memorisation) cost a class its IoU, the
classes SBD draws least like VOC lose the most: a positive correlation.
"""

import csv
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.stats import rankdata

from common.jobs import start_log
from common.subsets import describe_budget, longest_budget, table_budgets
from common.plots import plt, save

log = logging.getLogger("plot_annotations")

AGREEMENT = "agreement IoU"


@dataclass
class Pairs:
    """Per class (those with both numbers): agreement, change and its interval; correlations."""

    classes: list[str]
    agreement: np.ndarray  # percent
    change: np.ndarray  # IoU points, other − baseline
    low: np.ndarray  # interval of the change (NaN where the table has none)
    high: np.ndarray
    budget: str | None  # the budget the change is taken at (the longest)
    pearson: float
    spearman: float


def _float(text: str) -> float:
    return float(text) if text not in ("", None) else math.nan


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def correlations(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(Pearson, Spearman) of ``x`` and ``y``; NaN with fewer than 3 pairs or a constant one."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return math.nan, math.nan
    pearson = float(np.corrcoef(x, y)[0, 1])
    spearman = float(np.corrcoef(rankdata(x), rankdata(y))[0, 1])
    return pearson, spearman


def agreement_and_change(table: Path, per_class: Path) -> Pairs:
    """Pair each class's agreement (``table``) with its change at the longest budget.

    Rows that are not classes of both tables (``all``, ``mIoU``) and classes
    missing either number are left out.
    """
    agreement = {r["class"]: _float(r[AGREEMENT]) for r in _rows(table)}
    rows = _rows(per_class)
    columns = rows[0].keys() if rows else []
    chosen = longest_budget(table_budgets(columns))
    classes, values = [], []
    for row in rows:
        name = row["class"]
        if chosen is None or name not in agreement:
            continue
        change = _float(row[f"change {chosen}"])
        if math.isnan(change) or math.isnan(agreement[name]):
            continue
        low, high = _float(row.get(f"change {chosen} low", "")), _float(
            row.get(f"change {chosen} high", "")
        )
        classes.append(name)
        values.append((agreement[name], change, low, high))
    array = np.array(values, float).reshape(-1, 4)
    pearson, spearman = correlations(array[:, 0], array[:, 1])
    return Pairs(classes, *array.T, chosen, pearson, spearman)


def _correlation_text(pairs: Pairs) -> str:
    def number(value):
        return "n/a" if math.isnan(value) else f"{value:+.2f}"

    return (
        f"Pearson r = {number(pairs.pearson)}\nSpearman ρ = {number(pairs.spearman)}\n"
        f"n = {len(pairs.classes)} classes"
    )


def _error(pairs: Pairs, index=slice(None)) -> np.ndarray:
    """Error bar lengths (below, above) where an interval exists, 0 elsewhere."""
    below = np.nan_to_num(pairs.change[index] - pairs.low[index], nan=0.0)
    above = np.nan_to_num(pairs.high[index] - pairs.change[index], nan=0.0)
    return np.vstack([np.clip(below, 0, None), np.clip(above, 0, None)])


def label_heights(pairs: Pairs, spacing: float = 0.03) -> np.ndarray:
    """Heights for the scatter's class names (written right of their points).

    Points of about the same agreement form a group; within it the names keep
    ``spacing`` (a fraction of the y axis' range) apart, in the order of the
    points, each run of crowded names centred on its points' mean height.
    """
    y = pairs.change.astype(float).copy()
    if len(y) < 2:
        return y
    extent = np.concatenate([y, pairs.low, pairs.high])  # what the y axis will show
    gap = max(np.nanmax(extent) - np.nanmin(extent), 1.0) * spacing
    near = max(np.ptp(pairs.agreement), 1.0) * 0.12
    by_x = np.argsort(pairs.agreement, kind="stable")
    groups, group = [], [by_x[0]]
    for previous, i in zip(by_x, by_x[1:]):
        if pairs.agreement[i] - pairs.agreement[previous] < near:
            group.append(i)
        else:
            groups.append(group)
            group = [i]
    groups.append(group)
    for group in groups:
        # blocks of names, each centred on its points; overlapping blocks merge
        blocks = [[i] for i in sorted(group, key=lambda i: (pairs.change[i], i))]
        merged = True
        while merged:
            merged = False
            for k in range(len(blocks) - 1):
                top_of_lower = np.mean(pairs.change[blocks[k]]) + (len(blocks[k]) - 1) / 2 * gap
                bottom_of_upper = (
                    np.mean(pairs.change[blocks[k + 1]]) - (len(blocks[k + 1]) - 1) / 2 * gap
                )
                if bottom_of_upper - top_of_lower < gap:
                    blocks[k : k + 2] = [blocks[k] + blocks[k + 1]]
                    merged = True
                    break
        for block in blocks:
            centre = np.mean(pairs.change[block])
            y[block] = centre + (np.arange(len(block)) - (len(block) - 1) / 2) * gap
    return y


def plot(pairs: Pairs, compare):
    """The figure: scatter (left), paired bars (right)."""
    baseline, other = compare
    if not pairs.classes:
        fig, ax = plt.subplots(figsize=(6, 2))
        ax.text(
            0.5,
            0.5,
            "no class has both an agreement and an IoU change yet",
            ha="center",
            va="center",
        )
        ax.set_axis_off()
        return fig
    change_label = f"IoU change, {other} − {baseline} (points)"
    fig = plt.figure(figsize=(15, 7.5))
    # a blank column between the scatter and the bars keeps the bars' class names clear
    grid = fig.add_gridspec(1, 4, width_ratios=[1.5, 0.2, 0.8, 0.8], wspace=0.08)
    scatter = fig.add_subplot(grid[0])
    scatter.errorbar(
        pairs.agreement, pairs.change, yerr=_error(pairs), fmt="o", color="tab:blue",
        ecolor="grey", elinewidth=0.8, capsize=2, markersize=5,
    )  # fmt: skip
    x_pad = max(np.ptp(pairs.agreement), 1.0) * 0.18
    scatter.set_xlim(np.min(pairs.agreement) - x_pad / 3, np.max(pairs.agreement) + x_pad)
    heights = label_heights(pairs)
    for name, x, y, label_y in zip(pairs.classes, pairs.agreement, pairs.change, heights):
        scatter.annotate(
            name, (x, y), xytext=(x + x_pad / 12, label_y), fontsize=8, va="center",
            arrowprops={"arrowstyle": "-", "color": "grey", "lw": 0.5} if label_y != y else None,
        )  # fmt: skip
    scatter.axhline(0, color="black", lw=0.8)
    low, high = scatter.get_ylim()
    margin = (high - low) * 0.03
    scatter.set_ylim(min(low, heights.min() - margin), max(high, heights.max() + margin))
    scatter.set_xlabel("SBD-vs-VOC agreement IoU (%)")
    scatter.set_ylabel(change_label)
    scatter.grid(alpha=0.3)
    scatter.text(
        0.02, 0.03, _correlation_text(pairs), transform=scatter.transAxes, fontsize=9, va="bottom",
        bbox={"facecolor": "white", "edgecolor": "grey", "alpha": 0.9},
    )  # fmt: skip
    scatter.set_title("Agreement vs IoU change, per class")

    order = np.argsort(-pairs.agreement, kind="stable")  # best agreement on top
    y = np.arange(len(order))
    names = [pairs.classes[i] for i in order]
    bars = fig.add_subplot(grid[2])
    bars.barh(y, pairs.agreement[order], color="tab:blue")
    bars.set_yticks(y, names)
    bars.invert_yaxis()
    bars.set_xlim(min(0.0, np.nanmin(pairs.agreement)), 100)
    bars.set_xlabel("agreement IoU (%)")
    bars.set_title("SBD vs VOC labels")
    bars.grid(axis="x", alpha=0.3)
    changes = fig.add_subplot(grid[3], sharey=bars)
    colours = np.where(pairs.change[order] >= 0, "tab:green", "tab:red")
    changes.barh(y, pairs.change[order], color=colours)
    changes.errorbar(
        pairs.change[order],
        y,
        xerr=_error(pairs, order),
        fmt="none",
        ecolor="black",
        capsize=2,
        lw=0.8,
    )
    changes.axvline(0, color="black", lw=0.8)
    changes.tick_params(labelleft=False)
    changes.set_xlabel("IoU change (points)")
    changes.set_title(f"{other} − {baseline}")
    changes.grid(axis="x", alpha=0.3)
    fig.suptitle(
        f"SBD-vs-VOC label agreement and the IoU change of {other} over {baseline} "
        f"({describe_budget(pairs.budget) if pairs.budget else 'no runs'}; error bars: bootstrap interval)"
    )
    return fig


def main(snakemake) -> None:
    start_log(snakemake)
    pairs = agreement_and_change(Path(snakemake.input.table), Path(snakemake.input.per_class))
    log.info(
        "%d classes at %s: Pearson r %.3f, Spearman rho %.3f",
        len(pairs.classes), pairs.budget, pairs.pearson, pairs.spearman,
    )  # fmt: skip
    for name, agreement, change in zip(pairs.classes, pairs.agreement, pairs.change):
        log.info("%-12s agreement %6.2f  change %+7.2f", name, agreement, change)
    fig = plot(pairs, snakemake.params.compare)
    save(fig, Path(snakemake.output.png), Path(snakemake.output.pdf))


if __name__ == "__main__" and "snakemake" in globals():
    main(snakemake)  # noqa: F821
