"""Attribute one trained decoder's output to neurons and regions; validate against controls."""

import json
from pathlib import Path

import xarray as xr
from _runtime import start

from nlp4neuro.anatomy import load_affine, load_atlas, neuron_regions
from nlp4neuro.dataset import open_dataset, write_netcdf
from nlp4neuro.explain import explain_run, params_from_config
from nlp4neuro.models import ModelSpec
from nlp4neuro.provenance import atomic_output, versions, write_table
from nlp4neuro.training import load_trained_decoder, select_device

logger = start(snakemake)
config = snakemake.params.saliency
saliency, explain = params_from_config(config, seed=int(snakemake.wildcards.seed))
spec = ModelSpec.from_workflow(snakemake.wildcards.model, snakemake.params.spec)
device = select_device(snakemake.params.compute["device"], int(snakemake.resources.get("gpu", 0)))
backbone = Path(snakemake.input.backbone) if "backbone" in snakemake.input.keys() else None
model, normaliser, run_info = load_trained_decoder(
    Path(snakemake.input.model).parent, spec, backbone_dir=backbone, device=str(device)
)
dataset = open_dataset(snakemake.input.dataset)
atlas_config = config["atlas"]
atlas = None
if atlas_config["kind"] is not None:
    atlas = load_atlas(
        atlas_config["kind"],
        atlas_config["path"],
        names_path=atlas_config["labels"],
        voxel_size_um=atlas_config["voxel_size_um"],
        masks=atlas_config["masks"],
    )
affine = load_affine(atlas_config["affine"]) if atlas_config["affine"] is not None else None
ground_truth = None
if "raw" in snakemake.input.keys():
    ground_truth = xr.load_dataset(Path(snakemake.input.raw) / "ground_truth.nc")

explanation = explain_run(
    dataset,
    model,
    normaliser,
    run_info,
    saliency,
    explain,
    regions=neuron_regions(dataset, atlas, affine),
    ground_truth=ground_truth,
    device=device,
)
parameters = {"saliency": config, "model": snakemake.wildcards.model, "run": run_info["splits"]}
write_netcdf(explanation.importance, snakemake.output.importance)
write_table(explanation.regions, snakemake.output.regions, parameters)
write_table(explanation.deletion, snakemake.output.deletion, parameters)
with atomic_output(snakemake.output.scores) as tmp:
    tmp.write_text(
        json.dumps(
            {**explanation.scores, "parameters": parameters, "versions": versions()},
            indent=2,
            default=str,
        )
    )
logger.info("scores: %s", json.dumps(explanation.scores, default=str))
