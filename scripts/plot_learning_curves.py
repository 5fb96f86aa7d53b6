"""Validation mIoU and training loss during training for every run, and final mIoU
against training length per variant (rule plot_learning_curves).

The x axis is epochs, or with ``report.learning_curves_x: images`` the images seen
(epochs x the run's training-set size, from its ``train_set.json``): runs of
different set sizes are then read at equal compute.
"""

from pathlib import Path

import numpy as np

from common.jobs import start_log
from common.run_files import read_history, read_metrics, read_train_set
from common.plots import LINESTYLES, plt, save, variant_colours
from common.subsets import budget_key, parse_budget

X_LABELS = {"epochs": "epoch", "images": "training images seen (epochs x set size)"}


def read_curve(path: Path, column: str = "mIoU"):
    """The epochs of a run's history that have ``column`` (val mIoU, train_loss) and its values."""
    rows = [row for row in read_history(path) if row.get(column) is not None]
    return [row["epoch"] for row in rows], [row[column] for row in rows]


def seed_curves(runs, histories, sizes=None, x: str = "epochs", column: str = "mIoU"):
    """{(variant, budget): (x values every seed has, (seeds, points) values of ``column``)}."""
    curves: dict[tuple[str, str], list[dict[int, float]]] = {}
    sizes = sizes or [1] * len(runs)
    for run, path, size in zip(runs, histories, sizes):
        epochs, miou = read_curve(Path(path), column)
        scale = size if x == "images" else 1
        curves.setdefault((run["variant"], run["budget"]), []).append({e * scale: m for e, m in zip(epochs, miou)})
    result = {}
    for key, seeds in curves.items():
        common = sorted(set.intersection(*(set(c) for c in seeds)))
        result[key] = (common, np.array([[c[e] for e in common] for c in seeds]).reshape(len(seeds), len(common)))
    return result


def plot_curves(runs, histories, sizes=None, x: str = "epochs"):
    """One line per variant and budget: the mean over seeds, with the band from the
    lowest to the highest seed when there are several; val mIoU above, the training
    loss (mean of the epoch's logged steps) below."""
    variants = list(dict.fromkeys(r["variant"] for r in runs))
    budgets = sorted({r["budget"] for r in runs}, key=budget_key)
    colours = variant_colours(variants)
    fig, (ax, loss_ax) = plt.subplots(2, 1, figsize=(8, 7.5), sharex=True, height_ratios=(3, 2))
    for axis, column in ((ax, "mIoU"), (loss_ax, "train_loss")):
        for (variant, budget), (points, values) in seed_curves(runs, histories, sizes, x, column).items():
            style = LINESTYLES[budgets.index(budget) % len(LINESTYLES)]
            seeds = values.shape[0]
            label = f"{variant} {budget}" + (f" ({seeds} seeds: mean, min-max band)" if seeds > 1 else "")
            mean = values.mean(axis=0) if seeds else []
            marker = "." if len(points) < 30 else None
            axis.plot(points, mean, style, color=colours[variant], label=label, marker=marker)
            if seeds > 1:
                axis.fill_between(points, values.min(axis=0), values.max(axis=0), color=colours[variant], alpha=0.2, lw=0)
        axis.grid(alpha=0.3)
    loss_ax.set_xlabel(X_LABELS[x])
    ax.set_ylabel("val mIoU (%)")
    loss_ax.set_ylabel("training loss")
    ax.set_title("Validation mIoU and training loss during training (colour: variant, line: budget)")
    if runs:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize=8)
    fig.tight_layout()
    return fig


def plot_final(runs, metrics, epochs):
    """Final mIoU against the epochs each run trained: lines join a variant's epoch
    counts; iteration budgets are open markers at the epochs they came to."""
    variants = list(dict.fromkeys(r["variant"] for r in runs))
    colours = variant_colours(variants)
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    final = [(r, e, read_metrics(Path(m))["mIoU"]) for r, e, m in zip(runs, epochs, metrics)]
    for variant in variants:
        mine = [(r, e, m) for r, e, m in final if r["variant"] == variant]
        by_epochs = [(e, m) for r, e, m in mine if parse_budget(r["budget"])[0] == "epochs"]
        by_steps = [(e, m) for r, e, m in mine if parse_budget(r["budget"])[0] == "iterations"]
        xs = sorted({e for e, _ in by_epochs})
        means = [np.mean([m for e, m in by_epochs if e == x]) for x in xs]
        ax.scatter([e for e, _ in by_epochs], [m for _, m in by_epochs], color=colours[variant], alpha=0.6, s=18)
        if xs:
            ax.plot(xs, means, "-o", color=colours[variant], label=variant)
        if by_steps:
            ax.scatter(
                [e for e, _ in by_steps], [m for _, m in by_steps], facecolors="none",
                edgecolors=[colours[variant]], s=40, label=f"{variant}, iteration budgets",
            )  # fmt: skip
    ax.set_xlabel("epochs trained")
    ax.set_ylabel("final val mIoU (%)")
    ax.set_title("Final mIoU by training length (points: seeds, line: mean)")
    if final:
        ax.set_xticks(sorted({e for _, e, _ in final}))
        ax.legend(frameon=False, fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def main(snakemake) -> None:
    start_log(snakemake)
    out, p, i = snakemake.output, snakemake.params, snakemake.input
    trained = [read_train_set(Path(path)) for path in i.train_set]
    sizes = [t["images"] for t in trained]
    save(plot_curves(p.runs, i.history, sizes, p.x), out.curves, out.curves_pdf)
    save(plot_final(p.runs, i.metrics, [t["epochs"] for t in trained]), out.final, out.final_pdf)


if __name__ == "__main__" and "snakemake" in globals():
    main(snakemake)  # noqa: F821
