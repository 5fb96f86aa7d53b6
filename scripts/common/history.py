"""A run's ``history.csv``: one row per epoch, written from MMEngine's scalar logs
by the training job and read back by the report."""

import json
from pathlib import Path

import numpy as np

from common.jobs import write_csv
from common.run_files import HISTORY_COLUMNS, read_history


def history_from_scalars(work_dir: Path) -> list[dict]:
    """Per-epoch rows from MMEngine's ``<timestamp>/vis_data/scalars.json`` files.

    A resumed run has one folder per attempt; a later attempt's records of an
    epoch replace an earlier one's (an epoch cut short is trained again).
    """
    epochs: dict[int, dict] = {}
    for scalars in sorted(Path(work_dir).glob("*/vis_data/scalars.json")):
        attempt: dict[int, dict] = {}
        for line in scalars.read_text().splitlines():
            record = json.loads(line)
            if "loss" in record and "epoch" in record:
                row = attempt.setdefault(record["epoch"], {"losses": []})
                row["losses"].append(record["loss"])
                row["lr"] = record["lr"]
            elif "mIoU" in record:
                # MMSeg's values, rounded to two decimals (float32 under numpy 2: 6.37 is
                # logged 6.369999885559082): the same numbers again, as float64
                attempt.setdefault(record["step"], {"losses": []}).update(
                    {k: round(record[k], 2) for k in ("mIoU", "aAcc", "mAcc")}
                )
        for epoch, row in attempt.items():
            if row["losses"]:  # trained in this attempt: replaces an earlier partial epoch
                epochs[epoch] = row
            else:
                epochs.setdefault(epoch, {"losses": []}).update(row)
    rows = []
    for epoch in sorted(epochs):
        row = epochs[epoch]
        rows.append(
            {
                "epoch": epoch,
                "mIoU": row.get("mIoU"),
                "aAcc": row.get("aAcc"),
                "mAcc": row.get("mAcc"),
                "train_loss": float(np.mean(row["losses"])) if row["losses"] else None,
                "lr": row.get("lr"),
            }
        )
    return rows


def write_history(rows: list[dict], dest: Path) -> None:
    write_csv(dest, HISTORY_COLUMNS, rows)


def read_miou_curve(path: Path) -> tuple[list[int], list[float | None]]:
    """(epochs, val mIoU) of a ``history.csv``; None for an epoch without validation.

    A broken file is a RunFileError naming it."""
    rows = read_history(path)
    return [r["epoch"] for r in rows], [r["mIoU"] for r in rows]
