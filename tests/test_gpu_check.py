"""The GPU check (rule measure_gpu, scripts/gpu_check.py): its diagnoses of a GPU job
that cannot use its GPU, the check itself run tiny on the CPU (one process, and two
with gloo's all-reduce), its table in the report, and measured rates in planning:
runtime requests and `snakemake cost` follow a measurement; training does not."""

import json
import math
import re

import pytest
import yaml
from conftest import OUT, REPO, planned_jobs, run_snakemake, runtimes, write_config

from common.gpu import missing_kernels, nccl_problem, no_cuda_problem
from common.sizing import measured_rates, measurement_mode, read_measurements, runtime_request, train_minutes

DEMO = yaml.safe_load((REPO / "config/demo.yaml").read_text())
MODES = ["fp32", "amp", "fp32+channels_last", "amp+channels_last"]

# ---- what a GPU job says when it cannot use its GPU ----
NO_CUDA = [
    # (torch's CUDA, driver, /dev/nvidiactl, SLURM's GPUs, CUDA_VISIBLE_DEVICES, torch.cuda.init()'s error), expected
    ((None, None, False, None, None, None), None),  # a laptop, CI: the check runs on the CPU
    (("12.8", None, False, None, None, None), None),
    ((None, "570.86", True, "SLURM_JOB_GPUS=0", "0", None), "CPU-only build"),
    (("12.8", None, False, "SLURM_JOB_GPUS=0", "0", None), "no NVIDIA driver is visible"),
    (("12.8", "570.86", True, None, "", None), "no GPU is visible to this job (CUDA_VISIBLE_DEVICES=''"),
    (("12.8", "535.104", True, "SLURM_JOB_GPUS=1", "1",
      "The NVIDIA driver on your system is too old (found version 12020)"), "driver 535.104 is too old"),
    (("12.8", "570.86", True, None, "0", "CUDA unknown error"), "cannot use the GPU: CUDA unknown error"),
]


@pytest.mark.parametrize("facts, expected", NO_CUDA)
def test_a_gpu_job_without_a_usable_gpu_says_why(facts, expected):
    problem = no_cuda_problem(*facts)
    if expected is None:
        assert problem is None
    else:
        assert expected in problem and len(problem.splitlines()) == 1
        assert ":" in problem  # the cause, then the fix


TORCH_210 = ["sm_70", "sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120"]  # torch 2.10's CUDA 12.8 build
TORCH_21 = ["sm_50", "sm_60", "sm_70", "sm_75", "sm_80", "sm_86", "sm_90"]  # torch 2.1.2's CUDA 12.1 build
CUDA_13 = ["sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120"]  # CUDA 13 builds drop Volta


@pytest.mark.parametrize(
    "capability, arch_list, runs",
    [
        ((9, 0), TORCH_210, True),  # H100/H200
        ((8, 9), TORCH_21, True),  # L40S: sm_89 runs sm_86's kernels (same major)
        ((12, 0), TORCH_21, False),  # Blackwell on the old stack: no kernels
        ((12, 0), TORCH_21 + ["compute_90"], True),  # ... unless PTX is there to compile
        ((7, 0), TORCH_210, True),  # V100 on torch 2.10's default build
        ((7, 0), CUDA_13, False),  # ... not on a CUDA 13 build
    ],
)
def test_a_gpu_this_torch_has_no_kernels_for_is_named(capability, arch_list, runs):
    problem = missing_kernels("NVIDIA X", capability, arch_list, "12.8")
    assert (problem is None) == runs
    if not runs:
        assert f"sm_{capability[0]}{capability[1]}" in problem and "NVIDIA X" in problem


def test_an_nccl_failure_names_the_first_line_and_the_usual_fixes():
    problem = nccl_problem(RuntimeError("NCCL error in: init.cc:123, unhandled system error\nlong trace"), 4)
    assert "between 4 processes" in problem and "unhandled system error" in problem
    assert "long trace" not in problem and "NCCL_DEBUG=INFO" in problem


# ---- measured rates: which measurement a run's planning takes ----
def test_only_a_measurement_of_the_same_recipe_and_mode_sizes_a_run(tmp_path):
    document = {
        "model": "resnet50", "gpus": 2, "crop_size": [512, 512], "batch_per_gpu": 8, "device": "cuda",
        "modes": {"fp32": {"train_images_per_second": 40.0, "val_images_per_second": 90.0},
                  "amp": {"error": "out of GPU memory at 8 images per GPU"}},
    }  # fmt: skip
    assert measured_rates(document, "fp32", (512, 512), 8) == (40.0, 90.0)
    assert measured_rates(document, "fp32", [384, 384], 8) is None  # another crop
    assert measured_rates(document, "fp32", [512, 512], 4) is None  # another batch
    assert measured_rates(document, "amp", [512, 512], 8) is None  # that mode failed
    assert measurement_mode(True, False) == "amp" and measurement_mode(False, True) == "fp32+channels_last"
    (tmp_path / "resnet50-2.json").write_text(json.dumps(document))
    (tmp_path / "swin_tiny-1.json").write_text("{half a file")
    (tmp_path / "resnet101-1.json").write_text(json.dumps(document))  # resnet50-2's, renamed
    found, problems = read_measurements(tmp_path)
    assert list(found) == [("resnet50", 2)]
    assert [p.split(":")[0] for p in problems] == [str(tmp_path / "resnet101-1.json"), str(tmp_path / "swin_tiny-1.json")]


# ---- the check itself, tiny on the CPU ----
def test_the_check_on_the_cpu_measures_every_mode_and_sizes_the_runs_from_it(study_copy):
    """On the finished demo: the check trains the recipe on the real data in every
    mode, writes its json and table, the report shows the table, a dry run asks for
    the runtimes the measured rates give (the estimate's before), and nothing retrains."""
    long = write_config(study_copy, "long", study_variants_only=True, epochs=[3000])
    before = run_snakemake(study_copy, "-n", "--configfile", long)
    assert before.returncode == 0, before.stderr[-3000:]

    result = run_snakemake(study_copy, "gpu_check", "--cores", "2", "--configfile", "config/demo.yaml")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    check = json.loads((study_copy / OUT / "gpu_check/resnet18-1.json").read_text())
    assert (check["device"], check["gpus"], check["data"]) == ("cpu", 1, "real")
    assert check["crop_size"] == DEMO["training"]["crop_size"]
    assert check["batch_per_gpu"] == DEMO["training"]["batch_per_gpu"]
    assert list(check["modes"]) == MODES
    for mode, measured in check["modes"].items():
        assert measured["train_images_per_second"] > 0 and measured["val_images_per_second"] > 0, mode
        assert 0 <= measured["loader_wait"] < 1 and measured["loss_finite"], mode
        assert measured["amp_dtype"] == ("bfloat16" if mode.startswith("amp") else None)
        assert measured["channels_last"] == mode.endswith("channels_last")
    assert check["environment"]["torch"] and check["environment"]["mmcv"]
    table = (study_copy / OUT / "gpu_check/gpu_check.md").read_text()
    assert table.count("| resnet18 | 1 | cpu |") == 4 and "amp bfloat16+channels_last" in table
    assert "| resnet18 | 1 | cpu |" in result.stdout  # `snakemake gpu_check` prints it

    after = run_snakemake(study_copy, "-n", "--configfile", long)
    assert after.returncode == 0, after.stderr[-3000:]
    rate = check["modes"]["fp32"]
    training = {**yaml.safe_load((REPO / "config/schemas/config.schema.yaml").read_text())["properties"]
                ["training"]["properties"]["val_interval"], **DEMO["training"]}  # fmt: skip
    sizes = DEMO["estimates"]["split_sizes"]
    for variant, images in (("voc", sizes["train"]), ("vocaug", sizes["trainaug"])):
        output = f"{OUT}/runs/{variant}/e3000-s0/final.pth"
        sized = {"train_images": images, "val_images": sizes["val"], "epochs": 3000,
                 "val_interval": training.get("val_interval", 1), "gpus": 1}  # fmt: skip
        assert runtimes(before)[output] == runtime_request(train_minutes(**sized, images_per_second=20), 1)
        measured = train_minutes(**sized, images_per_second=rate["train_images_per_second"],
                                 val_images_per_second=rate["val_images_per_second"])  # fmt: skip
        assert runtimes(after)[output] == runtime_request(measured, 1) != runtimes(before)[output]
    cost = run_snakemake(study_copy, "cost", "--cores", "1", "--configfile", long)
    assert f"measured in {OUT}/gpu_check/resnet18-1.json (cpu, fp32)" in cost.stdout + cost.stderr

    again = run_snakemake(study_copy, "-n", "--configfile", "config/demo.yaml")
    assert again.returncode == 0 and not planned_jobs(again), again.stdout[-3000:]  # nothing retrains
    report = run_snakemake(study_copy, "--configfile", "config/demo.yaml", "--report", "report.html")
    assert report.returncode == 0, report.stderr[-3000:]
    assert "gpu_check.csv" in (study_copy / "report.html").read_text()


def test_the_check_at_two_gpus_runs_two_processes_and_times_the_all_reduce(workflow_copy):
    """Before the data stage (synthetic images), at training.gpus 2 on the CPU (gloo)."""
    config = write_config(workflow_copy, "two", study_variants_only=True, training={**DEMO["training"], "gpus": 2})
    target = f"{OUT}/gpu_check/resnet18-2.json"
    planned = run_snakemake(workflow_copy, "gpu_check", "-n", "--configfile", config)
    assert planned_jobs(planned).get("measure_gpu") == 2, planned.stdout[-2000:]  # at 1 and at 2 GPUs
    result = run_snakemake(workflow_copy, target, "--cores", "2", "--configfile", config)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    check = json.loads((workflow_copy / target).read_text())
    assert (check["gpus"], check["data"]) == (2, "synthetic")
    for mode, measured in check["modes"].items():
        assert measured["allreduce_ms"] > 0 and 0 < measured["allreduce_share"], mode
    log = (workflow_copy / "logs/gpu_check/resnet18-2.log").read_text()
    assert len(re.findall(r"gpu_check:? fp32: ", log)) == 1  # rank 0 reports, rank 1 measures too
    assert not math.isnan(check["modes"]["fp32"]["train_images_per_second"])
