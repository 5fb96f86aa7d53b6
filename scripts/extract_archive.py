"""Check an archive's md5 and extract the parts the study needs, safely.

Every member is checked before anything of it is written: an absolute path,
a ``..`` component, a link that points outside the destination or a device
file stops the job with an error naming the member.  Members are extracted
into a temporary directory beside the outputs and renamed into place only
when everything the rule promises is there, so a failure leaves nothing
behind.
"""


import logging
import os
import posixpath
import shutil
import tarfile
import tempfile
import time
import zlib
from pathlib import Path

from common.archives import ArchiveError, check_md5
from common.jobs import start_log

log = logging.getLogger("extract_archive")


def check_member(archive: Path, member: tarfile.TarInfo) -> None:
    """Refuse members that would write outside the destination directory."""
    name = member.name
    if name.startswith("/") or posixpath.isabs(name) or (len(name) > 1 and name[1] == ":"):
        raise ArchiveError(f"{archive}: member {name!r} has an absolute path")
    if ".." in name.replace("\\", "/").split("/"):
        raise ArchiveError(f"{archive}: member {name!r} contains '..'")
    if member.issym() or member.islnk():
        link = member.linkname
        base = posixpath.dirname(name) if member.issym() else ""
        target = posixpath.normpath(posixpath.join(base, link))
        if posixpath.isabs(link) or target == ".." or target.startswith("../"):
            raise ArchiveError(f"{archive}: member {name!r} links outside the destination ({link!r})")
    elif not (member.isfile() or member.isdir()):
        raise ArchiveError(f"{archive}: member {name!r} is a device or special file")


def _wanted(name: str, prefixes: tuple[str, ...]) -> bool:
    name = name.rstrip("/")
    return any(name == p or name.startswith(p + "/") for p in prefixes)


def extract_members(archive: Path, members: dict[str, Path], workdir: Path | None = None) -> None:
    """Extract each archive path in ``members`` (file or folder) to its target.

    The targets are replaced only after the whole archive was read and every
    requested path was found in it.
    """
    archive = Path(archive)
    targets = {name.strip("/"): Path(target) for name, target in members.items()}
    workdir = Path(workdir or next(iter(targets.values())).parent)
    workdir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".extract-", dir=workdir))
    try:
        count = 0
        try:
            with tarfile.open(archive, "r:*") as tar:
                for member in tar:
                    check_member(archive, member)
                    if _wanted(member.name, tuple(targets)):
                        tar.extract(member, tmp, filter="data")
                        count += 1
        except (tarfile.TarError, EOFError, zlib.error, OSError) as error:
            raise ArchiveError(f"{archive}: corrupt or truncated archive ({error})") from error
        missing = [name for name in targets if not (tmp / name).exists()]
        if missing:
            raise ArchiveError(f"{archive}: has no {', '.join(missing)}; is it the right archive?")
        for name, target in targets.items():
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.is_dir():
                shutil.rmtree(target)
            os.replace(tmp / name, target)
        log.info("%s: extracted %d members", archive, count)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main(snakemake) -> None:
    start_log(snakemake)
    start = time.perf_counter()
    archive = Path(snakemake.input.archive)
    check_md5(archive, snakemake.params.md5, snakemake.params.md5_key)
    members = {path: Path(snakemake.output[out]) for path, out in snakemake.params.members.items()}
    extract_members(archive, members)
    log.info("done in %.1f s", time.perf_counter() - start)


if __name__ == "__main__" and "snakemake" in globals():
    main(snakemake)  # noqa: F821
