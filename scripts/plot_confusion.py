"""Where the hardest classes' pixels go: rows of the confusion matrix of each
variant's longest run, normalised per row (rule plot_confusion)."""

from pathlib import Path

import numpy as np

from common.jobs import start_log
from common.run_files import read_confusion
from common.plots import plt, run_label, save
from common.voc import CLASSES


def hard_rows(confusion: np.ndarray, classes: list[str]) -> np.ndarray:
    """Rows of ``classes`` as fractions of their ground-truth pixels (NaN for absent classes)."""
    rows = confusion[[CLASSES.index(c) for c in classes]].astype(float)
    with np.errstate(invalid="ignore"):
        return rows / rows.sum(axis=1, keepdims=True)


def plot(runs, confusions, classes):
    height = 1.6 + len(runs) * (1.4 + 0.45 * len(classes))
    fig, axes = plt.subplots(max(1, len(runs)), 1, figsize=(12, height), squeeze=False, layout="constrained")
    image = None
    for ax, run, confusion in zip(axes[:, 0], runs, confusions):
        rows = hard_rows(confusion, classes)
        image = ax.imshow(rows * 100, cmap="Blues", vmin=0, vmax=100, aspect="auto")
        for (r, c), value in np.ndenumerate(rows * 100):
            if value >= 5:
                ax.text(c, r, f"{value:.0f}", ha="center", va="center", fontsize=7,
                        color="white" if value > 60 else "black")  # fmt: skip
        ax.set_yticks(range(len(classes)), classes)
        ax.set_xticks(range(len(CLASSES)), CLASSES, rotation=45, ha="right", fontsize=8)
        ax.set_title(f"{run_label(run)}: ground-truth class (row) → predicted class (column), % of row")
    if image is not None:
        fig.colorbar(image, ax=axes[:, 0].tolist(), label="% of the class's pixels", shrink=0.8)
    else:
        axes[0, 0].text(0.5, 0.5, "no finished runs yet", ha="center", va="center")
        axes[0, 0].set_axis_off()
    return fig


def main(snakemake) -> None:
    start_log(snakemake)
    confusions = [read_confusion(Path(p)) for p in snakemake.input.confusion]
    fig = plot(snakemake.params.runs, confusions, snakemake.params.classes)
    save(fig, snakemake.output.matrix, snakemake.output.matrix_pdf)


if __name__ == "__main__" and "snakemake" in globals():
    main(snakemake)  # noqa: F821
