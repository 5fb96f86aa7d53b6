"""results/tables/summary.{csv,md}: one row per run (rule summarize_runs)."""

import logging
from pathlib import Path

from common.jobs import markdown_table, start_log, write_csv, write_text
from common.history import read_miou_curve
from common.run_files import read_attempts, read_metrics
from common.stats import convergence_epoch

log = logging.getLogger("summarize_runs")

COLUMNS = [
    "variant", "epochs", "seed", "mIoU", "aAcc", "mAcc", "mIoU_tta",
    "converged_epoch", "train_hours", "gpu_hours",
]  # fmt: skip


def train_seconds(attempts: Path) -> float:
    """Training wall time of a run: every attempt's, resumed or cut short ones included."""
    return sum(row["seconds"] for row in read_attempts(attempts))


def summarize(runs, metrics, histories, attempts, tta, gpus: int, fraction: float) -> list[dict]:
    tta = dict(zip([(r["variant"], r["epochs"], r["seed"]) for r in runs], tta)) if tta else {}
    rows = []
    for run, metrics_path, history_path, attempts_path in zip(runs, metrics, histories, attempts, strict=True):
        result = read_metrics(Path(metrics_path))
        seconds = train_seconds(Path(attempts_path))
        key = (run["variant"], run["epochs"], run["seed"])
        rows.append(
            {
                **{k: run[k] for k in ("variant", "epochs", "seed")},
                **{k: round(result[k], 2) for k in ("mIoU", "aAcc", "mAcc")},
                "mIoU_tta": round(read_metrics(Path(tta[key]))["mIoU"], 2) if key in tta else None,
                "converged_epoch": convergence_epoch(*read_miou_curve(Path(history_path)), fraction),
                "train_hours": round(seconds / 3600, 4),
                "gpu_hours": round(seconds * gpus / 3600, 4),
            }
        )
    return rows


def main(snakemake) -> None:
    start_log(snakemake)
    i, p = snakemake.input, snakemake.params
    rows = summarize(p.runs, i.metrics, i.history, i.attempts, list(i.tta), p.gpus, p.convergence_fraction)
    write_csv(Path(snakemake.output.csv), COLUMNS, rows)
    note = (
        f"\nconverged_epoch: first epoch whose val mIoU reached {p.convergence_fraction:g} of the run's best; "
        f"train_hours: wall time of every training attempt of the run (attempts.tsv); "
        f"gpu_hours: that x {p.gpus} GPU(s).\n"
    )
    write_text(Path(snakemake.output.md), markdown_table(COLUMNS, rows) + note)
    log.info("%d runs summarized", len(rows))


if __name__ == "__main__" and "snakemake" in globals():
    main(snakemake)  # noqa: F821
