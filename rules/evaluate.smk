# A VOC run on VOC val and, in the same job (one start of torch and MMSeg), on the
# evaluations beyond it that the config asks for: its training-image sample
# (evaluation.train_sample) and each evaluation.ood set. Switching one on
# re-evaluates the runs and retrains nothing.
rule evaluate_upernet:
    input:
        unpack(get_evaluation_data),
        config=rules.render_mmseg_config.output.config,
        checkpoint=rules.train_upernet.output.checkpoint,
    output:
        **EXTRA_EVALUATION_OUTPUTS,
        metrics=f"{STUDY_RUN}/metrics.json",
        confusion=f"{STUDY_RUN}/confusion.npy",
        per_image=f"{STUDY_RUN}/confusion_per_image.npz",
        predictions=directory(f"{STUDY_RUN}/predictions"),
    log:
        f"{RUN}/evaluate.log",
    benchmark:
        f"{RUN}/evaluate_benchmark.tsv"
    conda:
        "../envs/train.yaml"
    threads: 4
    resources:
        gpu=1,
        cpus_per_gpu=4,
        mem_mb=16000,
        runtime=60,
    params:
        code=code_hash("evaluate_upernet.py"),
        tta=False,
        sets={folder: evaluation_key(folder) for folder in EXTRA_EVALUATIONS},
    script:
        "../scripts/evaluate_upernet.py"


# A run on a dataset of `datasets`: on that dataset's val list, with its classes.
use rule evaluate_upernet as evaluate_upernet_dataset with:
    input:
        unpack(get_val_data),
        config=rules.render_mmseg_config.output.config,
        checkpoint=rules.train_upernet.output.checkpoint,
    output:
        metrics=f"{DATASET_RUN}/metrics.json",
        confusion=f"{DATASET_RUN}/confusion.npy",
        per_image=f"{DATASET_RUN}/confusion_per_image.npz",
        predictions=directory(f"{DATASET_RUN}/predictions"),
    params:
        code=code_hash("evaluate_upernet.py"),
        tta=False,
        sets={},


# Flip + MMSeg's six scales: a separate output, so switching it on retrains nothing.
use rule evaluate_upernet as evaluate_upernet_tta with:
    input:
        unpack(get_val_data),
        config=rules.render_mmseg_config.output.config,
        checkpoint=rules.train_upernet.output.checkpoint,
    output:
        metrics=f"{RUN}/metrics_tta.json",
        confusion=f"{RUN}/confusion_tta.npy",
        per_image=f"{RUN}/confusion_per_image_tta.npz",
        predictions=directory(f"{RUN}/predictions_tta"),
    log:
        f"{RUN}/evaluate_tta.log",
    benchmark:
        f"{RUN}/evaluate_tta_benchmark.tsv"
    resources:
        gpu=1,
        cpus_per_gpu=4,
        mem_mb=16000,
        runtime=240,
    params:
        code=code_hash("evaluate_upernet.py"),
        tta=True,
        sets={},


# Overfitting, measured: every run on a fixed sample of its own training images
# (the same sample for every run of the same training sets), with VOC val's
# test pipeline.  Separate outputs: switching it on retrains nothing.
rule sample_train_images:
    input:
        lists=get_sample_lists,
        labels=get_sample_label_dirs,
        images=f"{VOC}/JPEGImages",
    output:
        directory(f"{DATA}/train_samples/{{sample}}"),
    log:
        f"logs/sample_train_images/{DATA_KEY}/{{sample}}.log",
    wildcard_constraints:
        sample=r"[^/]+",
    conda:
        "../envs/data.yaml"
    params:
        code=code_hash("sample_train_images.py"),
        train_sets=get_sample_train_sets,
        label_dirs=get_sample_label_dirs,
        size=config["evaluation"]["train_sample"],
        seed=config["evaluation"]["sample_seed"],
    script:
        "../scripts/sample_train_images.py"
