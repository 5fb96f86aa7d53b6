localrules:
    download_archive,
    data,
    make_subset,


# `snakemake data`: the data stage alone
rule data:
    input:
        data_stage_outputs(),


rule download_archive:
    output:
        "resources/archives/{archive}",
    log:
        "logs/download_archive/{archive}.log",
    conda:
        "../envs/data.yaml"
    params:
        url=get_download_url,
        md5=get_download_md5,
    script:
        "../scripts/download_archive.py"


rule extract_voc:
    input:
        archive=archive_path("voc"),
    output:
        images=directory(f"{VOC}/JPEGImages"),
        labels=directory(f"{VOC}/SegmentationClass"),
        train=f"{SPLITS}/train.txt",
        val=f"{SPLITS}/val.txt",
    log:
        f"logs/extract_voc/{DATA_KEY}.log",
    benchmark:
        f"logs/benchmarks/extract_voc/{DATA_KEY}.tsv"
    priority: DATA_PRIORITY
    conda:
        "../envs/data.yaml"
    resources:
        runtime=60,
    params:
        code=code_hash("extract_archive.py"),
        md5=config["data"]["voc"]["md5"],
        md5_key="data.voc.md5",
        members={
            "VOCdevkit/VOC2012/JPEGImages": "images",
            "VOCdevkit/VOC2012/SegmentationClass": "labels",
            "VOCdevkit/VOC2012/ImageSets/Segmentation/train.txt": "train",
            "VOCdevkit/VOC2012/ImageSets/Segmentation/val.txt": "val",
        },
    script:
        "../scripts/extract_archive.py"


rule extract_sbd:
    input:
        archive=archive_path("sbd"),
    output:
        cls=directory(f"{SBD}/cls"),
        train=f"{SBD}/train.txt",
        val=f"{SBD}/val.txt",
    log:
        f"logs/extract_sbd/{DATA_KEY}.log",
    benchmark:
        f"logs/benchmarks/extract_sbd/{DATA_KEY}.tsv"
    priority: DATA_PRIORITY
    conda:
        "../envs/data.yaml"
    resources:
        runtime=60,
    params:
        code=code_hash("extract_archive.py"),
        md5=config["data"]["sbd"]["md5"],
        md5_key="data.sbd.md5",
        members={
            "benchmark_RELEASE/dataset/cls": "cls",
            "benchmark_RELEASE/dataset/train.txt": "train",
            "benchmark_RELEASE/dataset/val.txt": "val",
        },
    script:
        "../scripts/extract_archive.py"


rule make_trainaug_list:
    input:
        voc_train=rules.extract_voc.output.train,
        voc_val=rules.extract_voc.output.val,
        sbd_train=rules.extract_sbd.output.train,
        sbd_val=rules.extract_sbd.output.val,
        images=rules.extract_voc.output.images,
    output:
        trainaug=f"{SPLITS}/trainaug.txt",
        aug=f"{SPLITS}/aug.txt",
        # VOC train ids SBD also annotates: the same images under two annotators
        train_sbd=f"{SPLITS}/train_sbd.txt",
    log:
        f"logs/make_trainaug_list/{DATA_KEY}.log",
    priority: DATA_PRIORITY
    conda:
        "../envs/data.yaml"
    params:
        code=code_hash("make_trainaug_list.py"),
        official_counts=official_counts(),
    script:
        "../scripts/make_trainaug_list.py"


rule convert_sbd:
    input:
        voc_train=rules.extract_voc.output.train,
        voc_val=rules.extract_voc.output.val,
        voc_labels=rules.extract_voc.output.labels,
        sbd_train=rules.extract_sbd.output.train,
        sbd_val=rules.extract_sbd.output.val,
        sbd_cls=rules.extract_sbd.output.cls,
    output:
        labels=directory(f"{VOC}/SegmentationClassAug"),
        # SBD's label of every id SBD annotates (VOC's never substituted): label sources
        sbd_labels=directory(f"{VOC}/SegmentationClassSBD"),
    log:
        f"logs/convert_sbd/{DATA_KEY}.log",
    benchmark:
        f"logs/benchmarks/convert_sbd/{DATA_KEY}.tsv"
    priority: DATA_PRIORITY
    conda:
        "../envs/data.yaml"
    threads: 8
    resources:
        mem_mb=8000,
        runtime=30,
    params:
        code=code_hash("convert_sbd.py"),
    script:
        "../scripts/convert_sbd.py"


# COCO 2017 val with VOC's 20 classes, in VOC's layout (evaluation.ood: [coco]):
# converted as torchvision's segmentation references do.
rule convert_coco:
    input:
        images=archive_path("coco_images"),
        annotations=archive_path("coco_annotations"),
    output:
        images=directory(OOD_SETS["coco"]["images"]),
        labels=directory(OOD_SETS["coco"]["labels"]),
        list=OOD_SETS["coco"]["list"],
    log:
        f"logs/convert_coco/{COCO_KEY}.log",
    benchmark:
        f"logs/benchmarks/convert_coco/{COCO_KEY}.tsv"
    conda:
        "../envs/data.yaml"
    resources:
        mem_mb=8000,
        runtime=60,
    params:
        code=code_hash("convert_coco.py"),
        md5_images=config["data"]["coco_images"]["md5"],
        md5_annotations=config["data"]["coco_annotations"]["md5"],
        md5_keys=["data.coco_images.md5", "data.coco_annotations.md5"],
        expected_images=(
            COCO_EXPECTED_IMAGES
            if is_official("coco_images") and is_official("coco_annotations")
            else None
        ),
    script:
        "../scripts/convert_coco.py"


# A variant's subset (variants.<name>.subset): one list per train set, nested for
# one subset_seed (common/subsets.py), beside the whole lists it is drawn from.
# A localrule: it reads a few lists, not worth a queue wait.
rule make_subset:
    input:
        lists=get_subset_lists,
    output:
        f"{SUBSETS}/{{subset}}/{{member}}.txt",
    log:
        f"logs/make_subset/{DATA_KEY}/{{subset}}/{{member}}.log",
    priority: DATA_PRIORITY
    conda:
        "../envs/data.yaml"
    params:
        code=code_hash("make_subset.py"),
        members=get_subset_members,
        subset=get_subset_spec,
    script:
        "../scripts/make_subset.py"


# ---- your own datasets (config `datasets`) ----------------------------------------
# An archive is extracted into a folder named after its md5 (a folder is used as it is).
rule extract_dataset:
    input:
        archive=lambda w: config["datasets"][EXTRACTED_DATASETS[w.extracted]]["archive"],
    output:
        images=directory("resources/datasets/{extracted}/JPEGImages"),
        labels=directory("resources/datasets/{extracted}/SegmentationClass"),
        train="resources/datasets/{extracted}/ImageSets/Segmentation/train.txt",
        val="resources/datasets/{extracted}/ImageSets/Segmentation/val.txt",
    log:
        "logs/extract_dataset/{extracted}.log",
    priority: DATA_PRIORITY
    conda:
        "../envs/data.yaml"
    params:
        code=code_hash("extract_archive.py"),
        md5=lambda w: config["datasets"][EXTRACTED_DATASETS[w.extracted]].get("md5"),
        md5_key=lambda w: f"datasets.{EXTRACTED_DATASETS[w.extracted]}.md5",
        members=lambda w: {
            os.path.join(config["datasets"][EXTRACTED_DATASETS[w.extracted]]["root"], path): name
            for path, name in (
                ("JPEGImages", "images"),
                ("SegmentationClass", "labels"),
                ("ImageSets/Segmentation/train.txt", "train"),
                ("ImageSets/Segmentation/val.txt", "val"),
            )
        },
    script:
        "../scripts/extract_archive.py"


# Before any of its runs trains: every listed id has its image and label, every
# label value is a class of the list (or 255), every class appears in train.
rule check_dataset:
    input:
        images=lambda w: f"{DATASET_ROOTS[w.dataset]}/JPEGImages",
        labels=lambda w: f"{DATASET_ROOTS[w.dataset]}/SegmentationClass",
        train=lambda w: f"{DATASET_ROOTS[w.dataset]}/ImageSets/Segmentation/train.txt",
        val=lambda w: f"{DATASET_ROOTS[w.dataset]}/ImageSets/Segmentation/val.txt",
    output:
        DATASET_CHECK,
    log:
        f"{RESULTS}/datasets/{{dataset}}.log",
    priority: DATA_PRIORITY
    conda:
        "../envs/data.yaml"
    params:
        code=code_hash("check_dataset.py"),
        classes=lambda w: config["datasets"][w.dataset]["classes"],
    script:
        "../scripts/check_dataset.py"
