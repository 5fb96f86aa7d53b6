"""Training job vs MMSegmentation's own tools/train.py on the same rendered config.

In a scratch copy of the workflow on the mini dataset (config/demo.yaml, CPU),
renders one run's config, then times, interleaved, best of N:

* the workflow's job: ``snakemake <run>/history.csv --forcerun train_upernet``,
  both the job alone (its ``train_benchmark.tsv``: the script, training, the
  export of final.pth and history.csv) and the whole invocation (plus
  Snakemake's start-up and DAG);
* ``python <mmseg>/.mim/tools/train.py <config.py> --work-dir <fresh dir>``.

Each attempt starts from an empty work directory.  Not a test: a time is a
ratio within one run on one machine.

    .venv/bin/python benchmarks/bench_train.py [--variant voc --epochs 3 --repeats 2]
"""

import argparse
import csv
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import mmseg

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "scripts"), str(ROOT / "tools")]

from make_mini_voc import build_archives  # noqa: E402

TOOLS_TRAIN = Path(mmseg.__file__).parent / ".mim/tools/train.py"


def snakemake(workdir: Path, *args: str) -> None:
    command = [sys.executable, "-m", "snakemake", *args, "--cores", "2", "--configfile", "config/bench.yaml"]
    subprocess.run(command, cwd=workdir, check=True, capture_output=True)


def timed(command: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    subprocess.run(command, cwd=cwd, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variant", default="voc")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-train-"))
    try:
        for name in ("Snakefile", "rules", "scripts", "config", "envs", "report"):
            source = ROOT / name
            (shutil.copytree if source.is_dir() else shutil.copy)(source, work / name)
        build_archives(work / "resources/demo")
        config = (work / "config/demo.yaml").read_text()
        config = re.sub(r"^epochs: .*$", f"epochs: [{args.epochs}]", config, flags=re.M)
        (work / "config/bench.yaml").write_text(config)
        run = f"results/runs/{args.variant}/e{args.epochs}-s0"
        snakemake(work, "data", f"{run}/config.py")  # data stage + rendered config
        cfg_text = (work / run / "config.py").read_text()
        batch = int(re.search(r"^batch_per_gpu = (\d+)", cfg_text, re.M).group(1))
        images = sum(1 for _ in open(work / "resources/VOCdevkit/VOC2012/ImageSets/Segmentation/train.txt"))
        iterations = args.epochs * -(-images // batch) if args.variant == "voc" else None
        best = {"snakemake invocation": float("inf"), "workflow job": float("inf"), "tools/train.py": float("inf")}
        for _ in range(args.repeats):
            shutil.rmtree(work / "results/work", ignore_errors=True)
            start = time.perf_counter()
            snakemake(work, f"{run}/history.csv", "--forcerun", "train_upernet")
            best["snakemake invocation"] = min(best["snakemake invocation"], time.perf_counter() - start)
            # the job alone, as Snakemake's benchmark directive measured it
            with open(work / run / "train_benchmark.tsv") as handle:
                seconds = float(next(csv.DictReader(handle, delimiter="\t"))["s"])
            best["workflow job"] = min(best["workflow job"], seconds)
            mmseg_work = work / "mmseg_work"
            shutil.rmtree(mmseg_work, ignore_errors=True)
            command = [sys.executable, str(TOOLS_TRAIN), f"{run}/config.py", "--work-dir", str(mmseg_work)]
            best["tools/train.py"] = min(best["tools/train.py"], timed(command, work))
        print(f"run {run}: {args.epochs} epochs" + (f", {iterations} iterations" if iterations else "") + ", CPU")
        for name, seconds in best.items():
            print(f"{name:>20}: {seconds:6.1f} s (best of {args.repeats})")
        for name in ("workflow job", "snakemake invocation"):
            print(f"{'ratio, ' + name:>20}: {best[name] / best['tools/train.py']:.3f} of tools/train.py")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
