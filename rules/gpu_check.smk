# `snakemake gpu_check --profile profiles/slurm`, before a sweep: one GPU job per
# model the variants train (at 1 GPU, and at training.gpus when more), each a few
# dozen steps of the study's own recipe in fp32, AMP and channels_last. Not part of
# `all`: its results size the runtime requests and `snakemake cost` (planning
# only: a new measurement retrains nothing); the report shows its table when every
# planned check has run and is up to date.
localrules:
    gpu_check_table,
    gpu_check,


rule measure_gpu:
    output:
        f"{RESULTS}/gpu_check/{{model}}-{{gpus}}.json",
    log:
        f"logs/gpu_check/{{model}}-{{gpus}}.log",
    wildcard_constraints:
        model=r"[a-z0-9_]+",
        gpus=r"\d+",
    conda:
        "../envs/train.yaml"
    threads: 4
    resources:
        gpu=lambda w: int(w.gpus),
        cpus_per_gpu=8,
        mem_mb=64000,
        runtime=30,
    params:
        code=code_hash("gpu_check.py"),
        run=get_gpu_check_run,
    script:
        "../scripts/gpu_check.py"


rule gpu_check_table:
    input:
        GPU_CHECK_FILES,
    output:
        csv=report(
            f"{RESULTS}/gpu_check/gpu_check.csv",
            caption="../report/gpu_check.rst",
            category="GPU check",
        ),
        md=f"{RESULTS}/gpu_check/gpu_check.md",
    log:
        "logs/gpu_check/table.log",
    conda:
        "../envs/data.yaml"
    params:
        code=code_hash("gpu_check_table.py"),
    script:
        "../scripts/gpu_check_table.py"


# the table on the terminal
rule gpu_check:
    input:
        rules.gpu_check_table.output.md,
    log:
        "logs/gpu_check/check.log",
    conda:
        "../envs/data.yaml"
    script:
        "../scripts/check.py"
