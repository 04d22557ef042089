"""Predicted against true tail angles on one fish's test split, every model."""

from pathlib import Path

import xarray as xr
from _runtime import start

from nlp4neuro.plots.evaluation import plot_predictions

logger = start(snakemake)
by_model = {
    model: xr.load_dataset(path)
    for model, path in zip(snakemake.params.models, snakemake.input.predictions, strict=True)
}
plot_predictions(by_model, Path(snakemake.output.figure).with_suffix(""))
