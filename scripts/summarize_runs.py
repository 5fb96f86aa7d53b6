"""results/tables/summary.{csv,md}: one row per run (rule summarize_runs)."""

import csv
import json
import logging
from pathlib import Path

from study_plots import start_log
from study_stats import convergence_epoch

log = logging.getLogger("summarize_runs")

COLUMNS = [
    "variant", "epochs", "seed", "mIoU", "aAcc", "mAcc", "mIoU_tta",
    "converged_epoch", "train_hours", "gpu_hours",
]  # fmt: skip


def read_history(path: Path) -> tuple[list[int], list[float | None]]:
    with open(path) as handle:
        rows = list(csv.DictReader(handle))
    return [int(r["epoch"]) for r in rows], [float(r["mIoU"]) if r["mIoU"] else None for r in rows]


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
                "converged_epoch": convergence_epoch(*read_history(Path(history_path)), fraction),
                "train_hours": round(seconds / 3600, 4),
                "gpu_hours": round(seconds * gpus / 3600, 4),
            }
        )
    return rows


def markdown_table(columns: list[str], rows: list[dict]) -> str:
    def cell(value):
        return "" if value is None else str(value)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row[c]) for c in columns) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def write_csv(path: Path, columns: list[str], rows: list[dict]) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, columns)
        writer.writeheader()
        writer.writerows({k: ("" if v is None else v) for k, v in row.items()} for row in rows)


def main(snakemake) -> None:
    start_log(snakemake)
    i, p = snakemake.input, snakemake.params
    rows = summarize(p.runs, i.metrics, i.history, i.benchmark, list(i.tta), p.gpus, p.convergence_fraction)
    write_csv(Path(snakemake.output.csv), COLUMNS, rows)
    note = (
        f"\nconverged_epoch: first epoch whose val mIoU reached {p.convergence_fraction:g} of the run's best; "
        f"gpu_hours: training wall time x {p.gpus} GPU(s).\n"
    )
    Path(snakemake.output.md).write_text(markdown_table(COLUMNS, rows) + note)
    log.info("%d runs summarized", len(rows))


if __name__ == "__main__" and "snakemake" in globals():
    main(snakemake)  # noqa: F821
