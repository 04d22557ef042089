"""Tests for nlp4neuro.dataset with hand-computed expectations."""

from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr

from nlp4neuro import __version__
from nlp4neuro.dataset import (
    InputNormaliser,
    assemble_dataset,
    average_window_predictions,
    check_window_fits,
    chronological_split,
    fit_input_normaliser,
    open_dataset,
    window_starts,
    write_netcdf,
)
from nlp4neuro.errors import ConfigError, InputFileError

SEGMENTS = [f"theta_{i:02d}" for i in range(6)]


def _small_dataset(stimulus: list[str] | None = None, **overrides) -> xr.Dataset:
    """4 neurons, 10 imaging frames of which the first 8 have tail data, 2 Hz."""
    signal = np.arange(40, dtype=np.float32).reshape(4, 10) / 10
    frames = np.arange(8)
    kwargs = dict(
        signal=signal,
        frames=frames,
        tail=np.linspace(-0.5, 0.5, 48, dtype=np.float32).reshape(8, 6),
        segment_names=SEGMENTS,
        frame_rate_hz=2.0,
        plane=[0, 0, 1, 1],
        roi=[0, 3, 0, 1],
        x_um=[1.5, 2.0, 3.0, 4.25],
        y_um=[0.0, 1.0, 2.0, 3.0],
        z_um=[0.0, 0.0, 10.0, 10.0],
        region=["Pt", "", "Hb", None],
        time_offset_s=[0.0, 0.0, 0.25, 0.25],
        stimulus=stimulus,
        fish="9",
        signal_kind="dff",
        preprocessing={"mode": "dff", "neuropil_coefficient": 0.7, "baseline_step_frames": None},
        source_checksums={"raw_data_f9/plane_0/F.npy": "ab" * 32},
        extra_attrs={"n_dropped_neurons": 2, "drop_counts": {"n_all_zero": 2}, "simulated": True},
    )
    kwargs.update(overrides)
    return assemble_dataset(**kwargs)


def test_assemble_dataset_layout():
    ds = _small_dataset(stimulus=["", "", "left", "left", "right", "right", "", ""])
    assert dict(ds.sizes) == {"time": 8, "neuron": 4, "segment": 6}
    assert ds.dff.dims == ("time", "neuron") and ds.dff.dtype == np.float32
    signal = np.arange(40, dtype=np.float32).reshape(4, 10) / 10
    np.testing.assert_array_equal(ds.dff.values, signal[:, :8].T)
    assert ds["tail"].dims == ("time", "segment") and ds["tail"].dtype == np.float32
    np.testing.assert_allclose(ds.time.values, np.arange(8) / 2.0)
    assert ds.frame.dtype == np.int64 and ds.neuron.values.tolist() == [0, 1, 2, 3]
    assert ds.region.values.tolist() == ["Pt", "", "Hb", ""]
    assert ds.segment.values.tolist() == SEGMENTS
    assert ds.plane.dtype == np.int64 and ds.x_um.dtype == np.float64
    assert ds.dff.attrs["kind"] == "dff" and ds.dff.attrs["units"] == "1"
    assert ds["tail"].attrs["units"] == "rad" and ds.time.attrs["units"] == "s"
    assert ds.x_um.attrs["units"] == "um" and ds.time_offset_s.attrs["units"] == "s"
    assert ds.attrs["fish"] == "9" and ds.attrs["frame_rate_hz"] == 2.0
    assert ds.attrs["nlp4neuro_version"] == __version__
    assert json.loads(ds.attrs["preprocessing"])["neuropil_coefficient"] == 0.7
    assert json.loads(ds.attrs["versions"])["nlp4neuro"] == __version__
    assert json.loads(ds.attrs["drop_counts"]) == {"n_all_zero": 2}
    assert ds.attrs["simulated"] == "true"


def test_assemble_dataset_selects_frames_and_defaults_stimulus():
    ds = _small_dataset(frames=np.array([2, 5, 9, 1, 3, 4, 6, 7]))
    signal = np.arange(40, dtype=np.float32).reshape(4, 10) / 10
    np.testing.assert_array_equal(ds.dff.values[:3], signal[:, [2, 5, 9]].T)
    np.testing.assert_allclose(ds.time.values[:3], [1.0, 2.5, 4.5])
    assert ds.stimulus.values.tolist() == [""] * 8


def test_assemble_dataset_rejects_inconsistent_shapes():
    with pytest.raises(ValueError, match=r"tail: expected shape \(T=8, n_segments=6\)"):
        _small_dataset(tail=np.zeros((7, 6)))
    with pytest.raises(ValueError, match=r"x_um: expected shape \(4,\), found \(3,\)"):
        _small_dataset(x_um=[1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match=r"frames: expected indices in \[0, 10\)"):
        _small_dataset(frames=np.arange(3, 11))
    with pytest.raises(ValueError, match="signal_kind"):
        _small_dataset(signal_kind="spikes")


@pytest.mark.parametrize("compress", [True, False])
def test_netcdf_round_trip_is_identical(tmp_path, compress):
    ds = _small_dataset(stimulus=["", "", "left", "left", "right", "right", "", ""])
    path = write_netcdf(ds, tmp_path / "datasets" / "fish9.nc", compress=compress)
    with xr.open_dataset(path) as opened:
        loaded = opened.load()
    xr.testing.assert_identical(loaded, ds)
    xr.testing.assert_identical(open_dataset(path), ds)
    # Atomic write: only the final file remains, and rewriting replaces it.
    write_netcdf(ds, path, compress=compress)
    assert [p.name for p in path.parent.iterdir()] == ["fish9.nc"]


def test_netcdf_round_trip_all_empty_strings(tmp_path):
    ds = _small_dataset(region=None)
    path = write_netcdf(ds, tmp_path / "fish9.nc")
    xr.testing.assert_identical(open_dataset(path), ds)


def test_open_dataset_names_missing_parts(tmp_path):
    ds = _small_dataset().drop_vars(["dff", "region"])
    del ds.attrs["fish"]
    path = tmp_path / "broken.nc"
    ds.to_netcdf(path)
    with pytest.raises(InputFileError) as error:
        open_dataset(path)
    message = str(error.value)
    assert str(path) in message
    assert "missing data variables ['dff']" in message
    assert "missing coordinates ['region']" in message
    assert "missing attributes ['fish']" in message


def test_open_dataset_rejects_wrong_dims(tmp_path):
    ds = _small_dataset()
    ds["tail"] = ds["tail"].transpose("segment", "time")
    path = write_netcdf(ds, tmp_path / "fish9.nc")
    with pytest.raises(InputFileError, match=r"'tail' on dims \('segment', 'time'\)"):
        open_dataset(path)


def test_open_dataset_counts_non_finite_values(tmp_path):
    ds = _small_dataset()
    ds.dff.values[0, 0] = np.nan
    ds.dff.values[3, 2] = np.inf
    path = write_netcdf(ds, tmp_path / "fish9.nc")
    with pytest.raises(InputFileError, match=r"finite values in 'dff', found 2 NaN/inf of 32"):
        open_dataset(path)


def test_open_dataset_missing_or_unreadable_file(tmp_path):
    with pytest.raises(InputFileError, match="no such file"):
        open_dataset(tmp_path / "absent.nc")
    not_netcdf = tmp_path / "text.nc"
    not_netcdf.write_text("not a netCDF file\n")
    with pytest.raises(InputFileError, match="readable by xarray"):
        open_dataset(not_netcdf)


def test_chronological_split_by_hand():
    # No gap: floor(0.7 * 100) = 70, floor(0.8 * 100) = 80 (not 79 from 0.7 + 0.1 = 0.7999...).
    assert chronological_split(100) == {
        "train": slice(0, 70),
        "val": slice(70, 80),
        "test": slice(80, 100),
    }
    # Gap 5: 90 usable frames -> train 63, val floor(72) - 63 = 9, test 18; gaps 63..67, 77..81.
    assert chronological_split(100, gap_frames=5) == {
        "train": slice(0, 63),
        "val": slice(68, 77),
        "test": slice(82, 100),
    }
    # The reference's fish 9 split: 2132 / 305 / 610 of 3047 frames.
    lengths = {k: s.stop - s.start for k, s in chronological_split(3047).items()}
    assert lengths == {"train": 2132, "val": 305, "test": 610}


def test_chronological_split_rejects_bad_config():
    with pytest.raises(ConfigError, match="sum to 1"):
        chronological_split(100, train=0.7, val=0.2, test=0.2)
    with pytest.raises(ConfigError, match="gap_frames"):
        chronological_split(100, gap_frames=-1)
    with pytest.raises(ConfigError, match="at least one frame per block"):
        chronological_split(10, train=0.8, val=0.05, test=0.15)


def test_window_starts_lists():
    val = slice(68, 77)
    np.testing.assert_array_equal(window_starts(val, 5), [68, 69, 70, 71, 72])
    np.testing.assert_array_equal(window_starts(val, 5, stride=2), [68, 70, 72])
    np.testing.assert_array_equal(window_starts(val, 9), [68])
    assert window_starts(val, 10).size == 0
    with pytest.raises(ConfigError, match="window_frames"):
        window_starts(val, 0)


def test_check_window_fits_names_split_and_lengths():
    splits = chronological_split(100, gap_frames=5)
    check_window_fits(splits, 9)
    with pytest.raises(ConfigError) as error:
        check_window_fits(splits, 10)
    assert "split 'val' has 9 frames" in str(error.value)
    assert "found 10" in str(error.value)


def test_normaliser_uses_training_frames_only():
    # Train rows 0..2: neuron 0 = [1, 3, 5] (mean 3, std sqrt(8/3)), neuron 1 = [2, 2, 2]
    # (std 0 -> floored), neuron 2 = [0, 10, 20] (mean 10, std sqrt(200/3)).
    dff = np.array(
        [[1, 2, 0], [3, 2, 10], [5, 2, 20], [100, -7, 3], [200, 50, 9]], dtype=np.float32
    )
    train = slice(0, 3)
    normaliser = fit_input_normaliser(dff, train)
    floor = 0.01 * np.sqrt(8 / 3)  # 1 % of the median std
    np.testing.assert_allclose(normaliser.mean, [3, 2, 10], rtol=1e-6)
    np.testing.assert_allclose(normaliser.std, [np.sqrt(8 / 3), floor, np.sqrt(200 / 3)], rtol=1e-6)
    changed = dff.copy()
    changed[3:] = np.random.default_rng(0).normal(size=(2, 3))
    refit = fit_input_normaliser(changed, train)
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
    from nlp4neuro.dataset import lag_neural

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
