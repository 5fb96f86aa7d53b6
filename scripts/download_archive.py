"""Download a dataset archive, resumably, and keep it only if its md5 matches
(rule download_archive; the code is common/download.py)."""

from pathlib import Path

from common.download import download
from common.jobs import start_log


def main(snakemake) -> None:
    start_log(snakemake)
    download(snakemake.params.url, Path(snakemake.output[0]), snakemake.params.md5)


if __name__ == "__main__" and "snakemake" in globals():
    main(snakemake)  # noqa: F821
