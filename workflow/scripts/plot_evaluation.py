"""Model comparison, window sweep and training-curve figures."""

from pathlib import Path

import pandas as pd
from _runtime import start

from nlp4neuro.plots.evaluation import (
    plot_model_comparison,
    plot_training_curves,
    plot_window_sweep,
)

logger = start(snakemake)
summary = pd.read_csv(snakemake.input.summary)
statistics = pd.read_csv(snakemake.input.statistics)
plot_model_comparison(summary, statistics, Path(snakemake.output.comparison).with_suffix(""))
plot_window_sweep(summary, Path(snakemake.output.windows).with_suffix(""))
curves = pd.concat(
    [
        pd.read_csv(path).assign(model=model, window=window, fish=fish, seed=seed, fold=fold)
        for (model, window, fish, seed, fold), path in zip(
            snakemake.params.runs, snakemake.input.curves, strict=True
        )
    ],
    ignore_index=True,
)
plot_training_curves(curves, Path(snakemake.output.training_curves).with_suffix(""))
