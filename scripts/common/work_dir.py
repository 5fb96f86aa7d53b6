"""A run's MMEngine work directory: what an attempt resumes from, and the final model."""

import logging
import os
import re
import time
from pathlib import Path

import torch
from mmengine.runner.checkpoint import find_latest_checkpoint

log = logging.getLogger("upernet")

# One line per attempt of the run. Snakemake empties a job's log before each
# attempt; the work dir, which it never touches, keeps the whole story.
ATTEMPTS_LOG = "attempts.log"


def prepare_work_dir(work_dir: Path, config_sha256: str) -> str | None:
    """Say what this attempt resumes from; set a stale work dir aside.

    Checkpoints made with another config are never resumed: the folder is
    renamed ``<work_dir>.stale-<n>`` and training starts at epoch 0.
    """
    work_dir = Path(work_dir)
    stamp = work_dir / "config.sha256"
    if work_dir.exists() and stamp.exists() and stamp.read_text().strip() != config_sha256:
        n = 1
        while work_dir.with_name(f"{work_dir.name}.stale-{n}").exists():
            n += 1
        stale = work_dir.with_name(f"{work_dir.name}.stale-{n}")
        work_dir.rename(stale)
        log.warning("the config changed since %s was written: set it aside as %s", work_dir, stale)
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


def record_attempt(work_dir: Path, banner: str, latest: str | None) -> int:
    """Append this attempt to the work dir's attempts.log; return how many it holds."""
    path = Path(work_dir) / ATTEMPTS_LOG
    start = f"resumes {Path(latest).name}" if latest else "starts at epoch 0"
    with open(path, "a") as handle:
        handle.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {banner}; {start}\n")
    count = sum(1 for line in path.read_text().splitlines() if line.strip())
    log.info("attempt %d recorded in %s", count, path)
    return count


def export_final(work_dir: Path, dest: Path, max_epochs: int) -> None:
    """Write the finished model (weights + meta, no optimizer) to ``dest``."""
    latest = find_latest_checkpoint(str(work_dir))
    if latest is None:
        raise RuntimeError(f"{work_dir}: training wrote no checkpoint")
    checkpoint = torch.load(latest, map_location="cpu")
    epoch = checkpoint["meta"]["epoch"]
    if epoch != max_epochs:
        raise RuntimeError(f"{latest}: training stopped at epoch {epoch} of {max_epochs}")
    tmp = Path(f"{dest}.tmp")
    torch.save({"meta": checkpoint["meta"], "state_dict": checkpoint["state_dict"]}, tmp)
    os.replace(tmp, dest)
