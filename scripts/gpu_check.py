"""Measure the GPUs a sweep will train on, before it spends its hours there (rule measure_gpu).

The study's own recipe of one model (the config's first run of it, rendered as the
training job renders it, at its crop and batch) trains a few dozen steps after a
warm-up, in four modes: fp32, AMP (bf16 where the GPU has it, else fp16), and each
with channels_last.  Per mode: training images/s per GPU, whole-image validation
images/s, peak GPU memory, the share of step time spent waiting for the data
loader, and with several GPUs the all-reduce of the model's gradients per step.
Real data when the data stage has run (the run's own lists), else synthetic images
of the same size.  With ``gpus`` > 1 the check runs one process per GPU, as training
does (NCCL; gloo on the CPU).

Before any of that, ``common.gpu.cuda_device`` stops a job that should have a GPU and
cannot use it, with one line that names the cause and the fix.  On a machine without
a GPU (tests, CI, the demo) the same check runs tiny on the CPU (device ``cpu``).

Writes ``<results>/gpu_check/<model>-<gpus>.json``; planning reads it for runtime
requests and `snakemake cost` (common/sizing.py), never as a training input.
"""

import json
import logging
import os
import platform
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

log = logging.getLogger("gpu_check")

# (precision, memory format) of each measured mode, in the table's order
MODES = {
    "fp32": (False, False),
    "amp": (True, False),
    "fp32+channels_last": (False, True),
    "amp+channels_last": (True, True),
}
# warm-up steps, measured steps and val images: a few dozen steps on a GPU, a few on a CPU
STEPS = {"cuda": (10, 30, 20), "cpu": (1, 2, 2)}
VOC_IMAGE = (500, 375)  # (w, h): VOC's most common image size, for synthetic val images


def render(run: dict, training: dict, folder: Path):
    """The run's MMSeg config as its training job renders it (one epoch; no tracking)."""
    from mmengine.config import Config

    from common.mmseg_config import RUNTIME_SETTINGS
    from common.run_config import render_config  # with training.amp bf16 and channels_last

    values = {
        **run, **{key: training[key] for key in RUNTIME_SETTINGS}, "tracking": [], "epochs": 1,
        "train_images": None, "iterations_per_epoch": None, "train_lists": [],
    }  # fmt: skip
    path = folder / "config.py"
    path.write_text(render_config(values, folder))
    return Config.fromfile(str(path))


def data_ready(cfg) -> bool:
    """Whether the run's training lists and val list exist (the data stage has run)."""
    root = Path(cfg.data_root)
    datasets = cfg.train_dataloader.dataset
    datasets = datasets.get("datasets", [datasets])
    files = [root / d["ann_file"] for d in datasets] + [root / cfg.val_dataloader.dataset["ann_file"]]
    return all(path.is_file() and path.stat().st_size for path in files)


def build_model(cfg, device: str, channels_last: bool, sync_bn: bool):
    """The recipe's model on ``device`` with random weights (speed does not depend on
    them); SyncBN only where training keeps it (several GPUs)."""
    import torch
    from mmengine.model import revert_sync_batchnorm
    from mmseg.registry import MODELS

    model_cfg = cfg.model.copy()
    model_cfg.pop("pretrained", None)
    model_cfg.backbone.pop("init_cfg", None)
    model = MODELS.build(model_cfg)
    model = (model if sync_bn else revert_sync_batchnorm(model)).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)

        def to_channels_last(module, args, output):
            output["inputs"] = output["inputs"].contiguous(memory_format=torch.channels_last)
            return output

        model.data_preprocessor.register_forward_hook(to_channels_last)
    return model


def optim_wrapper(model, cfg, amp: bool, device: str):
    """The recipe's optimizer in MMEngine's wrapper: fp32, or AMP (bf16 where the GPU
    has it, else fp16; on a CPU torch's bf16 autocast).  Returns (wrapper, dtype)."""
    import torch
    from mmengine.optim import build_optim_wrapper

    wrapper = cfg.optim_wrapper.copy()
    for key in ("loss_scale", "dtype"):
        wrapper.pop(key, None)
    if not amp:
        wrapper["type"] = "OptimWrapper"
        return build_optim_wrapper(model, wrapper), "float32"
    if device == "cpu" or torch.cuda.is_bf16_supported(including_emulation=False):
        import common.precision  # noqa: F401 (registers BF16AmpOptimWrapper: bf16 on GPUs and CPUs)

        wrapper["type"] = "BF16AmpOptimWrapper"
        return build_optim_wrapper(model, wrapper), "bfloat16"
    wrapper.update(type="AmpOptimWrapper", loss_scale="dynamic")
    return build_optim_wrapper(model, wrapper), "float16"


def synthetic_batches(crop: tuple[int, int], batch: int, num_classes: int, generator):
    """Endless training batches of random images and labels at the crop size."""
    import torch
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample

    h, w = crop
    while True:
        inputs, samples = [], []
        for _ in range(batch):
            inputs.append(torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=generator))
            sample = SegDataSample(metainfo={"img_shape": (h, w), "ori_shape": (h, w), "pad_shape": (h, w)})
            sample.gt_sem_seg = PixelData(data=torch.randint(0, num_classes, (1, h, w), generator=generator))
            samples.append(sample)
        yield {"inputs": inputs, "data_samples": samples}


def synthetic_val(scale: tuple[int, int], count: int, generator):
    """Val batches of one random image each, at the size the test pipeline resizes VOC's images to."""
    import torch
    from mmcv import rescale_size
    from mmseg.structures import SegDataSample

    w, h = rescale_size(VOC_IMAGE, tuple(scale))
    for _ in range(count):
        sample = SegDataSample(metainfo={"img_shape": (h, w), "ori_shape": (h, w), "pad_shape": (h, w)})
        yield {"inputs": [torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=generator)],
               "data_samples": [sample]}  # fmt: skip


def synchronize(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def measure_train(model, wrapper, batches, warmup: int, steps: int, batch: int, device: str) -> dict:
    """Training images/s of this process, the loader's share of step time, peak memory."""
    import torch

    model.train()
    for _ in range(warmup):
        model.train_step(next(batches), wrapper)
    synchronize(device)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    waited = total = 0.0
    for _ in range(steps):
        start = time.perf_counter()
        data = next(batches)
        fetched = time.perf_counter()
        losses = model.train_step(data, wrapper)
        synchronize(device)
        waited += fetched - start
        total += time.perf_counter() - start
    loss = sum(float(v.detach() if hasattr(v, "detach") else v) for k, v in losses.items() if k.startswith("loss"))
    return {
        "train_images_per_second": round(batch * steps / total, 3),
        "step_seconds": round(total / steps, 4),
        "loader_wait": round(waited / total, 4),
        "train_peak_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if device == "cuda" else None,
        "loss_finite": loss == loss and abs(loss) != float("inf"),
    }


def measure_val(model, samples: list, device: str) -> dict:
    """Whole-image validation images/s (one image per step, as MMSeg's val loader)."""
    import torch

    model.eval()
    with torch.no_grad():
        model.test_step(samples[0])  # warm-up (cudnn picks its algorithms)
        synchronize(device)
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        for data in samples[1:]:
            model.test_step(data)
        synchronize(device)
    seconds = time.perf_counter() - start
    return {
        "val_images_per_second": round((len(samples) - 1) / seconds, 3),
        "val_peak_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if device == "cuda" else None,
    }


def allreduce_ms(parameters: int, device: str, repeats: int = 10) -> float:
    """Milliseconds of one all-reduce of the model's fp32 gradients (what DDP reduces per step)."""
    import torch
    import torch.distributed as dist

    buffer = torch.ones(parameters, dtype=torch.float32, device=device)
    for _ in range(3):
        dist.all_reduce(buffer)
    synchronize(device)
    start = time.perf_counter()
    for _ in range(repeats):
        dist.all_reduce(buffer)
    synchronize(device)
    return round((time.perf_counter() - start) / repeats * 1000, 3)


def measure(rank: int, world: int, cfg_path: str, device: str, real: bool, port: int, out: str | None) -> dict:
    """Every mode in this process (rank ``rank`` of ``world``); rank 0's results are returned
    (and written to ``out`` in a spawned process)."""
    import torch
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmengine.runner import Runner

    from common.gpu import GpuProblem, nccl_problem

    init_default_scope("mmseg")
    cfg = Config.fromfile(cfg_path)
    warmup, steps, val_images = STEPS[device]
    batch = cfg.train_dataloader.batch_size
    if world > 1:
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world))
        if device == "cuda":
            torch.cuda.set_device(rank)
        try:
            torch.distributed.init_process_group("nccl" if device == "cuda" else "gloo", rank=rank, world_size=world)
        except Exception as error:
            raise GpuProblem(nccl_problem(error, world)) from None
    target = f"cuda:{rank}" if device == "cuda" else "cpu"
    torch.backends.cudnn.benchmark = bool(cfg.env_cfg.get("cudnn_benchmark", False))  # as the Runner sets it
    generator = torch.Generator().manual_seed(rank)
    if real:
        cfg.train_dataloader.sampler = dict(type="InfiniteSampler", shuffle=True)
        loader = iter(Runner.build_dataloader(cfg.train_dataloader, seed=rank))
        val = Runner.build_dataloader(cfg.val_dataloader, seed=0)
        val_samples = [data for _, data in zip(range(val_images + 1), val)]
    else:
        loader = None
        val_samples = list(synthetic_val(cfg.scale, val_images + 1, generator))
    results = {}
    for mode, (amp, channels_last) in MODES.items():
        model = build_model(cfg, target, channels_last, sync_bn=world > 1 and device == "cuda")
        if world > 1:
            from mmengine.model import MMDistributedDataParallel

            model = MMDistributedDataParallel(model, device_ids=[rank] if device == "cuda" else None)
        wrapper, dtype = optim_wrapper(model, cfg, amp, device)
        if loader is not None:
            batches = loader  # one iterator for every mode (InfiniteSampler's indices are one generator)
        else:
            batches = synthetic_batches(tuple(cfg.crop_size), batch, cfg.num_classes, generator)
        try:
            result = {"amp_dtype": dtype if amp else None, "channels_last": channels_last}
            result.update(measure_train(model, wrapper, batches, warmup, steps, batch, target.split(":")[0]))
            inner = model.module if world > 1 else model
            result.update(measure_val(inner, val_samples, target.split(":")[0]))
            if world > 1:
                parameters = sum(p.numel() for p in inner.parameters() if p.requires_grad)
                result["allreduce_ms"] = allreduce_ms(parameters, target)
                result["allreduce_share"] = round(result["allreduce_ms"] / 1000 / result["step_seconds"], 4)
            else:
                result["allreduce_ms"] = result["allreduce_share"] = None
        except torch.OutOfMemoryError:
            result = {"amp_dtype": dtype if amp else None, "channels_last": channels_last,
                      "error": f"out of GPU memory at {batch} images per GPU"}  # fmt: skip
        except RuntimeError as error:
            if world > 1 and ("NCCL" in str(error) or "gloo" in str(error).lower()):
                raise GpuProblem(nccl_problem(error, world)) from None
            raise
        results[mode] = result
        if rank == 0:
            log.info("%s: %s", mode, result)
        del model, wrapper
        if device == "cuda":
            torch.cuda.empty_cache()
    if world > 1:
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    if out and rank == 0:
        Path(out).write_text(json.dumps(results))
    return results


def run_ranks(world: int, cfg_path: str, device: str, real: bool, folder: Path) -> dict:
    """``measure`` in one process per GPU (this file as a command line, as torchrun would
    start them); rank 0's results.  A rank's GpuProblem (NCCL) comes back as one."""
    import subprocess

    import common
    from common.gpu import GpuProblem
    from common.launch import free_port

    scripts = Path(common.__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(scripts), os.environ.get("PYTHONPATH", "")])}
    port, out = free_port(), folder / "rank0.json"
    ranks = []
    for rank in range(world):
        errors = open(folder / f"rank{rank}.log", "w")
        command = [sys.executable, str(scripts / "gpu_check.py"), "--rank", str(rank), "--world", str(world),
                   "--config", cfg_path, "--device", device, "--port", str(port), "--out", str(out)]  # fmt: skip
        ranks.append((subprocess.Popen(command + (["--real"] if real else []), env=env, stderr=errors), errors))
    failed = []
    for rank, (process, errors) in enumerate(ranks):
        process.wait()
        errors.close()
        text = (folder / f"rank{rank}.log").read_text()
        sys.stderr.write(text)
        if process.returncode:
            failed.append((rank, process.returncode, text))
    for rank, code, text in failed:
        problems = [line for line in text.splitlines() if line.startswith(PROBLEM)]
        if problems:
            raise GpuProblem(problems[-1][len(PROBLEM) :])
    if failed:
        rank, code, text = failed[0]
        raise RuntimeError(f"rank {rank} of the check failed (exit code {code}); its log is above")
    return json.loads(out.read_text())


PROBLEM = "gpu_check problem: "


def cli() -> None:
    """One rank of a check at several GPUs (started by run_ranks)."""
    import argparse

    from common.gpu import GpuProblem

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name in ("--rank", "--world", "--port"):
        parser.add_argument(name, type=int, required=True)
    for name in ("--config", "--device", "--out"):
        parser.add_argument(name, required=True)
    parser.add_argument("--real", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    try:
        measure(args.rank, args.world, args.config, args.device, args.real, args.port, args.out)
    except GpuProblem as problem:
        print(f"{PROBLEM}{problem}", file=sys.stderr)
        sys.exit(3)


def check(run: dict, training: dict, gpus: int, model_name: str, scratch: Path | None = None) -> dict:
    """The whole check: the facts of the machine, then every mode; the json document."""
    import torch

    from common.gpu import cuda_device, mmcv_facts

    device, facts = cuda_device(torch)
    if device == "cuda" and torch.cuda.device_count() < gpus:
        from common.gpu import GpuProblem

        raise GpuProblem(
            f"the check at {gpus} GPUs sees {torch.cuda.device_count()} (CUDA_VISIBLE_DEVICES="
            f"{os.environ.get('CUDA_VISIBLE_DEVICES')!r}): the job did not get the GPUs it asked for"
        )
    facts.update(mmcv_facts())
    if device == "cuda" and not facts["mmcv_ops_cuda"]:
        log.warning("mmcv's compiled ops have no CUDA (%s): the study's model needs none, some others do", facts)
    with tempfile.TemporaryDirectory(prefix="gpu_check-", dir=scratch) as folder:
        cfg = render(run, training, Path(folder))
        real = data_ready(cfg)
        log.info(
            "%s on %s (%s), %d GPU(s), crop %s, %d images per GPU, %s data",
            model_name, device, facts.get("gpu") or platform.processor() or "CPU", gpus,
            tuple(cfg.crop_size), cfg.train_dataloader.batch_size, "real" if real else "synthetic",
        )  # fmt: skip
        cfg_path = str(Path(folder) / "config.py")
        if gpus > 1:
            modes = run_ranks(gpus, cfg_path, device, real, Path(folder))
        else:
            modes = measure(0, 1, cfg_path, device, real, 0, None)
        warmup, steps, val_images = STEPS[device]
        return {
            "model": model_name,
            "family": run.get("backbone", "resnet"),
            "gpus": gpus,
            "device": device,
            "crop_size": list(cfg.crop_size),
            "batch_per_gpu": cfg.train_dataloader.batch_size,
            "workers_per_gpu": cfg.train_dataloader.num_workers,
            "data": "real" if real else "synthetic",
            "steps": {"warmup": warmup, "measured": steps, "val_images": val_images},
            "recipe": f"{run['variant']}/{run['budget']}-s{run['seed']}",
            "environment": {**facts, "python": platform.python_version(), "host": platform.node()},
            "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "modes": modes,
        }


def main(snakemake) -> None:
    from common.gpu import GpuProblem
    from common.jobs import start_log, write_text

    start_log(snakemake)
    try:
        document = check(
            dict(snakemake.params.run), snakemake.config["training"], int(snakemake.wildcards.gpus),
            snakemake.wildcards.model,
        )
    except GpuProblem as problem:
        log.error("gpu_check: %s", problem)
        sys.exit(f"gpu_check {snakemake.wildcards.model}-{snakemake.wildcards.gpus}: {problem}")
    write_text(Path(snakemake.output[0]), json.dumps(document, indent=1) + "\n")


if __name__ == "__main__" and "snakemake" in globals():
    main(snakemake)  # noqa: F821
elif __name__ == "__main__":
    cli()
