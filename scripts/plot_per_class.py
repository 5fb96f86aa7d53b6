"""Per-class IoU figures from results/tables/per_class_iou.csv (rule plot_per_class).

* per_class_iou: both variants side by side per class, one panel per budget,
  with the published IoU (a black tick) where the table has it;
* per_class_change: the change per class, sorted, with its bootstrap interval;
  changes whose interval includes 0 are drawn hollow.
"""

import csv
from pathlib import Path

import numpy as np
from matplotlib.patches import Patch

from common.jobs import start_log
from common.subsets import describe_budget, table_budgets
from common.plots import plt, save, variant_colours


def read_table(path: Path):
    """(classes, {budget: {column suffix: values}}) of the per-class table, without the mIoU row."""
    with open(path) as handle:
        rows = [r for r in csv.DictReader(handle) if r["class"] != "mIoU"]
    classes = [r["class"] for r in rows]
    epochs = table_budgets(rows[0] if rows else {})
    data = {}
    for e in epochs:
        data[e] = {
            key: np.array([float(r[column]) if r[column] else np.nan for r in rows])
            for key, column in (
                ("change", f"change {e}"), ("low", f"change {e} low"), ("high", f"change {e} high"),
            )
        }  # fmt: skip
        for variant_column in [k for k in rows[0] if k.endswith(f" {e}") and not k.startswith("change")]:
            data[e][variant_column.rsplit(" ", 1)[0]] = np.array(
                [float(r[variant_column]) if r[variant_column] else np.nan for r in rows]
            )
        for published_column in [k for k in rows[0] if k.endswith(f" {e} published")]:
            data[e][published_column.split(" ")[0] + " published"] = np.array(
                [float(r[published_column]) for r in rows]
            )
    return classes, data


def empty_figure(message: str):
    fig, ax = plt.subplots(figsize=(6, 2))
    ax.text(0.5, 0.5, message, ha="center", va="center")
    ax.set_axis_off()
    return fig


def plot_bars(classes, data, compare):
    if not data:
        return empty_figure("no budget has runs of both compared variants yet")
    colours = variant_colours(compare)
    fig, axes = plt.subplots(len(data), 1, figsize=(13, 3.6 * len(data)), squeeze=False, sharey=True)
    x = np.arange(len(classes))
    for ax, (epochs, values) in zip(axes[:, 0], data.items()):
        for offset, variant in zip((-0.2, 0.2), compare):
            ax.bar(x + offset, values[variant], width=0.4, color=colours[variant], label=variant)
        published = [(offset, v) for offset, v in zip((-0.2, 0.2), compare) if f"{v} published" in values]
        for n, (offset, variant) in enumerate(published):
            ax.scatter(x + offset, values[f"{variant} published"], marker="_", s=220, linewidths=2,
                       color="black", zorder=3, label="published" if n == 0 else None)  # fmt: skip
        ax.set_title(f"Per-class IoU on VOC 2012 val, {describe_budget(epochs)}")
        ax.set_ylabel("IoU (%)")
        ax.set_xticks(x, classes, rotation=45, ha="right")
        ax.set_ylim(0, 100)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    fig.tight_layout()
    return fig


def plot_change(classes, data, compare, confidence):
    if not data:
        return empty_figure("no budget has runs of both compared variants yet")
    baseline, other = compare
    fig, axes = plt.subplots(1, len(data), figsize=(5.5 * len(data), 7), squeeze=False)
    for ax, (epochs, values) in zip(axes[0], data.items()):
        order = np.argsort(values["change"])
        y = np.arange(len(classes))
        change, low, high = values["change"][order], values["low"][order], values["high"][order]
        certain = ~((low <= 0) & (high >= 0))
        colours = np.where(change >= 0, "tab:green", "tab:red")
        ax.barh(y[certain], change[certain], color=colours[certain])
        ax.barh(y[~certain], change[~certain], facecolor="none", edgecolor=colours[~certain], hatch="//")
        ax.errorbar(change, y, xerr=[change - low, high - change], fmt="none", ecolor="black", capsize=2, lw=0.8)
        ax.axvline(0, color="black", lw=0.8)
        ax.set_yticks(y, [classes[i] for i in order])
        ax.set_xlabel(f"IoU change, {other} − {baseline} (points)")
        ax.set_title(describe_budget(epochs))
        ax.grid(axis="x", alpha=0.3)
    handles = [
        Patch(facecolor="grey", label="interval excludes 0"),
        Patch(facecolor="none", edgecolor="grey", hatch="//", label="interval includes 0"),
    ]
    axes[0, -1].legend(handles=handles, loc="lower right", title=f"{confidence:.0%} paired bootstrap", fontsize=8)
    fig.suptitle(f"Per-class change of IoU on VOC 2012 val: {other} vs {baseline}")
    fig.tight_layout()
    return fig


def main(snakemake) -> None:
    start_log(snakemake)
    out, p = snakemake.output, snakemake.params
    classes, data = read_table(Path(snakemake.input.table))
    save(plot_bars(classes, data, p.compare), out.bars, out.bars_pdf)
    save(plot_change(classes, data, p.compare, p.confidence), out.change, out.change_pdf)


if __name__ == "__main__" and "snakemake" in globals():
    main(snakemake)  # noqa: F821
