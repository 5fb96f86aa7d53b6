rule evaluate_upernet:
    input:
        config=rules.render_mmseg_config.output[0],
        checkpoint=rules.train_upernet.output.checkpoint,
        images=f"{VOC}/JPEGImages",
        labels=f"{VOC}/SegmentationClass",
        val=f"{SPLITS}/val.txt",
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
