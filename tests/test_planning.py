"""Planning: what a training job asks SLURM for, which runs init_from may start from,
and what `snakemake cost` counts. Dry runs and `cost` only: no job runs."""

import hashlib
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import planned_jobs, run_snakemake, write_config

from common.code import code_digest
from common.sizing import runtime_request, train_minutes
from conftest import runtimes

# the real study's vocaug: MMSeg's 10,582 + 1,449 images, 2 GPUs at 20 images/s each
VOCAUG = {"train_images": 10582, "val_images": 1449, "val_interval": 1, "images_per_second": 20, "gpus": 2}
AUG = [{"split": "train", "labels": "SegmentationClass"}, {"split": "aug", "labels": "SegmentationClassAug"}]


def plan(workdir: Path, env: dict, *args: str) -> subprocess.CompletedProcess:
    """`snakemake *args` on the login node (no torch): planning needs none."""
    return subprocess.run([sys.executable, "-m", "snakemake", *args], cwd=workdir, env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip


def work_dir_at(workdir: Path, run: str, epoch: int | None, *, finished=False, stale=False, code=None) -> None:
    """A run's rendered config and its work dir as the training job leaves them: the
    config's (and training ``code``'s) stamp, MMEngine's epoch_<n>.pth and
    last_checkpoint (``epoch`` None: none), a ``finished`` run's mark."""
    config = workdir / f"results/runs/{run}/config.py"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(f"# {run}\nmax_epochs = 200\n")
    work = workdir / f"results/work/{run}"
    work.mkdir(parents=True)
    text = config.read_text() + ("# another config\n" if stale else "")
    (work / "config.sha256").write_text(hashlib.sha256(text.encode()).hexdigest() + "\n")
    if code:
        (work / "code.sha256").write_text(code + "\n")
    for n in range(1, (epoch or 3) + 1)[-2:]:  # max_keep_ckpts 2
        (work / f"epoch_{n}.pth").write_bytes(b"")
    if epoch is not None:
        (work / "last_checkpoint").write_text(f"{work.resolve()}/epoch_{epoch}.pth")
    if finished:
        (work / "finished").write_text(f"results/runs/{run}/final.pth exported 2026-01-01 00:00:00\n")


# ---- 9. runtime requests: what is left, never past the partition's limit --------------
def test_a_retry_asks_for_what_is_left_never_past_the_partition_limit():
    full = train_minutes(epochs=200, **VOCAUG)
    assert runtime_request(full, 1) == 1399  # the first attempt, as before
    # attempt 2 of a run that never checkpointed: 2,798 min before, which a 24 h partition never starts
    assert runtime_request(full, 2, limit=1440) == 1440
    assert runtime_request(full, 3, limit=1440) == 1440
    assert runtime_request(full, 2, limit=None) == math.ceil(3 * full + 15)  # no cap: the margin grows
    left = train_minutes(epochs=50, **VOCAUG)  # resumed after epoch 150 of 200
    assert runtime_request(left, 2, limit=1440) == math.ceil(3 * left + 15) < 1440
    assert runtime_request(0, 2, limit=1440) == 15  # every epoch done: the export only


def test_the_resume_point_follows_the_training_jobs_rules(tmp_path):
    """resume_point (planning, no torch) agrees with prepare_work_dir (the job): it resumes
    MMEngine's last_checkpoint of the same config, restores a run finished with the same
    config and training code, and starts anything else afresh."""
    from common.sizing import resume_point
    from common.work_dir import prepare_work_dir

    cases = {  # work dir: (its state, epochs done, restored)
        "resumes": ({"epoch": 150}, 150, False),
        "restores": ({"epoch": 200, "finished": True, "code": "abc"}, 0, True),
        "other_code": ({"epoch": 200, "finished": True, "code": "old"}, 0, False),
        "stale": ({"epoch": 150, "stale": True}, 0, False),
        "no_last": ({"epoch": None}, 0, False),
        "not_exported": ({"epoch": 200}, 200, False),
    }
    for name, (state, done, restore) in cases.items():
        work_dir_at(tmp_path, name, **state)
        config = (tmp_path / f"results/runs/{name}/config.py").read_text()
        work = tmp_path / f"results/work/{name}"
        assert resume_point(work, config, "abc") == (done, restore), name
        start = prepare_work_dir(work, hashlib.sha256(config.encode()).hexdigest(), "abc")
        epoch = re.search(r"epoch_(\d+)\.pth$", start.latest) if start.latest else None
        assert (0 if start.restore or not epoch else int(epoch.group(1)), start.restore) == (done, restore), name
    assert resume_point(tmp_path / "results/work/nothing", "x", "abc") == (0, False)
    assert resume_point(tmp_path / "results/work/resumes", None, "abc") == (0, False)  # config not rendered yet


def test_the_runtime_request_counts_from_the_resume_point(login_node):
    workdir, env = login_node
    work_dir_at(workdir, "vocaug/e200-s0", 150)
    code = code_digest(workdir / "scripts/train_upernet.py")  # the rule's `code` param
    work_dir_at(workdir, "vocaug/e100-s0", 100, finished=True, code="old")  # other training code: retrains
    work_dir_at(workdir, "vocaug/e30-s0", 20, stale=True)  # another config: from epoch 0
    work_dir_at(workdir, "voc/e200-s0", 200)  # trained, not exported: the export only
    work_dir_at(workdir, "voc/e100-s0", None)  # checkpoints but no last_checkpoint: MMEngine starts afresh
    work_dir_at(workdir, "voc/e30-s0", 30, finished=True, code=code)  # finished, final.pth lost: restored
    targets = [f"results/runs/{v}/e{e}-s0/final.pth" for v in ("voc", "vocaug") for e in (30, 100, 200)]
    result = plan(workdir, env, "-n", *targets)
    assert result.returncode == 0, result.stderr[-3000:]
    asked = {path.split("/")[2] + "/" + path.split("/")[3]: minutes for path, minutes in runtimes(result).items()}
    full = {e: runtime_request(train_minutes(epochs=e, **VOCAUG), 1) for e in (30, 100, 200)}
    assert asked["vocaug/e200-s0"] == runtime_request(train_minutes(epochs=50, **VOCAUG), 1) < 400
    assert asked["vocaug/e100-s0"] == full[100] and asked["vocaug/e30-s0"] == full[30]
    assert asked["voc/e200-s0"] == asked["voc/e30-s0"] == 15
    assert asked["voc/e100-s0"] > 15


def test_the_partition_limit_caps_the_request_and_null_lifts_it(login_node):
    workdir, env = login_node
    target = "results/runs/vocaug/e200-s0/final.pth"
    for limit, expected in ((600, 600), (None, 1399), (2880, 1399)):
        (workdir / "config/limit.yaml").write_text(yaml.safe_dump({"estimates": {"partition_time_limit": limit}}))
        result = plan(workdir, env, "-n", target, "--configfile", "config/config.yaml", "config/limit.yaml")
        assert result.returncode == 0, result.stderr[-3000:]
        assert runtimes(result) == {target: expected}, limit
    cost = plan(workdir, env, "cost", "--cores", "1", "--configfile", "config/config.yaml", "config/limit.yaml")
    assert cost.returncode == 0, cost.stderr[-3000:]
    assert "partition_time_limit" not in cost.stderr  # 2880 min: every run fits in one job
    (workdir / "config/limit.yaml").write_text(yaml.safe_dump({"estimates": {"partition_time_limit": 600}}))
    cost = plan(workdir, env, "cost", "--cores", "1", "--configfile", "config/config.yaml", "config/limit.yaml")
    assert cost.returncode == 0, cost.stderr[-3000:]
    # vocaug e100 (707 min) and e200 (1,399): capped, each resumes in a retry if it needs longer
    assert "2 run(s) ask for more than estimates.partition_time_limit (600 min)" in cost.stderr, cost.stderr[-2000:]


# ---- 10. init_from names a run of the grid ------------------------------------------------
@pytest.mark.parametrize(
    "init_from, expected",
    [
        ({"variant": "vocaug", "epochs": 300},
         "variants.tuned.init_from.epochs: vocaug has no run of 300 epochs in the grid (its epoch counts: 30, 100, 200)"),
        ({"variant": "vocaug", "iterations": 20000},
         "variants.tuned.init_from.iterations: vocaug has no run of 20000 iterations in the grid (its iteration budgets: none)"),
        ({"variant": "vocaug", "epochs": 30, "seed": 3},
         "variants.tuned.init_from.seed: vocaug has no run of seed 3 in the grid (its seeds: 0)"),
    ],
    ids=["epochs", "iterations", "seed"],
)  # fmt: skip
def test_init_from_outside_the_grid_fails_naming_the_grid(login_node, init_from, expected):
    workdir, env = login_node
    variants = {"tuned": {"train_sets": AUG, "epochs": [30], "init_from": init_from}}
    (workdir / "config/tuned.yaml").write_text(yaml.safe_dump({"variants": variants}))
    result = plan(workdir, env, "-n", "--configfile", "config/config.yaml", "config/tuned.yaml")
    assert result.returncode != 0
    assert expected in result.stdout + result.stderr, (result.stdout + result.stderr)[-2000:]


# ---- 10 + 18. cost counts the plan's jobs -------------------------------------------------
def cost_counts(result: subprocess.CompletedProcess) -> tuple[int, int]:
    found = re.search(r"run grid: (\d+) training jobs .*\+ (\d+) evaluation jobs", result.stdout + result.stderr)
    assert found, (result.stdout + result.stderr)[-2000:]
    return int(found.group(1)), int(found.group(2))


@pytest.mark.parametrize("tta", [False, True])
def test_cost_counts_the_training_and_evaluation_jobs_of_the_plan(workflow_copy, tta):
    """The demo: VOC runs (evaluated on VOC val, their training-image sample and COCO in
    one job each), runs on its own dataset, a fine-tuned one (vocaug's run)."""
    config = write_config(workflow_copy, "plan", evaluation={"train_sample": 40, "ood": ["coco"], "tta": tta})
    result = run_snakemake(workflow_copy, "-n", "--configfile", config)
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = planned_jobs(result)
    evaluations = sum(n for rule, n in jobs.items() if rule.startswith("evaluate_upernet"))
    assert jobs["evaluate_upernet"] == 6 and jobs.get("evaluate_upernet_tta", 0) == (6 if tta else 0)
    cost = run_snakemake(workflow_copy, "cost", "--cores", "1", "--configfile", config)
    assert cost.returncode == 0, cost.stderr[-3000:]
    assert cost_counts(cost) == (jobs["train_upernet"], evaluations) == (8, 14 if tta else 8)


def test_cost_of_the_real_study_counts_one_evaluation_job_per_run(login_node):
    workdir, env = login_node
    result = plan(workdir, env, "cost", "--cores", "1")
    assert result.returncode == 0, result.stderr[-3000:]
    assert cost_counts(result) == (6, 6)  # 18 before: the sample and COCO counted as jobs
