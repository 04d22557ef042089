"""Read one fish's raw suite2p planes, tail table and annotations into results/ingest/."""

from _runtime import start

from nlp4neuro.dataset import write_netcdf
from nlp4neuro.io import IngestParams, ingest_fish

logger = start(snakemake)
ingested = ingest_fish(
    snakemake.input.raw,
    IngestParams.from_config(snakemake.params.data),
    fish=snakemake.wildcards.fish,
)
logger.info(
    "%d neurons x %d frames, %d frames with tail",
    ingested.sizes["neuron"],
    ingested.sizes["frame"],
    ingested.sizes["tail_frame"],
)
write_netcdf(ingested, snakemake.output.ingested)
