"""Qualitative panel: val images x (image, ground truth, each variant's prediction)
in the VOC palette, 255 shown as ignore (rule plot_qualitative)."""

from pathlib import Path

import numpy as np
from PIL import Image

from common.jobs import start_log
from common.plots import IGNORE_RGB, LEGEND_COLUMNS, class_handles, run_label, save, tile_grid
from common.voc import palette, read_id_list


def pick_images(val_ids: list[str], chosen, count: int) -> list[str]:
    """The configured ids (checked), or ``count`` evenly spaced val ids."""
    if chosen:
        unknown = [i for i in chosen if i not in set(val_ids)]
        if unknown:
            raise ValueError(f"report.qualitative_images: not in val.txt: {', '.join(unknown)}")
        return list(chosen)
    ids = sorted(val_ids)
    return [ids[int(round(k))] for k in np.linspace(0, len(ids) - 1, min(count, len(ids)))]


def colourize(label: np.ndarray) -> np.ndarray:
    colours = np.array(palette(), dtype=np.uint8).reshape(256, 3)
    rgb = colours[label]
    rgb[label == 255] = IGNORE_RGB
    return rgb


def panel(ids, images_dir: Path, labels_dir: Path, runs, prediction_dirs):
    columns = ["image", "ground truth", *[run_label(r) for r in runs]]
    rows, present = [], set()
    for image_id in ids:
        label = np.asarray(Image.open(labels_dir / f"{image_id}.png"))
        tiles = [np.asarray(Image.open(images_dir / f"{image_id}.jpg").convert("RGB")), colourize(label)]
        present |= set(np.unique(label).tolist())
        for directory in prediction_dirs:
            prediction = np.asarray(Image.open(Path(directory) / f"{image_id}.png"))
            present |= set(np.unique(prediction).tolist())
            tiles.append(colourize(prediction))
        rows.append((image_id, tiles))
    handles = class_handles(present)
    return tile_grid(
        rows,
        columns,
        "VOC 2012 val: predictions of each variant's longest run",
        figsize=(2.6 * len(columns), 2.3 * len(ids) + 0.8),
        bottom=0.06 + 0.02 * (len(handles) // LEGEND_COLUMNS),
        handles=handles,
    )


def main(snakemake) -> None:
    start_log(snakemake)
    i, p = snakemake.input, snakemake.params
    val_ids = read_id_list(i.val)
    ids = pick_images(val_ids, p.images, p.how_many)
    fig = panel(ids, Path(i.images), Path(i.labels), p.runs, list(i.predictions))
    save(fig, snakemake.output.panel, snakemake.output.panel_pdf)


if __name__ == "__main__" and "snakemake" in globals():
    main(snakemake)  # noqa: F821
