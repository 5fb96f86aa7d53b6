"""Shared look of the report's figures: colours, line styles, saving PNG + PDF."""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

LINESTYLES = ["-", "--", ":", "-."]


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
