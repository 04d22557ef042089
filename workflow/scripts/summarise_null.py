"""Every fish's and window's circular-shift null summary in one table (nlp4neuro.null)."""

from _runtime import start

from nlp4neuro.null import P_POLICY, gather_null_summaries
from nlp4neuro.provenance import write_table

logger = start(snakemake)
table = gather_null_summaries(snakemake.input.summaries)
write_table(table, snakemake.output.table, {"p_policy": P_POLICY})
logger.info("%d rows from %d summaries", len(table), len(snakemake.input.summaries))
