"""Performance benchmarks: decoder training, dF/F preprocessing and planning the paper's grid.

Figures, not tests: each subcommand prints a table and writes JSON under benchmarks/out/.

    .venv/bin/python benchmarks/run.py training        # throughput, peak memory, MFU
    .venv/bin/python benchmarks/run.py preprocessing   # dF/F throughput
    .venv/bin/python benchmarks/run.py dryrun          # snakemake -n on config/paper.yaml
    .venv/bin/python benchmarks/run.py all

Training runs each (backbone, fine-tuning mode) case in a fresh subprocess, so that its peak
resident memory (getrusage max RSS) is its own, on synthetic data shaped like fish 9 (12,499
neurons x 3,047 frames, windows of 20 frames, batches of 32). It goes through the package's own
code path: `chronological_split` / `window_starts` for the training windows, `WindowSampler` to
gather batches, `build_decoder` for the model and the same step as `nlp4neuro.training`'s loop
(AdamW, MSE on every frame, gradient clipping at 1.0, bf16 autocast on CUDA only). The extra
`+bf16` cases (`--cpu-bf16`) autocast on the CPU as well, which the package does not do.

Model FLOPs per optimiser step (documented estimate, the usual 2/4/6 x parameters x tokens rule):
tokens = batch x window; a weight matrix with P entries costs 2 P per token forward, 2 P more to
pass the gradient back to its input, and 2 P more for its own weight gradient. So trainable
weights cost 6 P, frozen weights that gradients flow through (LoRA and head-only backbones) 4 P,
and the first layer on the data (input projection / LSTM input weights) skips the input
gradient: 6 P - 2 P if trainable. Embedding tables (unused with `inputs_embeds`; position lookups)
are excluded; biases and norms are counted as if they were weights (< 1 % of the total); the
attention score matmuls (2 x layers x window x d_model per token, < 2 % at window 20) are left out.
MFU = achieved model FLOP/s / the matmul peak of the precision the case ran in (fp32, or bf16
under autocast), measured in the same run with torch.matmul on 2048 x 2048 matrices.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "out"
logger = logging.getLogger("benchmarks")

# Fish 9 of the paper (shared/reference/paper.md).
PAPER_NEURONS = 12_499
PAPER_FRAMES = 3_047
N_OUTPUTS = 6


# ----------------------------------------------------------------------------------------------
# Device description and matmul peak


def device_info() -> dict:
    """CPU model, cores, torch version and CUDA device (if any) of this machine."""
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "cpu": cpu,
        "cpu_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    return info


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak(dtype: torch.dtype, device: torch.device, n: int = 2048, reps: int = 10) -> float:
    """Best-of-`reps` FLOP/s of an n x n @ n x n matmul (2 n^3 FLOPs) in `dtype` on `device`."""
    gen = torch.Generator(device="cpu").manual_seed(0)
    a = torch.randn(n, n, generator=gen).to(device=device, dtype=dtype)
    b = torch.randn(n, n, generator=gen).to(device=device, dtype=dtype)
    c = torch.empty_like(a)  # preallocated: time the arithmetic, not the allocator
    for _ in range(2):  # warm-up: thread pools, oneDNN/cuBLAS kernel selection
        torch.matmul(a, b, out=c)
    _sync(device)
    best = float("inf")
    for _ in range(reps):
        start = time.perf_counter()
        torch.matmul(a, b, out=c)
        _sync(device)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


# ----------------------------------------------------------------------------------------------
# Training benchmark


@dataclass(frozen=True)
class TrainingCase:
    """One benchmarked configuration.

    Attributes:
        backbone: "smollm2", "gpt2" or "lstm".
        finetune: "lora", "head" or "full" ("full" for the LSTM).
        cpu_bf16: bf16 autocast on the CPU too (the package autocasts on CUDA only).
    """

    backbone: str
    finetune: str
    cpu_bf16: bool = False

    @property
    def name(self) -> str:
        base = self.backbone if self.backbone == "lstm" else f"{self.backbone}_{self.finetune}"
        return base + ("+bf16" if self.cpu_bf16 else "")


def prepare_backbones(out: Path, names: list[str]) -> dict[str, Path]:
    """Backbone folders cached under `out`: bundled SmolLM2 (pretrained) and a GPT-2-sized model.

    The GPT-2 folder has GPT-2's default architecture (124 M parameters, 12 layers, d_model 768)
    with random weights, written once by `make_tiny_backbone` at full size: the hub is not
    reachable here, and speed does not depend on the weights' values.
    """
    from nlp4neuro.models import make_tiny_backbone, prepare_backbone

    folders = {}
    for name in names:
        folder = out / "backbones" / name
        if not (folder / "config.json").is_file():
            start = time.perf_counter()
            if name == "smollm2":
                prepare_backbone("bundled:smollm2", folder)
            elif name == "gpt2":
                from transformers import GPT2Config

                default = GPT2Config()
                make_tiny_backbone(
                    folder,
                    "gpt2",
                    hidden_size=default.n_embd,
                    num_layers=default.n_layer,
                    num_heads=default.n_head,
                    vocab_size=default.vocab_size,
                    max_positions=default.n_positions,
                )
            else:
                raise ValueError(f"no backbone named {name!r}")
            logger.info("prepared %s in %.1f s -> %s", name, time.perf_counter() - start, folder)
        folders[name] = folder
    return folders


def model_flops_per_token(model: nn.Module, first_layer: list[nn.Parameter]) -> float:
    """Training FLOPs per token (forward + backward) by the 6/4 x parameters rule (module doc).

    Args:
        model: the decoder, with `requires_grad` set as in training.
        first_layer: the weights applied to the neural frames themselves (no input gradient).
    """
    embedding_ids = {
        id(p) for m in model.modules() if isinstance(m, nn.Embedding) for p in m.parameters()
    }
    first_ids = {id(p) for p in first_layer}
    flops = 0.0
    for p in model.parameters():
        if id(p) in embedding_ids:
            continue
        if p.requires_grad:
            flops += (4 if id(p) in first_ids else 6) * p.numel()
        else:
            flops += 4 * p.numel()
    return flops


def first_layer_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The weights that read the neural frames: the LLM input projection, or an RNN's layer-0
    input-to-hidden weights (its hidden-to-hidden weights do pass gradients back in time)."""
    if hasattr(model, "input_proj"):
        return list(model.input_proj.parameters())
    rnn = getattr(model, "rnn", None)
    if isinstance(rnn, nn.RNNBase):
        return [rnn.weight_ih_l0, *([rnn.bias_ih_l0] if rnn.bias else [])]
    raise ValueError(f"no input layer known for {type(model).__name__}")


def run_training_case(case: TrainingCase, args: argparse.Namespace) -> dict:
    """Time `args.steps` optimiser steps after `args.warmup` on synthetic fish-9-sized data."""
    from nlp4neuro import problem as problem_mod
    from nlp4neuro.device import select_device
    from nlp4neuro.models import ModelSpec, build_decoder, trainable_parameter_count
    from nlp4neuro.training import WindowSampler

    if args.threads:
        torch.set_num_threads(args.threads)
    device = select_device(args.device)
    rng = np.random.default_rng(0)
    # Reference-mode-like inputs in [0, 1] and tail angles of a few hundredths of a radian.
    x = torch.from_numpy(rng.random((args.frames, args.neurons), dtype=np.float32))
    y = torch.from_numpy(0.05 * rng.standard_normal((args.frames, N_OUTPUTS), dtype=np.float32))
    sampler = WindowSampler(x, y, args.window)
    splits = problem_mod.chronological_split(args.frames, 0.7, 0.1, 0.2, 0)
    train_starts = torch.as_tensor(problem_mod.window_starts(splits["train"], args.window))
    # model names may only hold letters, digits and underscores (the config schema)
    name = re.sub(r"\W+", "_", case.name).strip("_")
    if case.backbone == "lstm":
        spec = ModelSpec.from_config(name, {"kind": "lstm", "hidden_size": 256})
        backbone_dir = None
    else:
        spec = ModelSpec.from_config(
            name, {"kind": "llm", "source": case.backbone, "finetune": case.finetune}
        )
        backbone_dir = prepare_backbones(Path(args.out), [case.backbone])[case.backbone]
    build_start = time.perf_counter()
    model = build_decoder(
        spec, args.neurons, N_OUTPUTS, backbone_dir=backbone_dir, seed=0, device=str(device)
    )
    build_seconds = time.perf_counter() - build_start
    trainable_params, total_params = trainable_parameter_count(model)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-4, weight_decay=0.01)
    loss_fn = nn.MSELoss()
    use_bf16 = device.type == "cuda" or args.cpu_bf16
    order = train_starts[
        torch.randperm(train_starts.numel(), generator=torch.Generator().manual_seed(0))
    ]
    batches = sampler.iter_batches(order, args.batch)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    phases = {"gather": 0.0, "forward": 0.0, "backward": 0.0, "optimizer": 0.0}
    step_seconds = []
    model.train()
    for step in range(args.warmup + args.steps):
        t0 = time.perf_counter()
        _, xb, yb = next(batches)
        xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
        _sync(device)
        t1 = time.perf_counter()
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use_bf16):
            pred = model(xb)
        loss = loss_fn(pred.float(), yb)
        _sync(device)
        t2 = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        _sync(device)
        t3 = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        loss.item()  # the training loop reads the loss every step (a device sync on CUDA)
        t4 = time.perf_counter()
        if step >= args.warmup:
            step_seconds.append(t4 - t0)
            for key, seconds in zip(phases, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
                phases[key] += seconds
        logger.info("%s step %d: %.3f s", case.name, step, t4 - t0)

    mean_step = statistics.fmean(step_seconds)
    tokens = args.batch * args.window
    flops_step = model_flops_per_token(model, first_layer_parameters(model)) * tokens
    result = {
        "case": case.name,
        "backbone": case.backbone,
        "finetune": case.finetune,
        "bf16_autocast": use_bf16,
        "device": str(device),
        "threads": torch.get_num_threads(),
        "trainable_params": trainable_params,
        "total_params": total_params,
        "build_seconds": build_seconds,
        "steps": args.steps,
        "step_seconds_mean": mean_step,
        "step_seconds_min": min(step_seconds),
        "windows_per_s": args.batch / mean_step,
        "epoch_seconds_fish9": train_starts.numel() / (args.batch / mean_step),
        "phase_fraction": {k: v / sum(step_seconds) for k, v in phases.items()},
        "model_flops_per_step": flops_step,
        "achieved_flops": flops_step / mean_step,
        "max_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2,
        "cuda_max_allocated_gib": (
            torch.cuda.max_memory_allocated(device) / 1024**3 if device.type == "cuda" else None
        ),
    }
    return result


def bench_training(args: argparse.Namespace) -> dict:
    """Every case in its own subprocess (own peak RSS), then the matmul peaks in this one."""
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cases = [TrainingCase(b, m) for b in args.backbones for m in args.modes]
    if args.lstm:
        cases.append(TrainingCase("lstm", "full"))
    if not torch.cuda.is_available() or args.device == "cpu":
        for name in args.cpu_bf16:
            backbone, finetune = name.split("_", 1)
            cases.append(TrainingCase(backbone, finetune, cpu_bf16=True))
    prepare_backbones(out, sorted({c.backbone for c in cases} - {"lstm"}))
    results = []
    for case in cases:
        command = [
            sys.executable,
            __file__,
            "training-case",
            case.backbone,
            case.finetune,
            *_forwarded(args),
            *(["--cpu-bf16"] if case.cpu_bf16 else []),
        ]
        logger.info("running %s", case.name)
        done = subprocess.run(command, capture_output=True, text=True, timeout=args.case_timeout)
        if done.returncode != 0:
            raise RuntimeError(f"case {case.name} failed:\n{done.stderr[-4000:]}")
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))

    device = torch.device("cuda" if torch.cuda.is_available() and args.device != "cpu" else "cpu")
    peaks = {"fp32": matmul_peak(torch.float32, device)}
    try:
        peaks["bf16"] = matmul_peak(torch.bfloat16, device)
    except RuntimeError as error:  # bf16 matmul not implemented on this device
        logger.warning("no bf16 matmul: %s", error)
    # Each case against the peak of the precision its matmuls ran in: fp32, or bf16 under
    # autocast (always on CUDA in nlp4neuro.training; on the CPU only in the +bf16 cases).
    for result in results:
        precision = "bf16" if result["bf16_autocast"] and "bf16" in peaks else "fp32"
        result["mfu_reference"] = precision
        result["mfu"] = result["achieved_flops"] / peaks[precision]
    report = {
        "benchmark": "training",
        "device_info": device_info(),
        "settings": {
            "neurons": args.neurons,
            "frames": args.frames,
            "window": args.window,
            "batch": args.batch,
            "warmup": args.warmup,
            "steps": args.steps,
        },
        "matmul_peak_flops": peaks,
        "results": results,
    }
    _print_training(report)
    _write(out / "training.json", report)
    return report


def _forwarded(args: argparse.Namespace) -> list[str]:
    forwarded = []
    for key in ("neurons", "frames", "window", "batch", "warmup", "steps", "threads", "device"):
        value = getattr(args, key)
        if value is not None:
            forwarded += [f"--{key}", str(value)]
    return [*forwarded, "--out", str(args.out)]


def _print_training(report: dict) -> None:
    peaks = report["matmul_peak_flops"]
    print(
        "matmul peak (2048^2): " + ", ".join(f"{k} {v / 1e9:.0f} GFLOP/s" for k, v in peaks.items())
    )
    header = (
        f"{'case':<20}{'trainable':>12}{'win/s':>8}{'s/epoch':>9}{'GFLOP/s':>9}{'MFU':>7}"
        f"{'RSS GiB':>9}{'gather':>8}{'fwd':>6}{'bwd':>6}{'opt':>6}"
    )
    print(header)
    for r in report["results"]:
        phase = r["phase_fraction"]
        print(
            f"{r['case']:<20}{r['trainable_params'] / 1e6:>10.1f} M"
            f"{r['windows_per_s']:>8.1f}"
            f"{r['epoch_seconds_fish9']:>9.0f}{r['achieved_flops'] / 1e9:>9.0f}"
            f"{100 * r['mfu']:>6.0f}%{r['max_rss_gib']:>9.2f}"
            + "".join(f"{100 * phase[k]:>5.0f}%" for k in ("gather", "forward", "backward"))
            + f"{100 * phase['optimizer']:>5.0f}%"
        )


# ----------------------------------------------------------------------------------------------
# Preprocessing benchmark


def bench_preprocessing(args: argparse.Namespace) -> dict:
    """dF/F (baseline + division) and the reference normalisation on a paper-sized fish."""
    from nlp4neuro import preprocessing as pp
    from nlp4neuro.config import section

    p = section("preprocessing")
    rng = np.random.default_rng(0)
    n, t, rate = args.neurons, args.frames, 1.1
    # Positive fluorescence with slow drift and sparse transients, float32 like suite2p's F.npy.
    drift = np.linspace(0, 20, t, dtype=np.float32)
    F = 200 + drift + 10 * rng.standard_normal((n, t), dtype=np.float32)
    F += 100 * (rng.random((n, t), dtype=np.float32) < 0.01)

    methods = {
        "maximin": lambda: pp.delta_f_over_f(
            F,
            pp.baseline_maximin(F, rate, p["baseline_sigma_s"], p["baseline_window_s"]),
            p["f0_floor_fraction"],
        ),
        "percentile": lambda: pp.delta_f_over_f(
            F,
            pp.baseline_percentile(F, rate, p["baseline_window_s"], p["baseline_percentile"]),
            p["f0_floor_fraction"],
        ),
        "reference_normalise": lambda: pp.reference_normalise(F),
    }
    results = []
    for name, run in methods.items():
        seconds = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            run()
            seconds.append(time.perf_counter() - start)
        median = statistics.median(seconds)
        results.append(
            {
                "method": name,
                "seconds_median": median,
                "seconds_all": seconds,
                "neuron_frames_per_s": n * t / median,
            }
        )
    report = {
        "benchmark": "preprocessing",
        "device_info": device_info(),
        "settings": {"neurons": n, "frames": t, "frame_rate_hz": rate, "repeats": args.repeats},
        "results": results,
    }
    print(f"dF/F on {n} neurons x {t} frames (median of {args.repeats}):")
    for r in results:
        print(
            f"  {r['method']:<20} {r['seconds_median']:7.2f} s  "
            f"{r['neuron_frames_per_s'] / 1e6:8.1f} M neuron-frames/s"
        )
    _write(Path(args.out) / "preprocessing.json", report)
    return report


# ----------------------------------------------------------------------------------------------
# Dry-run benchmark


def bench_dryrun(args: argparse.Namespace) -> dict:
    """Wall time of `snakemake -n --configfile config/paper.yaml` on a fresh folder (no data:
    the download rule makes the raw folders)."""
    snakemake = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile")]
    slurm = ROOT / "profiles" / "slurm"
    results = []
    with tempfile.TemporaryDirectory(prefix="nlp4neuro_dryrun_") as tmp:
        for label, extra in (
            ("paper", ["--configfile", str(ROOT / "config" / "paper.yaml")]),
            ("paper_slurm", [
                "--configfile", str(ROOT / "config" / "paper.yaml"),
                "--workflow-profile", str(slurm),
                "--slurm-partition-config", str(slurm / "partitions.yaml"),
            ]),
            ("default", ["--configfile", str(ROOT / "config.yaml")]),
        ):  # fmt: skip
            seconds, jobs = [], None
            for _ in range(args.repeats):
                start = time.perf_counter()
                done = subprocess.run(
                    [*snakemake, "-n", "--quiet", "rules", *extra],
                    cwd=tmp,
                    capture_output=True,
                    text=True,
                    timeout=600,
                    env={**os.environ, "HF_HUB_OFFLINE": "1"},
                )
                seconds.append(time.perf_counter() - start)
                if done.returncode != 0:
                    raise RuntimeError(f"dry run {label} failed:\n{done.stderr[-4000:]}")
                text = done.stdout + done.stderr
                total = [line for line in text.splitlines() if line.startswith("total")]
                jobs = int(total[-1].split()[-1]) if total else None
            results.append(
                {
                    "label": label,
                    "jobs": jobs,
                    "seconds_median": statistics.median(seconds),
                    "seconds_all": seconds,
                }
            )
    report = {
        "benchmark": "dryrun",
        "device_info": device_info(),
        "settings": {"repeats": args.repeats, "snakemake": _snakemake_version()},
        "results": results,
    }
    print(f"snakemake -n (median of {args.repeats}):")
    for r in results:
        print(f"  {r['label']:<12} {r['jobs']:>6} jobs  {r['seconds_median']:6.1f} s")
    _write(Path(args.out) / "dryrun.json", report)
    return report


def _snakemake_version() -> str:
    from importlib.metadata import version

    return version("snakemake")


# ----------------------------------------------------------------------------------------------
# CLI


def _write(path: Path, report: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {path}")


def _common(parser: argparse.ArgumentParser, neurons: int, frames: int) -> None:
    parser.add_argument("--neurons", type=int, default=neurons, help="neurons N per frame")
    parser.add_argument("--frames", type=int, default=frames, help="imaging frames T")
    parser.add_argument("--out", type=Path, default=OUT, help="JSON and cached backbones")


def _training_options(parser: argparse.ArgumentParser) -> None:
    _common(parser, PAPER_NEURONS, PAPER_FRAMES)
    parser.add_argument("--window", type=int, default=20, help="window length in frames")
    parser.add_argument("--batch", type=int, default=32, help="windows per step")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    parser.add_argument("--steps", type=int, default=3, help="timed optimiser steps")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: torch's)"
    )
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    training = sub.add_parser("training", help="training throughput, peak memory and MFU")
    _training_options(training)
    training.add_argument("--backbones", nargs="+", default=["smollm2", "gpt2"])
    training.add_argument("--modes", nargs="+", default=["lora", "head", "full"])
    training.add_argument("--no-lstm", dest="lstm", action="store_false", help="skip the LSTM")
    training.add_argument(
        "--cpu-bf16",
        nargs="*",
        default=["gpt2_full", "smollm2_lora"],
        metavar="CASE",
        help="CPU only: also run these cases with bf16 autocast",
    )
    training.add_argument("--case-timeout", type=float, default=600, help="seconds per case")

    case = sub.add_parser("training-case", help="internal: one training case, JSON on stdout")
    case.add_argument("backbone")
    case.add_argument("finetune")
    case.add_argument("--cpu-bf16", action="store_true")
    _training_options(case)

    prep = sub.add_parser("preprocessing", help="dF/F throughput")
    _common(prep, 14_015, 2_798)  # fish 11, the largest recording
    prep.add_argument("--repeats", type=int, default=3)

    dry = sub.add_parser("dryrun", help="snakemake -n wall time on config/paper.yaml")
    dry.add_argument("--repeats", type=int, default=3)
    dry.add_argument("--out", type=Path, default=OUT)

    every = sub.add_parser("all", help="all three with their defaults")
    every.add_argument("--out", type=Path, default=OUT)

    args = parser.parse_args(argv)
    if args.command == "training-case":
        case = TrainingCase(args.backbone, args.finetune, cpu_bf16=args.cpu_bf16)
        result = run_training_case(case, args)
        print(json.dumps(result))
    elif args.command == "training":
        bench_training(args)
    elif args.command == "preprocessing":
        bench_preprocessing(args)
    elif args.command == "dryrun":
        bench_dryrun(args)
    else:
        main(["training", "--out", str(args.out)])
        main(["preprocessing", "--out", str(args.out)])
        main(["dryrun", "--out", str(args.out)])


if __name__ == "__main__":
    main()
