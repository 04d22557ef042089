"""One benchmarked training configuration, run through the package's own training step.

A case is named `backbone:finetune[:precision][:dropout][:reference]`, e.g. `gpt2:lora:bf16`:

- backbone: "gpt2" (GPT-2's architecture, 124 M), "smollm2" (the bundled SmolLM2-135M), "bert"
  (BERT-base's architecture) or "lstm" (the reference's LSTM, hidden 256; finetune "full").
- finetune: "lora", "head" or "full".
- precision: the config's `compute.precision` ("auto" when left out), resolved on this device
  by `nlp4neuro.device.resolve_precision`.
- dropout: the defaults before 2026-12-01, `backbone_dropout: null` (the pretrained config's
  dropout, 0.1 for GPT-2 and BERT) and `lora_dropout: 0.05`; without it, the schema's defaults
  (no dropout anywhere in the step).
- reference: the reference's optimiser (weight decay 0; eps 1e-6 for LLMs as transformers'
  AdamW, 1e-8 for the LSTM as torch's Adam) and the pretrained dropout.

The step is `nlp4neuro.training`'s: `WindowSampler.batch` (gather), `forward_loss` (forward
under the precision's autocast), `backward`, `update` (clip, fused AdamW, schedule); in bf16 the
frozen weight matrices are stored in bf16 first (`prepare_precision`), as `train_and_predict`
does.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

N_OUTPUTS = 6
BACKBONES = ("gpt2", "smollm2", "bert", "lstm")


@dataclass(frozen=True)
class TrainingCase:
    """A parsed case name (module docstring)."""

    backbone: str
    finetune: str
    precision: str
    dropout: bool
    reference: bool

    @classmethod
    def parse(cls, text: str) -> TrainingCase:
        parts = text.split(":")
        backbone = parts[0]
        finetune = "full" if backbone == "lstm" else (parts[1] if len(parts) > 1 else "")
        rest = parts[1:] if backbone == "lstm" else parts[2:]
        precisions = [p for p in rest if p in ("auto", "fp32", "bf16")]
        flags = set(rest) - set(precisions)
        if (
            backbone not in BACKBONES
            or finetune not in ("lora", "head", "full")
            or len(precisions) > 1
            or flags - {"dropout", "reference"}
        ):
            raise ValueError(
                f"case {text!r}: expected backbone:finetune[:precision][:dropout][:reference]"
            )
        precision = precisions[0] if precisions else "auto"
        return cls(backbone, finetune, precision, "dropout" in flags, "reference" in flags)

    @property
    def name(self) -> str:
        parts = [self.backbone] + ([] if self.backbone == "lstm" else [self.finetune])
        parts += [] if self.precision == "auto" else [self.precision]
        return ":".join(parts + ["dropout"] * self.dropout + ["reference"] * self.reference)

    @property
    def is_llm(self) -> bool:
        return self.backbone != "lstm"


def case_settings(case: TrainingCase) -> tuple[dict, dict]:
    """(model entry, training section values) of a case, as a config would write them."""
    if case.is_llm:
        entry = {"kind": "llm", "source": case.backbone, "finetune": case.finetune}
        if case.dropout or case.reference:
            entry.update(backbone_dropout=None, lora_dropout=0.05)
    else:
        entry = {"kind": "lstm", "hidden_size": 256}
    training = {"learning_rate": 1e-4, "schedule": "constant", "warmup_fraction": 0.0}
    if case.reference:
        training.update(weight_decay=0.0, adam_epsilon=1e-6 if case.is_llm else 1e-8)
    return entry, training


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _data(args: argparse.Namespace, device: torch.device):
    """Fish-9-shaped inputs in [0, 1] (reference mode) and tail angles of a few hundredths of a
    radian, their sampler and the shuffled training-window starts."""
    from nlp4neuro import problem as problem_mod
    from nlp4neuro.training import WindowSampler

    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.random((args.frames, args.neurons), dtype=np.float32))
    y = torch.from_numpy(0.05 * rng.standard_normal((args.frames, N_OUTPUTS), dtype=np.float32))
    sampler = WindowSampler(x.to(device), y.to(device), args.window)
    splits = problem_mod.chronological_split(args.frames, 0.7, 0.1, 0.2, 0)
    starts = torch.as_tensor(problem_mod.window_starts(splits["train"], args.window))
    order = starts[torch.randperm(starts.numel(), generator=torch.Generator().manual_seed(0))]
    return sampler, order


def _build(entry: dict, training: dict, precision: str, args, device, backbone_dir):
    """The decoder, its resolved precision and its optimisation, as the training loop makes them."""
    from nlp4neuro.config import section
    from nlp4neuro.models import ModelSpec, build_decoder
    from nlp4neuro.training import (
        TrainingParams,
        make_optimisation,
        prepare_precision,
        run_precision,
    )

    spec = ModelSpec.from_workflow("benchmark", entry)
    precision = run_precision(spec.to_dict(), precision, device)
    model = build_decoder(
        spec, args.neurons, N_OUTPUTS, backbone_dir=backbone_dir, seed=0, device=str(device)
    )
    model = prepare_precision(model, precision)
    params = TrainingParams.from_config(section("training", **training))
    opt = make_optimisation(model, params, 10**6)
    return model, precision, opt, params


def _timed_steps(model, sampler, order, opt, params, precision, args, device):
    """Per-phase seconds of each step (gather, forward, backward, optimizer)."""
    from nlp4neuro.training import backward, forward_loss, update

    steps = []
    model.train()
    for step in range(args.warmup + args.steps):
        chunk = order[step * args.batch : (step + 1) * args.batch]
        t0 = time.perf_counter()
        xb, yb = sampler.batch(chunk)
        _sync(device)
        t1 = time.perf_counter()
        loss = forward_loss(model, xb, yb, precision)
        _sync(device)
        t2 = time.perf_counter()
        backward(loss, opt)
        _sync(device)
        t3 = time.perf_counter()
        update(opt, params.grad_clip_norm)
        loss.item()  # the training loop reads the loss every step (a device sync on CUDA)
        t4 = time.perf_counter()
        if step >= args.warmup:
            steps.append((t1 - t0, t2 - t1, t3 - t2, t4 - t3))
    return steps


def _profile_step(model, sampler, order, opt, params, precision, args) -> list[dict]:
    """The ten operators with the most self time in one more step (torch profiler)."""
    from torch.profiler import ProfilerActivity, profile

    from nlp4neuro.training import backward, forward_loss, update

    chunk = order[: args.batch]
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        xb, yb = sampler.batch(chunk)
        backward(forward_loss(model, xb, yb, precision), opt)
        update(opt, params.grad_clip_norm)
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events) or 1.0
    return [
        {"op": e.key, "self_fraction": e.self_cpu_time_total / total, "calls": e.count}
        for e in events[:10]
    ]


def flops_per_token(model: nn.Module) -> float:
    """Training FLOPs per token by the 6/4 x weights rule (benchmarks/run.py docstring):
    trainable weights 6, frozen weights that gradients pass through 4, the first layer on the
    data (no input gradient) 2 less; embedding tables excluded."""
    embedding_ids = {
        id(p) for m in model.modules() if isinstance(m, nn.Embedding) for p in m.parameters()
    }
    first_ids: set[int] = set()
    if hasattr(model, "input_proj"):
        first_ids = {id(p) for p in model.input_proj.parameters()}
    elif isinstance(getattr(model, "rnn", None), nn.RNNBase):
        # layer-0 input weights; hidden-to-hidden ones pass gradients back in time
        first_ids = {id(p) for n, p in model.rnn.named_parameters() if n.endswith("ih_l0")}
    # a reservoir's input and recurrent weights are fixed buffers: only its readout counts
    total = 0.0
    for p in model.parameters():
        if id(p) in embedding_ids:
            continue
        total += (6 if p.requires_grad else 4) * p.numel() - 2 * p.numel() * (id(p) in first_ids)
    return total


def run_case(case: TrainingCase, args: argparse.Namespace, backbone_dir: Path | None) -> dict:
    """`run_entry` for a named case."""
    entry, training = case_settings(case)
    return {"case": case.name, **run_entry(entry, training, case.precision, args, backbone_dir)}


def run_entry(
    entry: dict, training: dict, precision: str, args: argparse.Namespace, backbone_dir
) -> dict:
    """Time `args.steps` optimiser steps after `args.warmup` of the model a config entry
    describes; peak memory of this process.

    Args:
        entry: a `models.<name>` config entry (an llm's `source` is replaced by `backbone_dir`).
        training: `training` section values (the schema fills the rest).
        precision: `compute.precision`, resolved here for this device.
    """
    from nlp4neuro.device import select_device
    from nlp4neuro.models import trainable_parameter_count

    if args.threads:
        torch.set_num_threads(args.threads)
    device = select_device(args.device)
    sampler, order = _data(args, device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    model, precision, opt, params = _build(entry, training, precision, args, device, backbone_dir)
    steps = _timed_steps(model, sampler, order, opt, params, precision, args, device)
    totals = [sum(s) for s in steps]
    mean_step = statistics.fmean(totals)
    trainable, total_params = trainable_parameter_count(model)
    flops_step = flops_per_token(model) * args.batch * args.window
    phases = np.sum(steps, axis=0) / sum(totals)
    top_ops = None
    if args.profile:
        top_ops = _profile_step(model, sampler, order, opt, params, precision, args)
    return {
        "precision": precision,
        "device": str(device),
        "threads": torch.get_num_threads(),
        "trainable_params": trainable,
        "total_params": total_params,
        "steps": args.steps,
        "step_seconds_mean": mean_step,
        "step_seconds_min": min(totals),
        "windows_per_s": args.batch / mean_step,
        "phase_fraction": dict(
            zip(("gather", "forward", "backward", "optimizer"), phases, strict=True)
        ),
        "model_flops_per_step": flops_step,
        "achieved_flops": flops_step / mean_step,
        "max_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2,
        "cuda_max_allocated_gib": (
            torch.cuda.max_memory_allocated(device) / 1024**3 if device.type == "cuda" else None
        ),
        "top_ops": top_ops,
    }
