"""Join one fish's preprocessed signal, tail angles and neuron anatomy into its dataset."""

import xarray as xr
from _runtime import start

from nlp4neuro.dataset import assemble_from_stages, open_dataset, write_netcdf

logger = start(snakemake)
dataset = assemble_from_stages(
    xr.load_dataset(snakemake.input.ingested), xr.load_dataset(snakemake.input.dff)
)
write_netcdf(dataset, snakemake.output.dataset)
# Read back through the validating loader so a malformed dataset fails here, not in training.
checked = open_dataset(snakemake.output.dataset)
logger.info("dataset: %d frames x %d neurons", checked.sizes["time"], checked.sizes["neuron"])
