"""Figure generalization_gap from results/tables/generalization.csv (rule plot_generalization).

Left: mIoU of each variant on its own training images, on VOC val and on each set
from outside VOC, against epochs.  Right: the gaps (train − val, val − outside)
with their bootstrap intervals: a model that overfits has a large train − val
gap; one that does not generalize beyond VOC's pictures a large val − COCO gap.
"""

import csv
from pathlib import Path

import numpy as np

from common.jobs import start_log
from common.plots import plt, save, variant_colours
from common.subsets import budget_key

SET_LABELS = {"train": "own training\nimages", "val": "VOC val", "coco": "COCO\n(VOC classes)"}
MARKERS = ["o", "s", "^", "D"]


def read_table(path: Path) -> list[dict]:
    with open(path) as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        for key, value in row.items():
            if key not in ("variant", "budget"):
                row[key] = float(value) if value not in ("", None) else np.nan
    return rows


def plot(rows: list[dict], variants: list[str], confidence: float):
    """Left: mIoU per image set; right: the gaps; one marker series per variant and
    budget (colour: variant, marker: budget), with the intervals."""
    if not rows:
        fig, ax = plt.subplots(figsize=(6, 2))
        ax.text(0.5, 0.5, "no run has finished yet", ha="center", va="center")
        ax.set_axis_off()
        return fig
    columns = list(rows[0])
    sets = [c[: -len(" mIoU")] for c in columns if c.endswith(" mIoU") and not c.startswith("gap ")]
    gaps = [c for c in columns if c.startswith("gap ") and not c.endswith((" low", " high"))]
    colours = variant_colours(variants)
    budgets = sorted({r["budget"] for r in rows}, key=budget_key)
    series = sorted(
        rows, key=lambda r: (variants.index(r["variant"]) if r["variant"] in variants else 99, budget_key(r["budget"]))
    )
    width = 0.7 / max(len(series), 1)
    fig, (left, right) = plt.subplots(
        1, 2, figsize=(10 + 0.6 * len(series), 4.8), constrained_layout=True,
        gridspec_kw={"width_ratios": [max(len(sets), 1), max(len(gaps), 1)]},
    )  # fmt: skip
    for k, row in enumerate(series):
        offset = (k - (len(series) - 1) / 2) * width
        style = dict(
            color=colours.get(row["variant"], "grey"), marker=MARKERS[budgets.index(row["budget"]) % 4],
            linestyle="none", capsize=3, label=f"{row['variant']} {row['budget']}",
        )  # fmt: skip
        for ax, names, value_of in ((left, sets, lambda n: f"{n} mIoU"), (right, gaps, lambda n: n)):
            values = np.array([row[value_of(n)] for n in names])
            low = np.array([row[f"{n} low"] for n in names])
            high = np.array([row[f"{n} high"] for n in names])
            ax.errorbar(np.arange(len(names)) + offset, values, yerr=[values - low, high - values], **style)
    left.set_xticks(range(len(sets)), [SET_LABELS.get(n, n) for n in sets])
    left.set_ylabel("mIoU (%)")
    left.set_title("mIoU on each image set")
    right.set_xticks(range(len(gaps)), [g[4:] for g in gaps])
    right.set_ylabel("gap (mIoU points)")
    right.set_title("Gaps: train-val (overfitting),\nval-coco (beyond VOC)")
    right.axhline(0, color="black", lw=0.8)
    for ax in (left, right):
        ax.grid(axis="y", alpha=0.3)
    right.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False,
                 title=f"{confidence:.0%} bootstrap intervals")  # fmt: skip
    fig.suptitle("Overfitting and generalization, per variant and epoch count")
    return fig


def main(snakemake) -> None:
    start_log(snakemake)
    rows = read_table(Path(snakemake.input.table))
    p = snakemake.params
    save(plot(rows, list(p.variants), p.confidence), snakemake.output.png, snakemake.output.pdf)


if __name__ == "__main__" and "snakemake" in globals():
    main(snakemake)  # noqa: F821
