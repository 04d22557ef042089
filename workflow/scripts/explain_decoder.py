"""Attribute one trained decoder's output to neurons and regions; validate against controls."""

import json
from pathlib import Path

import xarray as xr
from _runtime import start

from nlp4neuro.dataset import open_dataset
from nlp4neuro.device import select_device
from nlp4neuro.explain import configured_regions, explain_run, params_from_config, write_explanation
from nlp4neuro.models import ModelSpec
from nlp4neuro.training import load_trained_decoder

logger = start(snakemake)
inputs = snakemake.input
config = snakemake.params.saliency
saliency, explain = params_from_config(config, seed=int(snakemake.wildcards.seed))
spec = ModelSpec.from_workflow(snakemake.wildcards.model, snakemake.params.spec)
device = select_device(snakemake.params.compute["device"])
model, problem, _ = load_trained_decoder(
    Path(inputs.model).parent,
    spec,
    backbone_dir=Path(inputs.backbone) if "backbone" in inputs.keys() else None,
    device=device,
)
dataset = open_dataset(inputs.dataset)
ground_truth = (
    xr.load_dataset(Path(inputs.raw) / "ground_truth.nc") if "raw" in inputs.keys() else None
)
explanation = explain_run(
    dataset,
    model,
    problem,
    saliency,
    explain,
    regions=configured_regions(dataset, config["atlas"]),
    ground_truth=ground_truth,
    device=device,
)
write_explanation(
    explanation,
    problem,
    importance=snakemake.output.importance,
    regions=snakemake.output.regions,
    deletion=snakemake.output.deletion,
    scores=snakemake.output.scores,
    parameters={"saliency": config, "model": spec.name},
)
logger.info("scores: %s", json.dumps(explanation.scores, default=str))
