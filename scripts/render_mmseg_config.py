"""Write a run's MMSegmentation config (rule render_mmseg_config)."""

import os
import sys
from pathlib import Path

from mmseg_config import RUNTIME_SETTINGS, render_config


def write_config(run: dict, runtime: dict, path: Path) -> None:
    """Render ``run`` (result-changing settings) plus ``runtime`` ones to ``path``."""
    text = render_config({**run, **{key: runtime[key] for key in RUNTIME_SETTINGS}})
    tmp = Path(f"{path}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def main(snakemake) -> None:
    sys.stderr = open(snakemake.log[0], "w", buffering=1)
    write_config(dict(snakemake.params.run), snakemake.config["training"], Path(snakemake.output[0]))


if __name__ == "__main__" and "snakemake" in globals():
    main(snakemake)  # noqa: F821
