"""Train one run with MMEngine's Runner (rule train_upernet), resuming if it can.

One process per GPU of the job: a single one in-process, several through
``srun`` + MMEngine's ``slurm`` launcher inside a SLURM allocation with enough
tasks, otherwise through ``torchrun``.  The job's outputs are written only
after training finished: ``final.pth`` (weights + meta), ``history.csv`` and
``attempts.tsv`` (every attempt and its seconds); a run that finished before with
the same config and code gets them back from its work dir, without training
(common/work_dir.py).  Every job's log is kept under ``train-logs/``.  One trainer per run: the job
holds ``<work_dir>.lock`` while it trains (see common/run_lock.py), and stops
when the Snakemake process that started it is gone.

Also a command line, for the worker processes and for use by hand:

    python scripts/train_upernet.py --config results/runs/voc/e30-s0/config.py \
        --work-dir results/work/voc/e30-s0 [--launcher none|pytorch|slurm]
"""

import argparse
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

log = logging.getLogger("upernet")


def train(config_path: Path, work_dir: Path, launcher: str = "none", cfg=None, prepared: bool = False) -> None:
    """Run (or resume) MMEngine training of ``config_path`` (already loaded: ``cfg``) in ``work_dir``.

    ``prepared``: the job already checked the work dir (see ``run_job``).
    """
    from mmengine.config import Config
    from mmengine.runner import Runner

    from common.hooks import NonFiniteLossHook, RngStateHook, ValidateResumedEpochHook
    from common.jobs import sha256_text
    from common.launch import adapt_to_device, init_cpu_distributed
    from common.metric import StudyIoUMetric  # noqa: F401 (registers the validation's metric)
    from common.mmseg_config import missing_tracking_packages
    from common.work_dir import prepare_work_dir

    cfg = Config.fromfile(str(config_path)) if cfg is None else cfg
    missing = missing_tracking_packages(cfg.visualizer.get("vis_backends", []))
    if missing:
        raise RuntimeError(
            f"{config_path}: tracking needs {', '.join(missing)}, not installed in this environment "
            f"(pip install {' '.join(missing)}, or leave it out of the config's tracking)"
        )
    cfg.work_dir = str(work_dir)
    cfg.launcher = launcher
    if cfg.val_evaluator.get("type") == "IoUMetric":
        # the same metric (a subclass, registered by importing common.metric), which also
        # logs the mIoU before MMSeg rounds it: history.csv's convergence epoch needs it
        cfg.val_evaluator.type = "StudyIoUMetric"
    device = adapt_to_device(cfg, distributed=launcher != "none")
    if launcher != "none" and device == "cpu":
        init_cpu_distributed(launcher)
    rank = int(os.environ.get("RANK", "0"))
    if rank == 0:  # once per job: the world size and the lr
        log.info(
            "rank %d: %d process(es) x %d images per step, lr %.6g (base_lr %.6g at batch %d)",
            rank, int(os.environ.get("WORLD_SIZE", "1")), cfg.train_dataloader.batch_size,
            cfg.optim_wrapper.optimizer.lr, cfg.base_lr, cfg.base_batch_size,
        )  # fmt: skip
        if not prepared:
            prepare_work_dir(work_dir, sha256_text(Path(config_path).read_text()))
    runner = Runner.from_cfg(cfg)
    runner.register_hook(NonFiniteLossHook())
    runner.register_hook(RngStateHook())
    runner.register_hook(ValidateResumedEpochHook())
    runner.train()
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        # every rank leaves together and closes the group: a gloo rank that exits with
        # it open can abort at interpreter exit ("terminate called without an active
        # exception", seen once in 16 two-process runs), failing a job that had finished
        dist.barrier()
        dist.destroy_process_group()


def distributed_command(script: Path, config_path: Path, work_dir: Path, processes: int) -> list[str]:
    """srun with the slurm launcher inside a big enough allocation, else torchrun."""
    from common.launch import slurm_allocation

    worker = [str(script), "--config", str(config_path), "--work-dir", str(work_dir), "--prepared"]
    if slurm_allocation().get("NumTasks", 0) >= processes:
        return ["srun", f"--ntasks={processes}", "--kill-on-bad-exit=1", sys.executable, *worker, "--launcher", "slurm"]
    return [
        sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={processes}",
        *worker, "--launcher", "pytorch",
    ]  # fmt: skip


class Terminated(Exception):
    """SIGTERM (scancel, a time limit, Snakemake stopping) or the end of the Snakemake process."""


_SIGNALLED = []  # the signals received: a job told to stop is "terminated" whatever surfaced


def _on_sigterm(signum, frame):
    _SIGNALLED.append(signum)
    raise Terminated(f"signal {signum}")


def stop_with_parent(interval: float = 2.0) -> None:
    """SIGTERM ourselves once the process that started the job is gone.

    A killed ``snakemake`` otherwise leaves its training job running (adopted by
    pid 1), and the next invocation would start a second trainer of the run.
    """
    import signal
    import threading

    parent = os.getppid()

    def watch():
        while os.getppid() == parent:
            time.sleep(interval)
        log.error("the process that started this job (pid %d) is gone: stopping", parent)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, daemon=True).start()


def run_children(command: list[str], env: dict, log_file) -> None:
    """Run the training processes in their own process group; end them all if we stop."""
    import signal

    child = subprocess.Popen(command, env=env, stdout=log_file, stderr=log_file, start_new_session=True)
    try:
        code = child.wait()
    except BaseException:
        log.error("stopping the training processes (group %d)", child.pid)
        for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
            try:
                os.killpg(child.pid, sig)
                child.wait(wait)
                break
            except (ProcessLookupError, subprocess.TimeoutExpired):
                continue
        raise
    if code != 0:
        raise subprocess.CalledProcessError(code, command)


def run_job(
    config_path: Path,
    work_dir: Path,
    outputs: dict[str, Path],
    script: Path,
    log_file,
    threads: int = 1,
    where: str = "",
    code: str | None = None,
    kept_log: Path | None = None,
) -> None:
    """What the Snakemake job does: hold the run's lock, set up the work dir and
    record the attempt, train (one or more processes), then export.  A run that
    finished with the same config and ``code`` is only exported again."""
    import shutil

    import torch
    from mmengine.config import Config

    from common.history import history_from_scalars, write_history
    from common.jobs import sha256_text
    from common.launch import cpu_threads, free_port
    from common.run_lock import run_lock
    from common.work_dir import NONFINITE, AttemptClock, export_final, mark_finished, prepare_work_dir

    cfg = Config.fromfile(str(config_path))
    processes, max_epochs = int(cfg.get("gpus", 1)), cfg.max_epochs
    log_training_set(cfg)
    with run_lock(work_dir, log_file=kept_log):
        start = prepare_work_dir(work_dir, sha256_text(Path(config_path).read_text()), code)
        latest = start.latest
        clock = AttemptClock(work_dir, where, latest, start=f"restores {Path(latest).name}" if start.restore else None)
        status = "failed"
        try:
            threads = cpu_threads(threads)
            if start.restore:
                pass
            elif processes == 1:
                torch.set_num_threads(threads)
                log.info("%d CPU thread(s)", threads)
                train(config_path, work_dir, cfg=cfg, prepared=True)
            else:
                command = distributed_command(script, config_path, work_dir, processes)
                env = {
                    **os.environ,
                    "MASTER_PORT": str(free_port()),
                    "PYTHONPATH": str(script.parent),
                    "OMP_NUM_THREADS": str(max(1, threads // processes)),
                }
                log.info("launching %d processes: %s", processes, " ".join(command))
                run_children(command, env, log_file)
            export_final(work_dir, outputs["checkpoint"], max_epochs)
            write_history(history_from_scalars(work_dir), outputs["history"])
            status = "restored" if start.restore else "finished"
        except BaseException as error:
            # Terminated can surface as another exception (a library that wraps what it
            # caught while building a module, say): the signal decides
            if isinstance(error, Terminated) or _SIGNALLED:
                status = "terminated"
            elif (Path(work_dir) / NONFINITE).exists():
                status = "non-finite loss"
            raise
        finally:
            clock.finish(status)
        shutil.copyfile(clock.path, outputs["attempts"])
        mark_finished(work_dir, outputs["checkpoint"])
    training = [row for row in clock.rows if row["status"] != "restored"]
    log.info(
        "run %s: %s, %s; %d training attempt(s), %.4f h of training in all",
        status, outputs["checkpoint"], outputs["history"], len(training),
        sum(row["seconds"] for row in training) / 3600,
    )  # fmt: skip


def keep_job_log(log_path: Path, job: str) -> Path | None:
    """A second name for this job's log under ``train-logs/``, which no later job empties.

    Snakemake removes a job's log file before each job of the rule for the run (a
    retry, or a second trainer that the run lock will refuse): the lines of this
    job live on under the hard link.
    """
    folder = Path(log_path).parent / "train-logs"
    kept = folder / f"{time.strftime('%Y%m%d-%H%M%S')}-{job}.log"
    try:
        folder.mkdir(exist_ok=True)
        os.link(log_path, kept)
    except OSError as error:
        log.warning("this job's log is only %s (no second name in %s: %s)", log_path, folder, error)
        return None
    log.info("this job's log is also %s (kept whatever later jobs of this run do)", kept)
    return kept


def log_training_set(cfg) -> None:
    """What one epoch is (each list's ids and sha256), what the budget makes of it, and
    where the weights start from."""
    init = cfg.get("init_from")
    if init:
        heads = "backbone and heads" if init["heads"] else "backbone (heads re-initialised: other classes)"
        log.info("init_from run %s: %s loaded from %s", init["run"], heads, init["checkpoint"])
    for item in cfg.get("train_lists") or []:
        log.info("training list %s: %d ids, sha256 %s", item["ann_file"], item["images"], item["sha256"][:16])
    if cfg.get("train_images"):
        log.info(
            "training set: %d images; budget %s: %d epochs x %d steps = %d optimizer steps",
            cfg.train_images, cfg.budget, cfg.max_epochs, cfg.iterations_per_epoch,
            cfg.max_epochs * cfg.iterations_per_epoch,
        )  # fmt: skip


def job_where(slurm: dict[str, str]) -> str:
    import socket

    return f"SLURM job {slurm['job_id']} on {slurm['node']}" if slurm else f"host {socket.gethostname()}"


def main(snakemake) -> None:
    import signal

    from common.jobs import start_log
    from common.launch import slurm_job

    signal.signal(signal.SIGTERM, _on_sigterm)
    stop_with_parent()
    # Snakemake removes the log before each job: every job's log is kept under train-logs/
    # too, and attempts.tsv in the work dir keeps every attempt's hours.
    log_file = start_log(snakemake, stdout=True)
    slurm = slurm_job()
    where = job_where(slurm)
    limit = snakemake.config.get("estimates", {}).get("partition_time_limit")
    log.info(
        "---- job %s starts (attempt %d): %s; runtime request %s min (the epochs left after the "
        "checkpoint it resumes from, with a margin; %s)",
        snakemake.rule, snakemake.resources.attempt, where, snakemake.resources.get("runtime"),
        f"at most estimates.partition_time_limit, {limit} min" if limit else "no estimates.partition_time_limit",
    )  # fmt: skip
    kept = keep_job_log(Path(snakemake.log[0]), f"job{slurm['job_id']}" if slurm else f"pid{os.getpid()}")
    run_job(
        Path(snakemake.input.config),
        Path(snakemake.params.work_dir),
        {name: Path(snakemake.output[name]) for name in ("checkpoint", "history", "attempts")},
        Path(snakemake.scriptdir) / "train_upernet.py",
        log_file,
        snakemake.threads,
        where,
        snakemake.params.code,
        kept,
    )


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--work-dir", type=Path, required=True)
    parser.add_argument("--launcher", choices=["none", "pytorch", "slurm"], default="none")
    parser.add_argument("--prepared", action="store_true", help=argparse.SUPPRESS)  # set by run_job
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from common.jobs import LOG_FORMAT

    logging.basicConfig(stream=sys.stdout, level=logging.INFO, format=LOG_FORMAT, force=True)
    if args.prepared:  # a worker process of run_job, which holds the lock
        train(args.config, args.work_dir, args.launcher, prepared=True)
        return
    from common.run_lock import run_lock

    with run_lock(args.work_dir):
        train(args.config, args.work_dir, args.launcher)


if __name__ == "__main__":
    if "snakemake" in globals():
        main(snakemake)  # noqa: F821
    else:
        cli()
