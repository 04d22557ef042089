"""Tests of nlp4neuro.explain: one run's explanation and the summary across runs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr
from torch import nn

from nlp4neuro.dataset import InputNormaliser
from nlp4neuro.explain import (
    ExplainParams,
    driver_mask,
    explain_run,
    params_from_config,
    randomised_copy,
    split_slices,
    summarise_explanations,
)
from nlp4neuro.saliency import SaliencyParams


class FrameLinear(nn.Module):
    """y_t = W x_t, one frame at a time: (B, w, N) -> (B, w, K)."""

    def __init__(self, weight: np.ndarray) -> None:
        super().__init__()
        self.linear = nn.Linear(weight.shape[1], weight.shape[0], bias=False)
        with torch.no_grad():
            self.linear.weight.copy_(torch.as_tensor(weight, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)


N_NEURONS, N_FRAMES, DRIVERS = 12, 120, [2, 7]


def planted_fish(seed: int = 0) -> tuple[xr.Dataset, FrameLinear, xr.Dataset]:
    """A dataset whose tail is driven by neurons 2 and 7 only, and the decoder that knows it."""
    rng = np.random.default_rng(seed)
    dff = rng.normal(size=(N_FRAMES, N_NEURONS)).astype(np.float32)
    weight = np.zeros((2, N_NEURONS), dtype=np.float32)
    weight[0, DRIVERS] = [0.5, -0.4]
    weight[1, DRIVERS] = [0.2, 0.3]
    tail = dff @ weight.T
    regions = np.array(["Hb_left"] * 6 + ["tectum"] * 6, dtype=object)
    regions[DRIVERS[1]] = "Hb_left"  # both drivers in one region
    regions[0] = "tectum"
    dataset = xr.Dataset(
        {"dff": (("time", "neuron"), dff), "tail": (("time", "segment"), tail)},
        coords={
            "time": np.arange(N_FRAMES) / 1.1,
            "frame": ("time", np.arange(N_FRAMES)),
            "neuron": np.arange(N_NEURONS),
            "plane": ("neuron", np.repeat([0, 1], 6)),
            "roi": ("neuron", np.tile(np.arange(6), 2)),
            "x_um": ("neuron", rng.uniform(0, 100, N_NEURONS)),
            "y_um": ("neuron", rng.uniform(0, 100, N_NEURONS)),
            "z_um": ("neuron", np.repeat([0.0, 10.0], 6)),
            "region": ("neuron", regions),
            "segment": ["theta_00", "theta_01"],
        },
        attrs={"fish": "1"},
    )
    # ground truth lists neurons in another order: the (plane, roi) join must realign them
    is_driver = np.isin(np.arange(N_NEURONS), DRIVERS)
    order = np.arange(N_NEURONS)[::-1]
    truth = xr.Dataset(
        {"is_driver": ("neuron", is_driver[order])},
        coords={
            "plane": ("neuron", dataset["plane"].values[order]),
            "roi": ("neuron", dataset["roi"].values[order]),
        },
    )
    return dataset, FrameLinear(weight), truth


RUN_INFO = {
    "window_frames": 5,
    "params": {"neural_lag_frames": 0},
    "splits": {
        "train": {"start": 0, "stop": 80},
        "val": {"start": 85, "stop": 95},
        "test": {"start": 100, "stop": 120},
    },
}


def test_split_slices_reads_run_json_ranges():
    assert split_slices(RUN_INFO) == {
        "train": slice(0, 80),
        "val": slice(85, 95),
        "test": slice(100, 120),
    }


def test_driver_mask_joins_on_plane_and_roi():
    dataset, _, truth = planted_fish()
    np.testing.assert_array_equal(np.flatnonzero(driver_mask(dataset, truth)), DRIVERS)


def test_driver_mask_names_missing_neurons():
    dataset, _, truth = planted_fish()
    with pytest.raises(ValueError, match="found 2 dataset neurons without one"):
        driver_mask(dataset, truth.isel(neuron=slice(2, None)))


def test_randomised_copy_shuffles_within_each_tensor_and_leaves_the_original():
    model = FrameLinear(np.arange(24, dtype=np.float32).reshape(2, 12))
    shuffled = randomised_copy(model, seed=1)
    original = model.linear.weight.detach().numpy()
    permuted = shuffled.linear.weight.detach().numpy()
    np.testing.assert_array_equal(original.ravel(), np.arange(24))
    assert not np.array_equal(permuted, original)
    np.testing.assert_array_equal(np.sort(permuted.ravel()), np.arange(24))


def test_explain_run_recovers_planted_neurons_and_controls():
    dataset, model, truth = planted_fish()
    identity = InputNormaliser(np.zeros(N_NEURONS), np.ones(N_NEURONS), "zscore")
    result = explain_run(
        dataset,
        model,
        identity,
        RUN_INFO,
        SaliencyParams(n_steps=8),
        ExplainParams(top_k=2, n_permutations=200, deletion_ks=(2, 20), deletion_random_repeats=4),
        regions=dataset["region"].values,
        ground_truth=truth,
    )
    summed = result.importance["importance"].sel(target="summed").values
    assert set(np.argsort(-summed)[:2]) == set(DRIVERS)
    assert result.scores["ground_truth"]["auc_importance"] == pytest.approx(1.0)
    assert result.scores["ground_truth"]["top_k_drivers"] == 2
    # k = 20 >= N neurons is dropped; masking the two drivers hurts more than random pairs
    deletion = result.deletion.set_index(["condition", "k"])["rmse_mean"]
    assert list(result.deletion["k"].unique()) == [2]
    assert deletion[("top", 2)] > deletion[("random", 2)]
    # the drivers' region is enriched among the top 2 and ranked first by mean importance
    regions = result.regions.set_index("region")
    assert regions.loc["Hb_left", "n_top"] == 2
    assert result.regions.iloc[0]["region"] == "Hb_left"
    # both regions were ablated; ablating Hb_left loses the whole signal
    assert regions.loc["Hb_left", "delta_mse"] > regions.loc["tectum", "delta_mse"]
    assert result.scores["randomised_weights"]["spearman_rho"] < 0.9
    # a linear model's integrated gradients are exact
    assert result.scores["ig_converged"] is True


def test_params_from_config_splits_sections():
    saliency, explain = params_from_config(
        {"method": "saliency", "n_steps": 4, "top_k": 7, "deletion_ks": [1, 2], "enabled": True},
        seed=3,
    )
    assert saliency.method == "saliency" and saliency.n_steps == 4
    assert explain == ExplainParams(top_k=7, deletion_ks=(1, 2), seed=3)


def test_summarise_explanations_pairs_twins_and_measures_consistency():
    def run(model, fish, importance, means):
        ds = xr.Dataset(
            {"importance": (("target", "neuron"), np.asarray([importance], dtype=float))},
            coords={"target": ["summed"]},
        )
        regions = pd.DataFrame({"region": ["a", "b", "c"], "mean": means})
        scores = {"motor_map": {"spearman_rho": 0.5}, "convergence_delta_relative": 0.01}
        return {"model": model, "window": 5, "fish": fish, "seed": 0, "importance": ds,
                "regions": regions, "scores": scores}  # fmt: skip

    runs = [
        run("llm", "1", [3, 2, 1, 0], [3.0, 2.0, 1.0]),
        run("llm", "2", [3, 2, 1, 0], [3.0, 2.0, 1.0]),
        run("llm_untrained", "1", [0, 1, 2, 3], [1.0, 2.0, 3.0]),
    ]
    summary = summarise_explanations(runs, {"llm": "llm_untrained"}, top_k=2)
    consistency = summary["consistency"].set_index("model")
    # two fish ranking the regions identically: Kendall's W = 1
    assert consistency.loc["llm", "kendall_w"] == pytest.approx(1.0)
    assert "at least 2 fish" in consistency.loc["llm_untrained", "note"]
    controls = summary["controls"]
    fish1 = controls[(controls["model"] == "llm") & (controls["fish"] == "1")].iloc[0]
    # the twin's map is the exact reverse: Spearman -1, top-2 sets disjoint
    assert fish1["twin_spearman"] == pytest.approx(-1.0)
    assert fish1["twin_jaccard_top_k"] == 0.0
    assert len(summary["regions"]) == 9
