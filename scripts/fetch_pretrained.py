"""Fetch known backbone weights once, on the login node, and check their hash.

The file names of MMCV's and torchvision's weights end in the first hex
digits of the file's sha256 (``resnet50_v1c-2cccc1ad.pth``), as torch.hub
checks them; a file that does not match is removed.  OpenMMLab's weights are
tried at OneDL's host first, then at OpenMMLab's (common.mmseg_config).
"""

import logging
import re
from pathlib import Path

from common.download import DownloadError, download
from common.jobs import start_log
from common.mmseg_config import pretrained_mirrors

log = logging.getLogger("fetch_pretrained")


def sha256_prefix(url: str) -> str:
    match = re.search(r"-([0-9a-f]{8,})\.pth$", url)
    if not match:
        raise DownloadError(f"{url}: the file name carries no sha256 prefix to check")
    return match.group(1)


def fetch(url: str, dest: Path, timeout: float = 60.0, mirrors: list[str] | None = None) -> Path:
    """Download ``url`` (or the first of ``mirrors`` that serves the file whole) to ``dest``."""
    expected, errors = sha256_prefix(url), []
    for source in mirrors or pretrained_mirrors(url):
        try:
            return download(source, dest, md5=None, timeout=timeout, sha256_prefix=expected)
        except DownloadError as error:
            log.warning("%s", error)
            errors.append(str(error))
    raise DownloadError(" / ".join(errors))


def main(snakemake) -> None:
    start_log(snakemake)
    fetch(snakemake.params.url, Path(snakemake.output[0]))


if __name__ == "__main__" and "snakemake" in globals():
    main(snakemake)  # noqa: F821
