"""Fish-level paired statistics for every pair of models and every pretrained-untrained pair."""

import pandas as pd
from _runtime import start

from nlp4neuro.provenance import write_table
from nlp4neuro.statistics import MIN_FISH_FOR_T, default_pairs, paired_comparisons

logger = start(snakemake)
summary = pd.read_csv(snakemake.input.summary)
summary = summary[summary["split"] == "test"] if "split" in summary else summary
models = sorted(set(summary["model"]))
twins = {p: u for p, u in snakemake.params.untrained_twins.items() if p in models and u in models}
pairs = default_pairs(models, twins)
parameters = {
    "metric": "rmse",
    "segment": "pooled",
    "alpha": snakemake.params.alpha,
    "n_bootstrap": snakemake.params.n_bootstrap,
    "seed": snakemake.params.seed,
}
statistics = paired_comparisons(summary, pairs=pairs, **parameters)
write_table(statistics, snakemake.output.statistics, parameters)
logger.info(
    "%d comparisons over %d models, %d with a paired t p-value (at least %d fish)",
    len(statistics),
    len(models),
    int(statistics["t_testable"].sum()),
    MIN_FISH_FOR_T,
)
