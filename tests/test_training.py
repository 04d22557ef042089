"""Tests for nlp4neuro.training on tiny synthetic data (a planted linear neuron -> tail mapping)."""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr
from torch import nn

from nlp4neuro import training
from nlp4neuro.config import section
from nlp4neuro.device import ComputeParams, to_numpy
from nlp4neuro.errors import ConfigError, InputFileError
from nlp4neuro.problem import (
    DecodingParams,
    average_window_predictions,
    build_problem,
    dataset_fingerprint,
    load_problem,
)
from nlp4neuro.training import (
    TrainingInterrupted,
    TrainingParams,
    WindowSampler,
    load_trained,
    predict_windows,
    set_seeds,
    train_and_predict,
)

T, N, K = 200, 12, 6
SPEC = {"name": "tiny_linear", "kind": "test"}


def make_dataset(n_frames: int = T, seed: int = 0, noise: float = 0.05) -> xr.Dataset:
    """Synthetic fish: tail = dff @ W + noise, with dataset-contract dims, coords and attrs."""
    rng = np.random.default_rng(seed)
    dff = rng.normal(size=(n_frames, N)).astype(np.float32)
    weights = 0.3 * rng.normal(size=(N, K))
    tail = (dff @ weights + noise * rng.normal(size=(n_frames, K))).astype(np.float32)
    stimulus = np.array(["left" if (t // 10) % 2 else "right" for t in range(n_frames)], object)
    return xr.Dataset(
        {"dff": (("time", "neuron"), dff), "tail": (("time", "segment"), tail)},
        coords={
            "time": ("time", np.arange(n_frames) / 1.1),
            "frame": ("time", np.arange(n_frames, dtype=np.int64) + 2),
            "stimulus": ("time", stimulus),
            "neuron": np.arange(N),
            "segment": [f"theta_{k:02d}" for k in range(K)],
        },
        attrs={"fish": 9, "frame_rate_hz": 1.1},
    )


class TinyDecoder(nn.Module):
    """Per-frame linear decoder (batch, window, N) -> (batch, window, K), with optional dropout
    (exercises the torch RNG on resume) and a frozen parameter (must stay out of the optimiser)."""

    def __init__(self, dropout: float = 0.0, zero_init: bool = False) -> None:
        super().__init__()
        self.proj = nn.Linear(N, K)
        self.dropout = nn.Dropout(dropout)
        self.frozen_gain = nn.Parameter(torch.ones(1), requires_grad=False)
        if zero_init:
            nn.init.zeros_(self.proj.weight)
            nn.init.zeros_(self.proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.dropout(x)) * self.frozen_gain


def save_state(model: nn.Module, path: Path) -> None:
    torch.save(model.state_dict(), path / "weights.pt")


def load_state(path: Path) -> nn.Module:
    model = TinyDecoder()
    model.load_state_dict(torch.load(path / "weights.pt", weights_only=True))
    return model


def fast_params(**changes) -> TrainingParams:
    """Few, fast epochs at a constant learning rate (schema defaults for everything else)."""
    values = {
        "epochs": 3,
        "batch_size": 16,
        "learning_rate": 1e-2,
        "weight_decay": 0.0,
        "early_stopping_patience": 0,
        "schedule": "constant",
        "warmup_fraction": 0.0,
        **changes,
    }
    return TrainingParams.from_config(section("training", **values))


def decoding(**changes) -> DecodingParams:
    return DecodingParams.from_config(section("decoding", **changes))


CPU = ComputeParams.from_config(section("compute", device="cpu"), threads=torch.get_num_threads())


def run(tmp_path: Path, name: str, dataset=None, factory=TinyDecoder, **kwargs) -> dict:
    dataset = make_dataset() if dataset is None else dataset
    problem = build_problem(
        dataset, kwargs.pop("window_frames", 5), kwargs.pop("decoding", decoding())
    )
    out = tmp_path / name
    return train_and_predict(
        dataset,
        problem,
        lambda device: factory(),
        spec_dict=kwargs.pop("spec_dict", SPEC),
        params=kwargs.pop("params", fast_params()),
        compute=kwargs.pop("compute", CPU),
        seed=kwargs.pop("seed", 0),
        out_dir=out / "out",
        checkpoint_dir=kwargs.pop("checkpoint_dir", out / "ckpt"),
        save_fn=kwargs.pop("save_fn", save_state),
        **kwargs,
    )


def problem_of(tmp_path: Path, name: str):
    return load_problem(tmp_path / name / "out" / "problem.json")


def outputs(tmp_path: Path, name: str) -> tuple[pd.DataFrame, xr.Dataset, dict]:
    out = tmp_path / name / "out"
    curve = pd.read_csv(out / "training_curve.csv")
    with xr.open_dataset(out / "predictions.nc") as handle:
        predictions = handle.load()
    weights = torch.load(out / "model" / "weights.pt", weights_only=True)
    return curve, predictions, weights


def same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ---------------------------------------------------------------------------------------------
# Parameters, devices, seeds, sampler


def test_params_come_from_the_validated_section_only():
    with pytest.raises(ConfigError, match=r"training\.epochs.*0"):
        section("training", epochs=0)
    with pytest.raises(ConfigError, match=r"training\.schedule"):
        section("training", schedule="step")
    with pytest.raises(ConfigError, match=r"training\.grad_clip_norm"):
        section("training", grad_clip_norm=0.0)
    # No field has a default of its own: the schema is the one source.
    assert all(f.default is dataclasses.MISSING for f in dataclasses.fields(TrainingParams))
    with pytest.raises(ConfigError, match=r"training\.epochs"):
        TrainingParams.from_config({})
    params = TrainingParams.from_config(section("training"))
    assert params.schedule == "cosine" and params.warmup_fraction == 0.05
    assert json.loads(json.dumps(params.to_dict()))["learning_rate"] == 1e-4
    # a model's override block goes through the same builder
    assert TrainingParams.from_config({**section("training"), "epochs": 2}).epochs == 2


def test_set_seeds_reproducible_and_seed_dependent():
    gen_a = set_seeds(3)
    draw_a = (torch.rand(3), np.random.rand(), torch.randperm(10, generator=gen_a))  # noqa: NPY002
    gen_b = set_seeds(3)
    draw_b = (torch.rand(3), np.random.rand(), torch.randperm(10, generator=gen_b))  # noqa: NPY002
    assert torch.equal(draw_a[0], draw_b[0]) and draw_a[1] == draw_b[1]
    assert torch.equal(draw_a[2], draw_b[2])
    gen_c = set_seeds(4)
    assert not torch.equal(torch.randperm(10, generator=gen_c), draw_a[2])


def test_window_sampler_gathers_windows_without_materialising_them():
    x = torch.arange(10 * 3, dtype=torch.float32).reshape(10, 3)
    y = -torch.arange(10 * 2, dtype=torch.float32).reshape(10, 2)
    sampler = WindowSampler(x, y, window=4)
    xb, yb = sampler.batch(np.array([0, 6]))
    assert xb.shape == (2, 4, 3) and yb.shape == (2, 4, 2)
    assert torch.equal(xb[1], x[6:10]) and torch.equal(yb[0], y[0:4])
    batches = list(sampler.iter_batches(torch.tensor([5, 1, 3]), batch_size=2))
    assert [b[0].tolist() for b in batches] == [[5, 1], [3]]
    assert torch.equal(batches[1][1][0], x[3:7])
    # Storage is the frame-level tensors (plus the window offsets), never all windows.
    stored = [v for v in vars(sampler).values() if isinstance(v, torch.Tensor)]
    assert sum(t.numel() for t in stored) == 10 * 3 + 10 * 2 + 4
    with pytest.raises(IndexError):
        sampler.batch(np.array([7]))


def test_predict_windows_eval_mode_no_grad_and_restores_mode():
    set_seeds(0)
    model = TinyDecoder(dropout=0.5)
    model.train()
    x = torch.randn(30, N)
    starts = np.array([0, 4, 25])
    first = predict_windows(model, x, starts, window=5, batch_size=2)
    second = predict_windows(model, x, starts, window=5, batch_size=3)
    assert first.shape == (3, 5, K) and first.dtype == np.float32
    np.testing.assert_array_equal(first, second)  # dropout off in eval mode
    with torch.no_grad():
        expected = model.proj(x[25:30]).numpy()
    np.testing.assert_allclose(first[2], expected, rtol=1e-6)
    assert model.training


# ---------------------------------------------------------------------------------------------
# Training behaviour


def test_loss_falls_on_a_learnable_mapping(tmp_path):
    summary = run(
        tmp_path, "a", params=fast_params(epochs=6, schedule="cosine", learning_rate=5e-2)
    )
    curve, predictions, _ = outputs(tmp_path, "a")
    assert list(curve.columns) == ["epoch", "train_loss", "val_loss", "lr", "seconds", "best"]
    assert curve["epoch"].tolist() == [1, 2, 3, 4, 5, 6]
    assert curve["train_loss"].iloc[-1] < 0.25 * curve["train_loss"].iloc[0]
    assert np.all(np.diff(curve["val_loss"].to_numpy()) < 0)
    assert curve["val_loss"].iloc[-1] < 0.25 * curve["val_loss"].iloc[0]
    # cosine decay: the learning rate falls over epochs
    assert np.all(np.diff(curve["lr"].to_numpy()) < 0)
    test = predictions.sel(time=predictions["split"] == "test")
    zero_rmse = float(np.sqrt(np.mean(test["true"].values.astype(np.float64) ** 2)))
    assert summary["test_rmse"] < 0.5 * zero_rmse
    assert summary["trainable_params"] == N * K + K  # the frozen gain is not counted
    assert summary["windows_per_s"] > 0


def test_val_and_test_frames_never_reach_training_or_normaliser(tmp_path):
    clean = make_dataset()
    assert run(tmp_path, "clean", dataset=clean)["epochs_run"] == 3
    segments = problem_of(tmp_path, "clean").segments
    val_start, test_start = segments["val"][0].start, segments["test"][0].start
    train_stop = segments["train"][0].stop

    # Poison everything after the training block's end except val: gap and test frames.
    poisoned = clean.copy(deep=True)
    poisoned["dff"].values[train_stop:val_start] = 1e6
    poisoned["dff"].values[test_start:] = np.nan
    poisoned["tail"].values[test_start:] = np.nan
    run(tmp_path, "poisoned", dataset=poisoned)
    # Change only val frames: training and weights unaffected, the val loss changes.
    shifted = clean.copy(deep=True)
    shifted["tail"].values[val_start:test_start] += 1.0
    run(tmp_path, "shifted", dataset=shifted)

    curve_c, pred_c, weights_c = outputs(tmp_path, "clean")
    curve_p, pred_p, weights_p = outputs(tmp_path, "poisoned")
    curve_s, _, weights_s = outputs(tmp_path, "shifted")
    # The same problem (splits, starts, normaliser) from poisoned data; only the fingerprint
    # of the dataset differs.
    clean_problem = problem_of(tmp_path, "clean").to_dict()
    for name in ("poisoned", "shifted"):
        problem = problem_of(tmp_path, name).to_dict()
        assert problem.pop("dataset") != clean_problem["dataset"]
        assert problem == {k: v for k, v in clean_problem.items() if k != "dataset"}
    assert same_weights(weights_c, weights_p) and same_weights(weights_c, weights_s)
    np.testing.assert_array_equal(curve_c["train_loss"], curve_p["train_loss"])
    np.testing.assert_array_equal(curve_c["val_loss"], curve_p["val_loss"])
    np.testing.assert_array_equal(curve_c["train_loss"], curve_s["train_loss"])
    assert np.all(curve_s["val_loss"] > curve_c["val_loss"] + 0.5)
    val_c = pred_c["predicted"].values[pred_c["split"].values == "val"]
    val_p = pred_p["predicted"].values[pred_p["split"].values == "val"]
    np.testing.assert_array_equal(val_c, val_p)
    assert np.isnan(pred_p["predicted"].values[pred_p["split"].values == "test"]).all()


class SpyDecoder(TinyDecoder):
    """Records the frame indices of every window it sees (input column 0 carries the frame)."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[bool, np.ndarray]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append((self.training, x[..., 0].detach().numpy().astype(np.int64)))
        return super().forward(x)


def test_windows_never_straddle_splits(tmp_path):
    dataset = make_dataset()
    dataset["dff"].values[:, 0] = np.arange(T)  # identity normalisation keeps it readable
    spies: list[SpyDecoder] = []

    def factory() -> SpyDecoder:
        spies.append(SpyDecoder())
        return spies[-1]

    window = 7
    run(
        tmp_path,
        "spy",
        dataset=dataset,
        factory=factory,
        window_frames=window,
        params=fast_params(epochs=2),
        decoding=decoding(input_normalisation="none"),
    )
    splits = {k: v[0] for k, v in problem_of(tmp_path, "spy").segments.items()}
    # default gap: the longest configured window (10) + ceil(5.4 s x 1.1 Hz) = 16, not this one
    assert splits["val"].start - splits["train"].stop == 16
    train_windows = np.concatenate([w for training, w in spies[0].seen if training])
    eval_windows = np.concatenate([w for training, w in spies[0].seen if not training])
    for windows in (train_windows, eval_windows):
        assert np.all(np.diff(windows, axis=1) == 1)  # contiguous frames
    assert train_windows.min() == 0 and train_windows.max() < splits["train"].stop
    n_train = splits["train"].stop - window + 1
    # Each epoch visits every training window exactly once, in a shuffled order.
    epoch_one = train_windows[:n_train, 0]
    assert sorted(epoch_one.tolist()) == list(range(n_train))
    assert epoch_one.tolist() != sorted(epoch_one.tolist())
    for first, last in zip(eval_windows[:, 0], eval_windows[:, -1], strict=True):
        inside = [splits[s].start <= first and last < splits[s].stop for s in ("val", "test")]
        assert any(inside)


def test_same_seed_identical_different_seed_differs(tmp_path):
    params = fast_params(epochs=2)
    factory = lambda: TinyDecoder(dropout=0.2)  # noqa: E731
    run(tmp_path, "a", factory=factory, params=params, seed=1)
    run(tmp_path, "b", factory=factory, params=params, seed=1)
    run(tmp_path, "c", factory=factory, params=params, seed=2)
    _, pred_a, weights_a = outputs(tmp_path, "a")
    _, pred_b, weights_b = outputs(tmp_path, "b")
    _, pred_c, _ = outputs(tmp_path, "c")
    np.testing.assert_array_equal(pred_a["predicted"].values, pred_b["predicted"].values)
    assert same_weights(weights_a, weights_b)
    assert not np.array_equal(pred_a["predicted"].values, pred_c["predicted"].values)


def test_resume_after_interruption_matches_uninterrupted_run(tmp_path, caplog):
    params = fast_params(epochs=4, schedule="cosine", warmup_fraction=0.2, weight_decay=0.01)
    factory = lambda: TinyDecoder(dropout=0.3)  # noqa: E731
    full = run(tmp_path, "full", factory=factory, params=params)
    assert full["resumed_from_epoch"] == 0

    with pytest.raises(TrainingInterrupted):
        run(tmp_path, "killed", factory=factory, params=params, stop_after_epoch=2)
    assert (tmp_path / "killed" / "ckpt" / "checkpoint.pt").exists()
    assert not (tmp_path / "killed" / "out" / "predictions.nc").exists()
    assert len(pd.read_csv(tmp_path / "killed" / "out" / "training_curve.csv")) == 2
    with caplog.at_level(logging.INFO, logger="nlp4neuro.training"):
        resumed = run(tmp_path, "killed", factory=factory, params=params)
    assert resumed["resumed_from_epoch"] == 2 and resumed["epochs_run"] == 4
    assert "resuming from checkpoint" in caplog.text

    curve_f, pred_f, weights_f = outputs(tmp_path, "full")
    curve_k, pred_k, weights_k = outputs(tmp_path, "killed")
    assert same_weights(weights_f, weights_k)
    columns = ["epoch", "train_loss", "val_loss", "lr", "best"]
    pd.testing.assert_frame_equal(curve_f[columns], curve_k[columns])
    np.testing.assert_array_equal(pred_f["predicted"].values, pred_k["predicted"].values)


def test_mismatching_checkpoint_is_ignored(tmp_path, caplog):
    ckpt = tmp_path / "shared_ckpt"
    with pytest.raises(TrainingInterrupted):
        run(tmp_path, "old", checkpoint_dir=ckpt, stop_after_epoch=1)
    new_params = fast_params(learning_rate=5e-3)
    with caplog.at_level(logging.WARNING, logger="nlp4neuro.training"):
        summary = run(tmp_path, "new", checkpoint_dir=ckpt, params=new_params)
    assert summary["resumed_from_epoch"] == 0
    assert "ignoring checkpoint" in caplog.text and "training" in caplog.text
    run(tmp_path, "fresh", params=new_params)
    _, pred_new, weights_new = outputs(tmp_path, "new")
    _, pred_fresh, weights_fresh = outputs(tmp_path, "fresh")
    assert same_weights(weights_new, weights_fresh)
    np.testing.assert_array_equal(pred_new["predicted"].values, pred_fresh["predicted"].values)


def test_early_stopping_restores_best_epoch(tmp_path):
    # Val targets follow the opposite mapping: learning the training mapping makes val worse.
    dataset = make_dataset()
    early_params = fast_params(epochs=10, early_stopping_patience=2)
    factory = lambda: TinyDecoder(zero_init=True)  # noqa: E731
    val = slice(138, 157)  # 200 frames, gap 5: usable 190 -> train 0:133, val 138:157
    dataset["tail"].values[val] *= -1

    summary = run(tmp_path, "early", dataset=dataset, factory=factory, params=early_params)
    curve, pred, weights = outputs(tmp_path, "early")
    assert summary["stopped_early"]
    assert summary["epochs_run"] == summary["best_epoch"] + 2 < 10
    assert summary["used_epoch"] == summary["best_epoch"] == int(curve["val_loss"].idxmin()) + 1
    assert summary["best_val_loss"] == curve["val_loss"].min()
    best_flags = curve["best"].tolist()
    assert best_flags[summary["best_epoch"] - 1] and not any(best_flags[summary["best_epoch"] :])

    # The restored weights are those after `best_epoch` epochs of the same run.
    short = fast_params(epochs=summary["best_epoch"])
    run(tmp_path, "short", dataset=dataset, factory=factory, params=short)
    _, pred_short, weights_short = outputs(tmp_path, "short")
    assert same_weights(weights, weights_short)
    np.testing.assert_array_equal(pred["predicted"].values, pred_short["predicted"].values)


# ---------------------------------------------------------------------------------------------
# Output format


class PositionDecoder(nn.Module):
    """Outputs each frame's position j = 0..window-1 inside its window, for every segment."""

    def __init__(self) -> None:
        super().__init__()
        self.unused = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        position = torch.arange(x.shape[1], dtype=x.dtype)[None, :, None]
        return position.expand(x.shape[0], x.shape[1], K) + 0.0 * self.unused


def test_predictions_netcdf_layout_and_hand_computed_average(tmp_path):
    dataset = make_dataset(n_frames=60)
    params = fast_params(epochs=1)
    run(
        tmp_path,
        "pos",
        dataset=dataset,
        factory=PositionDecoder,
        window_frames=3,
        params=params,
        decoding=decoding(gap_frames=3),
    )
    out = tmp_path / "pos" / "out"
    with xr.open_dataset(out / "predictions.nc") as handle:
        pred = handle.load()
    # 60 frames, gap 3: usable 54 -> train 0:37, val 40:46, test 49:60
    val = pred.sel(time=pred["split"] == "val")
    test = pred.sel(time=pred["split"] == "test")
    np.testing.assert_array_equal(val["frame"].values, np.arange(40, 46) + 2)
    np.testing.assert_array_equal(test["frame"].values, np.arange(49, 60) + 2)
    # Frame covered by windows at positions {0}, {1,0}, {2,1,0}, ..., {2,1}, {2}.
    expected_val = [0.0, 0.5, 1.0, 1.0, 1.5, 2.0]
    expected_test = [0.0, 0.5, *[1.0] * 7, 1.5, 2.0]
    np.testing.assert_array_equal(val["predicted"].values, np.repeat([expected_val], K, 0).T)
    np.testing.assert_array_equal(test["predicted"].values, np.repeat([expected_test], K, 0).T)

    assert dict(pred.sizes) == {"time": 17, "segment": K}
    assert pred["predicted"].dims == ("time", "segment") and pred["true"].dims == (
        "time",
        "segment",
    )
    assert pred["predicted"].dtype == np.float32 and pred["true"].dtype == np.float32
    positions = np.r_[40:46, 49:60]
    np.testing.assert_array_equal(pred["true"].values, dataset["tail"].values[positions])
    np.testing.assert_allclose(pred["time"].values, positions / 1.1)
    np.testing.assert_array_equal(pred["stimulus"].values, dataset["stimulus"].values[positions])
    assert pred["segment"].values.tolist() == [f"theta_{k:02d}" for k in range(K)]
    assert pred.attrs["model"] == "tiny_linear" and pred.attrs["kind"] == "test"
    assert pred.attrs["fish"] == 9 and pred.attrs["seed"] == 0 and pred.attrs["window_frames"] == 3
    assert json.loads(pred.attrs["params"]) == params.to_dict()
    assert "torch" in json.loads(pred.attrs["versions"])

    assert json.loads(pred.attrs["decoding"]) == decoding(gap_frames=3).to_dict()
    assert pred.attrs["fold"] == 0 and pred.attrs["folds"] == 1
    assert pred.attrs["frame_rate_hz"] == pytest.approx(1.1)

    problem = load_problem(out / "problem.json")
    assert problem.segments["train"] == (slice(0, 37),) and len(problem.starts["train"]) == 35
    assert problem.n_neurons == N and problem.window_frames == 3 and problem.gap_frames == 3
    run_info = json.loads((out / "run.json").read_text())
    assert run_info["spec"] == SPEC and run_info["training"] == params.to_dict()
    assert run_info["device"]["device"] == "cpu" and run_info["device"]["peak_memory_mib"] > 0
    assert run_info["problem"] == "problem.json" and "splits" not in run_info


class LstsqDecoder:
    """Classic decoder: least squares on training frames; records what `fit` received."""

    def fit(self, x_train, y_train, x_val, y_val) -> None:
        self.fit_shapes = (x_train.shape, y_train.shape, x_val.shape, y_val.shape)
        self.x_train = x_train.copy()
        design = np.c_[x_train, np.ones(len(x_train))]
        self.coef = np.linalg.lstsq(design, y_train, rcond=None)[0]

    def predict(self, x: np.ndarray) -> np.ndarray:
        return (np.c_[x, np.ones(len(x))] @ self.coef).astype(np.float32)


def test_classic_decoder_writes_the_same_format(tmp_path):
    models: list[LstsqDecoder] = []

    def factory() -> LstsqDecoder:
        models.append(LstsqDecoder())
        return models[-1]

    def save_pickle(model, path: Path) -> None:
        np.save(path / "coef.npy", model.coef)

    dataset = make_dataset()
    spec = {"name": "ridge", "kind": "ridge"}
    summary = run(tmp_path, "classic", dataset, factory, spec_dict=spec, save_fn=save_pickle)
    tmp_path = tmp_path / "classic"
    model = models[0]
    # 200 frames, gap 10 + ceil(5.4 x 1.1) = 16: usable 168 -> train 0:117, val 133:150,
    # test 166:200
    assert model.fit_shapes == ((117, N), (117, K), (17, N), (17, K))
    # Inputs are z-scored with training statistics: the training block has mean 0, std 1.
    np.testing.assert_allclose(model.x_train.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(model.x_train.std(axis=0), 1, atol=1e-4)
    curve = pd.read_csv(tmp_path / "out" / "training_curve.csv")
    assert curve["epoch"].tolist() == [0] and bool(curve["best"].iloc[0])
    with xr.open_dataset(tmp_path / "out" / "predictions.nc") as handle:
        pred = handle.load()
    assert dict(pred.sizes) == {"time": 17 + 34, "segment": K}
    assert set(pred.coords) == {"time", "frame", "split", "stimulus", "segment"}
    assert pred.attrs["kind"] == "ridge"
    normaliser = load_problem(tmp_path / "out" / "problem.json").normaliser
    x_test = (dataset["dff"].values[166:200] - normaliser.mean) / normaliser.std
    np.testing.assert_allclose(
        pred["predicted"].values[pred["split"].values == "test"],
        model.predict(x_test),
        rtol=1e-5,
        atol=1e-6,
    )
    assert (tmp_path / "out" / "model" / "coef.npy").exists()
    assert summary["test_rmse"] < 0.1 and summary["decoder_type"] == "classic"
    assert not (tmp_path / "ckpt" / "checkpoint.pt").exists()


def test_load_trained_round_trip(tmp_path):
    run(tmp_path, "a")
    out = tmp_path / "a" / "out"
    model, problem, run_info = load_trained(out, lambda path, problem: load_state(path))
    assert not model.training and run_info["seed"] == 0
    x, _ = problem.recording(make_dataset())
    window_preds = predict_windows(
        model, torch.from_numpy(x), problem.starts["test"], window=5, batch_size=7
    )
    with xr.open_dataset(out / "predictions.nc") as handle:
        saved = handle["predicted"].values[handle["split"].values == "test"]
    # First test frame is covered only by the first window's first position.
    np.testing.assert_allclose(window_preds[0, 0], saved[0], rtol=1e-6)
    (out / "problem.json").unlink()
    with pytest.raises(InputFileError, match=r"problem\.json.*expected"):
        load_trained(out, lambda path, problem: load_state(path))


def test_bad_inputs_raise_named_errors(tmp_path):
    # gap 16: 168 usable frames -> train 117, val 17
    with pytest.raises(ConfigError, match=r"decoding\.windows.*'val' block \(17 frames"):
        run(tmp_path, "long", window_frames=30)
    with pytest.raises(InputFileError, match="tail"):
        run(tmp_path, "no_tail", dataset=make_dataset().drop_vars("tail"))


# ---------------------------------------------------------------------------------------------
# The real decoders through the harness


@pytest.mark.parametrize(
    ("kind", "extra"),
    [
        ("ridge", {}),
        ("lstm", {"hidden_size": 16}),
        ("gru", {"hidden_size": 16}),
        ("reservoir", {"hidden_size": 64}),
        ("transformer", {"hidden_size": 16, "n_heads": 2}),
    ],
)
def test_each_baseline_beats_the_mean_predictor_on_a_planted_linear_signal(tmp_path, kind, extra):
    from nlp4neuro.models import ModelSpec
    from nlp4neuro.training import train_decoder

    dataset = make_dataset(n_frames=300, noise=0.05)
    params = fast_params(epochs=15, learning_rate=1e-2, schedule="constant")

    def test_rmse(name: str, spec_kind: str, **fields) -> float:
        spec = ModelSpec.from_config(name, {"kind": spec_kind, **fields})
        summary = train_decoder(
            dataset,
            spec,
            window_frames=5,
            fold=0,
            horizon=0,
            decoding=decoding(),
            training=params,
            compute=CPU,
            seed=0,
            out_dir=tmp_path / name,
            checkpoint_dir=tmp_path / f"{name}_checkpoint",
            backbone_dir=None,
        )
        assert not (tmp_path / f"{name}_checkpoint" / "checkpoint.pt").exists()
        return summary["test_rmse"]

    baseline = test_rmse("mean", "mean")
    assert test_rmse(kind, kind, **extra) < 0.7 * baseline


def test_neural_lag_lets_a_per_frame_decoder_read_the_next_frame(tmp_path):
    # the tail at frame t is written by the neural activity of frame t + 1
    dataset = make_dataset(n_frames=300, noise=0.0)
    lagged_tail = np.zeros_like(dataset["tail"].values)
    lagged_tail[:-1] = dataset["tail"].values[1:]
    dataset["tail"].values[:] = lagged_tail
    params = fast_params(epochs=8, learning_rate=5e-2, schedule="cosine")
    concurrent = run(tmp_path, "lag0", dataset=dataset, params=params)
    lagged = run(
        tmp_path, "lag1", dataset=dataset, params=params, decoding=decoding(neural_lag_frames=1)
    )
    assert lagged["test_rmse"] < 0.3 * concurrent["test_rmse"]
    # predictions refer to the tail's frames and the true tail is unchanged
    predictions = xr.load_dataset(tmp_path / "lag1" / "out" / "predictions.nc")
    frames = predictions["frame"].values
    np.testing.assert_allclose(
        predictions["true"].values, lagged_tail[frames - 2], rtol=1e-6
    )  # make_dataset's imaging frames start at 2


# ---------------------------------------------------------------------------------------------
# One code path for every device (issue 11)


class DeviceTensor(torch.Tensor):
    """A CPU tensor that behaves like a CUDA one where that matters to the training code.

    `.numpy()` raises as it does for a CUDA tensor unless the tensor was first moved with
    `.to("cpu")` / `.cpu()`, and every result of an operation on it is again a DeviceTensor
    (torch's subclass propagation), as results computed from CUDA tensors stay on CUDA.
    """

    def numpy(self, *args, **kwargs):
        raise TypeError("can't convert cuda:0 device type tensor to numpy. Use Tensor.cpu()")

    def cpu(self, *args, **kwargs):
        return super().cpu(*args, **kwargs).as_subclass(torch.Tensor)

    def to(self, *args, **kwargs):
        moved = super().to(*args, **kwargs)
        target = kwargs.get("device", args[0] if args else None)
        if isinstance(target, str | torch.device) and torch.device(target).type == "cpu":
            return moved.as_subclass(torch.Tensor)
        return moved


def test_training_on_a_device_recording_runs_the_cpu_code_and_gives_the_same_numbers(
    tmp_path, monkeypatch
):
    probe = torch.zeros(2).as_subclass(DeviceTensor)
    with pytest.raises(TypeError, match="cuda"):
        (probe[[0, 1]] + 1).numpy()  # what the old `_window_targets` did on a GPU
    assert to_numpy(probe + 1).tolist() == [1.0, 1.0]

    def save_coef(model, path: Path) -> None:
        np.save(path / "coef.npy", model.coef)

    params = fast_params(epochs=2, early_stopping_patience=1)
    ridge = {"name": "ridge", "kind": "ridge"}
    plain_torch = run(tmp_path, "plain_torch", factory=TinyDecoder, params=params)
    plain_classic = run(
        tmp_path, "plain_classic", factory=LstsqDecoder, spec_dict=ridge, save_fn=save_coef
    )
    # The recording "lives on the GPU": batches, validation targets and predictions must all
    # come back through the one device-to-host conversion.
    monkeypatch.setattr(
        training,
        "to_device",
        lambda array, device: torch.from_numpy(array).as_subclass(DeviceTensor),
    )
    device_torch = run(tmp_path, "device_torch", factory=TinyDecoder, params=params)
    device_classic = run(
        tmp_path, "device_classic", factory=LstsqDecoder, spec_dict=ridge, save_fn=save_coef
    )
    for plain, device, name in (
        (plain_torch, device_torch, "torch"),
        (plain_classic, device_classic, "classic"),
    ):
        assert device["test_rmse"] == plain["test_rmse"]
        pred_plain = xr.load_dataset(tmp_path / f"plain_{name}" / "out" / "predictions.nc")
        pred_device = xr.load_dataset(tmp_path / f"device_{name}" / "out" / "predictions.nc")
        xr.testing.assert_identical(pred_plain.drop_attrs(), pred_device.drop_attrs())


# ---------------------------------------------------------------------------------------------
# Precision


class FrozenMiddleDecoder(nn.Module):
    """A trainable input layer, a frozen "backbone" (matrix, bias and norm) and a trainable
    readout: the shape of a LoRA or head-only LLM decoder, small."""

    def __init__(self) -> None:
        super().__init__()
        self.inp = nn.Linear(N, 16)
        self.backbone = nn.Linear(16, 16)
        self.norm = nn.LayerNorm(16)
        self.backbone.requires_grad_(False)
        self.norm.requires_grad_(False)
        self.out = nn.Linear(16, K)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.norm(torch.relu(self.backbone(self.inp(x)))))


LORA_SPEC = {"name": "tiny_frozen", "kind": "llm", "finetune": "lora"}


def compute(precision: str) -> ComputeParams:
    values = section("compute", device="cpu", precision=precision)
    return ComputeParams.from_config(values, threads=torch.get_num_threads())


def test_bf16_stores_frozen_matrices_in_bf16_and_reruns_bit_identically(tmp_path):
    built: list[nn.Module] = []

    def factory() -> nn.Module:
        built.append(FrozenMiddleDecoder())
        return built[-1]

    first = run(tmp_path, "bf16_a", factory=factory, compute=compute("bf16"), spec_dict=LORA_SPEC)
    again = run(tmp_path, "bf16_b", factory=factory, compute=compute("bf16"), spec_dict=LORA_SPEC)
    fp32 = run(tmp_path, "fp32", factory=factory, compute=compute("fp32"), spec_dict=LORA_SPEC)
    lean, plain = built[0], built[2]
    assert lean.backbone.weight.dtype == torch.bfloat16  # frozen matrix: stored once in bf16
    assert lean.backbone.bias.dtype == lean.norm.weight.dtype == torch.float32  # vectors stay
    assert all(p.dtype == torch.float32 for p in lean.parameters() if p.requires_grad)
    assert all(p.dtype == torch.float32 for p in plain.parameters())
    assert (first["precision"], fp32["precision"]) == ("bf16", "fp32")
    _, pred_a, weights_a = outputs(tmp_path, "bf16_a")
    _, pred_b, weights_b = outputs(tmp_path, "bf16_b")
    _, pred_fp32, _ = outputs(tmp_path, "fp32")
    xr.testing.assert_identical(pred_a.drop_attrs(), pred_b.drop_attrs())
    assert same_weights(weights_a, weights_b)
    assert first["test_rmse"] == again["test_rmse"]
    # bf16 really computed in bf16: close to fp32, not equal to it
    difference = np.abs(pred_a["predicted"].values - pred_fp32["predicted"].values)
    assert 0 < difference.max() < 0.1
    run_info = json.loads((tmp_path / "bf16_a" / "out" / "run.json").read_text())
    assert run_info["summary"]["precision"] == "bf16"
    assert run_info["compute"]["precision"] == "bf16"


def test_auto_precision_follows_the_hardware_and_the_finetune_mode(tmp_path, monkeypatch):
    monkeypatch.setattr("nlp4neuro.device.native_bf16", lambda device: True)
    auto = compute("auto")
    lora = run(tmp_path, "lora", factory=FrozenMiddleDecoder, compute=auto, spec_dict=LORA_SPEC)
    assert lora["precision"] == "bf16"
    full_spec = {**LORA_SPEC, "finetune": "full"}
    full = run(tmp_path, "full", factory=FrozenMiddleDecoder, compute=auto, spec_dict=full_spec)
    assert full["precision"] == "fp32"
    baseline = run(tmp_path, "baseline", factory=TinyDecoder, compute=auto)
    assert baseline["precision"] == "fp32"
    monkeypatch.setattr("nlp4neuro.device.native_bf16", lambda device: False)
    emulated = run(
        tmp_path, "emulated", factory=FrozenMiddleDecoder, compute=auto, spec_dict=LORA_SPEC
    )
    assert emulated["precision"] == "fp32"


# ---------------------------------------------------------------------------------------------
# Decoding ahead


def _train_ahead(tmp_path: Path, dataset, kind: str, horizon: int, **fields) -> Path:
    from nlp4neuro.models import ModelSpec
    from nlp4neuro.training import train_decoder

    spec = ModelSpec.from_config(kind, {"kind": kind, **fields})
    out = tmp_path / f"{kind}_h{horizon}"
    train_decoder(
        dataset,
        spec,
        window_frames=6,
        fold=0,
        horizon=horizon,
        decoding=decoding(horizons=[0, 3]),
        training=fast_params(epochs=2),
        compute=CPU,
        seed=0,
        out_dir=out,
        checkpoint_dir=tmp_path / f"{kind}_h{horizon}_checkpoint",
        backbone_dir=None,
    )
    return out


def _held_out_by_frame(model, problem, dataset) -> dict[int, np.ndarray]:
    """{imaging frame of the target: averaged prediction} over the val and test windows."""
    x, _ = problem.recording(dataset)
    starts = np.concatenate([problem.starts["val"], problem.starts["test"]])
    windows = predict_windows(model, torch.from_numpy(x), starts, problem.window_frames, 8)
    index, averaged = average_window_predictions(
        starts, problem.window_frames, windows, problem.n_frames
    )
    frames = problem.lagged(dataset)["frame"].values[index]
    return dict(zip(frames.tolist(), averaged, strict=True))


@pytest.mark.parametrize(
    ("kind", "fields"),
    [
        ("transformer", {"hidden_size": 16, "n_heads": 2}),
        ("ridge", {}),
        ("lstm", {"hidden_size": 8}),
    ],
)
def test_poisoned_future_never_reaches_a_prediction_ahead(tmp_path, kind, fields):
    """Neural frames after t replaced by huge values: every prediction of the tail at a frame
    <= t + 3 (horizon 3) is unchanged, through the trained and reloaded decoder."""
    from nlp4neuro.models import ModelSpec
    from nlp4neuro.training import load_trained_decoder

    dataset = make_dataset(n_frames=200)
    out = _train_ahead(tmp_path, dataset, kind, 3, **fields)
    spec = ModelSpec.from_config(kind, {"kind": kind, **fields})
    model, problem, run_info = load_trained_decoder(out, spec, backbone_dir=None, device="cpu")
    assert problem.horizon == 3 and run_info["horizon"] == 3
    assert getattr(model, "past_only", True)
    clean = _held_out_by_frame(model, problem, dataset)
    frames = dataset["frame"].values
    t = int(np.median(sorted(clean)))  # an imaging frame inside the held-out blocks
    poisoned = dataset.copy(deep=True)
    poisoned["dff"].values[frames > t] = 1e4
    # the same problem (splits, normaliser) applied to the poisoned recording
    as_poisoned = dataclasses.replace(problem, dataset=dataset_fingerprint(poisoned))
    dirty = _held_out_by_frame(model, as_poisoned, poisoned)
    reached = [f for f in clean if f <= t + 3]
    assert reached and all(np.allclose(clean[f], dirty[f], atol=1e-5) for f in reached)
    later = [f for f in clean if f > t + 3]
    assert any(not np.allclose(clean[f], dirty[f], atol=1e-3) for f in later)
    with xr.open_dataset(out / "predictions.nc") as saved:
        assert int(saved.attrs["horizon"]) == 3


def test_a_horizon_lets_a_decoder_read_the_tail_ahead(tmp_path):
    """The tail at frame t + 3 is written by the neural activity of frame t: at horizon 3 the
    per-frame decoder recovers it; concurrently (horizon 0, same target frames) it cannot."""
    dataset = make_dataset(n_frames=300, noise=0.0)
    ahead = np.zeros_like(dataset["tail"].values)
    ahead[3:] = dataset["tail"].values[:-3]
    dataset["tail"].values[:] = ahead
    params = fast_params(epochs=8, learning_rate=5e-2, schedule="cosine")
    both = decoding(horizons=[0, 3])
    scores = {}
    for horizon in (0, 3):
        problem = build_problem(dataset, 5, both, horizon=horizon)
        scores[horizon] = train_and_predict(
            dataset, problem, lambda device: TinyDecoder(), spec_dict=SPEC, params=params,
            compute=CPU, seed=0, out_dir=tmp_path / f"h{horizon}" / "out",
            checkpoint_dir=tmp_path / f"h{horizon}" / "ckpt", save_fn=save_state,
        )["test_rmse"]  # fmt: skip
    assert scores[3] < 0.3 * scores[0]
    h0 = xr.load_dataset(tmp_path / "h0" / "out" / "predictions.nc")
    h3 = xr.load_dataset(tmp_path / "h3" / "out" / "predictions.nc")
    np.testing.assert_array_equal(h0["frame"].values, h3["frame"].values)  # same targets
    np.testing.assert_array_equal(h0["true"].values, h3["true"].values)
    assert (int(h0.attrs["horizon"]), int(h3.attrs["horizon"])) == (0, 3)
