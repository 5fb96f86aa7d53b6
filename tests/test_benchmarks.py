"""The benchmarks still run: each one's ``--smoke`` mode (tiny sizes, one repeat)
finishes and prints its table.  What they measure is not checked: times on a
shared machine mean something only within one run (benchmarks/README.md)."""

import os
import re
import subprocess
import sys

import pytest
from conftest import OUT, REPO

NUMBER = r"\d+(\.\d+)?"
TRAIN_TIMES = ("snakemake invocation", "workflow job", "tools/train.py")

RESULT_LINES = {
    "bench_convert_sbd.py": [
        r"^generated 20 GTcls files of 500x375 ",
        r"^processes +reference img/s +convert_sbd img/s +ratio +pixels$",
        *(rf"^ +{processes} +{NUMBER} +{NUMBER} +{NUMBER} +identical$" for processes in (1, 2)),
    ],
    "bench_dry_run.py": [
        rf"^study: 4 runs, \d+ jobs planned in {NUMBER} s \(best of 1\)$",
        rf"^trivial Snakefile: \d+ jobs planned in {NUMBER} s$",
        rf"^ratio: {NUMBER}$",
    ],
    "bench_train.py": [
        rf"^run {re.escape(OUT)}/runs/voc/e1-s0: 1 epochs, \d+ iterations, CPU$",
        *(rf"^ *{name}: +{NUMBER} s \(best of 1\)$" for name in TRAIN_TIMES),
        *(rf"^ *ratio, {name}: {NUMBER} of tools/train.py$" for name in TRAIN_TIMES[:2]),
    ],
}


@pytest.mark.parametrize("script", sorted(RESULT_LINES))
def test_benchmark_runs_in_smoke_mode_and_prints_its_results(script, tmp_path):
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / script), "--smoke"],
        cwd=REPO,
        env={**os.environ, "TMPDIR": str(tmp_path)},  # its scratch copy, and where to look for leftovers
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    missing = [line for line in RESULT_LINES[script] if not re.search(line, result.stdout, re.M)]
    assert not missing, f"{script} --smoke printed no line like {missing}:\n{result.stdout}"
    assert not list(tmp_path.glob("bench-*")), f"{script} left its scratch folder behind"
