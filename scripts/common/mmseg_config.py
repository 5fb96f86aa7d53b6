"""Write the MMSegmentation config of one run as a delta over the study's base configs.

``configs/upernet_<family>_voc.py`` (one per backbone family) stand on MMSeg's own
model, dataset and runtime files plus the study's fixed choices (``configs/study_voc.py``);
a run's ``config.py`` is ``_base_`` + only what the run chooses, as MMSeg's own configs
are written, and runs by hand with MMSeg's ``tools/train.py``.

Pure Python (no torch, no mmseg): the workflow renders configs on the login
node, and tests compare them with MMSeg's shipped ones.
"""

import math
import os
from pathlib import Path

from common.voc import NUM_CLASSES

CONFIGS = Path(__file__).resolve().parent / "configs"

# Known pretrained backbones: the URLs MMEngine's own tables (ResNets) and MMSeg's
# Swin/ConvNeXt UPerNet configs give for them; OneDL, the maintainers of the MMSeg
# stack, serve OpenMMLab's files under the same paths on their own host, and
# OpenMMLab's host is the second place fetch_pretrained tries.  The 8 hex digits
# before ".pth" are the start of the file's sha256 (torch.hub's and OpenMMLab's
# convention): whichever host serves a file, it is checked against them.
ONEDL_ASSETS, OPENMMLAB_ASSETS = "https://mmassets.onedl.ai/", "https://download.openmmlab.com/"
PRETRAINED_URLS = {
    "open-mmlab://resnet18_v1c": ONEDL_ASSETS + "pretrain/third_party/resnet18_v1c-b5776b93.pth",
    "open-mmlab://resnet50_v1c": ONEDL_ASSETS + "pretrain/third_party/resnet50_v1c-2cccc1ad.pth",
    "open-mmlab://resnet101_v1c": ONEDL_ASSETS + "pretrain/third_party/resnet101_v1c-e67eebb6.pth",
    "torchvision://resnet18": "https://download.pytorch.org/models/resnet18-f37072fd.pth",
    "torchvision://resnet50": "https://download.pytorch.org/models/resnet50-0676ba61.pth",
    "torchvision://resnet101": "https://download.pytorch.org/models/resnet101-63fe2227.pth",
    "mmseg://swin_tiny": ONEDL_ASSETS + "mmsegmentation/v0.5/pretrain/swin/"
    "swin_tiny_patch4_window7_224_20220317-1cdeb081.pth",
    "mmseg://swin_small": ONEDL_ASSETS + "mmsegmentation/v0.5/pretrain/swin/"
    "swin_small_patch4_window7_224_20220317-7ba6d6dd.pth",
    "mmseg://swin_base": ONEDL_ASSETS + "mmsegmentation/v0.5/pretrain/swin/"
    "swin_base_patch4_window7_224_20220317-e9b98025.pth",
    "mmpretrain://convnext_tiny": ONEDL_ASSETS + "mmclassification/v0/convnext/downstream/"
    "convnext-tiny_3rdparty_32xb128-noema_in1k_20220301-795e9634.pth",
    "mmpretrain://convnext_small": ONEDL_ASSETS + "mmclassification/v0/convnext/downstream/"
    "convnext-small_3rdparty_32xb128-noema_in1k_20220301-303e75e3.pth",
    "mmpretrain://convnext_base": ONEDL_ASSETS + "mmclassification/v0/convnext/downstream/"
    "convnext-base_3rdparty_32xb128-noema_in1k_20220301-2a0ee547.pth",
}


def pretrained_mirrors(url: str) -> list[str]:
    """Where known weights can be downloaded, in order: OneDL's host, then OpenMMLab's."""
    if url.startswith(ONEDL_ASSETS):
        return [url, OPENMMLAB_ASSETS + url[len(ONEDL_ASSETS) :]]
    return [url]


PRETRAINED_DIR = "resources/pretrained"

BACKBONES = ("resnet", "swin", "convnext")
SIZES = ("tiny", "small", "base")
# Decode-head inputs per ResNet depth, as MMSeg's upernet_r18/_r50/_r101 configs set them.
HEAD_CHANNELS = {18: ([64, 128, 256, 512], 256), 50: ([256, 512, 1024, 2048], 1024), 101: ([256, 512, 1024, 2048], 1024)}
# Swin and ConvNeXt sizes as MMSeg's swin-<size>/convnext-<size> UPerNet configs set them.
SWIN_SIZES = {
    "tiny": {"embed_dims": 96, "depths": [2, 2, 6, 2], "num_heads": [3, 6, 12, 24]},
    "small": {"embed_dims": 96, "depths": [2, 2, 18, 2], "num_heads": [3, 6, 12, 24]},
    "base": {"embed_dims": 128, "depths": [2, 2, 18, 2], "num_heads": [4, 8, 16, 32]},
}
CONVNEXT_CHANNELS = {"tiny": [96, 192, 384, 768], "small": [96, 192, 384, 768], "base": [128, 256, 512, 1024]}
CONVNEXT_DROP_PATH = {"tiny": 0.4, "small": 0.3, "base": 0.4}
CONVNEXT_DECAY_LAYERS = {"tiny": 6, "small": 12, "base": 12}  # stage-wise lr decay's num_layers
# Each family's optimizer recipe: its lr is meant for its config's 8 GPUs x 2 images.
# MMSeg's Swin/ConvNeXt schedules warm up for 1,500 of 160,000 iterations.
ADAMW_RECIPES = {
    "swin": {"lr": 6e-5, "batch": 16, "weight_decay": 0.01},
    "convnext": {"lr": 1e-4, "batch": 16, "weight_decay": 0.05},
}
WARMUP_FRACTION = 1500 / 160000
MIN_WARMUP = 10
LOSSES = {"cross_entropy": ("CrossEntropyLoss", False), "focal": ("FocalLoss", True)}
AUGMENT_DEFAULTS = {"random_resize": True, "flip": True, "photometric": True}
# Settings that change how a run is carried out, never its result: the workflow
# keeps them out of the rules' params, so editing them retrains nothing.
RUNTIME_SETTINGS = ("log_interval", "workers_per_gpu", "max_keep_checkpoints", "checkpoint_interval", "cudnn_benchmark")
# tracking name: MMEngine's backend; each needs the Python package of the same name
TRACKING_BACKENDS = {"tensorboard": "TensorboardVisBackend", "wandb": "WandbVisBackend", "mlflow": "MLflowVisBackend"}
DEFAULT_TRACKING = ["tensorboard"]  # configs/study_voc.py's visualizer


class ConfigError(ValueError):
    pass


class Ref(str):
    """A name of the config file itself (a variable), written without quotes."""


def pretrained_file(pretrained):
    """Where the backbone weights of ``pretrained`` are read from (None: random init)."""
    if pretrained is None:
        return None
    if pretrained in PRETRAINED_URLS:
        return f"{PRETRAINED_DIR}/{PRETRAINED_URLS[pretrained].rsplit('/', 1)[1]}"
    if "://" in pretrained:
        raise ConfigError(
            f"pretrained: unknown weights {pretrained!r}; known: {', '.join(PRETRAINED_URLS)}, "
            "a local path, or null"
        )
    return pretrained


def _weights_backbone(pretrained) -> str:
    """The backbone that known weights belong to: 'resnet50', 'swin_tiny', ..."""
    return pretrained.split("://")[1].split("_v1c")[0]


def model_name(settings: dict) -> str:
    """'resnet50', 'swin_tiny', 'convnext_base': the backbone of a run's settings."""
    family = settings.get("backbone", "resnet")
    return f"resnet{settings['depth']}" if family == "resnet" else f"{family}_{settings.get('size', 'tiny')}"


def check_backbone(model: dict, where: str) -> None:
    """Known weights must be those of the run's backbone (family, and depth or size)."""
    family, pretrained = model.get("backbone", "resnet"), model["pretrained"]
    if family not in BACKBONES:
        raise ConfigError(f"{where}: unknown backbone {family!r} ({', '.join(BACKBONES)})")
    name = model_name(model)
    if pretrained in PRETRAINED_URLS and _weights_backbone(pretrained) != name:
        fitting = [key for key in PRETRAINED_URLS if _weights_backbone(key) == name]
        what = f"depth {model['depth']}" if family == "resnet" else f"backbone {family} {model.get('size', 'tiny')}"
        raise ConfigError(f"{where}: pretrained {pretrained!r} does not fit {what} (use {' or '.join(fitting)}, or null)")


def missing_tracking_packages(vis_backends: list) -> list[str]:
    """The packages of the config's tracking backends that this environment lacks."""
    import importlib.util

    packages = {backend: name for name, backend in TRACKING_BACKENDS.items()}
    wanted = [packages[b["type"]] for b in vis_backends if b["type"] in packages]
    return [package for package in wanted if importlib.util.find_spec(package) is None]


def head_inputs(run: dict) -> tuple[list[int], int]:
    """The decode head's input channels and the auxiliary head's, from the backbone's widths."""
    family, overrides = run.get("backbone", "resnet"), run.get("backbone_overrides", {})
    if family == "resnet":
        return HEAD_CHANNELS[run["depth"]]
    if family == "swin":
        embed = overrides.get("embed_dims", SWIN_SIZES[run.get("size", "tiny")]["embed_dims"])
        channels = [embed * 2**stage for stage in range(4)]
    else:
        arch = overrides.get("arch", run.get("size", "tiny"))
        channels = list(arch["channels"]) if isinstance(arch, dict) else CONVNEXT_CHANNELS[arch]
    return channels, channels[2]


def resnet_type(pretrained) -> str:
    """torchvision's ResNets have the plain stem; MMSeg's v1c weights the deep one."""
    return "ResNet" if (pretrained or "").startswith("torchvision://") else "ResNetV1c"


def optimizer_recipe(settings: dict) -> tuple[float, int, dict]:
    """(base lr, the total batch it is meant for, the optimizer) of a run's backbone family."""
    family = settings.get("backbone", "resnet")
    if family == "resnet":
        optimizer = {"type": "SGD", "momentum": settings["momentum"], "weight_decay": settings["weight_decay"]}
        return settings["base_lr"], settings["base_batch_size"], optimizer
    recipe = ADAMW_RECIPES[family]
    return recipe["lr"], recipe["batch"], {"type": "AdamW", "weight_decay": recipe["weight_decay"]}


def _backbone(run: dict) -> dict:
    """What the run's backbone changes in its family's base config (ResNet-50, Swin-T, ConvNeXt-T)."""
    family, size, pretrained = run.get("backbone", "resnet"), run.get("size", "tiny"), run["pretrained"]
    checkpoint = pretrained_file(pretrained)
    init = None if checkpoint is None else {"type": "Pretrained", "checkpoint": checkpoint}
    backbone = {}
    if family == "resnet":
        if resnet_type(pretrained) != "ResNetV1c":
            backbone["type"] = resnet_type(pretrained)
        if run["depth"] != 50:
            backbone["depth"] = run["depth"]
    elif family == "swin" and size != "tiny":
        backbone = dict(SWIN_SIZES[size])
    elif family == "convnext":
        if size != "tiny":
            backbone = {"arch": size, "drop_path_rate": CONVNEXT_DROP_PATH[size]}
        if init:  # mmpretrain classifiers' weights: the backbone's keys start with 'backbone.'
            init["prefix"] = "backbone."
    # a dict given where the base has another value (ConvNeXt's arch name) replaces it
    overrides = {
        key: {"_delete_": True, **value} if isinstance(value, dict) else value
        for key, value in run.get("backbone_overrides", {}).items()
    }
    return {**backbone, "init_cfg": init, **overrides}


def _loss(name: str, weight: float) -> dict:
    kind, sigmoid = LOSSES[name]
    return {"type": kind, "use_sigmoid": sigmoid, "loss_weight": weight}


def _model(run: dict, num_classes: int) -> dict:
    in_channels, aux_channels = head_inputs(run)
    model = {
        "data_preprocessor": {"size": Ref("crop_size")},
        "pretrained": None,  # the backbone's init_cfg says where its weights come from
        "backbone": _backbone(run),
        "decode_head": {
            "in_channels": in_channels, "channels": run["head_channels"], "num_classes": num_classes,
            "loss_decode": _loss(run["loss"], 1.0),
        },
        "auxiliary_head": {
            "in_channels": aux_channels, "channels": run["head_channels"] // 2, "num_classes": num_classes,
            "loss_decode": _loss(run["loss"], 0.4),
        },
    }  # fmt: skip
    if run.get("init_from"):
        model["init_cfg"] = {"type": "Pretrained", "checkpoint": run["init_from"]["checkpoint"]}
    return model


def _pipeline(augment: dict) -> list:
    steps = [{"type": "LoadImageFromFile"}, {"type": "LoadAnnotations"}]
    resize = {"scale": Ref("scale"), "keep_ratio": True}
    if augment["random_resize"]:
        steps.append({"type": "RandomResize", **resize, "ratio_range": (0.5, 2.0)})
    else:
        steps.append({"type": "Resize", **resize})
    steps.append({"type": "RandomCrop", "crop_size": Ref("crop_size"), "cat_max_ratio": 0.75})
    if augment["flip"]:
        steps.append({"type": "RandomFlip", "prob": 0.5})
    if augment["photometric"]:
        steps.append({"type": "PhotoMetricDistortion"})
    return steps + [{"type": "Pad", "size": Ref("crop_size")}, {"type": "PackSegInputs"}]


def _dataset(train_set: dict, dataset: dict | None) -> dict:
    """One training list: a VOC one, or a list of a dataset of the config's ``datasets``."""
    ann_file = train_set.get("ann_file", f"ImageSets/Segmentation/{train_set['split']}.txt")
    return {
        **_dataset_kind(dataset),
        "data_root": Ref("data_root"),
        "data_prefix": {"img_path": "JPEGImages", "seg_map_path": train_set["labels"]},
        "ann_file": ann_file,
        "pipeline": Ref("train_pipeline"),
    }


def _dataset_kind(dataset: dict | None) -> dict:
    if dataset is None:
        return {"type": "PascalVOCDataset"}
    return {
        "type": "BaseSegDataset", "img_suffix": ".jpg", "seg_map_suffix": ".png", "reduce_zero_label": False,
        "metainfo": {"classes": tuple(dataset["classes"]), "palette": [list(c) for c in dataset["palette"]]},
    }  # fmt: skip


def _train_dataset(train_sets: list, dataset: dict | None) -> dict:
    members = [_dataset(s, dataset) for s in train_sets]
    if len(members) == 1:  # _delete_: replace the base config's dataset instead of merging into it
        return {"_delete_": True, **members[0]}
    return {"_delete_": True, "type": "ConcatDataset", "datasets": members}


def _val_dataset(dataset: dict | None) -> dict:
    if dataset is None:
        return {"data_root": Ref("data_root"), "pipeline": Ref("test_pipeline")}
    return {
        "_delete_": True, **_dataset_kind(dataset), "data_root": Ref("data_root"),
        "data_prefix": {"img_path": "JPEGImages", "seg_map_path": "SegmentationClass"},
        "ann_file": "ImageSets/Segmentation/val.txt", "pipeline": Ref("test_pipeline"),
    }  # fmt: skip


def _schedule(run: dict) -> tuple[dict, list]:
    """The optimizer (lr by the linear scaling rule) and its schedulers, decaying every step."""
    family = run.get("backbone", "resnet")
    per_step = {"by_epoch": True, "convert_to_iter_based": True}  # epochs in the config, steps when run
    if family == "resnet":
        optimizer = {"lr": Ref("lr"), "momentum": run["momentum"], "weight_decay": run["weight_decay"]}
        poly = {"type": "PolyLR", "eta_min": run["eta_min"], "power": run["poly_power"], "begin": 0}
        return optimizer, [{**poly, "end": Ref("max_epochs"), **per_step}]
    # warm-up: MMSeg's share of the steps, its end in epochs (rounded up); MMEngine's LinearLR
    # never takes its last step, it ends at 1 - 1/n of the lr: at least MIN_WARMUP steps
    # (MMSeg's 1,500 reach 99.9%), at most half of them
    steps = run["epochs"] * run["iterations_per_epoch"]
    warmup = max(round(steps * WARMUP_FRACTION), min(MIN_WARMUP, steps // 2), 1)
    end = math.ceil(warmup / run["iterations_per_epoch"] * 1e6) / 1e6
    schedulers = [
        {"type": "LinearLR", "start_factor": 1e-6, "begin": 0, "end": end, **per_step},
        {"type": "PolyLR", "eta_min": 0.0, "power": 1.0, "begin": end, "end": Ref("max_epochs"), **per_step},
    ]
    return {"lr": Ref("lr")}, schedulers


def _vis_backends(tracking: list) -> list:
    return [{"type": "LocalVisBackend"}] + [{"type": TRACKING_BACKENDS[name]} for name in tracking]


def base_config(run: dict) -> Path:
    return CONFIGS / f"upernet_{run.get('backbone', 'resnet')}_voc.py"


def config_values(run: dict) -> dict:
    """The run's config as (name, value) pairs in file order: variables first, then the deltas."""
    dataset = run.get("dataset")
    family = run.get("backbone", "resnet")
    augment = {**AUGMENT_DEFAULTS, **run.get("augment", {})}
    base_lr, base_batch, _ = optimizer_recipe(run)
    optimizer, schedulers = _schedule(run)
    wrapper = {"type": "AmpOptimWrapper" if run["amp"] else "OptimWrapper", "optimizer": optimizer}
    size = run.get("size", "tiny")
    if family == "convnext" and size != "tiny":
        wrapper["paramwise_cfg"] = {"num_layers": CONVNEXT_DECAY_LAYERS[size]}
    if run["amp"]:
        wrapper["loss_scale"] = "dynamic"
    loader = {"num_workers": run["workers_per_gpu"], "persistent_workers": run["workers_per_gpu"] > 0}
    num_classes = len(dataset["classes"]) if dataset else NUM_CLASSES
    values = {
        "gpus": run["gpus"],
        "batch_per_gpu": run["batch_per_gpu"],
        "base_lr": base_lr,
        "base_batch_size": base_batch,
        "lr": Ref("base_lr * gpus * batch_per_gpu / base_batch_size"),
        "max_epochs": run["epochs"],
        "budget": run.get("budget", f"e{run['epochs']}"),
        "train_images": run.get("train_images"),
        "iterations_per_epoch": run.get("iterations_per_epoch"),
        "train_lists": run.get("train_lists", []),
        "seed": run["seed"],
        "crop_size": tuple(run["crop_size"]),
        "scale": tuple(run["scale"]),
        "data_root": run["data_root"],
        "work_dir": run["work_dir"],
        "num_classes": num_classes,
        "model": _model(run, num_classes),
        "train_pipeline": _pipeline(augment),
        "test_pipeline": [
            {"type": "LoadImageFromFile"}, {"type": "Resize", "scale": Ref("scale"), "keep_ratio": True},
            {"type": "LoadAnnotations"}, {"type": "PackSegInputs"},
        ],
        "train_dataloader": {
            "batch_size": Ref("batch_per_gpu"), **loader, "dataset": _train_dataset(run["train_sets"], dataset),
        },
        "val_dataloader": {**loader, "dataset": _val_dataset(dataset)},
        "test_dataloader": Ref("val_dataloader"),
        "optim_wrapper": wrapper,
        "param_scheduler": schedulers,
        "train_cfg": {"max_epochs": Ref("max_epochs"), "val_interval": run["val_interval"]},
        "default_hooks": {
            "logger": {"interval": run["log_interval"]},
            "checkpoint": {"interval": run["checkpoint_interval"], "max_keep_ckpts": run["max_keep_checkpoints"]},
        },
        "env_cfg": {"cudnn_benchmark": run["cudnn_benchmark"]},
        "randomness": {"seed": Ref("seed")},
    }  # fmt: skip
    tracking = run.get("tracking", DEFAULT_TRACKING)
    if list(tracking) != DEFAULT_TRACKING:  # the base config's: local scalars and TensorBoard
        values["visualizer"] = {"vis_backends": _vis_backends(tracking)}
    if run.get("init_from"):  # for the training log: where the weights come from
        values["init_from"] = run["init_from"]
    return values


COMMENTS = {
    "gpus": "GPUs of the job",
    "base_lr": "meant for base_batch_size images per step (the family's recipe)",
    "lr": "linear scaling rule",
    "budget": "e<epochs>, or i<iterations>: the fewest epochs reaching them",
    "train_images": "images of one epoch",
    "iterations_per_epoch": "optimizer steps of one epoch",
    "param_scheduler": "epochs here, every optimizer step when run (convert_to_iter_based)",
    "init_from": "model.init_cfg loads it after every module's own init",
}
WIDTH = 100


def _format(value, indent: int = 0) -> str:
    """``value`` as MMEngine config source: dict(...) with one key per line when long."""
    pad = " " * (indent + 4)
    if isinstance(value, Ref):
        return str(value)
    if isinstance(value, dict):
        if not value:
            return "dict()"
        identifiers = all(isinstance(k, str) and k.isidentifier() for k in value)
        items = [f"{k}={_format(v, indent + 4)}" if identifiers else f"{k!r}: {_format(v, indent + 4)}" for k, v in value.items()]
        one_line = ", ".join(items)
        if len(one_line) + indent + 12 < WIDTH and "\n" not in one_line:
            return f"dict({one_line})" if identifiers else "{" + one_line + "}"
        body = ",\n".join(pad + item for item in items)
        return f"dict(\n{body})" if identifiers else "{\n" + body + "}"
    if isinstance(value, (list, tuple)):
        items = [_format(v, indent + 4) for v in value]
        opening, closing = ("[", "]") if isinstance(value, list) else ("(", ",)" if len(value) == 1 else ")")
        one_line = ", ".join(items)
        if len(one_line) + indent + 12 < WIDTH and "\n" not in one_line:
            return opening + one_line + closing
        return opening + "\n" + ",\n".join(pad + item for item in items) + ",\n" + " " * indent + closing
    return repr(value)


def render_config(run: dict, config_dir: Path | None = None) -> str:
    """The text of ``config.py`` for one run; ``config_dir``: where it is written
    (its ``_base_`` is given relative to it, so a moved checkout still runs it)."""
    family = run.get("backbone", "resnet")
    check_backbone(run, f"variant {run['variant']}")
    base = base_config(run)
    base_path = os.path.relpath(base, Path(config_dir).resolve()) if config_dir else str(base)
    budget = run.get("budget", f"e{run['epochs']}")
    lines = [
        f"# UPerNet ({model_name(run)}) on {run.get('dataset', {}).get('name', 'PASCAL VOC 2012')}, "
        f"run {run['variant']}/{budget}-s{run['seed']}.",
        f"# Rendered by the workflow (scripts/common/mmseg_config.py): the study's {base.name}",
        "# (MMSegmentation's own _base_ files and the study's fixed choices), and on top only",
        "# what this run sets. Repeat it by hand from the workflow directory with MMSeg's tools/train.py.",
        f"_base_ = [{base_path!r}]",
        "",
    ]
    if family == "convnext":
        lines += ["custom_imports = dict(imports='mmpretrain.models', allow_failed_imports=False)", ""]
    for name, value in config_values(run).items():
        comment = f"  # {COMMENTS[name]}" if name in COMMENTS else ""
        lines.append(f"{name} = {_format(value)}{comment}")
    return "\n".join(lines) + "\n"
