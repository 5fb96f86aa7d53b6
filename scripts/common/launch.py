"""Where and how a job trains: the device chosen at run time, CPU threads within
the SLURM allocation, and the distributed set-up on CPU.

The device is chosen at run time: CUDA when present, else CPU (SyncBN -> BN,
gloo instead of NCCL, no AMP), so one config runs on a GPU node and on a
laptop alike.  These stay out of the rendered config, which remains plain
MMSegmentation.
"""

import logging
import os
import re
import socket
import subprocess

import torch

log = logging.getLogger("upernet")


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
        cfg.optim_wrapper.pop("loss_scale", None)  # AmpOptimWrapper's alone
        log.info("no CUDA: AMP is off")
    if distributed:
        # DDP of a CPU module takes no device_ids
        cfg.model_wrapper_cfg = dict(
            type="MMDistributedDataParallel", broadcast_buffers=False, find_unused_parameters=False, device_ids=None
        )
    log.info("device: cpu (no CUDA device); %d SyncBN layers run as BN; gloo backend", replaced)
    return "cpu"


def slurm_job() -> dict[str, str]:
    """The SLURM job id and node of this process ({} outside SLURM), for the job's log."""
    job = os.environ.get("SLURM_JOB_ID")
    if not job:
        return {}
    return {"job_id": job, "node": os.environ.get("SLURMD_NODENAME") or socket.gethostname()}


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
