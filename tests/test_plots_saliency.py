"""Tests of nlp4neuro.plots.saliency: every figure is written, non-empty, and checks its input."""

from __future__ import annotations

import matplotlib.image
import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr
from torch import nn

from nlp4neuro.anatomy import region_importance
from nlp4neuro.config import section
from nlp4neuro.plots.saliency import (
    plot_brain_map,
    plot_deletion_curves,
    plot_region_importance,
    plot_turn_maps,
)
from nlp4neuro.saliency import SaliencyParams, attribute

N_NEURONS = 30
N_FRAMES = 40


def _importance_ds() -> tuple[xr.Dataset, np.ndarray]:
    rng = np.random.default_rng(0)
    coords = {
        "time": np.arange(N_FRAMES) / 1.1,
        "neuron": np.arange(N_NEURONS),
        "plane": ("neuron", np.repeat([0, 1, 2], 10)),
        "x_um": ("neuron", rng.uniform(0, 300, N_NEURONS)),
        "y_um": ("neuron", rng.uniform(0, 200, N_NEURONS)),
        "z_um": ("neuron", np.repeat([0.0, 10.0, 20.0], 10)),
        "region": ("neuron", np.repeat(["Pt", "Hb", "Cb"], 10)),
    }
    dff = xr.DataArray(
        rng.normal(size=(N_FRAMES, N_NEURONS)).astype(np.float32),
        dims=("time", "neuron"),
        coords=coords,
    )
    torch.manual_seed(0)
    model = nn.Linear(N_NEURONS, 6)
    params = SaliencyParams.from_config(
        section("saliency", method="input_x_gradient", target="each", absolute=False)
    )
    ds = attribute(model, dff, np.arange(0, N_FRAMES, 5), 5, params)
    tail = rng.normal(scale=0.3, size=(N_FRAMES, 6))
    return ds, tail


def _assert_written(paths) -> None:
    assert [p.suffix for p in paths] == [".png", ".svg"]
    for path in paths:
        assert path.is_file() and path.stat().st_size > 1000
    image = matplotlib.image.imread(paths[0])
    assert image.std() > 0.01  # not a blank canvas


def test_plot_brain_map(tmp_path) -> None:
    ds, _ = _importance_ds()
    backgrounds = {0: np.random.default_rng(1).random((50, 80))}
    paths = plot_brain_map(
        ds,
        tmp_path / "brain",
        target="summed",
        top_k=5,
        backgrounds=backgrounds,
        background_pixel_um=4.0,
    )
    _assert_written(paths)
    _assert_written(plot_brain_map(ds, tmp_path / "angle", target="theta_02", top_k=0))
    with pytest.raises(ValueError, match="target: expected one of"):
        plot_brain_map(ds, tmp_path / "bad", target="theta_09", top_k=5)


def test_plot_turn_maps(tmp_path) -> None:
    ds, tail = _importance_ds()
    aligned = tail[ds.frame_index.values]
    _assert_written(plot_turn_maps(ds, aligned, tmp_path / "turns", threshold_rad=0.2))
    # a threshold no frame reaches still gives a figure (panels say "no frames")
    _assert_written(plot_turn_maps(ds, aligned.sum(axis=1), tmp_path / "none", threshold_rad=99))
    with pytest.raises(ValueError, match="aligned with frame_importance"):
        plot_turn_maps(ds, aligned[:-1], tmp_path / "bad")
    with pytest.raises(ValueError, match="frame_importance"):
        plot_turn_maps(ds.drop_vars("frame_importance"), aligned, tmp_path / "bad")


def test_plot_region_importance(tmp_path) -> None:
    rng = np.random.default_rng(2)
    regions = np.repeat(["Pt", "Hb", "Cb", "Te"], 5)
    tables = {
        str(fish): region_importance(rng.gamma(2.0, size=20), regions) for fish in (9, 10, 11)
    }
    tables["12"] = tables["9"].iloc[:2]  # a fish with only 2 of the regions
    _assert_written(plot_region_importance(tables, tmp_path / "regions"))
    with pytest.raises(ValueError, match="expected columns region, median_rank"):
        plot_region_importance(tables, tmp_path / "bad", value="median_rank")


def test_plot_deletion_curves(tmp_path) -> None:
    rows = []
    for fish in ("9", "10"):
        for k in (0, 10, 50):
            rows.append(
                {
                    "fish": fish,
                    "k": k,
                    "condition": "top",
                    "rmse_mean": 0.05 + k / 500,
                    "rmse_sd": 0.0,
                    "n_repeats": 1,
                }
            )
            rows.append(
                {
                    "fish": fish,
                    "k": k,
                    "condition": "random",
                    "rmse_mean": 0.05 + k / 5000,
                    "rmse_sd": 0.002,
                    "n_repeats": 20,
                }
            )
    df = pd.DataFrame(rows)
    _assert_written(plot_deletion_curves(df, tmp_path / "deletion", group="fish"))
    _assert_written(plot_deletion_curves(df[df.fish == "9"], tmp_path / "one"))
    with pytest.raises(ValueError, match="expected columns"):
        plot_deletion_curves(df.drop(columns="rmse_sd"), tmp_path / "bad")
