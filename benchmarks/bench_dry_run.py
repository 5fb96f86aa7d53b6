"""Dry-run planning of a 500-run sweep vs a trivial Snakefile with as many jobs.

Plans, with ``snakemake -n --profile profiles/slurm`` in a fresh checkout (no
data, as on a login node), a config of 5 variants x 10 epoch counts x 10 seeds
= 500 runs (render + train + evaluate per run, plus data and figure jobs), and
a trivial three-rule Snakefile with the same number of jobs; interleaved, best
of N.  Not a test: a time is a ratio within one run.  ``--smoke``: 2 variants x
2 epoch counts x 1 seed, 1 repeat, to check that the benchmark still runs
(tests/test_benchmarks.py); its times mean nothing.

    .venv/bin/python benchmarks/bench_dry_run.py [--repeats 3] [--smoke]
"""

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
# conda is not installed here; planning is the same with any deployment method
DRY_RUN = ["-n", "--quiet", "rules", "--profile", "profiles/slurm", "--software-deployment-method", "env-modules"]

TRIVIAL = """
N = {runs}
rule all:
    input: expand("out/{{i}}/c.txt", i=range(N)), "out/summary.txt"
rule a:
    output: "out/{{i}}/a.txt"
    resources: gpu=1, runtime=60
    shell: "touch {{output}}"
rule b:
    input: "out/{{i}}/a.txt"
    output: "out/{{i}}/b.txt"
    shell: "touch {{output}}"
rule c:
    input: "out/{{i}}/b.txt"
    output: "out/{{i}}/c.txt"
    shell: "touch {{output}}"
rule summary:
    input: expand("out/{{i}}/b.txt", i=range(N))
    output: "out/summary.txt"
    shell: "touch {{output}}"
"""


def plan(workdir: Path) -> tuple[float, int]:
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "snakemake", *DRY_RUN], cwd=workdir, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(result.stderr[-3000:])
    total = re.search(r"^total\s+(\d+)", result.stdout + result.stderr, re.M)
    return seconds, int(total.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--smoke", action="store_true", help="4 runs, 1 repeat: does it still run?")
    args = parser.parse_args()
    if args.smoke:
        args.repeats = 1
    work = Path(tempfile.mkdtemp(prefix="bench-dry-run-"))
    try:
        study = work / "study"
        study.mkdir()
        for name in ("Snakefile", "rules", "scripts", "config", "envs", "report", "profiles"):
            source = ROOT / name
            (shutil.copytree if source.is_dir() else shutil.copy)(source, study / name)
        config = yaml.safe_load((ROOT / "config/config.yaml").read_text())
        base = config["variants"]["vocaug"]
        config["variants"].update(
            {
                "vocaug_r101": {**base, "depth": 101, "pretrained": "open-mmlab://resnet101_v1c"},
                "vocaug_focal": {**base, "loss": "focal"},
                "vocaug_noflip": {**base, "augment": {"flip": False}},
            }
        )
        config["epochs"] = [10, 20, 30, 40, 50, 75, 100, 125, 150, 200]
        config["seeds"] = list(range(10))
        if args.smoke:
            config["variants"] = dict(list(config["variants"].items())[:2])
            config["epochs"], config["seeds"] = config["epochs"][:2], [0]
        (study / "config/config.yaml").write_text(yaml.safe_dump(config))
        runs = len(config["variants"]) * len(config["epochs"]) * len(config["seeds"])

        best = {"study": float("inf"), "trivial": float("inf")}
        jobs = {}
        for _ in range(args.repeats):
            seconds, jobs["study"] = plan(study)
            best["study"] = min(best["study"], seconds)
            trivial = work / "trivial"
            trivial.mkdir(exist_ok=True)
            shutil.copytree(ROOT / "profiles", trivial / "profiles", dirs_exist_ok=True)
            (trivial / "Snakefile").write_text(TRIVIAL.format(runs=jobs["study"] // 3))
            seconds, jobs["trivial"] = plan(trivial)
            best["trivial"] = min(best["trivial"], seconds)
        print(f"study: {runs} runs, {jobs['study']} jobs planned in {best['study']:.2f} s (best of {args.repeats})")
        print(f"trivial Snakefile: {jobs['trivial']} jobs planned in {best['trivial']:.2f} s")
        print(f"ratio: {best['study'] / best['trivial']:.2f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
