"""Train one model on one fish for one window length and seed; write its predictions."""

import json
from pathlib import Path

from _runtime import start

from nlp4neuro.dataset import open_dataset
from nlp4neuro.models import ModelSpec
from nlp4neuro.training import TrainingParams, train_decoder

logger = start(snakemake)
spec = ModelSpec.from_workflow(snakemake.wildcards.model, snakemake.params.spec)
decoding = snakemake.params.decoding
compute = snakemake.params.compute
params = TrainingParams(
    **snakemake.params.training,
    train_fraction=decoding["train_fraction"],
    val_fraction=decoding["val_fraction"],
    test_fraction=decoding["test_fraction"],
    gap_frames=decoding["gap_frames"],
    input_normalisation=decoding["input_normalisation"],
    neural_lag_frames=decoding["neural_lag_frames"],
    device=compute["device"],
    bf16=compute["bf16"],
    bf16_cpu=compute["bf16_cpu"],
    num_threads=snakemake.threads,
)
summary = train_decoder(
    open_dataset(snakemake.input.dataset),
    spec,
    window_frames=int(snakemake.wildcards.window),
    params=params,
    seed=int(snakemake.wildcards.seed),
    out_dir=Path(snakemake.output.predictions).parent,
    checkpoint_dir=Path(snakemake.params.checkpoint_dir),
    backbone_dir=Path(snakemake.input.backbone) if "backbone" in snakemake.input.keys() else None,
    gpus_available=int(snakemake.resources.get("gpu", 0)),
)
logger.info("summary: %s", json.dumps(summary, default=str))
