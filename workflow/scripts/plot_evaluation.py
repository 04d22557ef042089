"""Model comparison, window sweep and training-curve figures; the convergence table."""

from pathlib import Path

import pandas as pd
from _runtime import start

from nlp4neuro.metrics import convergence_table, smallest_horizon
from nlp4neuro.plots.evaluation import (
    CURVE_KEYS,
    plot_model_comparison,
    plot_training_curves,
    plot_window_sweep,
)
from nlp4neuro.provenance import write_table

logger = start(snakemake)
summary = smallest_horizon(pd.read_csv(snakemake.input.summary))
statistics = pd.read_csv(snakemake.input.statistics)
plot_model_comparison(summary, statistics, Path(snakemake.output.comparison).with_suffix(""))
plot_window_sweep(summary, Path(snakemake.output.windows).with_suffix(""))
curves = pd.concat(
    [
        pd.read_csv(path).assign(**dict(zip(CURVE_KEYS, run, strict=True)))
        for run, path in zip(snakemake.params.runs, snakemake.input.curves, strict=True)
    ],
    ignore_index=True,
)
plot_training_curves(curves, Path(snakemake.output.training_curves).with_suffix(""))
convergence = convergence_table(curves, CURVE_KEYS, snakemake.params.tolerance)
write_table(convergence, snakemake.output.convergence, {"tolerance": snakemake.params.tolerance})
for row in convergence[~convergence["converged"]].itertuples():
    logger.warning(
        "%s w%s fish %s seed %s horizon %s fold %s still improving after %d epochs (val loss "
        "%+.1f %% in the last): more epochs would likely help",
        row.model, row.window, row.fish, row.seed, row.horizon, row.fold, row.epochs_run,
        100 * row.last_val_change,
    )  # fmt: skip
