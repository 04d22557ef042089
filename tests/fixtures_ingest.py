"""Writers of tiny example inputs for the ingest tests (a plain module the tests import).

Every value is chosen so that a test can compute the expected numbers by hand.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from nlp4neuro.config import section
from nlp4neuro.conventions import segment_names
from nlp4neuro.ingest import IngestParams

PAPER_FRAME_RATE_HZ = 1.1
PAPER_TRAILING_FRAMES = 2  # the paper's tail ends 2 imaging frames before the neural data


def params(**data: Any) -> IngestParams:
    """IngestParams of the validated ``data`` section with `data` set, the rest at defaults."""
    return IngestParams.from_config(section("data", **data))


# --------------------------------------------------------------------------------------------
# suite2p plane folders
# --------------------------------------------------------------------------------------------


def stat_array(meds: list[tuple[float, float]], lam: bool = False) -> np.ndarray:
    """Object array of suite2p-like ROI dicts with the given `med` ([y, x]) values."""
    entries = []
    for y, x in meds:
        entry = {"med": [int(y), np.int64(x)], "npix": 1}  # suite2p mixes int types
        if lam:
            # Two pixels (y, x) and (y + 1, x + 2) with weights 3 and 1:
            # centroid = (y + 0.25, x + 0.5).
            entry.update(
                ypix=np.array([y, y + 1]), xpix=np.array([x, x + 2]), lam=np.array([3.0, 1.0])
            )
        entries.append(entry)
    out = np.empty(len(entries), dtype=object)
    out[:] = entries
    return out


def plane_F(plane: int, n_rois: int, n_frames: int) -> np.ndarray:
    """F[r, t] = 100 * plane + 10 * roi + t: every value says where it came from."""
    r = np.arange(n_rois)[:, None]
    t = np.arange(n_frames)[None, :]
    return (100.0 * plane + 10.0 * r + t).astype(np.float32)


def write_plane(
    folder: Path,
    plane: int,
    n_rois: int = 3,
    n_frames: int = 5,
    *,
    fneu: bool = False,
    iscell: np.ndarray | None = None,
    ops: dict | None = None,
    settings: dict | None = None,
    lam: bool = False,
    F: np.ndarray | None = None,
) -> None:
    """One suite2p plane folder; ROI r has med [y, x] = [2 r + plane, 4 r + 1]."""
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "F.npy", plane_F(plane, n_rois, n_frames) if F is None else F)
    if fneu:
        np.save(folder / "Fneu.npy", plane_F(plane, n_rois, n_frames) / 2)
    if iscell is not None:
        np.save(folder / "iscell.npy", iscell)
    if ops is not None:
        np.save(folder / "ops.npy", ops, allow_pickle=True)
    if settings is not None:
        np.save(folder / "settings.npy", settings, allow_pickle=True)
    meds = [(2.0 * r + plane, 4.0 * r + 1) for r in range(n_rois)]
    np.save(folder / "stat.npy", stat_array(meds, lam=lam), allow_pickle=True)


def tail_frame(frames: list[int], theta0: list[float], n_seg: int = 6) -> pd.DataFrame:
    """A tail table: segment k angle = theta0 + k; t = sample index / 200 Hz."""
    data = {name: np.asarray(theta0, float) + k for k, name in enumerate(segment_names(n_seg))}
    data["t"] = np.arange(len(frames)) / 200.0
    data["frame"] = np.asarray(frames, dtype=np.int64)
    return pd.DataFrame(data)


def write_paper_raw_fixture(
    out_dir: str | Path,
    *,
    fish: int = 9,
    rois_per_plane: Sequence[int] = (3, 2),
    n_frames: int = 12,
    samples_per_frame: int = 4,
    tail_frames: int | None = None,
    frame_rate_hz: float = PAPER_FRAME_RATE_HZ,
    seed: int = 0,
) -> Path:
    """Write a tiny fish in the paper's published raw layout; return its fish folder.

    Layout (exactly the published one, nothing more): ``out_dir/raw_data_f{fish}/plane_{k}/``
    with ``F.npy`` (float32, n_rois x n_frames), a pickled ``stat.npy`` (dicts with ``med``
    [y, x], ``ypix``, ``xpix``, ``lam``, ``npix``) and ``tail_df.h5`` (key ``tail``; an identical
    copy in every plane, as published). No Fneu.npy, iscell.npy or ops.npy.

    - ``F[r, t]`` of plane k = ``1000 + 100 k + 10 r + t`` plus uniform noise in [0, 0.5)
      (from ``seed``);
    - ROI r of plane k covers pixels (y, x) = (10 k + r, 20 + r) with weight 3 and
      (10 k + r + 1, 20 + r + 2) with weight 1: lam-weighted centroid (10 k + r + 0.25, 20 + r +
      0.5); ``med`` = (10 k + r, 20 + r);
    - tail: ``samples_per_frame`` samples per frame for frames 0..tail_frames-1 (default
      n_frames - 2: the last 2 frames have none, as in the paper); angle j at frame f =
      ``0.01 f + 0.001 j`` plus offsets that average to exactly zero within the frame;
      ``t`` = frame / rate + sample / (rate * n).
    """
    assert n_frames >= PAPER_TRAILING_FRAMES + 1 and samples_per_frame >= 1 and rois_per_plane
    rng = np.random.default_rng(seed)
    fish_dir = Path(out_dir) / f"raw_data_f{fish}"
    if tail_frames is None:
        tail_frames = n_frames - PAPER_TRAILING_FRAMES
    tail = _paper_tail(tail_frames, samples_per_frame, frame_rate_hz)
    for k, n_rois in enumerate(rois_per_plane):
        folder = fish_dir / f"plane_{k}"
        folder.mkdir(parents=True, exist_ok=True)
        r = np.arange(n_rois)[:, None]
        t = np.arange(n_frames)[None, :]
        F = 1000.0 + 100.0 * k + 10.0 * r + t + rng.uniform(0, 0.5, (n_rois, n_frames))
        np.save(folder / "F.npy", F.astype(np.float32))
        stat = np.empty(n_rois, dtype=object)
        stat[:] = [
            {
                "med": [10 * k + i, 20 + i],
                "ypix": np.array([10 * k + i, 10 * k + i + 1]),
                "xpix": np.array([20 + i, 22 + i]),
                "lam": np.array([3.0, 1.0], dtype=np.float32),
                "npix": 2,
            }
            for i in range(n_rois)
        ]
        np.save(folder / "stat.npy", stat, allow_pickle=True)
        tail.to_hdf(folder / "tail_df.h5", key="tail", mode="w")
    return fish_dir


def _paper_tail(n_tail_frames: int, samples_per_frame: int, rate: float) -> pd.DataFrame:
    frame = np.repeat(np.arange(n_tail_frames), samples_per_frame)
    # Symmetric offsets (-a, ..., +a) sum to zero, so the per-frame mean is the base angle.
    offsets = np.tile(np.linspace(-0.002, 0.002, samples_per_frame), n_tail_frames)
    tail = pd.DataFrame(
        {
            name: 0.01 * frame + 0.001 * j + offsets * (j + 1)
            for j, name in enumerate(segment_names(6))
        }
    )
    sample = np.tile(np.arange(samples_per_frame), n_tail_frames)
    tail["t"] = frame / rate + sample / (rate * samples_per_frame)
    tail["frame"] = frame.astype(np.int64)
    return tail


# --------------------------------------------------------------------------------------------
# functional_types_df.h5 and prepared matrices
# --------------------------------------------------------------------------------------------


def write_functional_types(path: Path, index: Sequence[int] | None = None, **columns) -> Path:
    """A 5-neuron region table (planes 0,0,0,1,1); `columns` replace columns, `index` the rows."""
    table = pd.DataFrame(
        {
            "neur_coords": [[10.0, 20.0], [11.0, 21.0], [12.0, 22.0], [30.0, 40.0], [31.0, 41.0]],
            "plane": ["0", "0", "0", "1", "1"],
            "region": ["Pt", None, "Hb", np.nan, "Pt"],
            "motor_corr": [0.1, 0.2, 0.3, 0.4, 0.5],
        }
    )
    for key, value in columns.items():
        table[key] = value
    if index is not None:
        table = table.set_axis(list(index))
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PyTables pickles the object columns (a perf warning)
        table.to_hdf(path, key="df", mode="w")
    return path


def write_prepared(data_dir: Path, fish: int, n_neurons: int, n_frames: int, n_tail: int):
    """The two prepared matrices: neural[i, t] = (i T + t) / 100, tail[f, j] = (6 f + j) / 1000."""
    data_dir.mkdir(parents=True, exist_ok=True)
    neural = (np.arange(n_neurons * n_frames).reshape(n_neurons, n_frames) / 100).astype(np.float32)
    tail = (np.arange(n_tail * 6).reshape(n_tail, 6) / 1000).astype(np.float32)
    np.save(data_dir / f"fish{fish}_neural_data_matched.npy", neural)
    np.save(data_dir / f"fish{fish}_tail_data_matched.npy", tail)
    return neural, tail


# --------------------------------------------------------------------------------------------
# NWB files
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


def _write_nwb(nwb, path: Path) -> Path:
    from pynwb import NWBHDF5IO

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # hdmf warns about linked tables across containers
        with NWBHDF5IO(str(path), "w") as io:
            io.write(nwb)
    return path


def _add_two_planes(nwb) -> None:
    """plane0: image masks, ROIs (3, 3) and (1, 7); plane1: pixel mask, ROI (5, 7.5)."""
    from pynwb.ophys import Fluorescence, ImageSegmentation, RoiResponseSeries

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


def two_plane_nwb(path: Path, *, with_behavior: bool = True) -> Path:
    """Two planes (2 Hz), one PlaneSegmentation and RoiResponseSeries each; tail in radians.

    plane0 (image_mask, 8 x 10): ROI0 pixels (row 2, col 3) and (row 4, col 3) -> (y, x) = (3, 3);
    ROI1 pixel (1, 7). plane1 (pixel_mask, row first): ROI0 (5, 6, w 1) and (5, 8, w 3) ->
    (5, 7.5). Frames at 10.0 + 0.5 k (plane0) and 10.25 + 0.5 k (plane1), k = 0..5. Tail: 4
    samples in each of frames 0..4 with mean 0.1 f + 0.01 j, one sample before the imaging and
    one after the last frame's interval. Epoch [10, 11) "forward".
    """
    from pynwb import TimeSeries
    from pynwb.behavior import BehavioralTimeSeries

    nwb = _nwbfile()
    _add_two_planes(nwb)
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
    return _write_nwb(nwb, path)


def suite2p_style_nwb(path: Path, *, tail_unit: str = "degrees") -> Path:
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
    frame = np.repeat(np.arange(5), 10)  # 10 samples per frame for frames 0..4
    angles = np.outer(frame, np.ones(6)) * 10.0  # degrees: 10 * frame
    behavior = nwb.create_processing_module(name="behavior", description="tail")
    behavior.add(TimeSeries(name="tail", data=angles, unit=tail_unit, rate=11.0, starting_time=0.0))
    return _write_nwb(nwb, path)


# --------------------------------------------------------------------------------------------
# What every layout's dataset must hold
# --------------------------------------------------------------------------------------------

INGESTED_COORDS = {"plane", "roi", "x_um", "y_um", "z_um", "region", "time_offset_s", "stimulus"}
INGESTED_ATTRS = {
    "fish",
    "frame_rate_hz",
    "n_planes",
    "source_dir",
    "source_checksums",
    "counts",
    "ingest",
    "tail_coverage",
}


def check_ingested_contract(ds) -> None:
    """The dims, dtypes, coords and attrs every ingest layout shares."""
    import json

    assert set(ds.dims) == {"neuron", "frame", "tail_frame", "segment"}
    assert ds["F"].dims == ("neuron", "frame") and ds["F"].dtype == np.float32
    assert ds["tail"].dims == ("tail_frame", "segment") and ds["tail"].dtype == np.float32
    assert ds["tail"].attrs["units"] == "rad"
    assert INGESTED_COORDS <= set(ds.coords)
    assert INGESTED_ATTRS <= set(ds.attrs)
    for key in ("source_checksums", "counts", "ingest"):
        json.loads(ds.attrs[key])
    assert list(ds["segment"].values) == segment_names(6)
    assert 0.0 <= ds.attrs["tail_coverage"] <= 1.0
