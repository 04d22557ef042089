"""Train one model on one fish for one window length, seed and fold; write its predictions."""

import json
from pathlib import Path

from _runtime import start

from nlp4neuro.dataset import open_dataset
from nlp4neuro.device import ComputeParams
from nlp4neuro.models import ModelSpec
from nlp4neuro.problem import DecodingParams
from nlp4neuro.training import TrainingParams, train_decoder

logger = start(snakemake)
summary = train_decoder(
    open_dataset(snakemake.input.dataset),
    ModelSpec.from_workflow(snakemake.wildcards.model, snakemake.params.spec),
    window_frames=int(snakemake.wildcards.window),
    fold=int(snakemake.wildcards.fold),
    horizon=int(snakemake.wildcards.horizon),
    decoding=DecodingParams.from_config(snakemake.params.decoding),
    training=TrainingParams.from_config(snakemake.params.training),
    compute=ComputeParams.from_config(snakemake.params.compute, threads=snakemake.threads),
    seed=int(snakemake.wildcards.seed),
    out_dir=Path(snakemake.output.predictions).parent,
    checkpoint_dir=Path(snakemake.params.checkpoint_dir),
    backbone_dir=Path(snakemake.input.backbone) if "backbone" in snakemake.input.keys() else None,
)
logger.info("summary: %s", json.dumps(summary, default=str))
