"""Write a run's MMSegmentation config and ``train_set.json`` (rule render_mmseg_config).

The run's lists (whole ones, or its subset's) decide the images of one epoch, and
with them the epoch count of an iteration budget: the fewest epochs whose
optimizer steps reach it.  ``train_set.json`` records what the run trains on
(images, lists with their sha256, epochs, steps) for the tables and figures.
"""

import json
import logging
from pathlib import Path

from common.jobs import sha256_text, start_log, write_text
from common.mmseg_config import DEFAULT_TRACKING, RUNTIME_SETTINGS, render_config
from common.subsets import budget_epochs, describe_budget, iterations_per_epoch, parse_budget
from common.voc import read_id_list

log = logging.getLogger("render_mmseg_config")


def train_set(run: dict, lists: list[Path]) -> dict:
    """What run ``run`` trains on: per list its ids and hash; the epochs and steps of its budget."""
    entries = []
    for member, path in zip(run["train_sets"], lists, strict=True):
        text = Path(path).read_text()
        entries.append(
            {"ann_file": member.get("ann_file", f"ImageSets/Segmentation/{member['split']}.txt"),
             "images": len(read_id_list(path)), "sha256": sha256_text(text)}
        )  # fmt: skip
    images = sum(entry["images"] for entry in entries)
    if images == 0:
        raise ValueError(
            f"variant {run['variant']}: its training lists are empty ({', '.join(map(str, lists))})"
        )
    per_epoch = iterations_per_epoch(images, run["gpus"], run["batch_per_gpu"])
    epochs = budget_epochs(run["budget"], images, run["gpus"], run["batch_per_gpu"])
    kind, amount = parse_budget(run["budget"])
    return {
        "variant": run["variant"], "budget": run["budget"], "seed": run["seed"],
        "images": images, "lists": entries, "epochs": epochs, "iterations_per_epoch": per_epoch,
        "iterations": epochs * per_epoch, "iteration_budget": amount if kind == "iterations" else None,
        "total_batch": run["gpus"] * run["batch_per_gpu"],
    }  # fmt: skip


def write_config(run: dict, runtime: dict, path: Path, trains_on: dict, tracking=DEFAULT_TRACKING) -> None:
    """Render ``run`` (result-changing settings) plus ``runtime`` ones and the
    ``tracking`` backends (neither changes a result) to ``path``."""
    values = {
        **run, **{key: runtime[key] for key in RUNTIME_SETTINGS}, "tracking": list(tracking),
        "epochs": trains_on["epochs"], "train_images": trains_on["images"],
        "iterations_per_epoch": trains_on["iterations_per_epoch"], "train_lists": trains_on["lists"],
    }  # fmt: skip
    write_text(path, render_config(values, path.parent))


def main(snakemake) -> None:
    start_log(snakemake)
    run = dict(snakemake.params.run)
    trains_on = train_set(run, [Path(p) for p in snakemake.input.lists])
    write_config(
        run, snakemake.config["training"], Path(snakemake.output.config), trains_on, snakemake.config["tracking"]
    )
    write_text(Path(snakemake.output.train_set), json.dumps(trains_on, indent=1) + "\n")
    log.info(
        "%s: %d training images; budget %s: %d epochs x %d steps = %d optimizer steps",
        run["variant"], trains_on["images"], describe_budget(run["budget"]),
        trains_on["epochs"], trains_on["iterations_per_epoch"], trains_on["iterations"],
    )  # fmt: skip


if __name__ == "__main__" and "snakemake" in globals():
    main(snakemake)  # noqa: F821
