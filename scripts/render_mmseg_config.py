"""Write a run's MMSegmentation config (rule render_mmseg_config)."""

from pathlib import Path

from common.jobs import start_log, write_text
from common.mmseg_config import RUNTIME_SETTINGS, render_config


def write_config(run: dict, runtime: dict, path: Path) -> None:
    """Render ``run`` (result-changing settings) plus ``runtime`` ones to ``path``."""
    write_text(path, render_config({**run, **{key: runtime[key] for key in RUNTIME_SETTINGS}}))


def main(snakemake) -> None:
    start_log(snakemake)
    write_config(dict(snakemake.params.run), snakemake.config["training"], Path(snakemake.output[0]))


if __name__ == "__main__" and "snakemake" in globals():
    main(snakemake)  # noqa: F821
