"""results/tables/per_class_iou.{csv,md}: the study's per-class table, computed,
with paired-bootstrap intervals (rule compare_per_class).

Per epoch count: the baseline's and the other variant's IoU per class (mean
over seeds), their change, its interval, and the study's counts ("N of 21
classes improved, M by more than 8 points").
"""

import logging
from pathlib import Path

import numpy as np

from common.jobs import start_log, write_csv, write_text
from common.stats import align, improvement_sentence, paired_bootstrap
from common.run_files import read_per_image
from common.voc import CLASSES

log = logging.getLogger("compare_per_class")


def compare(runs, paths, compare, bootstrap: dict) -> dict[int, dict]:
    """{epochs: bootstrap result (percent)} for every epoch count both variants have."""
    baseline, other = compare
    by_epochs: dict[int, dict[str, list]] = {}
    reference_ids = None
    for run, path in zip(runs, paths, strict=True):
        ids, confusion = read_per_image(Path(path))
        if reference_ids is None:
            reference_ids = ids
        confusion = confusion[align(reference_ids, ids)]
        by_epochs.setdefault(run["epochs"], {baseline: [], other: []})[run["variant"]].append(confusion)
    results = {}
    for epochs, runs_of in sorted(by_epochs.items()):
        result = paired_bootstrap(
            runs_of[baseline], runs_of[other], bootstrap["resamples"], bootstrap["seed"], bootstrap["confidence"]
        )
        results[epochs] = {key: value * 100 for key, value in result.items()}
    return results


def table_columns(compare, epochs) -> list[str]:
    baseline, other = compare
    columns = ["class"]
    for e in epochs:
        columns += [f"{baseline} e{e}", f"{other} e{e}", f"change e{e}", f"change e{e} low", f"change e{e} high"]
    return columns


def table_rows(results: dict[int, dict], compare) -> list[dict]:
    baseline, other = compare
    rows = []
    for index, name in enumerate([*CLASSES, "mIoU"]):
        row = {"class": name}
        for e, result in results.items():
            if name == "mIoU":
                values = {k: np.nanmean(result[k]) for k in ("baseline", "other")}
                values["change"] = values["other"] - values["baseline"]
                values["change_low"] = values["change_high"] = None
            else:
                values = {k: result[k][index] for k in ("baseline", "other", "change", "change_low", "change_high")}
            row.update(
                {
                    f"{baseline} e{e}": values["baseline"],
                    f"{other} e{e}": values["other"],
                    f"change e{e}": values["change"],
                    f"change e{e} low": values["change_low"],
                    f"change e{e} high": values["change_high"],
                }
            )
        rows.append(row)
    return rows


def _number(value, signed=False) -> str:
    if value is None or np.isnan(value):
        return ""
    return f"{value:+.2f}" if signed else f"{value:.2f}"


def markdown(results: dict[int, dict], rows: list[dict], compare, threshold: float, confidence: float) -> str:
    baseline, other = compare
    header = ["class"]
    for e in results:
        header += [f"{baseline} e{e}", f"{other} e{e}", f"change e{e} [{confidence:.0%} CI]"]
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    for row in rows:
        cells = [row["class"]]
        for e in results:
            low, high = row[f"change e{e} low"], row[f"change e{e} high"]
            change = _number(row[f"change e{e}"], signed=True)
            if low is not None and not np.isnan(low):
                change += f" [{low:+.2f}, {high:+.2f}]" + (" †" if low <= 0 <= high else "")
            cells += [_number(row[f"{baseline} e{e}"]), _number(row[f"{other} e{e}"]), change]
        lines.append("| " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n\n"
    for e, result in results.items():
        text += f"- {e} epochs ({other} vs {baseline}): {improvement_sentence(result['change'], threshold)}.\n"
    text += f"\n† the {confidence:.0%} interval of the change includes 0 (paired bootstrap over val images).\n"
    return text


def csv_row(row: dict) -> dict:
    return {k: v if k == "class" else (None if v is None or np.isnan(v) else round(float(v), 4)) for k, v in row.items()}


def main(snakemake) -> None:
    start_log(snakemake)
    p = snakemake.params
    results = compare(p.runs, snakemake.input.per_image, p.compare, p.bootstrap)
    columns = table_columns(p.compare, list(results))
    rows = table_rows(results, p.compare)
    write_csv(Path(snakemake.output.csv), columns, [csv_row(row) for row in rows])
    text = markdown(results, rows, p.compare, p.threshold, p.bootstrap["confidence"])
    write_text(Path(snakemake.output.md), text)
    log.info("\n%s", text)


if __name__ == "__main__" and "snakemake" in globals():
    main(snakemake)  # noqa: F821
