"""Neuropil correction, baseline and dF/F (or the paper's normalisation) for one fish."""

import xarray as xr
from _runtime import start

from nlp4neuro.dataset import write_netcdf
from nlp4neuro.preprocessing import PreprocessingParams, preprocess_ingested

logger = start(snakemake)
params = PreprocessingParams.from_config(snakemake.params.preprocessing)
preprocessed = preprocess_ingested(xr.load_dataset(snakemake.input.ingested), params)
logger.info("preprocessing: %s", preprocessed.attrs["preprocessing_info"])
write_netcdf(preprocessed, snakemake.output.dff)
