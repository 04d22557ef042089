"""Untrained twins: a random backbone regenerated from (backbone config, seed), never saved.

Every pretrained llm gets an untrained twin (`pretrained: false`): the same architecture with
random weights. In LoRA and head mode those weights never train, so the decoder folder keeps
`backbone.json` (the seed, the dtype and a sha256 of the drawn weights) instead of the weights
themselves (543 MB for SmolLM2-135M, 13.5 GB for a 6.7B model). Loading draws again and compares
the checksum, so a torch or transformers version that draws other numbers stops with an error
instead of silently evaluating a different model.

The draw runs on the CPU whatever the device (CUDA generators differ), then moves: the numbers
depend only on the backbone's config.json, the seed, the dtype and the library versions.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nlp4neuro.errors import InputFileError
from nlp4neuro.models.spec import ModelSpec
from nlp4neuro.provenance import versions

RECORD_FILE = "backbone.json"


def twin_dtype(spec: ModelSpec) -> torch.dtype:
    """dtype of an untrained backbone: fp32, or bf16 for the twin of a quantised model.

    Random weights need no quantisation (it would only add noise to noise); bf16 halves the
    memory of the unquantised model (6.7B weights: 13.5 GB instead of 27 GB).
    """
    return torch.float32 if spec.quantization == "none" else torch.bfloat16


def state_sha256(module: nn.Module) -> str:
    """sha256 over every state tensor's name, shape, dtype and bytes, in sorted name order."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        flat = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}|{tuple(tensor.shape)}|{tensor.dtype}\n".encode())
        digest.update(flat.view(torch.uint8).numpy())
    return digest.hexdigest()


def random_backbone(
    backbone_dir: Path, seed: int, dtype: torch.dtype
) -> tuple[nn.Module, dict[str, Any]]:
    """Draw a random backbone from `backbone_dir/config.json` on the CPU.

    Reseeds torch's global generator with `seed` (transformers initialises from it), so call it
    inside `torch.random.fork_rng` as `build_decoder` does; draws after it continue the stream.

    Returns:
        (backbone on the CPU in `dtype`, record): the record (seed, sha256, dtype, quantization,
        versions, the folder's config) is what `backbone.json` stores.
    """
    from transformers import AutoConfig, AutoModel

    config = AutoConfig.from_pretrained(backbone_dir)
    torch.manual_seed(seed)
    with torch.device("cpu"):
        model = AutoModel.from_config(config, dtype=dtype)
    all_versions = versions()
    record = {
        "seed": seed,
        "sha256": state_sha256(model),
        "dtype": str(dtype).removeprefix("torch."),
        "quantization": "none",
        "n_parameters": sum(p.numel() for p in model.parameters()),
        "versions": {k: all_versions.get(k) for k in ("torch", "transformers")},
        # torch's fp32 normal_ differs between its DEFAULT and AVX2/AVX512 CPU kernels
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "config": json.loads((Path(backbone_dir) / "config.json").read_text()),
    }
    return model, record


def write_record(folder: Path, record: dict[str, Any]) -> None:
    """Write `folder/backbone.json`."""
    (folder / RECORD_FILE).write_text(json.dumps(record, indent=2, sort_keys=True))


def read_record(folder: Path) -> dict[str, Any]:
    """`folder/backbone.json`, with an integer seed and a sha256."""
    path = folder / RECORD_FILE
    if not path.is_file():
        raise InputFileError(
            path, "the seed and checksum of the untrained twin's random backbone", "no such file"
        )
    record = json.loads(path.read_text())
    if not isinstance(record.get("seed"), int) or not isinstance(record.get("sha256"), str):
        raise InputFileError(
            path, "keys 'seed' (an integer) and 'sha256'", {k: record.get(k) for k in record}
        )
    return record


def check_record(folder: Path, saved: dict[str, Any], drawn: dict[str, Any]) -> None:
    """Refuse a regenerated backbone whose checksum differs from the saved one."""
    if drawn["sha256"] == saved["sha256"]:
        return

    def drawn_with(record: dict[str, Any]) -> str:
        lib = record.get("versions", {})
        return (
            f"seed {record.get('seed')}, {record.get('dtype')}, torch {lib.get('torch')}, "
            f"transformers {lib.get('transformers')}, CPU {record.get('cpu_capability')}"
        )

    raise InputFileError(
        folder / RECORD_FILE,
        f"the random backbone with sha256 {saved['sha256']} ({drawn_with(saved)})",
        f"{drawn['sha256']} ({drawn_with(drawn)}); load it where it was drawn, or retrain",
    )
