"""What a configuration's training grid costs: CPU-hours, GPU-hours, memory per job and disk,
from step times measured on this machine.

For every distinct model of the config (after the ladder's expansion; an untrained twin costs
what its pretrained model costs), a few optimiser steps run through the package's own step
(`training_case.run_entry`) on synthetic data of the largest configured fish's shape, at the
longest configured window, in the config's training settings and `compute.precision`. A job's
time is then counted, not guessed: its epochs x optimiser steps (from the exact train-window
count of `nlp4neuro.problem`'s splits) plus the forward passes over the validation windows each
epoch and over the held-out windows once, each step scaled by its window (tokens) relative to
the measured one. Ridge is timed fitting once on the same shape; the mean predictor costs
nothing. Models this machine cannot run (quantised backbones without CUDA; hub backbones that
are not GPT-2 or BERT-base, whose architectures are built here with random weights) are
reported as not measured. Only the training jobs are counted; the saliency, null and evaluation
jobs are small beside them (docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

# frames x neurons of the paper's fish after alignment (shared/reference/data-format.md)
PAPER_SHAPES = {
    "9": (3047, 12499),
    "10": (2793, 7441),
    "11": (2798, 14015),
    "12": (2793, 10581),
    "13": (2793, 9336),
}
# Hub backbones whose architecture the benchmark can build offline, random weights, full size.
OFFLINE_ARCHITECTURES = {"gpt2": "gpt2", "bert-base-uncased": "bert"}
# Keys that do not change a training step's cost.
COST_FREE_KEYS = (
    "pretrained",
    "allow_download",
    "match_embedding_norm",
    "ladder",
    "untrained_twin",
    "twin_of",
    "rung_of",
)


def load_config(path: Path) -> dict[str, Any]:
    from nlp4neuro.config import validate_config

    with open(path, encoding="utf-8") as handle:
        return validate_config(yaml.safe_load(handle))


def fish_shapes(config: dict[str, Any]) -> dict[str, tuple[int, int]]:
    """frames x neurons per configured fish: simulated sizes, or the paper's fish."""
    fish = [str(f) for f in config["fish"]]
    if config["data"]["source"] == "synthetic":
        sim = config["simulation"]
        return {f: (sim["n_frames"], sim["n_neurons"]) for f in fish}
    unknown = [f for f in fish if f not in PAPER_SHAPES]
    if unknown:
        raise SystemExit(
            f"fish {unknown}: no known shape (the grid benchmark knows the synthetic fish and the "
            f"paper's fish {sorted(PAPER_SHAPES, key=int)})"
        )
    return {f: PAPER_SHAPES[f] for f in fish}


def cost_key(entry: dict[str, Any]) -> str:
    """Models with equal keys train at equal cost (a twin and its pretrained model)."""
    kept = {k: v for k, v in entry.items() if k not in COST_FREE_KEYS}
    if kept.get("rung") in ("none", "untrained"):
        kept.pop("rung")
    return json.dumps(kept, sort_keys=True)


def measurable(entry: dict[str, Any], cuda: bool) -> str | None:
    """None when this machine can time the model, else the reason it cannot."""
    if entry["kind"] != "llm":
        return None
    if entry.get("quantization", "none") != "none" and not cuda:
        return "quantised backbone: needs CUDA"
    source = str(entry["source"])
    if source.startswith("bundled:") or Path(source).is_dir() or source in OFFLINE_ARCHITECTURES:
        return None
    return f"hub backbone {source}: not buildable offline"


def backbone_folder(source: str, out: Path) -> Path:
    """A folder to build the model from: bundled and local as they are, the offline
    architectures at full size with random weights (`run.prepare_backbones`)."""
    from run import prepare_backbones

    from nlp4neuro.models import prepare_backbone

    if source in OFFLINE_ARCHITECTURES:
        name = OFFLINE_ARCHITECTURES[source]
        return prepare_backbones(out, [name])[name]
    if source.startswith("bundled:"):
        folder = out / "backbones" / source.replace(":", "_")
        if not (folder / "config.json").is_file():
            prepare_backbone(source, folder)
        return folder
    return Path(source)


def split_windows(
    config: dict[str, Any], frames: int, window: int, frame_rate_hz: float
) -> list[dict[str, int]]:
    """Train, val and test window counts of one fish and window, one dict per fold
    (`nlp4neuro.problem.fold_segments`, the gap resolved at `frame_rate_hz`)."""
    from nlp4neuro import problem as problem_mod

    params = problem_mod.DecodingParams.from_config(config["decoding"])
    gap = params.resolved_gap(frame_rate_hz)
    # the target frames every horizon shares (`nlp4neuro.problem.lag_neural`)
    lag = params.neural_lag_frames
    usable = frames - lag - max(max(params.horizons) - lag, 0)
    counts = []
    for fold in range(params.folds):
        segments = problem_mod.fold_segments(usable, fold, params, gap)
        counts.append({k: len(problem_mod.segment_starts(segments[k], window)) for k in segments})
    return counts


def job_seconds(measured: dict, training: dict, windows: dict[str, int], scale: float) -> float:
    """One training job: epochs x steps plus validation passes each epoch and the final
    held-out predictions, each step's time scaled by `scale` (window / measured window)."""
    batch = training["batch_size"]
    forward = measured["step_seconds_mean"] * measured["phase_fraction"]["forward"]
    steps = training["epochs"] * math.ceil(windows["train"] / batch)
    passes = training["epochs"] * math.ceil(windows["val"] / batch)
    passes += math.ceil((windows["val"] + windows["test"]) / batch)
    return scale * (steps * measured["step_seconds_mean"] + passes * forward)


def time_ridge(entry: dict[str, Any], frames: int, neurons: int) -> dict[str, Any]:
    """One ridge fit (validation choice of alpha included) on data of the given shape."""
    from nlp4neuro.models import ModelSpec, build_decoder

    rng = np.random.default_rng(0)
    n_train, n_val = int(0.7 * frames), int(0.1 * frames)
    x = rng.random((n_train + n_val, neurons), dtype=np.float32)
    y = rng.standard_normal((n_train + n_val, 6)).astype(np.float32)
    model = build_decoder(
        ModelSpec.from_config("ridge", entry), neurons, 6, backbone_dir=None, seed=0
    )
    start = time.perf_counter()
    model.fit(x[:n_train], y[:n_train], x[n_train:], y[n_train:])
    return {
        "fit_seconds": time.perf_counter() - start,
        "max_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2,
    }


def disk_bytes(entry: dict[str, Any], measured: dict, windows: dict[str, int]) -> float:
    """One job's outputs: the saved decoder (what trains, or the whole state for full
    fine-tuning and the baselines, fp32) and predictions.nc (predicted and true angles of the
    held-out frames, 6 segments, with five coordinates)."""
    if entry["kind"] == "llm" and entry.get("finetune") != "full":
        weights = measured["trainable_params"]
    else:
        weights = measured["total_params"]
    held_out = windows["val"] + windows["test"]
    return 4 * weights + held_out * (2 * 6 * 4 + 5 * 8)


def _measure(entry: dict, training: dict, config: dict, shape: tuple, window: int, args) -> dict:
    """One model's step (or ridge fit) in its own process, on the largest fish's shape."""
    from run import run_subcommand

    frames, neurons = shape
    measured_entry = dict(entry)
    if entry["kind"] == "llm":
        measured_entry["source"] = str(backbone_folder(str(entry["source"]), Path(args.out)))
    command = [
        "entry-case",
        json.dumps(measured_entry),
        json.dumps(training),
        config["compute"]["precision"],
        "--frames", str(frames),
        "--neurons", str(neurons),
        "--window", str(window),
        "--batch", str(training["batch_size"]),
        "--warmup", str(args.warmup),
        "--steps", str(args.steps),
        "--device", args.device,
        "--out", str(args.out),
        *(["--threads", str(args.threads)] if args.threads else []),
    ]  # fmt: skip
    return run_subcommand(command, args.case_timeout)


def _training_values(config: dict, entry: dict) -> dict:
    """The model's training section: the global one with its own overrides on top."""
    return {**config["training"], **entry.get("training", {})}


def _weights(measured: dict, neurons: int) -> dict:
    """Parameter counts of a measured torch model, or of ridge/mean (a weight per neuron and
    segment, plus an intercept)."""
    if "total_params" in measured:
        return measured
    count = neurons * 6 + 6
    return {"trainable_params": count, "total_params": count}


def _frame_rate(config: dict) -> float:
    """The imaging rate of the grid's fish: the simulation's for synthetic data, else
    data.frame_rate_hz (the simulation's when that is null: ops.npy would tell)."""
    if config["data"]["source"] == "synthetic" or config["data"]["frame_rate_hz"] is None:
        return float(config["simulation"]["frame_rate_hz"])
    return float(config["data"]["frame_rate_hz"])


def _model_row(name: str, entry: dict, measured: dict, config: dict, shapes: dict) -> dict:
    """Jobs, hours, memory and disk of one model over every fish, window, seed, horizon and
    fold (every horizon costs the same: the same target frames)."""
    decoding = config["decoding"]
    repeats = len(decoding["seeds"]) * len(decoding["horizons"])  # runs per fish, window, fold
    n_runs = len(shapes) * len(decoding["windows"]) * repeats * decoding["folds"]
    row = {"model": name, "jobs": n_runs}
    if "not_measured" in measured:
        return {**row, "not_measured": measured["not_measured"]}
    training = _training_values(config, entry)
    seconds = disk = 0.0
    for frames, neurons in shapes.values():
        for window in decoding["windows"]:
            for windows in split_windows(config, frames, window, _frame_rate(config)):
                if entry["kind"] == "mean":
                    job = 0.0
                elif entry["kind"] == "ridge":
                    job = measured["fit_seconds"] * frames / measured["frames"]
                else:
                    job = job_seconds(measured, training, windows, window / measured["window"])
                seconds += repeats * job
                disk += repeats * disk_bytes(entry, _weights(measured, neurons), windows)
    threads = measured.get("threads", 1)
    return {
        **row,
        "wall_hours": seconds / 3600,
        "cpu_hours": seconds * threads / 3600,
        "gpu_hours": seconds / 3600 if measured.get("device", "cpu").startswith("cuda") else None,
        "threads": threads,
        "precision": measured.get("precision"),
        "max_rss_gib": measured.get("max_rss_gib"),
        "disk_gb": disk / 1e9,
    }


def bench_grid(args: argparse.Namespace) -> dict:
    """Measure every distinct model once, then count the grid's hours, memory and disk."""
    from run import _write, device_info

    from nlp4neuro.ladder import expand_models

    config = load_config(args.configfile)
    models = expand_models(config["models"])
    if args.models:
        models = {k: v for k, v in models.items() if k in set(args.models)}
    shapes = fish_shapes(config)
    largest = max(shapes.values(), key=lambda s: s[0] * s[1])
    window = max(config["decoding"]["windows"])
    cuda = args.device == "cuda" or (args.device == "auto" and _cuda_visible())
    measured: dict[str, dict] = {}
    for entry in models.values():
        key = cost_key(entry)
        if key in measured:
            continue
        reason = measurable(entry, cuda)
        if reason is not None:
            measured[key] = {"not_measured": reason}
        elif entry["kind"] == "mean":
            measured[key] = {"threads": 1}
        else:
            measured[key] = _measure(
                entry, _training_values(config, entry), config, largest, window, args
            )
        measured[key].update(frames=largest[0], neurons=largest[1], window=window)
    rows = [_model_row(n, e, measured[cost_key(e)], config, shapes) for n, e in models.items()]
    report = {
        "benchmark": "grid",
        "configfile": str(args.configfile),
        "device_info": device_info(),
        "measured_on": {"frames": largest[0], "neurons": largest[1], "window": window},
        "rows": rows,
        "totals": _totals(rows),
    }
    _print_grid(report)
    _write(Path(args.out) / "grid.json", report)
    return report


def _totals(rows: list[dict]) -> dict:
    counted = [r for r in rows if "not_measured" not in r]
    gpu = [r["gpu_hours"] for r in counted if r["gpu_hours"] is not None]
    return {
        "jobs": sum(r["jobs"] for r in rows),
        "jobs_not_measured": sum(r["jobs"] for r in rows if "not_measured" in r),
        "cpu_hours": sum(r["cpu_hours"] for r in counted),
        "gpu_hours": sum(gpu) if gpu else None,
        "disk_gb": sum(r["disk_gb"] for r in counted),
        "max_rss_gib": max((r["max_rss_gib"] or 0) for r in counted) if counted else None,
    }


def _print_grid(report: dict) -> None:
    shape = report["measured_on"]
    print(
        f"{report['configfile']}: steps measured on {shape['frames']} frames x "
        f"{shape['neurons']} neurons, window {shape['window']}"
    )
    columns = ("jobs", 6), ("prec", 6), ("wall h", 9), ("CPU h", 9), ("GPU h", 8)
    columns += ("RSS GiB", 9), ("disk GB", 9)
    print(f"{'model':<28}" + "".join(f"{name:>{width}}" for name, width in columns))
    for r in report["rows"]:
        if "not_measured" in r:
            print(f"{r['model']:<28}{r['jobs']:>6}  not measured: {r['not_measured']}")
            continue
        gpu = "-" if r["gpu_hours"] is None else f"{r['gpu_hours']:.1f}"
        rss = "-" if r["max_rss_gib"] is None else f"{r['max_rss_gib']:.2f}"
        print(
            f"{r['model']:<28}{r['jobs']:>6}{r['precision'] or '-':>6}{r['wall_hours']:>9.2f}"
            f"{r['cpu_hours']:>9.2f}{gpu:>8}{rss:>9}{r['disk_gb']:>9.2f}"
        )
    t = report["totals"]
    gpu = "-" if t["gpu_hours"] is None else f"{t['gpu_hours']:.1f}"
    print(
        f"total: {t['jobs']} training jobs ({t['jobs_not_measured']} not measured here), "
        f"{t['cpu_hours']:.0f} CPU-hours, GPU-hours {gpu}, largest job {t['max_rss_gib']:.2f} GiB "
        f"peak RSS, {t['disk_gb']:.1f} GB of outputs"
    )


def _cuda_visible() -> bool:
    import torch

    return torch.cuda.is_available()
