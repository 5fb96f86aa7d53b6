"""results/tables/summary.{csv,md}: one row per run, beside its nearest published
reference (rule summarize_runs)."""

import logging
from pathlib import Path

from common.jobs import markdown_table, start_log, write_csv, write_text
from common.history import read_miou_curve
from common.references import FLAG_POINTS, check_run, load_references, reference_flag, run_recipe
from common.run_files import read_attempts, read_metrics, read_train_set
from common.stats import convergence_epoch

log = logging.getLogger("summarize_runs")

COLUMNS = [
    "variant", "budget", "seed", "epochs", "train_images", "mIoU", "aAcc", "mAcc", "mIoU_tta",
    "converged_epoch", "train_hours", "gpu_hours",
    "iterations", "reference", "reference_mIoU", "vs_reference", "reference_flag",
    "reference_mIoU_msflip", "vs_reference_tta", "reference_differs",
]  # fmt: skip


def train_seconds(attempts: Path) -> float:
    """Training wall time of a run: every attempt's, resumed or cut short ones included."""
    return sum(row["seconds"] for row in read_attempts(attempts))


def summarize(runs, metrics, histories, attempts, tta, gpus: int, fraction: float, train_sets) -> list[dict]:
    tta = dict(zip([(r["variant"], r["budget"], r["seed"]) for r in runs], tta)) if tta else {}
    rows = []
    for run, metrics_path, history_path, attempts_path, train_set_path in zip(
        runs, metrics, histories, attempts, train_sets, strict=True
    ):
        result = read_metrics(Path(metrics_path))
        seconds = train_seconds(Path(attempts_path))
        trained = read_train_set(Path(train_set_path))
        key = (run["variant"], run["budget"], run["seed"])
        rows.append(
            {
                **{k: run[k] for k in ("variant", "budget", "seed")},
                "epochs": trained["epochs"],
                "train_images": trained["images"],
                **{k: round(result[k], 2) for k in ("mIoU", "aAcc", "mAcc")},
                "mIoU_tta": round(read_metrics(Path(tta[key]))["mIoU"], 2) if key in tta else None,
                "converged_epoch": convergence_epoch(*read_miou_curve(Path(history_path)), fraction),
                "train_hours": round(seconds / 3600, 4),
                "gpu_hours": round(seconds * gpus / 3600, 4),
            }
        )
    return rows


def add_references(rows: list[dict], recipes: dict, references: dict, confidence: float) -> None:
    """Each row's nearest reference (from the images its lists really hold), the
    difference, the flag (over the row's seeds) and what differs in the recipe."""
    for row in rows:
        recipe = run_recipe(recipes[row["variant"]], row["epochs"], row["train_images"])
        check = check_run(recipe, references)
        reference = check["reference"]
        seeds = [r["mIoU"] for r in rows if (r["variant"], r["budget"]) == (row["variant"], row["budget"])]
        msflip = reference.get("mIoU_msflip")
        row.update(
            {
                "iterations": recipe["iterations"],
                "reference": reference["name"],
                "reference_mIoU": reference["mIoU"],
                "vs_reference": round(row["mIoU"] - reference["mIoU"], 2),
                "reference_flag": reference_flag(row["mIoU"], seeds, reference["mIoU"], confidence),
                "reference_mIoU_msflip": msflip if row["mIoU_tta"] is not None else None,
                "vs_reference_tta": (
                    round(row["mIoU_tta"] - msflip, 2) if row["mIoU_tta"] is not None and msflip else None
                ),
                "reference_differs": ", ".join(check["differences"]) or "nothing",
            }
        )


def note(rows: list[dict], references_file: str, fraction: float, gpus: int, confidence: float) -> str:
    flagged = [f"{r['variant']} {r['budget']}-s{r['seed']}" for r in rows if r["reference_flag"]]
    text = (
        f"\nbudget: e<N> trains N epochs, i<N> the fewest epochs whose optimizer steps reach N "
        f"(`epochs`, `iterations`: what the run trained; train_images: the images of one epoch). "
        f"converged_epoch: first epoch whose val mIoU reached {fraction:g} of the run's best; "
        f"train_hours: wall time of every training attempt of the run (attempts.tsv); "
        f"gpu_hours: that x {gpus} GPU(s).\n\n"
        f"reference: the nearest published result in {references_file}: the same training data, "
        f"backbone, depth and crop first (in that order), then the schedule nearest in optimizer "
        f"iterations (the run's `iterations`); vs_reference = mIoU − reference_mIoU "
        f"(vs_reference_tta: mIoU_tta against its ms+flip number); reference_differs: the recipe "
        f"settings in which the run differs from that reference (`snakemake check` lists each). "
        f"reference_flag: far below = more than {FLAG_POINTS:g} points below, or, with two or more "
        f"seeds, the reference above the {confidence:.0%} Student-t interval of the mean over seeds.\n"
    )
    if flagged:
        text += f"\n**Far below their reference: {len(flagged)} of {len(rows)} runs** ({', '.join(flagged)}).\n"
    return text


def main(snakemake) -> None:
    start_log(snakemake)
    i, p = snakemake.input, snakemake.params
    rows = summarize(
        p.runs, i.metrics, i.history, i.attempts, list(i.tta), p.gpus, p.convergence_fraction, i.train_set
    )
    add_references(rows, p.recipes, load_references(i.references, validate=False), p.confidence)
    write_csv(Path(snakemake.output.csv), COLUMNS, rows)
    text = markdown_table(COLUMNS, rows) + note(rows, i.references, p.convergence_fraction, p.gpus, p.confidence)
    write_text(Path(snakemake.output.md), text)
    log.info("%d runs summarized, %d far below their reference", len(rows), sum(bool(r["reference_flag"]) for r in rows))


if __name__ == "__main__" and "snakemake" in globals():
    main(snakemake)  # noqa: F821
