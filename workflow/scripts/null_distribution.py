"""Circular-shift null of ridge's test skill for one fish and window, at every horizon
(nlp4neuro.null)."""

import pandas as pd
from _runtime import start

from nlp4neuro.dataset import open_dataset
from nlp4neuro.null import circular_shift_null, summarise_null
from nlp4neuro.problem import DecodingParams
from nlp4neuro.provenance import write_table

logger = start(snakemake)
settings = snakemake.params.null
parameters = {
    "null_distribution": settings,
    "decoding": snakemake.params.decoding,
    "seed": snakemake.params.seed,
    "ridge_alphas": list(snakemake.params.alphas),
}
dataset = open_dataset(snakemake.input.dataset)
decoding = DecodingParams.from_config(snakemake.params.decoding)
shifts = pd.concat(
    [
        circular_shift_null(
            dataset,
            decoding,
            int(snakemake.wildcards.window),
            horizon=horizon,
            n_shifts=settings["n_shifts"],
            min_shift_frames=settings["min_shift_frames"],
            seed=snakemake.params.seed,
            alphas=snakemake.params.alphas,
        )
        for horizon in decoding.horizons
    ],
    ignore_index=True,
)
summary = summarise_null(shifts)
write_table(shifts, snakemake.output.shifts, parameters)
write_table(summary, snakemake.output.summary, parameters)
logger.info(
    "R² above null: %s",
    summary.set_index(["horizon", "segment"])["r2_above_null"].to_dict(),
)
