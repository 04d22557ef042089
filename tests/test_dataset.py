"""Tests for nlp4neuro.dataset with hand-computed expectations."""

from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr

from nlp4neuro import __version__
from nlp4neuro.dataset import assemble_dataset, open_dataset, write_netcdf
from nlp4neuro.errors import InputFileError

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
