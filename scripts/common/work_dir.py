"""A run's MMEngine work directory: what an attempt resumes from, what every
attempt cost, and the final model.

- An unfinished attempt of the same config is resumed from its last checkpoint.
- Checkpoints of another config, or of a run that already finished (its model
  was exported: a deliberate retrain), are never resumed: the folder is set
  aside as ``<work_dir>.old-<n>`` and training starts at epoch 0.
- ``attempts.tsv`` holds one row per attempt with the seconds it has run so
  far, updated every ``HEARTBEAT_S`` while it trains, so an attempt that was
  killed or cancelled still counts (up to its last update).
"""

import csv
import logging
import os
import re
import threading
import time
from pathlib import Path

import torch
from mmengine.runner.checkpoint import find_latest_checkpoint

from common.jobs import atomic_path
from common.run_files import ATTEMPT_COLUMNS, read_attempts

log = logging.getLogger("upernet")

ATTEMPTS = "attempts.tsv"
FINISHED = "finished"  # written once final.pth is exported
HEARTBEAT_S = 10


def _set_aside(work_dir: Path, why: str) -> Path:
    n = 1
    while work_dir.with_name(f"{work_dir.name}.old-{n}").exists():
        n += 1
    old = work_dir.with_name(f"{work_dir.name}.old-{n}")
    work_dir.rename(old)
    log.warning("%s: set %s aside as %s; training starts at epoch 0", why, work_dir, old)
    return old


def prepare_work_dir(work_dir: Path, config_sha256: str) -> str | None:
    """Set a finished or stale work dir aside; say what this attempt resumes from."""
    work_dir = Path(work_dir)
    stamp = work_dir / "config.sha256"
    if (work_dir / FINISHED).exists():
        _set_aside(work_dir, f"this run finished before ({(work_dir / FINISHED).read_text().strip()}) and is asked again")
    elif work_dir.exists() and stamp.exists() and stamp.read_text().strip() != config_sha256:
        _set_aside(work_dir, "the config changed since its checkpoints were written")
    work_dir.mkdir(parents=True, exist_ok=True)
    stamp.write_text(config_sha256 + "\n")
    latest = find_latest_checkpoint(str(work_dir))
    if latest:
        # CheckpointHook names them epoch_<n>.pth; loading one only to log <n> would read it twice
        epoch = re.search(r"epoch_(\d+)\.pth$", latest)
        log.info("resuming from checkpoint %s (epoch %s done)", latest, epoch.group(1) if epoch else "?")
    else:
        log.info("no checkpoint in %s: training starts at epoch 0", work_dir)
    return latest


def _write_attempts(path: Path, rows: list[dict]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, ATTEMPT_COLUMNS, delimiter="\t")
        writer.writeheader()
        writer.writerows({k: row[k] for k in ATTEMPT_COLUMNS} for row in rows)


class AttemptClock:
    """This attempt's row in attempts.tsv, kept up to date by a background thread."""

    def __init__(self, work_dir: Path, where: str, latest: str | None):
        self.path = Path(work_dir) / ATTEMPTS
        self.rows = read_attempts(self.path) if self.path.exists() else []
        self.t0 = time.monotonic()
        self.row = {
            "attempt": len(self.rows) + 1,
            "started": time.strftime("%Y-%m-%d %H:%M:%S"),
            "seconds": 0.0,
            "status": "running",
            "where": where,
            "start": f"resumes {Path(latest).name}" if latest else "epoch 0",
        }
        self.rows.append(self.row)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.update()
        self._thread = threading.Thread(target=self._beat, daemon=True)
        self._thread.start()
        log.info("attempt %d of this run recorded in %s", self.row["attempt"], self.path)

    def update(self, status: str | None = None) -> None:
        with self._lock:
            self.row["seconds"] = round(time.monotonic() - self.t0, 1)
            if status:
                self.row["status"] = status
            _write_attempts(self.path, self.rows)

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            self.update()

    def finish(self, status: str) -> None:
        self._stop.set()
        self.update(status)

    def total_seconds(self) -> float:
        return sum(row["seconds"] for row in self.rows)


def export_final(work_dir: Path, dest: Path, max_epochs: int) -> None:
    """Write the finished model (weights + meta, no optimizer) to ``dest``."""
    latest = find_latest_checkpoint(str(work_dir))
    if latest is None:
        raise RuntimeError(f"{work_dir}: training wrote no checkpoint")
    # this run's own checkpoint: its message hub and RNG states are Python objects,
    # which torch >= 2.6's default (weights_only=True) refuses
    checkpoint = torch.load(latest, map_location="cpu", weights_only=False)
    epoch = checkpoint["meta"]["epoch"]
    if epoch != max_epochs:
        raise RuntimeError(f"{latest}: training stopped at epoch {epoch} of {max_epochs}")
    tmp = Path(f"{dest}.tmp")
    torch.save({"meta": checkpoint["meta"], "state_dict": checkpoint["state_dict"]}, tmp)
    os.replace(tmp, dest)


def mark_finished(work_dir: Path, dest: Path) -> None:
    """The run is done: asking for it again retrains from scratch."""
    (Path(work_dir) / FINISHED).write_text(f"{dest} exported {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
