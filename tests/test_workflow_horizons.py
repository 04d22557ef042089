"""End to end: decoding ahead (decoding.horizons) through the real Snakemake workflow.

A tiny run with horizons 0 and 2: a bidirectional encoder (tiny BERT, kept to past frames), a
recurrent decoder, ridge and the mean; the null at both horizons; the horizon table and figure;
saliency at the smallest horizon.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import xarray as xr
import yaml
from _workflow import FISH, prepare_tiny_workdir, snakemake

pytestmark = pytest.mark.e2e

HORIZONS = [0, 2]
MODELS = ["tinybert", "gru", "ridge", "mean"]


def horizon_config(workdir: Path) -> Path:
    """The tiny workflow config with two horizons and four models."""
    path = prepare_tiny_workdir(workdir)
    config = yaml.safe_load(path.read_text())
    config["decoding"]["horizons"] = HORIZONS
    config["models"] = {name: config["models"][name] for name in MODELS}
    config["null_distribution"] = {"n_shifts": 19}
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def horizon_run(tmp_path_factory) -> Path:
    workdir = tmp_path_factory.mktemp("horizons")
    result = snakemake(workdir, "--cores", "2", "--configfile", str(horizon_config(workdir)))
    assert result.returncode == 0, result.stderr[-5000:]
    return workdir


def test_every_model_is_trained_and_scored_at_every_horizon(horizon_run):
    for model in MODELS:
        for horizon in HORIZONS:
            run = horizon_run / f"results/train/{model}/w5/fish1/seed0/h{horizon}/fold0"
            problem = json.loads((run / "problem.json").read_text())
            assert problem["horizon"] == horizon and problem["params"]["horizons"] == HORIZONS
            assert json.loads((run / "run.json").read_text())["horizon"] == horizon
            with xr.open_dataset(run / "predictions.nc") as predictions:
                assert int(predictions.attrs["horizon"]) == horizon
    metrics = pd.read_csv(horizon_run / "results/evaluation/metrics.csv")
    counts = metrics.groupby(["model", "horizon"])["fish"].nunique()
    assert counts.to_dict() == {(m, h): len(FISH) for m in MODELS for h in HORIZONS}
    # both horizons are scored on the same test frames
    frames = {}
    for horizon in HORIZONS:
        run = horizon_run / f"results/train/ridge/w5/fish2/seed0/h{horizon}/fold0"
        with xr.open_dataset(run / "predictions.nc") as predictions:
            test = predictions.isel(time=predictions["split"].values.astype(str) == "test")
            frames[horizon] = test["frame"].values.tolist()
    assert frames[0] == frames[2]


def test_horizon_table_and_figure_with_the_null_floor(horizon_run):
    table = pd.read_csv(horizon_run / "results/evaluation/horizons.csv")
    assert set(zip(table["model"], table["horizon"], strict=True)) == {
        (m, h) for m in MODELS for h in HORIZONS
    }
    assert (table["n_fish"] == len(FISH)).all()
    assert table["null_r2_p95_mean"].notna().all() and (table["n_fish_with_null"] == 3).all()
    # the tail's own past: a reference ahead only (at horizon 0 the tail is the target)
    assert table.loc[table["horizon"] == 2, "tail_history_r2_mean"].notna().all()
    assert table.loc[table["horizon"] == 0, "tail_history_r2_mean"].isna().all()
    null = pd.read_csv(horizon_run / "results/evaluation/null.csv")
    assert set(null["horizon"]) == set(HORIZONS)
    figure = horizon_run / "results/evaluation/figures/horizons.png"
    assert figure.stat().st_size > 10_000


def test_statistics_and_saliency_use_the_smallest_horizon(horizon_run):
    statistics = pd.read_csv(horizon_run / "results/evaluation/statistics.csv")
    assert not statistics.empty and "horizon" not in statistics.columns
    summary = pd.read_csv(horizon_run / "results/evaluation/summary.csv")
    assert set(summary["horizon"]) == set(HORIZONS)
    maps = sorted((horizon_run / "results/saliency").glob("tinybert/w5/fish*/seed0"))
    assert len(maps) == len(FISH)
    log = (horizon_run / "logs/train/tinybert/w5/fish1/seed0/h2/fold0.log").read_text()
    assert "horizon 2 (past frames only)" in log


def test_the_time_shuffled_rung_cannot_decode_ahead(tmp_path):
    path = horizon_config(tmp_path)
    config = yaml.safe_load(path.read_text())
    config["models"]["tinybert"]["ladder"] = ["timeshuffled"]
    path.write_text(yaml.safe_dump(config))
    result = snakemake(tmp_path, "-n", "--configfile", str(path))
    assert result.returncode != 0
    assert "decoding.horizons" in result.stdout + result.stderr
