localrules:
    snapshot,


# Tables and figures read only the runs' outputs (metrics, history, confusion
# counts, predictions): adding a run or editing a plotting script re-runs these
# rules and nothing upstream.
rule summarize_runs:
    input:
        metrics=get_view_files("metrics.json"),
        history=get_view_files("history.csv"),
        attempts=get_view_files("attempts.tsv"),
        train_set=get_view_files("train_set.json"),
        tta=get_tta_metrics,
        references=REFERENCES_FILE,
    output:
        csv=report(
            "{view}/tables/summary.csv",
            caption="../report/summary.rst",
            category="Tables",
        ),
        md="{view}/tables/summary.md",
    log:
        "logs/summarize_runs/{view}.log",
    conda:
        "../envs/plots.yaml"
    params:
        code=code_hash("summarize_runs.py"),
        runs=get_runs_param(view_runs),
        gpus=config["training"]["gpus"],
        convergence_fraction=config["report"]["convergence_fraction"],
        recipes=canonical(VARIANT_RECIPES),
        confidence=config["report"]["bootstrap"]["confidence"],
    script:
        "../scripts/summarize_runs.py"


rule compare_per_class:
    input:
        per_image=get_view_files("confusion_per_image.npz", compared_runs),
    output:
        csv=report(
            "{view}/tables/per_class_iou.csv",
            caption="../report/per_class_iou_table.rst",
            category="Tables",
        ),
        md="{view}/tables/per_class_iou.md",
    log:
        "logs/compare_per_class/{view}.log",
    conda:
        "../envs/plots.yaml"
    params:
        code=code_hash("compare_per_class.py"),
        runs=get_runs_param(compared_runs),
        compare=config["report"]["compare"],
        bootstrap=config["report"]["bootstrap"],
        threshold=config["report"]["improvement_threshold"],
        # the study's published per-class IoU, where a compared run has its recipe
        published=get_published_columns,
    script:
        "../scripts/compare_per_class.py"


rule plot_per_class:
    input:
        table=rules.compare_per_class.output.csv,
    output:
        bars=report(
            "{view}/figures/per_class_iou.png",
            caption="../report/per_class_iou.rst",
            category="Per-class IoU",
        ),
        bars_pdf="{view}/figures/per_class_iou.pdf",
        change=report(
            "{view}/figures/per_class_change.png",
            caption="../report/per_class_change.rst",
            category="Per-class IoU",
        ),
        change_pdf="{view}/figures/per_class_change.pdf",
    log:
        "logs/plot_per_class/{view}.log",
    conda:
        "../envs/plots.yaml"
    params:
        code=code_hash("plot_per_class.py"),
        compare=config["report"]["compare"],
        confidence=config["report"]["bootstrap"]["confidence"],
    script:
        "../scripts/plot_per_class.py"


rule plot_learning_curves:
    input:
        history=get_view_files("history.csv"),
        metrics=get_view_files("metrics.json"),
        train_set=get_view_files("train_set.json"),
    output:
        curves=report(
            "{view}/figures/learning_curves.png",
            caption="../report/learning_curves.rst",
            category="Training",
        ),
        curves_pdf="{view}/figures/learning_curves.pdf",
        final=report(
            "{view}/figures/miou_vs_epochs.png",
            caption="../report/miou_vs_epochs.rst",
            category="Training",
        ),
        final_pdf="{view}/figures/miou_vs_epochs.pdf",
    log:
        "logs/plot_learning_curves/{view}.log",
    conda:
        "../envs/plots.yaml"
    params:
        code=code_hash("plot_learning_curves.py"),
        runs=get_runs_param(view_runs),
        x=config["report"]["learning_curves_x"],
    script:
        "../scripts/plot_learning_curves.py"


rule plot_qualitative:
    input:
        predictions=get_view_files("predictions", final_runs),
        images=f"{VOC}/JPEGImages",
        labels=f"{VOC}/SegmentationClass",
        val=f"{SPLITS}/val.txt",
    output:
        panel=report(
            "{view}/figures/qualitative.png",
            caption="../report/qualitative.rst",
            category="Predictions",
        ),
        panel_pdf="{view}/figures/qualitative.pdf",
    log:
        "logs/plot_qualitative/{view}.log",
    conda:
        "../envs/plots.yaml"
    params:
        code=code_hash("plot_qualitative.py"),
        runs=get_runs_param(final_runs),
        images=config["report"]["qualitative_images"],
        how_many=config["report"]["qualitative_count"],
    script:
        "../scripts/plot_qualitative.py"


rule plot_confusion:
    input:
        confusion=get_view_files("confusion.npy", final_runs),
    output:
        matrix=report(
            "{view}/figures/confusion_hard_classes.png",
            caption="../report/confusion_hard_classes.rst",
            category="Predictions",
        ),
        matrix_pdf="{view}/figures/confusion_hard_classes.pdf",
    log:
        "logs/plot_confusion/{view}.log",
    conda:
        "../envs/plots.yaml"
    params:
        code=code_hash("plot_confusion.py"),
        runs=get_runs_param(final_runs),
        classes=config["report"]["hard_classes"],
    script:
        "../scripts/plot_confusion.py"


rule generalization:
    input:
        **{f"ood_{name}": get_view_files(f"ood/{name}/confusion_per_image.npz") for name in OOD},
        val=get_view_files("confusion_per_image.npz"),
        train=get_train_sample_files,
    output:
        csv=report(
            "{view}/tables/generalization.csv",
            caption="../report/generalization_table.rst",
            category="Tables",
        ),
        md="{view}/tables/generalization.md",
    log:
        "logs/generalization/{view}.log",
    conda:
        "../envs/plots.yaml"
    params:
        code=code_hash("generalization.py"),
        runs=get_runs_param(view_runs),
        ood=OOD,
        bootstrap=config["report"]["bootstrap"],
    script:
        "../scripts/generalization.py"


rule plot_generalization:
    input:
        table=rules.generalization.output.csv,
    output:
        png=report(
            "{view}/figures/generalization_gap.png",
            caption="../report/generalization_gap.rst",
            category="Generalization",
        ),
        pdf="{view}/figures/generalization_gap.pdf",
    log:
        "logs/plot_generalization/{view}.log",
    conda:
        "../envs/plots.yaml"
    params:
        code=code_hash("plot_generalization.py"),
        variants=STUDY_VARIANTS,
        confidence=config["report"]["bootstrap"]["confidence"],
    script:
        "../scripts/plot_generalization.py"


# Why classes move (data-centric, no model): SBD's labels against VOC's on the
# images both annotate, and each variant's class frequency.  One table per study
# (it reads the data, not the runs); the figure sets it beside the IoU change.
rule compare_annotations:
    input:
        voc_labels=rules.extract_voc.output.labels,
        sbd_cls=rules.extract_sbd.output.cls,
        voc_train=rules.extract_voc.output.train,
        voc_val=rules.extract_voc.output.val,
        sbd_train=rules.extract_sbd.output.train,
        sbd_val=rules.extract_sbd.output.val,
        aug_labels=rules.convert_sbd.output.labels,
        sbd_labels=rules.convert_sbd.output.sbd_labels,
        lists=TRAIN_LISTS,
    output:
        csv=report(
            f"{RESULTS}/tables/annotations.csv",
            caption="../report/annotations_table.rst",
            category="Tables",
        ),
        md=f"{RESULTS}/tables/annotations.md",
    log:
        f"logs/compare_annotations/{DATA_KEY}.log",
    benchmark:
        f"logs/benchmarks/compare_annotations/{DATA_KEY}.tsv"
    conda:
        "../envs/data.yaml"
    threads: 8
    resources:
        mem_mb=8000,
        runtime=30,
    params:
        code=code_hash("compare_annotations.py"),
        variants=canonical(WHOLE_LIST_VARIANTS),
    script:
        "../scripts/compare_annotations.py"


rule plot_annotations:
    input:
        table=rules.compare_annotations.output.csv,
        per_class=rules.compare_per_class.output.csv,
    output:
        png=report(
            "{view}/figures/annotation_agreement.png",
            caption="../report/annotation_agreement.rst",
            category="Per-class IoU",
        ),
        pdf="{view}/figures/annotation_agreement.pdf",
    log:
        "logs/plot_annotations/{view}.log",
    conda:
        "../envs/plots.yaml"
    params:
        code=code_hash("plot_annotations.py"),
        compare=config["report"]["compare"],
    script:
        "../scripts/plot_annotations.py"


# Data quantity, annotation source and compute, separated: the compared change
# split into the parts the config's runs identify (config/attribution.yaml has
# the runs that measure every part).
rule attribution:
    input:
        per_image=get_view_files("confusion_per_image.npz", attribution_runs),
    output:
        csv=report(
            "{view}/tables/attribution.csv",
            caption="../report/attribution.rst",
            category="Tables",
        ),
        md="{view}/tables/attribution.md",
    log:
        "logs/attribution/{view}.log",
    conda:
        "../envs/plots.yaml"
    params:
        code=code_hash("attribution.py"),
        runs=get_runs_param(attribution_runs),
        parts=ATTRIBUTION,
        bootstrap=config["report"]["bootstrap"],
    script:
        "../scripts/attribution.py"


rule plot_data_scaling:
    input:
        **{
            f"ood_{name}": get_view_files(f"ood/{name}/confusion_per_image.npz", scaling_runs)
            for name in OOD
        },
        val=get_view_files("confusion_per_image.npz", scaling_runs),
        train_set=get_view_files("train_set.json", scaling_runs),
    output:
        png=report(
            "{view}/figures/data_scaling.png",
            caption="../report/data_scaling.rst",
            category="Generalization",
        ),
        pdf="{view}/figures/data_scaling.pdf",
        csv="{view}/figures/data_scaling.csv",
    log:
        "logs/plot_data_scaling/{view}.log",
    conda:
        "../envs/plots.yaml"
    params:
        code=code_hash("plot_data_scaling.py"),
        runs=get_runs_param(scaling_runs),
        sources=ANNOTATION_SOURCES,
        ood=OOD,
        bootstrap=config["report"]["bootstrap"],
    script:
        "../scripts/plot_data_scaling.py"


# The report opens with what the tables say (report/workflow.rst follows).
rule findings:
    input:
        attribution=rules.attribution.output.csv,
        per_class=rules.compare_per_class.output.csv,
        generalization=rules.generalization.output.csv,
        annotations=rules.compare_annotations.output.csv,
        summary=rules.summarize_runs.output.csv,
        description="report/workflow.rst",
    output:
        "{view}/report/workflow.rst",
    log:
        "logs/findings/{view}.log",
    conda:
        "../envs/plots.yaml"
    params:
        code=code_hash("findings.py"),
        compare=config["report"]["compare"],
        confidence=config["report"]["bootstrap"]["confidence"],
    script:
        "../scripts/findings.py"


# Figures and tables of the runs finished so far, without training the others.
rule snapshot:
    input:
        report_outputs(SNAPSHOT),


# Fine-tuning from a trained run against training from zero, on each dataset of `datasets`
# (tables/finetune, figures/finetune).
rule compare_finetuning:
    input:
        per_image=get_view_files("confusion_per_image.npz", finetune_runs),
        history=get_view_files("history.csv", finetune_runs),
    output:
        csv=report(
            "{view}/tables/finetune.csv",
            caption="../report/finetune_table.rst",
            category="Fine-tuning",
        ),
        md="{view}/tables/finetune.md",
        png=report(
            "{view}/figures/finetune.png",
            caption="../report/finetune.rst",
            category="Fine-tuning",
        ),
        pdf="{view}/figures/finetune.pdf",
    log:
        "logs/compare_finetuning/{view}.log",
    conda:
        "../envs/plots.yaml"
    params:
        code=code_hash("compare_finetuning.py"),
        runs=get_runs_param(finetune_runs),
        variants=FINETUNE_VARIANTS,
        pairs=FINETUNE_PAIRS,
        missing=FINETUNE_MISSING,
        classes=DATASET_CLASSES,
        bootstrap=config["report"]["bootstrap"],
    script:
        "../scripts/compare_finetuning.py"
