from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


report: "report/workflow.rst"


include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/train.smk"
include: "rules/evaluate.smk"
include: "rules/figures.smk"


onstart:
    logger.info(cost_summary())


rule all:
    default_target: True
    input:
        run_outputs(),
        report_outputs("results"),
