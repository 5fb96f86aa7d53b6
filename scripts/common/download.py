"""Resumable, hash-checked downloads (rules download_archive and fetch_pretrained).

The bytes go to ``<archive>.part``; an interrupted download is resumed from
there with an HTTP ``Range`` request.  Only a complete file whose md5 matches
is renamed to the final name, so a partial download never passes as complete.
"""


import http.client
import logging
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path

from common.jobs import md5sum, sha256sum

log = logging.getLogger("download")


class DownloadError(RuntimeError):
    pass


def _progress_bar(total: int | None, initial: int, name: str):
    from tqdm import tqdm

    # The log file gets summary lines; the bar goes to the terminal, when there is one.
    return tqdm(
        total=total,
        initial=initial,
        unit="B",
        unit_scale=True,
        desc=name,
        file=sys.__stderr__,
        disable=None,
        mininterval=1.0,
    )


def _open(url: str, offset: int, timeout: float):
    """Open ``url`` from byte ``offset``; return (response or None, resumed)."""
    headers = {"User-Agent": "voc-upernet-study"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as error:
        if error.code == 416 and offset:  # nothing left to fetch: .part is already whole
            return None, True
        raise DownloadError(f"{url}: HTTP {error.code} {error.reason}") from error
    except (urllib.error.URLError, OSError) as error:
        raise DownloadError(f"{url}: {error}") from error
    return response, offset > 0 and response.status == 206


def _verify(url: str, part: Path, md5: str | None, sha256_prefix: str | None) -> None:
    """Remove ``part`` and fail unless it has the expected hash(es)."""
    checks = [("md5", md5sum, md5), ("sha256", sha256sum, sha256_prefix)]
    if md5 is None and sha256_prefix is None:
        log.warning("no hash configured for %s: the download is not verified", url)
    for name, digest, expected in checks:
        if expected is None:
            continue
        actual = digest(part)
        if not actual.startswith(expected.lower()):
            part.unlink()
            raise DownloadError(
                f"{url}: {name} of the downloaded file is {actual}, expected {expected}; "
                "the partial file was removed"
            )
        log.info("%s %s verified", name, actual)


def download(
    url: str, dest: Path, md5: str | None, timeout: float = 60.0, sha256_prefix: str | None = None
) -> Path:
    """Fetch ``url`` to ``dest`` through ``dest.part``; verify; rename."""
    dest = Path(dest)
    part = dest.with_name(dest.name + ".part")
    dest.parent.mkdir(parents=True, exist_ok=True)
    offset = part.stat().st_size if part.exists() else 0
    response, resumed = _open(url, offset, timeout)
    if response is not None:
        if offset and not resumed:
            log.info("server ignored the range request: starting %s again", part)
            offset = 0
        elif resumed:
            log.info("resuming %s at byte %d", part, offset)
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length is not None else None
        with response, open(part, "ab" if resumed else "wb") as out:
            with _progress_bar(total, offset, dest.name) as bar:
                try:
                    while block := response.read(1 << 20):
                        out.write(block)
                        bar.update(len(block))
                except (OSError, http.client.HTTPException) as error:
                    raise DownloadError(
                        f"{url}: connection lost after {out.tell()} bytes ({error}); "
                        f"run again to resume from {part}"
                    ) from error
        size = part.stat().st_size
        if total is not None and size != total:
            raise DownloadError(
                f"{url}: got {size} of {total} bytes; run again to resume from {part}"
            )
    _verify(url, part, md5, sha256_prefix)
    os.replace(part, dest)
    log.info("saved %s (%d bytes)", dest, dest.stat().st_size)
    return dest
