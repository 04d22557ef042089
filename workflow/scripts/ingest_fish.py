"""Read one fish's raw imaging, tail and annotations (any supported layout) into results/ingest/."""

from _runtime import start

from nlp4neuro.dataset import write_netcdf
from nlp4neuro.ingest import IngestParams, ingest_source

logger = start(snakemake)
data = snakemake.params.data
ingested = ingest_source(
    data["source"],
    snakemake.input.raw,
    snakemake.wildcards.fish,
    IngestParams.from_config(data),
)
logger.info(
    "%d neurons x %d frames, %d frames with tail (coverage %.3f)",
    ingested.sizes["neuron"],
    ingested.sizes["frame"],
    ingested.sizes["tail_frame"],
    ingested.attrs["tail_coverage"],
)
write_netcdf(ingested, snakemake.output.ingested)
