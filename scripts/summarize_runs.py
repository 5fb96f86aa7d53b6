"""results/tables/summary.{csv,md}: one row per run (rule summarize_runs)."""

import csv
import json
import logging
from pathlib import Path

from common.jobs import markdown_table, start_log, write_csv, write_text
from common.history import read_miou_curve
from common.stats import convergence_epoch

log = logging.getLogger("summarize_runs")

COLUMNS = [
    "variant", "epochs", "seed", "mIoU", "aAcc", "mAcc", "mIoU_tta",
    "converged_epoch", "train_hours", "gpu_hours",
]  # fmt: skip


def train_seconds(benchmark: Path) -> float:
    with open(benchmark) as handle:
        return float(next(csv.DictReader(handle, delimiter="\t"))["s"])


def summarize(runs, metrics, histories, benchmarks, tta, gpus: int, fraction: float) -> list[dict]:
    tta = dict(zip([(r["variant"], r["epochs"], r["seed"]) for r in runs], tta)) if tta else {}
    rows = []
    for run, metrics_path, history_path, benchmark_path in zip(runs, metrics, histories, benchmarks, strict=True):
        result = json.loads(Path(metrics_path).read_text())
        seconds = train_seconds(Path(benchmark_path))
        key = (run["variant"], run["epochs"], run["seed"])
        rows.append(
            {
                **{k: run[k] for k in ("variant", "epochs", "seed")},
                **{k: round(result[k], 2) for k in ("mIoU", "aAcc", "mAcc")},
                "mIoU_tta": round(json.loads(Path(tta[key]).read_text())["mIoU"], 2) if key in tta else None,
                "converged_epoch": convergence_epoch(*read_miou_curve(Path(history_path)), fraction),
                "train_hours": round(seconds / 3600, 4),
                "gpu_hours": round(seconds * gpus / 3600, 4),
            }
        )
    return rows


def main(snakemake) -> None:
    start_log(snakemake)
    i, p = snakemake.input, snakemake.params
    rows = summarize(p.runs, i.metrics, i.history, i.benchmark, list(i.tta), p.gpus, p.convergence_fraction)
    write_csv(Path(snakemake.output.csv), COLUMNS, rows)
    note = (
        f"\nconverged_epoch: first epoch whose val mIoU reached {p.convergence_fraction:g} of the run's best; "
        f"gpu_hours: training wall time x {p.gpus} GPU(s).\n"
    )
    write_text(Path(snakemake.output.md), markdown_table(COLUMNS, rows) + note)
    log.info("%d runs summarized", len(rows))


if __name__ == "__main__" and "snakemake" in globals():
    main(snakemake)  # noqa: F821
