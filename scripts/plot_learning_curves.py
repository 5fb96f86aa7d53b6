"""Validation mIoU against epoch for every run, and final mIoU against epoch
count per variant (rule plot_learning_curves)."""

from pathlib import Path

import numpy as np

from common.history import read_miou_curve
from common.jobs import start_log
from common.run_files import read_metrics
from common.plots import LINESTYLES, plt, save, variant_colours


def read_curve(path: Path):
    """The validated epochs of a run's history and their mIoU."""
    epochs, miou = read_miou_curve(path)
    return [e for e, m in zip(epochs, miou) if m is not None], [m for m in miou if m is not None]


def seed_curves(runs, histories) -> dict[tuple[str, int], tuple[list[int], np.ndarray]]:
    """{(variant, epochs): (epochs validated by every seed, (seeds, epochs) mIoU)}."""
    curves: dict[tuple[str, int], list[dict[int, float]]] = {}
    for run, path in zip(runs, histories):
        epochs, miou = read_curve(Path(path))
        curves.setdefault((run["variant"], run["epochs"]), []).append(dict(zip(epochs, miou)))
    result = {}
    for key, seeds in curves.items():
        common = sorted(set.intersection(*(set(c) for c in seeds)))
        result[key] = (common, np.array([[c[e] for e in common] for c in seeds]).reshape(len(seeds), len(common)))
    return result


def plot_curves(runs, histories):
    """One line per variant and epoch count: the mean over seeds, with the band from the
    lowest to the highest seed when there are several."""
    variants = list(dict.fromkeys(r["variant"] for r in runs))
    epoch_counts = sorted({r["epochs"] for r in runs})
    colours = variant_colours(variants)
    fig, ax = plt.subplots(figsize=(8, 5))
    for (variant, count), (epochs, miou) in seed_curves(runs, histories).items():
        style = LINESTYLES[epoch_counts.index(count) % len(LINESTYLES)]
        seeds = miou.shape[0]
        label = f"{variant} e{count}" + (f" ({seeds} seeds: mean, min-max band)" if seeds > 1 else "")
        mean = miou.mean(axis=0) if seeds else []
        ax.plot(epochs, mean, style, color=colours[variant], label=label, marker="." if len(epochs) < 30 else None)
        if seeds > 1:
            ax.fill_between(epochs, miou.min(axis=0), miou.max(axis=0), color=colours[variant], alpha=0.2, lw=0)
    ax.set_xlabel("epoch")
    ax.set_ylabel("val mIoU (%)")
    ax.set_title("Validation mIoU during training (colour: variant, line: epoch count)")
    ax.grid(alpha=0.3)
    if runs:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize=8)
    fig.tight_layout()
    return fig


def plot_final(runs, metrics):
    variants = list(dict.fromkeys(r["variant"] for r in runs))
    colours = variant_colours(variants)
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    final = [(r, read_metrics(Path(m))["mIoU"]) for r, m in zip(runs, metrics)]
    for variant in variants:
        points = [(r["epochs"], miou) for r, miou in final if r["variant"] == variant]
        xs = sorted({e for e, _ in points})
        means = [np.mean([m for e, m in points if e == x]) for x in xs]
        ax.scatter([e for e, _ in points], [m for _, m in points], color=colours[variant], alpha=0.6, s=18)
        ax.plot(xs, means, "-o", color=colours[variant], label=variant)
    ax.set_xlabel("epochs trained")
    ax.set_ylabel("final val mIoU (%)")
    ax.set_title("Final mIoU by training length (points: seeds, line: mean)")
    if final:
        ax.set_xticks(sorted({r["epochs"] for r in runs}))
        ax.legend(frameon=False)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def main(snakemake) -> None:
    start_log(snakemake)
    out, runs = snakemake.output, snakemake.params.runs
    save(plot_curves(runs, snakemake.input.history), out.curves, out.curves_pdf)
    save(plot_final(runs, snakemake.input.metrics), out.final, out.final_pdf)


if __name__ == "__main__" and "snakemake" in globals():
    main(snakemake)  # noqa: F821
