# What the rules share, in the order a reader needs it. The planning itself is
# plain Python in scripts/common/plan.py (unit-tested without Snakemake); this file
# is the glue Snakemake needs around it:
#   1. the config: read, validated, checked by the plan (every error before any job)
#   2. paths and wildcards
#   3. data sources: archives, downloads, the data stage's outputs
#   4. the run grid: one trained model per variant x epoch count x seed
#   5. resources of the GPU jobs, and what the sweep costs
#   6. the report: its two views, the runs each figure reads, what is out of date
#   7. published references: each variant's recipe, what `snakemake check` compares
#   8. attribution: which runs separate the compared change into its parts
#   9. fine-tuning on your own datasets
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
from common.mmseg_config import PRETRAINED_URLS, pretrained_file
from common.outdated import Outdated, outdated_runs_text, run_name
from common.plan import DATA_SOURCES, ConfigError, Paths, Plan, canonical
from common.plan import dataset_folder, expand_paths, source_key
from common.run_config import uses_precision_module
from common.subsets import member_name
from common.voc import read_id_list


# ==== 1. the config ===============================================================
def _validate_config():
    """Numbers from the command line made numbers, the schema's defaults filled in, and a
    wrong key or value failed before any job, one line each naming the key and its file;
    then `~` and $VARIABLES expanded in every path key."""
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
        expand_paths(config)
    except (ConfigSchemaError, ConfigError) as error:
        raise WorkflowError(str(error))


_validate_config()


# ==== 2. paths and wildcards =======================================================
# Data live in a folder named after the archives they come from, results in the
# config's own folder: the demo and a real study never share either.
DATA_KEY = f"voc-{source_key(config, 'voc')}_sbd-{source_key(config, 'sbd')}"
DATA = f"resources/data/{DATA_KEY}"
VOC = f"{DATA}/VOCdevkit/VOC2012"
SBD = f"{DATA}/VOCdevkit/VOCaug/dataset"
SPLITS = f"{VOC}/ImageSets/Segmentation"
RESULTS = config["results"]  # this study's runs, tables, figures
# a run: a variant trained for a budget (e<epochs> or i<iterations>) from a seed
RUN = f"{RESULTS}/runs/{{variant}}/{{budget}}-s{{seed}}"  # a run's outputs and its jobs' logs
WORK = f"{RESULTS}/work/{{variant}}/{{budget}}-s{{seed}}"  # its checkpoints (never deleted by Snakemake)
SUBSETS = f"{SPLITS}/subsets"  # the lists of variants' subsets
SNAPSHOT = f"{RESULTS}/snapshot"


def _official_md5s():
    """The md5s of the official archives: the schema's defaults."""
    with open(workflow.source_path("../config/schemas/config.schema.yaml")) as handle:
        sources = yaml.safe_load(handle)["properties"]["data"]["properties"]
    return {name: sources[name]["properties"]["md5"]["default"] for name in DATA_SOURCES}


OFFICIAL_MD5 = _official_md5s()
# the plan: the config's cross-key checks, run grid, settings, sizes, report runs
try:
    PLAN = Plan(
        config, OFFICIAL_MD5, Paths(voc=VOC, splits=SPLITS, subsets=SUBSETS, results=RESULTS)
    )
except ConfigError as error:
    raise WorkflowError(str(error))


# sets from outside VOC, in VOC's layout (evaluation.ood)
COCO_KEY = f"images-{source_key(config, 'coco_images')}_annotations-{source_key(config, 'coco_annotations')}"
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
DATASET_ROOTS = PLAN.dataset_roots
EXTRACTED_DATASETS = {
    os.path.basename(DATASET_ROOTS[name]): name
    for name, dataset in config["datasets"].items()
    if "archive" in dataset
}
DATASET_CHECK = f"{RESULTS}/datasets/{{dataset}}.json"


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
    view=f"{re.escape(RESULTS)}|{re.escape(SNAPSHOT)}",


def code_hash(script):
    """Param: the content hash of scripts/<script> and the project modules it imports."""
    return code_digest(os.path.join(workflow.basedir, "scripts", script))


# ==== 3. data sources ==============================================================
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


is_official = PLAN.is_official
official_counts = PLAN.official_counts


def data_stage_outputs():
    return [
        f"{VOC}/JPEGImages",
        f"{VOC}/SegmentationClass",
        f"{VOC}/SegmentationClassAug",
        f"{VOC}/SegmentationClassSBD",
        *(f"{SPLITS}/{split}.txt" for split in ("train", "val", "trainaug", "aug", "train_sbd")),
    ]


# ==== 4. the run grid ==============================================================
# One trained model per variant x budget x seed (PLAN.all_runs): the VOC study's
# runs (every table and figure of the report) and those on datasets of `datasets`.
ALL_RUNS = PLAN.all_runs
STUDY_RUNS = PLAN.study_runs
DATASET_RUNS = PLAN.dataset_runs
STUDY_VARIANTS = PLAN.study_variants
DATASET_VARIANTS = PLAN.dataset_variants
VARIANT_SETTINGS = PLAN.settings  # the result-changing settings of each variant
INIT_SOURCES = PLAN.init_sources  # the run each fine-tuned variant starts from
VARIANT_LISTS = PLAN.variant_lists  # the lists each variant trains on
SUBSET_SETS = PLAN.subset_sets
SAMPLES = PLAN.samples
variant_budgets = PLAN.variant_budgets
variant_root = PLAN.variant_root
variant_lists_folder = PLAN.variant_lists_folder
# When jobs wait for a free slot (cores here, the profile's `jobs` on a cluster):
# the data preparation training waits for, the run configs and the init weights of
# fine-tuned runs go first, and so do the runs another variant starts from
# (init_from), whose fine-tuned runs cannot start before them.
DATA_PRIORITY = 1


def get_train_priority(wildcards):
    return int((wildcards.variant, wildcards.budget, wildcards.seed) in PLAN.init_source_runs)


def get_subset_lists(wildcards):
    """The whole lists a subset is drawn from."""
    return [f"{SPLITS}/{s['split']}.txt" for s in SUBSET_SETS[wildcards.subset]]


def get_subset_members(wildcards):
    return [member_name(s) for s in SUBSET_SETS[wildcards.subset]]


def get_subset_spec(wildcards):
    return canonical(PLAN.subset_specs[wildcards.subset])


def get_run_settings(wildcards):
    """Everything that determines the result of run {variant}/{budget}-s{seed}."""
    return PLAN.run_settings(
        wildcards.variant, wildcards.budget, wildcards.seed, WORK.format(**wildcards)
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


def get_train_sample(wildcards):
    """The sample folder of run {variant}'s training images (evaluation.train_sample)."""
    return f"{DATA}/train_samples/{PLAN.sample_name(wildcards.variant)}"


def get_sample_train_sets(wildcards):
    return canonical(VARIANT_SETTINGS[SAMPLES[wildcards.sample]]["train_sets"])


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
STUDY_RUN = f"{RESULTS}/runs/{{variant,{_one_of(STUDY_VARIANTS)}}}/{{budget}}-s{{seed}}"
DATASET_RUN = f"{RESULTS}/runs/{{variant,{_one_of(DATASET_VARIANTS)}}}/{{budget}}-s{{seed}}"
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
    outputs = [f"{RUN.format(**run)}/{name}" for run in STUDY_RUNS for name in names]
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
cost_summary = PLAN.cost_summary
TRAIN_CODE = code_hash("train_upernet.py")  # once: the runtime of each training job reads it
# amp bf16 and channels_last run common/precision.py too (their config imports it):
# their runs' training code is both hashes, every other run's stays TRAIN_CODE
PRECISION_CODE = code_digest(
    os.path.join(workflow.basedir, "scripts", "common", "precision.py"),
    os.path.join(workflow.basedir, "scripts"),
)


# ... and their configs are rendered by a rule of their own (render_mmseg_config_precision)
PRECISION_VARIANTS = [v for v in VARIANT_SETTINGS if uses_precision_module(VARIANT_SETTINGS[v])]
PLAIN_VARIANTS = [v for v in VARIANT_SETTINGS if v not in PRECISION_VARIANTS]


def get_train_code(wildcards):
    """Param `code` of a run's training (and its work dir's code stamp, see get_train_runtime)."""
    if wildcards.variant not in PRECISION_VARIANTS:
        return TRAIN_CODE
    return hashlib.sha256(f"{TRAIN_CODE} {PRECISION_CODE}".encode()).hexdigest()[:16]


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
    return PLAN.train_runtime(
        wildcards.variant,
        wildcards.budget,
        attempt,
        work_dir=WORK.format(**wildcards),
        config_text=config_text,
        code=get_train_code(wildcards),
        images=size(VARIANT_LISTS[wildcards.variant]),
        val_images=size([f"{variant_lists_folder(wildcards.variant)}/val.txt"]),
    )


def get_attempt(wildcards, attempt):
    return attempt


# ==== 6. the report ================================================================
# Two views of the same rules: RESULTS (`results`: every run of the config; what
# `all` builds) and RESULTS/snapshot (only the runs that have finished, for a look
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
WHOLE_LIST_VARIANTS = PLAN.whole_list_variants()
TRAIN_LISTS = sorted(
    {f"{SPLITS}/{s['split']}.txt" for sets in WHOLE_LIST_VARIANTS.values() for s in sets}
)
# What Snakemake would rebuild (common/outdated.py): the snapshot leaves such runs
# out, the report refuses them.
OUTDATED = Outdated(workflow, PLAN, lambda run: RUN.format(**run))
_WARNED = set()  # runs the snapshot has said it leaves out


def report_outputs(view):
    finetune = [f"{view}/tables/finetune.{e}" for e in ("csv", "md")]
    finetune += [f"{view}/figures/finetune.{e}" for e in ("png", "pdf")]
    return (
        (finetune if DATASET_VARIANTS else [])
        + gpu_check_outputs()
        + [f"{view}/tables/{t}" for t in TABLES]
        + [f"{RESULTS}/tables/annotations.{e}" for e in ("csv", "md")]
        + [f"{view}/report/workflow.rst"]
        + [f"{view}/figures/{f}.{ext}" for f in FIGURES for ext in ("png", "pdf")]
    )


def view_runs(view, runs=STUDY_RUNS, files=REPORT_RUN_FILES):
    """The runs a view reports: all of them, or in the snapshot those with every file
    and up to date (one that Snakemake would rebuild is left out, with a warning)."""
    if view == RESULTS:
        return runs
    finished = [r for r in runs if all(os.path.exists(f"{RUN.format(**r)}/{n}") for n in files)]
    outdated = {run_name(r): OUTDATED.run(r) for r in finished if OUTDATED.run(r)}
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
    return PLAN.compared_runs(view_runs(view))


def final_runs(view):
    """Per variant, its run of the view's longest budget (first seed)."""
    return PLAN.final_runs(view_runs(view))


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
        return canonical(select(wildcards.view))

    return runs


def report_view():
    """The view `snakemake --report` writes: the snapshot's when `snapshot` is a target."""
    return SNAPSHOT if "snapshot" in sys.argv else RESULTS


def report_description():
    """The report's text: the view's Findings + report/workflow.rst once rule findings
    has written it, else report/workflow.rst alone."""
    rendered = f"{report_view()}/report/workflow.rst"
    return os.path.abspath(rendered) if os.path.exists(rendered) else "report/workflow.rst"


def reporting():
    """True when Snakemake was called to write the HTML report (`--report FILE`)."""
    return any(arg == "--report" or arg.startswith("--report=") for arg in sys.argv)


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
    if view == RESULTS:
        missing = [
            r
            for r in STUDY_RUNS
            if not all(os.path.exists(f"{RUN.format(**r)}/{n}") for n in REPORT_RUN_FILES)
        ]
        if missing:
            names = ", ".join(run_name(r) for r in missing)
            raise WorkflowError(
                f"the report would show tables without {len(missing)} run(s) of this config that "
                f"have not finished: {names}. Run the workflow first, or report the finished runs "
                f"only: `snakemake snapshot` then `snakemake --report <file> snapshot`."
            )
        outdated = {run_name(r): OUTDATED.run(r) for r in ALL_RUNS if OUTDATED.run(r)}
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
    redrawn = {f: why for f in report_outputs(view) if (why := OUTDATED.file(f))}
    if redrawn:
        details = "; ".join(f"{f} ({', '.join(why)})" for f, why in redrawn.items())
        raise WorkflowError(f"{drawn} are out of date: {details}: {again}.")


# ==== 6b. the GPU check (rules/gpu_check.smk) ======================================
# One measurement per model and GPU count (common/plan.py: Plan._gpu_checks); the
# report shows their table once every one has run and none is out of date (a
# measurement is never re-run by `all`: it would take GPUs).
GPU_CHECKS = PLAN.gpu_checks
GPU_CHECK_FILES = [f"{PLAN.gpu_check_folder}/{key}.json" for key in GPU_CHECKS]


def get_gpu_check_run(wildcards):
    """Param `run` of measure_gpu (the recipe it measures), the settings of the config's first run of the model."""
    key = f"{wildcards.model}-{wildcards.gpus}"
    if key not in GPU_CHECKS:
        raise WorkflowError(
            f"gpu_check: no variant of this config trains {wildcards.model} on {wildcards.gpus} GPU(s) "
            f"(the checks: {', '.join(GPU_CHECKS)})"
        )
    return GPU_CHECKS[key]


def gpu_check_outputs():
    """The GPU check's table, for the report, when all of its measurements are there and up to date."""
    table = f"{PLAN.gpu_check_folder}/gpu_check.csv"
    readable = {f"{PLAN.gpu_check_folder}/{m}-{g}.json" for m, g in PLAN.measurements}
    unready = [f for f in GPU_CHECK_FILES if f not in readable or OUTDATED.file(f)]
    if unready and readable and "gpu_check" not in _WARNED:
        _WARNED.add("gpu_check")
        logger.info(
            f"the report leaves out the GPU check's table: {', '.join(unready)} missing or out of "
            "date (`snakemake gpu_check` measures again)"
        )
    return [] if unready else [table, table[: -len("csv")] + "md"]


# ==== 7. published references ======================================================
# Every run is set beside its nearest published result (config/references.yaml):
# the summary, the per-class table and Findings read it, `snakemake check`
# compares each run's recipe with it before any GPU is spent.
REFERENCES_FILE = config["report"]["references"]
VARIANT_RECIPES = PLAN.variant_recipes
recipe_checks = PLAN.recipe_checks


def get_published_columns(wildcards):
    """{budget: {variant: (reference name, per-class IoU)}} of the view's compared
    variants where a published per-class table has the same recipe and epoch count."""
    return PLAN.published_columns(view_runs(wildcards.view))


# ==== 8. attribution ===============================================================
# The compared change (report.compare) split into the parts the config's runs
# identify (common/attribution.py), and the data-scaling figure's points.
ATTRIBUTION = PLAN.attribution
ANNOTATION_SOURCES = PLAN.annotation_sources


def attribution_runs(view):
    """The view's runs that some part of the attribution compares."""
    return PLAN.attribution_runs(view_runs(view))


def scaling_runs(view):
    """The data-scaling points among the view's runs (PLAN.scaling_runs)."""
    return PLAN.scaling_runs(view_runs(view))


# ==== 9. fine-tuning on your own datasets ===========================================
# Per dataset: each variant that starts from another run (init_from) against each
# that does not, at the budgets both have (rule compare_finetuning).
def finetune_runs(view):
    return view_runs(view, DATASET_RUNS, DATASET_RUN_FILES)


FINETUNE_VARIANTS = PLAN.finetune_variants
FINETUNE_PAIRS, FINETUNE_MISSING = PLAN.finetune_pairs, PLAN.finetune_missing
DATASET_CLASSES = PLAN.dataset_classes
