"""Fish-level paired statistics for every pair of models, and the verdict on each pretrained
model against ridge and every rung of its ladder."""

import pandas as pd
from _runtime import start

from nlp4neuro.metrics import smallest_horizon
from nlp4neuro.provenance import write_table
from nlp4neuro.statistics import VERDICT_METRICS, model_statistics, verdict_table

logger = start(snakemake)
summary = pd.read_csv(snakemake.input.summary)
summary = summary[summary["split"] == "test"] if "split" in summary else summary
# one horizon at a time: the smallest (concurrent decoding); horizons.csv shows the others
summary = smallest_horizon(summary)
parameters = {
    "metrics": [f"{metric}/{segment}" for metric, segment, _ in VERDICT_METRICS],
    "alpha": snakemake.params.alpha,
    "n_bootstrap": snakemake.params.n_bootstrap,
    "seed": snakemake.params.seed,
    "horizon": int(summary["horizon"].min()),
}
statistics = model_statistics(
    summary,
    untrained_twins=snakemake.params.untrained_twins,
    ladders=snakemake.params.ladders,
    alpha=snakemake.params.alpha,
    n_bootstrap=snakemake.params.n_bootstrap,
    seed=snakemake.params.seed,
)
verdict = verdict_table(statistics, alpha=snakemake.params.alpha)
write_table(statistics, snakemake.output.statistics, parameters)
write_table(verdict, snakemake.output.verdict, parameters)
logger.info(
    "%d comparisons (%d with a paired t p-value); verdict: %d rows, %d not testable",
    len(statistics),
    int(statistics["t_testable"].sum()),
    len(verdict),
    int(verdict["verdict"].astype(str).str.startswith("not testable").sum()),
)
if verdict.empty:
    logger.warning("no pretrained model with a reference in the summary: the verdict is empty")
