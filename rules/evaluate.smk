rule evaluate_upernet:
    input:
        unpack(get_val_data),
        config=rules.render_mmseg_config.output.config,
        checkpoint=rules.train_upernet.output.checkpoint,
    output:
        metrics=f"{RUN}/metrics.json",
        confusion=f"{RUN}/confusion.npy",
        per_image=f"{RUN}/confusion_per_image.npz",
        predictions=directory(f"{RUN}/predictions"),
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
        code=code("evaluate_upernet.py"),
        tta=False,
    script:
        "../scripts/evaluate_upernet.py"


# Flip + MMSeg's six scales: a separate output, so switching it on retrains nothing.
use rule evaluate_upernet as evaluate_upernet_tta with:
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
        code=code("evaluate_upernet.py"),
        tta=True,


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
        code=code("sample_train_images.py"),
        train_sets=get_sample_train_sets,
        label_dirs=get_sample_label_dirs,
        size=config["evaluation"]["train_sample"],
        seed=config["evaluation"]["sample_seed"],
    script:
        "../scripts/sample_train_images.py"


use rule evaluate_upernet as evaluate_upernet_train with:
    input:
        config=rules.render_mmseg_config.output.config,
        checkpoint=rules.train_upernet.output.checkpoint,
        sample=get_train_sample,
    output:
        metrics=f"{RUN}/train_sample/metrics.json",
        confusion=f"{RUN}/train_sample/confusion.npy",
        per_image=f"{RUN}/train_sample/confusion_per_image.npz",
    log:
        f"{RUN}/evaluate_train_sample.log",
    benchmark:
        f"{RUN}/evaluate_train_sample_benchmark.tsv"
    params:
        code=code("evaluate_upernet.py"),
        tta=False,
        dataset=True,


# Generalization beyond VOC val: every run on each evaluation.ood set (COCO val
# images with VOC's classes).
use rule evaluate_upernet as evaluate_upernet_ood with:
    input:
        config=rules.render_mmseg_config.output.config,
        checkpoint=rules.train_upernet.output.checkpoint,
        images=lambda w: OOD_SETS[w.ood]["images"],
        labels=lambda w: OOD_SETS[w.ood]["labels"],
        list=lambda w: OOD_SETS[w.ood]["list"],
    output:
        metrics=f"{RUN}/ood/{{ood}}/metrics.json",
        confusion=f"{RUN}/ood/{{ood}}/confusion.npy",
        per_image=f"{RUN}/ood/{{ood}}/confusion_per_image.npz",
    log:
        f"{RUN}/evaluate_ood_{{ood}}.log",
    benchmark:
        f"{RUN}/evaluate_ood_{{ood}}_benchmark.tsv"
    params:
        code=code("evaluate_upernet.py"),
        tta=False,
        dataset=True,
