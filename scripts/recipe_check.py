"""<results>/tables/recipe_check.{csv,md}: every run's recipe against the published
reference it is compared with, and the reproduction traps that apply (rule
recipe_check; `snakemake check` prints the Markdown).

The recipes come from planning (common.smk, from the config and the planned
list sizes); the comparison is common.references's. No torch.
"""

import logging
from pathlib import Path

from common.jobs import start_log, write_csv, write_text
from common.subsets import describe_budget
from common.references import check_run, load_references

log = logging.getLogger("recipe_check")

COLUMNS = ["variant", "budget", "epochs", "reference", "setting", "run", "reference_value", "differs"]


def checks_of(runs: list[dict], references: dict) -> list[dict]:
    """Per variant and budget: its recipe checked against its nearest reference."""
    return [{**run, **check_run(run["recipe"], references)} for run in runs]


def csv_rows(checks: list[dict]) -> list[dict]:
    rows = []
    for check in checks:
        where = {"variant": check["variant"], "budget": check["budget"], "epochs": check["recipe"]["epochs"],
                 "reference": check["reference"]["name"]}  # fmt: skip
        for row in check["rows"]:
            rows.append({**where, "setting": row["setting"], "run": row["run"],
                         "reference_value": row["reference"], "differs": row["differs"]})  # fmt: skip
        for warning in check["warnings"]:
            rows.append({**where, "setting": "warning", "run": warning, "reference_value": None, "differs": True})
    return rows


def markdown(checks: list[dict], references_file: str) -> str:
    lines = [
        "# Recipe check",
        "",
        f"Every run against the published reference it is compared with ({references_file}: "
        "the nearest with the same data, backbone, depth and crop, then the nearest schedule "
        "in optimizer iterations). Seeds share a recipe.",
        "",
        "| variant | budget | epochs | seeds | training images | iterations | reference | reference mIoU | differs in | warnings |",
        "|---|---|---:|---|---:|---:|---|---:|---|---:|",
    ]
    for c in checks:
        differs = ", ".join(c["differences"]) or "nothing"
        seeds = ", ".join(str(s) for s in c["seeds"])
        lines.append(
            f"| {c['variant']} | {c['budget']} | {c['recipe']['epochs']} | {seeds} | {c['recipe']['images']:,} | "
            f"{c['recipe']['iterations']:,} | {c['reference']['name']} | {c['reference']['mIoU']:g} | "
            f"{differs} | {len(c['warnings'])} |"
        )
    for c in checks:
        title = f"{c['variant']}, {describe_budget(c['budget'])}: against {c['reference']['name']} ({c['reference']['source']})"
        lines += ["", f"## {title}", "", "| setting | this run | reference | |", "|---|---|---|---|"]
        for row in c["rows"]:
            lines.append(f"| {row['setting']} | {row['run']} | {row['reference']} | {'≠' if row['differs'] else ''} |")
        if c["warnings"]:
            lines += ["", "Warnings:", ""] + [f"- {w}" for w in c["warnings"]]
    sources = {c["reference"]["source"]: c["reference"]["source_description"] for c in checks}
    lines += ["", "## Sources", ""] + [f"- {name}: {text}" for name, text in sources.items()]
    return "\n".join(lines) + "\n"


def main(snakemake) -> None:
    start_log(snakemake)
    references = load_references(snakemake.input.references, validate=False)
    checks = checks_of(snakemake.params.runs, references)
    write_csv(Path(snakemake.output.csv), COLUMNS, csv_rows(checks))
    write_text(Path(snakemake.output.md), markdown(checks, snakemake.input.references))
    log.info("%d runs checked, %d warnings", len(checks), sum(len(c["warnings"]) for c in checks))


if __name__ == "__main__" and "snakemake" in globals():
    main(snakemake)  # noqa: F821
