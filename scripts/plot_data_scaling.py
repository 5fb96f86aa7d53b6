"""results/figures/data_scaling.{png,pdf} (+ data_scaling.csv, its numbers): val mIoU,
and COCO-VOC mIoU where that evaluation exists, against training images on a log
axis, one line per annotation source (VOC, SBD, mixed) and budget, at equal
iterations (rule plot_data_scaling).

Each point is a variant at an iteration budget: the mean over its seeds with the
percentile bootstrap interval over images and seeds.  Without iteration budgets
in the config the points are at equal epochs, and the title says that compute
then differs between points.
"""

import logging
from pathlib import Path

import numpy as np
from matplotlib.ticker import FuncFormatter

from common.jobs import start_log, write_csv
from common.plots import LINESTYLES, plt, save
from common.run_files import read_per_image, read_train_set
from common.stats import align, set_bootstrap
from common.subsets import budget_key, parse_budget

log = logging.getLogger("plot_data_scaling")

SOURCES = ("VOC", "SBD", "mixed")
COLOURS = {"VOC": "tab:blue", "SBD": "tab:orange", "mixed": "tab:green"}
SET_TITLES = {"val": "VOC 2012 val", "coco": "COCO val, VOC classes"}
COLUMNS = ["variant", "budget", "source", "images", "seeds", "set", "mIoU", "low", "high"]


def measure(runs: list[dict], sources: dict, train_sets: list[str], files: dict[str, list[str]], bootstrap: dict):
    """Rows of (variant, budget, source, images, set, mIoU and interval) per point and set."""
    groups: dict[tuple[str, str], dict] = {}
    for index, run in enumerate(runs):
        group = groups.setdefault((run["variant"], run["budget"]), {"images": None, "sets": {}})
        group["images"] = read_train_set(Path(train_sets[index]))["images"]
        for name, paths in files.items():
            ids, confusion = read_per_image(Path(paths[index]))
            first = group.setdefault("order", {}).setdefault(name, ids)
            group["sets"].setdefault(name, []).append(confusion[align(first, ids)])
    rows = []
    for (variant, budget), group in groups.items():
        result = set_bootstrap(
            group["sets"], [], resamples=bootstrap["resamples"], seed=bootstrap["seed"],
            confidence=bootstrap["confidence"], max_resamples=bootstrap["max_resamples"],
            mc_error=bootstrap["mc_error"] / 100,
        )  # fmt: skip
        for name in group["sets"]:
            rows.append(
                {
                    "variant": variant, "budget": budget, "source": sources[variant], "images": group["images"],
                    "seeds": len(group["sets"][name]), "set": name, "mIoU": round(100 * result[name]["value"], 4),
                    "low": round(100 * result[name]["low"], 4), "high": round(100 * result[name]["high"], 4),
                }
            )  # fmt: skip
    return rows


def plot(rows: list[dict], sets: list[str], equal_iterations: bool, confidence: float):
    fig, axes = plt.subplots(1, max(len(sets), 1), figsize=(5.5 * max(len(sets), 1), 4.5), squeeze=False)
    budgets = sorted({r["budget"] for r in rows}, key=budget_key)
    for ax, name in zip(axes[0], sets or ["val"]):
        mine = [r for r in rows if r["set"] == name]
        for source in SOURCES:
            for budget in budgets:
                points = sorted((r for r in mine if r["source"] == source and r["budget"] == budget), key=lambda r: r["images"])
                if not points:
                    continue
                x = np.array([p["images"] for p in points], float)
                y = np.array([p["mIoU"] for p in points])
                low, high = np.array([p["low"] for p in points]), np.array([p["high"] for p in points])
                ax.errorbar(
                    x, y, yerr=[y - low, high - y], color=COLOURS[source], capsize=3, marker="o",
                    linestyle=LINESTYLES[budgets.index(budget) % len(LINESTYLES)], label=f"{source} labels, {budget}",
                )  # fmt: skip
                for p in points:
                    ax.annotate(p["variant"], (p["images"], p["mIoU"]), fontsize=6, xytext=(3, 3), textcoords="offset points")
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:,.0f}"))
        ax.xaxis.set_minor_formatter(FuncFormatter(lambda value, _: ""))
        ax.set_xlabel("training images (log)")
        ax.set_ylabel(f"mIoU on {SET_TITLES.get(name, name)} (%)")
        ax.grid(alpha=0.3, which="both")
        if mine:
            ax.legend(frameon=False, fontsize=7)
        else:
            ax.text(0.5, 0.5, "no run has finished yet", ha="center", va="center", transform=ax.transAxes)
    how = "at equal iterations" if equal_iterations else "at equal epochs (no iteration budget: compute differs)"
    fig.suptitle(f"mIoU against training images, {how}; bars: {confidence:.0%} interval over images and seeds")
    fig.tight_layout()
    return fig


def main(snakemake) -> None:
    start_log(snakemake)
    p, i, out = snakemake.params, snakemake.input, snakemake.output
    files = {"val": list(i.val), **{name: list(getattr(i, f"ood_{name}")) for name in p.ood}}
    rows = measure(p.runs, p.sources, list(i.train_set), files, p.bootstrap)
    write_csv(Path(out.csv), COLUMNS, rows)
    equal_iterations = all(parse_budget(r["budget"])[0] == "iterations" for r in p.runs) and bool(p.runs)
    save(plot(rows, list(files), equal_iterations, p.bootstrap["confidence"]), out.png, out.pdf)
    log.info("%d points of %d runs", len({(r['variant'], r['budget']) for r in rows}), len(p.runs))


if __name__ == "__main__" and "snakemake" in globals():
    main(snakemake)  # noqa: F821
