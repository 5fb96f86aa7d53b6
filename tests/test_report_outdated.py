"""The report refuses runs that no longer match the config: made with other settings
or other training or evaluation code than a run of the workflow would use now
(Snakemake would rebuild them; the report must not show their old numbers under
the new config's name). The snapshot leaves such runs out, and says so."""

import os
import shutil
from pathlib import Path

import pytest
from conftest import DEMO, DEMO_ALL_RUNS, OUT, run_dir, run_snakemake, write_config

HEADER = "run(s) made with other settings or code than this config asks for: "


@pytest.fixture
def study_copy(study, tmp_path):
    """A copy of the finished demo study (with Snakemake's metadata and mtimes)."""
    copy = tmp_path / "study"
    # without the training work dirs (every epoch's checkpoints, GBs): no test here reads them
    results = study / OUT
    shutil.copytree(study, copy, symlinks=True, ignore=lambda folder, _: ["work"] if Path(folder) == results else [])
    (copy / f"{OUT}/report.html").unlink(missing_ok=True)  # another test may have written one
    return copy


def report(workdir, *args):
    return run_snakemake(workdir, "--report", f"{OUT}/report.html", *args)


def named_runs(output: str) -> tuple[int, set[str]]:
    """(the count, the names) of the runs an error or warning says are out of date."""
    line = next(line for line in output.splitlines() if HEADER in line)
    count = int(line.split(HEADER)[0].split()[-1])
    return count, set(line.split(HEADER)[1].split(", "))


def names(runs) -> set[str]:
    return {f"{variant} {budget}-s{seed}" for variant, budget, seed in runs}


def test_the_report_of_runs_trained_with_other_settings_names_them(study_copy):
    old = DEMO["training"]["base_lr"]
    config = write_config(study_copy, "lr", training={**DEMO["training"], "base_lr": 2 * old})
    result = report(study_copy, "--configfile", config)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert named_runs(output) == (len(DEMO_ALL_RUNS), names(DEMO_ALL_RUNS))
    assert f"  - settings changed: base_lr {old!r} -> {2 * old!r}\n" in output  # every run: no list
    assert "Run the workflow first (`snakemake --profile <your profile> --configfile config/lr.yaml`" in output
    assert not (study_copy / f"{OUT}/report.html").exists()
    # the config the runs were made with: the report is written
    result = report(study_copy, "--configfile", "config/demo.yaml")
    assert result.returncode == 0, result.stderr[-3000:]
    assert (study_copy / f"{OUT}/report.html").exists()


@pytest.mark.parametrize("script, rule", [("train_upernet.py", "train_upernet"),
                                          ("evaluate_upernet.py", "evaluate_upernet")])  # fmt: skip
def test_the_report_of_runs_made_by_other_code_names_them(study_copy, script, rule):
    path = study_copy / "scripts" / script
    path.write_text(path.read_text() + "\nUPDATED = True\n")  # a real change: a new content hash
    result = report(study_copy, "--configfile", "config/demo.yaml")
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert named_runs(output) == (len(DEMO_ALL_RUNS), names(DEMO_ALL_RUNS))
    assert f"  - the code of {rule} changed (scripts/{script} or a module it imports)" in output
    assert not (study_copy / f"{OUT}/report.html").exists()


def test_a_run_whose_config_was_rendered_again_is_out_of_date_and_left_out_of_the_snapshot(study_copy):
    """A run's config.py rendered anew (other content) after its model was trained:
    Snakemake retrains it; the report refuses it, the snapshot leaves it out (a look
    mid-sweep trains nothing) and says so."""
    epochs = DEMO["epochs"][0]
    run = run_dir(study_copy, "vocaug", epochs, seed=1)
    config_py = run / "config.py"
    config_py.write_text(config_py.read_text() + "\n# edited\n")
    later = (run / "final.pth").stat().st_mtime + 60
    os.utime(config_py, (later, later))
    result = report(study_copy, "--configfile", "config/demo.yaml")
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert named_runs(output) == (1, {f"vocaug e{epochs}-s1"})
    assert "  - final.pth is older than config.py" in output
    plan = run_snakemake(study_copy, "snapshot", "-n", "--configfile", "config/demo.yaml")
    output = plan.stdout + plan.stderr
    assert plan.returncode == 0, output[-3000:]
    assert f"snapshot: leaving out 1 {HEADER}vocaug e{epochs}-s1" in output
    assert "train_upernet" not in output and "summarize_runs" in output
    assert f"{run_dir(study_copy, 'vocaug', epochs, seed=0).relative_to(study_copy)}/metrics.json" in plan.stdout
    assert f"{run.relative_to(study_copy)}/metrics.json" not in plan.stdout
    # the snapshot's report: not before `snakemake snapshot` has drawn it
    result = report(study_copy, "snapshot", "--configfile", "config/demo.yaml")
    assert result.returncode != 0 and "run `snakemake snapshot` first" in result.stdout + result.stderr


def test_the_report_of_figures_drawn_by_other_code_names_them(study_copy):
    """Every run up to date, a plotting script changed: Snakemake would redraw its
    figures, so the report waits for them."""
    path = study_copy / "scripts/plot_per_class.py"
    path.write_text(path.read_text() + "\nUPDATED = True\n")
    result = report(study_copy, "--configfile", "config/demo.yaml")
    output = result.stdout + result.stderr
    assert result.returncode != 0
    changed = "the code of plot_per_class changed (scripts/plot_per_class.py or a module it imports)"
    assert "every run is up to date, but the tables and figures are out of date: " in output
    assert all(f"{OUT}/figures/{name}.{ext} ({changed})" in output
               for name in ("per_class_iou", "per_class_change") for ext in ("png", "pdf"))  # fmt: skip
    assert f"{OUT}/tables/summary.csv" not in output and "run the workflow first." in output
    assert not (study_copy / f"{OUT}/report.html").exists()
