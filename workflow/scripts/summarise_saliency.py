"""Across runs: region tables, cross-fish consistency, controls and deletion curves."""

import json
from pathlib import Path

import pandas as pd
import xarray as xr
from _runtime import start

from nlp4neuro.plots.saliency import plot_deletion_curves
from nlp4neuro.provenance import write_table
from nlp4neuro.saliency_summary import summarise_explanations

logger = start(snakemake)
runs, deletions = [], []
for (model, window, fish, seed), importance, regions, deletion, scores in zip(
    snakemake.params.runs,
    snakemake.input.importance,
    snakemake.input.regions,
    snakemake.input.deletion,
    snakemake.input.scores,
    strict=True,
):
    run = {"model": model, "window": window, "fish": fish, "seed": seed}
    runs.append(
        {
            **run,
            "importance": xr.load_dataset(importance),
            "regions": pd.read_csv(regions, keep_default_na=False, na_values=[""]),
            "scores": json.loads(Path(scores).read_text()),
        }
    )
    deletions.append(pd.read_csv(deletion).assign(group=f"{model} fish {fish}", **run))
summary = summarise_explanations(
    runs, snakemake.params.untrained_twins, top_k=snakemake.params.top_k
)
parameters = {"runs": snakemake.params.runs, "top_k": snakemake.params.top_k}
for name in ("regions", "consistency", "controls", "controls_by_model"):
    # controls_by_model is written once the rule names that output
    if name in snakemake.output.keys():
        write_table(summary[name], getattr(snakemake.output, name), parameters)
plot_deletion_curves(
    pd.concat(deletions, ignore_index=True),
    Path(snakemake.output.deletion_figure).with_suffix(""),
    group="group",
)
