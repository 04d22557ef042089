"""Circular-shift null of ridge's test skill for one fish and window (nlp4neuro.null)."""

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
shifts = circular_shift_null(
    open_dataset(snakemake.input.dataset),
    DecodingParams.from_config(snakemake.params.decoding),
    int(snakemake.wildcards.window),
    n_shifts=settings["n_shifts"],
    min_shift_frames=settings["min_shift_frames"],
    seed=snakemake.params.seed,
    alphas=snakemake.params.alphas,
)
summary = summarise_null(shifts)
write_table(shifts, snakemake.output.shifts, parameters)
write_table(summary, snakemake.output.summary, parameters)
logger.info("R² above null: %s", summary.set_index("segment")["r2_above_null"].to_dict())
