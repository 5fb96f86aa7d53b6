"""The per-run files that tables and figures read, each checked on reading.

A broken file (empty, cut short, wrong shape, a value that is not a number)
stops the job with a RunFileError naming the file and the problem, instead of
a blank cell, a legend entry without a line, or a bare parser error.
"""

import csv
import json
import math
import zipfile
from pathlib import Path

import numpy as np

from common.voc import NUM_CLASSES

METRIC_KEYS = ("mIoU", "aAcc", "mAcc")
HISTORY_COLUMNS = ["epoch", "mIoU", "aAcc", "mAcc", "train_loss", "lr"]
ATTEMPT_COLUMNS = ["attempt", "started", "seconds", "status", "where", "start"]


class RunFileError(ValueError):
    pass


def _text(path: Path) -> str:
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise RunFileError(f"{path}: no such file") from None
    except UnicodeDecodeError:
        raise RunFileError(f"{path}: not a text file") from None
    if not text.strip():
        raise RunFileError(f"{path}: the file is empty")
    return text


def _number(value, path, what) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise RunFileError(f"{path}: {what} is {value!r}, not a number") from None
    if not math.isfinite(number):
        raise RunFileError(f"{path}: {what} is {value!r}")
    return number


def _json_object(path: Path) -> dict:
    text = _text(path)
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise RunFileError(f"{path}: not valid JSON (line {error.lineno}, column {error.colno}: {error.msg})") from None
    if not isinstance(value, dict):
        raise RunFileError(f"{path}: expected a JSON object, found {type(value).__name__}")
    return value


def read_metrics(path: Path) -> dict:
    """metrics.json of an evaluation: mIoU, aAcc, mAcc (percent) and the rest as written."""
    metrics = _json_object(path)
    missing = [key for key in METRIC_KEYS if key not in metrics]
    if missing:
        raise RunFileError(f"{path}: no {', '.join(missing)} (is it an evaluation's metrics.json?)")
    for key in METRIC_KEYS:
        value = _number(metrics[key], path, key)
        if not 0 <= value <= 100:
            raise RunFileError(f"{path}: {key} is {value}, outside 0-100")
    return metrics


def read_train_set(path: Path) -> dict:
    """train_set.json of a run (rule render_mmseg_config): what one epoch is and what the
    budget made of it; images, epochs and iterations whole numbers > 0."""
    trained = _json_object(path)
    missing = [key for key in ("images", "epochs", "iterations") if key not in trained]
    if missing:
        raise RunFileError(f"{path}: no {', '.join(missing)} (is it a run's train_set.json?)")
    for key in ("images", "epochs", "iterations"):
        if isinstance(trained[key], bool) or not isinstance(trained[key], int) or trained[key] < 1:
            raise RunFileError(f"{path}: {key} is {trained[key]!r}, not a whole number > 0")
    return trained


def read_history(path: Path) -> list[dict]:
    """history.csv of a training run: one row per epoch, at least one validated."""
    lines = _text(path).splitlines()
    rows = list(csv.DictReader(lines))
    header = next(csv.reader(lines))
    missing = [c for c in ("epoch", "mIoU") if c not in header]
    if missing:
        raise RunFileError(f"{path}: no column {', '.join(missing)} in the header {header}")
    if not rows:
        raise RunFileError(f"{path}: a header but no epochs")
    for i, row in enumerate(rows, 2):
        epoch = _number(row["epoch"], path, f"line {i}: epoch")
        if epoch != int(epoch) or epoch < 1:
            raise RunFileError(f"{path}: line {i}: epoch is {row['epoch']!r}")
        row["epoch"] = int(epoch)
        for column in ("mIoU", "train_loss"):  # an epoch without validation has no mIoU
            if column in row:
                value = row[column]
                row[column] = _number(value, path, f"line {i}: {column}") if value not in ("", None) else None
    if all(row["mIoU"] is None for row in rows):
        raise RunFileError(f"{path}: no epoch has a validation mIoU")
    return rows


def check_checkpoint(path: Path) -> None:
    """A RunFileError naming a checkpoint (final.pth, epoch_N.pth) that is cut short or
    damaged, before torch reads it ("PytorchStreamReader failed reading zip archive"
    names no file). torch.save writes a zip archive: its members' CRCs are checked."""
    path = Path(path)
    fix = (
        f"delete it and run the workflow again (a finished run's final.pth is restored "
        f"from its work dir in seconds)" if path.name == "final.pth" else "delete it"
    )
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except FileNotFoundError:
        raise RunFileError(f"{path}: no such file") from None
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as error:
        raise RunFileError(f"{path}: not a readable PyTorch checkpoint, cut short or damaged ({error}); {fix}") from None
    if bad is not None:
        raise RunFileError(f"{path}: damaged (the CRC of its member {bad} does not match); {fix}")


def read_attempts(path: Path) -> list[dict]:
    """attempts.tsv of a training run: every attempt and the seconds it ran."""
    rows = list(csv.DictReader(_text(path).splitlines(), delimiter="\t"))
    if not rows:
        raise RunFileError(f"{path}: a header but no attempts")
    for i, row in enumerate(rows, 2):
        if None in row or any(row.get(c) is None for c in ATTEMPT_COLUMNS):
            raise RunFileError(f"{path}: line {i}: expected the columns {ATTEMPT_COLUMNS}")
        row["attempt"] = int(_number(row["attempt"], path, f"line {i}: attempt"))
        row["seconds"] = _number(row["seconds"], path, f"line {i}: seconds")
    return rows


def read_confusion(path: Path) -> np.ndarray:
    """confusion.npy: a 21 x 21 matrix of pixel counts."""
    try:
        confusion = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise RunFileError(f"{path}: no such file") from None
    except (ValueError, OSError, EOFError) as error:
        raise RunFileError(f"{path}: not a NumPy array file ({error})") from None
    _check_counts(confusion, (NUM_CLASSES, NUM_CLASSES), path, "the confusion matrix")
    return confusion


def read_per_image(path: Path, classes: int = NUM_CLASSES) -> tuple[list[str], np.ndarray]:
    """confusion_per_image.npz: image ids and one ``classes`` x ``classes`` (VOC: 21) matrix per image."""
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in ("image_ids", "confusion") if k not in data.files]
            if missing:
                raise RunFileError(f"{path}: no array {', '.join(missing)}")
            ids, confusion = [str(i) for i in data["image_ids"]], data["confusion"]
    except FileNotFoundError:
        raise RunFileError(f"{path}: no such file") from None
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as error:
        raise RunFileError(f"{path}: not a NumPy .npz file ({error})") from None
    _check_counts(confusion, (len(ids), classes, classes), path, "the per-image confusion")
    if not ids:
        raise RunFileError(f"{path}: no images")
    return ids, confusion


def _check_counts(array: np.ndarray, shape: tuple, path, what) -> None:
    if array.shape != shape:
        raise RunFileError(f"{path}: {what} has shape {array.shape}, expected {shape}")
    if not np.issubdtype(array.dtype, np.number) or not np.all(np.isfinite(array)) or np.any(array < 0):
        raise RunFileError(f"{path}: {what} holds values that are not pixel counts")
