"""Write envs/*.yaml (one conda env per rule kind) from requirements.txt.

requirements.txt is the single source of every version; this script only
decides which package goes to which environment, and whether conda-forge or
pip provides it.  ``--check`` fails when a committed file differs from what
it would write, so the envs cannot drift from the tested .venv.

    python tools/render_envs.py          # rewrite envs/
    python tools/render_envs.py --check  # exit 1 if envs/ is stale
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Which packages each rule kind needs (names as in requirements.txt).
ENVS = {
    "data": {
        "doc": "Data stage: download, safe extraction, SBD .mat -> PNG and COCO -> VOC label conversion, split lists.",
        "conda": ["numpy", "scipy", "pillow", "tqdm", "pycocotools"],
        "pip": [],
    },
    "plots": {
        "doc": "Figures, tables and the bootstrap statistics.",
        "conda": ["numpy", "scipy", "matplotlib", "pillow", "pyyaml"],
        "pip": [],
    },
    "train": {
        "doc": (
            "Training and evaluation (MMSegmentation 1.x on MMEngine/MMCV: the maintained OneDL packages).\n"
            "torch comes from PyPI (its default wheel: CUDA 12.8, Volta to Blackwell, driver >= 570);\n"
            "onedl-mmcv as OneDL's prebuilt CUDA wheel for this torch (their index below; Python 3.12),\n"
            "else pip builds its PyPI source archive. The study's models call none of mmcv's compiled ops\n"
            "(tests/test_golden.py), so either build trains them on any GPU torch supports. The other\n"
            "mm* packages and opencv-python follow with pip so it sees the distributions mmcv requires."
        ),
        "conda": ["pip", "numpy", "scipy", "matplotlib", "pillow", "pyyaml", "ftfy", "regex", "tqdm", "tensorboard"],
        "pip": [
            "torch", "torchvision", "opencv-python",
            "onedl-mmcv", "onedl-mmengine", "onedl-mmsegmentation", "onedl-mmpretrain",
        ],  # fmt: skip
    },
}
# conda-forge names that differ from the PyPI distribution names.
CONDA_NAMES = {"matplotlib": "matplotlib-base"}
# OneDL's wheel index, one folder per CUDA and torch release (their install docs:
# pip install onedl-mmcv -f https://mmwheels.onedl.ai/<cuda>-torch<x.y.z without dots>/index.html);
# for torch 2.10.0 they publish CUDA 12.9 builds
MMCV_WHEELS = "https://mmwheels.onedl.ai/{cuda}-torch{torch}/index.html"
CUDA = "cu129"


def read_pins(path: Path = ROOT / "requirements.txt") -> dict[str, str]:
    """{distribution name (lower case): version} from the ``name==version`` lines."""
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        match = re.fullmatch(r"([A-Za-z0-9_.\-]+)==([^\s;]+)", line)
        if not match:
            raise SystemExit(f"{path}: not an exact pin: {line!r}")
        pins[match.group(1).lower()] = match.group(2)
    return pins


def python_version(path: Path = ROOT / ".python-version") -> str:
    return path.read_text().strip()


def render(name: str, pins: dict[str, str], python: str) -> str:
    spec = ENVS[name]
    lines = ["# Generated from requirements.txt by tools/render_envs.py: do not edit by hand."]
    lines += [f"# {line}" for line in spec["doc"].splitlines()]
    lines += ["channels:", "  - conda-forge", "  - nodefaults", "dependencies:", f"  - python ={python}"]
    lines += [f"  - {CONDA_NAMES.get(p, p)} ={pins[p]}" for p in spec["conda"]]
    if spec["pip"]:
        torch = pins["torch"].replace(".", "")
        lines += ["  - pip:", f"      - --find-links {MMCV_WHEELS.format(cuda=CUDA, torch=torch)}"]
        lines += [f"      - {p}=={pins[p]}" for p in spec["pip"]]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only compare, write nothing")
    args = parser.parse_args()
    pins, python = read_pins(), python_version()
    stale = []
    for name in ENVS:
        path = ROOT / "envs" / f"{name}.yaml"
        text = render(name, pins, python)
        if path.exists() and path.read_text() == text:
            continue
        stale.append(path)
        if not args.check:
            path.write_text(text)
    for path in stale:
        print(f"{'stale' if args.check else 'wrote'}: {path.relative_to(ROOT)}")
    sys.exit(1 if args.check and stale else 0)


if __name__ == "__main__":
    main()
