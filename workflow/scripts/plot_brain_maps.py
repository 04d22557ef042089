"""Brain maps of one run's per-neuron importance, and left- vs right-turn maps."""

from pathlib import Path

import xarray as xr
from _runtime import start

from nlp4neuro.dataset import open_dataset
from nlp4neuro.metrics import SUMMED
from nlp4neuro.plots.saliency import plot_brain_map, plot_turn_maps

logger = start(snakemake)
importance = xr.load_dataset(snakemake.input.importance)
dataset = open_dataset(snakemake.input.dataset)
plot_brain_map(
    importance,
    Path(snakemake.output.brain_map).with_suffix(""),
    target=SUMMED,
    top_k=snakemake.params.top_k,
)
tail = dataset["tail"].values[importance["frame_index"].values]
plot_turn_maps(importance, tail, Path(snakemake.output.turn_maps).with_suffix(""))
