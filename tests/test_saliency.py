"""Tests of nlp4neuro.saliency: captum attributions checked by hand on linear decoders, and
planted-driver recovery on tiny synthetic data."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr
from torch import nn

from nlp4neuro import saliency as saliency_module
from nlp4neuro.anatomy import region_enrichment
from nlp4neuro.config import section
from nlp4neuro.errors import ConfigError
from nlp4neuro.metrics import ground_truth_auc, top_k_indices
from nlp4neuro.saliency import (
    SUMMED,
    SaliencyParams,
    attribute,
    correlation_motor_map,
    deletion_curve,
    ig_convergence,
    region_ablation,
    saliency_starts,
    window_attributions,
)


def params(**values) -> SaliencyParams:
    """Saliency parameters: the schema's defaults with `values` set (validated)."""
    return SaliencyParams.from_config(section("saliency", **values))


class FrameLinear(nn.Module):
    """Per-frame linear decoder: (B, w, N) -> (B, w, K), y_t = W x_t + b."""

    def __init__(self, weight: np.ndarray, bias: np.ndarray | None = None) -> None:
        super().__init__()
        k, n = weight.shape
        self.linear = nn.Linear(n, k)
        with torch.no_grad():
            self.linear.weight.copy_(torch.as_tensor(weight, dtype=torch.float32))
            self.linear.bias.copy_(
                torch.as_tensor(bias if bias is not None else np.zeros(k), dtype=torch.float32)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)


class TinyGRU(nn.Module):
    def __init__(self, n_neurons: int, n_outputs: int, hidden: int = 8) -> None:
        super().__init__()
        self.gru = nn.GRU(n_neurons, hidden, batch_first=True)
        self.head = nn.Linear(hidden, n_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.gru(x)[0])


W3 = np.array([[1.0, -2.0, 0.5], [0.0, 3.0, -1.0]])  # K=2 outputs, N=3 neurons


class Squashed(nn.Module):
    """tanh(W3 x) per frame: curved along the IG path, so few steps miss completeness."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = FrameLinear(W3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.linear(x))


# ---------------------------------------------------------------------------------------------
# Hand-checked attributions of linear models


def test_integrated_gradients_of_linear_model_is_weight_times_input() -> None:
    model = FrameLinear(W3, bias=np.array([0.3, -0.7]))
    x = np.array([[1.0, 2.0, -1.0]], dtype=np.float32)  # T=1 frame, window 1
    chosen = params(target="each", absolute=False, n_steps=8)
    ds = attribute(model, x, [0], 1, chosen)
    # IG of y_k = W_k . x + b with baseline 0: W[k, n] * x[n]; importance = |.|
    assert list(ds.target.values) == ["theta_00", "theta_01", SUMMED]
    expected = np.abs(np.vstack([W3 * x[0], (W3.sum(axis=0) * x[0])]))
    np.testing.assert_allclose(ds.importance.values, expected, rtol=1e-5)
    # the summed-target frame map keeps the sign: sum_k W[k, n] x[n] = (1, 2, 0.5)
    np.testing.assert_allclose(ds.frame_importance.values, [[1.0, 2.0, 0.5]], rtol=1e-5)
    # completeness: sum of attributions = F(x) - F(0) exactly for a linear model
    assert ds.attrs["convergence_delta_relative"] < 1e-5
    np.testing.assert_allclose(ds.output_change.values, [3.5, 7.0, 3.5], rtol=1e-5)


def test_integrated_gradients_with_training_mean_baseline() -> None:
    model = FrameLinear(W3)
    x = np.array([[1.0, 2.0, -1.0]], dtype=np.float32)
    mean = np.array([0.5, 0.0, 1.0], dtype=np.float32)
    chosen = params(baseline="training_mean", absolute=False, n_steps=4)
    ds = attribute(model, x, [0], 1, chosen, baseline_values=mean)
    # summed target: sum_k W[k, n] * (x[n] - mean[n]) = (1*0.5, 1*2, -0.5*-2) = (0.5, 2, 1)
    np.testing.assert_allclose(ds.frame_importance.values, [[0.5, 2.0, 1.0]], rtol=1e-5)
    with pytest.raises(ConfigError, match="baseline_values"):
        attribute(model, x, [0], 1, chosen)


def test_saliency_of_linear_model_is_absolute_weight() -> None:
    model = FrameLinear(W3)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(12, 3)).astype(np.float32)
    ds = attribute(model, x, [0, 4, 8], 4, params(method="saliency", target="each"))
    # d(sum_t y_t[k]) / d x_t[n] = W[k, n] on every frame, whatever the input
    expected = np.abs(np.vstack([W3, W3.sum(axis=0)]))
    np.testing.assert_allclose(ds.importance.values, expected, rtol=1e-6)
    assert ds.frame_importance.shape == (12, 3)
    np.testing.assert_allclose(ds.frame_importance.values, np.tile(expected[-1], (12, 1)))
    assert "convergence_delta" not in ds


def test_input_x_gradient_of_linear_model() -> None:
    model = FrameLinear(W3)
    x = np.array([[1.0, 2.0, -1.0], [0.0, -1.0, 2.0]], dtype=np.float32)
    ds = attribute(model, x, [0], 2, params(method="input_x_gradient"))
    # per frame |x_t[n] * sum_k W[k, n]|, W summed over k = (1, 1, -0.5)
    np.testing.assert_allclose(ds.frame_importance.values, [[1, 2, 0.5], [0, 1, 1]], rtol=1e-6)
    np.testing.assert_allclose(ds.importance.values, [[0.5, 1.5, 0.75]], rtol=1e-6)


def test_summed_target_is_sum_of_per_angle_attributions() -> None:
    rng = np.random.default_rng(1)
    weight = rng.normal(size=(6, 5))
    model = FrameLinear(weight, bias=rng.normal(size=6))
    windows = rng.normal(size=(3, 4, 5)).astype(np.float32)
    for method in ("integrated_gradients", "saliency", "input_x_gradient"):
        attrs = window_attributions(model, windows, params(method=method, target="each"))
        assert set(attrs) == {f"theta_{k:02d}" for k in range(6)} | {SUMMED}
        per_angle = sum(attrs[f"theta_{k:02d}"] for k in range(6))
        np.testing.assert_allclose(attrs[SUMMED], per_angle, rtol=1e-4, atol=1e-5)


def test_overlapping_windows_average_per_frame() -> None:
    model = FrameLinear(W3)
    x = np.arange(15, dtype=np.float32).reshape(5, 3) / 10
    chosen = params(method="input_x_gradient", absolute=False)
    ds = attribute(model, x, [0, 1, 2], 3, chosen)
    # a linear per-frame model gives every window the same value on a shared frame, so the
    # per-frame average equals the single-window value x_t[n] * sum_k W[k, n]
    np.testing.assert_allclose(ds.frame_importance.values, x * W3.sum(axis=0), rtol=1e-6)
    np.testing.assert_array_equal(ds.frame_index.values, np.arange(5))
    # every frame weighs equally in the global map (frame 2 is in 3 windows, frame 0 in one)
    np.testing.assert_allclose(ds.importance.values[0], np.abs(x * W3.sum(axis=0)).mean(axis=0))


def test_attribute_copies_dataset_coords() -> None:
    model = FrameLinear(W3)
    n_frames = 6
    ds_in = xr.Dataset(
        {"dff": (("time", "neuron"), np.ones((n_frames, 3), np.float32))},
        coords={
            "time": np.arange(n_frames) / 1.1,
            "frame": ("time", np.arange(n_frames) + 10),
            "neuron": np.arange(3),
            "plane": ("neuron", [0, 0, 1]),
            "x_um": ("neuron", [1.0, 2.0, 3.0]),
            "y_um": ("neuron", [1.0, 2.0, 3.0]),
            "z_um": ("neuron", [0.0, 0.0, 10.0]),
            "region": ("neuron", ["Pt", "Hb", ""]),
        },
    )
    out = attribute(model, ds_in.dff, [3], 3, params(method="saliency"))
    assert list(out.region.values) == ["Pt", "Hb", ""]
    np.testing.assert_array_equal(out.frame.values, [13, 14, 15])
    np.testing.assert_allclose(out.time.values, np.arange(3, 6) / 1.1)
    assert out.attrs["n_windows"] == 1 and out.attrs["method"] == "saliency"


def test_params_and_input_errors() -> None:
    with pytest.raises(ConfigError, match=r"saliency\.method"):
        params(method="gradcam")
    with pytest.raises(ConfigError, match=r"saliency\.n_steps"):
        params(n_steps=0)
    with pytest.raises(ConfigError, match=r"saliency\.target"):
        params(target="left")
    assert params(splits=["val", "test"]).splits == ("val", "test")
    with pytest.raises(ConfigError, match=r"saliency\.method"):
        SaliencyParams.from_config({"n_steps": 8})  # not a validated section: names the key
    assert params().n_steps == section("saliency")["n_steps"]  # the schema's default
    model = FrameLinear(W3)
    x = np.zeros((5, 3), np.float32)
    with pytest.raises(ValueError, match=r"starts: expected windows inside \[0, 5\)"):
        attribute(model, x, [3], 3, params())
    with pytest.raises(ValueError, match=r"x: expected shape \(T, n_neurons\)"):
        attribute(model, np.zeros(5), [0], 1, params())


def test_saliency_starts() -> None:
    splits = {"train": (slice(0, 70),), "val": (slice(70, 80),), "test": (slice(80, 100),)}
    np.testing.assert_array_equal(saliency_starts(splits, 5, params()), [80, 85, 90, 95])
    both = saliency_starts(splits, 5, params(splits=["val", "test"], window_stride=10))
    np.testing.assert_array_equal(both, [70, 80, 90])
    few = saliency_starts(splits, 2, params(window_stride=1, max_windows=3))
    np.testing.assert_array_equal(few, [80, 89, 98])
    with pytest.raises(ConfigError, match=r"saliency\.splits"):
        saliency_starts({"train": (slice(0, 70),), "val": (slice(70, 80),)}, 5, params())
    # a block in two segments: windows never straddle the hole between them
    cut = {"test": (slice(0, 12), slice(20, 27))}
    np.testing.assert_array_equal(saliency_starts(cut, 5, params()), [0, 5, 20])


# ---------------------------------------------------------------------------------------------
# Planted drivers


def _planted(seed: int = 0) -> dict:
    """T=300 frames, N=40 neurons in 8 regions of 5; 4 drivers, all in region R3."""
    rng = np.random.default_rng(seed)
    n_frames, n_neurons, n_out = 300, 40, 6
    x = rng.normal(size=(n_frames, n_neurons)).astype(np.float32)
    regions = np.repeat([f"R{r}" for r in range(8)], 5)
    drivers = np.array([15, 16, 18, 19])
    coupling = rng.uniform(0.5, 1.0, size=(4, n_out)) * rng.choice([-1, 1], size=(4, 1))
    tail = x[:, drivers] @ coupling + 0.1 * rng.normal(size=(n_frames, n_out))
    is_driver = np.zeros(n_neurons, bool)
    is_driver[drivers] = True
    return {"x": x, "tail": tail.astype(np.float32), "regions": regions, "is_driver": is_driver}


def _least_squares_decoder(x: np.ndarray, tail: np.ndarray) -> FrameLinear:
    design = np.hstack([x, np.ones((x.shape[0], 1))])
    coef, *_ = np.linalg.lstsq(design, tail, rcond=None)
    return FrameLinear(coef[:-1].T, coef[-1])


def test_planted_drivers_recovered_by_integrated_gradients_of_gru() -> None:
    data = _planted()
    torch.manual_seed(0)
    model = TinyGRU(40, 6)
    optimiser = torch.optim.Adam(model.parameters(), lr=0.02)
    x = torch.as_tensor(data["x"])
    y = torch.as_tensor(data["tail"])
    train_starts = np.arange(0, 240 - 10 + 1, 2)
    xb, yb = x[train_starts[:, None] + np.arange(10)], y[train_starts[:, None] + np.arange(10)]
    for _ in range(300):
        optimiser.zero_grad()
        loss = ((model(xb) - yb) ** 2).mean()
        loss.backward()
        optimiser.step()
    assert loss.item() < 0.3 * float(yb.var())  # the decoder learnt something

    starts = np.arange(240, 300 - 10 + 1, 10)  # held-out frames, non-overlapping
    ds = attribute(model, data["x"], starts, 10, params(n_steps=16))
    importance = ds.importance.sel(target=SUMMED).values
    assert ground_truth_auc(importance, data["is_driver"]) > 0.9
    assert ds.attrs["convergence_delta_relative"] < 0.05

    table = region_enrichment(importance, data["regions"], top_k=5, n_permutations=2000, seed=0)
    planted = table.set_index("region").loc["R3"]
    assert planted["q_hypergeom"] < 0.05 and planted["q_permutation"] < 0.05
    assert planted["fold_enrichment"] > 4
    others = table[table.region != "R3"]
    assert (others["q_hypergeom"] > 0.05).all()


def test_deletion_of_top_neurons_hurts_more_than_random() -> None:
    data = _planted(seed=1)
    model = _least_squares_decoder(data["x"][:240], data["tail"][:240])
    starts = np.arange(240, 296, 4)
    ds = attribute(model, data["x"], starts, 4, params(method="input_x_gradient"))
    ranking = top_k_indices(ds.importance.sel(target=SUMMED).values, 40)
    curve = deletion_curve(
        model, data["x"], data["tail"], starts, 4, ranking, ks=[0, 4], n_random=10, seed=3
    )
    assert list(curve.columns) == ["k", "condition", "rmse_mean", "rmse_sd", "n_repeats"]
    by = curve.set_index(["condition", "k"])
    unmasked = by.loc[("top", 0), "rmse_mean"]
    assert by.loc[("random", 0), "rmse_mean"] == pytest.approx(unmasked)
    assert by.loc[("top", 4), "rmse_mean"] > 3 * unmasked
    random4 = by.loc[("random", 4)]
    assert by.loc[("top", 4), "rmse_mean"] > random4["rmse_mean"] + random4["rmse_sd"]
    assert random4["n_repeats"] == 10
    again = deletion_curve(
        model, data["x"], data["tail"], starts, 4, ranking, ks=[0, 4], n_random=10, seed=3
    )
    pd.testing.assert_frame_equal(curve, again)  # seeded


def test_region_ablation_by_hand_and_on_planted_data() -> None:
    # hand case: y = W x on one frame; ablating a region zeroes its neurons' contributions
    model = FrameLinear(W3)
    x = np.array([[1.0, 2.0, -1.0]], dtype=np.float32)
    y = np.zeros((1, 2), np.float32)
    table = region_ablation(model, x, [0], 1, ["A", "B", "A"], y_true=y).set_index("region")
    # outputs: (1*1 - 2*2 - 0.5, 6 + 1) = (-3.5, 7): summed 3.5, MSE (12.25 + 49) / 2 = 30.625
    # without A (neurons 0, 2): (-4, 6): summed 2 (change -1.5), MSE 26
    # without B (neuron 1): (0.5, 1): summed 1.5 (change -2), MSE 0.625
    assert table.loc["A", "mean_output_change"] == pytest.approx(-1.5)
    assert table.loc["B", "mean_abs_output_change"] == pytest.approx(2.0)
    assert table.loc["A", "baseline_mse"] == pytest.approx(30.625)
    assert table.loc["A", "delta_mse"] == pytest.approx(26 - 30.625)
    assert table.loc["B", "ablated_mse"] == pytest.approx(0.625)
    assert table.loc["A", "n_neurons"] == 2

    data = _planted(seed=2)
    model = _least_squares_decoder(data["x"][:240], data["tail"][:240])
    starts = np.arange(240, 300, 6)
    table = region_ablation(model, data["x"], starts, 6, data["regions"], y_true=data["tail"])
    assert table.iloc[0]["region"] == "R3"  # sorted by damage
    assert table.iloc[0]["delta_rmse"] > 5 * table.iloc[1:]["delta_rmse"].abs().max()

    unlabelled = region_ablation(
        model, data["x"], starts, 6, np.where(data["regions"] == "R0", "", data["regions"])
    )
    assert "unlabelled" in set(unlabelled.region) and "delta_mse" not in unlabelled


# ---------------------------------------------------------------------------------------------
# Comparators


def test_correlation_motor_map_matches_corrcoef() -> None:
    rng = np.random.default_rng(4)
    dff = rng.normal(size=(50, 6))
    tail = rng.normal(size=(50, 3))
    dff[:, 2] = -3 * tail.sum(axis=1) + 1  # perfectly anti-correlated
    dff[:, 5] = 2.0  # flat neuron
    r = correlation_motor_map(dff, tail)
    expected = [abs(np.corrcoef(dff[:, n], tail.sum(axis=1))[0, 1]) for n in range(5)]
    np.testing.assert_allclose(r[:5], expected, rtol=1e-10)
    assert r[2] == pytest.approx(1.0) and r[5] == 0.0
    np.testing.assert_allclose(correlation_motor_map(dff, tail.sum(axis=1)), r)
    with pytest.raises(ValueError, match="dff, tail"):
        correlation_motor_map(dff, tail[:10])


def test_attribution_dataset_round_trips_through_netcdf(tmp_path) -> None:
    from nlp4neuro.dataset import write_netcdf

    model = FrameLinear(W3)
    x = np.random.default_rng(5).normal(size=(8, 3)).astype(np.float32)
    coords = xr.Dataset(coords={"neuron": np.arange(3), "region": ("neuron", ["Pt", "", "Hb"])})
    ds = attribute(model, x, [0, 4], 4, params(target="each"), neuron_coords=coords)
    path = write_netcdf(ds, tmp_path / "saliency.nc")
    with xr.open_dataset(path) as back:
        back = back.load()
    xr.testing.assert_allclose(back.importance, ds.importance)
    assert list(back.region.values) == ["Pt", "", "Hb"]
    assert back.attrs["method"] == "integrated_gradients"


# ---------------------------------------------------------------------------------------------
# Integrated gradients' step search


def squashed_map(monkeypatch=None, **values) -> tuple[xr.Dataset, list[int]]:
    """IG map of `Squashed` on 4 windows of 5 frames; the step counts of every pass made."""
    calls: list[int] = []
    if monkeypatch is not None:
        original = saliency_module._attribute_all

        def counting(wrapper, windows, frames, targets, chosen, sums):
            calls.append(chosen.n_steps)
            return original(wrapper, windows, frames, targets, chosen, sums)

        monkeypatch.setattr(saliency_module, "_attribute_all", counting)
    x = np.random.default_rng(0).normal(size=(20, 3)).astype(np.float32)
    chosen = params(keep_frames=False, **values)
    return attribute(Squashed(), x, np.arange(0, 20, 5), 5, chosen), calls


def test_integrated_gradients_doubles_steps_until_converged(monkeypatch) -> None:
    # the completeness error of each step count alone (cap = start: one pass each)
    error = {
        steps: squashed_map(n_steps=steps, max_n_steps=steps)[0].attrs["convergence_delta_relative"]
        for steps in (2, 4, 8)
    }
    assert error[2] > error[4] > 1e-3 >= error[8]
    ds, calls = squashed_map(monkeypatch, n_steps=2, max_n_steps=256, ig_tolerance=1e-3)
    # 2 and 4 steps miss 1e-3, 8 meet it: three passes, then no more (the cap is far)
    assert calls == [2, 4, 8]
    assert ds.attrs["n_steps_used"] == 8
    np.testing.assert_allclose(
        [d for _, d in json.loads(ds.attrs["ig_steps_tried"])], [error[2], error[4], error[8]]
    )
    convergence = ig_convergence(ds)
    assert convergence["converged"] is True and convergence["excluded_reason"] is None
    assert convergence["steps_tried"][-1][0] == 8


def test_integrated_gradients_unconverged_at_the_cap_says_why(monkeypatch) -> None:
    ds, calls = squashed_map(monkeypatch, n_steps=2, max_n_steps=6, ig_tolerance=1e-9)
    assert calls == [2, 4, 6]  # doubling stops at the cap
    convergence = ig_convergence(ds)
    assert convergence["converged"] is False
    assert re.fullmatch(
        r"completeness error \S+ > tolerance 1e-09 at the cap of 6 steps",
        convergence["excluded_reason"],
    )


def test_gradient_methods_have_no_completeness_check(monkeypatch) -> None:
    ds, calls = squashed_map(monkeypatch, method="saliency", ig_tolerance=1e-9)
    assert calls == [16]  # one pass; the schema's n_steps is not used by the method
    convergence = ig_convergence(ds)
    assert convergence["converged"] is None and convergence["excluded_reason"] is None
    assert convergence["note"] == "no completeness check: method saliency"


def test_max_n_steps_below_n_steps_names_the_key() -> None:
    with pytest.raises(ConfigError, match=r"saliency\.max_n_steps"):
        params(n_steps=32, max_n_steps=16)
