"""The HTML report's opening "Findings", rendered from the tables (rule findings).

Writes ``<view>/report/workflow.rst``: a short Findings section — the mIoU change
with its interval per epoch count, the generalization gaps per variant, and the
three classes with the largest change beside their SBD-vs-VOC label agreement,
and how the runs compare with their published references (the summary) —
followed by the workflow's own description (report/workflow.rst).  Every number
is read from the tables, printed with the decimals their Monte Carlo error
supports; nothing here is hard-coded.
"""

import csv
from pathlib import Path

import numpy as np

from common.attribution import sentence as attribution_sentence
from common.jobs import start_log, write_text
from common.subsets import describe_budget, longest_budget, table_budgets
from common.stats import MARK, decimals_for, interval_text, signed


def read_rows(path: Path) -> list[dict]:
    with open(path) as handle:
        return list(csv.DictReader(handle))


def number(text) -> float:
    return float(text) if text not in ("", None) else np.nan


def interval(value: float, low: float, high: float, decimals: int, errors=(None, None)) -> str:
    """``+3 [+1, +5‡]``; ``errors``: the Monte Carlo error of each bound (MARK where too large)."""
    text = interval_text(value, low, high, decimals, errors)
    return text + (" (interval includes 0)" if low <= 0 <= high else "")


def bound_errors(row: dict, low: str, high: str) -> tuple[float, float]:
    """The two bounds' Monte Carlo errors from a table's columns (NaN where it has none)."""
    return number(row.get(low)), number(row.get(high))


def per_class_findings(rows: list[dict], compare, confidence: float, agreement: dict[str, float]) -> list[str]:
    baseline, other = compare
    epochs = table_budgets(rows[0] if rows else {})
    if not epochs:
        return [f"- No budget has runs of both {baseline} and {other} yet."]
    errors = [number(r[f"change {e} mc error"]) for r in rows for e in epochs]
    decimals = decimals_for(max((x for x in errors if not np.isnan(x)), default=0.0))
    miou = next(r for r in rows if r["class"] == "mIoU")

    def change(row, e):
        values = (number(row[f"change {e}{s}"]) for s in ("", " low", " high"))
        return interval(*values, decimals, bound_errors(row, f"change {e} low mc error", f"change {e} high mc error"))

    changes = "; ".join(f"{describe_budget(e)}: {change(miou, e)}" for e in epochs)
    lines = [
        f"- **mIoU change, {other} − {baseline}** (points, {confidence:.0%} bootstrap interval "
        f"over val images and seeds): {changes}."
    ]
    longest = longest_budget(epochs)
    classes = [r for r in rows if r["class"] != "mIoU" and not np.isnan(number(r[f"change {longest}"]))]
    largest = sorted(classes, key=lambda r: -abs(number(r[f"change {longest}"])))[:3]
    parts = []
    for row in largest:
        share = agreement.get(row["class"])
        agree = f"SBD–VOC label agreement {share:.0f}%" if share is not None else "agreement not measured"
        parts.append(f"``{row['class']}`` {change(row, longest)} ({agree})")
    lines.append(f"- **Largest per-class changes** at {describe_budget(longest)}: " + "; ".join(parts) + ".")
    return lines


def generalization_findings(rows: list[dict]) -> list[str]:
    if not rows:
        return []
    error = max(number(r["mc error"]) for r in rows)
    decimals = decimals_for(error)
    longest = {}
    for row in rows:
        mine = longest.get(row["variant"])
        if mine is None or longest_budget([mine["budget"], row["budget"]]) == row["budget"] != mine["budget"]:
            longest[row["variant"]] = row
    gaps = [k for k in rows[0] if k.startswith("gap ") and not k.endswith((" low", " high"))]
    if not gaps:
        return []
    parts = []
    for variant, row in longest.items():
        values = ", ".join(
            f"{gap[4:]} "
            + interval(
                number(row[gap]), number(row[f"{gap} low"]), number(row[f"{gap} high"]), decimals,
                bound_errors(row, f"mc error {gap} low", f"mc error {gap} high"),
            )  # fmt: skip
            for gap in gaps
        )
        parts.append(f"{variant} ({describe_budget(row['budget'])}): {values}")
    return [
        "- **Generalization gaps** (mIoU points; train: the run's own training images, val: VOC "
        "val, coco: COCO pictures with VOC's classes): " + "; ".join(parts) + "."
    ]


def reference_findings(rows: list[dict]) -> list[str]:
    """Per variant and budget: the mean mIoU over seeds against the run's
    nearest published reference, whether it is far below, and what differs."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault((row["variant"], row["budget"]), []).append(row)
    if not groups:
        return []
    parts = []
    for (variant, budget), runs in groups.items():
        first = runs[0]
        mean = float(np.mean([number(r["mIoU"]) for r in runs]))
        reference = number(first["reference_mIoU"])
        seeds = f", {len(runs)} seeds" if len(runs) > 1 else ""
        far = " — far below" if any(r["reference_flag"] for r in runs) else ""
        parts.append(
            f"{variant} ({describe_budget(budget)}{seeds}): {mean:.1f} against {reference:g} for {first['reference']} "
            f"({signed(mean - reference, 1)}{far}; differs in {first['reference_differs']})"
        )
    flagged = sum(1 for runs in groups.values() if any(r["reference_flag"] for r in runs))
    verdict = (
        f"{flagged} of {len(groups)} variant and budget pairs are far below theirs: "
        "read the differences in ``recipe_check`` first."
        if flagged
        else "None is far below its reference."
    )
    return [
        "- **Against published references** (mIoU on VOC val, mean over seeds; the nearest "
        "published recipe, config key report.references): " + "; ".join(parts) + ". " + verdict
    ]


def attribution_findings(rows: list[dict]) -> list[str]:
    """One sentence from attribution.csv: the measured parts beside the total."""
    if not rows:
        return []
    for row in rows:
        row["measured"] = row["measured"] == "True"
        for key in ("change", "low", "high", "mc_error", "low_mc_error", "high_mc_error"):
            row[key] = number(row.get(key))
    return [f"- **What moved the numbers**: {attribution_sentence(rows)}"]


def findings(
    per_class: Path, generalization: Path, annotations: Path, compare, confidence: float, summary: Path | None = None,
    attribution: Path | None = None,
) -> str:
    agreement = {
        r["class"]: number(r["agreement IoU"])
        for r in read_rows(annotations)
        if not np.isnan(number(r.get("agreement IoU")))
    }
    lines = per_class_findings(read_rows(per_class), compare, confidence, agreement)
    lines += generalization_findings(read_rows(generalization))
    if summary is not None:
        lines += reference_findings(read_rows(summary))
    if attribution is not None:
        lines += attribution_findings(read_rows(attribution))
    if any(MARK in line for line in lines):
        lines.append(
            f"- {MARK}: a bound whose Monte Carlo error is above half a unit of its last printed digit, so "
            "that digit is not settled (each table's footnote gives the error)."
        )
    return "Findings\n========\n\n" + "\n".join(lines) + "\n\n"


def main(snakemake) -> None:
    start_log(snakemake)
    p, i = snakemake.params, snakemake.input
    text = findings(
        Path(i.per_class), Path(i.generalization), Path(i.annotations), p.compare, p.confidence, Path(i.summary),
        Path(i.attribution),
    )
    description = Path(i.description).read_text()
    write_text(Path(snakemake.output[0]), text + "Workflow\n========\n\n" + description)


if __name__ == "__main__" and "snakemake" in globals():
    main(snakemake)  # noqa: F821
