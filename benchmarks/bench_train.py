"""Training job vs MMSegmentation's own tools/train.py on the same rendered config.

In a scratch copy of the workflow on the mini dataset (config/demo.yaml with
the study's variants only, at ``--epochs``, CPU), renders one run's config,
then times, interleaved, best of N:

* the workflow's job: ``snakemake <run>/history.csv --forcerun train_upernet``,
  both the job alone (its ``train_benchmark.tsv``: the script, training, the
  export of final.pth and history.csv) and the whole invocation (plus
  Snakemake's start-up and DAG);
* ``python <mmseg>/.mim/tools/train.py <config.py> --work-dir <fresh dir>``.

Each attempt starts from an empty work directory.  Not a test: a time is a
ratio within one run on one machine.  ``--smoke``: 1 epoch, 1 repeat, to check
that the benchmark still runs (tests/test_benchmarks.py); its times mean nothing.

    .venv/bin/python benchmarks/bench_train.py [--variant voc --epochs 3 --repeats 2] [--smoke]
"""

import argparse
import csv
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import mmseg
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "scripts"), str(ROOT / "tools")]

from make_mini_coco import build_coco_archives  # noqa: E402
from make_mini_custom import build_custom_archive  # noqa: E402
from make_mini_voc import build_archives  # noqa: E402

TOOLS_TRAIN = Path(mmseg.__file__).parent / ".mim/tools/train.py"


def run_checked(command: list[str], cwd: Path) -> None:
    """Run ``command``; a failure stops the benchmark with the end of its output."""
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        output = (result.stdout + result.stderr)[-3000:]
        sys.exit(f"{' '.join(command)} failed (exit {result.returncode}):\n{output}")


def snakemake(workdir: Path, *args: str) -> None:
    command = [sys.executable, "-m", "snakemake", *args, "--cores", "2", "--configfile", "config/bench.yaml"]
    run_checked(command, workdir)


def timed(command: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    run_checked(command, cwd)
    return time.perf_counter() - start


def bench_config(demo: Path, epochs: int) -> dict:
    """config/demo.yaml with the study's variants only (the demo's own ones start from
    its vocaug run at its epoch count) at ``epochs``."""
    config = yaml.safe_load(demo.read_text())
    config.pop("variants", None)
    config["epochs"] = [epochs]
    return config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variant", default="voc")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--smoke", action="store_true", help="1 epoch, 1 repeat: does it still run?")
    args = parser.parse_args()
    if args.smoke:
        args.epochs, args.repeats = 1, 1

    work = Path(tempfile.mkdtemp(prefix="bench-train-"))
    try:
        for name in ("Snakefile", "rules", "scripts", "config", "envs", "report"):
            source = ROOT / name
            (shutil.copytree if source.is_dir() else shutil.copy)(source, work / name)
        for build in (build_archives, build_coco_archives, build_custom_archive):  # config/demo.yaml's data
            build(work / "resources/demo")
        config = bench_config(work / "config/demo.yaml", args.epochs)
        (work / "config/bench.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        results = config["results"]
        run = f"{results}/runs/{args.variant}/e{args.epochs}-s0"
        snakemake(work, "data", f"{run}/config.py")  # data stage + rendered config
        # the rendered run's own count (its lists, its batch)
        iterations = json.loads((work / run / "train_set.json").read_text())["iterations"]
        best = {"snakemake invocation": float("inf"), "workflow job": float("inf"), "tools/train.py": float("inf")}
        for _ in range(args.repeats):
            shutil.rmtree(work / results / "work", ignore_errors=True)
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
        print(f"run {run}: {args.epochs} epochs, {iterations} iterations, CPU")
        for name, seconds in best.items():
            print(f"{name:>20}: {seconds:6.1f} s (best of {args.repeats})")
        for name in ("workflow job", "snakemake invocation"):
            print(f"{'ratio, ' + name:>20}: {best[name] / best['tools/train.py']:.3f} of tools/train.py")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
