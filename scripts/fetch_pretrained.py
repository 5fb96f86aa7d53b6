"""Fetch known backbone weights once, on the login node, and check their hash.

The file names of MMCV's and torchvision's weights end in the first hex
digits of the file's sha256 (``resnet50_v1c-2cccc1ad.pth``), as torch.hub
checks them; a file that does not match is removed.
"""

import re
from pathlib import Path

from common.download import DownloadError, download
from common.jobs import start_log


def sha256_prefix(url: str) -> str:
    match = re.search(r"-([0-9a-f]{8,})\.pth$", url)
    if not match:
        raise DownloadError(f"{url}: the file name carries no sha256 prefix to check")
    return match.group(1)


def fetch(url: str, dest: Path, timeout: float = 60.0) -> Path:
    return download(url, dest, md5=None, timeout=timeout, sha256_prefix=sha256_prefix(url))


def main(snakemake) -> None:
    start_log(snakemake)
    fetch(snakemake.params.url, Path(snakemake.output[0]))


if __name__ == "__main__" and "snakemake" in globals():
    main(snakemake)  # noqa: F821
