localrules:
    fetch_pretrained,
    render_mmseg_config,
    render_mmseg_config_precision,
    cost,
    recipe_check,
    check,


# `snakemake cost`: what the sweep will take, before submitting it (every run
# also logs the same line when it starts)
rule cost:
    log:
        "logs/cost.log",
    conda:
        "../envs/data.yaml"
    params:
        summary=cost_summary(),
    script:
        "../scripts/cost.py"


# Each run's recipe against the published reference it will be compared with
# (report.references), and the known reproduction traps: planning only, no
# torch; the table also goes into the report.
rule recipe_check:
    input:
        references=REFERENCES_FILE,
    output:
        csv=report(
            "{view}/tables/recipe_check.csv",
            caption="../report/recipe_check.rst",
            category="Tables",
        ),
        md="{view}/tables/recipe_check.md",
    log:
        "logs/recipe_check/{view}.log",
    conda:
        "../envs/data.yaml"
    params:
        code=code_hash("recipe_check.py"),
        runs=recipe_checks(),
    script:
        "../scripts/recipe_check.py"


# `snakemake check`: that table on the terminal, before a sweep is submitted
rule check:
    input:
        f"{RESULTS}/tables/recipe_check.md",
    log:
        "logs/check.log",
    conda:
        "../envs/data.yaml"
    script:
        "../scripts/check.py"


# Compute nodes are often offline: backbone weights are fetched on the login node.
rule fetch_pretrained:
    output:
        "resources/pretrained/{weights}",
    log:
        "logs/fetch_pretrained/{weights}.log",
    conda:
        "../envs/data.yaml"
    params:
        url=get_pretrained_url,
    script:
        "../scripts/fetch_pretrained.py"


# Only result-changing settings are params: editing one variant re-renders
# (and so retrains) only that variant's runs. An iteration budget's epoch count
# is computed here, from the lists the run trains on.
rule render_mmseg_config:
    input:
        # the run's lists: the images of one epoch, so the epochs of an iteration budget
        lists=get_run_lists,
    output:
        config=f"{RUN}/config.py",
        train_set=f"{RUN}/train_set.json",
    log:
        f"{RUN}/render_config.log",
    wildcard_constraints:
        variant=_one_of(PLAIN_VARIANTS),
    priority: DATA_PRIORITY
    conda:
        "../envs/data.yaml"
    params:
        code=code_hash("render_mmseg_config.py"),
        run=get_run_settings,
    script:
        "../scripts/render_mmseg_config.py"


# The same for the variants with training.amp: bf16 or training.channels_last
# (common/run_config.py renders them): a rule of their own, so that adding those
# settings changed neither the code nor the configs of every other run.
rule render_mmseg_config_precision:
    input:
        lists=get_run_lists,
    output:
        config=f"{RUN}/config.py",
        train_set=f"{RUN}/train_set.json",
    log:
        f"{RUN}/render_config.log",
    wildcard_constraints:
        variant=_one_of(PRECISION_VARIANTS),
    priority: DATA_PRIORITY
    conda:
        "../envs/data.yaml"
    params:
        code=code_hash("render_mmseg_config_precision.py"),
        run=get_run_settings,
    script:
        "../scripts/render_mmseg_config_precision.py"


# Checkpoints live in <results>/work/..., which is no declared output: Snakemake
# keeps them when a job fails or is cancelled, and the next attempt resumes. A
# run that finished and is asked again (--forcerun) trains afresh; one trainer
# per run (a lock beside its work dir); every attempt's hours in attempts.tsv.
rule train_upernet:
    input:
        config=rules.render_mmseg_config.output.config,
        data=get_train_data,
    output:
        # protected: `snakemake --delete-all-output` keeps the trained models
        checkpoint=protected(f"{RUN}/final.pth"),
        history=f"{RUN}/history.csv",
        attempts=f"{RUN}/attempts.tsv",
    log:
        f"{RUN}/train.log",
    benchmark:
        f"{RUN}/train_benchmark.tsv"
    priority: get_train_priority
    conda:
        "../envs/train.yaml"
    threads: 4
    resources:
        gpu=TRAIN_GPUS,
        tasks=TRAIN_TASKS,
        tasks_per_gpu=TRAIN_TASKS_PER_GPU,
        mpi=TRAIN_LAUNCHER,
        cpus_per_gpu=8,
        mem_mb=64000,
        runtime=get_train_runtime,
        # not a request: how the job tells its log which attempt it is (resources,
        # unlike params, may change between attempts without a rerun)
        attempt=get_attempt,
    params:
        code=get_train_code,
        work_dir=WORK,
    script:
        "../scripts/train_upernet.py"


# init_from: the weights a fine-tuned variant starts from, taken from the source
# run's final.pth (trained first if needed): the backbone, and the heads only when
# both predict the same classes; the log lists what was kept and what was not.
rule init_weights:
    input:
        checkpoint=get_init_source,
    output:
        f"{RESULTS}/init/{{variant}}.pth",
    log:
        f"{RESULTS}/init/{{variant}}.log",
    priority: DATA_PRIORITY
    conda:
        "../envs/train.yaml"
    resources:
        mem_mb=4000,
        runtime=15,
    params:
        code=code_hash("init_weights.py"),
        init_from=lambda w: VARIANT_SETTINGS[w.variant]["init_from"],
    script:
        "../scripts/init_weights.py"
