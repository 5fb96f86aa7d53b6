# `snakemake predict --config 'predict={images: DIR}'`: each variant's longest
# run (final_runs) on a folder of your own JPEG/PNG pictures, which need no
# labels: colour overlays side by side in <results>/predict/<folder name>-<hash>/
# (8 hex digits of the folder's real path, so a/pics and b/pics never share
# one), one <stem>.png per picture and panel.png; a picture that cannot be read
# or predicted is skipped with its reason in the log. Only target `predict`
# reads predict.images (checked when planning, by the job script's own
# listing); unset, every other target plans as before.
from predict_images import planned_folder, planned_output


localrules:
    predict,


PREDICT_RUNS = final_runs(RESULTS)


rule predict_images:
    input:
        configs=[f"{RUN.format_map(run)}/config.py" for run in PREDICT_RUNS],
        checkpoints=[f"{RUN.format_map(run)}/final.pth" for run in PREDICT_RUNS],
        images=lambda w: planned_folder(config["predict"]["images"], RESULTS, w.folder),
    output:
        directory(f"{RESULTS}/predict/{{folder}}"),
    log:
        f"logs/predict/{RESULTS}/{{folder}}.log",
    wildcard_constraints:
        folder=r"[^/]+",
    conda:
        "../envs/train.yaml"
    threads: 4
    resources:
        gpu=1,
        cpus_per_gpu=4,
        mem_mb=16000,
        runtime=30,
    params:
        code=code_hash("predict_images.py"),
        runs=canonical(PREDICT_RUNS),
        images=lambda w: planned_folder(config["predict"]["images"], RESULTS, w.folder),
    script:
        "../scripts/predict_images.py"


rule predict:
    input:
        lambda w: planned_output(config["predict"]["images"], RESULTS),
