import os
import sys

from snakemake.utils import min_version

min_version("9.0")

# Every config file, read strictly before Snakemake uses it: a key given twice,
# or (in config/config.yaml) a YAML error, stops here naming file and line.
sys.path.insert(0, os.path.join(workflow.basedir, "scripts"))
from common.config_files import ConfigFileError, check_config_files

try:
    check_config_files(
        [
            os.path.join(workflow.basedir, "config/config.yaml"),
            *workflow.overwrite_configfiles,
        ]
    )
except ConfigFileError as error:
    raise WorkflowError(str(error))


configfile: "config/config.yaml"


include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/train.smk"
include: "rules/evaluate.smk"
include: "rules/figures.smk"
include: "rules/predict.smk"
include: "rules/gpu_check.smk"


# Findings from the tables first, then report/workflow.rst (see rule findings).
report: report_description()


# The report refuses runs, tables and figures that are missing or out of date.
if reporting():
    check_report_complete()


onstart:
    logger.info(cost_summary())


rule all:
    default_target: True
    input:
        run_outputs(),
        report_outputs(RESULTS),
