"""Performance benchmarks: training steps, the cost of a config's grid, fp32 vs bf16 accuracy,
dF/F preprocessing and planning the paper's grid.

Figures, not tests: each subcommand prints a table and writes JSON under benchmarks/out/.

    .venv/bin/python benchmarks/run.py training        # windows/s, MFU, peak RSS, step breakdown
    .venv/bin/python benchmarks/run.py grid --configfile config/paper.yaml   # CPU/GPU-hours, disk
    .venv/bin/python benchmarks/run.py precision       # test RMSE of fp32 and bf16 workflow runs
    .venv/bin/python benchmarks/run.py preprocessing   # dF/F throughput
    .venv/bin/python benchmarks/run.py dryrun          # snakemake -n on config/paper.yaml
    .venv/bin/python benchmarks/run.py all             # training, preprocessing, dryrun

`training` runs each named case (benchmarks/training_case.py, e.g. `gpt2:lora`) in a fresh
subprocess, so that its peak resident memory (getrusage max RSS) is its own, on synthetic data
shaped like fish 9 (12,499 neurons x 3,047 frames, windows of 20 frames, batches of 32), through
the package's own step (`WindowSampler.batch`, `forward_loss`, `backward`, `update`, and
`prepare_precision` in bf16). Ratios are against the first case of the same run; `--profile` adds
the ten operators with the most self time in one more step. `grid` is in benchmarks/grid.py,
`precision` in benchmarks/precision.py.

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
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

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


DEFAULT_CASES = (
    "gpt2:full:fp32:reference",
    "gpt2:full",
    "gpt2:lora:dropout",
    "gpt2:lora",
    "gpt2:head",
    "gpt2:lora:bf16",
    "gpt2:lora:fp32",
    "lstm:reference",
)


def prepare_backbones(out: Path, names: list[str]) -> dict[str, Path]:
    """Backbone folders cached under `out`: the bundled SmolLM2 (pretrained), and GPT-2's and
    BERT-base's default architectures at full size with random weights (`make_tiny_backbone`):
    the hub is not reachable here, and speed does not depend on the weights' values."""
    from nlp4neuro.models import make_tiny_backbone, prepare_backbone

    folders = {}
    for name in names:
        folder = out / "backbones" / name
        if not (folder / "config.json").is_file():
            start = time.perf_counter()
            if name == "smollm2":
                prepare_backbone("bundled:smollm2", folder)
            elif name in ("gpt2", "bert"):
                make_tiny_backbone(folder, name, **_full_size(name))
            else:
                raise ValueError(f"no backbone named {name!r}")
            logger.info("prepared %s in %.1f s -> %s", name, time.perf_counter() - start, folder)
        folders[name] = folder
    return folders


def _full_size(name: str) -> dict[str, int]:
    """`make_tiny_backbone` arguments for the default (base) size of an architecture (GPT-2's
    config answers to the generic names through its attribute map)."""
    from transformers import BertConfig, GPT2Config

    config = GPT2Config() if name == "gpt2" else BertConfig()
    return dict(
        hidden_size=config.hidden_size,
        num_layers=config.num_hidden_layers,
        num_heads=config.num_attention_heads,
        vocab_size=config.vocab_size,
        max_positions=config.max_position_embeddings,
    )


def run_training_case(case_name: str, args: argparse.Namespace) -> dict:
    """One case (benchmarks/training_case.py) on fish-9-shaped synthetic data."""
    from training_case import TrainingCase, run_case

    case = TrainingCase.parse(case_name)
    backbone_dir = None
    if case.is_llm:
        backbone_dir = prepare_backbones(Path(args.out), [case.backbone])[case.backbone]
    return run_case(case, args, backbone_dir)


def bench_training(args: argparse.Namespace) -> dict:
    """Every case in its own subprocess (own peak RSS), then the matmul peaks in this one;
    throughput and memory ratios against the first case, all from this one run."""
    from training_case import TrainingCase

    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cases = [TrainingCase.parse(c) for c in args.cases]  # fail early on a bad name
    prepare_backbones(out, sorted({c.backbone for c in cases if c.is_llm}))
    results = [_case_in_subprocess(case.name, args) for case in cases]
    device = torch.device("cuda" if torch.cuda.is_available() and args.device != "cpu" else "cpu")
    peaks = {"fp32": matmul_peak(torch.float32, device)}
    try:
        peaks["bf16"] = matmul_peak(torch.bfloat16, device)
    except RuntimeError as error:  # bf16 matmul not implemented on this device
        logger.warning("no bf16 matmul: %s", error)
    first = results[0]
    for result in results:
        precision = result["precision"] if result["precision"] in peaks else "fp32"
        result["mfu_reference"] = precision
        result["mfu"] = result["achieved_flops"] / peaks[precision]
        result["speed_vs_first"] = result["windows_per_s"] / first["windows_per_s"]
        result["rss_vs_first"] = result["max_rss_gib"] / first["max_rss_gib"]
    report = {
        "benchmark": "training",
        "device_info": device_info(),
        "settings": {
            k: getattr(args, k) for k in ("neurons", "frames", "window", "batch", "warmup", "steps")
        },
        "matmul_peak_flops": peaks,
        "results": results,
    }
    _print_training(report)
    _write(out / "training.json", report)
    return report


def _case_in_subprocess(case_name: str, args: argparse.Namespace) -> dict:
    return run_subcommand(["training-case", case_name, *_forwarded(args)], args.case_timeout)


def run_subcommand(command: list[str], timeout: float) -> dict:
    """This script's `command` in a fresh process (its own peak RSS); the JSON it prints last."""
    logger.info("running %s", " ".join(command[:2]))
    done = subprocess.run(
        [sys.executable, __file__, *command], capture_output=True, text=True, timeout=timeout
    )
    if done.returncode != 0:
        raise RuntimeError(f"{command[:2]} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_entry_case(args: argparse.Namespace) -> dict:
    """One config entry's training step (or a ridge fit), for `grid`."""
    import grid
    from training_case import run_entry

    entry, training = json.loads(args.entry), json.loads(args.training)
    if args.threads:
        torch.set_num_threads(args.threads)
    if entry["kind"] == "ridge":
        return {
            **grid.time_ridge(entry, args.frames, args.neurons),
            "threads": torch.get_num_threads(),
        }
    backbone_dir = Path(entry["source"]) if entry["kind"] == "llm" else None
    return run_entry(entry, training, args.precision, args, backbone_dir)


def _forwarded(args: argparse.Namespace) -> list[str]:
    forwarded = []
    for key in ("neurons", "frames", "window", "batch", "warmup", "steps", "threads", "device"):
        value = getattr(args, key)
        if value is not None:
            forwarded += [f"--{key}", str(value)]
    return [*forwarded, "--out", str(args.out), *(["--profile"] if args.profile else [])]


def _print_training(report: dict) -> None:
    peaks = report["matmul_peak_flops"]
    print(
        "matmul peak (2048^2): " + ", ".join(f"{k} {v / 1e9:.0f} GFLOP/s" for k, v in peaks.items())
    )
    first = report["results"][0]["case"]
    print(f"ratios are against {first}, measured in this run")
    print(
        f"{'case':<26}{'prec':>5}{'trainable':>11}{'win/s':>7}{'x':>6}{'GFLOP/s':>8}{'MFU':>6}"
        f"{'RSS GiB':>8}{'x':>6}  gather/fwd/bwd/opt"
    )
    for r in report["results"]:
        phase = "/".join(f"{100 * r['phase_fraction'][k]:.0f}" for k in r["phase_fraction"])
        print(
            f"{r['case']:<26}{r['precision']:>5}{r['trainable_params'] / 1e6:>9.1f} M"
            f"{r['windows_per_s']:>7.1f}{r['speed_vs_first']:>6.2f}"
            f"{r['achieved_flops'] / 1e9:>8.0f}{100 * r['mfu']:>5.0f}%"
            f"{r['max_rss_gib']:>8.2f}{r['rss_vs_first']:>6.2f}  {phase} %"
        )
        for op in r.get("top_ops") or []:
            print(f"    {op['op']:<48}{100 * op['self_fraction']:5.1f} %  x{op['calls']}")


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
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    parser.add_argument("--steps", type=int, default=6, help="timed optimiser steps")
    parser.add_argument("--profile", action="store_true", help="top operators of one more step")
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
    training.add_argument(
        "--cases",
        nargs="+",
        default=list(DEFAULT_CASES),
        metavar="CASE",
        help="backbone:finetune[:precision][:dropout][:reference] (benchmarks/training_case.py)",
    )
    training.add_argument("--case-timeout", type=float, default=900, help="seconds per case")

    case = sub.add_parser("training-case", help="internal: one training case, JSON on stdout")
    case.add_argument("case")
    _training_options(case)

    entry = sub.add_parser("entry-case", help="internal: one config entry's step, JSON on stdout")
    entry.add_argument("entry", help="models.<name> entry as JSON")
    entry.add_argument("training", help="training section values as JSON")
    entry.add_argument("precision", choices=("auto", "fp32", "bf16"))
    _training_options(entry)

    grid = sub.add_parser("grid", help="CPU/GPU-hours, memory and disk of a config's grid")
    grid.add_argument("--configfile", type=Path, default=ROOT / "config" / "paper.yaml")
    grid.add_argument("--models", nargs="+", help="only these models (default: all)")
    grid.add_argument("--warmup", type=int, default=1, help="untimed steps per model")
    grid.add_argument("--steps", type=int, default=3, help="timed steps per model")
    grid.add_argument("--threads", type=int, default=None, help="torch threads")
    grid.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    grid.add_argument("--case-timeout", type=float, default=900, help="seconds per model")
    grid.add_argument("--out", type=Path, default=OUT)

    prec = sub.add_parser("precision", help="test RMSE of fp32 and bf16 runs of the workflow")
    prec.add_argument(
        "--configfile", type=Path, default=ROOT / "config" / "synthetic-paper-scale.yaml"
    )
    prec.add_argument("--n-fish", type=int, default=1, help="the config's first fish only")
    prec.add_argument("--models", nargs="+", default=["minilm"])
    prec.add_argument("--seeds", type=int, default=3, help="training seeds 0..n-1")
    prec.add_argument("--window", type=int, default=10)
    prec.add_argument("--cores", type=int, default=os.cpu_count())
    prec.add_argument("--out", type=Path, default=OUT)

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
        print(json.dumps(run_training_case(args.case, args)))
    elif args.command == "entry-case":
        print(json.dumps(run_entry_case(args)))
    elif args.command == "grid":
        import grid as grid_module

        grid_module.bench_grid(args)
    elif args.command == "precision":
        import precision

        precision.bench_precision(args)
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
