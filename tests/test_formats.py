"""Tests for nlp4neuro.formats: the paper's raw and prepared layouts, annotations, NWB, images.

Every expected number is computed by hand from values the tests write.
"""

from __future__ import annotations

import json
import warnings
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nlp4neuro.errors import ConfigError, InputFileError
from nlp4neuro.formats import (
    ingest_nwb,
    ingest_prepared,
    labels_from_functional_types,
    read_functional_types,
    read_plane_images,
    write_paper_raw_fixture,
)
from nlp4neuro.io import IngestParams, ingest_fish

INGESTED_COORDS = {"plane", "roi", "x_um", "y_um", "z_um", "region", "time_offset_s", "stimulus"}
INGESTED_ATTRS = {
    "fish",
    "frame_rate_hz",
    "n_planes",
    "source_dir",
    "source_checksums",
    "counts",
    "ingest",
}


def _check_ingested_contract(ds) -> None:
    """The dims, dtypes, coords and attrs every ingest path shares with io.ingest_fish."""
    assert set(ds.dims) == {"neuron", "frame", "tail_frame", "segment"}
    assert ds["F"].dims == ("neuron", "frame") and ds["F"].dtype == np.float32
    assert ds["tail"].dims == ("tail_frame", "segment") and ds["tail"].dtype == np.float32
    assert ds["tail"].attrs["units"] == "rad"
    assert INGESTED_COORDS <= set(ds.coords)
    assert INGESTED_ATTRS <= set(ds.attrs)
    for key in ("source_checksums", "counts", "ingest"):
        json.loads(ds.attrs[key])
    assert list(ds["segment"].values) == [f"theta_{j:02d}" for j in range(6)]


# --------------------------------------------------------------------------------------------
# the paper's raw layout through io.ingest_fish
# --------------------------------------------------------------------------------------------


def test_paper_raw_layout_is_read_by_ingest_fish(tmp_path):
    fish_dir = write_paper_raw_fixture(tmp_path, fish=9, rois_per_plane=(3, 2), n_frames=12)
    # exactly the published files, nothing else
    assert sorted(str(p.relative_to(fish_dir)) for p in fish_dir.rglob("*") if p.is_file()) == [
        f"plane_{k}/{name}" for k in (0, 1) for name in ("F.npy", "stat.npy", "tail_df.h5")
    ]
    params = IngestParams(frame_rate_hz=1.1, pixel_size_um=0.5, plane_spacing_um=10.0)
    ds = ingest_fish(fish_dir, params, fish="9")
    _check_ingested_contract(ds)

    assert "Fneu" not in ds  # no neuropil in the published data
    expected_F = np.concatenate([np.load(fish_dir / f"plane_{k}/F.npy") for k in (0, 1)])
    np.testing.assert_array_equal(ds["F"].values, expected_F)
    np.testing.assert_array_equal(ds["plane"].values, [0, 0, 0, 1, 1])
    np.testing.assert_array_equal(ds["roi"].values, [0, 1, 2, 0, 1])
    # lam-weighted centroid (10k + r + 0.25, 20 + r + 0.5) pixels at 0.5 um/pixel
    np.testing.assert_allclose(ds["y_um"].values, 0.5 * np.array([0.25, 1.25, 2.25, 10.25, 11.25]))
    np.testing.assert_allclose(ds["x_um"].values, 0.5 * np.array([20.5, 21.5, 22.5, 20.5, 21.5]))
    np.testing.assert_allclose(ds["z_um"].values, [0, 0, 0, 10, 10])
    np.testing.assert_allclose(ds["time_offset_s"].values, [0, 0, 0, 0.5 / 1.1, 0.5 / 1.1])
    # tail: frames 0..9 (the last 2 have none); mean angle j at frame f = 0.01 f + 0.001 j
    np.testing.assert_array_equal(ds["tail_frame"].values, np.arange(10))
    f, j = np.meshgrid(np.arange(10), np.arange(6), indexing="ij")
    np.testing.assert_allclose(ds["tail"].values, 0.01 * f + 0.001 * j, atol=1e-7)
    counts = json.loads(ds.attrs["counts"])
    assert counts["n_trailing_frames_dropped"] == 2
    assert counts["n_samples_per_frame_median"] == 4
    assert counts["neuropil"] is False and counts["iscell_filter"] is False
    assert ds.attrs["frame_rate_hz"] == 1.1
    # only plane_0's copy of the tail table is read, as in the reference
    assert "plane_0/tail_df.h5" in json.loads(ds.attrs["source_checksums"])
    assert "plane_1/tail_df.h5" not in json.loads(ds.attrs["source_checksums"])


def test_paper_raw_layout_needs_the_frame_rate(tmp_path):
    fish_dir = write_paper_raw_fixture(tmp_path)
    with pytest.raises(InputFileError, match=r"'fs'.*frame_rate_hz argument"):
        ingest_fish(fish_dir, IngestParams(frame_rate_hz=None), fish="9")


# --------------------------------------------------------------------------------------------
# functional_types_df.h5
# --------------------------------------------------------------------------------------------


def _write_functional_types(path: Path, **overrides) -> Path:
    table = pd.DataFrame(
        {
            "neur_coords": [[10.0, 20.0], [11.0, 21.0], [12.0, 22.0], [30.0, 40.0], [31.0, 41.0]],
            "plane": ["0", "0", "0", "1", "1"],
            "region": ["Pt", None, "Hb", np.nan, "Pt"],
            "motor_corr": [0.1, 0.2, 0.3, 0.4, 0.5],
        }
    )
    for key, value in overrides.items():
        table[key] = value
    index = overrides.get("index", None)
    if index is not None:
        table = table.drop(columns="index").set_axis(index)
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PyTables pickles the object columns (a perf warning)
        table.to_hdf(path, key="df", mode="w")
    return path


def test_read_functional_types(tmp_path):
    table = read_functional_types(_write_functional_types(tmp_path / "ft.h5"))
    assert list(table.columns[:4]) == ["plane", "x_px", "y_px", "region"]
    assert table.index.name == "neuron"
    np.testing.assert_array_equal(table.index, np.arange(5))
    np.testing.assert_array_equal(table["plane"], [0, 0, 0, 1, 1])
    np.testing.assert_array_equal(table["x_px"], [10, 11, 12, 30, 31])  # neur_coords = [x, y]
    np.testing.assert_array_equal(table["y_px"], [20, 21, 22, 40, 41])
    assert list(table["region"]) == ["Pt", "", "Hb", "", "Pt"]
    np.testing.assert_allclose(table["motor_corr"], [0.1, 0.2, 0.3, 0.4, 0.5])


def test_labels_from_functional_types_roi_within_plane(tmp_path):
    table = read_functional_types(_write_functional_types(tmp_path / "ft.h5"))
    labels = labels_from_functional_types(table)
    assert list(labels.columns) == ["plane", "roi", "region"]
    np.testing.assert_array_equal(labels["plane"], [0, 0, 0, 1, 1])
    np.testing.assert_array_equal(labels["roi"], [0, 1, 2, 0, 1])
    # a subset of neurons needs the plane sizes: global 1 -> plane 0 roi 1, 4 -> plane 1 roi 1
    subset = table.loc[[1, 4]]
    sub = labels_from_functional_types(subset, plane_sizes=[3, 2])
    np.testing.assert_array_equal(sub["roi"], [1, 1])
    with pytest.raises(InputFileError, match=r"every neuron 0..N-1.*2 rows with indices 1..4"):
        labels_from_functional_types(subset)
    with pytest.raises(InputFileError, match=r"neuron 4 inside plane 1's index range \[3, 4\)"):
        labels_from_functional_types(subset, plane_sizes=[3, 1])


def test_functional_types_bad_input(tmp_path):
    path = _write_functional_types(tmp_path / "a.h5", plane=["0", "1", "0", "1", "1"])
    with pytest.raises(InputFileError, match=r"plane never decreasing.*plane 1 at neuron 1"):
        labels_from_functional_types(read_functional_types(path), source=path)
    bad = [[1.0, 2.0], [1.0], [1.0, 2.0], [1.0, 2.0], [1.0, 2.0]]
    path = _write_functional_types(tmp_path / "b.h5", neur_coords=bad)
    with pytest.raises(InputFileError, match=r"neur_coords = \[x, y\] pixels, found \[1.0\] at"):
        read_functional_types(path)
    path = _write_functional_types(tmp_path / "c.h5", plane=["0", "0", "top", "1", "1"])
    with pytest.raises(InputFileError, match=r"plane number in every row.*'top' at neuron 2"):
        read_functional_types(path)
    pd.DataFrame({"plane": ["0"]}).to_hdf(tmp_path / "d.h5", key="df")
    with pytest.raises(InputFileError, match=r"missing \['neur_coords'\]"):
        read_functional_types(tmp_path / "d.h5")


# --------------------------------------------------------------------------------------------
# prepared matrices
# --------------------------------------------------------------------------------------------


def _write_prepared(data_dir: Path, fish: int, n_neurons: int, n_frames: int, n_tail: int):
    data_dir.mkdir(parents=True, exist_ok=True)
    neural = (np.arange(n_neurons * n_frames).reshape(n_neurons, n_frames) / 100).astype(np.float32)
    tail = (np.arange(n_tail * 6).reshape(n_tail, 6) / 1000).astype(np.float32)
    np.save(data_dir / f"fish{fish}_neural_data_matched.npy", neural)
    np.save(data_dir / f"fish{fish}_tail_data_matched.npy", tail)
    return neural, tail


def test_ingest_prepared_with_functional_types(tmp_path):
    data_dir = tmp_path / "exp1-4_data" / "fish11" / "data"
    neural, tail = _write_prepared(data_dir, 11, n_neurons=5, n_frames=8, n_tail=6)
    _write_functional_types(data_dir / "functional_types_df.h5")
    ds = ingest_prepared(data_dir, 11, pixel_size_um=0.6, plane_spacing_um=10.0)
    _check_ingested_contract(ds)
    np.testing.assert_array_equal(ds["F"].values, neural)
    np.testing.assert_array_equal(ds["tail"].values, tail)
    np.testing.assert_array_equal(ds["frame"].values, np.arange(8))
    np.testing.assert_array_equal(ds["tail_frame"].values, np.arange(6))  # last 2 frames dropped
    np.testing.assert_array_equal(ds["plane"].values, [0, 0, 0, 1, 1])
    np.testing.assert_array_equal(ds["roi"].values, [0, 1, 2, 0, 1])
    np.testing.assert_allclose(ds["x_um"].values, 0.6 * np.array([10, 11, 12, 30, 31]))
    np.testing.assert_allclose(ds["y_um"].values, 0.6 * np.array([20, 21, 22, 40, 41]))
    np.testing.assert_allclose(ds["z_um"].values, [0, 0, 0, 10, 10])
    np.testing.assert_allclose(ds["time_offset_s"].values, [0, 0, 0, 0.5 / 1.1, 0.5 / 1.1])
    assert list(ds["region"].values) == ["Pt", "", "Hb", "", "Pt"]
    assert ds.attrs["signal_kind"] == "reference" and ds.attrs["source_format"] == "prepared"
    assert "preprocessing mode 'raw'" in ds.attrs["normalisation"]
    counts = json.loads(ds.attrs["counts"])
    assert counts["n_trailing_frames_dropped"] == 2
    assert counts["position_source"] == "functional_types"
    assert set(json.loads(ds.attrs["source_checksums"])) == {
        "fish11_neural_data_matched.npy",
        "fish11_tail_data_matched.npy",
        "functional_types_df.h5",
    }


def test_ingest_prepared_positions_unknown_or_from_raw(tmp_path):
    data_dir = tmp_path / "fish9" / "data"
    _write_prepared(data_dir, 9, n_neurons=5, n_frames=8, n_tail=6)
    ds = ingest_prepared(data_dir, 9)
    np.testing.assert_array_equal(ds["plane"].values, [-1] * 5)
    np.testing.assert_array_equal(ds["roi"].values, [-1] * 5)
    assert np.isnan(ds["x_um"].values).all() and np.isnan(ds["time_offset_s"].values).all()
    assert list(ds["region"].values) == [""] * 5

    raw = write_paper_raw_fixture(tmp_path / "raw", fish=9, rois_per_plane=(3, 2))
    ds = ingest_prepared(data_dir, 9, raw_fish_dir=raw, pixel_size_um=0.5)
    np.testing.assert_array_equal(ds["plane"].values, [0, 0, 0, 1, 1])
    np.testing.assert_array_equal(ds["roi"].values, [0, 1, 2, 0, 1])
    np.testing.assert_allclose(ds["x_um"].values, 0.5 * np.array([20.5, 21.5, 22.5, 20.5, 21.5]))
    assert json.loads(ds.attrs["counts"])["position_source"] == "raw_stat"

    wrong = write_paper_raw_fixture(tmp_path / "raw2", fish=9, rois_per_plane=(3, 3))
    with pytest.raises(InputFileError, match=r"expected 5 ROIs over all planes.*found 6 ROIs"):
        ingest_prepared(data_dir, 9, raw_fish_dir=wrong)


@pytest.mark.parametrize("n_tail", [5, 9])
def test_ingest_prepared_frame_mismatch_names_both_files(tmp_path, n_tail):
    _write_prepared(tmp_path, 10, n_neurons=3, n_frames=8, n_tail=n_tail)
    with pytest.raises(
        InputFileError,
        match=rf"fish10_tail_data_matched.npy: expected 6 to 8 rows \(the 8 frames of "
        rf"fish10_neural_data_matched.npy.*found {n_tail} rows",
    ):
        ingest_prepared(tmp_path, 10)


def test_ingest_prepared_missing_file(tmp_path):
    with pytest.raises(InputFileError, match=r"fish12_neural_data_matched.npy: expected an exist"):
        ingest_prepared(tmp_path, 12)


# --------------------------------------------------------------------------------------------
# NWB
# --------------------------------------------------------------------------------------------


def _nwbfile():
    from pynwb import NWBFile

    return NWBFile(
        session_description="tiny test fish",
        identifier="fish-test",
        session_start_time=datetime(2024, 1, 1, tzinfo=UTC),
    )


def _imaging_plane(nwb, name, grid_spacing=None):
    from pynwb.ophys import OpticalChannel

    device = nwb.devices.get("2p") or nwb.create_device(name="2p")
    channel = OpticalChannel(name="green", description="GCaMP", emission_lambda=510.0)
    kwargs = {"grid_spacing": grid_spacing, "grid_spacing_unit": "meters"} if grid_spacing else {}
    return nwb.create_imaging_plane(
        name=name,
        optical_channel=channel,
        description=name,
        device=device,
        excitation_lambda=920.0,
        indicator="GCaMP6s",
        location="brain",
        **kwargs,
    )


def _write(nwb, path: Path) -> Path:
    from pynwb import NWBHDF5IO

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # hdmf warns about linked tables across containers
        with NWBHDF5IO(str(path), "w") as io:
            io.write(nwb)
    return path


def _two_plane_nwb(path: Path, *, with_behavior: bool = True) -> Path:
    """Two planes (2 Hz), one PlaneSegmentation and RoiResponseSeries each; tail in radians.

    plane0 (image_mask, 8 x 10): ROI0 pixels (row 2, col 3) and (row 4, col 3) -> (y, x) = (3, 3);
    ROI1 pixel (1, 7). plane1 (pixel_mask, row first): ROI0 (5, 6, w 1) and (5, 8, w 3) ->
    (5, 7.5). Frames at 10.0 + 0.5 k (plane0) and 10.25 + 0.5 k (plane1), k = 0..5.
    """
    from pynwb import TimeSeries
    from pynwb.behavior import BehavioralTimeSeries
    from pynwb.ophys import Fluorescence, ImageSegmentation, RoiResponseSeries

    nwb = _nwbfile()
    ophys = nwb.create_processing_module(name="ophys", description="calcium")
    segmentation = ImageSegmentation()
    ophys.add(segmentation)
    fluorescence = Fluorescence()
    ophys.add(fluorescence)
    t = np.arange(6)
    for k in (0, 1):
        plane = _imaging_plane(nwb, f"imaging_plane{k}", grid_spacing=[0.5e-6, 0.5e-6])
        ps = segmentation.create_plane_segmentation(
            name=f"PlaneSegmentation{k}", description="rois", imaging_plane=plane
        )
        if k == 0:
            first = np.zeros((8, 10))
            first[2, 3] = first[4, 3] = 1.0
            second = np.zeros((8, 10))
            second[1, 7] = 2.0
            ps.add_roi(image_mask=first)
            ps.add_roi(image_mask=second)
            data = np.stack([t, 100 + t], axis=1).astype(float)  # (time, roi)
        else:
            ps.add_roi(pixel_mask=[(5, 6, 1.0), (5, 8, 3.0)])
            data = (1000 + t)[:, None].astype(float)
        rois = ps.create_roi_table_region(region=list(range(len(ps))), description="all")
        fluorescence.add_roi_response_series(
            RoiResponseSeries(
                name=f"plane{k}",
                data=data,
                rois=rois,
                unit="a.u.",
                timestamps=10.0 + 0.25 * k + 0.5 * t,
            )
        )
    if with_behavior:
        frames = np.repeat(np.arange(5), 4)  # 4 samples in each of frames 0..4, none in frame 5
        within = np.tile([0.0, 0.1, 0.2, 0.3], 5)
        offsets = np.tile([-0.03, -0.01, 0.01, 0.03], 5)
        angles = 0.1 * frames[:, None] + 0.01 * np.arange(6)[None, :] + offsets[:, None]
        times = 10.0 + 0.5 * frames + within
        # one sample before the imaging, one after the last frame's interval (ends 13.0 s)
        angles = np.vstack([np.full((1, 6), 9.0), angles, np.full((1, 6), 9.0)])
        times = np.concatenate([[9.9], times, [13.1]])
        behavior = nwb.create_processing_module(name="behavior", description="tail")
        behavior.add(
            BehavioralTimeSeries(
                time_series=TimeSeries(
                    name="tail_angles", data=angles, unit="radians", timestamps=times
                )
            )
        )
    nwb.add_epoch_column(name="stimulus", description="visual stimulus")
    nwb.add_epoch(start_time=10.0, stop_time=11.0, stimulus="forward")
    return _write(nwb, path)


def test_ingest_nwb_two_planes_timestamps(tmp_path):
    ds = ingest_nwb(_two_plane_nwb(tmp_path / "fish.nwb"), fish="n1", plane_spacing_um=10.0)
    _check_ingested_contract(ds)
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
    # epoch [10.0, 11.0): frames at 10.0 and 10.5
    assert list(ds["stimulus"].values) == ["forward", "forward", "", "", "", ""]


def _suite2p_style_nwb(path: Path, *, tail_unit: str = "degrees") -> Path:
    """suite2p's multi-plane export: one PlaneSegmentation with voxel masks (z = plane), one
    DfOverF series at 1.1 Hz; tail at 11 Hz (10 samples per frame) in degrees."""
    from pynwb import TimeSeries
    from pynwb.ophys import DfOverF, ImageSegmentation, RoiResponseSeries

    nwb = _nwbfile()
    ophys = nwb.create_processing_module(name="ophys", description="calcium")
    segmentation = ImageSegmentation()
    ophys.add(segmentation)
    ps = segmentation.create_plane_segmentation(
        name="PlaneSegmentation", description="rois", imaging_plane=_imaging_plane(nwb, "vol")
    )
    ps.add_roi(voxel_mask=[(2, 4, 0, 1.0)])  # (y, x, plane, lam) as suite2p writes it
    ps.add_roi(voxel_mask=[(6, 1, 1, 1.0), (8, 1, 1, 1.0)])
    ps.add_roi(voxel_mask=[(3, 3, 1, 1.0)])
    rois = ps.create_roi_table_region(region=[0, 1, 2], description="all")
    dff = DfOverF()
    ophys.add(dff)
    data = np.arange(15, dtype=float).reshape(5, 3) / 10
    dff.add_roi_response_series(
        RoiResponseSeries(name="Deconvolved", data=data, rois=rois, unit="1", rate=1.1)
    )
    n = 50  # 10 samples per frame for frames 0..4
    frame = np.repeat(np.arange(5), 10)
    angles = np.outer(frame, np.ones(6)) * 10.0  # degrees: 10 * frame
    behavior = nwb.create_processing_module(name="behavior", description="tail")
    behavior.add(
        TimeSeries(name="tail", data=angles[:n], unit=tail_unit, rate=11.0, starting_time=0.0)
    )
    return _write(nwb, path)


def test_ingest_nwb_suite2p_style_voxel_masks_dff_degrees(tmp_path):
    ds = ingest_nwb(_suite2p_style_nwb(tmp_path / "s2p.nwb"), fish=3, pixel_size_um=0.6)
    _check_ingested_contract(ds)
    np.testing.assert_array_equal(ds["plane"].values, [0, 1, 1])
    np.testing.assert_array_equal(ds["roi"].values, [0, 0, 1])
    np.testing.assert_allclose(ds["y_um"].values, 0.6 * np.array([2, 7, 3]))
    np.testing.assert_allclose(ds["x_um"].values, 0.6 * np.array([4, 1, 3]))
    np.testing.assert_allclose(ds["F"].values, np.arange(15).reshape(5, 3).T / 10)
    # one series for all planes: offsets from the scan model plane / n_planes / rate
    np.testing.assert_allclose(ds["time_offset_s"].values, [0, 0.5 / 1.1, 0.5 / 1.1])
    assert ds.attrs["signal_kind"] == "dff" and ds["F"].attrs["units"] == "1"
    np.testing.assert_allclose(ds["tail"].values[:, 0], np.deg2rad(10.0 * np.arange(5)), atol=1e-6)
    with pytest.raises(ConfigError, match="pixel_size_um"):
        ingest_nwb(tmp_path / "s2p.nwb", fish=3)  # no grid_spacing in the file


def test_ingest_nwb_errors_list_what_the_file_has(tmp_path):
    path = _two_plane_nwb(tmp_path / "nobehaviour.nwb", with_behavior=False)
    with pytest.raises(
        InputFileError,
        match=r"processing module 'behavior'.*processing/ophys: \[Fluorescence "
        r"\(Fluorescence\), ImageSegmentation \(ImageSegmentation\)\]; acquisition: \[\]",
    ):
        ingest_nwb(path, fish=1)
    with pytest.raises(InputFileError, match=r"processing module 'calcium'.*processing/ophys"):
        ingest_nwb(path, fish=1, ophys_module="calcium")
    with pytest.raises(InputFileError, match=r"RoiResponseSeries 'plane7'.*\['plane0', 'plane1'\]"):
        ingest_nwb(path, fish=1, roi_series="plane7")
    path = _suite2p_style_nwb(tmp_path / "meters.nwb", tail_unit="meters")
    with pytest.raises(InputFileError, match=r"radians or degrees \(tail\), found unit 'meters'"):
        ingest_nwb(path, fish=1, pixel_size_um=1.0)
    (tmp_path / "not.nwb").write_bytes(b"plain text")
    with pytest.raises(InputFileError, match=r"not.nwb: expected a readable NWB"):
        ingest_nwb(tmp_path / "not.nwb", fish=1)


# --------------------------------------------------------------------------------------------
# plane images
# --------------------------------------------------------------------------------------------


def test_read_plane_images_tiff_named_jpg_and_real_jpeg(tmp_path):
    import matplotlib.image
    import tifffile

    tiff = np.arange(12, dtype=np.uint16).reshape(3, 4)
    tifffile.imwrite(tmp_path / "plane_0.jpg", tiff)  # what the paper ships: TIFF named .jpg
    rgb = np.zeros((5, 6, 3), dtype=np.uint8)
    rgb[..., :] = 90
    matplotlib.image.imsave(tmp_path / "plane_1.png", rgb)
    (tmp_path / "notes.txt").write_text("ignored")
    images = read_plane_images(tmp_path)
    assert sorted(images) == [0, 1]
    np.testing.assert_array_equal(images[0], tiff)
    assert images[1].shape == (5, 6)
    np.testing.assert_allclose(images[1], 90 / 255, atol=1e-6)


def test_read_plane_images_errors(tmp_path):
    with pytest.raises(InputFileError, match=r"plane_<k>.jpg"):
        read_plane_images(tmp_path)
    (tmp_path / "plane_0.jpg").write_bytes(b"not an image")
    with pytest.raises(InputFileError, match=r"plane_0.jpg: expected a TIFF, JPEG or PNG"):
        read_plane_images(tmp_path)
