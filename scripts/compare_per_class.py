"""results/tables/per_class_iou.{csv,md}: the study's per-class table, computed,
with paired-bootstrap intervals (rule compare_per_class).

Per budget (epoch count or iteration budget): the baseline's and the other variant's IoU per class (mean
over seeds), their change, its interval, and the study's counts ("N of 21
classes improved, M by more than 8 points"). Where a published per-class table
has a compared run's recipe and epoch count (the study's own 200-epoch runs,
config/references.yaml), its IoU stands beside the reproduced one.
"""

import logging
from pathlib import Path

import numpy as np

from common.jobs import start_log, write_csv, write_text
from common.stats import (
    align, bound_text, decimals_for, improvement_sentence, paired_bootstrap, plain, precision_note, signed, unsettled,
)
from common.run_files import read_per_image
from common.subsets import budget_key, describe_budget
from common.voc import CLASSES

log = logging.getLogger("compare_per_class")


def compare(runs, paths, compare, bootstrap: dict) -> dict[str, dict]:
    """{budget: bootstrap result (percent)} for every budget both variants have."""
    baseline, other = compare
    by_budget: dict[str, dict[str, list]] = {}
    reference_ids = None
    for run, path in zip(runs, paths, strict=True):
        ids, confusion = read_per_image(Path(path))
        if reference_ids is None:
            reference_ids = ids
        confusion = confusion[align(reference_ids, ids)]
        by_budget.setdefault(run["budget"], {baseline: [], other: []})[run["variant"]].append(confusion)
    results = {}
    for budget, runs_of in sorted(by_budget.items(), key=lambda item: budget_key(item[0])):
        result = paired_bootstrap(
            runs_of[baseline],
            runs_of[other],
            resamples=bootstrap["resamples"],
            seed=bootstrap["seed"],
            confidence=bootstrap["confidence"],
            max_resamples=bootstrap["max_resamples"],
            mc_error=bootstrap["mc_error"] / 100,
        )
        results[budget] = {
            key: value if key in ("resamples", "left_out") else value * 100 for key, value in result.items()
        }
        results[budget]["seeds"] = (len(runs_of[baseline]), len(runs_of[other]))
        results[budget]["images"] = len(reference_ids)
    return results


def table_columns(compare, epochs, published: dict | None = None) -> list[str]:
    columns = ["class"]
    for e in epochs:
        for variant in compare:
            columns.append(f"{variant} {e}")
            if variant in (published or {}).get(e, {}):
                columns.append(f"{variant} {e} published")
        columns += [f"change {e}", f"change {e} low", f"change {e} high", f"change {e} mc error"]
        columns += [f"change {e} low mc error", f"change {e} high mc error"]
    return columns


def add_published(rows: list[dict], published: dict) -> None:
    """The published IoU per class (and their mean in the mIoU row) beside the reproduced."""
    for e, by_variant in published.items():
        for variant, (_, per_class) in by_variant.items():
            for row in rows:
                value = sum(per_class.values()) / len(per_class) if row["class"] == "mIoU" else per_class[row["class"]]
                row[f"{variant} {e} published"] = value


def table_rows(results: dict[str, dict], compare) -> list[dict]:
    baseline, other = compare
    rows = []
    for index, name in enumerate([*CLASSES, "mIoU"]):
        row = {"class": name}
        keys = ("baseline", "other", "change", "change_low", "change_high", "change_low_error", "change_high_error")
        for e, result in results.items():
            if name == "mIoU":
                values = {k: result[f"miou_{k}"] for k in keys}
            else:
                values = {k: result[k][index] for k in keys}
            values["mc_error"] = max(values["change_low_error"], values["change_high_error"])
            row.update(
                {
                    f"{baseline} {e}": values["baseline"],
                    f"{other} {e}": values["other"],
                    f"change {e}": values["change"],
                    f"change {e} low": values["change_low"],
                    f"change {e} high": values["change_high"],
                    f"change {e} mc error": values["mc_error"],
                    f"change {e} low mc error": values["change_low_error"],
                    f"change {e} high mc error": values["change_high_error"],
                }
            )
        rows.append(row)
    return rows


def _number(value, decimals: int, sign=False) -> str:
    if value is None or np.isnan(value):
        return ""
    return (signed if sign else plain)(value, decimals)


ERROR_KEYS = ("change_low_error", "change_high_error", "miou_change_low_error", "miou_change_high_error")


def table_precision(results: dict[str, dict]) -> tuple[float, int]:
    """The largest Monte Carlo error of a printed bound, and the decimals it allows."""
    errors = [
        float(np.nanmax(np.concatenate([r[k].ravel() for k in ERROR_KEYS])))
        for r in results.values()
        if np.isfinite(r["change_low_error"]).any() or np.isfinite(r["change_high_error"]).any()
    ]
    error = max(errors, default=0.0)
    return error, decimals_for(error)


def footnote(results: dict[str, dict], compare, confidence: float, marked: int = 0) -> str:
    """How the intervals were made and how far their digits can be trusted (``marked``:
    the bounds printed with the mark of an unsettled last digit)."""
    baseline, other = compare
    error, decimals = table_precision(results)
    first = next(iter(results.values()), None)
    if first is None:
        return "No budget has runs of both compared variants yet.\n"
    resamples = sorted({int(r["resamples"]) for r in results.values()})
    seeds = sorted({r["seeds"] for r in results.values()})
    text = (
        f"† the {confidence:.0%} interval of the change includes 0. Intervals: percentile bootstrap "
        f"over the {first['images']} val images, the same images drawn for both variants"
    )
    if any(max(s) > 1 for s in seeds):
        text += (
            "; with several seeds, the value is the mean over seeds and each resample also draws "
            "each variant's seeds with replacement, so the interval covers seed and image variation"
        )
    text += f". {'/'.join(f'{r:,}' for r in resamples)} resamples. {precision_note(error, decimals, marked)} "
    left_out = {
        CLASSES[i]: float(np.max([r["left_out"][i] for r in results.values()])) for i in range(len(CLASSES))
    }
    absent = {name: share for name, share in left_out.items() if share > 0}
    if absent:
        worst = max(absent, key=absent.get)
        text += (
            f"A resample without a class's ground-truth pixels is left out for that class "
            f"({len(absent)} classes; at most {absent[worst]:.1%} of resamples, {worst})."
        )
    else:
        text += "Every resample had ground truth of every class (none left out)."
    return text + "\n"


def markdown(
    results: dict[str, dict], rows: list[dict], compare, threshold: float, confidence: float,
    published: dict | None = None,
) -> str:  # fmt: skip
    baseline, other = compare
    published = published or {}
    _, decimals = table_precision(results)
    header = ["class"]
    for e in results:
        for variant in compare:
            header.append(f"{variant} {e}")
            if variant in published.get(e, {}):
                header.append(f"{variant} {e} (published)")
        header.append(f"change {e} [{confidence:.0%} CI]")
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    marked = 0
    for row in rows:
        cells = [row["class"]]
        for e in results:
            low, high = row[f"change {e} low"], row[f"change {e} high"]
            change = _number(row[f"change {e}"], decimals, sign=True)
            if low is not None and not np.isnan(low):
                errors = (row.get(f"change {e} low mc error"), row.get(f"change {e} high mc error"))
                marked += sum(unsettled(x, decimals) for x in errors)
                bounds = f"{bound_text(low, errors[0], decimals)}, {bound_text(high, errors[1], decimals)}"
                change += f" [{bounds}]" + (" †" if low <= 0 <= high else "")
            for variant in compare:
                cells.append(_number(row[f"{variant} {e}"], decimals))
                if f"{variant} {e} published" in row:
                    cells.append(f"{row[f'{variant} {e} published']:.2f}")
            cells.append(change)
        lines.append("| " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n\n"
    for e, result in results.items():
        text += f"- {describe_budget(e)} ({other} vs {baseline}): {improvement_sentence(result['change'], threshold)}.\n"
    for e, by_variant in published.items():
        for variant, (name, _) in by_variant.items():
            text += f"- {variant} {e} (published): {name} (report.references).\n"
    text += "\n" + footnote(results, compare, confidence, marked)
    return text


def csv_row(row: dict) -> dict:
    return {k: v if k == "class" else (None if v is None or np.isnan(v) else round(float(v), 4)) for k, v in row.items()}


def main(snakemake) -> None:
    start_log(snakemake)
    p = snakemake.params
    results = compare(p.runs, snakemake.input.per_image, p.compare, p.bootstrap)
    published = {e: v for e, v in p.published.items() if e in results}
    columns = table_columns(p.compare, list(results), published)
    rows = table_rows(results, p.compare)
    add_published(rows, published)
    write_csv(Path(snakemake.output.csv), columns, [csv_row(row) for row in rows])
    text = markdown(results, rows, p.compare, p.threshold, p.bootstrap["confidence"], published)
    write_text(Path(snakemake.output.md), text)
    log.info("\n%s", text)


if __name__ == "__main__" and "snakemake" in globals():
    main(snakemake)  # noqa: F821
