"""Shared look of the report's figures: colours, line styles, saving PNG + PDF, and
the grid of image tiles with a legend of the VOC classes (plot_qualitative, predict_images)."""

from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from common.voc import CLASSES, IGNORE_INDEX, palette  # noqa: E402

LINESTYLES = ["-", "--", ":", "-."]
IGNORE_RGB = (255, 255, 255)  # how label value 255 (ignore) is drawn
LEGEND_COLUMNS = 6


def variant_colours(variants) -> dict:
    cmap = plt.get_cmap("tab10")
    return {variant: cmap(i % 10) for i, variant in enumerate(variants)}


def save(fig, png: Path, pdf: Path) -> None:
    """Write ``fig`` as PNG (the report's) and PDF (for papers), then close it."""
    for path in (png, pdf):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=150, bbox_inches="tight")
    plt.close(fig)


def run_label(run: dict) -> str:
    return f"{run['variant']} {run['budget']} s{run['seed']}"


def class_handles(present, background: bool = True) -> list:
    """Legend entries of the VOC classes in ``present`` (label values), in the VOC palette,
    in class order; ``ignore (255)`` last when 255 is present.  Without ``background``,
    class 0 is left out (overlays leave it clear)."""
    colours = np.array(palette(), dtype=float).reshape(256, 3) / 255
    first = 0 if background else 1
    shown = [c for c in sorted(present) if first <= c < len(CLASSES)]
    handles = [Patch(color=colours[c], label=CLASSES[c]) for c in shown]
    if IGNORE_INDEX in present:
        handles.append(Patch(facecolor=np.array(IGNORE_RGB) / 255, edgecolor="grey", label="ignore (255)"))
    return handles


def tile_grid(rows, columns: list[str], title: str, figsize, bottom: float, handles=(), height_ratios=None):
    """A figure of ``rows`` (name, [tiles]) x ``columns``: images without ticks, the column
    names over the first row, each row's name on its left, ``handles`` in a legend
    below.  ``bottom``: the fraction of the figure's height kept free for the legend."""
    fig, axes = plt.subplots(
        len(rows),
        len(columns),
        figsize=figsize,
        gridspec_kw={"height_ratios": height_ratios},
        squeeze=False,
    )
    for r, (name, tiles) in enumerate(rows):
        for c, tile in enumerate(tiles):
            ax = axes[r, c]
            ax.imshow(tile)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(columns[c], fontsize=10)
        axes[r, 0].set_ylabel(name, fontsize=8)
    if handles:
        fig.legend(
            handles=handles, loc="lower center", ncol=min(LEGEND_COLUMNS, len(handles)), frameon=False, fontsize=8
        )
    fig.suptitle(title)
    fig.tight_layout(rect=(0, bottom, 1, 1))
    return fig
