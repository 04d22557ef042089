"""Test-split metrics of every run, folds and seeds averaged within fish, skill vs references."""

import pandas as pd
from _runtime import start

from nlp4neuro.metrics import metrics_table, skill, summarise
from nlp4neuro.provenance import write_table

logger = start(snakemake)
table = metrics_table(snakemake.input.predictions, split="test")
references = [r for r in snakemake.params.skill_references if r in set(table["model"])]
skipped = sorted(set(snakemake.params.skill_references) - set(references))
if skipped:
    logger.info("skill references not configured, skipped: %s", skipped)
skill_rows = pd.concat([skill(table, r) for r in references]) if references else table.iloc[:0]
parameters = {"split": "test", "skill_references": references}
write_table(table, snakemake.output.metrics, parameters)
write_table(skill_rows, snakemake.output.skill, parameters)
write_table(summarise(pd.concat([table, skill_rows])), snakemake.output.summary, parameters)
logger.info("%d metric rows from %d runs", len(table), len(snakemake.input.predictions))
