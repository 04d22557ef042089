"""Tests of nlp4neuro.explain: one run's explanation and the summary across runs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import xarray as xr
from torch import nn

from nlp4neuro import config
from nlp4neuro.errors import InputFileError
from nlp4neuro.explain import (
    ExplainParams,
    driver_mask,
    explain_run,
    params_from_config,
    randomised_copy,
    write_explanation,
)
from nlp4neuro.problem import DecodingParams, build_problem, load_problem


class FrameLinear(nn.Module):
    """y_t = W x_t, one frame at a time: (B, w, N) -> (B, w, K)."""

    def __init__(self, weight: np.ndarray) -> None:
        super().__init__()
        self.linear = nn.Linear(weight.shape[1], weight.shape[0], bias=False)
        with torch.no_grad():
            self.linear.weight.copy_(torch.as_tensor(weight, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)


class Squashed(nn.Module):
    """tanh(3 inner(x)): curved along the integration path (2 IG steps miss completeness)."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(3.0 * self.inner(x))


N_NEURONS, N_FRAMES, DRIVERS = 12, 120, [2, 7]


def planted_fish(seed: int = 0, lag: int = 0) -> tuple[xr.Dataset, FrameLinear, xr.Dataset]:
    """A dataset whose tail is driven by neurons 2 and 7 only, and the decoder that knows it.

    With `lag`, the tail of frame t is driven by the neurons' activity at frame t + lag (the
    last `lag` tail frames by activity that was not recorded: zeros).
    """
    rng = np.random.default_rng(seed)
    dff = rng.normal(size=(N_FRAMES, N_NEURONS)).astype(np.float32)
    weight = np.zeros((2, N_NEURONS), dtype=np.float32)
    weight[0, DRIVERS] = [0.5, -0.4]
    weight[1, DRIVERS] = [0.2, 0.3]
    driving = np.zeros_like(dff)
    driving[: N_FRAMES - lag] = dff[lag:]
    tail = driving @ weight.T
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


def planted_problem(dataset: xr.Dataset, lag: int = 0):
    """The decoding problem training would save: 5-frame windows, the input as is.

    120 frames, gap 5, no lag: train rows 0-76, val 82-92, test 98-119.
    """
    decoding = config.section("decoding", gap_frames=5, neural_lag_frames=lag,
                              input_normalisation="none")  # fmt: skip
    return build_problem(dataset, 5, DecodingParams.from_config(decoding))


def planted_params(**saliency):
    """Attribution and explanation settings for the planted fish (seed 0)."""
    section = config.section(
        "saliency",
        **{"n_steps": 8, "top_k": 2, "n_permutations": 200, "deletion_ks": [2, 20],
           "deletion_random_repeats": 4, **saliency},
    )  # fmt: skip
    return params_from_config(section, seed=0)


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
    saliency, params = planted_params()
    result = explain_run(
        dataset,
        model,
        planted_problem(dataset),
        saliency,
        params,
        regions=dataset["region"].values,
        ground_truth=truth,
    )
    summed = result.importance["importance"].sel(target="summed").values
    assert set(np.argsort(-summed)[:2]) == set(DRIVERS)
    assert result.scores["ground_truth"]["auc_importance"] == pytest.approx(1.0)
    assert result.scores["ground_truth"]["top_k_drivers"] == 2
    # the test split (rows 98-119) holds 4 non-overlapping 5-frame windows
    assert result.scores["n_windows"] == 4
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
    # a linear model's integrated gradients are exact: the first 8 steps suffice
    assert result.scores["ig_converged"] is True and result.scores["excluded"] is False
    assert result.scores["excluded_reason"] is None
    assert result.scores["ig_n_steps"] == 8 and len(result.scores["ig_steps_tried"]) == 1


def test_baseline_maps_and_retraining_find_the_planted_drivers():
    """The summed tail is 0.7 x2 - 0.1 x7 exactly: the correlation map and |ridge weights| rank
    the drivers first, and a ridge refitted without them explains nothing of the test tail."""
    dataset, model, truth = planted_fish()
    saliency, params = planted_params(randomised_control=False)
    scores = explain_run(dataset, model, planted_problem(dataset), saliency, params,
                         regions=dataset["region"].values, ground_truth=truth).scores  # fmt: skip
    truth_scores = scores["ground_truth"]
    assert truth_scores["auc_ridge_weights"] == pytest.approx(1.0)
    assert truth_scores["auc_motor_map"] > 0.5
    retraining = scores["retraining"]
    assert retraining["k"] == 2 and retraining["n_random_draws"] == params.retrain_random_draws
    assert retraining["r2_full"] == pytest.approx(1.0, abs=1e-3)
    # without both drivers the tail is unpredictable from the other (independent) neurons
    assert retraining["r2_without_top_k"] < 0.2
    assert retraining["r2_drop_top_k"] > retraining["r2_drop_random_k"] + 0.3
    assert retraining["r2_drop_top_k"] == pytest.approx(
        retraining["r2_full"] - retraining["r2_without_top_k"]
    )


def test_unconverged_integrated_gradients_map_is_excluded_from_scores(tmp_path):
    """A map that misses its tolerance at the cap is kept, flagged with the reason, and none
    of its scores is computed; the baselines are still scored beside it."""
    dataset, model, truth = planted_fish()
    saliency, params = planted_params(n_steps=2, max_n_steps=2, ig_tolerance=1e-9)
    problem = planted_problem(dataset)
    result = explain_run(dataset, Squashed(model), problem, saliency, params,
                         regions=dataset["region"].values, ground_truth=truth)  # fmt: skip
    scores = result.scores
    assert scores["ig_converged"] is False and scores["excluded"] is True
    delta = scores["convergence_delta_relative"]
    assert delta > 1e-9 and scores["ig_steps_tried"] == [[2, pytest.approx(delta)]]
    assert scores["excluded_reason"] == (
        f"completeness error {delta:.3g} > tolerance 1e-09 at the cap of 2 steps"
    )
    assert scores["motor_map"] is None
    assert scores["ground_truth"]["auc_importance"] is None
    assert scores["ground_truth"]["top_k_drivers"] is None
    assert scores["retraining"]["r2_without_top_k"] is None
    assert scores["retraining"]["r2_drop_top_k"] is None
    assert scores["randomised_weights"] == {"excluded_reason": "the map itself is excluded"}
    # baselines do not depend on the map
    assert scores["ground_truth"]["auc_ridge_weights"] == pytest.approx(1.0)
    assert np.isfinite(scores["ground_truth"]["auc_motor_map"])
    assert np.isfinite(scores["retraining"]["r2_drop_random_k"])
    # the map itself is still written, and scores.json says null, not a number
    assert "importance" in result.importance
    files = {"importance": "nc", "regions": "csv", "deletion": "csv", "scores": "json"}
    paths = {name: tmp_path / f"{name}.{ext}" for name, ext in files.items()}
    write_explanation(result, problem, **paths, parameters={})
    written = json.loads(paths["scores"].read_text())
    assert written["ground_truth"]["auc_importance"] is None
    assert written["excluded_reason"] == scores["excluded_reason"]


def test_explain_run_pairs_frames_with_the_runs_lag(tmp_path):
    """The lag comes from the run's problem.json, never from a default: with the tail driven
    one frame late, the decoder is exact only on the recording paired as it was trained."""
    dataset, model, truth = planted_fish(lag=1)
    saliency, params = planted_params(randomised_control=False)
    problem = load_problem(planted_problem(dataset, lag=1).save(tmp_path / "problem.json"))
    lagged = explain_run(dataset, model, problem, saliency, params,
                         regions=dataset["region"].values, ground_truth=truth)  # fmt: skip
    concurrent = explain_run(dataset, model, planted_problem(dataset, lag=0), saliency, params,
                             regions=dataset["region"].values, ground_truth=truth)  # fmt: skip
    assert lagged.regions["baseline_mse"].max() < 1e-10
    assert concurrent.regions["baseline_mse"].min() > 0.01
    assert set(np.argsort(-lagged.importance["importance"].sel(target="summed").values)[:2]) == (
        set(DRIVERS)
    )
    # explained rows are the lagged recording's (119 rows, test rows 97-118): windows start at
    # 97, 102, 107 and 112, so the last explained frame is 116 (117 without the lag)
    assert lagged.importance["frame"].values.max() == 116
    assert concurrent.importance["frame"].values.max() == 117


def test_explain_run_refuses_another_dataset(tmp_path):
    dataset, model, _ = planted_fish()
    problem = load_problem(planted_problem(dataset).save(tmp_path / "problem.json"))
    other, _, _ = planted_fish(seed=1)
    saliency, params = planted_params()
    with pytest.raises(InputFileError, match=r"problem\.json"):
        explain_run(other, model, problem, saliency, params, regions=other["region"].values)


def test_params_from_config_splits_sections():
    section = config.section(
        "saliency", method="saliency", n_steps=4, top_k=7, deletion_ks=[1, 2], enabled=True
    )
    saliency, explain = params_from_config(section, seed=3)
    assert saliency.method == "saliency" and saliency.n_steps == 4
    assert explain == ExplainParams(
        top_k=7,
        n_permutations=section["n_permutations"],
        deletion_ks=(1, 2),
        deletion_random_repeats=section["deletion_random_repeats"],
        seed=3,
        randomised_control=section["randomised_control"],
        retrain_random_draws=section["retrain_random_draws"],
        # null: the ridge decoder's penalties, from the schema
        ridge_alphas=tuple(config.default_value("models", "*", "ridge_alphas")),
    )
    chosen = config.section("saliency", ridge_alphas=[2.0, 3.0])
    assert params_from_config(chosen, seed=0)[1].ridge_alphas == (2.0, 3.0)
