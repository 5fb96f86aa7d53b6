"""The md5 check of an archive before it is read (extract_archive, convert_coco).

Apart from common/download.py on purpose: the download rules' code hash stays
as it is when this check changes, so no archive is fetched again for it.
"""

import logging
from pathlib import Path

from common.jobs import md5sum

log = logging.getLogger("archives")


class ArchiveError(RuntimeError):
    """An archive that is not the one configured, or that cannot be read safely."""


def check_md5(archive: Path, expected: str | None, key: str) -> None:
    """Fail unless ``archive`` has the md5 that config key ``key`` gives (null: a warning)."""
    if expected is None:
        log.warning("%s: %s is null, the archive is not verified", archive, key)
        return
    actual = md5sum(archive)
    if actual != expected.lower():
        raise ArchiveError(f"{archive}: md5 is {actual}, but {key} says {expected}")
    log.info("%s: md5 %s verified", archive, actual)
