"""Faults a cluster user meets, each reproduced and now handled: runtime requests
from the data a job trains on, the demo beside a real study, retrains, one
trainer per run, reruns by content, broken run files, config edges."""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml
from conftest import DATA_KEY, DEMO, DEMO_ALL_RUNS, DEMO_RUNS, OUT, REPO, copy_study, copy_workflow, planned_jobs, run_dir, run_snakemake, runtimes, write_config

from common.code import code_digest
from common.config_files import ConfigFileError, load_config_file
from common.sizing import runtime_request, train_minutes
from common.run_files import RunFileError, check_checkpoint, read_attempts, read_confusion, read_history, read_metrics, read_per_image
from common.run_lock import RunLockHeld, lock_path, run_lock


# ---- 1 + 2. runtime requests from the job's own data; the demo beside a real study ----
def test_the_real_study_plans_from_official_counts_beside_the_demo_data(study):
    """Demo data and results in place: the real config neither reuses nor counts them."""
    result = run_snakemake(study, "-n", "results/runs/vocaug/e200-s0/final.pth")
    assert result.returncode == 0, result.stderr[-3000:]
    # MMSeg's 10,582 + 1,449 images, 2 GPUs at 20 images/s each: the clean clone's request
    assert runtimes(result) == {"results/runs/vocaug/e200-s0/final.pth": 1399}
    jobs = planned_jobs(result)
    assert jobs["extract_voc"] == 1 and jobs["convert_sbd"] == 1  # its own data, not the demo's
    assert "resources/data/voc-6cd6e144_sbd-82b4d87c/VOCdevkit" in result.stdout
    assert f"{OUT}/" not in result.stdout and DATA_KEY not in result.stdout
    cost = run_snakemake(study, "cost", "--cores", "1")
    assert cost.returncode == 0 and "about 59.6 GPU-hours" in cost.stdout + cost.stderr


@pytest.fixture(scope="module")
def voc_run(tmp_path_factory, mini_archives) -> SimpleNamespace:
    """voc e1-s0 planned (no data yet) and trained in a workflow copy of its own, with
    estimates far off (the tests read it, or work on a copy)."""
    workdir = copy_workflow(tmp_path_factory.mktemp("voc_run"), mini_archives)
    huge = {"train": 10**7, "val": 10**7, "trainaug": 10**7, "aug": 10**7}
    config = write_config(workdir, "estimates", study_variants_only=True, epochs=[1], estimates={"split_sizes": huge, "partition_time_limit": None})
    target = f"{OUT}/runs/voc/e1-s0/history.csv"
    plan = run_snakemake(workdir, "-n", target, "--configfile", config)
    assert plan.returncode == 0, plan.stderr[-3000:]
    result = run_snakemake(workdir, target, "--cores", "2", "--configfile", config)
    assert result.returncode == 0, result.stderr[-3000:]
    return SimpleNamespace(dir=workdir, config=config, target=target, plan=plan)


def test_a_training_job_asks_for_the_runtime_of_the_lists_it_trains_on(voc_run):
    """Estimates far off, no data at planning: the job's request, made when it is
    submitted, follows the lists the data stage wrote."""
    planned = runtimes(voc_run.plan)[f"{OUT}/runs/voc/e1-s0/final.pth"]
    actual = runtime_request(train_minutes(40, 30, 1, 1, 20, 1), 1)  # the mini lists: 40 train, 30 val
    assert planned > 1000 * actual
    log = (run_dir(voc_run.dir, "voc", 1) / "train.log").read_text()
    assert f"runtime request {actual} min" in log


# ---- 3. a retrain retrains; every attempt counts ----------------------------------
def test_a_finished_run_asked_again_is_restored_and_new_training_code_retrains(voc_run, tmp_path):
    workflow_copy = tmp_path / "workflow"  # voc_run's, finished, with Snakemake's metadata and mtimes
    shutil.copytree(voc_run.dir, workflow_copy, symlinks=True)
    config, target = voc_run.config, voc_run.target
    out, work = run_dir(workflow_copy, "voc", 1), f"{OUT}/work/voc/e1-s0"
    trained = torch.load(out / "final.pth", map_location="cpu")["state_dict"]

    # final.pth lost (or deleted by `--delete-all-output` as root), then --forcerun:
    # both get the finished model back from the work dir, no training
    (out / "final.pth").unlink()
    for extra in ([], ["--forcerun", "train_upernet"]):
        again = run_snakemake(workflow_copy, f"{OUT}/runs/voc/e1-s0/final.pth", "--cores", "2", *extra, "--configfile", config)
        assert again.returncode == 0, again.stderr[-3000:]
        log = (out / "train.log").read_text()
        assert "with the same config and training code: restoring its outputs" in log, log[-3000:]
        assert "runtime request 15 min" in log  # asked for no training time
        assert "Epoch(train)" not in log and not (workflow_copy / f"{work}.old-1").exists()
        restored = torch.load(out / "final.pth", map_location="cpu")["state_dict"]
        assert restored.keys() == trained.keys() and all(torch.equal(restored[k], trained[k]) for k in trained)
    assert [a["status"] for a in read_attempts(out / "attempts.tsv")] == ["finished", "restored", "restored"]
    assert [int(r["epoch"]) for r in read_history(out / "history.csv")] == [1]

    # new training code: a real retrain, which keeps the earlier attempts' hours on record
    script = workflow_copy / "scripts/train_upernet.py"
    script.write_text(script.read_text() + "\nRETRAINED_WITH_NEW_CODE = True\n")
    retrain = run_snakemake(workflow_copy, target, "--cores", "2", "--configfile", config)
    assert retrain.returncode == 0, retrain.stderr[-3000:]
    log = (out / "train.log").read_text()
    assert "finished before" in log and "with other training code" in log and f"set {work} aside as {work}.old-1" in log
    assert "training starts at epoch 0" in log and "resuming from" not in log
    assert (workflow_copy / f"{work}.old-1" / "epoch_1.pth").exists()
    attempts = read_attempts(out / "attempts.tsv")
    assert [a["status"] for a in attempts] == [
        "finished, set aside as e1-s0.old-1", "restored, set aside as e1-s0.old-1",
        "restored, set aside as e1-s0.old-1", "finished",
    ]  # fmt: skip
    assert [a["start"] for a in attempts][-1] == "epoch 0"
    assert [int(r["epoch"]) for r in read_history(out / "history.csv")] == [1]
    # every job's log was kept: one training, two restores, one retraining
    assert len(list((out / "train-logs").glob("*.log"))) == 4


def test_the_summary_counts_every_attempt(tmp_path):
    from summarize_runs import train_seconds

    attempts = tmp_path / "attempts.tsv"
    attempts.write_text(
        "attempt\tstarted\tseconds\tstatus\twhere\tstart\n"
        "1\t2026-01-01 00:00:00\t300.0\tterminated\tSLURM job 7 on n1\tepoch 0\n"
        "2\t2026-01-01 01:00:00\t60.5\tfinished\tSLURM job 9 on n2\tresumes epoch_3.pth\n"
    )
    assert train_seconds(attempts) == pytest.approx(360.5)


# ---- 4. one trainer per run -----------------------------------------------------------
def test_a_second_trainer_is_refused_and_killing_snakemake_stops_the_first(workflow_copy):
    # a log line every step: the first trainer's log is seen to grow within seconds
    training = {**DEMO["training"], "log_interval": 1}
    config = write_config(workflow_copy, "long", study_variants_only=True, epochs=[100], training=training)
    target = f"{OUT}/runs/voc/e100-s0/history.csv"
    lock = lock_path(workflow_copy / f"{OUT}/work/voc/e100-s0")
    command = [sys.executable, "-m", "snakemake", target, "--cores", "2", "--configfile", config]
    first = subprocess.Popen(command, cwd=workflow_copy, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 600
        while not lock.exists():
            assert first.poll() is None and time.time() < deadline, "the first trainer never took the lock"
            time.sleep(0.2)
        holder = json.loads(lock.read_text())
        trainer, first_log = holder["pid"], workflow_copy / holder["log"]
        assert first_log.parent == run_dir(workflow_copy, "voc", 100) / "train-logs"
        # a user lifts Snakemake's own lock and asks again
        assert run_snakemake(workflow_copy, "--unlock", "--configfile", config).returncode == 0
        second = run_snakemake(workflow_copy, target, "--cores", "2", "--configfile", config)
        assert second.returncode != 0
        log = (run_dir(workflow_copy, "voc", 100) / "train.log").read_text()
        assert f"is already being trained by pid {trainer} on {socket.gethostname()}" in log, log[-2000:]
        assert f"its log: {holder['log']}" in log
        assert json.loads(lock.read_text())["pid"] == trainer  # still the first one's
        # Snakemake removed train.log before the refused job: the first trainer's log lives on, and grows
        size = first_log.stat().st_size
        kept = first_log.read_text()
        assert f"holding {lock.relative_to(workflow_copy)}" in kept and "is already being trained" not in kept
        deadline = time.time() + 120
        while first_log.stat().st_size == size:
            assert time.time() < deadline, "the first trainer's log stopped growing"
            time.sleep(1)

        first.send_signal(signal.SIGKILL)  # the login node's snakemake dies, nothing cleans up
        first.wait()
        deadline = time.time() + 60
        while Path(f"/proc/{trainer}").exists() and time.time() < deadline:
            time.sleep(0.5)
        assert not Path(f"/proc/{trainer}").exists(), "the trainer outlived its snakemake"
        assert not lock.exists()  # it let go of the run on its way out
    finally:
        if first.poll() is None:
            first.kill()
    attempts = read_attempts(workflow_copy / f"{OUT}/work/voc/e100-s0/attempts.tsv")
    assert [a["status"] for a in attempts] == ["terminated"]
    assert "stopping the training" in first_log.read_text() or "Terminated" in first_log.read_text()


def test_a_lock_of_a_live_process_holds_and_of_a_dead_one_is_taken_over(tmp_path, caplog):
    work = tmp_path / "work"
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        holder = {"host": socket.gethostname(), "pid": sleeper.pid, "slurm_job": None, "since": "then"}
        lock_path(work).write_text(json.dumps(holder))
        with pytest.raises(RunLockHeld, match=f"already being trained by pid {sleeper.pid} on"):
            with run_lock(work):
                pass
    finally:
        sleeper.kill()
        sleeper.wait()
    caplog.set_level("INFO")
    with run_lock(work) as path:
        assert json.loads(path.read_text())["pid"] == os.getpid()
    assert f"process {sleeper.pid} on {socket.gethostname()} has ended" in caplog.text
    assert not lock_path(work).exists()
    # an unreadable lock file (cut short) is no holder
    lock_path(work).write_text("{")
    with run_lock(work):
        pass


# ---- 5. reruns follow content -------------------------------------------------------
class Edit:
    """Change files of the study in place for one dry run, then restore bytes and mtimes."""

    def __init__(self, root: Path, *names: str):
        self.paths = [root / name for name in names]
        self.saved = [(p.read_bytes(), p.stat()) for p in self.paths]

    def restore(self):
        for path, (data, stat) in zip(self.paths, self.saved):
            path.write_bytes(data)
            os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def dry_run(study) -> dict[str, int]:
    result = run_snakemake(study, "-n", "--configfile", "config/demo.yaml")
    assert result.returncode == 0, result.stderr[-3000:]
    return planned_jobs(result)


def test_touching_or_reverting_scripts_reruns_nothing(study):
    scripts = sorted(p.relative_to(study).as_posix() for p in (study / "scripts").rglob("*.py"))
    edit = Edit(study, *scripts)
    try:
        later = time.time() + 5
        for path in edit.paths:  # a checkout that rewrote them all, or `touch`
            path.write_bytes(path.read_bytes())
            os.utime(path, (later, later))
        assert dry_run(study) == {}
        train = study / "scripts/train_upernet.py"  # comments and docstrings are no code
        train.write_text('"""Another docstring."""\n# a comment\n' + train.read_text().split('"""', 2)[2])
        assert dry_run(study) == {}
    finally:
        edit.restore()


def test_a_real_edit_of_a_shared_module_reruns_every_rule_that_imports_it(study):
    edit = Edit(study, "scripts/common/stats.py", "scripts/common/mmseg_config.py")
    try:
        stats = edit.paths[0]
        stats.write_text(stats.read_text() + "\nEDITED = True\n")
        importers = {"compare_per_class", "summarize_runs", "generalization", "findings", "compare_annotations",
                     "attribution", "plot_data_scaling", "compare_finetuning"}  # fmt: skip
        downstream = {"plot_per_class", "plot_generalization", "plot_annotations", "all"}
        assert dry_run(study) == dict.fromkeys(sorted(importers | downstream), 1)
        edit.restore()
        renderer = edit.paths[1]
        renderer.write_text(renderer.read_text() + "\nEDITED = True\n")
        jobs = dry_run(study)
        assert jobs["render_mmseg_config"] == len(DEMO_ALL_RUNS) and jobs["train_upernet"] == len(DEMO_ALL_RUNS)
        assert "make_subset" not in jobs  # drawing subsets needs no MMSeg config
    finally:
        edit.restore()


def test_the_code_hash_covers_imported_modules_and_base_configs(tmp_path):
    scripts = tmp_path / "scripts"
    shutil.copytree(REPO / "scripts", scripts)
    before = code_digest(scripts / "render_mmseg_config.py")
    base = scripts / "common/configs/study_voc.py"
    base.write_text(base.read_text() + "\n# a comment changes no result\n")
    assert code_digest(scripts / "render_mmseg_config.py") == before
    base.write_text(base.read_text().replace("interval=50", "interval=20"))
    assert code_digest(scripts / "render_mmseg_config.py") != before
    assert code_digest(scripts / "plot_confusion.py") == code_digest(REPO / "scripts/plot_confusion.py")


def test_finished_runs_are_kept_across_an_update_of_the_training_code_with_touch(study_copy):
    """docs/operations.md, Environments: after a stack update Snakemake sees new training code and
    plans every run again; `--touch` on the runs' final.pth keeps them, and only the
    evaluations (and what reads them) run again."""
    module = study_copy / "scripts/common/work_dir.py"  # imported by train_upernet.py
    module.write_text(module.read_text() + "\nUPDATED = True\n")
    jobs = dry_run(study_copy)
    assert jobs["train_upernet"] == len(DEMO_ALL_RUNS) and jobs["evaluate_upernet"] == len(DEMO_RUNS)
    finals = sorted(str(p.relative_to(study_copy)) for p in (study_copy / OUT / "runs").glob("*/*/final.pth"))
    assert len(finals) == len(DEMO_ALL_RUNS)
    before = {path: (study_copy / path).read_bytes() for path in finals}
    result = run_snakemake(study_copy, *finals, "--touch", "--cores", "1", "--configfile", "config/demo.yaml")
    assert result.returncode == 0, result.stderr[-3000:]
    assert all((study_copy / path).read_bytes() == data for path, data in before.items())  # marked, not rewritten
    jobs = dry_run(study_copy)
    assert "train_upernet" not in jobs and "render_mmseg_config" not in jobs and "init_weights" not in jobs
    assert jobs["evaluate_upernet"] == len(DEMO_RUNS)  # the kept models, evaluated with the new code


# ---- 6. broken run files are errors ----------------------------------------------------
@pytest.mark.parametrize(
    "reader, content, message",
    [
        (read_history, "", "the file is empty"),
        (read_history, "epoch,mIoU,aAcc,mAcc,train_loss,lr\n", "a header but no epochs"),
        (read_history, "epoch,mIoU\n1,\n2,\n", "no epoch has a validation mIoU"),
        (read_history, "epoch,mIoU\n1,abc\n", "line 2: mIoU is 'abc', not a number"),
        (read_history, "epoch,mIoU,train_loss\n1,50.0,\n2,51.0,x\n", "line 3: train_loss is 'x', not a number"),
        (read_metrics, "", "the file is empty"),
        (read_metrics, '{"mIoU": 5', "not valid JSON (line 1"),
        (read_metrics, '{"mIoU": 5, "aAcc": 50}', "no mAcc"),
        (read_metrics, '{"mIoU": NaN, "aAcc": 5, "mAcc": 5}', "mIoU is nan"),
        (read_attempts, "attempt\tstarted\tseconds\tstatus\twhere\tstart\n", "a header but no attempts"),
        (read_confusion, "not numpy", "not a NumPy array file"),
        (read_per_image, "", "not a NumPy .npz file"),
    ],
)
def test_a_broken_run_file_is_an_error_naming_it(tmp_path, reader, content, message):
    path = tmp_path / "run_file"
    path.write_text(content)
    with pytest.raises(RunFileError) as error:
        reader(path)
    assert str(error.value).startswith(f"{path}: ") and message in str(error.value)


@pytest.mark.parametrize("damage", ["cut short", "garbage", "a flipped byte"])
def test_a_damaged_checkpoint_is_an_error_naming_it_before_torch_reads_it(tmp_path, damage):
    from evaluate_upernet import evaluate

    good = tmp_path / "good" / "final.pth"
    good.parent.mkdir()
    torch.save({"meta": {"epoch": 2}, "state_dict": {"w": torch.arange(4096, dtype=torch.float32)}}, good)
    check_checkpoint(good)
    data = bytearray(good.read_bytes())
    if damage == "cut short":
        data = data[: len(data) // 2]
    elif damage == "garbage":
        data = bytearray(b"not a checkpoint")
    else:  # inside the tensor's bytes: the archive's structure intact, its CRC not
        data[data.index(bytes(torch.arange(4096, dtype=torch.float32).numpy().tobytes()[4000:4016])) + 8] ^= 0xFF
    path = tmp_path / "final.pth"
    path.write_bytes(bytes(data))
    with pytest.raises(RunFileError, match="restored from its work dir") as error:
        check_checkpoint(path)
    assert str(error.value).startswith(f"{path}: ")
    with pytest.raises(RunFileError) as error:  # the evaluation job: the file named, not PytorchStreamReader's words
        evaluate(tmp_path / "no-config.py", path)
    assert str(error.value).startswith(f"{path}: ")


def test_a_broken_history_stops_the_summary_naming_the_file(study_copy):
    history = run_dir(study_copy, "voc", DEMO["epochs"][0]) / "history.csv"
    history.write_text(history.read_text().splitlines()[0] + "\n")  # header only
    result = run_snakemake(study_copy, f"{OUT}/tables/summary.csv", "--cores", "1", "--configfile",
                           "config/demo.yaml", "--forcerun", "summarize_runs")  # fmt: skip
    assert result.returncode != 0
    log = (study_copy / f"logs/summarize_runs/{OUT}.log").read_text()
    assert f"RunFileError: {OUT}/runs/voc/e{DEMO['epochs'][0]}-s0/history.csv: a header but no epochs" in log


def test_the_report_of_an_unfinished_sweep_names_the_missing_runs(study_copy):
    config = write_config(study_copy, "more", epochs=[*DEMO["epochs"], 9])
    (study_copy / f"{OUT}/report.html").unlink(missing_ok=True)  # another test may have written one
    result = run_snakemake(study_copy, "--report", f"{OUT}/report.html", "--configfile", config)
    assert result.returncode != 0
    missing = [f"{v} e9-s{s}" for v in ("voc", "vocaug") for s in DEMO["seeds"]]
    expected = f"{len(missing)} run(s) of this config that have not finished: {', '.join(missing)}"
    assert expected in result.stdout + result.stderr
    assert not (study_copy / f"{OUT}/report.html").exists()
    # every run finished, the figures not drawn yet
    (study_copy / f"{OUT}/figures/qualitative.png").unlink()
    result = run_snakemake(study_copy, "--report", f"{OUT}/report.html", "--configfile", "config/demo.yaml")
    assert result.returncode != 0 and f"not been drawn ({OUT}/figures/qualitative.png)" in result.stdout + result.stderr


# ---- 7. config edges ------------------------------------------------------------------
def test_home_and_environment_variables_in_paths_are_expanded(workflow_copy, tmp_path):
    home = tmp_path / "home"
    (home / "archives").mkdir(parents=True)
    for archive in (workflow_copy / "resources/demo").iterdir():
        shutil.copy(archive, home / "archives" / archive.name)
    data = yaml.safe_load((REPO / "config/demo.yaml").read_text())["data"]
    data["voc"]["archive"] = "~/archives/VOCtrainval_mini.tar"
    data["sbd"]["archive"] = "${ARCHIVES}/benchmark_mini.tgz"
    config = write_config(workflow_copy, "home", study_variants_only=True, data=data, results="$STUDY_OUT/demo")
    env = {**os.environ, "HOME": str(home), "ARCHIVES": str(home / "archives"), "STUDY_OUT": "elsewhere"}
    command = [sys.executable, "-m", "snakemake", "-n", "--configfile", config]
    result = subprocess.run(command, cwd=workflow_copy, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"{home}/archives/VOCtrainval_mini.tar" in result.stdout
    assert f"elsewhere/demo/runs/voc/e{DEMO['epochs'][0]}-s0/final.pth" in result.stdout
    del env["STUDY_OUT"]
    result = subprocess.run(command, cwd=workflow_copy, env=env, capture_output=True, text=True)
    assert result.returncode != 0
    assert "config key results: '$STUDY_OUT/demo' uses environment variable(s) STUDY_OUT, which are not set" in result.stdout + result.stderr


def test_a_key_given_twice_is_an_error_naming_file_and_line(workflow_copy):
    config = workflow_copy / "config/twice.yaml"
    config.write_text((REPO / "config/demo.yaml").read_text() + "epochs: [1]\n")
    result = run_snakemake(workflow_copy, "-n", "--configfile", "config/twice.yaml")
    assert result.returncode != 0
    first = next(i for i, line in enumerate(config.read_text().splitlines(), 1) if line.startswith("epochs:"))
    last = len(config.read_text().splitlines())
    assert f"/config/twice.yaml, line {last}: key 'epochs' is given twice (first on line {first})" in result.stdout + result.stderr


def test_a_yaml_error_names_file_and_line(workflow_copy):
    main = workflow_copy / "config/config.yaml"
    lines = main.read_text().splitlines()
    lines.insert(5, "  voc: [unclosed")
    main.write_text("\n".join(lines) + "\n")
    result = run_snakemake(workflow_copy, "-n")
    assert result.returncode != 0
    assert re.search(r"config file \S+/config/config\.yaml, line \d+, column \d+: not valid YAML", result.stdout + result.stderr)
    # Snakemake reads --configfile files before the Snakefile runs: the checker names them
    bad = workflow_copy / "config/bad.yaml"
    bad.write_text("epochs: [1\nseeds: [0]\n")
    checked = subprocess.run([sys.executable, str(REPO / "tools/check_config.py"), str(bad)], capture_output=True, text=True)
    assert checked.returncode == 1 and f"config file {bad}, line 2, column 6: not valid YAML" in checked.stderr
    with pytest.raises(ConfigFileError, match="line 2"):
        load_config_file(bad)


def test_delete_all_output_keeps_the_trained_models(study):
    """As a cluster user (not root, for whom every file is writable)."""
    root = Path(tempfile.mkdtemp(prefix="unprivileged-"))
    try:
        root.chmod(0o755)
        copy = copy_study(study, root / "study")
        subprocess.run(["chown", "-R", "nobody:nogroup", str(copy)], check=True)
        # nobody may read and traverse anything (the interpreter can live under a root-only
        # home, as pyenv's does), but writes are checked as for any user
        command = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                   "--inh-caps=+dac_read_search", "--ambient-caps=+dac_read_search",
                   sys.executable, "-m", "snakemake", "--delete-all-output", "--configfile", "config/demo.yaml"]  # fmt: skip
        result = subprocess.run(command, cwd=copy, capture_output=True, text=True, env={**os.environ, "HOME": str(copy)})
        output = result.stdout + result.stderr
        assert result.returncode == 0, output[-3000:]
        for variant, epochs in [(v, e) for v in ("voc", "vocaug") for e in DEMO["epochs"]]:
            out = run_dir(copy, variant, epochs)
            assert (out / "final.pth").exists() and not (out / "metrics.json").exists()
            assert f"Skipping write-protected file {OUT}/runs/{variant}/e{epochs}-s0/final.pth" in output
        assert not (copy / f"{OUT}/tables/summary.csv").exists()
    finally:
        shutil.rmtree(root, ignore_errors=True)
