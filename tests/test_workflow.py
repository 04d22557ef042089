"""End to end: the real Snakemake workflow on a tiny synthetic configuration.

One session-wide run of the whole workflow (tiny simulated fish, tiny random-weight Llama and
BERT backbones, short training) backs most tests here; they assert on the files it wrote.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
import yaml
from _workflow import FISH, MODELS, ROOT, SNAKEMAKE, snakemake, tiny_config

from nlp4neuro.dataset import open_dataset

pytestmark = pytest.mark.e2e


def dry_run(workdir: Path, *args: str) -> dict[str, int]:
    """Jobs per rule that a dry run would execute."""
    result = snakemake(workdir, "-n", "--quiet", "rules", *args)
    assert result.returncode == 0, result.stderr[-3000:]
    counts = {}
    for line in result.stdout.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit() and parts[0] not in ("total", "job"):
            counts[parts[0]] = int(parts[1])
    return counts


def test_default_config_dry_run_shows_every_stage_per_fish(tmp_path):
    jobs = dry_run(tmp_path, "--configfile", str(ROOT / "config.yaml"))
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    n_fish = len(config["fish"])
    for rule in ("simulate_fish", "ingest_fish", "compute_dff", "assemble_dataset"):
        assert jobs[rule] == n_fish, jobs
    assert jobs["prepare_backbone"] == 2  # SmolLM2 and MiniLM, shared by their rungs
    # every rung of each pretrained LLM's ladder is a model of its own
    rungs = sum(len(spec.get("ladder", [])) for spec in config["models"].values())
    assert rungs == 4 + 5  # SmolLM2 without the time-shuffled rung, MiniLM with all five
    n_models = len(config["models"]) + rungs
    assert jobs["train_decoder"] + jobs["train_baseline"] == n_models * n_fish
    assert jobs["train_decoder"] == (2 + rungs) * n_fish  # the GPU class: LLMs and rungs
    assert jobs["explain_decoder"] == 4 * n_fish  # pretrained and untrained maps only
    assert jobs["score_predictions"] == jobs["compare_models"] == 1


def test_paper_scale_synthetic_preset_dry_run(tmp_path):
    jobs = dry_run(tmp_path, "--configfile", str(ROOT / "config/synthetic-paper-scale.yaml"))
    assert jobs["simulate_fish"] == 5
    # (2 LLMs + 2 untrained twins) and 3 baselines, x 2 windows x 5 fish x 3 seeds x 5 horizons
    # x 5 folds
    assert jobs["train_decoder"] == 4 * 2 * 5 * 3 * 5 * 5
    assert jobs["train_baseline"] == 3 * 2 * 5 * 3 * 5 * 5
    # saliency explains the first fold's decoders at the smallest horizon only
    assert jobs["explain_decoder"] == 4 * 2 * 5 * 3
    assert jobs["plot_horizons"] == 1
    assert jobs["tail_history"] == 2 * 5  # per window and fish


def test_lint_and_format_are_clean():
    lint = subprocess.run(
        [*SNAKEMAKE, "--lint"], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr
    fmt = subprocess.run(
        [Path(sys.executable).parent / "snakefmt", "--check", "Snakefile", "workflow"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr


def test_config_typo_fails_before_any_job(tmp_path):
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    config["training"]["epocs"] = 3
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(config))
    result = snakemake(tmp_path, "-n", "--configfile", str(tmp_path / "bad.yaml"))
    assert result.returncode != 0
    assert "epocs" in result.stdout + result.stderr
    assert not (tmp_path / "results").exists()


def test_datasets_match_the_simulated_ground_truth(tiny_run):
    for fish in FISH:
        dataset = open_dataset(tiny_run / f"results/datasets/fish{fish}.nc")
        truth = xr.load_dataset(tiny_run / f"results/raw/raw_data_f{fish}/ground_truth.nc")
        # the last two imaging frames have no tail samples (the paper's T vs T-2)
        assert dataset.sizes["time"] == 218
        assert dataset.sizes["segment"] == 6
        # not-cells are filtered by iscell.npy; every kept neuron is a cell in the ground truth
        keys = pd.MultiIndex.from_arrays([truth["plane"].values, truth["roi"].values])
        ours = pd.MultiIndex.from_arrays([dataset["plane"].values, dataset["roi"].values])
        position = keys.get_indexer(ours)
        assert (position >= 0).all()
        assert truth["iscell"].values[position].all()
        assert dataset.sizes["neuron"] == int(truth["iscell"].values.sum())
        np.testing.assert_array_equal(
            dataset["region"].values, truth["region"].values[position].astype(str)
        )
        np.testing.assert_allclose(dataset["time"].values, np.arange(218) / 1.1)
        # the tail is the frame mean of the recorded 200 Hz samples: close to the noiseless one
        noiseless = truth["tail_noiseless"].values[:218]
        assert np.abs(dataset["tail"].values - noiseless).max() < 0.05
        # dF/F of planted drivers follows their drive more than unrelated neurons do
        drive = truth["bout_vigour"].values[:218].sum(axis=1)
        dff = dataset["dff"].values
        corr = np.array(
            [
                np.corrcoef(np.convolve(drive, np.ones(3), "same"), dff[:, i])[0, 1]
                for i in range(dff.shape[1])
            ]
        )
        drivers = truth["is_driver"].values[position]
        unrelated = truth["role"].values[position] == "unrelated"
        assert np.nanmean(corr[drivers]) > np.nanmean(np.abs(corr[unrelated])) + 0.1
        provenance = json.loads(dataset.attrs["source_checksums"])
        assert "plane_0/F.npy" in provenance and "plane_0/tail_df.h5" in provenance


def test_every_model_writes_predictions_in_one_format(tiny_run):
    for model in MODELS:
        for fish in FISH:
            run = tiny_run / f"results/train/{model}/w5/fish{fish}/seed0/h0/fold0"
            predictions = xr.load_dataset(run / "predictions.nc")
            assert set(predictions["split"].values) == {"val", "test"}
            assert predictions["predicted"].shape == predictions["true"].shape
            assert predictions.attrs["model"] == model
            assert np.isfinite(predictions["predicted"].values).all()
            assert (run / "model" / "spec.json").exists()
            assert not (
                tiny_run / f"results/checkpoints/{model}/w5/fish{fish}/seed0/h0/fold0/checkpoint.pt"
            ).exists()


def test_evaluation_tables_and_figures(tiny_run):
    metrics = pd.read_csv(tiny_run / "results/evaluation/metrics.csv")
    assert set(metrics["model"]) == set(MODELS)
    assert set(metrics["metric"]) >= {"rmse", "mae", "r2", "pearson_r"}
    statistics = pd.read_csv(tiny_run / "results/evaluation/statistics.csv")
    statistics = statistics[statistics["metric"] == "rmse"]
    twin = statistics[statistics["contrast"] == "pretrained_vs_untrained"]
    assert list(zip(twin["model_a"], twin["model_b"], strict=True)) == [
        ("tinyllama", "tinyllama_untrained")
    ]
    # three fish cannot give a Wilcoxon p below 0.05: the table says so instead of a p-value
    assert statistics["wilcoxon_p"].isna().all()
    assert statistics["note"].str.contains("Wilcoxon cannot reach").all()
    figures = tiny_run / "results/evaluation/figures"
    for name in ["model_comparison", "window_sweep", "training_curves"] + [
        f"predictions_fish{f}" for f in FISH
    ]:
        assert (figures / f"{name}.png").stat().st_size > 10_000
        assert (figures / f"{name}.svg").exists()


def test_saliency_outputs(tiny_run):
    controls = pd.read_csv(tiny_run / "results/saliency/summary/controls.csv")
    assert set(controls["model"]) == {"tinyllama", "tinyllama_untrained", "tinybert"}
    # baselines are scored for every run; a map is scored only where IG converged
    assert controls["auc_motor_map"].between(0, 1).all()
    assert controls["auc_ridge_weights"].between(0, 1).all()
    scored = controls[~controls["excluded"].astype(bool)]
    assert scored["auc_importance"].between(0, 1).all()
    excluded = controls[controls["excluded"].astype(bool)]
    assert excluded["auc_importance"].isna().all()
    assert excluded["excluded_reason"].astype(str).str.contains("completeness error").all()
    assert controls.loc[controls["model"] == "tinyllama", "twin"].eq("tinyllama_untrained").all()
    importance = xr.load_dataset(
        tiny_run / "results/saliency/tinyllama/w5/fish1/seed0/importance.nc"
    )
    assert {"plane", "x_um", "y_um", "z_um", "region"} <= set(importance.coords)
    for fish in FISH:
        run = tiny_run / f"results/saliency/tinybert/w5/fish{fish}/seed0"
        assert (run / "brain_map.png").stat().st_size > 10_000
        assert (run / "turn_maps.png").exists()
    assert (tiny_run / "results/saliency/summary/deletion_curves.png").exists()


def test_report_builds(tiny_run):
    result = snakemake(
        tiny_run, "--configfile", str(tiny_run / "config.yaml"), "--report", "report.html"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    html = (tiny_run / "report.html").read_text(errors="replace")
    assert "model_comparison.png" in html and "statistics.csv" in html


def test_nothing_to_do_after_a_complete_run_and_one_fish_reruns_alone(tiny_run):
    config = ["--configfile", str(tiny_run / "config.yaml")]
    assert dry_run(tiny_run, *config) == {}
    jobs = dry_run(
        tiny_run, *config, "--forcerun", "ingest_fish", "--", "results/datasets/fish2.nc"
    )
    assert jobs == {"ingest_fish": 1, "compute_dff": 1, "assemble_dataset": 1}


def test_changing_one_model_reruns_only_its_jobs(tiny_run, tmp_path):
    config = yaml.safe_load((tiny_run / "config.yaml").read_text())
    config["models"]["gru"]["hidden_size"] = 8
    changed = tmp_path / "changed.yaml"
    changed.write_text(yaml.safe_dump(config))
    jobs = dry_run(tiny_run, "--configfile", str(changed))
    assert jobs["train_baseline"] == len(FISH)  # the GRU on every fish, nothing else trains
    assert "train_decoder" not in jobs
    assert "explain_decoder" not in jobs
    assert jobs["score_predictions"] == 1


def test_suite2p_source_reads_an_existing_raw_folder(tiny_run, tmp_path):
    config = tiny_config(tiny_run)
    config["data"] = {"source": "suite2p", "raw_dir": str(tiny_run / "results/raw")}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    # the target goes first: --configfile takes every following word as a file
    result = snakemake(
        tmp_path, "results/datasets/fish1.nc", "--cores", "2",
        "--configfile", str(tmp_path / "config.yaml"),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    ours = open_dataset(tmp_path / "results/datasets/fish1.nc")
    reference = open_dataset(tiny_run / "results/datasets/fish1.nc")
    np.testing.assert_array_equal(ours["dff"].values, reference["dff"].values)
    assert "simulate_fish" not in result.stderr


def modules_loaded_per_rule(workdir: Path) -> dict[str, set[str]]:
    """The package modules each rule's jobs really loaded (every job logs them at exit)."""
    loaded: dict[str, set[str]] = {}
    for log in (workdir / "logs").rglob("*.log"):
        text = log.read_text(errors="replace")
        rule = re.search(r"rule (\w+), wildcards", text)
        modules = re.search(r"package modules loaded: (.*)", text)
        if rule and modules:
            loaded.setdefault(rule.group(1), set()).update(modules.group(1).split())
    return loaded


def module_name(path: Path, src: Path) -> str:
    parts = path.relative_to(src).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def dry_run_reasons(repo: Path, workdir: Path) -> tuple[set[str], set[str]]:
    """(rules a dry run of `repo`'s workflow would rerun, those it reruns for changed params).

    A dry run names only the first reason of a job: a job below a rerun one says "input files
    updated" even when its own params changed too.
    """
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(repo / "Snakefile"), "-n",
         "--directory", str(workdir), "--configfile", str(workdir / "config.yaml"),
         "--rerun-triggers", "params"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    rerun, params = set(), set()
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", result.stdout + result.stderr):
        name = re.match(r"(?:local)?rule (\w+):", block)
        if name and name.group(1) != "all":
            rerun.add(name.group(1))
            if "Params have changed" in block:
                params.add(name.group(1))
    return rerun, params


def test_editing_a_module_reruns_exactly_the_rules_that_load_it(tiny_run, tmp_path):
    """Code digests follow the imports: no rule misses a module it runs, none reruns needlessly."""
    repo = tmp_path / "repo"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("src", "workflow", "profiles"):
        shutil.copytree(ROOT / name, repo / name, ignore=ignore)
    shutil.copy(ROOT / "Snakefile", repo / "Snakefile")
    loaded = modules_loaded_per_rule(tiny_run)
    assert {"train_decoder", "explain_decoder", "ingest_fish"} <= set(loaded)
    assert dry_run_reasons(repo, tiny_run) == (set(), set())
    src = repo / "src"
    for module in sorted((src / "nlp4neuro").rglob("*.py")):
        name = module_name(module, src)
        expected = {rule for rule, modules in loaded.items() if name in modules}
        original = module.read_text()
        module.write_text(original + "\n# an edit\n")
        try:
            rerun, by_params = dry_run_reasons(repo, tiny_run)
            # every rule that loads the module reruns (by its params or below one that does),
            # and no rule reruns for its params unless it loads the module
            assert expected <= rerun, (name, expected - rerun)
            assert by_params <= expected, (name, by_params - expected)
            assert bool(by_params) == bool(expected), name
        finally:
            module.write_text(original)
