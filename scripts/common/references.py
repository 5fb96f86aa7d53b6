"""Is a run healthy? Its recipe, the published reference it is compared with, and
how the two differ (config/references.yaml; summary, per-class table, Findings,
`snakemake check`).

A run's recipe is what it will really do: total batch, the learning rate after
the linear scaling rule, optimizer steps per epoch and in all, crop, backbone
and stem, weights, norm, loss, augmentation. Its nearest reference is, in this
order, one of the same training data, backbone, depth and crop, then the one
whose schedule is closest in optimizer steps (a ratio: 19,860 steps meet 20k).

Plain Python + PyYAML (jsonschema to validate, scipy for a seed interval, both
imported where used): the login node plans with it.
"""

import math
from pathlib import Path

from common.config_files import load_config_file
from common.mmseg_config import AUGMENT_DEFAULTS, optimizer_recipe, resnet_type
from common.subsets import iterations_per_epoch
from common.voc import CLASSES

FLAG_POINTS = 3.0  # a run this far below its reference is flagged
ITERATIONS_TOLERANCE = 0.05  # schedules within 5% in optimizer steps are "the same"
SCHEMA = Path(__file__).resolve().parents[2] / "config" / "schemas" / "references.schema.yaml"


class ReferenceError(ValueError):
    pass


# ---- the references file -----------------------------------------------------------
def load_references(path, validate: bool = True) -> dict:
    """The references file with each reference's recipe made whole (its source's
    recipe, then its own keys). ReferenceError naming the file and entry otherwise."""
    path = Path(path)
    data = load_config_file(path)
    if validate:
        import jsonschema

        schema = load_config_file(SCHEMA)
        error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(schema).iter_errors(data))
        if error is not None:
            where = "".join(f"[{p!r}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
            raise ReferenceError(f"{path}: {where.lstrip('.') or 'top level'}: {error.message}")
    references = []
    for index, entry in enumerate(data["references"]):
        where = f"{path}: references[{index}] ({entry['name']!r})"
        if entry["source"] not in data["sources"]:
            raise ReferenceError(f"{where}: unknown source {entry['source']!r} ({', '.join(data['sources'])})")
        if entry["dataset"] not in data["datasets"]:
            raise ReferenceError(f"{where}: unknown dataset {entry['dataset']!r} ({', '.join(data['datasets'])})")
        recipe = {**data["sources"][entry["source"]]["recipe"], **entry["recipe"]}
        missing = [k for k in ("backbone", "stem", "depth", "pretrained", "crop") if k not in recipe]
        if missing:
            raise ReferenceError(f"{where}: its recipe (with its source's) lacks {', '.join(missing)}")
        if ("iterations" in recipe) == ("epochs" in recipe):
            raise ReferenceError(f"{where}: give its schedule as iterations or as epochs (one of them)")
        per_class = entry.get("per_class")
        if per_class is not None:
            if sorted(per_class) != sorted(CLASSES):
                raise ReferenceError(f"{where}: per_class must name the 21 VOC classes, each once")
            mean = sum(per_class.values()) / len(per_class)
            if abs(mean - entry["mIoU"]) > 0.01:
                raise ReferenceError(f"{where}: the mean of per_class is {mean:.2f}, not its mIoU {entry['mIoU']}")
        description = data["sources"][entry["source"]]["description"]
        references.append({**entry, "recipe": recipe, "source_description": description})
    return {"datasets": data["datasets"], "references": references}


# ---- a run's recipe ------------------------------------------------------------------
def dataset_of(train_sets: list[dict], datasets: dict) -> str | None:
    """The references' name of the data a variant trains on, or None."""

    def key(sets):
        return sorted((s["split"], s["labels"]) for s in sets)

    for name, dataset in datasets.items():
        if any(key(form) == key(train_sets) for form in dataset["train_sets"]):
            return name
    return None


def _subset_text(settings: dict) -> list[str]:
    subset = settings.get("subset")
    if not subset:
        return []
    amount = f"{subset['size']:,} images" if "size" in subset else f"{subset['fraction']:g} of them"
    return [f"subset: {amount} (subset_seed {subset['seed']})"]


def _backbone_recipe(settings: dict) -> dict:
    """Backbone family, its ResNet stem and depth (or Swin/ConvNeXt size) and width overrides."""
    if settings.get("backbone", "resnet") == "resnet":
        stem = "plain" if resnet_type(settings["pretrained"]) == "ResNet" else "v1c"
        return {"backbone": "resnet", "stem": stem, "depth": settings["depth"], **_overrides(settings)}
    size = settings.get("size", "tiny")
    return {"backbone": settings["backbone"], "depth": None, "size": size, **_overrides(settings)}


def _overrides(settings: dict) -> dict:
    return {"backbone_overrides": settings["backbone_overrides"]} if settings.get("backbone_overrides") else {}


def variant_recipe(settings: dict, official_data: bool, datasets: dict) -> dict:
    """What a variant's runs do (settings: the training settings with the variant's overrides)."""
    gpus, batch = settings["gpus"], settings["batch_per_gpu"]
    total = gpus * batch
    family = settings.get("backbone", "resnet")
    base_lr, base_batch, optimizer = optimizer_recipe(settings)
    return {
        # a subset is not the data a reference trained on: its recipe names no dataset
        "dataset": None if settings.get("subset") else dataset_of(settings["train_sets"], datasets),
        "train_sets": [f"{s['split']} ({s['labels']})" for s in settings["train_sets"]] + _subset_text(settings),
        "official_data": official_data,
        **_backbone_recipe(settings),
        "pretrained": settings["pretrained"],
        "head_channels": settings["head_channels"],
        "crop": list(settings["crop_size"]),
        "scale": list(settings["scale"]),
        "augment": {**AUGMENT_DEFAULTS, **settings["augment"]},
        "gpus": gpus,
        "batch_per_gpu": batch,
        "total_batch": total,
        "lr": base_lr * total / base_batch,
        "optimizer": optimizer,
        "schedule": {"type": "PolyLR", "power": settings["poly_power"], "eta_min": settings["eta_min"]}
        if family == "resnet" else {"type": "LinearLR warm-up + PolyLR", "power": 1.0, "eta_min": 0.0},
        # MMEngine reverts SyncBN to BN outside distributed training
        "norm": {"type": "SyncBN", "images": total} if gpus > 1 else {"type": "BN", "images": batch},
        "loss": settings["loss"],
        "amp": True if settings["amp"] == "fp16" else settings["amp"],  # false, true (fp16) or bf16
        # only when on: the recipes of runs from before the setting are unchanged
        **({"channels_last": True} if settings.get("channels_last") else {}),
    }


def run_recipe(recipe: dict, epochs: int, images: int) -> dict:
    """A variant's recipe for a run of ``epochs`` over ``images`` training images."""
    per_epoch = iterations_per_epoch(images, recipe["gpus"], recipe["batch_per_gpu"])
    return {**recipe, "epochs": epochs, "images": images, "iterations_per_epoch": per_epoch,
            "iterations": per_epoch * epochs}  # fmt: skip


# ---- the nearest reference -----------------------------------------------------------
def reference_iterations(reference: dict, recipe: dict, datasets: dict) -> int:
    """A reference's optimizer steps; one given in epochs of its data counts them at its
    own total batch, or at the run's where it published none."""
    ref = reference["recipe"]
    if "iterations" in ref:
        return ref["iterations"]
    batch = ref.get("total_batch") or recipe["total_batch"]
    return ref["epochs"] * math.ceil(datasets[reference["dataset"]]["images"] / batch)


def nearest_reference(recipe: dict, references: list[dict], datasets: dict) -> dict:
    """The reference a run is compared with: same data, backbone, depth and crop first
    (in that order), then the nearest schedule in optimizer steps (by ratio)."""

    def distance(reference):
        ref = reference["recipe"]
        steps = max(recipe["iterations"], 1)
        return (
            reference["dataset"] != recipe["dataset"],
            ref["backbone"] != recipe["backbone"],
            ref["depth"] != recipe["depth"],
            list(ref["crop"]) != list(recipe["crop"]),
            abs(math.log(reference_iterations(reference, recipe, datasets) / steps)),
        )

    return min(references, key=distance)


def published_reference(recipe: dict, references: list[dict]) -> dict | None:
    """A published per-class table of the same data, backbone, depth, crop and epochs."""
    for reference in references:
        ref = reference["recipe"]
        if (
            reference.get("per_class")
            and reference["dataset"] == recipe["dataset"]
            and (ref["backbone"], ref["depth"], list(ref["crop"])) == (recipe["backbone"], recipe["depth"], recipe["crop"])
            and ref.get("epochs") == recipe["epochs"]
        ):
            return reference
    return None


# ---- how a run differs from its reference ----------------------------------------------
def _pair(values) -> str:
    return "x".join(str(v) for v in values)


def _augment(augment: dict) -> str:
    on = [name.replace("_", " ") for name in ("random_resize", "flip", "photometric") if augment.get(name)]
    return ", ".join(on) or "none"


def _lr_at_16(lr, total_batch) -> float | None:
    return None if lr is None or not total_batch else lr / total_batch * 16


def compare_recipes(recipe: dict, reference: dict, datasets: dict) -> list[dict]:
    """Setting by setting: {setting, run, reference, differs}; a reference value that
    was not published never counts as a difference."""
    ref = reference["recipe"]
    rows = []

    def add(setting, mine, theirs, differs=None):
        if differs is None:
            differs = theirs is not None and mine != theirs
        rows.append({"setting": setting, "run": mine, "reference": "not published" if theirs is None else theirs,
                     "differs": bool(differs)})  # fmt: skip

    data = datasets.get(recipe["dataset"], {}).get("description") or " + ".join(recipe["train_sets"])
    mine = data + ("" if recipe["official_data"] else " (other archives than the official ones)")
    add("data", mine, datasets[reference["dataset"]]["description"],
        differs=recipe["dataset"] != reference["dataset"] or not recipe["official_data"])  # fmt: skip
    add("backbone", _backbone_text(recipe), _backbone_text(ref))
    add("pretrained", str(recipe["pretrained"]), str(ref["pretrained"]))
    add("head channels", recipe["head_channels"], ref.get("head_channels"))
    add("crop", _pair(recipe["crop"]), _pair(ref["crop"]))
    add("resize scale", _pair(recipe["scale"]), _pair(ref["scale"]) if ref.get("scale") else None)
    add("augmentation", _augment(recipe["augment"]), _augment(ref["augment"]) if ref.get("augment") else None)
    ref_batch, ref_gpus = ref.get("total_batch"), ref.get("gpus")
    theirs = None if ref_batch is None else str(ref_batch)
    if ref_batch and ref_gpus:
        theirs += f" ({ref_gpus} GPU x {ref_batch // ref_gpus})"
    add("total batch", f"{recipe['total_batch']} ({recipe['gpus']} GPU x {recipe['batch_per_gpu']})", theirs,
        differs=ref_batch is not None and ref_batch != recipe["total_batch"])  # fmt: skip
    mine_16 = _lr_at_16(recipe["lr"], recipe["total_batch"])
    theirs_16 = _lr_at_16(ref.get("lr"), ref_batch) or (ref["lr_per_image"] * 16 if ref.get("lr_per_image") else None)
    theirs = None
    if ref.get("lr") is not None:
        theirs = f"{ref['lr']:g} at batch {ref_batch}"
    elif theirs_16 is not None:
        theirs = f"{theirs_16:g} per 16 images (linear rule; batch not published)"
    add("lr", f"{recipe['lr']:g} at batch {recipe['total_batch']} (= {mine_16:g} per 16 images)", theirs,
        differs=theirs_16 is not None and not math.isclose(mine_16, theirs_16, rel_tol=1e-6))  # fmt: skip
    add("optimizer", _optimizer_text(recipe["optimizer"]), _optimizer_text(ref["optimizer"]) if ref.get("optimizer") else None)
    schedule = "{type} power {power:g} to {eta_min:g}"
    add("schedule", schedule.format(**recipe["schedule"]), schedule.format(**ref["schedule"]) if ref.get("schedule") else None)
    steps = reference_iterations(reference, recipe, datasets)
    theirs = f"{steps:,}"
    if "iterations" not in ref:
        theirs += f" ({ref['epochs']} epochs{'' if ref.get('total_batch') else ' at this run’s batch'})"
    add("iterations", f"{recipe['iterations']:,} ({recipe['iterations_per_epoch']:,} per epoch x {recipe['epochs']})",
        theirs, differs=abs(recipe["iterations"] / steps - 1) > ITERATIONS_TOLERANCE)  # fmt: skip
    norm = ref.get("norm")
    add("norm", _norm(recipe["norm"]), None if norm is None else _norm(norm),
        differs=norm is not None and (norm["type"], norm["images"] or recipe["norm"]["images"])
        != (recipe["norm"]["type"], recipe["norm"]["images"]))  # fmt: skip
    add("loss", recipe["loss"].replace("_", " "), ref["loss"].replace("_", " ") if ref.get("loss") else None)
    # a reference publishes AMP or not (its amp); AMP against fp32 is the difference, not the dtype
    add("precision", PRECISION[recipe["amp"]], None if "amp" not in ref else ("AMP" if ref["amp"] else "fp32"),
        differs="amp" in ref and bool(recipe["amp"]) != ref["amp"])  # fmt: skip
    if recipe.get("channels_last"):
        add("memory format", "channels_last (NHWC)", "NCHW (the default)", differs=True)
    return rows


PRECISION = {False: "fp32", True: "AMP fp16", "fp16": "AMP fp16", "bf16": "AMP bf16"}  # by training.amp


def _backbone_text(recipe: dict) -> str:
    if recipe.get("backbone", "resnet") == "resnet":
        return f"{ {'v1c': 'ResNetV1c', 'plain': 'ResNet'}[recipe['stem']]}-{recipe['depth']}"
    return f"{recipe['backbone']}-{recipe['size']}"


def _optimizer_text(optimizer: dict) -> str:
    momentum = f" momentum {optimizer['momentum']:g}," if "momentum" in optimizer else ""
    return f"{optimizer['type']}{momentum} weight decay {optimizer['weight_decay']:g}"


def _norm(norm: dict) -> str:
    if norm["type"] == "BN":
        return f"BN over {norm['images']} images (one process: MMEngine runs SyncBN as BN)"
    if norm["images"] is None:
        return "SyncBN over the total batch (not published)"
    return f"SyncBN over {norm['images']} images"


def recipe_warnings(recipe: dict, reference: dict) -> list[str]:
    """The known reproduction traps that apply to a run."""
    ref = reference["recipe"]
    warnings = []
    if recipe["pretrained"] is None and recipe["official_data"]:
        warnings.append(
            "pretrained: null on the official data: random init trains far below every "
            "published (ImageNet-initialised) reference"
        )
    ref_batch, ref_lr = ref.get("total_batch"), ref.get("lr")
    # the reference's lr carried over unchanged to another batch (a deliberately other
    # lr is a difference of the lr row, not this trap)
    if ref_batch and ref_lr and ref_batch != recipe["total_batch"] and math.isclose(recipe["lr"], ref_lr, rel_tol=1e-6):
        scaled = ref_lr * recipe["total_batch"] / ref_batch
        warnings.append(
            f"total batch {recipe['total_batch']} differs from the reference's {ref_batch} without linear "
            f"scaling: lr {recipe['lr']:g} is the reference's own, where the rule gives {scaled:g} "
            f"(training.base_lr {ref_lr:g} with base_batch_size {ref_batch})"
        )
    if recipe["norm"]["type"] == "BN" and (ref.get("norm") or {}).get("type") == "SyncBN":
        warnings.append(
            f"SyncBN with one process: MMEngine runs it as BN, so batch statistics come from "
            f"{recipe['batch_per_gpu']} images per step, not the reference's "
            f"{ref['norm']['images'] or 'total batch'}"
        )
    if recipe.get("stem") == "plain" and ref.get("stem") == "v1c":
        warnings.append(
            "torchvision weights (ResNet, plain stem) compared with a v1c reference (ResNetV1c, "
            "deep stem, open-mmlab weights): MMSeg's published numbers are for the v1c backbone"
        )
    return warnings


def check_run(recipe: dict, references: dict) -> dict:
    """A run's recipe against its nearest reference: the rows, the differences, the traps."""
    reference = nearest_reference(recipe, references["references"], references["datasets"])
    rows = compare_recipes(recipe, reference, references["datasets"])
    return {
        "reference": reference,
        "rows": rows,
        "differences": [r["setting"] for r in rows if r["differs"]],
        "warnings": recipe_warnings(recipe, reference),
    }


# ---- far below? -------------------------------------------------------------------------
def seed_interval(values: list[float], confidence: float) -> tuple[float, float]:
    """Student-t interval of the mean over seeds (two or more values)."""
    from scipy import stats

    n = len(values)
    mean = sum(values) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = stats.t.ppf(0.5 + confidence / 2, n - 1) * sd / math.sqrt(n)
    return mean - half, mean + half


def reference_flag(miou: float, seeds_miou: list[float], reference_miou: float, confidence: float) -> str:
    """'' for a healthy run; else why it is far below its reference: more than
    FLAG_POINTS below, or, with two or more seeds, the reference above the seed
    interval of the mean."""
    reasons = []
    if miou < reference_miou - FLAG_POINTS:
        reasons.append(f"{reference_miou - miou:.1f} points below")
    if len(seeds_miou) >= 2:
        low, high = seed_interval(seeds_miou, confidence)
        if reference_miou > high:
            reasons.append(f"reference above the {confidence:.0%} seed interval [{low:.1f}, {high:.1f}]")
    return "far below: " + "; ".join(reasons) if reasons else ""
