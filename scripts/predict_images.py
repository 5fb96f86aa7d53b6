"""Each variant's longest run on a folder of the user's own pictures (rule predict_images).

No labels: what a reader judges by eye.  For every JPEG/PNG of the folder (in
sorted order of names) ``<stem>.png`` shows the picture and, side by side, each
run's prediction as a colour overlay in the VOC palette (background left
clear); ``panel.png`` shows up to ``PANEL_ROWS`` of them, evenly spaced, in one
figure.  Other entries of the folder are skipped with a line in the log, and so
is a picture that cannot be read or predicted (a broken file, a 2 x 4000 strip
that the pipeline cannot resize): the log names it and why, the others are
written, and only a folder where every picture fails fails the job.  16-bit
greyscale PNGs are scaled to 8 bits by their bit depth (65535 -> 255), not
clipped.  Each picture goes through the run's own test pipeline (MMSeg's
``init_model`` / ``inference_model``), on CUDA when there is a GPU, else on the
CPU, and the prediction comes back at the picture's own size.  Everything is
written into a folder beside the output, renamed to it at the end.

Each folder has its own outputs, <results>/predict/<folder name>-<8 hex digits of
its path>: two folders of the same name (a/pics, b/pics) never replace each
other's predictions, and the same folder always lands in the same place.

The planning part (which folder, is it usable, where its outputs go) is read by
rules/predict.smk when Snakemake plans: it needs the standard library only, and
the job's modules (NumPy, Pillow, Matplotlib, MMSeg) are imported where used.
"""

import hashlib
import logging
import os
import shutil
from pathlib import Path

log = logging.getLogger("upernet")

KEY = "predict.images"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
PANEL_ROWS = 12  # at most this many pictures in panel.png (every one has its own PNG)
ALPHA = 0.55  # opacity of the class colours over the picture
TILE_INCHES = 3.2


class PredictError(ValueError):
    """predict.images does not name a usable folder (or none of its pictures could be predicted)."""


class PictureError(Exception):
    """One picture cannot be read or predicted: it is skipped, the others go on."""


# ==== planning (standard library only) =============================================
def list_images(folder) -> tuple[list[Path], list[str]]:
    """The JPEG/PNG files of ``folder`` by sorted name, and why each other entry is skipped."""
    folder = Path(folder)
    if not folder.is_dir():
        raise PredictError(f"{KEY}: no such folder {str(folder)!r}")
    images, skipped = [], []
    for entry in sorted(folder.iterdir(), key=lambda p: p.name):
        if entry.name.startswith("."):
            skipped.append(f"{entry.name}: hidden")
        elif not entry.is_file():
            skipped.append(f"{entry.name}: not a file")
        elif entry.suffix.lower() not in IMAGE_SUFFIXES:
            skipped.append(f"{entry.name}: not a JPEG or PNG image")
        else:
            images.append(entry)
    return images, skipped


def checked_folder(images) -> str:
    """``images`` (the value of predict.images): a folder holding at least one JPEG/PNG."""
    if not images:
        raise PredictError(
            f"target predict needs {KEY}, a folder of JPEG/PNG pictures: "
            f"snakemake predict --config 'predict={{images: DIR}}'"
        )
    if not list_images(images)[0]:
        raise PredictError(f"{KEY}: no JPEG or PNG images in {str(images)!r}")
    return os.path.normpath(images)


def output_folder_name(folder) -> str:
    """``<name>-<8 hex digits>``: the folder's name (what a reader looks for) and a hash
    of its real path, so that a/pics and b/pics keep their own predictions."""
    path = os.path.realpath(folder)
    return f"{os.path.basename(path)}-{hashlib.sha256(path.encode()).hexdigest()[:8]}"


def planned_output(images, results) -> str:
    """Where the pictures of ``images`` go: <results>/predict/<output_folder_name>."""
    return f"{results}/predict/{output_folder_name(checked_folder(images))}"


def planned_folder(images, results, name) -> str:
    """The folder of ``images``, when its outputs are <results>/predict/<name>."""
    wanted = planned_output(images, results)
    if wanted != f"{results}/predict/{name}":
        raise PredictError(
            f"{results}/predict/{name}: {KEY} is {str(images)!r}, whose pictures go to {wanted}"
        )
    return checked_folder(images)


# ==== the job ======================================================================
def pictures(folder: Path) -> list[Path]:
    """The pictures to predict; the skipped entries go to the log; none is an error."""
    images, skipped = list_images(folder)
    for reason in skipped:
        log.info("skipped %s", reason)
    if not images:
        raise PredictError(f"{KEY}: no JPEG or PNG images in {str(folder)!r}")
    log.info("%d pictures in %s", len(images), folder)
    return images


def output_names(images: list[Path]) -> dict[Path, str]:
    """``<stem>.png`` per picture; ``<name>.png`` where a stem is shared (a.jpg, a.png) or is ``panel``."""
    stems = [p.stem for p in images]
    return {
        p: f"{p.stem}.png" if stems.count(p.stem) == 1 and p.stem != "panel" else f"{p.name}.png"
        for p in images
    }


def read_picture(path: Path):
    """RGB uint8 (H x W x 3), turned upright as its EXIF orientation says (as viewers show it).

    A 16-bit greyscale PNG (Pillow's modes ``I;16*``, or ``I`` in older Pillows) is
    scaled by its bit depth: Pillow's RGB conversion clips it at 255, which turns
    most of the picture white.  (Pillow already reduces 16-bit RGB(A) and
    grey-with-alpha PNGs to 8 bits by their high byte.)
    """
    import numpy as np
    from PIL import Image, ImageOps

    with Image.open(path) as image:
        image = ImageOps.exif_transpose(image)
        if not image.mode.startswith("I"):
            return np.asarray(image.convert("RGB"))
        grey = np.asarray(image).astype(np.int64)
    if grey.size and (grey.min() < 0 or grey.max() > 65535):
        raise ValueError(f"integer pixels from {grey.min()} to {grey.max()}, outside 16 bits")
    log.info("%s: 16-bit greyscale, scaled to 8 bits (65535 -> 255)", path.name)
    eight = ((grey * 255 + 32767) // 65535).astype(np.uint8)  # rounded: 257 -> 1, 65535 -> 255
    return np.repeat(eight[..., None], 3, axis=2)


def load_models(runs, configs, checkpoints, device: str):
    from mmengine.config import Config
    from mmseg.apis import init_model

    from common.launch import adapt_to_device
    from common.plots import run_label
    from common.run_files import check_checkpoint

    models = []
    for run, config, checkpoint in zip(runs, configs, checkpoints):
        cfg = Config.fromfile(str(config))
        adapt_to_device(cfg, distributed=False)  # SyncBN -> BN without CUDA
        check_checkpoint(checkpoint)
        models.append(init_model(cfg, str(checkpoint), device=device))
        log.info("%s: %s", run_label(run), checkpoint)
    return models


def predict(model, rgb):
    """Class indices (H x W, uint8) of one picture, at its own size."""
    import numpy as np
    from mmseg.apis import inference_model

    result = inference_model(model, np.ascontiguousarray(rgb[..., ::-1]))  # MMSeg reads BGR
    return result.pred_sem_seg.data[0].cpu().numpy().astype(np.uint8)


def overlay(rgb, label, alpha: float = ALPHA):
    """The picture with each non-background class painted in its VOC colour."""
    import numpy as np

    from common.voc import palette

    colours = np.array(palette(), dtype=np.float32).reshape(256, 3)
    blended = rgb.astype(np.float32)
    painted = label != 0
    blended[painted] = (1 - alpha) * blended[painted] + alpha * colours[label[painted]]
    return blended.round().astype(np.uint8)


def grid(rows, columns: list[str], title: str):
    """A figure of ``rows`` (name, [tiles], classes) x ``columns``, with a legend of the classes shown."""
    from common.plots import LEGEND_COLUMNS, class_handles, tile_grid

    handles = class_handles(set().union(*(classes for _, _, classes in rows)), background=False)
    legend_inches = 0.25 + 0.2 * -(-len(handles) // LEGEND_COLUMNS)
    heights = [max(0.4, min(2.0, tiles[0].shape[0] / tiles[0].shape[1])) for _, tiles, _ in rows]
    height = TILE_INCHES * sum(heights) + 0.6 + legend_inches
    return tile_grid(
        [(name, tiles) for name, tiles, _ in rows],
        columns,
        title,
        figsize=(TILE_INCHES * len(columns), height),
        bottom=legend_inches / height,
        handles=handles,
        height_ratios=heights,
    )


def save_figure(fig, path: Path) -> None:
    from common.plots import plt

    try:
        fig.savefig(path, dpi=100, bbox_inches="tight")
    finally:
        plt.close(fig)  # also when a picture fails: the next ones go on


def thumbnail(tile, longest: int = 512):
    """A copy at most ``longest`` pixels on its longer side (what the panel keeps in memory)."""
    import numpy as np
    from PIL import Image

    image = Image.fromarray(tile)
    image.thumbnail((longest, longest))
    return np.asarray(image)


def panel_rows(count: int, most: int = PANEL_ROWS) -> list[int]:
    """Indices of the pictures the panel shows: all, or ``most`` evenly spaced."""
    import numpy as np

    if count <= most:
        return list(range(count))
    return sorted({int(round(k)) for k in np.linspace(0, count - 1, most)})


def describe(error: BaseException) -> str:
    """One line for the log: the error's type and the first line of its message."""
    kind = type(error)
    name = kind.__name__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__name__}"
    lines = str(error).strip().splitlines()
    return f"{name}: {lines[0]}" if lines else name


def predict_picture(path: Path, name: str, models, columns: list[str], staging: Path):
    """Write ``name`` (the picture beside each run's overlay) into ``staging``.

    Returns (tiles, classes), or raises PictureError saying why the picture is skipped.
    """
    import numpy as np

    try:
        rgb = read_picture(path)
    except Exception as error:  # a broken file that only looks like a picture, an odd mode
        raise PictureError(f"not a readable image ({describe(error)})") from error
    try:
        labels = [predict(model, rgb) for model in models]
        tiles = [rgb, *(overlay(rgb, label) for label in labels)]
        classes = set().union(*(np.unique(label).tolist() for label in labels))
        save_figure(grid([(path.name, tiles, classes)], columns, f"{path.name}: each variant's longest run"),
                    staging / name)  # fmt: skip
    except Exception as error:  # e.g. OpenCV cannot resize a 2 x 4000 strip for the model
        (staging / name).unlink(missing_ok=True)
        height, width = rgb.shape[:2]
        raise PictureError(f"{width}x{height} pixels, prediction failed ({describe(error)})") from error
    return tiles, classes


def predict_folder(folder: Path, images: list[Path], runs, models, staging: Path) -> int:
    """Write each picture's overlays and the panel into ``staging``; return how many were written.

    A picture that cannot be read or predicted is skipped with its reason in the
    log; when every one fails, the error lists them all.
    """
    from common.plots import run_label
    from common.voc import CLASSES

    names = output_names(images)
    columns = ["picture", *[run_label(r) for r in runs]]
    chosen = set(panel_rows(len(images)))
    rows, failed = [], {}
    for index, path in enumerate(images):
        try:
            tiles, classes = predict_picture(path, names[path], models, columns, staging)
        except PictureError as error:
            failed[path.name] = str(error)
            log.info("skipped %s: %s", path.name, error)
            continue
        shown = ", ".join(CLASSES[c] for c in sorted(classes) if 0 < c < len(CLASSES)) or "background only"
        height, width = tiles[0].shape[:2]
        log.info("%s -> %s (%dx%d): %s", path.name, names[path], width, height, shown)
        if index in chosen:
            rows.append((path.name, [thumbnail(t) for t in tiles], classes))
    written = len(images) - len(failed)
    if not written:
        reasons = "".join(f"\n  {name}: {reason}" for name, reason in failed.items())
        raise PredictError(
            f"{KEY}: none of the {len(images)} JPEG/PNG pictures in {str(folder)!r} "
            f"could be read or predicted:{reasons}"
        )
    if failed:
        log.info("%d of %d pictures skipped (reasons above): %s", len(failed), len(images), ", ".join(failed))
    title = f"{folder.name}: each variant's longest run"
    if len(rows) < written:
        title += f" ({len(rows)} of {written} pictures)"
    save_figure(grid(rows, columns, title), staging / "panel.png")
    return written


def main(snakemake) -> None:
    import torch

    from common.jobs import start_log
    from common.launch import cpu_threads

    start_log(snakemake, stdout=True)
    torch.set_num_threads(cpu_threads(snakemake.threads))
    runs = snakemake.params.runs
    folder = Path(snakemake.params.images)
    out = Path(snakemake.output[0])
    staging = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        images = pictures(folder)  # before the models: a folder emptied since planning fails at once
        device = "cuda" if torch.cuda.is_available() else "cpu"
        models = load_models(runs, snakemake.input.configs, snakemake.input.checkpoints, device)
        count = predict_folder(folder, images, runs, models, staging)
        shutil.rmtree(out, ignore_errors=True)
        os.replace(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("%d pictures of %s -> %s (and panel.png)", count, folder, out)


if __name__ == "__main__" and "snakemake" in globals():
    main(snakemake)  # noqa: F821
