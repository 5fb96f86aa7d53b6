"""Validation mIoU during training for every run, and final mIoU against training
length per variant (rule plot_learning_curves).

The x axis is epochs, or with ``report.learning_curves_x: images`` the images seen
(epochs x the run's training-set size, from its ``train_set.json``): runs of
different set sizes are then read at equal compute.
"""

from pathlib import Path

import numpy as np

from common.history import read_miou_curve
from common.jobs import start_log
from common.run_files import read_metrics, read_train_set
from common.plots import LINESTYLES, plt, save, variant_colours
from common.subsets import budget_key, parse_budget

X_LABELS = {"epochs": "epoch", "images": "training images seen (epochs x set size)"}


def read_curve(path: Path):
    """The validated epochs of a run's history and their mIoU."""
    epochs, miou = read_miou_curve(path)
    return [e for e, m in zip(epochs, miou) if m is not None], [m for m in miou if m is not None]


def seed_curves(runs, histories, sizes=None, x: str = "epochs"):
    """{(variant, budget): (x values validated by every seed, (seeds, points) mIoU)}."""
    curves: dict[tuple[str, str], list[dict[int, float]]] = {}
    sizes = sizes or [1] * len(runs)
    for run, path, size in zip(runs, histories, sizes):
        epochs, miou = read_curve(Path(path))
        scale = size if x == "images" else 1
        curves.setdefault((run["variant"], run["budget"]), []).append({e * scale: m for e, m in zip(epochs, miou)})
    result = {}
    for key, seeds in curves.items():
        common = sorted(set.intersection(*(set(c) for c in seeds)))
        result[key] = (common, np.array([[c[e] for e in common] for c in seeds]).reshape(len(seeds), len(common)))
    return result


def plot_curves(runs, histories, sizes=None, x: str = "epochs"):
    """One line per variant and budget: the mean over seeds, with the band from the
    lowest to the highest seed when there are several."""
    variants = list(dict.fromkeys(r["variant"] for r in runs))
    budgets = sorted({r["budget"] for r in runs}, key=budget_key)
    colours = variant_colours(variants)
    fig, ax = plt.subplots(figsize=(8, 5))
    for (variant, budget), (points, miou) in seed_curves(runs, histories, sizes, x).items():
        style = LINESTYLES[budgets.index(budget) % len(LINESTYLES)]
        seeds = miou.shape[0]
        label = f"{variant} {budget}" + (f" ({seeds} seeds: mean, min-max band)" if seeds > 1 else "")
        mean = miou.mean(axis=0) if seeds else []
        ax.plot(points, mean, style, color=colours[variant], label=label, marker="." if len(points) < 30 else None)
        if seeds > 1:
            ax.fill_between(points, miou.min(axis=0), miou.max(axis=0), color=colours[variant], alpha=0.2, lw=0)
    ax.set_xlabel(X_LABELS[x])
    ax.set_ylabel("val mIoU (%)")
    ax.set_title("Validation mIoU during training (colour: variant, line: budget)")
    ax.grid(alpha=0.3)
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
