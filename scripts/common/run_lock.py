"""One trainer per run: an exclusive lock beside the run's work dir.

``<work_dir>.lock`` records who trains (host, pid, SLURM job id, since when).
A second trainer of the same run fails at once with an error naming the
holder, except a SLURM job meeting another live SLURM job's lock, which waits
for it (see ``run_lock``).  A lock whose holder is gone (its SLURM job no longer pending or
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


def holder_gone(holder: dict) -> tuple[str | None, bool]:
    """(why the lock's holder is known to be gone, or None if it may still train;
    whether it is a SLURM job that SLURM says is alive)."""
    job = holder.get("slurm_job")
    if job and job != os.environ.get("SLURM_JOB_ID"):
        state = _slurm_job_state(job)
        if state == "":
            return f"SLURM job {job} is no longer known to SLURM", False
        if state is not None and state.split()[0] not in ALIVE_STATES:
            return f"SLURM job {job} is {state}", False
        if state is not None:
            return None, True
    if holder.get("host") == socket.gethostname() and isinstance(holder.get("pid"), int):
        if not _process_alive(holder["pid"]):
            return f"process {holder['pid']} on {holder['host']} has ended", False
    return None, False


def _read(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}  # unreadable: written by something else, or cut short


@contextmanager
def run_lock(work_dir: Path, log_file: Path | None = None, poll: float = 30.0):
    """Hold the lock of ``work_dir`` for the block; RunLockHeld if a live trainer has it.

    A SLURM job whose run is held by another live SLURM job waits for it (checking
    every ``poll`` seconds) instead: that is a rerun's job meeting the job of an
    earlier, killed ``snakemake``, which SLURM kept running. Failing would be
    retried and fail again; once the holder ends, the run it finished is restored
    in seconds (common/work_dir.py), or resumed. ``log_file``: where this job's log
    is, for whoever meets the lock.
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
    waited = None  # since when this job waits for a live SLURM job's lock
    while True:
        with open(f"{path}.guard", "a") as guard:
            fcntl.flock(guard, fcntl.LOCK_EX)
            try:
                holder, wait = _read(path), False
                if holder is not None:
                    gone, live_slurm_job = holder_gone(holder) if holder else ("its lock file is unreadable", False)
                    its_log = f"; its log: {holder['log']}" if holder and holder.get("log") else ""
                    if gone is None and me["slurm_job"] and live_slurm_job:
                        wait = True
                        if waited is None:
                            waited = time.monotonic()
                            log.warning(
                                "%s is being trained by %s (lock %s%s): waiting for that job to end "
                                "(checked every %g s; scancel this job to stop waiting)",
                                work_dir, describe(holder), path, its_log, poll,
                            )  # fmt: skip
                    elif gone is None:
                        raise RunLockHeld(
                            f"{work_dir} is already being trained by {describe(holder)} (lock {path}{its_log}). "
                            f"Wait for it, or cancel it; if you know it is gone, remove {path}."
                        )
                    else:
                        log.warning("taking over the lock %s of %s: %s", path, describe(holder), gone)
                if not wait:
                    if waited is not None:
                        log.info("waited %.0f s for the lock %s", time.monotonic() - waited, path)
                    me["since"] = time.strftime("%Y-%m-%d %H:%M:%S")
                    write_text(path, json.dumps(me) + "\n")
            finally:
                fcntl.flock(guard, fcntl.LOCK_UN)
        if not wait:
            break
        time.sleep(poll)
    log.info("holding %s (%s)", path, describe(me))
    try:
        yield path
    finally:
        with open(f"{path}.guard", "a") as guard:
            fcntl.flock(guard, fcntl.LOCK_EX)
            if _read(path) == me:
                path.unlink()
            fcntl.flock(guard, fcntl.LOCK_UN)
