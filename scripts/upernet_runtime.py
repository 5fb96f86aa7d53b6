"""What the training and evaluation jobs add around MMEngine's Runner.

* the device is chosen at run time: CUDA when present, else CPU (SyncBN ->
  BN, gloo instead of NCCL, no AMP), so one config runs on a GPU node and on
  a laptop alike;
* a non-finite loss stops training with a clear error;
* checkpoints also carry the RNG states, restored on resume;
* ``StudyIoUMetric`` is MMSeg's ``IoUMetric`` that also keeps per-class
  values and per-image confusion matrices;
* the run's history is read back from MMEngine's scalar logs.

These stay out of the rendered config, which remains plain MMSegmentation.
"""

import csv
import json
import logging
import math
import os
import random
import re
import socket
import subprocess
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
from mmengine.hooks import Hook
from mmengine.runner.checkpoint import find_latest_checkpoint
from mmseg.evaluation.metrics import IoUMetric
from mmseg.registry import METRICS

log = logging.getLogger("upernet")

NUM_CLASSES = 21


# ---- device ------------------------------------------------------------------
def _sync_bn_to_bn(node) -> int:
    """Replace every SyncBN norm_cfg in a config subtree by BN; return how many."""
    count = 0
    if isinstance(node, dict):
        if node.get("type") == "SyncBN":
            node["type"] = "BN"
            count += 1
        for value in node.values():
            count += _sync_bn_to_bn(value)
    elif isinstance(node, (list, tuple)):
        for value in node:
            count += _sync_bn_to_bn(value)
    return count


def adapt_to_device(cfg, distributed: bool) -> str:
    """Fit ``cfg`` to the hardware of this job; return 'cuda' or 'cpu'."""
    if torch.cuda.is_available():
        wanted, found = int(cfg.get("gpus", 1)), torch.cuda.device_count()
        if distributed and found < 1:
            raise RuntimeError("distributed run without a visible GPU")
        log.info("device: cuda (%d visible, the config asks for %d)", found, wanted)
        return "cuda"
    replaced = _sync_bn_to_bn(cfg.model)
    cfg.env_cfg.setdefault("dist_cfg", {})["backend"] = "gloo"
    if cfg.optim_wrapper.get("type") == "AmpOptimWrapper":
        cfg.optim_wrapper.type = "OptimWrapper"
        log.info("no CUDA: AMP is off")
    if distributed:
        # DDP of a CPU module takes no device_ids
        cfg.model_wrapper_cfg = dict(
            type="MMDistributedDataParallel", broadcast_buffers=False, find_unused_parameters=False, device_ids=None
        )
    log.info("device: cpu (no CUDA device); %d SyncBN layers run as BN; gloo backend", replaced)
    return "cpu"


def slurm_allocation() -> dict[str, int]:
    """NumTasks and NumCPUs of the SLURM job this process runs in ({} outside SLURM).

    Asked of SLURM itself: the executor plugin's job step drops SLURM_NTASKS and friends.
    """
    job = os.environ.get("SLURM_JOB_ID")
    if not job:
        return {}
    shown = subprocess.run(["scontrol", "show", "job", "-o", job], capture_output=True, text=True).stdout
    return {key: int(value) for key, value in re.findall(r"\b(NumTasks|NumCPUs)=(\d+)", shown)}


def cpu_threads(requested: int) -> int:
    """Threads for torch: the job's threads, at most the CPUs SLURM gave the job.

    Without a cgroup per job, torch would otherwise start one thread per core of
    the node, and jobs sharing a node slow each other down many times over.
    """
    allocated = slurm_allocation().get("NumCPUs")
    return max(1, min(requested, allocated) if allocated else requested)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def init_cpu_distributed(launcher: str) -> None:
    """MMEngine's launchers call torch.cuda.set_device; on CPU set up gloo ourselves."""
    if launcher == "slurm":
        os.environ["RANK"] = os.environ["SLURM_PROCID"]
        os.environ["WORLD_SIZE"] = os.environ["SLURM_NTASKS"]
        os.environ["LOCAL_RANK"] = os.environ.get("SLURM_LOCALID", "0")
        if "MASTER_ADDR" not in os.environ:
            nodes = os.environ["SLURM_NODELIST"]
            os.environ["MASTER_ADDR"] = subprocess.getoutput(f"scontrol show hostname {nodes} | head -n1")
        os.environ.setdefault("MASTER_PORT", "29500")
    torch.distributed.init_process_group(backend="gloo")
    log.info(
        "distributed on CPU: rank %d of world size %d (gloo)",
        torch.distributed.get_rank(),
        torch.distributed.get_world_size(),
    )


# ---- hooks -------------------------------------------------------------------
class NonFiniteLossHook(Hook):
    """Stop training at the first NaN or infinite loss."""

    priority = "VERY_HIGH"

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        loss = (outputs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            raise FloatingPointError(
                f"loss is {float(loss)} at epoch {runner.epoch + 1}, iteration {runner.iter + 1}: "
                "training stopped (lower the learning rate?); no metrics are written for this run"
            )


class RngStateHook(Hook):
    """Keep Python's, NumPy's and torch's RNG states in every checkpoint."""

    priority = "LOW"

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        checkpoint["rng_state"] = {
            "python": random.getstate(),
            "numpy": np.random.get_state(),
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        }

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        state = checkpoint.get("rng_state")
        if not state:
            return
        random.setstate(state["python"])
        np.random.set_state(state["numpy"])
        torch.set_rng_state(state["torch"])
        if state["cuda"] and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(state["cuda"])
        runner.logger.info("restored the RNG states of the checkpoint")


# ---- work directory ------------------------------------------------------------
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


# ---- history -------------------------------------------------------------------
HISTORY_COLUMNS = ["epoch", "mIoU", "aAcc", "mAcc", "train_loss", "lr"]


def read_history(work_dir: Path) -> list[dict]:
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
                attempt.setdefault(record["step"], {"losses": []}).update(
                    {k: record[k] for k in ("mIoU", "aAcc", "mAcc")}
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
    tmp = Path(f"{dest}.tmp")
    with open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, HISTORY_COLUMNS)
        writer.writeheader()
        writer.writerows({k: ("" if v is None else v) for k, v in row.items()} for row in rows)
    os.replace(tmp, dest)


# ---- evaluation ------------------------------------------------------------------
@METRICS.register_module()
class StudyIoUMetric(IoUMetric):
    """MMSeg's IoUMetric, keeping per-class values and per-image confusion matrices.

    IoU itself is MMSeg's: ``intersect_and_union`` per image and
    ``total_area_to_metrics`` over the set.
    """

    def process(self, data_batch, data_samples) -> None:
        start = len(self.results)
        super().process(data_batch, data_samples)
        for index, data_sample in enumerate(data_samples):
            pred = data_sample["pred_sem_seg"]["data"].squeeze()
            label = data_sample["gt_sem_seg"]["data"].squeeze().to(pred)
            keep = label != self.ignore_index
            pairs = label[keep].long() * NUM_CLASSES + pred[keep].long()
            confusion = torch.bincount(pairs, minlength=NUM_CLASSES**2).reshape(NUM_CLASSES, NUM_CLASSES)
            image_id = Path(data_sample["img_path"]).stem
            self.results[start + index] = (*self.results[start + index], confusion.cpu(), image_id)

    def compute_metrics(self, results: list) -> dict:
        self.image_ids = [r[5] for r in results]
        self.per_image_confusion = torch.stack([r[4] for r in results]).numpy()
        areas = [r[:4] for r in results]
        totals = [sum(column) for column in zip(*areas)]
        per_class = self.total_area_to_metrics(*totals, self.metrics, self.nan_to_num, self.beta)
        self.per_class = OrderedDict((k, v) for k, v in per_class.items() if k != "aAcc")
        return super().compute_metrics(areas)


def metrics_document(metric: StudyIoUMetric, summary: dict, classes, extra: dict) -> dict:
    """The content of metrics.json (percentages, like MMSeg's logs)."""

    def percent(values):
        return {c: (None if np.isnan(v) else round(float(v) * 100, 4)) for c, v in zip(classes, values)}

    return {
        **extra,
        "aAcc": float(summary["aAcc"]),
        "mIoU": float(summary["mIoU"]),
        "mAcc": float(summary["mAcc"]),
        "classes": list(classes),
        "IoU": percent(metric.per_class["IoU"]),
        "Acc": percent(metric.per_class["Acc"]),
        "num_images": len(metric.image_ids),
    }
