"""Job plumbing: a job's log, files written atomically, CSV and Markdown tables, hashes."""

import csv
import hashlib
import logging
import os
import sys
from contextlib import contextmanager
from pathlib import Path

LOG_FORMAT = "%(asctime)s %(name)s %(message)s"


def start_log(snakemake, stdout: bool = False):
    """Send stderr (and with ``stdout`` also stdout) and Python's logging to the job's log.

    Returns the open log file.
    """
    log_file = open(snakemake.log[0], "w", buffering=1)
    sys.stderr = log_file
    if stdout:
        sys.stdout = log_file
    logging.basicConfig(stream=log_file, level=logging.INFO, format=LOG_FORMAT, force=True)
    return log_file


@contextmanager
def atomic_path(dest: Path):
    """A temporary path beside ``dest``, renamed to ``dest`` only if the block succeeds.

    The temporary name keeps ``dest``'s suffixes (``x.tmp.npz``), since some
    writers (NumPy) add their own otherwise.
    """
    dest = Path(dest)
    suffix = "".join(dest.suffixes)
    tmp = dest.with_name(f"{dest.name.removesuffix(suffix)}.tmp-{os.getpid()}{suffix}")
    try:
        yield tmp
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_csv(path: Path, columns: list[str], rows: list[dict]) -> None:
    """``rows`` as CSV with a header; None is written as an empty cell."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, columns)
        writer.writeheader()
        writer.writerows({k: ("" if v is None else v) for k, v in row.items()} for row in rows)


def markdown_table(columns: list[str], rows: list[dict]) -> str:
    def cell(value):
        return "" if value is None else str(value)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row[c]) for c in columns) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def file_digest(path: Path, algorithm: str, chunk: int = 1 << 20) -> str:
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def md5sum(path: Path) -> str:
    return file_digest(path, "md5")


def sha256sum(path: Path) -> str:
    return file_digest(path, "sha256")


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()
