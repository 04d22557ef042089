"""The tail's own past as a reference for decoding ahead, one fish and window
(nlp4neuro.horizons.tail_history_scores)."""

from _runtime import start

from nlp4neuro.dataset import open_dataset
from nlp4neuro.horizons import tail_history_scores
from nlp4neuro.problem import DecodingParams
from nlp4neuro.provenance import write_table

logger = start(snakemake)
table = tail_history_scores(
    open_dataset(snakemake.input.dataset),
    DecodingParams.from_config(snakemake.params.decoding),
    int(snakemake.wildcards.window),
    alphas=snakemake.params.alphas,
)
parameters = {"decoding": snakemake.params.decoding, "ridge_alphas": list(snakemake.params.alphas)}
write_table(table, snakemake.output.table, parameters)
for row in table[table["segment"] == "summed"].itertuples():
    logger.info("horizon %d: R² from the tail's own past %.3f", row.horizon, row.r2_tail_history)
