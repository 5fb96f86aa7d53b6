"""render_mmseg_config's job for the runs with ``training.amp: bf16`` or
``training.channels_last`` (rule render_mmseg_config_precision): the same config and
``train_set.json``, rendered by common/run_config.py, which adds those settings.

A rule of its own, so that the rule rendering every other run keeps its code and
with it its code hash: a new hash would re-render every run's config and, by its
new timestamp, re-run every finished run's training job (a restore) and evaluation.
"""

import json
import logging
from pathlib import Path

from common.jobs import start_log, write_text
from common.mmseg_config import RUNTIME_SETTINGS
from common.run_config import render_config
from common.subsets import describe_budget
from render_mmseg_config import train_set

log = logging.getLogger("render_mmseg_config")


def main(snakemake) -> None:
    start_log(snakemake)
    run, path = dict(snakemake.params.run), Path(snakemake.output.config)
    trains_on = train_set(run, [Path(p) for p in snakemake.input.lists])
    runtime, tracking = snakemake.config["training"], snakemake.config["tracking"]
    values = {
        **run, **{key: runtime[key] for key in RUNTIME_SETTINGS}, "tracking": list(tracking),
        "epochs": trains_on["epochs"], "train_images": trains_on["images"],
        "iterations_per_epoch": trains_on["iterations_per_epoch"], "train_lists": trains_on["lists"],
    }  # fmt: skip
    write_text(path, render_config(values, path.parent))
    write_text(Path(snakemake.output.train_set), json.dumps(trains_on, indent=1) + "\n")
    log.info(
        "%s: %d training images; budget %s: %d epochs x %d steps = %d optimizer steps (amp %s, channels_last %s)",
        run["variant"], trains_on["images"], describe_budget(run["budget"]), trains_on["epochs"],
        trains_on["iterations_per_epoch"], trains_on["iterations"], run["amp"], run.get("channels_last", False),
    )  # fmt: skip


if __name__ == "__main__" and "snakemake" in globals():
    main(snakemake)  # noqa: F821
