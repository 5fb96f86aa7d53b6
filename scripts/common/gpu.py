"""What a GPU job finds before it spends its hours: is a GPU visible, can this torch
run on it, and if not, why, in one line that names the cause and the fix.

The diagnoses are plain functions of facts (tested without a GPU); ``gpu_facts``
gathers the facts on the machine (torch imported lazily).
"""

import os
import re
import shutil
import subprocess


class GpuProblem(RuntimeError):
    """A GPU job cannot use its GPU: the message names the cause and the fix."""


def driver_version() -> str | None:
    """The NVIDIA driver's version from nvidia-smi (None: no driver or no nvidia-smi)."""
    if not shutil.which("nvidia-smi"):
        return None
    try:
        shown = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return None
    versions = shown.stdout.split()
    return versions[0] if shown.returncode == 0 and versions else None


def gpus_allocated() -> str | None:
    """The GPUs SLURM gave this job (None outside SLURM or without GPUs)."""
    if not os.environ.get("SLURM_JOB_ID"):
        return None
    for name in ("SLURM_STEP_GPUS", "SLURM_JOB_GPUS", "SLURM_GPUS_ON_NODE"):
        if os.environ.get(name):
            return f"{name}={os.environ[name]}"
    return None


def no_cuda_problem(
    torch_cuda: str | None, driver: str | None, driver_files: bool, allocated: str | None,
    visible: str | None, init_error: str | None,
) -> str | None:  # fmt: skip
    """Why torch sees no GPU in a job that should have one (None: a machine without
    GPUs, where the check runs on the CPU).

    ``torch_cuda``: torch.version.cuda; ``driver``: nvidia-smi's driver version;
    ``driver_files``: /dev/nvidiactl exists; ``allocated``: the GPUs SLURM gave the job;
    ``visible``: CUDA_VISIBLE_DEVICES; ``init_error``: what torch.cuda.init() raised.
    """
    has_driver = driver is not None or driver_files
    if not has_driver and not allocated:
        return None
    if torch_cuda is None:
        return (
            "this torch is a CPU-only build (torch.version.cuda is None): install the train "
            "environment's CUDA build (envs/train.yaml; on PyPI the default torch wheel)"
        )
    if not has_driver:
        return (
            f"SLURM gave this job GPUs ({allocated}) but no NVIDIA driver is visible on "
            f"{os.environ.get('SLURMD_NODENAME', 'this node')} (no nvidia-smi, no /dev/nvidiactl): "
            "is it a GPU node? check the GPU partition (profiles/slurm: set-resources.*.slurm_partition)"
        )
    if visible is not None and visible.strip() in ("", "-1", "NoDevFiles"):
        return (
            f"no GPU is visible to this job (CUDA_VISIBLE_DEVICES={visible!r}): ask SLURM for one "
            "(the rule's gpu resource with the GPU partition in profiles/slurm), or run outside a "
            "job that hid them"
        )
    if init_error and re.search(r"driver|too old|insufficient", init_error, re.IGNORECASE):
        return (
            f"the NVIDIA driver {driver or '(version unknown)'} is too old for this torch's CUDA "
            f"{torch_cuda} ({init_error.strip().splitlines()[0]}): load a newer driver, or install "
            f"a torch built for an older CUDA (requirements.txt; torch's CUDA 12.8 builds need "
            "driver >= 570)"
        )
    cause = f": {init_error.strip().splitlines()[0]}" if init_error else ""
    return (
        f"torch (CUDA {torch_cuda}) cannot use the GPU{cause}; driver {driver or 'unknown'}, "
        f"CUDA_VISIBLE_DEVICES={visible!r}: check `nvidia-smi` in the same job"
    )


def missing_kernels(name: str, capability: tuple[int, int], arch_list: list[str], torch_cuda: str) -> str | None:
    """A GPU this torch has no kernels for (None: it has some). A build runs on its
    listed sm_XY, on a newer minor version of the same major (binary compatible) and,
    through its PTX (compute_XY), on any newer GPU."""
    major, minor = capability
    sm = [tuple(map(int, divmod(int(a[3:]), 10))) for a in arch_list if re.fullmatch(r"sm_\d+", a)]
    ptx = [tuple(map(int, divmod(int(a[8:]), 10))) for a in arch_list if re.fullmatch(r"compute_\d+", a)]
    if any(m == major and n <= minor for m, n in sm) or any((m, n) <= (major, minor) for m, n in ptx):
        return None
    return (
        f"this torch (CUDA {torch_cuda}) has no kernels for {name} (sm_{major}{minor}; it was built for "
        f"{' '.join(arch_list) or 'no GPU'}): install a torch build that lists sm_{major}{minor} "
        "(requirements.txt pins torch; newer GPUs need newer CUDA builds)"
    )


def nccl_problem(error: BaseException, gpus: int) -> str:
    """NCCL (or gloo) failing between the job's processes."""
    first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return (
        f"the all-reduce between {gpus} processes failed ({type(error).__name__}: {first}): run again "
        "with NCCL_DEBUG=INFO in the environment to see why; on nodes without NVLink/P2P, NCCL_P2P_DISABLE=1 "
        "is a common fix, on a node with one network interface NCCL_SOCKET_IFNAME=<it>"
    )


def cuda_device(torch) -> tuple[str, dict]:
    """'cuda' or 'cpu' for this job and the facts behind it; raises GpuProblem where
    the job should have a GPU and cannot use it (see no_cuda_problem, missing_kernels)."""
    facts = {
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "driver": driver_version(),
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "slurm_gpus": gpus_allocated(),
    }
    if torch.cuda.is_available():
        name = torch.cuda.get_device_name(0)
        capability = torch.cuda.get_device_capability(0)
        problem = missing_kernels(name, capability, torch.cuda.get_arch_list(), torch.version.cuda)
        if problem:
            raise GpuProblem(problem)
        facts.update(
            gpu=name, gpus_visible=torch.cuda.device_count(), capability=f"{capability[0]}.{capability[1]}",
            bf16=torch.cuda.is_bf16_supported(including_emulation=False), cudnn=torch.backends.cudnn.version(),
            memory_gib=round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1),
        )  # fmt: skip
        return "cuda", facts
    init_error = None
    if torch.version.cuda is not None:
        try:
            torch.cuda.init()
        except Exception as error:  # what torch says about the driver
            init_error = str(error)
    problem = no_cuda_problem(
        torch.version.cuda, facts["driver"], os.path.exists("/dev/nvidiactl"), facts["slurm_gpus"],
        facts["cuda_visible_devices"], init_error,
    )  # fmt: skip
    if problem:
        raise GpuProblem(problem)
    facts.update(gpu=None, bf16=True, gpus_visible=0)  # torch's CPU autocast has bf16
    return "cpu", facts


def mmcv_facts() -> dict:
    """mmcv's version and whether its compiled ops were built with CUDA."""
    import mmcv

    facts = {"mmcv": mmcv.__version__, "mmcv_ops": None, "mmcv_ops_cuda": None}
    try:
        from mmcv.ops import get_compiler_version, get_compiling_cuda_version

        cuda = get_compiling_cuda_version()
        facts.update(mmcv_ops=get_compiler_version(), mmcv_ops_cuda=None if cuda == "not available" else cuda)
    except Exception as error:  # no compiled ops at all (mmcv-lite)
        facts["mmcv_ops"] = f"not available ({type(error).__name__})"
    return facts
