"""Train one run with MMEngine's Runner (rule train_upernet), resuming if it can.

One process per GPU of the job: a single one in-process, several through
``srun`` + MMEngine's ``slurm`` launcher inside a SLURM allocation with enough
tasks, otherwise through ``torchrun``.  The job's outputs are written only
after training finished: ``final.pth`` (weights + meta) and ``history.csv``.

Also a command line, for the worker processes and for use by hand:

    python scripts/train_upernet.py --config results/runs/voc/e30-s0/config.py \
        --work-dir results/work/voc/e30-s0 [--launcher none|pytorch|slurm]
"""

import argparse
import logging
import os
import subprocess
import sys
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
    from common.work_dir import prepare_work_dir

    cfg = Config.fromfile(str(config_path)) if cfg is None else cfg
    cfg.work_dir = str(work_dir)
    cfg.launcher = launcher
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


def run_job(
    config_path: Path,
    work_dir: Path,
    checkpoint: Path,
    history: Path,
    script: Path,
    log_file,
    threads: int = 1,
    banner: str = "",
) -> None:
    """What the Snakemake job does: check the work dir and record the attempt,
    train (one or more processes), then export."""
    import torch
    from mmengine.config import Config

    from common.history import history_from_scalars, write_history
    from common.jobs import sha256_text
    from common.launch import cpu_threads, free_port
    from common.work_dir import export_final, prepare_work_dir, record_attempt

    cfg = Config.fromfile(str(config_path))
    processes, max_epochs = int(cfg.get("gpus", 1)), cfg.max_epochs
    latest = prepare_work_dir(work_dir, sha256_text(Path(config_path).read_text()))
    record_attempt(work_dir, banner, latest)
    threads = cpu_threads(threads)
    if processes == 1:
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
        subprocess.run(command, check=True, env=env, stdout=log_file, stderr=log_file)
    export_final(work_dir, checkpoint, max_epochs)
    write_history(history_from_scalars(work_dir), history)
    log.info("run finished: %s, %s", checkpoint, history)


def job_banner(rule: str, attempt: int, slurm: dict[str, str]) -> str:
    where = f"SLURM job {slurm['job_id']} on node {slurm['node']}" if slurm else "not in a SLURM job"
    return f"---- job {rule} starts (attempt {attempt}): {where}"


def main(snakemake) -> None:
    from common.jobs import start_log
    from common.launch import slurm_job

    # Snakemake empties the log before each attempt: attempts.log in the work dir keeps them all.
    log_file = start_log(snakemake, stdout=True)
    banner = job_banner(snakemake.rule, snakemake.resources.attempt, slurm_job())
    log.info(banner)
    run_job(
        Path(snakemake.input.config),
        Path(snakemake.params.work_dir),
        Path(snakemake.output.checkpoint),
        Path(snakemake.output.history),
        Path(snakemake.scriptdir) / "train_upernet.py",
        log_file,
        snakemake.threads,
        banner,
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
    train(args.config, args.work_dir, args.launcher, prepared=args.prepared)


if __name__ == "__main__":
    if "snakemake" in globals():
        main(snakemake)  # noqa: F821
    else:
        cli()
