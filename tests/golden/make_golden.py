"""Golden outputs of the model stack: what every later stack must reproduce.

Written once with the stack the study's first runs were trained on (``stack.json``
says which: torch 2.1.2, mmcv 2.1.0, mmengine 0.10.7, mmsegmentation 1.2.2,
numpy 1.26) and committed; ``tests/test_golden.py`` recomputes each with the
installed stack and compares.

* ``configs.json``: each backbone family's rendered run config, resolved by
  MMEngine through MMSeg's ``_base_`` files (ResNet-50 v1c and torchvision,
  ResNet-18 as the demo trains it, Swin-T, ConvNeXt-T);
* ``pipeline.npz``: the study's train pipeline (resize, crop, flip, photometric
  distortion, pad) on a fixed VOC image and label, for fixed seeds;
* ``metric.json``: ``StudyIoUMetric`` (MMSeg's ``IoUMetric``) on fixed predictions;
* ``logits.npz``: forward logits of fixed-seed inits (the demo's UPerNet R-18,
  the study's UPerNet R-50, tiny Swin and ConvNeXt) and of the tiny trained
  checkpoint on fixed inputs, the tiny model's training losses and gradient
  norm on a fixed batch, and a digest of each seeded init;
* ``checkpoint/``: a tiny UPerNet R-18 trained by the workflow's own training
  code on ``voc/`` (12 train, 6 val images of the mini VOC) for 40 epochs:
  ``epoch_39.pth`` (with optimizer, message hub and RNG states, as a run's work
  dir holds it), ``final.pth`` (the exported epoch 40, as a run's folder holds
  it), its evaluation on voc/'s val list and its history.

    python tests/golden/make_golden.py   # rewrite them with the installed stack

Rewriting them is a decision, not a routine: it discards the proof that the
stack computes what the study's runs computed.
"""

from __future__ import annotations

import copy
import json
import math
import random
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import yaml

GOLDEN = Path(__file__).resolve().parent
REPO = GOLDEN.parent.parent
VOC = GOLDEN / "voc"  # VOC layout: JPEGImages, SegmentationClass, ImageSets/Segmentation
CHECKPOINT = GOLDEN / "checkpoint"
if str(REPO / "scripts") not in sys.path:
    sys.path.insert(0, str(REPO / "scripts"))

SEED = 0
PIPELINE_SEEDS = (0, 1, 2)
PIPELINE_IMAGE = "2007_001723"  # of voc/: a train image with objects of three classes
# The demo's training settings (config/demo.yaml, when these were written)
DEMO_TRAINING = {
    "gpus": 1, "batch_per_gpu": 2, "base_lr": 0.32, "depth": 18, "head_channels": 64, "pretrained": None,
    "crop_size": [64, 64], "scale": [160, 80], "workers_per_gpu": 0, "log_interval": 10,
    "cudnn_benchmark": False, "augment": {"photometric": False},
}  # fmt: skip
VOCAUG = [{"split": "train", "labels": "SegmentationClass"}, {"split": "aug", "labels": "SegmentationClassAug"}]
VOC_TRAIN = [{"split": "train", "labels": "SegmentationClass"}]
# Each backbone family's run config as the study renders it (config/config.yaml's defaults)
CONFIG_RUNS = {
    "resnet50_v1c_vocaug": {},
    "resnet50_torchvision_vocaug": {"pretrained": "torchvision://resnet50"},
    "resnet18_demo_voc": {**DEMO_TRAINING, "variant": "voc", "train_sets": VOC_TRAIN, "epochs": 6},
    "swin_tiny_vocaug": {"backbone": "swin", "pretrained": "mmseg://swin_tiny"},
    "convnext_tiny_vocaug": {"backbone": "convnext", "pretrained": "mmpretrain://convnext_tiny"},
}
# Models whose seeded init and forward are recorded: (run overrides, input height and width)
TINY_SWIN = {"embed_dims": 16, "depths": [1, 1, 1, 1], "num_heads": [1, 1, 2, 2]}
TINY_CONVNEXT = {"arch": {"depths": [1, 1, 1, 1], "channels": [8, 16, 32, 64]}}
LOGIT_MODELS = {
    "resnet18_demo": ({**DEMO_TRAINING}, (64, 64)),
    "resnet50_study": ({"pretrained": None}, (128, 128)),
    "swin_tiny_widths": ({**DEMO_TRAINING, "backbone": "swin", "backbone_overrides": TINY_SWIN}, (64, 64)),
    "convnext_tiny_widths": ({**DEMO_TRAINING, "backbone": "convnext", "backbone_overrides": TINY_CONVNEXT}, (64, 64)),
}
# The committed checkpoint's model: the demo's R-18 recipe at 1/8 of its widths (a
# checkpoint small enough to commit: ~0.2 M parameters)
TINY_BACKBONE = {"stem_channels": 16, "base_channels": 8}
TINY_HEAD_INPUTS = ([8, 16, 32, 64], 32)
TINY_EPOCHS = 40
RESUME_FROM = f"epoch_{TINY_EPOCHS - 1}.pth"  # kept with its optimizer state: a resume trains the last epoch


def schema_training() -> dict:
    schema = yaml.safe_load((REPO / "config/schemas/config.schema.yaml").read_text())
    properties = schema["properties"]["training"]["properties"]
    return {key: spec["default"] for key, spec in properties.items() if "default" in spec}


def study_run(**overrides) -> dict:
    """A run of the study's defaults (vocaug, 30 epochs on 2 GPUs x 8), with ``overrides``."""
    run = {
        **schema_training(),
        "variant": "vocaug",
        "epochs": 30,
        "iterations_per_epoch": 662,  # 10,582 images at 2 GPUs x 8
        "train_images": 10582,
        "seed": SEED,
        "train_sets": VOCAUG,
        "data_root": "resources/VOCdevkit/VOC2012",
        "work_dir": "results/work/vocaug/e30-s0",
    }
    run.update(overrides)
    return run


# ---- plain, comparable values ---------------------------------------------------
def plain(node):
    """Config values as plain data, without the ``_scope_`` keys of cross-package inheritance."""
    if isinstance(node, dict):
        return {k: plain(v) for k, v in node.items() if k != "_scope_"}
    if isinstance(node, (list, tuple)):
        return type(node)(plain(v) for v in node)
    return node


def encode(node):
    """JSON that keeps tuples apart from lists (MMEngine configs use both)."""
    if isinstance(node, dict):
        return {str(k): encode(v) for k, v in node.items()}
    if isinstance(node, tuple):
        return {"__tuple__": [encode(v) for v in node]}
    if isinstance(node, list):
        return [encode(v) for v in node]
    return node


# ---- configs ---------------------------------------------------------------------
def load_config(run: dict, folder: Path):
    """The run's rendered config.py, loaded by MMEngine (its _base_ chain resolved)."""
    from mmengine.config import Config

    from common.mmseg_config import render_config

    path = Path(folder) / "config.py"
    path.write_text(render_config(run, folder))
    return Config.fromfile(str(path))


def resolved_configs(folder: Path) -> dict:
    return {
        name: encode(plain(load_config(study_run(**overrides), Path(folder)).to_dict()))
        for name, overrides in CONFIG_RUNS.items()
    }


# ---- the train pipeline ----------------------------------------------------------
def seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def pipeline_outputs(folder: Path) -> dict[str, np.ndarray]:
    """The study's train pipeline on one VOC image and label, for each seed of PIPELINE_SEEDS."""
    from mmcv.transforms import Compose
    from mmengine.registry import init_default_scope

    import mmseg.datasets  # noqa: F401  (registers MMSeg's transforms)

    init_default_scope("mmseg")
    cfg = load_config(study_run(), Path(folder))
    pipeline = Compose(cfg.train_pipeline)
    out = {}
    for seed in PIPELINE_SEEDS:
        seed_everything(seed)
        packed = pipeline(
            {
                "img_path": str(VOC / "JPEGImages" / f"{PIPELINE_IMAGE}.jpg"),
                "seg_map_path": str(VOC / "SegmentationClass" / f"{PIPELINE_IMAGE}.png"),
                "reduce_zero_label": False,
                "seg_fields": [],
                "sample_idx": 0,
            }
        )
        sample = packed["data_samples"]
        out[f"seed{seed}_image"] = packed["inputs"].numpy()
        out[f"seed{seed}_label"] = sample.gt_sem_seg.data.numpy().astype(np.uint8)  # 0-20 and 255
        out[f"seed{seed}_shape"] = np.array([*sample.ori_shape, *sample.img_shape])
        out[f"seed{seed}_flip"] = np.array([bool(sample.flip)])
    return out


# ---- the metric ------------------------------------------------------------------
def metric_samples() -> list[dict]:
    """Six fixed predictions of VOC's 21 classes against labels with ignored pixels."""
    import torch

    rng = np.random.RandomState(SEED)
    samples = []
    for index in range(6):
        label = rng.randint(0, 21, size=(30, 40)).astype(np.int64)
        label[rng.rand(30, 40) < 0.1] = 255
        pred = np.where(rng.rand(30, 40) < 0.7, label % 255, rng.randint(0, 21, size=(30, 40)))
        pred[label == 255] = rng.randint(0, 21, size=int((label == 255).sum()))
        samples.append(
            {
                "pred_sem_seg": {"data": torch.from_numpy(pred[None])},
                "gt_sem_seg": {"data": torch.from_numpy(label[None])},
                "img_path": f"image{index}.jpg",
            }
        )
    return samples


def metric_outputs() -> dict:
    from common.metric import StudyIoUMetric
    from common.voc import CLASSES

    metric = StudyIoUMetric(iou_metrics=["mIoU"])
    metric.dataset_meta = {"classes": CLASSES}
    metric.process(None, metric_samples())
    summary = metric.compute_metrics(metric.results)
    return {
        "summary": {key: float(value) for key, value in summary.items()},
        "per_class": {key: [float(v) for v in values] for key, values in metric.per_class.items()},
        "per_image_confusion_sum": metric.per_image_confusion.sum(axis=0).tolist(),
        "image_ids": metric.image_ids,
    }


# ---- models ----------------------------------------------------------------------
def build_model(cfg, seed: int = SEED):
    """The config's segmentor, seeded and initialised as MMEngine's Runner does (CPU: BN)."""
    import torch  # noqa: F401
    from mmengine.registry import init_default_scope

    from common.launch import _sync_bn_to_bn
    from mmseg.registry import MODELS

    init_default_scope("mmseg")
    model_cfg = copy.deepcopy(cfg.model)
    _sync_bn_to_bn(model_cfg)
    seed_everything(seed)
    model = MODELS.build(model_cfg)
    model.init_weights()
    return model


def digest(model) -> np.ndarray:
    """Per tensor of the state dict: its sum and its sum of squares (float64)."""
    return np.array([[t.double().sum().item(), t.double().square().sum().item()] for t in model.state_dict().values()])


def fixed_image(height: int, width: int, seed: int) -> np.ndarray:
    """An HWC uint8 picture: smooth gradients and a few discs (not noise, which no model sees)."""
    rng = np.random.RandomState(seed)
    y, x = np.mgrid[0:height, 0:width]
    image = np.stack([(x * 255 // max(width - 1, 1)), (y * 255 // max(height - 1, 1)), ((x + y) * 3) % 256], -1)
    for _ in range(3):
        cy, cx, r = rng.randint(0, height), rng.randint(0, width), rng.randint(4, max(5, height // 3))
        image[(y - cy) ** 2 + (x - cx) ** 2 < r * r] = rng.randint(0, 256, size=3)
    return image.astype(np.uint8)


def logits(model, image: np.ndarray) -> np.ndarray:
    """Eval-mode decode-head logits (1/4 of the input's size) of one HWC uint8 image."""
    import torch

    model.eval()
    with torch.no_grad():
        batch = model.data_preprocessor({"inputs": [torch.from_numpy(image).permute(2, 0, 1).contiguous()]}, False)
        return model(batch["inputs"], mode="tensor").numpy()


def tiny_run(data_root: Path, work_dir: Path, epochs: int = TINY_EPOCHS) -> dict:
    from common.subsets import iterations_per_epoch

    images = len((Path(data_root) / "ImageSets/Segmentation/train.txt").read_text().split())
    training = {**DEMO_TRAINING, "log_interval": 1, "checkpoint_interval": 1}
    return study_run(
        **training, backbone_overrides=TINY_BACKBONE, variant="golden_tiny", epochs=epochs, train_sets=VOC_TRAIN,
        train_images=images, iterations_per_epoch=iterations_per_epoch(images, 1, training["batch_per_gpu"]),
        data_root=str(data_root), work_dir=str(work_dir),
    )  # fmt: skip


def tiny_config(data_root: Path, work_dir: Path, folder: Path, epochs: int = TINY_EPOCHS):
    """The committed checkpoint's config: the demo's recipe at 1/8 of the R-18's widths."""
    cfg = load_config(tiny_run(data_root, work_dir, epochs), Path(folder))
    cfg.model.decode_head.in_channels, cfg.model.auxiliary_head.in_channels = TINY_HEAD_INPUTS
    cfg.model.decode_head.channels, cfg.model.auxiliary_head.channels = 16, 8
    cfg.visualizer.vis_backends = [dict(type="LocalVisBackend")]
    return cfg


def train_batch(ids=("2007_000788", "2007_001723")):
    """Two training images of voc/ and their labels, at the tiny model's crop."""
    from PIL import Image

    images, labels = [], []
    for image_id in ids:
        image = np.asarray(Image.open(VOC / "JPEGImages" / f"{image_id}.jpg").convert("RGB"))[:64, :64, ::-1]
        label = np.asarray(Image.open(VOC / "SegmentationClass" / f"{image_id}.png"))[:64, :64]
        images.append(np.ascontiguousarray(image))
        labels.append(label.astype(np.int64))
    return np.stack(images), np.stack(labels)


def train_step(model, images: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Train-mode losses of one batch and the gradient norm they give (no optimizer step).

    Dropout stays off: torch draws its masks with ``bernoulli_``, whose CPU stream for
    a seed changed after torch 2.1 (``rand``, ``randn``, ``randperm`` did not).
    """
    import torch
    from mmengine.structures import PixelData

    from mmseg.structures import SegDataSample

    model.train()
    for module in model.modules():
        if isinstance(module, torch.nn.modules.dropout._DropoutNd):
            module.eval()
    samples = []
    for label in labels:
        sample = SegDataSample()
        sample.gt_sem_seg = PixelData(data=torch.from_numpy(label[None]))
        sample.set_metainfo({"img_shape": label.shape, "ori_shape": label.shape, "pad_shape": label.shape})
        samples.append(sample)
    inputs = [torch.from_numpy(image).permute(2, 0, 1).contiguous() for image in images]
    batch = model.data_preprocessor({"inputs": inputs, "data_samples": samples}, True)
    model.zero_grad()
    losses = model.loss(batch["inputs"], batch["data_samples"])
    total = sum(value for key, value in losses.items() if "loss" in key)
    total.backward()
    norm = math.sqrt(sum(float(p.grad.double().square().sum()) for p in model.parameters() if p.grad is not None))
    numbers = {key: float(value.detach()) for key, value in losses.items()}
    return {**numbers, "total": float(total.detach()), "grad_norm": norm}


def model_outputs(folder: Path, checkpoint: Path) -> tuple[dict[str, np.ndarray], dict]:
    """(arrays: inputs, logits and init digests; numbers: the tiny model's losses)."""
    import torch

    arrays, numbers = {}, {}
    for name, (overrides, (height, width)) in LOGIT_MODELS.items():
        (Path(folder) / name).mkdir()
        cfg = load_config(study_run(**overrides), Path(folder) / name)
        model = build_model(cfg)
        image = fixed_image(height, width, seed=len(arrays))
        arrays[f"{name}_input"] = image
        arrays[f"{name}_digest"] = digest(model)
        arrays[f"{name}_logits"] = logits(model, image)
    cfg = tiny_config(VOC, Path(folder) / "work", Path(folder))
    model = build_model(cfg)
    model.load_state_dict(torch.load(checkpoint, map_location="cpu", weights_only=False)["state_dict"])
    image = fixed_image(64, 64, seed=99)
    arrays["tiny_checkpoint_input"] = image
    arrays["tiny_checkpoint_logits"] = logits(model, image)
    numbers["tiny_checkpoint_train_step"] = train_step(model, *train_batch())
    return arrays, numbers


# ---- the tiny checkpoint, trained by the workflow's own code ------------------------
def train_tiny(work_dir: Path, folder: Path) -> None:
    """Train the tiny model TINY_EPOCHS epochs in ``work_dir`` with train_upernet.train()."""
    from train_upernet import train

    cfg = tiny_config(VOC, work_dir, folder)
    config_path = Path(folder) / "config.py"
    cfg.dump(str(config_path))
    seed_everything(SEED)
    train(config_path, work_dir, cfg=cfg)


def write_checkpoint(dest: Path) -> None:
    """checkpoint/: RESUME_FROM (a work dir's), final.pth (a run's), their evaluation and history."""
    from evaluate_upernet import evaluate

    from common.history import history_from_scalars
    from common.work_dir import export_final

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        work_dir = tmp / "work"
        train_tiny(work_dir, tmp)
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copy(work_dir / RESUME_FROM, dest / RESUME_FROM)
        export_final(work_dir, dest / "final.pth", TINY_EPOCHS)
        history = history_from_scalars(work_dir)
        (dest / "history.json").write_text(json.dumps(history, indent=1) + "\n")
        config = tmp / "eval" / "config.py"
        config.parent.mkdir()
        tiny_config(VOC, tmp / "eval-work", config.parent).dump(str(config))
        document, confusion, _, image_ids = evaluate(config, dest / "final.pth", scratch=tmp)
        keep = ("aAcc", "mIoU", "mAcc", "IoU", "Acc", "num_images")
        evaluation = {key: document[key] for key in keep} | {"confusion": confusion.tolist(), "image_ids": image_ids}
        (dest / "evaluation.json").write_text(json.dumps(evaluation, indent=1) + "\n")


def copy_voc(source: Path, train: int = 12, val: int = 6) -> None:
    """voc/: the first ``train`` and ``val`` ids of an extracted mini VOC (tools/make_mini_voc.py)."""
    lists = {}
    for split, count in (("train", train), ("val", val)):
        ids = (source / "ImageSets/Segmentation" / f"{split}.txt").read_text().split()[:count]
        lists[split] = ids
        for image_id in ids:
            for folder, suffix in (("JPEGImages", ".jpg"), ("SegmentationClass", ".png")):
                (VOC / folder).mkdir(parents=True, exist_ok=True)
                shutil.copy(source / folder / f"{image_id}{suffix}", VOC / folder / f"{image_id}{suffix}")
    (VOC / "ImageSets/Segmentation").mkdir(parents=True, exist_ok=True)
    for split, ids in lists.items():
        (VOC / "ImageSets/Segmentation" / f"{split}.txt").write_text("\n".join(ids) + "\n")


def stack() -> dict[str, str]:
    """The versions of the stack these were written with."""
    from importlib.metadata import PackageNotFoundError, version

    found = {"python": ".".join(map(str, sys.version_info[:3]))}
    for name in ("torch", "torchvision", "numpy", "opencv-python", "pillow"):
        found[name] = version(name)
    for name in ("mmcv", "mmengine", "mmsegmentation", "mmpretrain"):
        for distribution in (name, f"onedl-{name}"):
            try:
                found[distribution] = version(distribution)
            except PackageNotFoundError:
                continue
    return found


def main() -> None:
    import argparse
    import logging

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--voc-from", type=Path, help="an extracted mini VOC (VOCdevkit/VOC2012) to take voc/ from")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    if args.voc_from:
        copy_voc(args.voc_from)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        write_checkpoint(CHECKPOINT)
        for name, folder in (("configs", "configs"), ("pipeline", "pipeline"), ("models", "models")):
            (tmp / folder).mkdir()
        (GOLDEN / "configs.json").write_text(json.dumps(resolved_configs(tmp / "configs"), indent=1) + "\n")
        np.savez_compressed(GOLDEN / "pipeline.npz", **pipeline_outputs(tmp / "pipeline"))
        (GOLDEN / "metric.json").write_text(json.dumps(metric_outputs(), indent=1) + "\n")
        arrays, numbers = model_outputs(tmp / "models", CHECKPOINT / "final.pth")
        np.savez_compressed(GOLDEN / "logits.npz", **arrays)
        (GOLDEN / "train_step.json").write_text(json.dumps(numbers, indent=1) + "\n")
    (GOLDEN / "stack.json").write_text(json.dumps(stack(), indent=1) + "\n")
    print(f"wrote {GOLDEN.relative_to(REPO)}: " + ", ".join(sorted(p.name for p in GOLDEN.iterdir() if p.is_file())))


if __name__ == "__main__":
    main()
