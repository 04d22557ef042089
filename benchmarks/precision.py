"""Does bf16 decode worse than fp32? Test RMSE of the same runs in both precisions.

The workflow itself runs twice on a shrunk copy of a configuration (default
config/synthetic-paper-scale.yaml: paper-sized synthetic fish, 10,000 neurons x 2,800 frames),
once with `compute.precision: fp32` and once with `bf16`, each in its own folder: the chosen
fish, models (without their ladder), one window and several training seeds. Everything but the
precision is equal, so each (model, fish, seed) gives one paired difference of test RMSE. The
report lists them, their mean and spread, and the resolved precision and training time of every
run. On a CPU without native bf16 the bf16 runs are several times slower (emulated matmuls), but
the numbers they produce are the same as on bf16 hardware up to the order of summation.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
PRECISIONS = ("fp32", "bf16")


def shrunk_config(config: dict[str, Any], args: argparse.Namespace, precision: str) -> dict:
    """The configuration with only what the comparison needs, in one precision."""
    shrunk = copy.deepcopy(config)
    shrunk["fish"] = config["fish"][: args.n_fish]
    shrunk["models"] = {m: {**config["models"][m], "ladder": []} for m in args.models}
    decoding = shrunk.setdefault("decoding", {})
    decoding["seeds"] = list(range(args.seeds))
    decoding["windows"] = [args.window]
    shrunk.setdefault("compute", {})["precision"] = precision
    shrunk.setdefault("saliency", {})["enabled"] = False
    return shrunk


def run_workflow(config: dict, folder: Path, cores: int) -> list[Path]:
    """Train every (model, fish, seed, fold) of `config` at its smallest horizon in `folder`
    with the real Snakefile; the run folders."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    from nlp4neuro.config import default_value

    window = config["decoding"]["windows"][0]
    folds = config["decoding"].get("folds", default_value("decoding", "folds"))
    # the smallest horizon: concurrent decoding with the default
    horizon = min(config["decoding"].get("horizons", default_value("decoding", "horizons")))
    runs = [
        folder / f"results/train/{m}/w{window}/fish{f}/seed{s}/h{horizon}/fold{k}"
        for m in config["models"]
        for f in config["fish"]
        for s in config["decoding"]["seeds"]
        for k in range(folds)
    ]
    command = [
        sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"),
        *[str(r.relative_to(folder) / "run.json") for r in runs],
        "--directory", str(folder), "--configfile", str(path), "--cores", str(cores),
    ]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"workflow in {folder} failed:\n{done.stderr[-4000:]}")
    return runs


def read_run(run: Path) -> dict[str, Any]:
    info = json.loads((run / "run.json").read_text())
    summary = info["summary"]
    return {
        "test_rmse": summary["test_rmse"],
        "precision": summary["precision"],
        "train_seconds": summary["train_seconds"],
        "epochs_run": summary["epochs_run"],
        "used_epoch": summary["used_epoch"],
    }


def compare(results: dict[str, list[dict]], runs: list[Path]) -> dict[str, Any]:
    """Paired differences bf16 - fp32 of test RMSE, per run and summarised."""
    pairs = []
    for run, fp32, bf16 in zip(runs, results["fp32"], results["bf16"], strict=True):
        parts = run.parts  # model/w/fish/seed/h/fold
        pairs.append(
            {
                "run": "/".join(parts[-6:]),
                "fp32": fp32,
                "bf16": bf16,
                "difference": bf16["test_rmse"] - fp32["test_rmse"],
                "relative": bf16["test_rmse"] / fp32["test_rmse"] - 1,
            }
        )
    differences = [p["difference"] for p in pairs]
    relative = [p["relative"] for p in pairs]
    return {
        "pairs": pairs,
        "n": len(pairs),
        "mean_difference": statistics.fmean(differences),
        "sd_difference": statistics.stdev(differences) if len(pairs) > 1 else None,
        "mean_relative": statistics.fmean(relative),
        "max_abs_relative": max(abs(r) for r in relative),
    }


def bench_precision(args: argparse.Namespace) -> dict:
    from run import _write, device_info

    with open(args.configfile, encoding="utf-8") as handle:
        config = yaml.safe_load(handle)
    out = Path(args.out) / "precision"
    results, runs = {}, []
    for precision in PRECISIONS:
        shrunk = shrunk_config(config, args, precision)
        runs = run_workflow(shrunk, out / precision, args.cores)
        results[precision] = [read_run(r) for r in runs]
    report = {
        "benchmark": "precision",
        "configfile": str(args.configfile),
        "device_info": device_info(),
        "settings": {k: getattr(args, k) for k in ("n_fish", "models", "seeds", "window")},
        **compare(results, runs),
    }
    _print(report)
    _write(Path(args.out) / "precision.json", report)
    return report


def _print(report: dict) -> None:
    print(f"test RMSE, bf16 - fp32, {report['n']} paired runs of {report['configfile']}:")
    for p in report["pairs"]:
        print(
            f"  {p['run']:<36} fp32 {p['fp32']['test_rmse']:.5f} ({p['fp32']['precision']}, "
            f"{p['fp32']['train_seconds']:.0f} s)  bf16 {p['bf16']['test_rmse']:.5f} "
            f"({p['bf16']['precision']}, {p['bf16']['train_seconds']:.0f} s)  "
            f"{100 * p['relative']:+.2f} %"
        )
    sd = report["sd_difference"]
    print(
        f"mean difference {report['mean_difference']:+.5f} rad"
        + ("" if sd is None else f" (sd {sd:.5f})")
        + f", mean relative {100 * report['mean_relative']:+.2f} %, "
        f"largest |relative| {100 * report['max_abs_relative']:.2f} %"
    )
