"""A run's MMEngine work directory: what an attempt resumes from, what every
attempt cost, and the final model.

- An unfinished attempt of the same config is resumed from its last checkpoint.
- A run that finished with the same config and training code is asked again
  (its final.pth lost or deleted, ``--forcerun``, a second ``snakemake`` that
  submitted it while the first one's job was training it): its outputs are
  restored from the last checkpoint in seconds, no training.
- Checkpoints of another config, or a finished run of other training code, are
  never resumed: the folder is set aside as ``<work_dir>.old-<n>`` and training
  starts at epoch 0; its attempts stay in ``attempts.tsv`` (their hours count).
- A run that stopped on a non-finite loss is not tried again with the same
  config (it would stop there again): the retry fails at once, naming the loss.
- ``attempts.tsv`` holds one row per attempt with the seconds it has run so
  far, updated every ``HEARTBEAT_S`` while it trains, so an attempt that was
  killed or cancelled still counts (up to its last update; the next attempt
  marks it ``killed``).
"""

import csv
import json
import logging
import os
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from mmengine.runner.checkpoint import find_latest_checkpoint

from common.jobs import atomic_path
from common.run_files import ATTEMPT_COLUMNS, read_attempts

log = logging.getLogger("upernet")

ATTEMPTS = "attempts.tsv"
FINISHED = "finished"  # written once final.pth is exported
CONFIG_STAMP = "config.sha256"
CODE_STAMP = "code.sha256"  # the training code's hash (the rule's `code` param)
NONFINITE = "nonfinite"  # written by NonFiniteLossHook: the loss that stopped the run
HEARTBEAT_S = 10


class NonFiniteBefore(RuntimeError):
    """This config stopped on a non-finite loss before: trying again is wasted time."""


@dataclass
class Start:
    """Where an attempt starts: the checkpoint it resumes (None: epoch 0), or a
    finished run whose outputs are only to be restored."""

    latest: str | None
    restore: bool = False


def _set_aside(work_dir: Path, why: str) -> Path:
    n = 1
    while work_dir.with_name(f"{work_dir.name}.old-{n}").exists():
        n += 1
    old = work_dir.with_name(f"{work_dir.name}.old-{n}")
    work_dir.rename(old)
    log.warning("%s: set %s aside as %s; training starts at epoch 0", why, work_dir, old)
    return old


def _stamp(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        return None


def _carried_attempts(old: Path) -> list[dict]:
    """The attempts of a set-aside work dir, for the new one's record: their hours were spent on this run."""
    path = old / ATTEMPTS
    try:
        rows = read_attempts(path)
    except (OSError, ValueError) as error:
        log.warning("the attempts of %s are not carried over (%s)", old, error)
        return []
    for row in rows:
        row["status"] = f"{row['status']}, set aside as {old.name}"
    return rows


def write_nonfinite(work_dir: Path, message: str) -> None:
    """Record the non-finite loss that stopped this run (see ``prepare_work_dir``)."""
    work_dir = Path(work_dir)
    record = {"message": message, "config_sha256": _stamp(work_dir / CONFIG_STAMP), "when": time.strftime("%Y-%m-%d %H:%M:%S")}
    (work_dir / NONFINITE).write_text(json.dumps(record) + "\n")


def prepare_work_dir(work_dir: Path, config_sha256: str, code: str | None = None) -> Start:
    """Restore, resume or start afresh: set a stale work dir aside; say where this attempt starts.

    ``code``: the training code's hash; a finished run is restored only when both
    it and the config are those of the finished run (None: never restored).
    """
    work_dir = Path(work_dir)
    stamp, code_stamp, finished = work_dir / CONFIG_STAMP, work_dir / CODE_STAMP, work_dir / FINISHED
    same_config = _stamp(stamp) == config_sha256
    carried = []
    if finished.exists():
        done = finished.read_text().strip()
        latest = find_latest_checkpoint(str(work_dir))
        if same_config and code is not None and _stamp(code_stamp) == code and latest:
            log.info(
                "this run finished before (%s) with the same config and training code: "
                "restoring its outputs from %s, no training", done, latest,
            )  # fmt: skip
            return Start(latest, restore=True)
        if not same_config:
            why = "with another config"
        elif code is None:
            why = "and is asked to train again"
        elif _stamp(code_stamp) != code:
            why = "with other training code"
        else:
            why = "but its checkpoints are gone"
        carried = _carried_attempts(_set_aside(work_dir, f"this run finished before ({done}) {why}"))
    elif work_dir.exists() and stamp.exists() and not same_config:
        carried = _carried_attempts(_set_aside(work_dir, "the config changed since its checkpoints were written"))
    elif (work_dir / NONFINITE).exists():
        record = json.loads((work_dir / NONFINITE).read_text())
        raise NonFiniteBefore(
            f"{work_dir}: this run stopped on a non-finite loss on {record['when']} with the same config "
            f"({record['message']}); trying again would stop there again. Change the config (a lower "
            f"training.base_lr?), or delete {work_dir / NONFINITE} to try again anyway."
        )
    work_dir.mkdir(parents=True, exist_ok=True)
    stamp.write_text(config_sha256 + "\n")
    if code is not None:
        code_stamp.write_text(code + "\n")
    if carried:
        rows = (read_attempts(work_dir / ATTEMPTS) if (work_dir / ATTEMPTS).exists() else []) + carried
        _write_attempts(work_dir / ATTEMPTS, rows)
    latest = find_latest_checkpoint(str(work_dir))
    if latest:
        # CheckpointHook names them epoch_<n>.pth; loading one only to log <n> would read it twice
        epoch = re.search(r"epoch_(\d+)\.pth$", latest)
        log.info("resuming from checkpoint %s (epoch %s done)", latest, epoch.group(1) if epoch else "?")
    else:
        log.info("no checkpoint in %s: training starts at epoch 0", work_dir)
    return Start(latest)


def _write_attempts(path: Path, rows: list[dict]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, ATTEMPT_COLUMNS, delimiter="\t")
        writer.writeheader()
        writer.writerows({k: row[k] for k in ATTEMPT_COLUMNS} for row in rows)


class AttemptClock:
    """This attempt's row in attempts.tsv, kept up to date by a background thread."""

    def __init__(self, work_dir: Path, where: str, latest: str | None, start: str | None = None):
        self.path = Path(work_dir) / ATTEMPTS
        self.rows = read_attempts(self.path) if self.path.exists() else []
        for row in self.rows:
            # we hold the run's lock: an attempt still "running" was killed (SIGKILL, a lost node)
            if row["status"] == "running":
                row["status"] = "killed"
        self.t0 = time.monotonic()
        self.row = {
            "attempt": len(self.rows) + 1,
            "started": time.strftime("%Y-%m-%d %H:%M:%S"),
            "seconds": 0.0,
            "status": "running",
            "where": where,
            "start": start or (f"resumes {Path(latest).name}" if latest else "epoch 0"),
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
