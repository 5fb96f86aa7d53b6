"""Conversion throughput: scripts/convert_sbd.py vs voc_aug.py's way, same run.

Generates >= 2,000 SBD ``cls/*.mat`` files of the real size (500x375, GTcls
struct with 20 sparse Boundaries), then converts them with

* the reference, written the way MMSegmentation's ``voc_aug.py`` does it:
  ``loadmat`` + ``Image.fromarray(...).save(..., 'PNG')`` per file, over a
  ``multiprocessing.Pool`` for more than one process;
* ``convert_sbd.convert_all`` (the workflow's rule),

at 1 and 2 processes, checks that every output pixel is identical, and
prints images/s and the ratio.  Not a test: times on a shared machine are
only comparable within one run.  ``--smoke``: 20 files, 1 repeat, to check
that the benchmark still runs (tests/test_benchmarks.py); its times mean nothing.

    .venv/bin/python benchmarks/bench_convert_sbd.py [--files 2000] [--repeats 2] [--smoke]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from multiprocessing import Pool
from pathlib import Path

import numpy as np
import scipy.io
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "scripts"), str(ROOT / "tools")]

from convert_sbd import convert_all, plan_conversion  # noqa: E402
from make_mini_voc import assign_classes, draw_scene, sbd_cls_mat  # noqa: E402


def reference_convert_one(args: tuple[str, str]) -> None:
    """voc_aug.py's convert_mat."""
    mat_file, out_dir = args
    data = scipy.io.loadmat(mat_file)
    mask = data["GTcls"][0]["Segmentation"][0].astype(np.uint8)
    Image.fromarray(mask).save(str(Path(out_dir) / (Path(mat_file).stem + ".png")), "PNG")


def reference_convert(mat_files: list[str], out_dir: Path, processes: int) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    tasks = [(f, str(out_dir)) for f in mat_files]
    if processes == 1:
        for task in tasks:
            reference_convert_one(task)
    else:
        with Pool(processes) as pool:
            pool.map(reference_convert_one, tasks)


def make_files(cls_dir: Path, count: int, seed: int = 0) -> list[str]:
    cls_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    ids = [f"2008_{i:06d}" for i in range(count)]
    classes = assign_classes(rng, ids)
    for image_id in ids:
        height, width = (375, 500) if rng.random() < 0.7 else (500, 375)
        _, label, _ = draw_scene(rng, classes[image_id], height, width)
        (cls_dir / f"{image_id}.mat").write_bytes(sbd_cls_mat(label))
    return ids


def same_pixels(a: Path, b: Path) -> bool:
    names = sorted(p.name for p in a.glob("*.png"))
    if names != sorted(p.name for p in b.glob("*.png")):
        return False
    return all(np.array_equal(np.asarray(Image.open(a / n)), np.asarray(Image.open(b / n))) for n in names)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=2, help="best of N for each timing")
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--smoke", action="store_true", help="20 files, 1 repeat: does it still run?")
    args = parser.parse_args()
    if args.smoke:
        args.files, args.repeats = 20, 1

    work = Path(tempfile.mkdtemp(prefix="bench-convert-sbd-"))
    try:
        start = time.perf_counter()
        ids = make_files(work / "cls", args.files)
        mat_bytes = sum(p.stat().st_size for p in (work / "cls").glob("*.mat"))
        print(f"generated {len(ids)} GTcls files of 500x375 ({mat_bytes / len(ids) / 1024:.1f} KiB each) "
              f"in {time.perf_counter() - start:.0f} s")  # fmt: skip
        mat_files = [str(work / "cls" / f"{i}.mat") for i in ids]
        plan = plan_conversion([], ids, work, work / "cls")
        print(f"{'processes':>9}  {'reference img/s':>15}  {'convert_sbd img/s':>17}  {'ratio':>5}  pixels")
        for processes in args.processes:
            best_ref = best_ours = float("inf")
            for _ in range(args.repeats):  # interleaved, so both see the same machine
                shutil.rmtree(work / "ref", ignore_errors=True)
                t = time.perf_counter()
                reference_convert(mat_files, work / "ref", processes)
                best_ref = min(best_ref, time.perf_counter() - t)
                t = time.perf_counter()
                convert_all(plan, work / "ours", processes)
                best_ours = min(best_ours, time.perf_counter() - t)
            identical = same_pixels(work / "ref", work / "ours")
            print(f"{processes:>9}  {len(ids) / best_ref:>15.0f}  {len(ids) / best_ours:>17.0f}  "
                  f"{best_ref / best_ours:>5.2f}  {'identical' if identical else 'DIFFERENT'}")  # fmt: skip
            if not identical:
                sys.exit("outputs differ")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
