"""What a sweep costs: estimated wall time of a run, SLURM runtime requests, the summary.

Planning only (the dry run, `snakemake cost`, runtime requests): plain Python,
no torch, so a login node can plan a sweep.
"""

import math

# A val image costs about a third of a training one (forward pass only).
VAL_IMAGE_COST = 1 / 3


def train_minutes(
    train_images: int, val_images: int, epochs: int, val_interval: int, images_per_second: float, gpus: int
) -> float:
    """Estimated wall time of one run (training + its validations) on ``gpus`` GPUs."""
    validations = math.ceil(epochs / val_interval)
    work = train_images * epochs + val_images * validations * VAL_IMAGE_COST
    return work / (images_per_second * gpus) / 60


def runtime_request(minutes: float, attempt: int) -> int:
    """SLURM runtime request in minutes: the estimate with a margin, more on each retry."""
    return int(math.ceil(1.5 * minutes + 15) * attempt)


def sweep_summary(
    minutes: list[float], gpus: int, variants: int, budgets: int, seeds: int, images_per_second: float,
    gpu_model: str, evaluations_per_run: int = 1,
) -> str:  # fmt: skip
    runs = len(minutes)
    hours = sum(minutes) * gpus / 60
    return (
        f"run grid: {runs} training jobs of {gpus} GPU(s) each "
        f"({variants} variants, {budgets} budgets (epoch counts, iteration budgets), {seeds} seeds) "
        f"+ {runs * evaluations_per_run} evaluation jobs; "
        f"about {hours:.1f} GPU-hours of training at {images_per_second:g} images/s per GPU "
        f"(estimates.gpu_model: {gpu_model}), finished runs included"
    )
