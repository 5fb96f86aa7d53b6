"""Check a dataset of the config's ``datasets`` before its runs train (rule check_dataset).

Writes ``<results>/datasets/<name>.json`` (classes, list sizes, pixels per class
over the training labels); a bad label, a list id without its files or a class
list that disagrees with the labels stops the job with an error naming the file.
"""

import json
import logging
from pathlib import Path

from common.datasets import check_dataset
from common.jobs import start_log, write_text

log = logging.getLogger("check_dataset")


def main(snakemake) -> None:
    start_log(snakemake)
    root = Path(snakemake.input.images).parent
    summary = check_dataset(root, snakemake.params.classes, snakemake.wildcards.dataset)
    write_text(Path(snakemake.output[0]), json.dumps({"root": str(root), **summary}, indent=1) + "\n")
    log.info(
        "%s: %d classes, %d train and %d val images; training pixels per class %s",
        root, len(summary["classes"]), summary["train"], summary["val"], summary["pixels_per_class"],
    )  # fmt: skip


if __name__ == "__main__" and "snakemake" in globals():
    main(snakemake)  # noqa: F821
