# nlp4neuro: decode zebrafish tail behaviour from calcium imaging with fine-tuned language models.
# Stages: simulate -> ingest -> dF/F -> assemble -> train -> evaluate / saliency.
from snakemake.utils import min_version

min_version("9.0")


# A --configfile on the command line replaces config.yaml instead of being merged into it, so the
# models of one preset never leak into another.
if not workflow.overwrite_configfiles:

    configfile: "config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/download.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/null.smk"
include: "workflow/rules/saliency.smk"


onstart:
    check_scheduler_tools()


rule all:
    default_target: True
    input:
        get_final_outputs(),
