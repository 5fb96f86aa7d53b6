"""Sizing a sweep: estimated wall time of a run, SLURM runtime requests, the cost summary.

Planning only (the dry run, `snakemake cost`, runtime requests): plain Python,
no torch, so a login node can plan a sweep.
"""

import hashlib
import json
import math
import re
from pathlib import Path

# A val image costs about a third of a training one (forward pass only).
VAL_IMAGE_COST = 1 / 3
# A runtime request: the estimate of the work left x MARGIN x the attempt (a retry
# after a time-out says the estimate was low), + START_MINUTES (start-up, the
# resumed epoch's validation, the export).
MARGIN = 1.5
START_MINUTES = 15
# What a training job leaves in its work dir (common/work_dir.py, which needs torch;
# the names are MMEngine's and that module's, pinned by tests/test_planning.py).
LAST_CHECKPOINT = "last_checkpoint"
FINISHED = "finished"
CONFIG_STAMP = "config.sha256"
CODE_STAMP = "code.sha256"


def train_minutes(
    train_images: int, val_images: int, epochs: int, val_interval: int, images_per_second: float, gpus: int,
    val_images_per_second: float | None = None,
) -> float:  # fmt: skip
    """Estimated wall time of one run (training + its validations) on ``gpus`` GPUs, at
    ``images_per_second`` per GPU in training and ``val_images_per_second`` per GPU in
    validation (None: VAL_IMAGE_COST of a training image)."""
    validations = math.ceil(epochs / val_interval)
    if val_images_per_second is None:
        work = train_images * epochs + val_images * validations * VAL_IMAGE_COST
        return work / (images_per_second * gpus) / 60
    seconds = train_images * epochs / images_per_second + val_images * validations / val_images_per_second
    return seconds / gpus / 60


# ---- measured rates: rule measure_gpu's results (scripts/gpu_check.py) ----
GPU_CHECK_FOLDER = "gpu_check"


def measurement_mode(amp, channels_last) -> str:
    """The gpu_check mode a run's precision settings train in ('fp32', 'amp+channels_last', ...)."""
    return ("amp" if amp else "fp32") + ("+channels_last" if channels_last else "")


def read_measurements(folder: Path) -> tuple[dict, list[str]]:
    """{(model, gpus): document} of the gpu_check results in ``folder``, and a line for
    each file there that is not one (planning goes on with the estimate)."""
    found, problems = {}, []
    for path in sorted(Path(folder).glob("*-*.json")):
        try:
            document = json.loads(path.read_text())
            key = (document["model"], int(document["gpus"]))
            if path.stem != f"{key[0]}-{key[1]}" or not isinstance(document["modes"], dict):
                raise ValueError(f"it describes {key[0]}-{key[1]}")
        except (OSError, ValueError, KeyError, TypeError) as error:
            problems.append(f"{path}: not a gpu_check result ({type(error).__name__}: {error}); ignored")
            continue
        found[key] = document
    return found, problems


def measured_rates(document: dict, mode: str, crop_size, batch_per_gpu: int) -> tuple[float, float] | None:
    """(train, val) images/s per GPU that ``document`` measured for ``mode`` at this crop and
    batch (None: it measured another recipe, or that mode failed, e.g. out of memory)."""
    if list(document.get("crop_size", [])) != list(crop_size) or document.get("batch_per_gpu") != batch_per_gpu:
        return None
    rates = document["modes"].get(mode) or {}
    train, val = rates.get("train_images_per_second"), rates.get("val_images_per_second")
    if not isinstance(train, (int, float)) or not isinstance(val, (int, float)) or train <= 0 or val <= 0:
        return None
    return float(train), float(val)


def runtime_request(minutes: float, attempt: int, limit: int | None = None) -> int:
    """SLURM runtime request in minutes for ``minutes`` of estimated work left, never
    above ``limit`` (the partition's time limit: a longer request pends forever, while
    a job stopped at the limit resumes from its last checkpoint in the next attempt)."""
    request = math.ceil(MARGIN * attempt * minutes + START_MINUTES)
    return min(request, limit) if limit else request


def resume_point(work_dir: Path, config_text: str | None, code: str | None) -> tuple[int, bool]:
    """(epochs done, restore) of the next training job in ``work_dir``, by
    common/work_dir.prepare_work_dir's rules: a finished run of the same config and
    training ``code`` is restored without training; another finished one, or
    checkpoints of another config, start afresh; else MMEngine's last_checkpoint is
    resumed. (0, False) too when the run's config is not rendered yet."""
    work_dir = Path(work_dir)
    if config_text is None:
        return 0, False

    def stamp(name):
        path = work_dir / name
        return path.read_text().strip() if path.is_file() else None

    same_config = stamp(CONFIG_STAMP) == hashlib.sha256(config_text.encode()).hexdigest()
    latest = stamp(LAST_CHECKPOINT)
    if (work_dir / FINISHED).exists():
        return 0, bool(same_config and code is not None and stamp(CODE_STAMP) == code and latest)
    if not latest or (stamp(CONFIG_STAMP) is not None and not same_config):
        return 0, False
    epoch = re.search(r"epoch_(\d+)\.pth$", latest)
    return (int(epoch.group(1)) if epoch else 0), False


def sweep_summary(
    minutes: list[float], gpus: int, variants: int, budgets: int, seeds: int, rates: str,
    evaluations: int, limit: int | None = None,
) -> str:  # fmt: skip
    """The `snakemake cost` line: ``minutes`` per training job, ``evaluations`` jobs,
    ``rates`` which throughput the minutes come from."""
    runs = len(minutes)
    hours = sum(minutes) * gpus / 60
    capped = sum(1 for m in minutes if limit and runtime_request(m, 1) > limit)
    line = (
        f"run grid: {runs} training jobs of {gpus} GPU(s) each "
        f"({variants} variants, {budgets} budgets (epoch counts, iteration budgets), {seeds} seeds) "
        f"+ {evaluations} evaluation jobs; "
        f"about {hours:.1f} GPU-hours of training {rates}, finished runs included"
    )
    if capped:
        line += (
            f"; {capped} run(s) ask for more than estimates.partition_time_limit ({limit} min) "
            "and are capped there: one that needs longer resumes from its last checkpoint in a "
            "retry (the profile's `retries`)"
        )
    return line
