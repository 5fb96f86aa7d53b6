# What the rules share, in the order a reader needs it:
#   1. the config: read, normalised, validated, cross-checked (every error before any job)
#   2. paths and wildcards
#   3. data sources: archives, downloads, the data stage's outputs
#   4. the run grid: one trained model per variant x epoch count x seed
#   5. resources of the GPU jobs, and what the sweep costs
#   6. the report: its two views, and the runs each figure reads
#   7. published references: each variant's recipe, what `snakemake check` compares
#   8. attribution: which runs separate the compared change into its parts
# Input functions that rules call are named get_*.

import hashlib
import os
import re
import sys

import yaml

# The planning helpers are plain Python: a login node needs no torch or mmseg.
sys.path.insert(0, os.path.join(workflow.basedir, "scripts"))
from common.code import code_digest
from common.config_errors import ConfigSchemaError, validate_config, whole_numbers
from common.config_files import ConfigFileError, expand_path
from common.cost import resume_point, runtime_request, sweep_summary, train_minutes
from common.mmseg_config import (
    AUGMENT_DEFAULTS,
    PRETRAINED_URLS,
    RUNTIME_SETTINGS,
    ConfigError,
    check_backbone,
    pretrained_file,
)
from common.references import ReferenceError, load_references, published_reference
from common.references import run_recipe, variant_recipe
from common.subsets import SubsetError, budget_epochs, budget_name, check_labels, member_name
from common.subsets import annotation_source, longest_budget, parse_budget, subset_name, subset_size
from common.attribution import model_key, plan_attribution
from common.voc import CLASSES as VOC_CLASSES
from common.voc import OFFICIAL_COUNTS, palette, read_id_list


# ==== 1. the config ===============================================================
def _validate_config():
    """Numbers from the command line made numbers, the schema's defaults filled in, and a
    wrong key or value failed before any job, one line each naming the key and its file."""
    # config/config.yaml (unless --replace-workflow-config), then the --configfile files
    cli_files = list(workflow.overwrite_configfiles)
    replaced = workflow.config_settings.replace_workflow_config
    files = [f for f in workflow.configfiles if f not in cli_files and not replaced] + cli_files
    try:
        for key in ("epochs", "iterations", "seeds"):
            whole_numbers(config, key)
        validate_config(
            config,
            workflow.source_path("../config/schemas/config.schema.yaml"),
            files,
            workflow.config_settings.config,
        )
    except ConfigSchemaError as error:
        raise WorkflowError(str(error))


_validate_config()


DATA_SOURCES = ("voc", "sbd", "coco_images", "coco_annotations")
BACKBONE_KEYS = ("backbone", "depth", "size", "pretrained")


def _expand_paths():
    """`~` and $VARIABLES in every path key (an unset variable is an error)."""

    def expand(section, key, where):
        value = section.get(key)
        if isinstance(value, str) and "://" not in value:
            try:
                section[key] = os.path.normpath(expand_path(value, where))
            except ConfigFileError as error:
                raise WorkflowError(str(error))

    expand(config, "results", "results")
    for name in DATA_SOURCES:
        expand(config["data"][name], "archive", f"data.{name}.archive")
    expand(config["training"], "pretrained", "training.pretrained")
    expand(config["predict"], "images", "predict.images")
    for name, variant in config["variants"].items():
        expand(variant, "pretrained", f"variants.{name}.pretrained")
    for name, dataset in config["datasets"].items():
        for key in ("folder", "archive"):
            expand(dataset, key, f"datasets.{name}.{key}")


_expand_paths()
# a variant on a dataset of `datasets` trains on its train list unless it names lists
DATASET_TRAIN_SETS = [{"split": "train", "labels": "SegmentationClass"}]
for _variant in config["variants"].values():
    if "dataset" in _variant:
        _variant.setdefault("train_sets", DATASET_TRAIN_SETS)


def check_config():
    """The checks across keys that a schema cannot express."""
    for name in config["report"]["compare"]:
        if name not in config["variants"] or "dataset" in config["variants"][name]:
            raise WorkflowError(
                f"report.compare: {name!r} is not a variant on VOC ({', '.join(config['variants'])})"
            )
    estimates = config["estimates"]
    if estimates["gpu_model"] not in estimates["images_per_second"]:
        raise WorkflowError(
            f"estimates.gpu_model: {estimates['gpu_model']!r} is not in estimates.images_per_second"
        )
    for name in DATA_SOURCES:
        archive = config["data"][name]["archive"]
        if archive is not None and not os.path.isfile(archive):
            raise WorkflowError(
                f"data.{name}.archive: no such file {archive!r} (set it to null to download data.{name}.url)"
            )
    check_datasets()
    for name, variant in config["variants"].items():
        if "train_sets" not in variant:
            raise WorkflowError(
                f"variants.{name}: no train_sets (and no dataset whose train list it would be)"
            )
        check_dataset_variant(name, variant)
        model = {k: variant.get(k, config["training"][k]) for k in BACKBONE_KEYS}
        if "init_from" in variant:  # the source run's weights replace the pretrained ones
            model["pretrained"] = None
        where = f"variants.{name}" if set(variant) & {*BACKBONE_KEYS} else "training"
        try:
            check_backbone(model, where)
            weights = pretrained_file(model["pretrained"])
        except ConfigError as error:
            raise WorkflowError(str(error))
        pretrained = model["pretrained"]
        if (
            weights
            and "init_from" not in variant
            and pretrained not in PRETRAINED_URLS
            and not os.path.isfile(weights)
        ):
            raise WorkflowError(f"{where}.pretrained: no such file {weights!r}")
        members = [member_name(s) for s in variant["train_sets"]]
        if len(set(members)) < len(members):
            raise WorkflowError(
                f"variants.{name}.train_sets: a list is given twice ({', '.join(members)})"
            )
        try:
            for index, train_set in enumerate(variant["train_sets"]):
                check_labels(train_set, f"variants.{name}.train_sets[{index}]")
        except SubsetError as error:
            raise WorkflowError(str(error))
        if "subset_seed" in variant and "subset" not in variant:
            raise WorkflowError(f"variants.{name}.subset_seed: the variant has no subset")
        if not variant_budgets(name):
            raise WorkflowError(
                f"variants.{name}: no run to train (its epochs and iterations are both empty)"
            )


def check_datasets():
    for name, dataset in config["datasets"].items():
        where = f"datasets.{name}"
        if ("folder" in dataset) == ("archive" in dataset):
            raise WorkflowError(f"{where}: give either folder or archive (a tar of the folder)")
        if "folder" in dataset and not os.path.isdir(dataset["folder"]):
            raise WorkflowError(f"{where}.folder: no such folder {dataset['folder']!r}")
        if "archive" in dataset and not os.path.isfile(dataset["archive"]):
            raise WorkflowError(f"{where}.archive: no such file {dataset['archive']!r}")
        if "folder" in dataset and ("md5" in dataset or dataset["root"]):
            raise WorkflowError(f"{where}: md5 and root belong to an archive, not a folder")


def check_dataset_variant(name, variant):
    """A variant on a dataset of `datasets`: trains on that dataset's own lists."""
    if "dataset" not in variant:
        return
    if variant["dataset"] not in config["datasets"]:
        known = ", ".join(config["datasets"]) or "none"
        raise WorkflowError(
            f"variants.{name}.dataset: {variant['dataset']!r} is not in datasets ({known})"
        )
    for index, train_set in enumerate(variant["train_sets"]):
        if train_set["labels"] != "SegmentationClass" or train_set["split"] not in ("train", "val"):
            raise WorkflowError(
                f"variants.{name}.train_sets[{index}]: a dataset of `datasets` has the lists train and "
                "val, read with labels SegmentationClass"
            )
    if "subset" in variant:
        raise WorkflowError(
            f"variants.{name}: subsets are drawn from VOC lists, not from a dataset"
        )


def variant_budgets(name):
    """Budgets of variant `name`: e<epochs> then i<iterations> (the study's, or its own)."""
    variant = config["variants"][name]
    return [
        budget_name(kind, amount)
        for kind in ("epochs", "iterations")
        for amount in variant.get(kind, config[kind])
    ]


check_config()


# ==== 2. paths and wildcards =======================================================
# Data live in a folder named after the archives they come from, results in the
# config's own folder: the demo and a real study never share either.
def _archive_key(md5, where):
    """8 digits of an archive's md5, or, unchecked, a hash of where it comes from."""
    if md5:
        return md5.lower()[:8]
    return f"nomd5-{hashlib.sha256(where.encode()).hexdigest()[:8]}"


def _source_key(name):
    """The key of data source `name` (see _archive_key)."""
    source = config["data"][name]
    where = os.path.abspath(source["archive"]) if source["archive"] else source["url"]
    return _archive_key(source["md5"], where)


DATA_KEY = f"voc-{_source_key('voc')}_sbd-{_source_key('sbd')}"
DATA = f"resources/data/{DATA_KEY}"
VOC = f"{DATA}/VOCdevkit/VOC2012"
SBD = f"{DATA}/VOCdevkit/VOCaug/dataset"
SPLITS = f"{VOC}/ImageSets/Segmentation"
OUT = config["results"]  # this study's runs, tables, figures
# a run: a variant trained for a budget (e<epochs> or i<iterations>) from a seed
RUN = f"{OUT}/runs/{{variant}}/{{budget}}-s{{seed}}"  # a run's outputs and its jobs' logs
WORK = (
    f"{OUT}/work/{{variant}}/{{budget}}-s{{seed}}"  # its checkpoints (never deleted by Snakemake)
)
SUBSETS = f"{SPLITS}/subsets"  # the lists of variants' subsets
SNAPSHOT = f"{OUT}/snapshot"
# sets from outside VOC, in VOC's layout (evaluation.ood)
COCO_KEY = f"images-{_source_key('coco_images')}_annotations-{_source_key('coco_annotations')}"
COCO_VOC = f"resources/coco_voc/{COCO_KEY}"
COCO_EXPECTED_IMAGES = None  # kept images of the official val2017 (to be measured)
OOD_SETS = {
    "coco": {
        "images": f"{COCO_VOC}/JPEGImages",
        "labels": f"{COCO_VOC}/SegmentationClass",
        "list": f"{COCO_VOC}/val.txt",
    }
}


def _one_of(names):
    """A wildcard regex matching exactly these names (nothing when there are none)."""
    return "|".join(re.escape(name) for name in names) or "(?!)"


# your own datasets (config `datasets`): a folder as it is, or an archive extracted
# into a folder named after its md5; each checked into <results>/datasets/<name>.json
def _dataset_folder(name):
    dataset = config["datasets"][name]
    if "folder" in dataset:
        return dataset["folder"]
    key = _archive_key(dataset.get("md5"), os.path.abspath(dataset["archive"]))
    return f"resources/datasets/{name}-{key}"


DATASET_ROOTS = {name: _dataset_folder(name) for name in config["datasets"]}
EXTRACTED_DATASETS = {
    os.path.basename(DATASET_ROOTS[name]): name
    for name, dataset in config["datasets"].items()
    if "archive" in dataset
}
DATASET_CHECK = f"{OUT}/datasets/{{dataset}}.json"


wildcard_constraints:
    archive=r"[^/]+",
    dataset=_one_of(config["datasets"]),
    extracted=_one_of(EXTRACTED_DATASETS),
    variant=_one_of(config["variants"]),
    budget=r"[ei]\d+",
    seed=r"\d+",
    subset=r"[^/]+",
    member=r"[^/]+",
    ood="|".join(OOD_SETS),
    view=f"{re.escape(OUT)}|{re.escape(SNAPSHOT)}",


def code(script):
    """Param: the content hash of scripts/<script> and the project modules it imports."""
    return code_digest(os.path.join(workflow.basedir, "scripts", script))


# ==== 3. data sources ==============================================================
def _official_md5s():
    """The md5s of the official archives: the schema's defaults."""
    with open(workflow.source_path("../config/schemas/config.schema.yaml")) as handle:
        sources = yaml.safe_load(handle)["properties"]["data"]["properties"]
    return {name: sources[name]["properties"]["md5"]["default"] for name in DATA_SOURCES}


OFFICIAL_MD5 = _official_md5s()


def archive_path(name):
    """The archive of data source `name`: the configured file, or where it is downloaded to."""
    source = config["data"][name]
    if source["archive"] is None:
        return f"resources/archives/{os.path.basename(source['url'].rstrip('/'))}"
    return source["archive"]


def _download_source(wildcards):
    """The config entry whose archive resources/archives/{archive} is."""
    for name, source in config["data"].items():
        if archive_path(name) == f"resources/archives/{wildcards.archive}":
            return source
    raise WorkflowError(f"no data source downloads to resources/archives/{wildcards.archive}")


def get_download_url(wildcards):
    return _download_source(wildcards)["url"]


def get_download_md5(wildcards):
    return _download_source(wildcards)["md5"]


def is_official(name):
    md5 = config["data"][name]["md5"]
    return md5 is not None and md5.lower() == OFFICIAL_MD5[name]


def official_counts():
    """Which list sizes to check against VOC's official numbers."""
    counts = []
    if is_official("voc"):
        counts += ["train", "val"]
        if is_official("sbd"):
            counts += ["trainaug", "aug"]
    return counts


def data_stage_outputs():
    return [
        f"{VOC}/JPEGImages",
        f"{VOC}/SegmentationClass",
        f"{VOC}/SegmentationClassAug",
        f"{VOC}/SegmentationClassSBD",
        *(f"{SPLITS}/{split}.txt" for split in ("train", "val", "trainaug", "aug", "train_sbd")),
    ]


# ==== 4. the run grid ==============================================================
ALL_RUNS = [
    {"variant": variant, "budget": budget, "seed": seed}
    for variant in config["variants"]
    for budget in variant_budgets(variant)
    for seed in config["variants"][variant].get("seeds", config["seeds"])
]
# The VOC study (every table and figure of the report) and the variants trained on
# datasets of `datasets` (compared in tables/finetune and figures/finetune).
STUDY_VARIANTS = [name for name in config["variants"] if "dataset" not in config["variants"][name]]
DATASET_VARIANTS = [name for name in config["variants"] if name not in STUDY_VARIANTS]
RUNS = [run for run in ALL_RUNS if run["variant"] in STUDY_VARIANTS]
DATASET_RUNS = [run for run in ALL_RUNS if run["variant"] in DATASET_VARIANTS]
MODEL_OVERRIDES = ("backbone", "depth", "size", "backbone_overrides", "loss", "pretrained")


def _variant_settings(name):
    """The result-changing settings of variant `name` (training's, with its overrides)."""
    training, variant = config["training"], config["variants"][name]
    settings = {k: v for k, v in training.items() if k not in RUNTIME_SETTINGS}
    settings.update({k: variant[k] for k in MODEL_OVERRIDES if k in variant})
    settings["augment"] = {**AUGMENT_DEFAULTS, **training["augment"], **variant.get("augment", {})}
    settings["train_sets"] = variant["train_sets"]
    if "subset" in variant:
        settings["subset"] = {**variant["subset"], "seed": variant.get("subset_seed", 0)}
    if "dataset" in variant:
        classes = config["datasets"][variant["dataset"]]["classes"]
        colours = palette()
        settings["dataset"] = {
            "name": variant["dataset"],
            "classes": classes,
            "palette": [colours[3 * i : 3 * i + 3] for i in range(len(classes))],
        }
    return settings


VARIANT_SETTINGS = {name: _variant_settings(name) for name in config["variants"]}
# what a fine-tuned variant shares with the run it starts from
INIT_MODEL_KEYS = ("backbone", "depth", "size", "backbone_overrides", "head_channels")


def _init_source(name):
    """The run variant `name` starts from (init_from), checked: a variant of the config,
    one budget, the same model, no cycle."""
    spec, where = config["variants"][name]["init_from"], f"variants.{name}.init_from"
    source = spec["variant"]
    if source not in config["variants"]:
        raise WorkflowError(
            f"{where}.variant: {source!r} is not a variant ({', '.join(config['variants'])})"
        )
    if ("epochs" in spec) == ("iterations" in spec):
        raise WorkflowError(
            f"{where}: give the source run's epochs or its iterations (one of them)"
        )
    kind = "epochs" if "epochs" in spec else "iterations"
    check_init_run(source, kind, spec[kind], spec.get("seed", 0), where)
    seen, current = [name], source
    while current:
        if current in seen:
            raise WorkflowError(f"{where}: a cycle of init_from ({' -> '.join(seen + [current])})")
        seen.append(current)
        current = config["variants"][current].get("init_from", {}).get("variant")
    mine, theirs = VARIANT_SETTINGS[name], VARIANT_SETTINGS[source]
    for key in INIT_MODEL_KEYS:
        if mine.get(key) != theirs.get(key):
            raise WorkflowError(
                f"{where}: {key} is {mine.get(key)!r} here but {theirs.get(key)!r} in {source}: "
                "fine-tuning loads the source's weights into the same model"
            )
    return {"variant": source, "budget": budget_name(kind, spec[kind]), "seed": spec.get("seed", 0)}


def check_init_run(source, kind, amount, seed, where):
    """init_from names a run of the grid: one the sweep trains, evaluates and counts
    (a typo must not train an extra run that nothing reports)."""
    variant = config["variants"][source]
    grid, seeds = variant.get(kind, config[kind]), variant.get("seeds", config["seeds"])
    own = f"variants.{source}.{kind}"
    if amount not in grid:
        what = "epoch counts" if kind == "epochs" else "iteration budgets"
        raise WorkflowError(
            f"{where}.{kind}: {source} has no run of {amount} {kind} in the grid (its {what}: "
            f"{', '.join(map(str, grid)) or 'none'}); name one of them, or add {amount} to "
            f"{own if kind in variant else f'{kind} (or {own})'} to train, evaluate and count it"
        )
    if seed not in seeds:
        raise WorkflowError(
            f"{where}.seed: {source} has no run of seed {seed} in the grid (its seeds: "
            f"{', '.join(map(str, seeds))})"
        )


def _class_count(name):
    return len(VARIANT_SETTINGS[name].get("dataset", {}).get("classes", VOC_CLASSES))


INIT_SOURCES = {
    name: _init_source(name)
    for name in config["variants"]
    if "init_from" in config["variants"][name]
}
for _name, _source in INIT_SOURCES.items():
    VARIANT_SETTINGS[_name]["pretrained"] = None  # the source run's weights replace them
    VARIANT_SETTINGS[_name]["init_from"] = {
        "run": f"{_source['variant']}/{_source['budget']}-s{_source['seed']}",
        "checkpoint": f"{OUT}/init/{_name}.pth",
        # heads are loaded too when both predict the same classes
        "heads": _class_count(_name) == _class_count(_source["variant"]),
    }


# When jobs wait for a free slot (cores here, the profile's `jobs` on a cluster):
# the data preparation training waits for, the run configs and the init weights of
# fine-tuned runs go first, and so do the runs another variant starts from
# (init_from), whose fine-tuned runs cannot start before them.
DATA_PRIORITY = 1
INIT_SOURCE_RUNS = {
    (source["variant"], source["budget"], str(source["seed"])) for source in INIT_SOURCES.values()
}


def get_train_priority(wildcards):
    return int((wildcards.variant, wildcards.budget, wildcards.seed) in INIT_SOURCE_RUNS)


def variant_subset(name):
    """The subset folder name of variant `name`, or None when it trains on whole lists."""
    settings = VARIANT_SETTINGS[name]
    if "subset" not in settings:
        return None
    spec = {k: v for k, v in settings["subset"].items() if k != "seed"}
    return subset_name(settings["train_sets"], spec, settings["subset"]["seed"])


# Every subset of the config, by folder name: its lists and how many images it keeps.
SUBSET_SPECS = {
    variant_subset(name): VARIANT_SETTINGS[name]["subset"]
    for name in config["variants"]
    if variant_subset(name)
}
SUBSET_SETS = {
    variant_subset(name): VARIANT_SETTINGS[name]["train_sets"]
    for name in config["variants"]
    if variant_subset(name)
}


def variant_lists(name):
    """The lists variant `name` trains on, one per train set: its subset's, or the whole lists."""
    settings, subset = VARIANT_SETTINGS[name], variant_subset(name)
    if subset:
        return [f"{SUBSETS}/{subset}/{member_name(s)}.txt" for s in settings["train_sets"]]
    return [f"{variant_lists_folder(name)}/{s['split']}.txt" for s in settings["train_sets"]]


def variant_root(name):
    """The data root variant `name` trains and is evaluated on: VOC, or its dataset's folder."""
    dataset = config["variants"][name].get("dataset")
    return DATASET_ROOTS[dataset] if dataset else VOC


def variant_lists_folder(name):
    return f"{variant_root(name)}/ImageSets/Segmentation"


VARIANT_LISTS = {name: variant_lists(name) for name in config["variants"]}


def get_subset_lists(wildcards):
    """The whole lists a subset is drawn from."""
    return [f"{SPLITS}/{s['split']}.txt" for s in SUBSET_SETS[wildcards.subset]]


def get_subset_members(wildcards):
    return [member_name(s) for s in SUBSET_SETS[wildcards.subset]]


def get_subset_spec(wildcards):
    return _canonical(SUBSET_SPECS[wildcards.subset])


def _canonical(value):
    """Dicts with sorted keys, all the way down: Snakemake compares params as text,
    and reordering keys in a YAML file must not retrain anything."""
    if isinstance(value, dict):
        return {key: _canonical(value[key]) for key in sorted(value)}
    if isinstance(value, (list, tuple)):
        return [_canonical(item) for item in value]
    return value


def get_run_settings(wildcards):
    """Everything that determines the result of run {variant}/{budget}-s{seed}; the
    epochs of an iteration budget follow from the lists when the config is rendered."""
    settings = dict(VARIANT_SETTINGS[wildcards.variant])
    root = variant_root(wildcards.variant)
    settings["train_sets"] = [
        {**s, "ann_file": os.path.relpath(path, root)}
        for s, path in zip(settings["train_sets"], VARIANT_LISTS[wildcards.variant])
    ]
    return _canonical(
        {
            **settings,
            "variant": wildcards.variant,
            "budget": wildcards.budget,
            "seed": int(wildcards.seed),
            "data_root": root,
            "work_dir": WORK.format(**wildcards),
        }
    )


def get_run_lists(wildcards):
    """The training lists of a run (its config's epoch count and ann_files come from them)."""
    return VARIANT_LISTS[wildcards.variant]


def get_train_data(wildcards):
    """The lists and label folders a run reads, the val set, and its backbone weights."""
    settings, root = VARIANT_SETTINGS[wildcards.variant], variant_root(wildcards.variant)
    inputs = [f"{root}/JPEGImages", f"{variant_lists_folder(wildcards.variant)}/val.txt"]
    inputs += [f"{root}/SegmentationClass", *VARIANT_LISTS[wildcards.variant]]
    inputs += [f"{root}/{train_set['labels']}" for train_set in settings["train_sets"]]
    if "dataset" in settings:  # checked: labels, lists and classes agree
        inputs.append(DATASET_CHECK.format(dataset=settings["dataset"]["name"]))
    if "init_from" in settings:
        inputs.append(settings["init_from"]["checkpoint"])
    weights = pretrained_file(settings["pretrained"])
    if weights:
        inputs.append(weights)
    return sorted(set(inputs))


def get_val_data(wildcards):
    """The images, labels and list a run is evaluated on: VOC val, or its dataset's val."""
    root = variant_root(wildcards.variant)
    return {
        "images": f"{root}/JPEGImages",
        "labels": f"{root}/SegmentationClass",
        "val": f"{variant_lists_folder(wildcards.variant)}/val.txt",
    }


def get_init_source(wildcards):
    """The final.pth of the run variant {variant} starts from."""
    return f"{RUN.format(**INIT_SOURCES[wildcards.variant])}/final.pth"


# The training-image sample of each set of training lists (evaluation.train_sample):
# variants that train on the same lists (the same subset) share it.
def _sample_name(variant):
    sets = variant_subset(variant) or "+".join(
        member_name(s) for s in VARIANT_SETTINGS[variant]["train_sets"]
    )
    return f"{sets}_n{config['evaluation']['train_sample']}_s{config['evaluation']['sample_seed']}"


SAMPLES = {_sample_name(v): v for v in STUDY_VARIANTS}


def get_train_sample(wildcards):
    """The sample folder of run {variant}'s training images."""
    return f"{DATA}/train_samples/{_sample_name(wildcards.variant)}"


def get_sample_train_sets(wildcards):
    return _canonical(VARIANT_SETTINGS[SAMPLES[wildcards.sample]]["train_sets"])


def get_sample_lists(wildcards):
    return VARIANT_LISTS[SAMPLES[wildcards.sample]]


def get_sample_label_dirs(wildcards):
    return [
        f"{VOC}/{s['labels']}" for s in VARIANT_SETTINGS[SAMPLES[wildcards.sample]]["train_sets"]
    ]


def get_pretrained_url(wildcards):
    for name, url in PRETRAINED_URLS.items():
        if url.rsplit("/", 1)[1] == wildcards.weights:
            return url
    raise WorkflowError(f"no known weights are called {wildcards.weights}")


# The evaluations beyond VOC val that the config asks for, by their folder in a
# run: its training-image sample and each out-of-distribution set. Rule
# evaluate_upernet runs them in the job that evaluates on VOC val.
EXTRA_EVALUATIONS = ["train_sample"] if config["evaluation"]["train_sample"] else []
EXTRA_EVALUATIONS += [f"ood/{name}" for name in config["evaluation"]["ood"]]
EVALUATION_FILES = {
    "metrics": "metrics.json",
    "confusion": "confusion.npy",
    "per_image": "confusion_per_image.npz",
}


def evaluation_key(folder):
    """The output name of an evaluation folder: ood/coco -> ood_coco."""
    return re.sub(r"\W", "_", folder)


# a run of the VOC study, and a run on a dataset of `datasets`: each evaluated by its own rule
STUDY_RUN = f"{OUT}/runs/{{variant,{_one_of(STUDY_VARIANTS)}}}/{{budget}}-s{{seed}}"
DATASET_RUN = f"{OUT}/runs/{{variant,{_one_of(DATASET_VARIANTS)}}}/{{budget}}-s{{seed}}"
EXTRA_EVALUATION_OUTPUTS = {
    f"{evaluation_key(folder)}_{kind}": f"{STUDY_RUN}/{folder}/{name}"
    for folder in EXTRA_EVALUATIONS
    for kind, name in EVALUATION_FILES.items()
}


def extra_evaluations():
    """The per-run files of the evaluations beyond VOC val that the config asks for."""
    return [f"{folder}/confusion_per_image.npz" for folder in EXTRA_EVALUATIONS]


def get_evaluation_data(wildcards):
    """VOC val, the run's training-image sample and the ood sets: what evaluate_upernet reads."""
    inputs = get_val_data(wildcards)
    if config["evaluation"]["train_sample"]:
        inputs["sample"] = get_train_sample(wildcards)
    for name in config["evaluation"]["ood"]:
        inputs.update({f"ood_{name}_{key}": path for key, path in OOD_SETS[name].items()})
    return inputs


def run_outputs():
    """Every run's files: VOC runs' evaluations, and dataset runs' on their own val."""
    names = ["metrics.json", "history.csv", "confusion.npy", *extra_evaluations()]
    if config["evaluation"]["tta"]:
        names.append("metrics_tta.json")
    outputs = [f"{RUN.format(**run)}/{name}" for run in RUNS for name in names]
    return outputs + [f"{RUN.format(**run)}/{n}" for run in DATASET_RUNS for n in DATASET_RUN_FILES]


DATASET_RUN_FILES = ["metrics.json", "history.csv", "confusion_per_image.npz"]


# ==== 5. resources and cost ========================================================
# With more than one GPU the job trains with one process per GPU: on SLURM the
# plugin then submits one task per GPU and runs the job in the batch step
# (its `mpi` mode), where the training script starts the processes with srun.
TRAIN_GPUS = config["training"]["gpus"]
MULTI_GPU = TRAIN_GPUS > 1
TRAIN_TASKS = TRAIN_GPUS if MULTI_GPU else None
TRAIN_TASKS_PER_GPU = 1 if MULTI_GPU else None
TRAIN_LAUNCHER = "srun" if MULTI_GPU else None
IMAGES_PER_SECOND = config["estimates"]["images_per_second"][config["estimates"]["gpu_model"]]


def planned_split_size(split):
    """Images in a list, for planning: VOC's official count when the official
    archives are configured, else the configured estimate (never a list on disk,
    which may belong to other data)."""
    if split in official_counts():
        return OFFICIAL_COUNTS[split]
    return config["estimates"]["split_sizes"].get(split, 0)


def dataset_list_size(variant, split):
    """Ids of a list of a variant's own dataset, for planning: counted where the list
    exists (a folder, or an archive extracted before), else 0 (the runtime request
    counts them when the job is submitted)."""
    path = f"{variant_lists_folder(variant)}/{split}.txt"
    return len(read_id_list(path)) if os.path.isfile(path) else 0


def planned_images(variant, split_size=planned_split_size):
    """Training images of variant `variant`: its lists' sizes, or its subset's."""
    settings = VARIANT_SETTINGS[variant]
    if "dataset" in settings:
        return sum(dataset_list_size(variant, s["split"]) for s in settings["train_sets"])
    total = sum(split_size(s["split"]) for s in settings["train_sets"])
    if "subset" not in settings:
        return total
    spec = {k: v for k, v in settings["subset"].items() if k != "seed"}
    if not total:  # sizes unknown before the data stage (no official count, no estimate)
        return spec.get("size", 0)
    return subset_size(spec, total, f"variants.{variant}")


def check_subsets():
    """A subset that does not fit its set fails before any job, naming the variant
    (with planned sizes; the job that draws it checks the real lists again)."""
    for name, settings in VARIANT_SETTINGS.items():
        if "subset" in settings:
            total = sum(planned_split_size(s["split"]) for s in settings["train_sets"])
            spec = {k: v for k, v in settings["subset"].items() if k != "seed"}
            try:
                # an unknown set size (no official count, no estimate) checks the form only
                subset_size(spec, total if total else 2**62, f"variants.{name}")
            except SubsetError as error:
                raise WorkflowError(str(error))


check_subsets()


def run_epochs(variant, budget, images):
    """Epochs run {variant}/{budget} trains over `images` training images."""
    settings = VARIANT_SETTINGS[variant]
    return budget_epochs(budget, max(images, 1), settings["gpus"], settings["batch_per_gpu"])


def planned_val_images(variant):
    if "dataset" in VARIANT_SETTINGS[variant]:
        return dataset_list_size(variant, "val")
    return planned_split_size("val")


def run_minutes(variant, budget, images=None, val_images=None, done=0):
    """Estimated wall time of one run on its GPUs (planned set sizes unless given), or
    of its epochs after the first `done`."""
    settings = VARIANT_SETTINGS[variant]
    images = planned_images(variant) if images is None else images
    return train_minutes(
        train_images=images,
        val_images=planned_val_images(variant) if val_images is None else val_images,
        epochs=max(run_epochs(variant, budget, images) - done, 0),
        val_interval=settings["val_interval"],
        images_per_second=IMAGES_PER_SECOND,
        gpus=settings["gpus"],
    )


PARTITION_TIME_LIMIT = config["estimates"]["partition_time_limit"]


def get_train_runtime(wildcards, input, attempt):
    """Minutes to ask for: the epochs left after the checkpoint the job resumes from
    (none for a finished run it restores), from the lists the job trains on, which
    exist when it is submitted (Snakemake evaluates resources again then, and on each
    retry); planned sizes before. Never more than estimates.partition_time_limit."""

    def size(paths):
        if all(p in input.data and os.path.exists(p) for p in paths):
            return sum(len(read_id_list(p)) for p in paths)
        return None

    config_text = None  # not rendered yet (a dry run): the run starts at epoch 0
    if os.path.isfile(input.config):
        with open(input.config) as handle:
            config_text = handle.read()
    done, restore = resume_point(WORK.format(**wildcards), config_text, code("train_upernet.py"))
    minutes = 0  # a finished run, restored from its work dir: no training
    if not restore:
        minutes = run_minutes(
            wildcards.variant,
            wildcards.budget,
            size(VARIANT_LISTS[wildcards.variant]),
            size([f"{variant_lists_folder(wildcards.variant)}/val.txt"]),
            done=done,
        )
    return runtime_request(minutes, attempt, PARTITION_TIME_LIMIT)


def get_attempt(wildcards, attempt):
    return attempt


def cost_summary():
    """What the run grid costs in GPU jobs and GPU-hours (estimates.*; planning only).
    Every training job is a run of the grid (init_from names one, see _init_source);
    a VOC run's evaluations beyond VOC val run in its one evaluation job."""
    return sweep_summary(
        [run_minutes(run["variant"], run["budget"]) for run in ALL_RUNS],
        gpus=TRAIN_GPUS,
        variants=len(config["variants"]),
        budgets=len({run["budget"] for run in ALL_RUNS}),
        seeds=len({run["seed"] for run in ALL_RUNS}),
        images_per_second=IMAGES_PER_SECOND,
        gpu_model=config["estimates"]["gpu_model"],
        evaluations=len(RUNS) * (1 + int(config["evaluation"]["tta"])) + len(DATASET_RUNS),
        limit=PARTITION_TIME_LIMIT,
    )


# ==== 6. the report ================================================================
# Two views of the same rules: OUT (`results`: every run of the config; what
# `all` builds) and OUT/snapshot (only the runs that have finished, for a look
# mid-sweep: target `snapshot`).
REPORT_RUN_FILES = [
    "train_set.json",
    "metrics.json",
    "history.csv",
    "confusion.npy",
    "confusion_per_image.npz",
    "predictions",
]
if config["evaluation"]["tta"]:
    REPORT_RUN_FILES.append("metrics_tta.json")
REPORT_RUN_FILES += extra_evaluations()
OOD = config["evaluation"]["ood"]
TABLES = [
    f"{name}.{ext}"
    for name in ("summary", "per_class_iou", "generalization", "recipe_check", "attribution")
    for ext in ("csv", "md")
]
FIGURES = [
    "per_class_iou",
    "per_class_change",
    "learning_curves",
    "miou_vs_epochs",
    "qualitative",
    "confusion_hard_classes",
    "generalization_gap",
    "annotation_agreement",
    "data_scaling",
]
# The class-frequency columns of the annotations table: variants trained on whole
# lists (a subset's frequency would be a sample of its lists'), and those lists.
WHOLE_LIST_VARIANTS = {
    name: VARIANT_SETTINGS[name]["train_sets"]
    for name in STUDY_VARIANTS
    if not variant_subset(name)
}
TRAIN_LISTS = sorted(
    {f"{SPLITS}/{s['split']}.txt" for sets in WHOLE_LIST_VARIANTS.values() for s in sets}
)


def report_outputs(view):
    finetune = [f"{view}/tables/finetune.{e}" for e in ("csv", "md")]
    finetune += [f"{view}/figures/finetune.{e}" for e in ("png", "pdf")]
    return (
        (finetune if DATASET_VARIANTS else [])
        + [f"{view}/tables/{t}" for t in TABLES]
        + [f"{OUT}/tables/annotations.{e}" for e in ("csv", "md")]
        + [f"{view}/report/workflow.rst"]
        + [f"{view}/figures/{f}.{ext}" for f in FIGURES for ext in ("png", "pdf")]
    )


def view_runs(view, runs=RUNS, files=REPORT_RUN_FILES):
    """The runs a view reports: all of them, or in the snapshot those with every file
    and up to date (one that Snakemake would rebuild is left out, with a warning)."""
    if view == OUT:
        return runs
    finished = [r for r in runs if all(os.path.exists(f"{RUN.format(**r)}/{n}") for n in files)]
    outdated = {run_name(r): run_outdated(r) for r in finished if run_outdated(r)}
    unwarned = {name: why for name, why in outdated.items() if name not in _WARNED}
    if unwarned:
        _WARNED.update(unwarned)
        logger.warning(
            f"snapshot: leaving out {outdated_runs_text(unwarned)}\nRun the workflow to bring "
            f"them up to date, then `snakemake snapshot` again."
        )
    return [r for r in finished if run_name(r) not in outdated]


def compared_runs(view):
    """Runs of the two compared variants, at the budgets where both have runs."""
    runs = view_runs(view)
    a, b = config["report"]["compare"]
    budgets = {r["budget"] for r in runs if r["variant"] == a} & {
        r["budget"] for r in runs if r["variant"] == b
    }
    return [r for r in runs if r["variant"] in (a, b) and r["budget"] in budgets]


def final_runs(view):
    """Per variant, its run of the longest budget of the view (first seed): the longest
    epoch count, or where it has none, the largest iteration budget."""
    runs = view_runs(view)
    chosen = []
    for variant in STUDY_VARIANTS:
        mine = [r for r in runs if r["variant"] == variant]
        if mine:
            longest = longest_budget(r["budget"] for r in mine)
            chosen.append(min((r for r in mine if r["budget"] == longest), key=lambda r: r["seed"]))
    return chosen


def get_view_files(name, runs=view_runs):
    """Input function: file `name` of every run of the view (or of `runs(view)`)."""

    def files(wildcards):
        return [f"{RUN.format(**run)}/{name}" for run in runs(wildcards.view)]

    return files


def get_train_sample_files(wildcards):
    """The view's runs evaluated on their training-image sample, when evaluation.train_sample is on."""
    if not config["evaluation"]["train_sample"]:
        return []
    return get_view_files("train_sample/confusion_per_image.npz")(wildcards)


def get_tta_metrics(wildcards):
    """metrics_tta.json of the view's runs when TTA is on (a column of the summary)."""
    return get_view_files("metrics_tta.json")(wildcards) if config["evaluation"]["tta"] else []


def get_runs_param(select):
    """Params: the runs a figure rule was given, in input order."""

    def runs(wildcards):
        return _canonical(select(wildcards.view))

    return runs


def report_view():
    """The view `snakemake --report` writes: the snapshot's when `snapshot` is a target."""
    return SNAPSHOT if "snapshot" in sys.argv else OUT


def report_description():
    """The report's text: the view's Findings + report/workflow.rst once rule findings
    has written it, else report/workflow.rst alone."""
    rendered = f"{report_view()}/report/workflow.rst"
    return os.path.abspath(rendered) if os.path.exists(rendered) else "report/workflow.rst"


def reporting():
    """True when Snakemake was called to write the HTML report (`--report FILE`)."""
    return any(arg == "--report" or arg.startswith("--report=") for arg in sys.argv)


# ---- out of date: what Snakemake would rebuild ----
# A file is out of date when Snakemake would rebuild it by profiles/default's rerun
# triggers: a param of the job that wrote it is not what it recorded (a run's
# settings, the content hash of a rule's code), or an input is newer, with other
# content. Decided at planning (no torch; the report's check runs before Snakemake
# reads its own settings), from Snakemake's own records of each job
# (.snakemake/metadata), never more often than Snakemake: no record, no verdict.
_OUTDATED = {}  # run name: why it is out of date (empty: up to date)
_WARNED = set()  # runs the snapshot has said it leaves out
_RECORDS = []  # Snakemake's store of the jobs' records, opened once


def run_name(run):
    return f"{run['variant']} {run['budget']}-s{run['seed']}"


def _job_records():
    """Snakemake's store of the jobs' records, as the workflow is configured to keep it."""
    from snakemake.persistence.db import DbPersistence
    from snakemake.persistence.file import FilePersistence
    from snakemake.settings.enums import PersistenceBackend

    if not _RECORDS:
        settings = workflow.workflow_settings
        if settings.persistence_backend == PersistenceBackend.DB:
            _RECORDS.append(DbPersistence(nolock=True, db_url=settings.persistence_backend_db_url))
        else:
            _RECORDS.append(FilePersistence(nolock=True))
    return _RECORDS[0]


def _params_now(job_rule, wildcards):
    """{name: recorded form} of the params `job_rule` would record for `wildcards` now: as
    Snakemake records them (repr), without those derived from files or resources."""
    import inspect

    from snakemake.io import apply_wildcards
    from snakemake.iocontainers import Wildcards

    params = {}
    for name, value in job_rule.params._allitems():
        if callable(value):
            if len(inspect.signature(value).parameters) > 1:
                continue  # derived (input, output, threads, resources): Snakemake records none
            value = value(Wildcards(fromdict=wildcards))
        elif isinstance(value, str):
            value = apply_wildcards(value, wildcards)
        elif isinstance(value, list):
            value = [apply_wildcards(v, wildcards) if isinstance(v, str) else v for v in value]
        if value is None or isinstance(value, (bool, int, float, str, list, tuple, dict)):
            params[name] = repr(value)
    return params


def _literal(text):
    import ast

    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return None


def _dict_changes(old, new, prefix=""):
    """`key old -> new` for each key of two settings dicts that differs (dotted for nested)."""
    changes = []
    for key in sorted(set(old) | set(new), key=str):
        before, after = old.get(key, "unset"), new.get(key, "unset")
        if isinstance(before, dict) and isinstance(after, dict):
            changes += _dict_changes(before, after, f"{prefix}{key}.")
        elif before != after:
            changes.append(f"{prefix}{key} {before!r} -> {after!r}".replace("'unset'", "unset"))
    return changes


def _param_change(job_rule, name, now, recorded):
    """Why param `name` of `job_rule` differs from its record, in the terms of the config."""
    if name == "code":
        script = job_rule.basedir.join(job_rule.script).get_path_or_uri(secret_free=True)
        script = os.path.relpath(script, workflow.basedir)
        return f"the code of {job_rule.name} changed ({script} or a module it imports)"
    new = _literal(now)
    olds = [old for old in map(_literal, recorded) if type(old) is type(new)]
    what = "settings" if name == "run" else f"{job_rule.name} param {name}"
    if isinstance(new, dict) and len(olds) == 1:
        return f"{what} changed: {', '.join(_dict_changes(olds[0], new))}"
    if len(olds) == 1:
        return f"{what} changed: {olds[0]!r} -> {new!r}"
    return f"{what} changed"


def _same_content(source, record):
    """Whether `source` still has the content the job recorded (Snakemake's checksum)."""
    from snakemake.settings.types import DAGSettings

    recorded = (record.input_checksums or {}).get(source)
    limit = (workflow.dag_settings or DAGSettings()).max_checksum_file_size
    if not recorded or os.path.getsize(source) > limit:
        return False
    algorithm, _, digest = recorded.rpartition(":")
    with open(source, "rb") as f:
        return hashlib.file_digest(f, algorithm or "sha256").hexdigest() == digest


def _short(path, beside):
    """`path`, by its name alone when it lies beside `beside` (a file of the same run)."""
    return os.path.basename(path) if os.path.dirname(path) == os.path.dirname(beside) else path


def outdated_file(path):
    """Why Snakemake would rebuild `path`, an existing output (empty: it would not)."""
    from snakemake.exceptions import UnknownRuleException
    from snakemake.io import IOFile

    record = _job_records().metadata(IOFile(path))
    if not record or not record.rule:
        return []
    try:
        job_rule = workflow.get_rule(record.rule)
    except UnknownRuleException:
        return []
    reasons = []
    if record.params is not None and (record.record_format_version or 0) >= 6:
        now = _params_now(job_rule, job_rule.get_wildcards(path))
        unmatched = set(record.params) - set(now.values())
        for name, value in now.items():
            if value not in record.params:
                reasons.append(_param_change(job_rule, name, value, unmatched))
    mtime = os.stat(path).st_mtime
    for source in record.input or []:
        if (
            os.path.isfile(source)
            and os.stat(source).st_mtime > mtime
            and not _same_content(source, record)
        ):
            reasons.append(f"{os.path.basename(path)} is older than {_short(source, path)}")
    return reasons


def run_outdated(run):
    """Why Snakemake would make run `run` again (empty: it is up to date): its config,
    model or evaluation, the init weights it starts from, or the run they come from."""
    name = run_name(run)
    if name not in _OUTDATED:
        folder = RUN.format(**run)
        files = [f"{folder}/{n}" for n in ("config.py", "final.pth", "metrics.json")]
        if config["evaluation"]["tta"] and run["variant"] in STUDY_VARIANTS:
            files.append(f"{folder}/metrics_tta.json")
        init = VARIANT_SETTINGS[run["variant"]].get("init_from")
        if init:
            files.insert(0, init["checkpoint"])
        reasons = []
        for path in files:
            if os.path.exists(path):
                reasons += [r for r in outdated_file(path) if r not in reasons]
        if init and not reasons and run_outdated(INIT_SOURCES[run["variant"]]):
            reasons.append(f"it starts from {init['run']}, which is out of date")
        _OUTDATED[name] = reasons
    return _OUTDATED[name]


def outdated_runs_text(outdated):
    """`N run(s) ...: names`, then each reason of {run name: why} on a line of its own,
    with the runs it concerns unless it concerns them all."""
    reasons = []
    for why in outdated.values():
        reasons += [r for r in why if r not in reasons]
    lines = [
        f"{len(outdated)} run(s) made with other settings or code than this config asks for: "
        f"{', '.join(outdated)}"
    ]
    for reason in reasons:
        concerned = [name for name, why in outdated.items() if reason in why]
        which = "" if len(concerned) == len(outdated) else f": {', '.join(concerned)}"
        lines.append(f"  - {reason}{which}")
    return "\n".join(lines)


def _run_the_workflow():
    """What to run before the report: the workflow, with this call's config files."""
    configfiles = "".join(
        f" --configfile {os.path.relpath(f)}" for f in workflow.overwrite_configfiles
    )
    command = f"snakemake --profile <your profile>{configfiles}"
    return f"Run the workflow first (`{command}`; -n lists its jobs)"


def check_report_complete():
    """`snakemake --report` refuses what Snakemake itself would report from older
    files: the full view while runs of the config have not finished or are out of
    date, either view while its tables and figures are not drawn or out of date."""
    view = report_view()
    if view == OUT:
        missing = [
            r
            for r in RUNS
            if not all(os.path.exists(f"{RUN.format(**r)}/{n}") for n in REPORT_RUN_FILES)
        ]
        if missing:
            names = ", ".join(run_name(r) for r in missing)
            raise WorkflowError(
                f"the report would show tables without {len(missing)} run(s) of this config that "
                f"have not finished: {names}. Run the workflow first, or report the finished runs "
                f"only: `snakemake snapshot` then `snakemake --report <file> snapshot`."
            )
        outdated = {run_name(r): run_outdated(r) for r in ALL_RUNS if run_outdated(r)}
        if outdated:
            raise WorkflowError(
                f"the report would show {outdated_runs_text(outdated)}\n{_run_the_workflow()}, "
                f"then the report."
            )
        drawn, again = (
            "every run is up to date, but the tables and figures",
            "run the workflow first",
        )
    else:  # the snapshot leaves out runs not finished or out of date (view_runs)
        drawn, again = "the snapshot's tables and figures", "run `snakemake snapshot` first"
    undrawn = [f for f in report_outputs(view) if not os.path.exists(f)]
    if undrawn:
        raise WorkflowError(
            f"{drawn} have not been drawn "
            f"({', '.join(undrawn[:3])}{', ...' if len(undrawn) > 3 else ''}): {again}."
        )
    redrawn = {f: why for f in report_outputs(view) if (why := outdated_file(f))}
    if redrawn:
        details = "; ".join(f"{f} ({', '.join(why)})" for f, why in redrawn.items())
        raise WorkflowError(f"{drawn} are out of date: {details}: {again}.")


# ==== 7. published references ======================================================
# Every run is set beside its nearest published result (config/references.yaml):
# the summary, the per-class table and Findings read it, `snakemake check`
# compares each run's recipe with it before any GPU is spent.
REFERENCES_FILE = config["report"]["references"]
try:
    REFERENCES = load_references(REFERENCES_FILE)
except (ReferenceError, ConfigFileError) as error:
    raise WorkflowError(f"report.references: {error}")


def _official_data(name):
    """True when variant `name` trains on lists of the official archives only."""
    uses_sbd = any(
        s["split"] in ("trainaug", "aug", "train_sbd") for s in VARIANT_SETTINGS[name]["train_sets"]
    )
    return is_official("voc") and (is_official("sbd") or not uses_sbd)


VARIANT_RECIPES = {
    name: variant_recipe(VARIANT_SETTINGS[name], _official_data(name), REFERENCES["datasets"])
    for name in STUDY_VARIANTS
}


def planned_recipe(variant, budget):
    """Run recipe with the planned list sizes (official counts or estimates)."""
    images = planned_images(variant)
    return run_recipe(VARIANT_RECIPES[variant], run_epochs(variant, budget, images), images)


def recipe_checks():
    """`snakemake check`: each variant's run recipe per budget (its seeds share it)."""
    return _canonical(
        [
            {
                "variant": v,
                "budget": b,
                "seeds": sorted({r["seed"] for r in RUNS if (r["variant"], r["budget"]) == (v, b)}),
                "recipe": planned_recipe(v, b),
            }
            for v in STUDY_VARIANTS
            for b in variant_budgets(v)
        ]
    )


def get_published_columns(wildcards):
    """{budget: {variant: (reference name, per-class IoU)}} of the view's compared
    variants where a published per-class table has the same recipe and epoch count."""
    columns = {}
    for run in compared_runs(wildcards.view):
        recipe = planned_recipe(run["variant"], run["budget"])
        reference = published_reference(recipe, REFERENCES["references"])
        if reference:
            columns.setdefault(run["budget"], {})[run["variant"]] = [
                reference["name"],
                reference["per_class"],
            ]
    return _canonical(columns)


# ==== 8. attribution ===============================================================
# The compared change (report.compare) split into the parts the config's runs
# identify (common/attribution.py), and the data-scaling figure's points.
ATTRIBUTION = _canonical(
    plan_attribution(
        {name: VARIANT_SETTINGS[name] for name in STUDY_VARIANTS},
        {name: variant_budgets(name) for name in STUDY_VARIANTS},
        config["report"]["compare"],
        {name: planned_images(name) for name in STUDY_VARIANTS},
        {
            (name, budget): planned_recipe(name, budget)["iterations"]
            for name in STUDY_VARIANTS
            for budget in variant_budgets(name)
        },
    )
)
ATTRIBUTION_PAIRS = {
    (run["variant"], run["budget"])
    for part in ATTRIBUTION
    for run in (part["from"], part["to"])
    if run
}
ANNOTATION_SOURCES = {
    name: annotation_source(VARIANT_SETTINGS[name]["train_sets"]) for name in STUDY_VARIANTS
}
_BASELINE_MODEL = model_key(VARIANT_SETTINGS[config["report"]["compare"][0]])
HAS_ITERATION_RUNS = any(parse_budget(run["budget"])[0] == "iterations" for run in RUNS)


def attribution_runs(view):
    """The view's runs that some part of the attribution compares."""
    return [r for r in view_runs(view) if (r["variant"], r["budget"]) in ATTRIBUTION_PAIRS]


def scaling_runs(view):
    """The data-scaling points: runs of the baseline's model settings at iteration
    budgets (at epoch counts when the config has no iteration budget)."""
    wanted = "iterations" if HAS_ITERATION_RUNS else "epochs"
    return [
        r
        for r in view_runs(view)
        if parse_budget(r["budget"])[0] == wanted
        and model_key(VARIANT_SETTINGS[r["variant"]]) == _BASELINE_MODEL
    ]


# ==== 9. fine-tuning on your own datasets ===========================================
# Per dataset: each variant that starts from another run (init_from) against each
# that does not, at the budgets both have (rule finetune).
def finetune_runs(view):
    return view_runs(view, DATASET_RUNS, DATASET_RUN_FILES)


FINETUNE_VARIANTS = {
    name: {
        "dataset": config["variants"][name]["dataset"],
        "init_from": VARIANT_SETTINGS[name].get("init_from", {}).get("run"),
    }
    for name in DATASET_VARIANTS
}


def _finetune_plan():
    pairs, missing = [], []
    for dataset in sorted({v["dataset"] for v in FINETUNE_VARIANTS.values()}):
        mine = [n for n, v in FINETUNE_VARIANTS.items() if v["dataset"] == dataset]
        tuned = [n for n in mine if FINETUNE_VARIANTS[n]["init_from"]]
        scratch = [n for n in mine if not FINETUNE_VARIANTS[n]["init_from"]]
        if not tuned or not scratch:
            what = "with" if not tuned else "without"
            missing.append(f"{dataset}: nothing to compare; add a variant on it {what} init_from")
        for a in scratch:
            for b in tuned:
                for budget in sorted(set(variant_budgets(a)) & set(variant_budgets(b))):
                    pairs.append(
                        {
                            "dataset": dataset,
                            "budget": budget,
                            "scratch": a,
                            "finetuned": b,
                            "init_from": FINETUNE_VARIANTS[b]["init_from"],
                        }
                    )
    return pairs, missing


FINETUNE_PAIRS, FINETUNE_MISSING = _finetune_plan()
DATASET_CLASSES = {name: len(d["classes"]) for name, d in config["datasets"].items()}
