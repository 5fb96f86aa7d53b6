"""The study's plan from its config: the cross-key checks, the run grid, each
variant's settings, init_from, subsets and samples, run sizing, the report's run
selection, the recipes `snakemake check` compares and the fine-tuning pairs.

Planning only: plain Python (no torch, no Snakemake), so a login node plans a
sweep and every rule here is unit-tested on a config dict (tests/test_plan.py).
rules/common.smk builds one ``Plan`` after the schema has filled in defaults and
turns a ``ConfigError`` into Snakemake's WorkflowError: one line naming the key.
"""

import hashlib
import os
from dataclasses import dataclass

from common.attribution import model_key, plan_attribution
from common.config_files import ConfigFileError, expand_path
from common.sizing import GPU_CHECK_FOLDER, measured_rates, measurement_mode, read_measurements
from common.sizing import resume_point, runtime_request, sweep_summary, train_minutes
from common.mmseg_config import (
    AUGMENT_DEFAULTS,
    PRETRAINED_URLS,
    RUNTIME_SETTINGS,
    ConfigError,
    check_backbone,
    model_name,
    pretrained_file,
)
from common.references import ReferenceError, load_references, published_reference
from common.run_config import normalized
from common.references import run_recipe, variant_recipe
from common.subsets import SubsetError, budget_epochs, budget_name, check_labels, member_name
from common.subsets import annotation_source, longest_budget, parse_budget, subset_name, subset_size
from common.voc import CLASSES as VOC_CLASSES
from common.voc import OFFICIAL_COUNTS, palette, read_id_list

__all__ = ["ConfigError", "Paths", "Plan", "canonical", "expand_paths", "source_key"]

DATA_SOURCES = ("voc", "sbd", "coco_images", "coco_annotations")
BACKBONE_KEYS = ("backbone", "depth", "size", "pretrained")
# a variant on a dataset of `datasets` trains on its train list unless it names lists
DATASET_TRAIN_SETS = [{"split": "train", "labels": "SegmentationClass"}]
# the settings a variant may override; what a fine-tuned variant shares with its source
MODEL_OVERRIDES = ("backbone", "depth", "size", "backbone_overrides", "loss", "pretrained")
INIT_MODEL_KEYS = ("backbone", "depth", "size", "backbone_overrides", "head_channels")
SBD_SPLITS = ("trainaug", "aug", "train_sbd")


def canonical(value):
    """Dicts with sorted keys, all the way down: Snakemake compares params as text,
    and reordering keys in a YAML file must not retrain anything."""
    if isinstance(value, dict):
        return {key: canonical(value[key]) for key in sorted(value)}
    if isinstance(value, (list, tuple)):
        return [canonical(item) for item in value]
    return value


def subset_spec(settings: dict) -> dict:
    """A variant's subset as drawn (size or fraction), without the seed it is drawn with."""
    return {k: v for k, v in settings["subset"].items() if k != "seed"}


def expand_paths(config: dict) -> None:
    """`~` and $VARIABLES in every path key, in place (an unset variable is an error);
    a variant on a dataset of `datasets` gets that dataset's train list by default."""

    def expand(section, key, where):
        value = section.get(key)
        if isinstance(value, str) and "://" not in value:
            try:
                section[key] = os.path.normpath(expand_path(value, where))
            except ConfigFileError as error:
                raise ConfigError(str(error)) from None

    expand(config, "results", "results")
    for name in DATA_SOURCES:
        expand(config["data"][name], "archive", f"data.{name}.archive")
    expand(config["training"], "pretrained", "training.pretrained")
    expand(config["predict"], "images", "predict.images")
    for name, variant in config["variants"].items():
        expand(variant, "pretrained", f"variants.{name}.pretrained")
        if "dataset" in variant:
            variant.setdefault("train_sets", DATASET_TRAIN_SETS)
    for name, dataset in config["datasets"].items():
        for key in ("folder", "archive"):
            expand(dataset, key, f"datasets.{name}.{key}")


def archive_key(md5, where: str) -> str:
    """8 digits of an archive's md5, or, unchecked, a hash of where it comes from."""
    if md5:
        return md5.lower()[:8]
    return f"nomd5-{hashlib.sha256(where.encode()).hexdigest()[:8]}"


def source_key(config: dict, name: str) -> str:
    """The key of data source `name`: its data live in a folder named after it."""
    source = config["data"][name]
    where = os.path.abspath(source["archive"]) if source["archive"] else source["url"]
    return archive_key(source["md5"], where)


def dataset_folder(config: dict, name: str) -> str:
    """Dataset `name` of `datasets`: its folder, or where its archive is extracted."""
    dataset = config["datasets"][name]
    if "folder" in dataset:
        return dataset["folder"]
    key = archive_key(dataset.get("md5"), os.path.abspath(dataset["archive"]))
    return f"resources/datasets/{name}-{key}"


@dataclass(frozen=True)
class Paths:
    """Where the plan's lists and files are (rules/common.smk's path templates)."""

    voc: str  # VOC's root
    splits: str  # VOC's lists
    subsets: str  # the lists of the variants' subsets
    results: str  # the study's folder


class Plan:
    """Everything the rules need to know about a config, checked on construction
    (every error before any job, each a ConfigError naming its key)."""

    def __init__(self, config: dict, official_md5: dict, paths: Paths):
        self.config, self.official_md5, self.paths = config, official_md5, paths
        self.variants = config["variants"]
        self.check_config()
        self.dataset_roots = {name: dataset_folder(config, name) for name in config["datasets"]}
        self.all_runs = [
            {"variant": variant, "budget": budget, "seed": seed}
            for variant in self.variants
            for budget in self.variant_budgets(variant)
            for seed in self.variants[variant].get("seeds", config["seeds"])
        ]
        # the VOC study (every table and figure of the report), and the variants
        # trained on datasets of `datasets` (compared by rule compare_finetuning)
        self.study_variants = [n for n in self.variants if "dataset" not in self.variants[n]]
        self.dataset_variants = [n for n in self.variants if n not in self.study_variants]
        self.study_runs = [r for r in self.all_runs if r["variant"] in self.study_variants]
        self.dataset_runs = [r for r in self.all_runs if r["variant"] in self.dataset_variants]
        self.settings = {name: self._variant_settings(name) for name in self.variants}
        self.init_sources = {
            name: self._init_source(name) for name in self.variants if "init_from" in self.variants[name]
        }
        for name, source in self.init_sources.items():
            self.settings[name]["pretrained"] = None  # the source run's weights replace them
            self.settings[name]["init_from"] = {
                "run": f"{source['variant']}/{source['budget']}-s{source['seed']}",
                "checkpoint": f"{paths.results}/init/{name}.pth",
                # heads are loaded too when both predict the same classes
                "heads": self._class_count(name) == self._class_count(source["variant"]),
            }
        self.init_source_runs = {
            (s["variant"], s["budget"], str(s["seed"])) for s in self.init_sources.values()
        }
        subsets = {name: self.variant_subset(name) for name in self.variants}
        # every subset of the config, by folder name: how many images it keeps, its lists
        self.subset_specs = {s: self.settings[n]["subset"] for n, s in subsets.items() if s}
        self.subset_sets = {s: self.settings[n]["train_sets"] for n, s in subsets.items() if s}
        self.variant_lists = {name: self._variant_lists(name) for name in self.variants}
        self.check_subsets()
        # the training-image sample of each set of training lists (evaluation.train_sample)
        self.samples = {self.sample_name(v): v for v in self.study_variants}
        self.images_per_second = config["estimates"]["images_per_second"][config["estimates"]["gpu_model"]]
        self.partition_time_limit = config["estimates"]["partition_time_limit"]
        # rule measure_gpu's results: measured rates replace the estimate where they fit
        self.gpu_check_folder = f"{paths.results}/{GPU_CHECK_FOLDER}"
        self.measurements, self.measurement_problems = read_measurements(self.gpu_check_folder)
        self.gpu_checks = self._gpu_checks()
        self._references()
        self._attribution()
        self._finetuning()

    # ---- the checks across keys that a schema cannot express ----
    def check_config(self) -> None:
        config = self.config
        for name in config["report"]["compare"]:
            if name not in self.variants or "dataset" in self.variants[name]:
                raise ConfigError(
                    f"report.compare: {name!r} is not a variant on VOC ({', '.join(self.variants)})"
                )
        estimates = config["estimates"]
        if estimates["gpu_model"] not in estimates["images_per_second"]:
            raise ConfigError(
                f"estimates.gpu_model: {estimates['gpu_model']!r} is not in estimates.images_per_second"
            )
        for name in DATA_SOURCES:
            archive = config["data"][name]["archive"]
            if archive is not None and not os.path.isfile(archive):
                raise ConfigError(
                    f"data.{name}.archive: no such file {archive!r} (set it to null to download data.{name}.url)"
                )
        self.check_datasets()
        for name, variant in self.variants.items():
            self.check_variant(name, variant)

    def check_datasets(self) -> None:
        for name, dataset in self.config["datasets"].items():
            where = f"datasets.{name}"
            if ("folder" in dataset) == ("archive" in dataset):
                raise ConfigError(f"{where}: give either folder or archive (a tar of the folder)")
            if "folder" in dataset and not os.path.isdir(dataset["folder"]):
                raise ConfigError(f"{where}.folder: no such folder {dataset['folder']!r}")
            if "archive" in dataset and not os.path.isfile(dataset["archive"]):
                raise ConfigError(f"{where}.archive: no such file {dataset['archive']!r}")
            if "folder" in dataset and ("md5" in dataset or dataset["root"]):
                raise ConfigError(f"{where}: md5 and root belong to an archive, not a folder")

    def check_variant(self, name: str, variant: dict) -> None:
        if "train_sets" not in variant:
            raise ConfigError(f"variants.{name}: no train_sets (and no dataset whose train list it would be)")
        self.check_dataset_variant(name, variant)
        model = {k: variant.get(k, self.config["training"][k]) for k in BACKBONE_KEYS}
        if "init_from" in variant:  # the source run's weights replace the pretrained ones
            model["pretrained"] = None
        where = f"variants.{name}" if set(variant) & {*BACKBONE_KEYS} else "training"
        check_backbone(model, where)
        weights, pretrained = pretrained_file(model["pretrained"]), model["pretrained"]
        if weights and "init_from" not in variant and pretrained not in PRETRAINED_URLS and not os.path.isfile(weights):
            raise ConfigError(f"{where}.pretrained: no such file {weights!r}")
        members = [member_name(s) for s in variant["train_sets"]]
        if len(set(members)) < len(members):
            raise ConfigError(f"variants.{name}.train_sets: a list is given twice ({', '.join(members)})")
        try:
            for index, train_set in enumerate(variant["train_sets"]):
                check_labels(train_set, f"variants.{name}.train_sets[{index}]")
        except SubsetError as error:
            raise ConfigError(str(error)) from None
        if "subset_seed" in variant and "subset" not in variant:
            raise ConfigError(f"variants.{name}.subset_seed: the variant has no subset")
        if not self.variant_budgets(name):
            raise ConfigError(f"variants.{name}: no run to train (its epochs and iterations are both empty)")

    def check_dataset_variant(self, name: str, variant: dict) -> None:
        """A variant on a dataset of `datasets`: trains on that dataset's own lists."""
        if "dataset" not in variant:
            return
        if variant["dataset"] not in self.config["datasets"]:
            known = ", ".join(self.config["datasets"]) or "none"
            raise ConfigError(f"variants.{name}.dataset: {variant['dataset']!r} is not in datasets ({known})")
        for index, train_set in enumerate(variant["train_sets"]):
            if train_set["labels"] != "SegmentationClass" or train_set["split"] not in ("train", "val"):
                raise ConfigError(
                    f"variants.{name}.train_sets[{index}]: a dataset of `datasets` has the lists train and "
                    "val, read with labels SegmentationClass"
                )
        if "subset" in variant:
            raise ConfigError(f"variants.{name}: subsets are drawn from VOC lists, not from a dataset")

    def check_subsets(self) -> None:
        """A subset that does not fit its set fails before any job, naming the variant
        (with planned sizes; the job that draws it checks the real lists again)."""
        for name, settings in self.settings.items():
            if "subset" in settings:
                total = sum(self.planned_split_size(s["split"]) for s in settings["train_sets"])
                spec = subset_spec(settings)
                try:
                    # an unknown set size (no official count, no estimate) checks the form only
                    subset_size(spec, total if total else 2**62, f"variants.{name}")
                except SubsetError as error:
                    raise ConfigError(str(error)) from None

    # ---- the run grid ----
    def variant_budgets(self, name: str) -> list[str]:
        """Budgets of variant `name`: e<epochs> then i<iterations> (the study's, or its own)."""
        variant = self.variants[name]
        return [
            budget_name(kind, amount)
            for kind in ("epochs", "iterations")
            for amount in variant.get(kind, self.config[kind])
        ]

    def _variant_settings(self, name: str) -> dict:
        """The result-changing settings of variant `name` (training's, with its overrides)."""
        training, variant = self.config["training"], self.variants[name]
        # amp fp16 is amp true, and channels_last is there only when on: the params of
        # runs from before these values existed stay as they were (no retraining)
        settings = normalized({k: v for k, v in training.items() if k not in RUNTIME_SETTINGS})
        settings.update({k: variant[k] for k in MODEL_OVERRIDES if k in variant})
        settings["augment"] = {**AUGMENT_DEFAULTS, **training["augment"], **variant.get("augment", {})}
        settings["train_sets"] = variant["train_sets"]
        if "subset" in variant:
            settings["subset"] = {**variant["subset"], "seed": variant.get("subset_seed", 0)}
        if "dataset" in variant:
            classes = self.config["datasets"][variant["dataset"]]["classes"]
            colours = palette()
            settings["dataset"] = {
                "name": variant["dataset"],
                "classes": classes,
                "palette": [colours[3 * i : 3 * i + 3] for i in range(len(classes))],
            }
        return settings

    def _init_source(self, name: str) -> dict:
        """The run variant `name` starts from (init_from), checked: a run of the grid,
        the same model, no cycle."""
        spec, where = self.variants[name]["init_from"], f"variants.{name}.init_from"
        source = spec["variant"]
        if source not in self.variants:
            raise ConfigError(f"{where}.variant: {source!r} is not a variant ({', '.join(self.variants)})")
        if ("epochs" in spec) == ("iterations" in spec):
            raise ConfigError(f"{where}: give the source run's epochs or its iterations (one of them)")
        kind = "epochs" if "epochs" in spec else "iterations"
        self.check_init_run(source, kind, spec[kind], spec.get("seed", 0), where)
        seen, current = [name], source
        while current:
            if current in seen:
                raise ConfigError(f"{where}: a cycle of init_from ({' -> '.join(seen + [current])})")
            seen.append(current)
            current = self.variants[current].get("init_from", {}).get("variant")
        mine, theirs = self.settings[name], self.settings[source]
        for key in INIT_MODEL_KEYS:
            if mine.get(key) != theirs.get(key):
                raise ConfigError(
                    f"{where}: {key} is {mine.get(key)!r} here but {theirs.get(key)!r} in {source}: "
                    "fine-tuning loads the source's weights into the same model"
                )
        return {"variant": source, "budget": budget_name(kind, spec[kind]), "seed": spec.get("seed", 0)}

    def check_init_run(self, source: str, kind: str, amount: int, seed: int, where: str) -> None:
        """init_from names a run of the grid: one the sweep trains, evaluates and counts
        (a typo must not train an extra run that nothing reports)."""
        variant = self.variants[source]
        grid, seeds = variant.get(kind, self.config[kind]), variant.get("seeds", self.config["seeds"])
        own = f"variants.{source}.{kind}"
        if amount not in grid:
            what = "epoch counts" if kind == "epochs" else "iteration budgets"
            raise ConfigError(
                f"{where}.{kind}: {source} has no run of {amount} {kind} in the grid (its {what}: "
                f"{', '.join(map(str, grid)) or 'none'}); name one of them, or add {amount} to "
                f"{own if kind in variant else f'{kind} (or {own})'} to train, evaluate and count it"
            )
        if seed not in seeds:
            raise ConfigError(
                f"{where}.seed: {source} has no run of seed {seed} in the grid (its seeds: "
                f"{', '.join(map(str, seeds))})"
            )

    def _class_count(self, name: str) -> int:
        return len(self.settings[name].get("dataset", {}).get("classes", VOC_CLASSES))

    def variant_subset(self, name: str) -> str | None:
        """The subset folder name of variant `name`, or None when it trains on whole lists."""
        settings = self.settings[name]
        if "subset" not in settings:
            return None
        spec = subset_spec(settings)
        return subset_name(settings["train_sets"], spec, settings["subset"]["seed"])

    def variant_root(self, name: str) -> str:
        """The data root variant `name` trains and is evaluated on: VOC, or its dataset's folder."""
        dataset = self.variants[name].get("dataset")
        return self.dataset_roots[dataset] if dataset else self.paths.voc

    def variant_lists_folder(self, name: str) -> str:
        return f"{self.variant_root(name)}/ImageSets/Segmentation"

    def _variant_lists(self, name: str) -> list[str]:
        """The lists variant `name` trains on, one per train set: its subset's, or the whole lists."""
        settings, subset = self.settings[name], self.variant_subset(name)
        if subset:
            return [f"{self.paths.subsets}/{subset}/{member_name(s)}.txt" for s in settings["train_sets"]]
        return [f"{self.variant_lists_folder(name)}/{s['split']}.txt" for s in settings["train_sets"]]

    def run_settings(self, variant: str, budget: str, seed: int, work_dir: str) -> dict:
        """Everything that determines the result of a run (canonical); the epochs of an
        iteration budget follow from the lists when its config is rendered."""
        settings = dict(self.settings[variant])
        root = self.variant_root(variant)
        settings["train_sets"] = [
            {**s, "ann_file": os.path.relpath(path, root)}
            for s, path in zip(settings["train_sets"], self.variant_lists[variant])
        ]
        run = {"variant": variant, "budget": budget, "seed": int(seed), "data_root": root, "work_dir": work_dir}
        return canonical({**settings, **run})

    def sample_name(self, variant: str) -> str:
        """The training-image sample of `variant`'s lists: variants on the same lists
        (the same subset) share it."""
        sets = self.variant_subset(variant) or "+".join(
            member_name(s) for s in self.settings[variant]["train_sets"]
        )
        evaluation = self.config["evaluation"]
        return f"{sets}_n{evaluation['train_sample']}_s{evaluation['sample_seed']}"

    def whole_list_variants(self) -> dict:
        """The study's variants trained on whole lists (the annotations table's class
        frequencies: a subset's would be a sample of its lists'), and their train sets."""
        return {n: self.settings[n]["train_sets"] for n in self.study_variants if not self.variant_subset(n)}

    # ---- data: official archives, planned list sizes ----
    def is_official(self, name: str) -> bool:
        md5 = self.config["data"][name]["md5"]
        return md5 is not None and md5.lower() == self.official_md5[name]

    def official_counts(self) -> list[str]:
        """Which list sizes to check against VOC's official numbers."""
        counts = []
        if self.is_official("voc"):
            counts += ["train", "val"]
            if self.is_official("sbd"):
                counts += ["trainaug", "aug"]
        return counts

    def planned_split_size(self, split: str) -> int:
        """Images in a list, for planning: VOC's official count when the official
        archives are configured, else the configured estimate (never a list on disk,
        which may belong to other data)."""
        if split in self.official_counts():
            return OFFICIAL_COUNTS[split]
        return self.config["estimates"]["split_sizes"].get(split, 0)

    def dataset_list_size(self, variant: str, split: str) -> int:
        """Ids of a list of a variant's own dataset, for planning: counted where the list
        exists (a folder, or an archive extracted before), else 0 (the runtime request
        counts them when the job is submitted)."""
        path = f"{self.variant_lists_folder(variant)}/{split}.txt"
        return len(read_id_list(path)) if os.path.isfile(path) else 0

    def planned_images(self, variant: str) -> int:
        """Training images of `variant`: its lists' sizes, or its subset's."""
        settings = self.settings[variant]
        if "dataset" in settings:
            return sum(self.dataset_list_size(variant, s["split"]) for s in settings["train_sets"])
        total = sum(self.planned_split_size(s["split"]) for s in settings["train_sets"])
        if "subset" not in settings:
            return total
        spec = subset_spec(settings)
        if not total:  # sizes unknown before the data stage (no official count, no estimate)
            return spec.get("size", 0)
        return subset_size(spec, total, f"variants.{variant}")

    def planned_val_images(self, variant: str) -> int:
        if "dataset" in self.settings[variant]:
            return self.dataset_list_size(variant, "val")
        return self.planned_split_size("val")

    # ---- sizing: wall time, runtime requests, cost ----
    def run_epochs(self, variant: str, budget: str, images: int) -> int:
        """Epochs run {variant}/{budget} trains over `images` training images."""
        settings = self.settings[variant]
        return budget_epochs(budget, max(images, 1), settings["gpus"], settings["batch_per_gpu"])

    def run_minutes(self, variant, budget, images=None, val_images=None, done=0) -> float:
        """Estimated wall time of one run on its GPUs (planned set sizes unless given), or
        of its epochs after the first `done`."""
        settings = self.settings[variant]
        images = self.planned_images(variant) if images is None else images
        train, val, _ = self.rates(variant)
        return train_minutes(
            train_images=images,
            val_images=self.planned_val_images(variant) if val_images is None else val_images,
            epochs=max(self.run_epochs(variant, budget, images) - done, 0),
            val_interval=settings["val_interval"],
            images_per_second=train,
            gpus=settings["gpus"],
            val_images_per_second=val,
        )

    def rates(self, variant: str) -> tuple[float, float | None, str]:
        """(train, val images/s per GPU, where from) for `variant`'s runs: a gpu_check
        result of its model at its GPU count, crop, batch and precision, else the
        configured estimate (val: None, a share of it)."""
        settings = self.settings[variant]
        model, gpus = model_name(settings), settings["gpus"]
        mode = measurement_mode(settings["amp"], settings.get("channels_last", False))
        document = self.measurements.get((model, gpus))
        if document:
            found = measured_rates(document, mode, settings["crop_size"], settings["batch_per_gpu"])
            if found:
                where = document["environment"].get("gpu") or document["device"]
                return (*found, f"{self.gpu_check_folder}/{model}-{gpus}.json ({where}, {mode})")
        return self.images_per_second, None, f"estimates.gpu_model: {self.config['estimates']['gpu_model']}"

    def _gpu_checks(self) -> dict:
        """Rule measure_gpu's jobs, {"<model>-<gpus>": run settings}: one per model the
        variants train, at one GPU and at training.gpus when that is more; each measures the
        recipe of the config's first run of that model (the study's variants first)."""
        checks = {}
        for name in self.study_variants + self.dataset_variants:
            settings, gpus = self.settings[name], self.config["training"]["gpus"]
            run = next(r for r in self.all_runs if r["variant"] == name)
            for count in sorted({1, gpus}):
                key = f"{model_name(settings)}-{count}"
                if key not in checks:
                    work_dir = f"{self.gpu_check_folder}/work/{key}"
                    checks[key] = {**self.run_settings(name, run["budget"], run["seed"], work_dir), "gpus": count}
        return checks

    def train_runtime(self, variant, budget, attempt, work_dir, config_text, code, images, val_images) -> int:
        """Minutes a training job asks for: the epochs left after the checkpoint it
        resumes from (none for a finished run it restores), over `images` training and
        `val_images` val images (None: planned sizes); never more than
        estimates.partition_time_limit. ``config_text`` None: not rendered yet."""
        done, restore = resume_point(work_dir, config_text, code)
        minutes = 0 if restore else self.run_minutes(variant, budget, images, val_images, done=done)
        return runtime_request(minutes, attempt, self.partition_time_limit)

    def cost_summary(self) -> str:
        """What the run grid costs in GPU jobs and GPU-hours (estimates.*; planning only).
        Every training job is a run of the grid (init_from names one); a VOC run's
        evaluations beyond VOC val run in its one evaluation job."""
        config, runs = self.config, self.all_runs
        return sweep_summary(
            [self.run_minutes(run["variant"], run["budget"]) for run in runs],
            gpus=config["training"]["gpus"],
            variants=len(self.variants),
            budgets=len({run["budget"] for run in runs}),
            seeds=len({run["seed"] for run in runs}),
            rates=self.rates_text(),
            evaluations=len(self.study_runs) * (1 + int(config["evaluation"]["tta"])) + len(self.dataset_runs),
            limit=self.partition_time_limit,
        )

    def rates_text(self) -> str:
        """Which throughput the sizing uses, per source: 'at 61.2 train, 180 val images/s per
        GPU measured in <json> (NVIDIA H200, amp) for 4 runs; at ...'."""
        sources = {}
        for run in self.all_runs:
            train, val, where = self.rates(run["variant"])
            sources.setdefault((train, val, where), []).append(run)
        parts = []
        for (train, val, where), runs in sources.items():
            if val is None:
                part = f"at {train:g} images/s per GPU ({where}, an estimate)"
            else:
                part = f"at {train:g} train and {val:g} val images/s per GPU measured in {where}"
            parts.append(part + (f" for {len(runs)} run(s)" if len(sources) > 1 else ""))
        text = "; ".join(parts)
        if self.measurement_problems:
            text += " [" + "; ".join(self.measurement_problems) + "]"
        return text

    # ---- published references: each variant's recipe ----
    def _references(self) -> None:
        try:
            self.references = load_references(self.config["report"]["references"])
        except (ReferenceError, ConfigFileError) as error:
            raise ConfigError(f"report.references: {error}") from None
        self.variant_recipes = {
            name: variant_recipe(self.settings[name], self._official_data(name), self.references["datasets"])
            for name in self.study_variants
        }

    def _official_data(self, name: str) -> bool:
        """True when variant `name` trains on lists of the official archives only."""
        uses_sbd = any(s["split"] in SBD_SPLITS for s in self.settings[name]["train_sets"])
        return self.is_official("voc") and (self.is_official("sbd") or not uses_sbd)

    def planned_recipe(self, variant: str, budget: str) -> dict:
        """Run recipe with the planned list sizes (official counts or estimates)."""
        images = self.planned_images(variant)
        return run_recipe(self.variant_recipes[variant], self.run_epochs(variant, budget, images), images)

    def recipe_checks(self) -> list[dict]:
        """`snakemake check`: each variant's run recipe per budget (its seeds share it)."""
        return canonical(
            [
                {
                    "variant": v,
                    "budget": b,
                    "seeds": sorted({r["seed"] for r in self.study_runs if (r["variant"], r["budget"]) == (v, b)}),
                    "recipe": self.planned_recipe(v, b),
                }
                for v in self.study_variants
                for b in self.variant_budgets(v)
            ]
        )

    def published_columns(self, runs: list[dict]) -> dict:
        """{budget: {variant: [reference name, per-class IoU]}} of the compared runs among
        `runs` where a published per-class table has the same recipe and epoch count."""
        columns = {}
        for run in self.compared_runs(runs):
            recipe = self.planned_recipe(run["variant"], run["budget"])
            reference = published_reference(recipe, self.references["references"])
            if reference:
                columns.setdefault(run["budget"], {})[run["variant"]] = [reference["name"], reference["per_class"]]
        return canonical(columns)

    # ---- the report: which of a view's runs each table and figure reads ----
    def compared_runs(self, runs: list[dict]) -> list[dict]:
        """Runs of the two compared variants, at the budgets where both have runs."""
        a, b = self.config["report"]["compare"]
        budgets = {r["budget"] for r in runs if r["variant"] == a} & {r["budget"] for r in runs if r["variant"] == b}
        return [r for r in runs if r["variant"] in (a, b) and r["budget"] in budgets]

    def final_runs(self, runs: list[dict]) -> list[dict]:
        """Per variant, its run of the longest budget among `runs` (first seed): the
        longest epoch count, or where it has none, the largest iteration budget."""
        chosen = []
        for variant in self.study_variants:
            mine = [r for r in runs if r["variant"] == variant]
            if mine:
                longest = longest_budget(r["budget"] for r in mine)
                chosen.append(min((r for r in mine if r["budget"] == longest), key=lambda r: r["seed"]))
        return chosen

    # ---- attribution: which runs separate the compared change into its parts ----
    def _attribution(self) -> None:
        study = self.study_variants
        self.attribution = canonical(
            plan_attribution(
                {name: self.settings[name] for name in study},
                {name: self.variant_budgets(name) for name in study},
                self.config["report"]["compare"],
                {name: self.planned_images(name) for name in study},
                {(n, b): self.planned_recipe(n, b)["iterations"] for n in study for b in self.variant_budgets(n)},
            )
        )
        self.attribution_pairs = {
            (run["variant"], run["budget"]) for part in self.attribution for run in (part["from"], part["to"]) if run
        }
        self.annotation_sources = {name: annotation_source(self.settings[name]["train_sets"]) for name in study}
        self.baseline_model = model_key(self.settings[self.config["report"]["compare"][0]])
        self.has_iteration_runs = any(parse_budget(r["budget"])[0] == "iterations" for r in self.study_runs)

    def attribution_runs(self, runs: list[dict]) -> list[dict]:
        """The runs among `runs` that some part of the attribution compares."""
        return [r for r in runs if (r["variant"], r["budget"]) in self.attribution_pairs]

    def scaling_runs(self, runs: list[dict]) -> list[dict]:
        """The data-scaling points: runs of the baseline's model settings at iteration
        budgets (at epoch counts when the config has no iteration budget)."""
        wanted = "iterations" if self.has_iteration_runs else "epochs"
        return [
            r
            for r in runs
            if parse_budget(r["budget"])[0] == wanted and model_key(self.settings[r["variant"]]) == self.baseline_model
        ]

    # ---- fine-tuning on your own datasets ----
    def _finetuning(self) -> None:
        """Per dataset: each variant that starts from another run (init_from) against
        each that does not, at the budgets both have (rule compare_finetuning)."""
        self.finetune_variants = {
            name: {
                "dataset": self.variants[name]["dataset"],
                "init_from": self.settings[name].get("init_from", {}).get("run"),
            }
            for name in self.dataset_variants
        }
        pairs, missing = [], []
        variants = self.finetune_variants
        for dataset in sorted({v["dataset"] for v in variants.values()}):
            mine = [n for n, v in variants.items() if v["dataset"] == dataset]
            tuned = [n for n in mine if variants[n]["init_from"]]
            scratch = [n for n in mine if not variants[n]["init_from"]]
            if not tuned or not scratch:
                what = "with" if not tuned else "without"
                missing.append(f"{dataset}: nothing to compare; add a variant on it {what} init_from")
            for a in scratch:
                for b in tuned:
                    for budget in sorted(set(self.variant_budgets(a)) & set(self.variant_budgets(b))):
                        pairs.append(
                            {
                                "dataset": dataset,
                                "budget": budget,
                                "scratch": a,
                                "finetuned": b,
                                "init_from": variants[b]["init_from"],
                            }
                        )
        self.finetune_pairs, self.finetune_missing = pairs, missing
        self.dataset_classes = {name: len(d["classes"]) for name, d in self.config["datasets"].items()}
