"""A run's ``history.csv``: one row per epoch, written from MMEngine's scalar logs
by the training job and read back by the report."""

import json
from pathlib import Path

import numpy as np

from common.jobs import write_csv
from common.run_files import HISTORY_COLUMNS, RunFileError, read_history

# The validation's mIoU before MMSeg rounds it to two decimals, where the metric logs it:
# the convergence epoch is decided on it (a run can clear its threshold by less than
# the rounding).  The ``mIoU`` column stays MMSeg's own number.
UNROUNDED = "mIoU_unrounded"


def history_from_scalars(work_dir: Path) -> list[dict]:
    """Per-epoch rows from MMEngine's ``<timestamp>/vis_data/scalars.json`` files.

    A resumed run has one folder per attempt; a later attempt's training of an
    epoch replaces an earlier one's (an epoch cut short is trained again), and
    its validation of an epoch an earlier attempt trained (the checkpoint saved,
    the validation cut short) keeps that attempt's training loss.
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
                metrics = {k: round(record[k], 2) for k in ("mIoU", "aAcc", "mAcc")}
                if UNROUNDED in record:
                    metrics[UNROUNDED] = float(record[UNROUNDED])
                attempt.setdefault(record["step"], {"losses": []}).update(metrics)
        for epoch, row in attempt.items():
            if row["losses"]:  # trained in this attempt: replaces an earlier partial epoch
                epochs[epoch] = row
            else:  # only validated in this attempt: the training loss is the earlier attempt's
                validated = {k: v for k, v in row.items() if k != "losses"}
                epochs.setdefault(epoch, {"losses": []}).update(validated)
    unrounded = any(UNROUNDED in row for row in epochs.values())
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
                **({UNROUNDED: row.get(UNROUNDED)} if unrounded else {}),
            }
        )
    return rows


def write_history(rows: list[dict], dest: Path) -> None:
    extra = [UNROUNDED] if any(UNROUNDED in row for row in rows) else []
    write_csv(dest, [*HISTORY_COLUMNS, *extra], rows)


def read_miou_curve(path: Path) -> tuple[list[int], list[float | None]]:
    """(epochs, val mIoU) of a ``history.csv``; None for an epoch without validation.

    The unrounded mIoU where the file has it for every validated epoch (the
    convergence epoch compares values closer than MMSeg's two decimals), else
    MMSeg's.  A broken file is a RunFileError naming it."""
    rows = read_history(path)
    epochs, miou = [r["epoch"] for r in rows], [r["mIoU"] for r in rows]
    unrounded = [r.get(UNROUNDED) or None for r in rows]
    if any(unrounded) and all(u is not None for u, m in zip(unrounded, miou) if m is not None):
        try:
            return epochs, [float(u) if m is not None else None for u, m in zip(unrounded, miou)]
        except ValueError:
            raise RunFileError(f"{path}: {UNROUNDED} is not a number in {unrounded}") from None
    return epochs, miou
