import os

import yaml
from snakemake.utils import validate

# A wrong key or type fails here, before any job, with the key's name.
validate(config, "../config/schemas/config.schema.yaml")


VOC = "resources/VOCdevkit/VOC2012"
SBD = "resources/VOCdevkit/VOCaug/dataset"
SPLITS = f"{VOC}/ImageSets/Segmentation"


def _official_md5s():
    """The md5s of the official archives: the schema's defaults."""
    with open(workflow.source_path("../config/schemas/config.schema.yaml")) as handle:
        sources = yaml.safe_load(handle)["properties"]["data"]["properties"]
    return {name: sources[name]["properties"]["md5"]["default"] for name in ("voc", "sbd")}


OFFICIAL_MD5 = _official_md5s()


def archive_path(name):
    """The archive of data source `name`: the configured file, or where it is downloaded to."""
    source = config["data"][name]
    if source["archive"] is None:
        return f"resources/archives/{os.path.basename(source['url'].rstrip('/'))}"
    if not os.path.isfile(source["archive"]):
        raise WorkflowError(
            f"data.{name}.archive: no such file {source['archive']!r} "
            f"(set it to null to download data.{name}.url)"
        )
    return source["archive"]


def download_source(wildcards):
    """The config entry whose archive resources/archives/{archive} is."""
    for name, source in config["data"].items():
        if archive_path(name) == f"resources/archives/{wildcards.archive}":
            return source
    raise WorkflowError(f"no data source downloads to resources/archives/{wildcards.archive}")


def download_url(wildcards):
    return download_source(wildcards)["url"]


def download_md5(wildcards):
    return download_source(wildcards)["md5"]


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
        *(f"{SPLITS}/{split}.txt" for split in ("train", "val", "trainaug", "aug")),
    ]
