"""Render the MMSegmentation config of one run from templates/upernet_voc.py.tmpl.

Pure Python (no torch, no mmseg): the workflow renders configs on the login
node, and tests compare them with MMSeg's shipped ones.
"""

import string
from pathlib import Path

TEMPLATE = Path(__file__).resolve().parent / "templates" / "upernet_voc.py.tmpl"

# Known pretrained backbones: the URLs MMEngine's own tables give for them.
# The 8 hex digits before ".pth" are the start of the file's sha256 (torch.hub's convention).
PRETRAINED_URLS = {
    "open-mmlab://resnet18_v1c": "https://download.openmmlab.com/pretrain/third_party/resnet18_v1c-b5776b93.pth",
    "open-mmlab://resnet50_v1c": "https://download.openmmlab.com/pretrain/third_party/resnet50_v1c-2cccc1ad.pth",
    "open-mmlab://resnet101_v1c": "https://download.openmmlab.com/pretrain/third_party/resnet101_v1c-e67eebb6.pth",
    "torchvision://resnet18": "https://download.pytorch.org/models/resnet18-f37072fd.pth",
    "torchvision://resnet50": "https://download.pytorch.org/models/resnet50-0676ba61.pth",
    "torchvision://resnet101": "https://download.pytorch.org/models/resnet101-63fe2227.pth",
}
PRETRAINED_DIR = "resources/pretrained"

# Decode-head inputs per depth, as MMSeg's upernet_r18/_r50/_r101 configs set them.
HEAD_CHANNELS = {18: ([64, 128, 256, 512], 256), 50: ([256, 512, 1024, 2048], 1024), 101: ([256, 512, 1024, 2048], 1024)}
LOSSES = {
    "cross_entropy": "dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight={w})",
    "focal": "dict(type='FocalLoss', use_sigmoid=True, loss_weight={w})",
}
AUGMENT_DEFAULTS = {"random_resize": True, "flip": True, "photometric": True}
# Settings that change how a run is carried out, never its result: the workflow
# keeps them out of the rules' params, so editing them retrains nothing.
RUNTIME_SETTINGS = ("log_interval", "workers_per_gpu", "max_keep_checkpoints", "checkpoint_interval", "cudnn_benchmark")


class ConfigError(ValueError):
    pass


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


def check_pretrained_depth(pretrained, depth: int, where: str) -> None:
    if pretrained in PRETRAINED_URLS and pretrained.split("://")[1].split("_")[0] != f"resnet{depth}":
        raise ConfigError(f"{where}: pretrained {pretrained!r} does not fit depth {depth}")


def _pipeline(augment: dict) -> str:
    steps = ["dict(type='LoadImageFromFile')", "dict(type='LoadAnnotations')"]
    if augment["random_resize"]:
        steps.append("dict(type='RandomResize', scale=scale, ratio_range=(0.5, 2.0), keep_ratio=True)")
    else:
        steps.append("dict(type='Resize', scale=scale, keep_ratio=True)")
    steps.append("dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75)")
    if augment["flip"]:
        steps.append("dict(type='RandomFlip', prob=0.5)")
    if augment["photometric"]:
        steps.append("dict(type='PhotoMetricDistortion')")
    steps += ["dict(type='Pad', size=crop_size)", "dict(type='PackSegInputs')"]
    return "[\n" + "".join(f"    {s},\n" for s in steps) + "]"


def _dataset(train_set: dict, indent: str, delete: bool = False) -> str:
    # _delete_: replace the base config's train dataset instead of merging into it
    ann_file = train_set.get("ann_file", f"ImageSets/Segmentation/{train_set['split']}.txt")
    lines = ["_delete_=True,"] if delete else []
    lines += [
        "type='PascalVOCDataset',",
        "data_root=data_root,",
        f"data_prefix=dict(img_path='JPEGImages', seg_map_path='{train_set['labels']}'),",
        f"ann_file={ann_file!r},",
        "pipeline=train_pipeline)",
    ]
    return "dict(\n" + "\n".join(f"{indent}    {line}" for line in lines)


def _train_dataset(train_sets: list) -> str:
    if len(train_sets) == 1:
        return _dataset(train_sets[0], "    ", delete=True)
    members = "".join(f"            {_dataset(s, ' ' * 12)},\n" for s in train_sets)
    return f"dict(\n        _delete_=True,\n        type='ConcatDataset',\n        datasets=[\n{members}        ])"


def _train_lists(lists: list[dict]) -> str:
    """The lists of one epoch, as the training log shows them: file, ids, sha256."""
    if not lists:
        return "[]"
    items = "".join(
        f"    dict(ann_file={item['ann_file']!r}, images={item['images']}, sha256={item['sha256']!r}),\n"
        for item in lists
    )
    return "[\n" + items + "]"


def _backbone_init(pretrained) -> str:
    checkpoint = pretrained_file(pretrained)
    return "None" if checkpoint is None else f"dict(type='Pretrained', checkpoint={checkpoint!r})"


def _backbone_type(pretrained) -> str:
    # torchvision's ResNets have the plain stem; MMSeg's v1c weights the deep one.
    return "ResNet" if (pretrained or "").startswith("torchvision://") else "ResNetV1c"


def render_config(run: dict) -> str:
    """The text of ``config.py`` for one run (a dict of the run's settings)."""
    check_pretrained_depth(run["pretrained"], run["depth"], f"variant {run['variant']}")
    in_channels, aux_channels = HEAD_CHANNELS[run["depth"]]
    augment = {**AUGMENT_DEFAULTS, **run.get("augment", {})}
    amp = run["amp"]
    values = {
        "run_name": f"{run['variant']}/{run.get('budget', 'e%d' % run['epochs'])}-s{run['seed']}",
        "budget": repr(run.get("budget", f"e{run['epochs']}")),
        "train_images": run.get("train_images"),
        "iterations_per_epoch": run.get("iterations_per_epoch"),
        "train_lists": _train_lists(run.get("train_lists", [])),
        "gpus": run["gpus"],
        "batch_per_gpu": run["batch_per_gpu"],
        "base_lr": repr(run["base_lr"]),
        "base_batch_size": run["base_batch_size"],
        "max_epochs": run["epochs"],
        "val_interval": run["val_interval"],
        "checkpoint_interval": run["checkpoint_interval"],
        "seed": run["seed"],
        "crop_size": repr(tuple(run["crop_size"])),
        "scale": repr(tuple(run["scale"])),
        "data_root": repr(run["data_root"]),
        "work_dir": repr(run["work_dir"]),
        "workers": run["workers_per_gpu"],
        "persistent_workers": run["workers_per_gpu"] > 0,
        "backbone_type": _backbone_type(run["pretrained"]),
        "depth": run["depth"],
        "init_cfg": _backbone_init(run["pretrained"]),
        "in_channels": in_channels,
        "aux_in_channels": aux_channels,
        "head_channels": run["head_channels"],
        "aux_channels": run["head_channels"] // 2,
        "loss": LOSSES[run["loss"]].format(w=1.0),
        "aux_loss": LOSSES[run["loss"]].format(w=0.4),
        "train_pipeline": _pipeline(augment),
        "train_dataset": _train_dataset(run["train_sets"]),
        "momentum": run["momentum"],
        "weight_decay": run["weight_decay"],
        "optim_wrapper": "AmpOptimWrapper" if amp else "OptimWrapper",
        "poly_power": run["poly_power"],
        "eta_min": run["eta_min"],
        "log_interval": run["log_interval"],
        "max_keep_checkpoints": run["max_keep_checkpoints"],
        "cudnn_benchmark": run["cudnn_benchmark"],
    }
    return string.Template(TEMPLATE.read_text()).substitute(values)
