"""Tests for nlp4neuro.problem: lag, splits, windows and normaliser, decided once and saved."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import xarray as xr

from nlp4neuro.config import section
from nlp4neuro.errors import ConfigError, InputFileError
from nlp4neuro.problem import (
    DecodingParams,
    InputNormaliser,
    average_window_predictions,
    blocked_split,
    build_problem,
    check_window_fits,
    chronological_split,
    fit_input_normaliser,
    fold_segments,
    lag_neural,
    load_problem,
    segment_frames,
    segment_starts,
    window_starts,
)


def decoding(**changes) -> DecodingParams:
    return DecodingParams.from_config(section("decoding", **changes))


def make_dataset(n_frames: int = 100, n_neurons: int = 4, seed: int = 0) -> xr.Dataset:
    """dff (time, neuron) ~ N(3, 2), tail (time, segment); imaging frames start at 10."""
    rng = np.random.default_rng(seed)
    dff = (3 + 2 * rng.normal(size=(n_frames, n_neurons))).astype(np.float32)
    tail = rng.normal(size=(n_frames, 3)).astype(np.float32)
    return xr.Dataset(
        {"dff": (("time", "neuron"), dff), "tail": (("time", "segment"), tail)},
        coords={
            "time": ("time", np.arange(n_frames) / 2.0),
            "frame": ("time", np.arange(n_frames, dtype=np.int64) + 10),
            "segment": [f"theta_{k:02d}" for k in range(3)],
        },
        attrs={"fish": "9", "frame_rate_hz": 2.0},
    )


# ---------------------------------------------------------------------------------------------
# Parameters


def test_decoding_params_come_from_the_validated_section_only():
    params = decoding()
    assert params.to_dict() == {
        "windows": [10],
        "folds": 1,
        "train_fraction": 0.7,
        "val_fraction": 0.1,
        "test_fraction": 0.2,
        "gap_frames": None,
        "calcium_decay_s": 5.4,
        "neural_lag_frames": 0,
        "horizons": [0],
        "input_normalisation": "zscore",
    }
    assert all(f.default is dataclasses.MISSING for f in dataclasses.fields(DecodingParams))
    with pytest.raises(ConfigError, match=r"decoding\.windows"):
        DecodingParams.from_config({})
    with pytest.raises(ConfigError, match="sum of 1"):
        decoding(val_fraction=0.2)
    # null gap: the longest window (10) + ceil(5.4 s x 2 Hz = 10.8) = 21 frames, at any window
    assert params.resolved_gap(2.0) == 21
    assert decoding(windows=[5, 20], calcium_decay_s=1.0).resolved_gap(1.1) == 22
    assert decoding(gap_frames=0).resolved_gap(float("nan")) == 0
    with pytest.raises(ValueError, match="frame_rate_hz"):
        params.resolved_gap(float("nan"))


def test_a_gap_shorter_than_the_lag_is_a_config_error():
    with pytest.raises(ConfigError, match=r"decoding\.gap_frames.*neural_lag_frames \(3\)"):
        decoding(gap_frames=2, neural_lag_frames=3)
    # a null gap (longest window + decay) is checked against the lag too
    params = decoding(windows=[2], calcium_decay_s=0.5, neural_lag_frames=4)
    with pytest.raises(ConfigError, match=r"decoding\.gap_frames.*found 3"):
        build_problem(make_dataset(), 2, params)
    params = decoding(windows=[3], calcium_decay_s=0.5, neural_lag_frames=4)
    assert build_problem(make_dataset(), 3, params).gap_frames == 4


def test_a_null_gap_needs_the_datasets_frame_rate():
    dataset = make_dataset()
    del dataset.attrs["frame_rate_hz"]
    with pytest.raises(InputFileError, match=r"frame_rate_hz.*decoding\.gap_frames"):
        build_problem(dataset, 5, decoding(windows=[5]))
    assert build_problem(dataset, 5, decoding(windows=[5], gap_frames=5)).gap_frames == 5


# ---------------------------------------------------------------------------------------------
# The problem


def test_build_problem_by_hand():
    dataset = make_dataset()
    params = decoding(neural_lag_frames=2, windows=[5], calcium_decay_s=0.0001)
    problem = build_problem(dataset, 5, params)
    # 98 lagged rows, gap 5 + ceil(0.0002) = 6: 86 usable -> train floor(60.2) = 60, val
    # floor(68.8) - 60 = 8, test 18
    assert problem.n_frames == 98 and problem.gap_frames == 6
    problem = build_problem(dataset, 5, decoding(neural_lag_frames=2, gap_frames=5))
    # 98 lagged rows, gap 5: 88 usable -> train floor(61.6) = 61, val floor(70.4) - 61 = 9
    assert problem.n_frames == 98 and problem.gap_frames == 5 and problem.fold == 0
    assert problem.segments == {
        "train": (slice(0, 61),),
        "val": (slice(66, 75),),
        "test": (slice(80, 98),),
    }
    np.testing.assert_array_equal(problem.splits["test"], np.arange(80, 98))
    np.testing.assert_array_equal(problem.starts["val"], [66, 67, 68, 69, 70])
    assert problem.starts["train"].dtype == np.int64 and len(problem.starts["test"]) == 14
    assert (problem.n_neurons, problem.n_outputs, problem.window_frames) == (4, 3, 5)
    # the normaliser is fitted on the LAGGED training rows: raw frames 2..62
    raw = dataset["dff"].values
    np.testing.assert_allclose(problem.normaliser.mean, raw[2:63].mean(axis=0), rtol=1e-6)
    x, y = problem.recording(dataset)
    assert x.dtype == y.dtype == np.float32 and x.flags.writeable and x.flags.c_contiguous
    np.testing.assert_allclose(x, (raw[2:] - problem.normaliser.mean) / problem.normaliser.std)
    np.testing.assert_array_equal(y, dataset["tail"].values[:98])
    lagged = problem.lagged(dataset)
    np.testing.assert_array_equal(lagged["frame"].values, np.arange(98) + 10)
    np.testing.assert_array_equal(lagged["dff"].values, raw[2:])


def test_frames_after_the_training_block_never_reach_the_normaliser():
    # lag 2, gap 2: lagged row t holds raw neural frame t + 2, so the training rows 0..train.stop-1
    # read raw frames up to train.stop + 1; everything later may be poisoned.
    params = decoding(neural_lag_frames=2, gap_frames=2)
    clean = make_dataset()
    reference = build_problem(clean, 5, params)
    train_stop = reference.segments["train"][0].stop
    last_read = train_stop - 1 + 2
    poisoned = clean.copy(deep=True)
    poisoned["dff"].values[last_read + 1 :] = 1e6
    poisoned["tail"].values[train_stop:] = np.nan
    problem = build_problem(poisoned, 5, params)
    np.testing.assert_array_equal(problem.normaliser.mean, reference.normaliser.mean)
    np.testing.assert_array_equal(problem.normaliser.std, reference.normaliser.std)
    assert problem.segments == reference.segments
    # ... and the last frame training does read does reach it: the test can fail.
    touched = clean.copy(deep=True)
    touched["dff"].values[last_read] = 1e6
    assert not np.array_equal(
        build_problem(touched, 5, params).normaliser.mean, reference.normaliser.mean
    )


def test_bad_datasets_and_windows_raise_named_errors():
    with pytest.raises(ConfigError, match=r"decoding\.windows.*'val' block \(10 frames"):
        build_problem(make_dataset(), 11, decoding(gap_frames=0))
    with pytest.raises(ConfigError, match=r"decoding\.folds.*a fold in 0\.\.4"):
        build_problem(make_dataset(), 5, decoding(gap_frames=0, folds=5), fold=5)
    with pytest.raises(ConfigError, match=r"decoding\.folds.*fold 0"):
        build_problem(make_dataset(), 5, decoding(gap_frames=0), fold=1)
    with pytest.raises(ConfigError, match=r"decoding\.windows"):
        build_problem(make_dataset(), 0, decoding())
    with pytest.raises(InputFileError, match="tail"):
        build_problem(make_dataset().drop_vars("tail"), 5, decoding())


# ---------------------------------------------------------------------------------------------
# problem.json


def test_problem_json_round_trip(tmp_path):
    dataset = make_dataset()
    problem = build_problem(dataset, 5, decoding(neural_lag_frames=1, input_normalisation="none"))
    path = problem.save(tmp_path / "run" / "problem.json")
    assert [p.name for p in path.parent.iterdir()] == ["problem.json"]  # atomic write
    loaded = load_problem(path)
    assert loaded.to_dict() == problem.to_dict() and loaded.source == path
    assert loaded.params == problem.params and loaded.segments == problem.segments
    for name in ("train", "val", "test"):
        np.testing.assert_array_equal(loaded.starts[name], problem.starts[name])
        assert loaded.starts[name].dtype == np.int64
    for built, read in zip(problem.recording(dataset), loaded.recording(dataset), strict=True):
        np.testing.assert_array_equal(built, read)


def test_a_loaded_problem_refuses_another_dataset(tmp_path):
    dataset = make_dataset()
    path = build_problem(dataset, 5, decoding()).save(tmp_path / "problem.json")
    other = dataset.copy(deep=True)
    other["tail"].values[0, 0] += 1
    problem = load_problem(path)
    for read in (problem.recording, problem.lagged):
        with pytest.raises(InputFileError, match=r"problem\.json.*different dataset"):
            read(other)


def test_load_problem_names_the_file_and_the_missing_field(tmp_path):
    path = build_problem(make_dataset(), 5, decoding()).save(tmp_path / "problem.json")
    data = json.loads(path.read_text())
    with pytest.raises(InputFileError, match="no such file"):
        load_problem(tmp_path / "absent.json")
    for broken, field in (
        ({k: v for k, v in data.items() if k != "normaliser"}, "normaliser"),
        (
            {**data, "params": {k: v for k, v in data["params"].items() if k != "gap_frames"}},
            "gap_frames",
        ),
        ({**data, "segments": {**data["segments"], "val": [{"start": 0}]}}, "stop"),
    ):
        path.write_text(json.dumps(broken))
        with pytest.raises(InputFileError, match=rf"problem\.json: expected fields \['{field}'\]"):
            load_problem(path)
    path.write_text(json.dumps({**data, "starts": {**data["starts"], "val": [0, 1]}}))
    with pytest.raises(InputFileError, match=r"problem\.json: expected starts\.val"):
        load_problem(path)


# ---------------------------------------------------------------------------------------------
# Splits, windows, normaliser, lag (moved here from test_dataset.py)


def test_chronological_split_by_hand():
    # No gap: floor(0.7 * 100) = 70, floor(0.8 * 100) = 80 (not 79 from 0.7 + 0.1 = 0.7999...).
    assert chronological_split(100, 0.7, 0.1, 0.2, 0) == {
        "train": slice(0, 70),
        "val": slice(70, 80),
        "test": slice(80, 100),
    }
    # Gap 5: 90 usable frames -> train 63, val floor(72) - 63 = 9, test 18; gaps 63..67, 77..81.
    assert chronological_split(100, 0.7, 0.1, 0.2, 5) == {
        "train": slice(0, 63),
        "val": slice(68, 77),
        "test": slice(82, 100),
    }
    # The reference's fish 9 split: 2132 / 305 / 610 of 3047 frames.
    lengths = {k: s.stop - s.start for k, s in chronological_split(3047, 0.7, 0.1, 0.2, 0).items()}
    assert lengths == {"train": 2132, "val": 305, "test": 610}


def test_chronological_split_rejects_bad_config():
    with pytest.raises(ConfigError, match="sum to 1"):
        chronological_split(100, 0.7, 0.2, 0.2, 0)
    with pytest.raises(ConfigError, match=r"decoding\.gap_frames"):
        chronological_split(100, 0.7, 0.1, 0.2, -1)
    with pytest.raises(ConfigError, match="at least one frame per block"):
        chronological_split(10, 0.8, 0.05, 0.15, 0)


def test_window_starts_lists():
    val = slice(68, 77)
    np.testing.assert_array_equal(window_starts(val, 5), [68, 69, 70, 71, 72])
    np.testing.assert_array_equal(window_starts(val, 5, stride=2), [68, 70, 72])
    np.testing.assert_array_equal(window_starts(val, 9), [68])
    assert window_starts(val, 10).size == 0
    with pytest.raises(ConfigError, match=r"decoding\.windows"):
        window_starts(val, 0)


def test_check_window_fits_names_split_and_lengths():
    segments = {k: (v,) for k, v in chronological_split(100, 0.7, 0.1, 0.2, 5).items()}
    check_window_fits(segments, 9)
    with pytest.raises(ConfigError) as error:
        check_window_fits(segments, 10)
    assert "'val' block (9 frames" in str(error.value) and error.value.key == "decoding.windows"
    assert "found 10" in str(error.value)
    # training may fit in its longer segment; every test segment must hold a whole window
    check_window_fits({"train": (slice(0, 3), slice(10, 30)), **segments}, 9)
    with pytest.raises(ConfigError, match="'test' block \\(4 frames in its shortest"):
        check_window_fits({**segments, "test": (slice(90, 94), slice(95, 100))}, 5)


def test_normaliser_uses_training_frames_only():
    # Train rows 0..2: neuron 0 = [1, 3, 5] (mean 3, std sqrt(8/3)), neuron 1 = [2, 2, 2]
    # (std 0 -> floored), neuron 2 = [0, 10, 20] (mean 10, std sqrt(200/3)).
    dff = np.array(
        [[1, 2, 0], [3, 2, 10], [5, 2, 20], [100, -7, 3], [200, 50, 9]], dtype=np.float32
    )
    train = slice(0, 3)
    normaliser = fit_input_normaliser(dff, train, "zscore")
    floor = 0.01 * np.sqrt(8 / 3)  # 1 % of the median std
    np.testing.assert_allclose(normaliser.mean, [3, 2, 10], rtol=1e-6)
    np.testing.assert_allclose(normaliser.std, [np.sqrt(8 / 3), floor, np.sqrt(200 / 3)], rtol=1e-6)
    changed = dff.copy()
    changed[3:] = np.random.default_rng(0).normal(size=(2, 3))
    refit = fit_input_normaliser(changed, train, "zscore")
    np.testing.assert_array_equal(refit.mean, normaliser.mean)
    np.testing.assert_array_equal(refit.std, normaliser.std)

    out = normaliser.apply(dff[None])  # (batch, T, N)
    assert out.shape == (1, 5, 3) and out.dtype == np.float32
    np.testing.assert_allclose(out[0, :3].mean(axis=0), [0, 0, 0], atol=1e-6)
    np.testing.assert_allclose(out[0, :3, [0, 2]].std(axis=1), [1, 1], rtol=1e-5)


def test_normaliser_json_round_trip_and_identity():
    normaliser = InputNormaliser(mean=[0.5, -1.0], std=[2.0, 0.25], method="zscore")
    restored = InputNormaliser.from_dict(json.loads(json.dumps(normaliser.to_dict())))
    np.testing.assert_array_equal(restored.mean, normaliser.mean)
    np.testing.assert_array_equal(restored.std, normaliser.std)
    np.testing.assert_allclose(restored.apply(np.array([[2.5, 0.0]])), [[1.0, 4.0]])
    identity = fit_input_normaliser(np.ones((4, 2)), slice(0, 3), method="none")
    np.testing.assert_array_equal(identity.apply(np.array([[2.5, 0.0]])), [[2.5, 0.0]])
    with pytest.raises(ValueError, match="last axis of 2 neurons"):
        normaliser.apply(np.ones((3, 5)))
    with pytest.raises(ConfigError, match="zscore"):
        fit_input_normaliser(np.ones((4, 2)), slice(0, 3), method="minmax")


def test_average_window_predictions_by_hand():
    # Windows of 3 at starts 0, 1, 2 over 6 frames; output 0 is [1..9] in window order,
    # output 1 is 10x. Frame 0: 1; 1: (2+4)/2; 2: (3+5+7)/3; 3: (6+8)/2; 4: 9; 5: uncovered.
    values = np.arange(1, 10, dtype=np.float32).reshape(3, 3)
    predictions = np.stack([values, 10 * values], axis=-1)
    frame_index, averaged = average_window_predictions(np.array([0, 1, 2]), 3, predictions, 6)
    np.testing.assert_array_equal(frame_index, [0, 1, 2, 3, 4])
    np.testing.assert_allclose(averaged[:, 0], [1, 3, 5, 7, 9])
    np.testing.assert_allclose(averaged[:, 1], [10, 30, 50, 70, 90])
    assert averaged.dtype == np.float32


def test_average_window_predictions_rejects_bad_shapes():
    with pytest.raises(ValueError, match=r"predictions: expected shape \(n_windows=2, window=3"):
        average_window_predictions(np.array([0, 1]), 3, np.zeros((2, 4, 1)), 6)
    with pytest.raises(ValueError, match="windows inside"):
        average_window_predictions(np.array([0, 4]), 3, np.zeros((2, 3, 1)), 6)


def test_lag_neural_pairs_tail_with_later_neural_frames():
    dff = np.arange(10, dtype=np.float32).reshape(5, 2)  # frame t: [2t, 2t + 1]
    tail = np.arange(5, dtype=np.float32)[:, None] * np.ones((1, 3), np.float32)
    ds = xr.Dataset(
        {"dff": (("time", "neuron"), dff), "tail": (("time", "segment"), tail)},
        coords={"time": np.arange(5) / 1.1, "frame": ("time", np.arange(5))},
    )
    lagged = lag_neural(ds, 2)
    # tail of frames 0..2 beside the neural activity of frames 2..4
    np.testing.assert_array_equal(lagged["tail"].values[:, 0], [0, 1, 2])
    np.testing.assert_array_equal(lagged["dff"].values, [[4, 5], [6, 7], [8, 9]])
    np.testing.assert_array_equal(lagged["frame"].values, [0, 1, 2])
    assert lagged.attrs["neural_lag_frames"] == 2
    np.testing.assert_array_equal(ds["dff"].values, dff)  # the input is untouched
    assert lag_neural(ds, 0) is ds
    with pytest.raises(ConfigError, match="neural_lag_frames"):
        lag_neural(ds, 5)
    with pytest.raises(ConfigError, match="neural_lag_frames"):
        lag_neural(ds, -1)


def test_horizon_pairs_tail_with_earlier_neural_frames_and_keeps_the_targets():
    dff = np.arange(12, dtype=np.float32).reshape(6, 2)  # frame t: [2t, 2t + 1]
    tail = np.arange(6, dtype=np.float32)[:, None] * np.ones((1, 3), np.float32)
    ds = xr.Dataset(
        {"dff": (("time", "neuron"), dff), "tail": (("time", "segment"), tail)},
        coords={"time": np.arange(6) / 1.1, "frame": ("time", np.arange(6))},
    )
    # horizons 0..2, no lag: targets are frames 2..5 at every horizon
    for horizon, neural_frames in ((0, [2, 3, 4, 5]), (1, [1, 2, 3, 4]), (2, [0, 1, 2, 3])):
        shifted = lag_neural(ds, 0, horizon, max_horizon=2)
        np.testing.assert_array_equal(shifted["frame"].values, [2, 3, 4, 5])
        np.testing.assert_array_equal(shifted["tail"].values[:, 0], [2, 3, 4, 5])
        np.testing.assert_array_equal(shifted["dff"].values[:, 0], 2 * np.array(neural_frames))
    # lag 1 and horizon 2: tail of frame t beside neural frame t - 1; targets 1..4
    shifted = lag_neural(ds, 1, 2, max_horizon=2)
    np.testing.assert_array_equal(shifted["frame"].values, [1, 2, 3, 4])
    np.testing.assert_array_equal(shifted["dff"].values[:, 0], [0, 2, 4, 6])
    # lag 3 covers horizon 2: targets 0..2, neural frame t + 1
    shifted = lag_neural(ds, 3, 2, max_horizon=2)
    np.testing.assert_array_equal(shifted["dff"].values[:, 0], [2, 4, 6])
    np.testing.assert_array_equal(ds["dff"].values, dff)
    with pytest.raises(ConfigError, match="horizons"):
        lag_neural(ds, 0, 3, max_horizon=2)
    with pytest.raises(ConfigError, match="horizons"):
        lag_neural(ds, 0, 0, max_horizon=6)


def test_every_horizon_is_scored_on_the_same_test_frames(tmp_path):
    ds = make_dataset(n_frames=120)
    params = decoding(horizons=[4, 0, 2], gap_frames=6)
    assert params.horizons == (0, 2, 4) and params.past_only
    assert not decoding().past_only
    problems = [build_problem(ds, 5, params, horizon=h) for h in params.horizons]
    tests = [p.lagged(ds)["frame"].values[p.splits["test"]] for p in problems]
    assert all(np.array_equal(tests[0], t) for t in tests[1:])
    assert all(p.n_frames == 116 for p in problems)
    x0, _ = problems[0].recording(ds)
    x4, _ = problems[2].recording(ds)
    assert problems[2].horizon == 4
    # the same normalised neural frame appears 4 rows later at horizon 4 (before scaling)
    raw0 = problems[0].lagged(ds)["dff"].values
    raw4 = problems[2].lagged(ds)["dff"].values
    np.testing.assert_array_equal(raw0[:-4], raw4[4:])
    assert x0.shape == x4.shape
    with pytest.raises(ConfigError, match="horizons"):
        build_problem(ds, 5, params, horizon=3)
    with pytest.raises(ConfigError, match="horizons"):
        decoding(horizons=[1, 1])
    loaded = load_problem(problems[2].save(tmp_path / "problem.json"))
    assert loaded.horizon == 4 and loaded.params.horizons == (0, 2, 4)


# ---------------------------------------------------------------------------------------------
# Blocked cross-validation


def _lengths(segments):
    return {name: [(p.start, p.stop) for p in parts] for name, parts in segments.items()}


def test_blocked_split_by_hand():
    # T = 100, K = 5, val floor(0.1 x 100) = 10, gap 3: test blocks 0-19, 20-39, ..., 80-99.
    # Fold 0: no room before the test block, so val follows it: 23-32, train 36-99.
    assert _lengths(blocked_split(100, 0, 5, 0.1, 3)) == {
        "train": [(36, 100)],
        "val": [(23, 33)],
        "test": [(0, 20)],
    }
    # Fold 2 (the docstring's example): val 27-36 before the test block, train on both sides.
    assert _lengths(blocked_split(100, 2, 5, 0.1, 3)) == {
        "train": [(0, 24), (63, 100)],
        "val": [(27, 37)],
        "test": [(40, 60)],
    }
    assert _lengths(blocked_split(100, 4, 5, 0.1, 3)) == {
        "train": [(0, 64)],
        "val": [(67, 77)],
        "test": [(80, 100)],
    }
    # 7 frames in 3 folds: floor(k x 7 / 3) = 0, 2, 4, 7
    assert [blocked_split(7, k, 3, 0.15, 0)["test"] for k in range(3)] == [
        (slice(0, 2),),
        (slice(2, 4),),
        (slice(4, 7),),
    ]


def _distance(a: np.ndarray, b: np.ndarray) -> int:
    return int(np.abs(a[:, None] - b[None, :]).min())


@pytest.mark.parametrize("folds", [1, 2, 3, 5, 7])
@pytest.mark.parametrize("gap", [0, 4, 9])
def test_fold_boundaries_and_gaps_hold_for_every_k(folds, gap):
    params = decoding(folds=folds, gap_frames=gap)
    n_frames = 211
    tested = []
    for fold in range(folds):
        segments = fold_segments(n_frames, fold, params, gap)
        frames = {name: segment_frames(parts) for name, parts in segments.items()}
        assert all(np.all(np.diff(f) > 0) for f in frames.values())
        # every frame of one block is more than `gap` frames from every frame of another
        for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
            assert _distance(frames[a], frames[b]) > gap
        usable = n_frames - 2 * gap  # one fold: the chronological split of what the gaps leave
        one_fold = math.floor(0.8 * usable + 1e-9) - math.floor(0.7 * usable + 1e-9)
        assert frames["val"].size == (21 if folds > 1 else one_fold)  # floor(0.1 x 211) = 21
        tested.append(frames["test"])
    tested = np.concatenate(tested)
    if folds > 1:  # the test blocks tile the recording
        np.testing.assert_array_equal(np.sort(tested), np.arange(n_frames))


def test_every_window_and_model_is_scored_on_the_same_test_frames():
    dataset = make_dataset(n_frames=300)
    params = decoding(windows=[5, 10, 15], folds=3, calcium_decay_s=2.0)
    for fold in range(3):
        covered = set()
        for window in (5, 10, 15):
            problem = build_problem(dataset, window, params, fold)
            # the gap follows the longest window, not this one: 15 + ceil(2 s x 2 Hz) = 19
            assert problem.gap_frames == 19
            starts = problem.starts["test"]
            frames, _ = average_window_predictions(
                starts, window, np.zeros((starts.size, window, 1)), problem.n_frames
            )
            covered.add(tuple(frames))
            np.testing.assert_array_equal(frames, problem.splits["test"])
        assert len(covered) == 1


def test_a_split_training_block_never_has_a_window_across_its_hole():
    dataset = make_dataset(n_frames=200)
    problem = build_problem(dataset, 5, decoding(folds=4, gap_frames=3), fold=1)
    (before, after) = problem.segments["train"]
    assert (before.start, after.stop) == (0, 200)
    # fold 1 of 4: test 50-99, val 27-36 before it, train 0-23 and 103-199
    assert (before.stop, after.start) == (24, 103)
    expected = np.r_[0 : 24 - 4, 103 : 200 - 4]  # starts whose window ends inside its segment
    np.testing.assert_array_equal(problem.starts["train"], expected)
    np.testing.assert_array_equal(expected, segment_starts(problem.segments["train"], 5))
    # the normaliser reads the training frames of both segments, and only them
    x = dataset["dff"].values
    train = np.r_[before.start : before.stop, after.start : after.stop]
    np.testing.assert_allclose(problem.normaliser.mean, x[train].mean(axis=0), rtol=1e-6)


def test_a_fold_without_room_for_its_blocks_is_a_config_error():
    with pytest.raises(ConfigError, match=r"decoding\.folds.*fold 0 of 2"):
        blocked_split(100, 0, 2, 0.45, 10)
