"""results/tables/generalization.{csv,md}: overfitting and generalization, measured
(rule generalization).

Per variant and epoch count: mIoU on a fixed sample of the run's own training
images, on VOC val, and on each set from outside VOC (COCO val images with VOC's
classes), and the gaps between them (train − val: how much the model does better
on what it was trained on; val − coco: how much it loses on pictures from another
source), each with a bootstrap interval over images (and over seeds when there
are several).  The study's claim — `voc` is a "偏科生" (a specialist that
overfits), `vocaug` a "通才" (a generalist) — reads off the two gap columns.
"""

import logging
from pathlib import Path

import numpy as np

from common.jobs import start_log, write_csv, write_text
from common.run_files import read_per_image
from common.stats import align, decimals_for, interval_text, precision_note, set_bootstrap, unsettled
from common.subsets import budget_key

log = logging.getLogger("generalization")

SET_NAMES = {"train": "own training images", "val": "VOC 2012 val", "coco": "COCO val, VOC classes"}


def group_runs(runs: list[dict], files: dict[str, list[str]]) -> dict[tuple[str, str], dict[str, list[np.ndarray]]]:
    """{(variant, budget): {set: [per-image confusion per seed, images in one order]}}."""
    groups: dict[tuple[str, str], dict[str, list]] = {}
    order: dict[tuple[str, str, str], list[str]] = {}
    for set_name, paths in files.items():
        for run, path in zip(runs, paths, strict=True):
            key = (run["variant"], run["budget"])
            ids, confusion = read_per_image(Path(path))
            first = order.setdefault((*key, set_name), ids)
            groups.setdefault(key, {}).setdefault(set_name, []).append(confusion[align(first, ids)])
    return groups


def gaps_of(sets: list[str]) -> list[tuple[str, str]]:
    """train − val and val − <each outside set>, for the sets present."""
    gaps = [("train", "val")] if "train" in sets else []
    return gaps + [("val", name) for name in sets if name not in ("train", "val")]


def measure(groups, bootstrap: dict) -> list[dict]:
    rows = []
    for (variant, budget), sets in sorted(groups.items(), key=lambda item: (item[0][0], budget_key(item[0][1]))):
        names = [n for n in ("train", "val") if n in sets] + sorted(n for n in sets if n not in ("train", "val"))
        gaps = gaps_of(names)
        result = set_bootstrap(
            {name: sets[name] for name in names},
            gaps,
            resamples=bootstrap["resamples"],
            seed=bootstrap["seed"],
            confidence=bootstrap["confidence"],
            max_resamples=bootstrap["max_resamples"],
            mc_error=bootstrap["mc_error"] / 100,
        )
        row = {"variant": variant, "budget": budget, "seeds": len(sets["val"])}
        for name in names:
            row[f"{name} images"] = sets[name][0].shape[0]
        # columns: "<set> mIoU" / "gap <a>-<b>", each with its " low" and " high"
        columns = [(name, name, f"{name} mIoU") for name in names]
        columns += [(f"{a} − {b}", f"gap {a}-{b}", f"gap {a}-{b}") for a, b in gaps]
        for name, column, value_column in columns:
            row[value_column] = 100 * result[name]["value"]
            row[f"{column} low"] = 100 * result[name]["low"]
            row[f"{column} high"] = 100 * result[name]["high"]
        row["mc error"] = 100 * result["mc_error"]  # the largest of the row's bounds
        for name, column, _ in columns:
            row[f"mc error {column} low"] = 100 * result[name]["low_error"]
            row[f"mc error {column} high"] = 100 * result[name]["high_error"]
        row["resamples"] = result["resamples"]
        rows.append(row)
    return rows


def columns_of(rows: list[dict]) -> list[str]:
    columns: list[str] = []
    for row in rows:
        columns += [c for c in row if c not in columns]
    return columns


def markdown(rows: list[dict], confidence: float) -> str:
    if not rows:
        return "No run has finished yet.\n"
    error = max(row["mc error"] for row in rows)
    decimals = decimals_for(error)
    sets = [c[: -len(" mIoU")] for c in columns_of(rows) if c.endswith(" mIoU")]
    gaps = [c for c in columns_of(rows) if c.startswith("gap ") and not c.endswith((" low", " high"))]
    sizes = {s: {row.get(f"{s} images") for row in rows} for s in sets}
    varying = [s for s in sets if len(sizes[s]) > 1]  # e.g. a sample capped by a short training list
    marked = 0

    def cell(row, column, value_column, sign=False):
        nonlocal marked
        if value_column not in row or row[value_column] is None or np.isnan(row[value_column]):
            return ""
        errors = (row.get(f"mc error {column} low"), row.get(f"mc error {column} high"))
        marked += sum(unsettled(e, decimals) for e in errors)
        values = (row[value_column], row[f"{column} low"], row[f"{column} high"])
        return interval_text(*values, decimals, errors, sign=sign)

    header = ["variant", "budget", "seeds", *(f"{s} images" for s in varying), *(f"mIoU {s}" for s in sets), *gaps]
    lines = ["| " + " | ".join(header) + " |", "|---|---:|---:|" + "---:|" * (len(header) - 3)]
    for row in rows:
        cells = [row["variant"], row["budget"], str(row["seeds"])]
        cells += [str(row.get(f"{s} images", "")) for s in varying]
        cells += [cell(row, s, f"{s} mIoU") for s in sets]
        cells += [cell(row, g, g, sign=True) for g in gaps]
        lines.append("| " + " | ".join(cells) + " |")
    counts = ", ".join(
        f"{SET_NAMES.get(s, s)}: " + (f"per row, column {s} images" if s in varying else f"{sizes[s].pop()} images")
        for s in sets
        if sizes[s] != {None}
    )
    text = "\n".join(lines) + "\n\n"
    text += (
        f"mIoU in % over the classes present in each set's labels ({counts}); gaps in points "
        f"(train-val: how much better a model does on images it was trained on; val-<set>: how "
        f"much it loses on images from another source). [{confidence:.0%} percentile bootstrap "
        f"interval]: each set's images resampled on their own, and with several seeds the seeds "
        f"too (the same seeds for every set of a resample). {precision_note(error, decimals, marked)}\n"
    )
    return text


def main(snakemake) -> None:
    start_log(snakemake)
    p = snakemake.params
    files = {"val": list(snakemake.input.val)}
    if snakemake.input.get("train"):
        files["train"] = list(snakemake.input.train)
    for name in p.ood:
        files[name] = list(snakemake.input[f"ood_{name}"])
    rows = measure(group_runs(p.runs, files), p.bootstrap)
    write_csv(
        Path(snakemake.output.csv),
        columns_of(rows),
        [{k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()} for row in rows],
    )
    text = markdown(rows, p.bootstrap["confidence"])
    write_text(Path(snakemake.output.md), text)
    log.info("\n%s", text)


if __name__ == "__main__" and "snakemake" in globals():
    main(snakemake)  # noqa: F821
