"""results/tables/attribution.{csv,md}: the voc -> vocaug mIoU change split into the
parts the config's runs can identify (rule attribution; common/attribution.py
says which runs each part compares).

Each part is the mIoU change from one run group to another (mean over seeds) on
VOC val, with the paired bootstrap interval over val images and seeds of the
per-class table.  The parts are measured at their own budgets and need not add
up to the total: the table says what each one is, not a decomposition.
"""

import logging
from pathlib import Path

from common.attribution import part_text, run_name, sentence
from common.jobs import markdown_table, start_log, write_csv, write_text
from common.stats import change_columns, decimals_for, group_per_image, paired_bootstrap, precision_note, unsettled

log = logging.getLogger("attribution")

COLUMNS = ["part", "measured", "from", "to", "from_mIoU", "to_mIoU", "change", "low", "high",
           "mc_error", "low_mc_error", "high_mc_error", "seeds_from", "seeds_to", "question", "to_measure"]  # fmt: skip


def attribute(parts: list[dict], groups: dict, bootstrap: dict) -> list[dict]:
    """One row per part: its change (points) and interval, or why it is not measured."""
    rows = []
    for part in parts:
        row = {"part": part["part"], "question": part["question"], "from": run_name(part["from"]),
               "to": run_name(part["to"]), "measured": False, "to_measure": part["missing"] or ""}  # fmt: skip
        if part["from"] is None:
            rows.append(row)
            continue
        a = groups.get((part["from"]["variant"], part["from"]["budget"]))
        b = groups.get((part["to"]["variant"], part["to"]["budget"]))
        if not a or not b:
            row["to_measure"] = "its runs have not finished yet"
            rows.append(row)
            continue
        result = paired_bootstrap(
            a, b, resamples=bootstrap["resamples"], seed=bootstrap["seed"], confidence=bootstrap["confidence"],
            max_resamples=bootstrap["max_resamples"], mc_error=bootstrap["mc_error"] / 100,
        )  # fmt: skip
        row.update(
            {
                "measured": True,
                "from_mIoU": 100 * float(result["miou_baseline"]),
                "to_mIoU": 100 * float(result["miou_other"]),
                **change_columns(result),
                "seeds_from": len(a),
                "seeds_to": len(b),
            }
        )
        rows.append(row)
    return rows


def markdown(rows: list[dict], confidence: float) -> str:
    measured = [r for r in rows if r["measured"]]
    error = max((r["mc_error"] for r in measured), default=0.0)
    decimals = decimals_for(error)
    marked = sum(unsettled(r.get(key), decimals) for r in measured for key in ("low_mc_error", "high_mc_error"))
    table = []
    for r in rows:
        table.append(
            {
                "part": r["part"],
                "compares": f"{r['from']} → {r['to']}" if r["from"] else "",
                "mIoU change": part_text(r, decimals) if r["measured"] else "not measured",
                "seeds": f"{r['seeds_from']}, {r['seeds_to']}" if r["measured"] else "",
                "what changes": r["question"],
                "to measure it": r["to_measure"],
            }
        )
    columns = ["part", "compares", "mIoU change", "seeds", "what changes", "to measure it"]
    return (
        markdown_table(columns, table)
        + f"\nmIoU change on VOC val in points (to − from), mean over seeds, with its {confidence:.0%} "
        "paired bootstrap interval over val images and seeds († includes 0). Each part compares two "
        "runs that differ in that one thing; the parts are measured at their own budgets and are not "
        "a decomposition that adds up to the total."
        + (f" {precision_note(error, decimals, marked)}\n" if measured else "\n")
    )


def main(snakemake) -> None:
    start_log(snakemake)
    p = snakemake.params
    groups = group_per_image(p.runs, list(snakemake.input.per_image))
    rows = attribute(p.parts, groups, p.bootstrap)
    write_csv(Path(snakemake.output.csv), COLUMNS, rows)
    text = markdown(rows, p.bootstrap["confidence"])
    write_text(Path(snakemake.output.md), text)
    log.info("\n%s\n%s", text, sentence(rows))


if __name__ == "__main__" and "snakemake" in globals():
    main(snakemake)  # noqa: F821
