"""requirements.lock: every package of the tested environment, pinned and hashed.

``requirements.txt`` lists what the project uses directly; ``requirements.lock``
is compiled from it by pip-compile (pip-tools) and pins everything they pull
in, with the sha256 of every file PyPI serves for each pin.  ``make venv``
installs the lock with ``pip --require-hashes --no-deps`` in two stages:
onedl-mmcv's PyPI release is a source archive that compiles against the torch
installed before it.

    python tools/lock.py compile            # make lock: needs .venv (mmcv's metadata imports torch)
    python tools/lock.py check              # the lock was compiled from this requirements.txt
    python tools/lock.py stage LOCK --only onedl-mmcv | --except onedl-mmcv   # a part of the lock, for pip

Standard library only: ``check`` and ``stage`` run before the venv exists.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REQUIREMENTS = ROOT / "requirements.txt"
LOCK = ROOT / "requirements.lock"
SOURCE_LINE = "# compiled from requirements.txt with sha256 "
# Compiled from source after everything else is installed (see the Makefile).
BUILT_FROM_SOURCE = ("onedl-mmcv",)


def normalize(name: str) -> str:
    """PEP 503 name: ``Pillow`` and ``pillow``, ``ruamel.yaml`` and ``ruamel-yaml`` are one package."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirements_sha256(path: Path = REQUIREMENTS) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def entries(text: str) -> list[tuple[str, str, str]]:
    """(normalized name, version, the entry's lines) of each ``name==version`` entry of a pip file."""
    found, current = [], None
    for line in text.splitlines(keepends=True):
        match = re.match(r"([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?==([^\s\\;]+)", line)
        if match:
            current = [normalize(match.group(1)), match.group(3), line]
            found.append(current)
        elif current is not None and line.startswith((" ", "\t")):
            current[2] += line
        else:
            current = None
    return [tuple(entry) for entry in found]


def pins(path: Path) -> dict[str, str]:
    return {name: version for name, version, _ in entries(path.read_text())}


def recorded_source(lock: Path = LOCK) -> str | None:
    for line in lock.read_text().splitlines():
        if line.startswith(SOURCE_LINE):
            return line[len(SOURCE_LINE) :].strip()
    return None


def check(lock: Path = LOCK, requirements: Path = REQUIREMENTS) -> list[str]:
    """What makes ``lock`` unfit for ``requirements`` (empty: fine)."""
    locked = pins(lock)
    if not locked:
        return [f"{lock.name} pins nothing: run `make lock`"]
    problems = []
    if recorded_source(lock) != requirements_sha256(requirements):
        problems.append(f"{requirements.name} changed since {lock.name} was compiled: run `make lock`")
    wrong = [
        f"{requirements.name} pins {name}=={version}, {lock.name} has {locked.get(name)}"
        for name, version in pins(requirements).items()
        if locked.get(name) != version
    ]
    return problems + wrong[:5] + ([f"... and {len(wrong) - 5} more"] if len(wrong) > 5 else [])


def stage(lock: Path, only: tuple[str, ...] = (), exclude: tuple[str, ...] = ()) -> str:
    """The lock's entries (with their hashes) for one pip invocation."""
    only, exclude = {normalize(n) for n in only}, {normalize(n) for n in exclude}
    chosen = [lines for name, _, lines in entries(lock.read_text()) if (not only or name in only) and name not in exclude]
    return "".join(lines if lines.endswith("\n") else lines + "\n" for lines in chosen)


def compile_lock() -> None:
    """pip-compile requirements.txt into requirements.lock, in this interpreter's environment."""
    command = [
        sys.executable, "-m", "piptools", "compile", "--quiet", "--generate-hashes", "--allow-unsafe",
        "--strip-extras", "--no-build-isolation", "--no-emit-index-url", "--no-emit-find-links",
        "--no-header", "--output-file", "-", str(REQUIREMENTS.name),
    ]  # fmt: skip
    compiled = subprocess.run(command, cwd=ROOT, check=True, capture_output=True, text=True).stdout
    header = (
        "# The whole tested environment, pinned and hashed: do not edit by hand.\n"
        "# Edit requirements.txt, then `make lock` (pip-compile --generate-hashes --allow-unsafe).\n"
        f"{SOURCE_LINE}{requirements_sha256()}\n"
    )
    tmp = LOCK.with_name(LOCK.name + ".tmp")
    tmp.write_text(header + compiled)
    tmp.replace(LOCK)
    print(f"{LOCK.name}: {len(entries(compiled))} packages")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("compile")
    commands.add_parser("check")
    part = commands.add_parser("stage")
    part.add_argument("lock", type=Path)
    which = part.add_mutually_exclusive_group(required=True)
    which.add_argument("--only", nargs="+", default=())
    which.add_argument("--except", dest="exclude", nargs="+", default=())
    args = parser.parse_args()
    if args.command == "compile":
        compile_lock()
    elif args.command == "check":
        problems = check()
        if problems:
            sys.exit("requirements.lock: " + "; ".join(problems))
    else:
        sys.stdout.write(stage(args.lock, tuple(args.only), tuple(args.exclude)))


if __name__ == "__main__":
    main()
