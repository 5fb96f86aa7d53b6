"""One trainer per run: an exclusive lock beside the run's work dir.

``<work_dir>.lock`` records who trains (host, pid, SLURM job id, since when).
A second trainer of the same run fails at once with an error naming the
holder.  A lock whose holder is gone (its SLURM job no longer pending or
running; outside SLURM, its process dead on this host) is taken over, and the
log says so.  The check and the take-over happen under ``flock`` on
``<work_dir>.lock.guard``, so two newcomers cannot both take over.
Standard library only (and common.jobs).
"""

import fcntl
import json
import logging
import os
import socket
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

from common.jobs import write_text

log = logging.getLogger("upernet")

# squeue states of a job that may still run (anything else: it ended)
ALIVE_STATES = {
    "PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "SUSPENDED", "REQUEUED",
    "REQUEUE_HOLD", "REQUEUE_FED", "RESIZING", "SIGNALING", "STAGE_OUT", "STOPPED",
}  # fmt: skip


class RunLockHeld(RuntimeError):
    pass


def lock_path(work_dir: Path) -> Path:
    work_dir = Path(work_dir)
    return work_dir.with_name(work_dir.name + ".lock")


def describe(holder: dict) -> str:
    job = f", SLURM job {holder['slurm_job']}" if holder.get("slurm_job") else ""
    return f"pid {holder.get('pid')} on {holder.get('host')}{job}, since {holder.get('since')}"


def _slurm_job_state(job_id: str) -> str | None:
    """The job's state in squeue; '' once SLURM no longer knows it; None if squeue cannot tell."""
    try:
        shown = subprocess.run(
            ["squeue", "-h", "-j", str(job_id), "-o", "%T"], capture_output=True, text=True, timeout=60
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if shown.returncode != 0:
        return "" if "Invalid job id" in shown.stderr else None
    return shown.stdout.strip()


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie has finished
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def holder_gone(holder: dict) -> str | None:
    """Why the lock's holder is known to be gone, or None if it may still train."""
    job = holder.get("slurm_job")
    if job and job != os.environ.get("SLURM_JOB_ID"):
        state = _slurm_job_state(job)
        if state == "":
            return f"SLURM job {job} is no longer known to SLURM"
        if state is not None and state.split()[0] not in ALIVE_STATES:
            return f"SLURM job {job} is {state}"
        if state is not None:
            return None
    if holder.get("host") == socket.gethostname() and isinstance(holder.get("pid"), int):
        if not _process_alive(holder["pid"]):
            return f"process {holder['pid']} on {holder['host']} has ended"
    return None


def _read(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}  # unreadable: written by something else, or cut short


@contextmanager
def run_lock(work_dir: Path, log_file: Path | None = None):
    """Hold the lock of ``work_dir`` for the block; RunLockHeld if a live trainer has it.

    ``log_file``: where the holder's log is, for the refusal of a second trainer.
    """
    path = lock_path(work_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    me = {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "slurm_job": os.environ.get("SLURM_JOB_ID"),
        "since": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    if log_file is not None:
        me["log"] = str(log_file)
    with open(f"{path}.guard", "a") as guard:
        fcntl.flock(guard, fcntl.LOCK_EX)
        try:
            holder = _read(path)
            if holder is not None:
                gone = holder_gone(holder) if holder else "its lock file is unreadable"
                if gone is None:
                    its_log = f"; its log: {holder['log']}" if holder.get("log") else ""
                    raise RunLockHeld(
                        f"{work_dir} is already being trained by {describe(holder)} (lock {path}{its_log}). "
                        f"Wait for it, or cancel it; if you know it is gone, remove {path}."
                    )
                log.warning("taking over the lock %s of %s: %s", path, describe(holder), gone)
            write_text(path, json.dumps(me) + "\n")
        finally:
            fcntl.flock(guard, fcntl.LOCK_UN)
    log.info("holding %s (%s)", path, describe(me))
    try:
        yield path
    finally:
        with open(f"{path}.guard", "a") as guard:
            fcntl.flock(guard, fcntl.LOCK_EX)
            if _read(path) == me:
                path.unlink()
            fcntl.flock(guard, fcntl.LOCK_UN)
