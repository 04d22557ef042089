"""Tests for nlp4neuro.ingest.nwb: NWB traces, ROI geometry, tail angles and epochs.

Every expected number is computed by hand from values the fixtures write.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from fixtures_ingest import check_ingested_contract, params, suite2p_style_nwb, two_plane_nwb

from nlp4neuro.errors import ConfigError, InputFileError
from nlp4neuro.ingest.nwb import ingest_nwb


def _from_file(**data):
    """Parameters whose pixel size is read from the file (ImagingPlane.grid_spacing)."""
    return dataclasses.replace(params(**data), pixel_size_um=None)


def test_ingest_nwb_two_planes_timestamps(tmp_path: Path) -> None:
    path = two_plane_nwb(tmp_path / "fish.nwb")
    ds = ingest_nwb(path, "n1", _from_file(plane_spacing_um=10.0))
    check_ingested_contract(ds)
    # (time, roi) in the file -> (neuron, frame); plane 0 ROIs first
    np.testing.assert_array_equal(
        ds["F"].values[:, :3], [[0, 1, 2], [100, 101, 102], [1000, 1001, 1002]]
    )
    np.testing.assert_array_equal(ds["plane"].values, [0, 0, 1])
    np.testing.assert_array_equal(ds["roi"].values, [0, 1, 0])
    # 0.5 um per pixel from grid_spacing; centroids (y, x) = (3, 3), (1, 7), (5, 7.5)
    np.testing.assert_allclose(ds["y_um"].values, [1.5, 0.5, 2.5])
    np.testing.assert_allclose(ds["x_um"].values, [1.5, 3.5, 3.75])
    np.testing.assert_allclose(ds["z_um"].values, [0, 0, 10])
    np.testing.assert_allclose(ds["time_offset_s"].values, [0, 0, 0.25])  # from the timestamps
    assert ds.attrs["frame_rate_hz"] == pytest.approx(2.0)
    assert ds.attrs["first_frame_time_s"] == 10.0
    # per-frame means 0.1 f + 0.01 j for frames 0..4; frame 5 has no samples
    np.testing.assert_array_equal(ds["tail_frame"].values, np.arange(5))
    f, j = np.meshgrid(np.arange(5), np.arange(6), indexing="ij")
    np.testing.assert_allclose(ds["tail"].values, 0.1 * f + 0.01 * j, atol=1e-6)
    counts = json.loads(ds.attrs["counts"])
    assert counts["n_samples_outside_imaging"] == 2
    assert counts["n_trailing_frames_dropped"] == 1
    assert counts["signal_kind"] == "fluorescence"
    assert counts["roi_series"] == ["plane0", "plane1"] and counts["tail_series"] == "tail_angles"
    ingest = json.loads(ds.attrs["ingest"])
    assert ingest["format"] == "nwb" and ingest["pixel_size_um"] == 0.5
    # epoch [10.0, 11.0): frames at 10.0 and 10.5
    assert list(ds["stimulus"].values) == ["forward", "forward", "", "", "", ""]
    # the configured pixel size wins over the file's
    ds = ingest_nwb(path, "n1", params(pixel_size_um=2.0))
    np.testing.assert_allclose(ds["y_um"].values, [6.0, 2.0, 10.0])


def test_ingest_nwb_suite2p_style_voxel_masks_dff_degrees(tmp_path: Path) -> None:
    path = suite2p_style_nwb(tmp_path / "s2p.nwb")
    ds = ingest_nwb(path, "3", params(pixel_size_um=0.6))
    check_ingested_contract(ds)
    np.testing.assert_array_equal(ds["plane"].values, [0, 1, 1])
    np.testing.assert_array_equal(ds["roi"].values, [0, 0, 1])
    np.testing.assert_allclose(ds["y_um"].values, 0.6 * np.array([2, 7, 3]))
    np.testing.assert_allclose(ds["x_um"].values, 0.6 * np.array([4, 1, 3]))
    np.testing.assert_allclose(ds["F"].values, np.arange(15).reshape(5, 3).T / 10)
    # one series for all planes: offsets from the scan model plane / n_planes / rate
    np.testing.assert_allclose(ds["time_offset_s"].values, [0, 0.5 / 1.1, 0.5 / 1.1])
    assert ds.attrs["signal_kind"] == "dff" and ds["F"].attrs["units"] == "1"
    np.testing.assert_allclose(ds["tail"].values[:, 0], np.deg2rad(10.0 * np.arange(5)), atol=1e-6)
    # mask_order xy swaps rows and columns
    ds = ingest_nwb(path, "3", params(pixel_size_um=0.6, nwb={"mask_order": "xy"}))
    np.testing.assert_allclose(ds["x_um"].values, 0.6 * np.array([2, 7, 3]))
    with pytest.raises(ConfigError, match=r"data\.pixel_size_um"):
        ingest_nwb(path, "3", _from_file())  # no grid_spacing in the file


def test_ingest_nwb_errors_list_what_the_file_has(tmp_path: Path) -> None:
    path = two_plane_nwb(tmp_path / "nobehaviour.nwb", with_behavior=False)
    with pytest.raises(
        InputFileError,
        match=r"processing module 'behavior'.*processing/ophys: \[Fluorescence "
        r"\(Fluorescence\), ImageSegmentation \(ImageSegmentation\)\]; acquisition: \[\]",
    ):
        ingest_nwb(path, "1", params())
    with pytest.raises(InputFileError, match=r"processing module 'calcium'.*processing/ophys"):
        ingest_nwb(path, "1", params(nwb={"ophys_module": "calcium"}))
    with pytest.raises(InputFileError, match=r"RoiResponseSeries 'plane7'.*\['plane0', 'plane1'\]"):
        ingest_nwb(path, "1", params(nwb={"roi_series": "plane7"}))
    path = suite2p_style_nwb(tmp_path / "meters.nwb", tail_unit="meters")
    with pytest.raises(InputFileError, match=r"radians or degrees \(tail\), found unit 'meters'"):
        ingest_nwb(path, "1", params(pixel_size_um=1.0))
    with pytest.raises(InputFileError, match=r"TimeSeries named 'fins'.*\['tail'\]"):
        ingest_nwb(path, "1", params(nwb={"tail_series": "fins"}))
    (tmp_path / "not.nwb").write_bytes(b"plain text")
    with pytest.raises(InputFileError, match=r"not.nwb: expected a readable NWB"):
        ingest_nwb(tmp_path / "not.nwb", "1", params())
    with pytest.raises(InputFileError, match=r"absent.nwb: expected an NWB file"):
        ingest_nwb(tmp_path / "absent.nwb", "1", params())
