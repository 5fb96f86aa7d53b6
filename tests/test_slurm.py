"""The SLURM profile against a real one-node SLURM cluster (tools/slurm_test_cluster.sh),
and dry-run planning on a "login node" where torch cannot be imported.

No mock: jobs are submitted with sbatch, and what they asked for and where they
ran is read back from SLURM itself (sacct, squeue).
"""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from common.run_files import read_attempts
from common.run_lock import lock_path
from conftest import DEMO, DEMO_VOC, NO_CONDA, REPO, copy_workflow, planned_jobs, run_dir, run_snakemake, write_config

CLUSTER = REPO / "tools/slurm_test_cluster.sh"


@pytest.fixture(scope="session")
def slurm_cluster():
    running = subprocess.run([str(CLUSTER), "status"], capture_output=True, text=True).returncode == 0
    if not running:
        started = subprocess.run([str(CLUSTER), "start"], capture_output=True, text=True, timeout=600)
        if started.returncode != 0:
            pytest.fail(f"the test SLURM cluster did not start:\n{started.stdout}\n{started.stderr}")
    yield
    if not running:
        subprocess.run([str(CLUSTER), "stop"], capture_output=True, timeout=120)


def merge(base: dict, overrides: dict) -> dict:
    merged = dict(base)
    for key, value in overrides.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def make_test_profile(workdir: Path) -> str:
    """profiles/slurm with tests/slurm/profile_overrides.yaml on top, in the work dir."""
    real = yaml.safe_load((REPO / "profiles/slurm/config.yaml").read_text())
    overrides = yaml.safe_load((REPO / "tests/slurm/profile_overrides.yaml").read_text())
    profile = workdir / "test-profile"
    profile.mkdir()
    (profile / "config.yaml").write_text(yaml.safe_dump(merge(real, overrides)))
    return str(profile)


def slurm_jobs(workdir: Path, rule: str) -> list[str]:
    """SLURM job ids of a rule's jobs submitted from ``workdir``, as SLURM's accounting has them.

    The plugin puts ``rule_<name>[_wildcards_...]`` in each job's comment.
    """
    out = subprocess.run(
        ["sacct", "-a", "-X", "-P", "-n", "-S", "2020-01-01", "--format=JobID,Comment%400,WorkDir%600"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    jobs = []
    for line in out.splitlines():
        job, comment, directory = line.split("|")
        if directory == str(workdir) and (comment == f"rule_{rule}" or comment.startswith(f"rule_{rule}_wildcards_")):
            jobs.append(job)
    return sorted(jobs, key=int)


def sacct(job_ids, fields="JobID,Partition,AllocTRES,State,NTasks") -> list[dict]:
    out = subprocess.run(
        ["sacct", "-P", "-n", "-j", ",".join(job_ids), f"--format={fields}"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    names = fields.split(",")
    return [dict(zip(names, line.split("|"))) for line in out.splitlines() if line]


def extract_voc_here(workdir: Path, config: str) -> None:
    """The VOC data, extracted on this machine first: the tests of a training job
    spare a SLURM job of its own and the status check that sees it done (the demo
    test runs the data stage on SLURM)."""
    data = run_snakemake(workdir, f"{DEMO_VOC}/ImageSets/Segmentation/train.txt", "--cores", "2", "--configfile", config)
    assert data.returncode == 0, data.stderr[-3000:]


def relative_files(root: Path, skip=("_tta",)) -> set[str]:
    """The files of runs, tables and figures, but for what ``skip`` names (a file or a
    folder: the study fixture's runs also hold what other tests evaluate, as with TTA)."""
    return {
        str(p.relative_to(root))
        for folder in ("results/demo/runs", "results/demo/tables", "results/demo/figures")
        for p in (root / folder).rglob("*")
        if p.is_file() and not any(s in part for part in p.relative_to(root).parts for s in skip)
        and ".snakemake_timestamp" not in p.name
        and p.parent.name != "train-logs"  # named by date and job: compared on their own
    }


def test_demo_workflow_runs_as_slurm_jobs(slurm_cluster, mini_archives, tmp_path, study):
    # the demo's every rule, on one seed at one epoch: its SLURM behaviour at a fraction of the CPU time
    workdir = copy_workflow(tmp_path, mini_archives)
    # with the demo's fine-tuning on its own dataset, here from voc (which, unlike
    # vocaug, waits for no SBD conversion: the fine-tuned run overlaps vocaug's)
    shapes = {name: {**DEMO["variants"][name], "epochs": [1]} for name in ("shapes_scratch", "shapes_vocaug")}
    shapes["shapes_vocaug"]["init_from"] = {"variant": "voc", "epochs": 1, "seed": 0}
    config = write_config(workdir, "slurm_demo", study_variants_only=True, epochs=[1], seeds=[0], variants=shapes)
    result = run_snakemake(workdir, "--profile", make_test_profile(workdir), "--configfile", config)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]

    train = slurm_jobs(workdir, "train_upernet")
    assert len(train) == 4
    for job in sacct(train):
        if "." not in job["JobID"]:  # the allocation, not its steps
            assert job["Partition"] == "gpu" and job["State"] == "COMPLETED"
            assert "gres/gpu=1" in job["AllocTRES"]
    # one GPU job per run: VOC val, its training-image sample and COCO
    evaluate = slurm_jobs(workdir, "evaluate_upernet")
    assert len(evaluate) == 2 and all(j["Partition"] == "gpu" for j in sacct(evaluate) if "." not in j["JobID"])
    assert len(slurm_jobs(workdir, "evaluate_upernet_dataset")) == 2
    for rule in ("convert_sbd", "extract_dataset", "check_dataset", "init_weights"):
        jobs = slurm_jobs(workdir, rule)
        assert [j["Partition"] for j in sacct(jobs) if "." not in j["JobID"]] == ["cpu"], rule
    # localrules never reach SLURM
    assert not slurm_jobs(workdir, "render_mmseg_config") and not slurm_jobs(workdir, "fetch_pretrained")
    # the same outputs as the local run of the demo, run for run
    local_run = f"e{DEMO['epochs'][0]}-s{DEMO['seeds'][0]}/"
    expected = {
        p.replace(local_run, "e1-s0/")
        for p in relative_files(study)
        if not p.startswith("results/demo/snapshot") and ("/runs/" not in p or local_run in p)
    }
    assert relative_files(workdir) == expected
    for variant in ("voc", "vocaug"):
        log = (run_dir(workdir, variant, 1) / "train.log").read_text()
        assert "device: cpu" in log
        # each training job's log kept under its SLURM job id
        (kept,) = (run_dir(workdir, variant, 1) / "train-logs").glob("*.log")
        assert re.fullmatch(r"\d{8}-\d{6}-job(\d+)\.log", kept.name).group(1) in train
        assert kept.read_text() == log


def test_a_two_gpu_job_runs_through_srun_and_after_scancel_is_retried_for_the_epochs_left(slurm_cluster, workflow_copy):
    """A training job of two processes (the plugin's mpi mode: one srun task each),
    cancelled with scancel after its first checkpoint: Snakemake retries it, and the
    retry asks SLURM for the epochs left. (How a run resumes: test_training.py.)"""
    # voc: 10 steps an epoch per process; cancelled after epoch 1's checkpoint, 1 epoch before its end
    training = {**DEMO["training"], "gpus": 2}
    config = write_config(workflow_copy, "fault", study_variants_only=True, epochs=[2], training=training)
    work = workflow_copy / "results/demo/work/voc/e2-s0"
    target = "results/demo/runs/voc/e2-s0/final.pth"  # this run only
    extract_voc_here(workflow_copy, config)
    profile = make_test_profile(workflow_copy)
    command = [sys.executable, "-m", "snakemake", target, "--profile", profile, "--configfile", config]
    process = subprocess.Popen(command, cwd=workflow_copy, start_new_session=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    try:
        deadline = time.time() + 900
        while not (work / "last_checkpoint").exists():
            assert process.poll() is None and time.time() < deadline, "no checkpoint before the job ended"
            time.sleep(0.2)
        queue = subprocess.run(["squeue", "-h", "-o", "%i|%k"], capture_output=True, text=True).stdout
        running = [line.split("|")[0] for line in queue.splitlines() if "train_upernet" in line]
        assert len(running) == 1, queue
        subprocess.run(["scancel", running[0]], check=True)
        output, _ = process.communicate(timeout=900)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 0, output[-4000:]
    rows = sacct(slurm_jobs(workflow_copy, "train_upernet"), "JobID,Partition,AllocTRES,State,NTasks,Timelimit")
    jobs = {r["JobID"]: r for r in rows if "." not in r["JobID"]}  # the allocations, not their steps
    (retry,) = [job for job, row in jobs.items() if row["State"] == "COMPLETED"]
    assert sorted(jobs) == sorted([running[0], retry]) and jobs[running[0]]["State"].startswith("CANCELLED"), jobs
    for job, row in jobs.items():  # both: two GPUs, and a step of two tasks (srun)
        assert row["Partition"] == "gpu" and "gres/gpu=2" in row["AllocTRES"], row
        assert any(r["JobID"].startswith(f"{job}.") and r["NTasks"] == "2" for r in rows), rows
    out = run_dir(workflow_copy, "voc", 2)
    log = (out / "train.log").read_text()  # the retry's
    assert "launching 2 processes: srun --ntasks=2" in log
    assert "rank 0 of world size 2 (gloo)" in log and "rank 1 of world size 2 (gloo)" in log
    # each attempt says which it is and where it ran; the work dir keeps every attempt's line
    assert re.search(r"starts \(attempt 2\): SLURM job \d+ on \S+", log), log[:3000]
    attempts = read_attempts(out / "attempts.tsv")
    assert len(attempts) == 2, attempts
    assert re.fullmatch(rf"SLURM job {running[0]} on \S+", attempts[0]["where"]) and attempts[0]["start"] == "epoch 0"
    assert attempts[0]["status"] in ("terminated", "running") and attempts[1]["status"] == "finished"
    assert re.fullmatch(rf"SLURM job {retry} on \S+", attempts[1]["where"])
    assert re.fullmatch(r"resumes epoch_\d+\.pth", attempts[1]["start"])
    # both attempts' hours are in the summary's cost
    assert all(a["seconds"] > 0 for a in attempts)

    # the retry asked SLURM for the epochs left, not for twice the whole run
    def minutes(limit):
        h, m, s = (int(x) for x in limit.split(":"))
        return h * 60 + m + s / 60

    requested = int(re.search(r"starts \(attempt 2\).*runtime request (\d+) min", log).group(1))
    assert minutes(jobs[retry]["Timelimit"]) == requested < 2 * minutes(jobs[running[0]]["Timelimit"]), (jobs, requested)


def test_a_gpu_check_job_on_a_node_without_a_driver_stops_naming_the_cause(slurm_cluster, workflow_copy):
    """The test cluster's GPUs are placeholders: SLURM gives the check's job a GPU on
    a node with no NVIDIA driver, and the check says so in one line (no traceback)
    instead of measuring the CPU."""
    profile = make_test_profile(workflow_copy)
    result = run_snakemake(workflow_copy, "gpu_check", "--profile", profile, "--retries", "0",
                           "--configfile", "config/demo.yaml")  # fmt: skip
    assert result.returncode != 0, result.stdout[-3000:]
    log = (workflow_copy / "logs/gpu_check/resnet18-1.log").read_text()
    assert re.search(r"gpu_check resnet18-1: SLURM gave this job GPUs \(SLURM_\w+=0\) but no NVIDIA driver", log), log
    assert "Traceback" not in log and "profiles/slurm" in log  # the fix: the GPU partition
    (job,) = slurm_jobs(workflow_copy, "measure_gpu")
    (row,) = [r for r in sacct([job]) if r["JobID"] == job]
    assert row["Partition"] == "gpu" and "gres/gpu=1" in row["AllocTRES"], row
    assert not (workflow_copy / DEMO["results"] / "gpu_check/resnet18-1.json").exists()


def test_a_rerun_after_a_killed_snakemake_waits_for_its_job_and_adopts_the_run(slurm_cluster, workflow_copy):
    """SIGKILL the login node's snakemake while a training job runs: SLURM keeps the
    job. The rerun's job for the same run waits for it, then restores what it
    finished (no second training), and both jobs' hours and logs stay on record."""
    # the orphan is suspended (scontrol suspend) until the rerun's job waits for it:
    # one epoch is then long enough, however long either job takes to start
    config = write_config(workflow_copy, "orphan", study_variants_only=True, epochs=[1])
    work = workflow_copy / "results/demo/work/voc/e1-s0"
    target = "results/demo/runs/voc/e1-s0/final.pth"
    out = run_dir(workflow_copy, "voc", 1)
    extract_voc_here(workflow_copy, config)
    profile = make_test_profile(workflow_copy)
    command = [sys.executable, "-m", "snakemake", target, "--profile", profile, "--configfile", config]
    first = subprocess.Popen(command, cwd=workflow_copy, start_new_session=True,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    lock, orphan, suspended, rerun = lock_path(work), None, False, None
    try:
        deadline = time.time() + 900
        while not lock.exists():
            assert first.poll() is None and time.time() < deadline, "the training job never took the lock"
            time.sleep(0.2)
        os.killpg(first.pid, signal.SIGKILL)  # the login node's snakemake dies; its job goes on
        first.wait()
        orphan = json.loads(lock.read_text())["slurm_job"]
        state = subprocess.run(["squeue", "-h", "-j", orphan, "-o", "%T"], capture_output=True, text=True).stdout
        assert state.strip() == "RUNNING", state
        subprocess.run(["scontrol", "suspend", orphan], check=True)
        suspended = True
        assert run_snakemake(workflow_copy, "--unlock", "--configfile", config).returncode == 0
        rerun = subprocess.Popen(command, cwd=workflow_copy, start_new_session=True,
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
        log = out / "train.log"  # the rerun's job's, once Snakemake removed the orphan's
        deadline = time.time() + 600
        while not (log.exists() and "waiting for that job to end" in log.read_text()):
            assert rerun.poll() is None and time.time() < deadline, "the rerun's job never met the orphan's lock"
            time.sleep(0.5)
        subprocess.run(["scontrol", "resume", orphan], check=True)
        suspended = False
        output, _ = rerun.communicate(timeout=900)
    finally:
        if suspended:
            subprocess.run(["scancel", orphan])
        for process in (first, rerun):
            if process is not None and process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
    assert rerun.returncode == 0, output[-4000:]
    log = (out / "train.log").read_text()
    assert re.search(rf"being trained by pid \d+ on \S+, SLURM job {orphan}, .*waiting for that job to end", log), log[-3000:]
    assert "with the same config and training code: restoring its outputs" in log and "Epoch(train)" not in log
    jobs = slurm_jobs(workflow_copy, "train_upernet")
    assert len(jobs) == 2 and jobs[0] == orphan, jobs  # one training, one restore: no retry, no second training
    attempts = read_attempts(out / "attempts.tsv")
    assert [a["status"] for a in attempts] == ["finished", "restored"], attempts
    assert attempts[0]["where"].startswith(f"SLURM job {orphan} on ") and attempts[0]["seconds"] > 0
    assert torch.load(out / "final.pth", map_location="cpu")["meta"]["epoch"] == 1
    kept = sorted((out / "train-logs").glob("*.log"))
    assert len(kept) == 2 and "Epoch(train) [1]" in kept[0].read_text()


def submit_lock_holder(tmp_path: Path, work: Path, seconds: int, log_file: str | None = None) -> str:
    """sbatch a job that holds ``work``'s run lock for ``seconds``; its id, once it holds the lock."""
    from common.run_lock import lock_path

    holder = tmp_path / "holder.py"
    log_arg = f", log_file={log_file!r}" if log_file else ""
    holder.write_text(
        "import sys, time\n"
        f"sys.path.insert(0, {str(REPO / 'scripts')!r})\n"
        "from common.run_lock import run_lock\n"
        f"with run_lock({str(work)!r}{log_arg}):\n"
        f"    time.sleep({seconds})\n"
    )
    out = tmp_path / "holder.out"
    job = subprocess.run(
        ["sbatch", "--parsable", "-p", "cpu", "--mem=100", "-o", str(out), "--wrap", f"exec {sys.executable} {holder}"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    deadline = time.time() + 120
    while not lock_path(work).exists():
        if time.time() > deadline:
            subprocess.run(["scancel", job])
            pytest.fail(f"the holder job never took the lock: {out.read_text() if out.exists() else ''}")
        time.sleep(0.2)
    return job


def test_the_lock_of_a_job_that_scancel_ended_is_taken_over(slurm_cluster, tmp_path, caplog):
    """A trainer's SLURM job holds the run's lock; after scancel (no clean-up: the
    process dies on SIGTERM) the next trainer takes it over, saying whose it was."""
    from common.run_lock import RunLockHeld, lock_path, run_lock

    work = tmp_path / "work"
    job = submit_lock_holder(tmp_path, work, 600)
    lock = lock_path(work)
    try:
        with pytest.raises(RunLockHeld, match=rf"already being trained by pid \d+ on \S+, SLURM job {job}"):
            with run_lock(work):
                pass
    finally:
        subprocess.run(["scancel", job], check=True)
    deadline = time.time() + 120
    while subprocess.run(["squeue", "-h", "-j", job, "-o", "%T"], capture_output=True, text=True).stdout.strip() in (
        "RUNNING", "PENDING", "COMPLETING",
    ):  # fmt: skip
        assert time.time() < deadline, "scancel did not end the job"
        time.sleep(0.5)
    assert lock.exists()  # the holder died without cleaning up
    caplog.set_level("INFO")
    with run_lock(work) as path:
        assert json.loads(path.read_text())["pid"] == os.getpid()
    assert re.search(rf"taking over the lock \S+ of pid \d+ on \S+, SLURM job {job}, .*: SLURM job {job} is", caplog.text) or (
        f"SLURM job {job} is no longer known to SLURM" in caplog.text
    ), caplog.text


def test_a_slurm_job_meeting_a_live_slurm_jobs_lock_waits_for_it(slurm_cluster, tmp_path, caplog, monkeypatch):
    """A rerun after a killed snakemake meets the lock of the earlier job SLURM kept
    running: it waits for that job to end, then takes the run (restored or resumed),
    instead of failing and being retried into the same lock."""
    from common.run_lock import run_lock

    work = tmp_path / "work"
    job = submit_lock_holder(tmp_path, work, 8, log_file="holder.log")
    try:
        monkeypatch.setenv("SLURM_JOB_ID", "999999")  # this process plays the rerun's SLURM job
        caplog.set_level("INFO")
        t0 = time.time()
        with run_lock(work, poll=1) as path:
            waited = time.time() - t0
            assert json.loads(path.read_text())["slurm_job"] == "999999"
            state = subprocess.run(["squeue", "-h", "-j", job, "-o", "%T"], capture_output=True, text=True).stdout
            assert state.strip() not in ("RUNNING", "PENDING"), state  # the holder had ended
    finally:
        subprocess.run(["scancel", job])
    assert waited > 3, waited
    assert re.search(rf"being trained by pid \d+ on \S+, SLURM job {job}, .*its log: holder.log\): waiting for that job", caplog.text), caplog.text
    assert re.search(r"waited \d+ s for the lock", caplog.text)


# ---- planning on a login node ------------------------------------------------------


def test_dry_run_plans_the_full_study_without_torch_gpu_or_data(login_node):
    workdir, env = login_node
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--profile", "profiles/slurm", *NO_CONDA],
        cwd=workdir, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    jobs = planned_jobs(result)
    assert jobs["train_upernet"] == 6 and jobs["evaluate_upernet"] == 6 and jobs["download_archive"] == 4
    assert jobs["fetch_pretrained"] == 1
    # the study's claims, measured: each run on its training sample and on COCO, from final.pth,
    # in the job that evaluates it on VOC val
    assert "evaluate_upernet_train" not in jobs and "evaluate_upernet_ood" not in jobs
    assert jobs["sample_train_images"] == 2 and jobs["convert_coco"] == 1 and jobs["compare_annotations"] == 1
    block = result.stdout.split("rule evaluate_upernet:")[1].split("\n\n")[0]
    resources = re.search(r"resources: (.*)", block).group(1)
    assert "gpu=1" in resources and "slurm_partition=gpu" in resources, resources
    for output in ("metrics.json", "train_sample/metrics.json", "ood/coco/confusion_per_image.npz"):
        assert re.search(rf"output: .*results/runs/\w+/e\d+-s0/{output}", block), output
    block = result.stdout.split("rule train_upernet:")[1].split("\n\n")[0]
    resources = re.search(r"resources: (.*)", block).group(1)
    for expected in ("gpu=2", "tasks=2", "tasks_per_gpu=1", "slurm_partition=gpu", "cpus_per_gpu=8", "mem_mb=64000"):
        assert expected in resources, resources
    assert re.search(r"runtime=\d+", resources)


def test_cost_target_prints_gpu_jobs_and_gpu_hours(login_node):
    workdir, env = login_node
    result = subprocess.run([sys.executable, "-m", "snakemake", "cost", "--cores", "1"],
                            cwd=workdir, env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    match = re.search(r"run grid: 6 training jobs of 2 GPU\(s\) each .* about ([\d.]+) GPU-hours", result.stderr)
    assert match, result.stderr[-2000:]
    # official sizes: (1464 + 10582) images x (30 + 100 + 200) epochs at 20 images/s per GPU, plus validation
    training_only = (1464 + 10582) * 330 / 20 / 3600
    assert training_only < float(match.group(1)) < 1.2 * training_only
