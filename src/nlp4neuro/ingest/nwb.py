"""Neurodata Without Borders files (data.source nwb) into the ingested dataset.

Imaging: the ``RoiResponseSeries`` in a ``Fluorescence`` container of processing module
``data.nwb.ophys_module`` (else a ``DfOverF`` container: ``signal_kind`` is then "dff" and the
preprocessing mode must be ``raw``). Every series in the container is read (or only
``data.nwb.roi_series``), e.g. one per plane; data are (time, roi) in NWB and are transposed to
(neuron, frame). Neurons are ordered by plane, then by row of their PlaneSegmentation.

Geometry: weighted centroids of ``image_mask`` / ``pixel_mask`` / ``voxel_mask``. NWB names the
mask fields (x, y[, z]) but producers differ; ``data.nwb.mask_order`` "yx" reads the first field
or image axis as the row (suite2p's NWB export and numpy images), "xy" as the column. The plane
of a ROI is its voxel-mask z (rounded), else a ``plane`` column of its PlaneSegmentation, else
the index of its PlaneSegmentation (in the natural order of the series names). ``roi`` is the
ROI's rank among its segmentation's ROIs of the same plane.

Behaviour: a 2-D TimeSeries (samples, segments) in processing module
``data.nwb.behavior_module`` (directly or inside e.g. BehavioralTimeSeries), in radians (degrees
are converted); each sample goes to the imaging frame whose interval [t_k, t_k+1) contains its
timestamp (the last frame's interval is one frame period long), then angles are averaged per
frame with :func:`nlp4neuro.ingest.tail.tail_per_frame`. Samples outside the imaging are dropped
and counted.

Frame times are those of the series that starts first. ``time_offset_s`` is each series' start
relative to it; when all series start together (a single series, or volume-stamped planes) it
is ``plane / n_planes / frame_rate_hz`` as for suite2p folders. Stimulus: a ``stimulus`` column of
the file's epochs table, where present.
"""

from __future__ import annotations

import contextlib
import logging
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from nlp4neuro.config import build
from nlp4neuro.conventions import positions_um, segment_names
from nlp4neuro.errors import ConfigError, InputFileError
from nlp4neuro.ingest.contract import (
    IngestParams,
    Neurons,
    PerFrameTail,
    ingested_dataset,
    log_counts,
    source_checksums,
)
from nlp4neuro.ingest.functional_types import plane_number
from nlp4neuro.ingest.tail import tail_per_frame

logger = logging.getLogger(__name__)

_DEGREES = ("degrees", "degree", "deg")
_RADIANS = ("radians", "radian", "rad")
_METRES_TO_UM = {
    "meters": 1e6,
    "m": 1e6,
    "millimeters": 1e3,
    "mm": 1e3,
    "micrometers": 1.0,
    "microns": 1.0,
    "um": 1.0,
}


@dataclass(frozen=True)
class NwbOptions:
    """Where the series are inside the file: the validated ``data.nwb`` section."""

    ophys_module: str
    behavior_module: str
    roi_series: str | None
    tail_series: str | None
    mask_order: str


@dataclass
class _Imaging:
    """All ROI series stacked: F float32 (n_neurons, n_frames), per-neuron plane/roi/pixels."""

    F: np.ndarray
    plane: np.ndarray
    roi: np.ndarray
    y_px: np.ndarray
    x_px: np.ndarray
    time_offset_s: np.ndarray
    frame_times: np.ndarray  # float64 (n_frames,) seconds
    frame_rate_hz: float
    pixel_size_um: float
    counts: dict[str, Any]


# --------------------------------------------------------------------------------------------
# Small readers
# --------------------------------------------------------------------------------------------


def _describe_nwb(nwbfile: Any) -> str:
    """What a file holds, for error messages: processing modules, interfaces and types."""
    parts = []
    for name, module in nwbfile.processing.items():
        inner = ", ".join(f"{k} ({type(v).__name__})" for k, v in module.data_interfaces.items())
        parts.append(f"processing/{name}: [{inner}]")
    acquisition = ", ".join(f"{k} ({type(v).__name__})" for k, v in nwbfile.acquisition.items())
    parts.append(f"acquisition: [{acquisition}]")
    return "; ".join(parts)


def _natural_key(name: str) -> list[Any]:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def _series_times(series: Any) -> np.ndarray:
    """float64 (n,) sample times in seconds of a TimeSeries (timestamps, or start + k / rate)."""
    n = len(series.data)
    if series.timestamps is not None:
        return np.asarray(series.timestamps[:], dtype=np.float64)
    return float(series.starting_time or 0.0) + np.arange(n) / float(series.rate)


def _scaled(series: Any) -> np.ndarray:
    """A TimeSeries' data in its declared unit: data * conversion + offset (NWB's rule)."""
    data = np.asarray(series.data[:], dtype=np.float64)
    conversion = float(getattr(series, "conversion", 1.0) or 1.0)
    offset = float(getattr(series, "offset", 0.0) or 0.0)
    return data * conversion + offset


def _mask_fields(data: Any, names: Sequence[str]) -> np.ndarray:
    """(n_pixels, len(names)) float64 from a compound pixel/voxel mask (file or in memory)."""
    arr = np.asarray(data[:] if hasattr(data, "__getitem__") else data)
    if arr.dtype.names:
        return np.column_stack([arr[n].astype(np.float64) for n in arr.dtype.names[: len(names)]])
    return np.asarray([tuple(r) for r in arr], dtype=np.float64).reshape(-1, len(names))


def _pixel_size_from_plane(imaging_plane: Any) -> float | None:
    """Micrometres per pixel from ImagingPlane.grid_spacing, or None."""
    spacing = getattr(imaging_plane, "grid_spacing", None)
    if spacing is None:
        return None
    values = np.asarray(spacing[:], dtype=np.float64)
    unit = str(getattr(imaging_plane, "grid_spacing_unit", "meters") or "meters").lower()
    scale = _METRES_TO_UM.get(unit)
    if scale is None or values.size < 2 or not np.isclose(values[0], values[1]):
        return None
    return float(values[0] * scale)


@contextlib.contextmanager
def _open_nwb(path: Path) -> Iterator[Any]:
    """The NWBFile at `path`, read-only; an InputFileError when it is no readable NWB file."""
    from pynwb import NWBHDF5IO

    if not path.is_file():
        raise InputFileError(path, "an NWB file", "no such file")
    io_handle = None
    try:
        io_handle = NWBHDF5IO(str(path), mode="r")
        nwbfile = io_handle.read()
    except Exception as err:  # h5py/hdmf raise many types for a non-NWB file
        if io_handle is not None:
            io_handle.close()
        raise InputFileError(
            path, "a readable NWB (HDF5) file", f"{type(err).__name__}: {err}"
        ) from err
    try:
        yield nwbfile
    finally:
        io_handle.close()


# --------------------------------------------------------------------------------------------
# Imaging: series, geometry, frame rate
# --------------------------------------------------------------------------------------------


def _roi_series(nwbfile: Any, options: NwbOptions, path: Path, describe: str) -> tuple:
    """(series by name, names in natural order, signal kind "fluorescence" or "dff")."""
    from pynwb.ophys import DfOverF, Fluorescence

    module_name = options.ophys_module
    if module_name not in nwbfile.processing:
        raise InputFileError(
            path, f"processing module {module_name!r} with Fluorescence or DfOverF", describe
        )
    interfaces = nwbfile.processing[module_name].data_interfaces.values()
    signal_kind = "fluorescence"
    containers = [c for c in interfaces if isinstance(c, Fluorescence)]
    if not containers:
        containers = [c for c in interfaces if isinstance(c, DfOverF)]
        signal_kind = "dff"
    if not containers:
        raise InputFileError(
            path, f"a Fluorescence or DfOverF container in processing/{module_name}", describe
        )
    all_series = containers[0].roi_response_series
    names = sorted(all_series, key=_natural_key)
    if options.roi_series is not None:
        if options.roi_series not in all_series:
            raise InputFileError(
                path,
                f"RoiResponseSeries {options.roi_series!r} in {containers[0].name}",
                f"{names}",
            )
        names = [options.roi_series]
    if not names:
        raise InputFileError(path, f"RoiResponseSeries in {containers[0].name}", describe)
    return all_series, names, signal_kind


def _image_mask_centroids(data: Any, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Weighted centroid along the first and second mask axis (and z of volume masks)."""
    first, second, z = np.empty(n), np.empty(n), None
    batch = 256  # image masks are full-frame: a few hundred at a time bounds memory
    for a in range(0, n, batch):
        masks = np.asarray(data[a : a + batch], dtype=np.float64)
        if masks.ndim == 4:  # (roi, x, y, z) volume masks
            w_z = masks.sum(axis=(1, 2))
            z = np.empty(n) if z is None else z
            z[a : a + batch] = w_z @ np.arange(masks.shape[3]) / w_z.sum(axis=1)
            masks = masks.sum(axis=3)
        weight = masks.sum(axis=(1, 2))
        first[a : a + batch] = masks.sum(axis=2) @ np.arange(masks.shape[1]) / weight
        second[a : a + batch] = masks.sum(axis=1) @ np.arange(masks.shape[2]) / weight
    return first, second, z


def _list_mask_centroids(
    index: Any, n: int, voxel: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Weighted centroid of ragged pixel (x, y, w) or voxel (x, y, z, w) masks."""
    ends = np.asarray(index.data[:], dtype=np.int64)
    fields = ("x", "y", "z", "weight") if voxel else ("x", "y", "weight")
    values = _mask_fields(index.target.data, fields)
    owner = np.repeat(np.arange(n), np.diff(np.concatenate([[0], ends])))
    weight = np.bincount(owner, weights=values[:, -1], minlength=n)

    def mean(column: int) -> np.ndarray:
        return np.bincount(owner, weights=values[:, column] * values[:, -1], minlength=n) / weight

    return mean(0), mean(1), mean(2) if voxel else None


def _segmentation_geometry(
    table: Any, order: str, source: Path
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Centroid row, column (pixels) and plane (from voxel z, or None) of every ROI of a table.

    ``order`` says what the first mask axis/field is: "yx" (the row) or "xy" (the column).
    """
    n = len(table)
    colnames = set(table.colnames)
    if "image_mask" in colnames:
        first, second, z = _image_mask_centroids(table["image_mask"].data, n)
    elif "pixel_mask" in colnames or "voxel_mask" in colnames:
        voxel = "voxel_mask" in colnames
        first, second, z = _list_mask_centroids(
            table["voxel_mask" if voxel else "pixel_mask"], n, voxel
        )
    else:
        raise InputFileError(
            source,
            f"image_mask, pixel_mask or voxel_mask in PlaneSegmentation {table.name!r}",
            f"columns {sorted(colnames)}",
        )
    return (first, second, z) if order == "yx" else (second, first, z)


def _table_geometry(table: Any, order: str, path: Path, table_index: int) -> tuple:
    """(y_px, x_px, plane, rank within plane) of every ROI of one PlaneSegmentation."""
    y_px, x_px, z = _segmentation_geometry(table, order, path)
    if z is not None:
        plane = np.rint(z).astype(np.int64)
    elif "plane" in table.colnames:
        plane = np.array([plane_number(v) for v in table["plane"].data[:]], dtype=np.int64)
    else:
        plane = np.full(len(table), table_index, dtype=np.int64)
    rank = np.empty(len(table), dtype=np.int64)
    for p in np.unique(plane):
        members = np.flatnonzero(plane == p)
        rank[members] = np.arange(members.size)
    return y_px, x_px, plane, rank


def _read_blocks(
    all_series: Mapping[str, Any], names: Sequence[str], order: str, path: Path
) -> tuple[list[dict[str, Any]], list[float | None], list[float | None]]:
    """Per series: traces (rois, T) float32, times, ROI geometry; its rate and pixel size."""
    geometry: dict[int, tuple] = {}
    pixel_sizes: list[float | None] = []
    blocks, rates = [], []
    for name in names:
        series = all_series[name]
        data = _scaled(series)
        data = data[:, None] if data.ndim == 1 else data
        times = _series_times(series)
        if times.size != data.shape[0]:
            raise InputFileError(path, f"{data.shape[0]} timestamps for {name}", f"{times.size}")
        rows = np.asarray(series.rois.data[:], dtype=np.int64)
        table = series.rois.table
        if id(table) not in geometry:
            geometry[id(table)] = _table_geometry(table, order, path, len(geometry))
            pixel_sizes.append(_pixel_size_from_plane(table.imaging_plane))
        y_px, x_px, plane, rank = geometry[id(table)]
        rate = float(series.rate) if series.rate is not None else None
        if rate is None and times.size > 1:
            rate = 1.0 / float(np.median(np.diff(times)))
        rates.append(rate)
        blocks.append(
            {
                "F": data.T.astype(np.float32),  # halve memory before concatenation
                "times": times,
                "plane": plane[rows],
                "roi": rank[rows],
                "y": y_px[rows],
                "x": x_px[rows],
            }
        )
    return blocks, rates, pixel_sizes


def _frame_rate(rates: Sequence[float | None], given: float | None, path: Path) -> float:
    """`given` (data.frame_rate_hz), else the rate all series share."""
    if given is None:
        known = [r for r in rates if r is not None]
        if not known:
            raise ConfigError("data.frame_rate_hz", "a rate (the file has a single frame)", None)
        if not np.allclose(known, known[0], rtol=1e-3):
            raise InputFileError(
                path, "the same frame rate in every RoiResponseSeries", f"{known} Hz"
            )
        given = known[0]
    if not (math.isfinite(float(given)) and given > 0):
        raise InputFileError(path, "a finite frame rate > 0 Hz", f"{given}")
    return float(given)


def _pixel_size(pixel_sizes: Sequence[float | None], given: float | None) -> float:
    """`given` (data.pixel_size_um), else the file's one ImagingPlane.grid_spacing."""
    if given is not None:
        return float(given)
    found = {p for p in pixel_sizes if p is not None}
    if len(found) != 1:
        raise ConfigError(
            "data.pixel_size_um",
            "a value (the file's ImagingPlane.grid_spacing gives none or several)",
            sorted(found) or None,
        )
    return found.pop()


def _stack(blocks: list[dict[str, Any]], names: Sequence[str], rate: float, path: Path) -> dict:
    """Series concatenated in plane order; frames truncated to the shortest series."""
    lengths = np.array([b["F"].shape[1] for b in blocks])
    n_frames = int(lengths.min())
    if lengths.max() - n_frames > 1:  # suite2p planes may differ by one frame
        raise InputFileError(
            path,
            "RoiResponseSeries with the same number of frames (at most 1 apart)",
            f"{dict(zip(names, lengths.tolist(), strict=True))}",
        )
    starts = np.array([b["times"][0] for b in blocks])
    out = {key: np.concatenate([b[key] for b in blocks]) for key in ("plane", "roi", "y", "x")}
    out["start"] = np.concatenate([np.full(b["plane"].size, b["times"][0]) for b in blocks])
    out["F"] = np.concatenate([b["F"][:, :n_frames] for b in blocks], axis=0)
    order = np.lexsort((np.arange(out["plane"].size), out["plane"]))  # stable within plane
    out = {key: value[order] for key, value in out.items()}
    if not np.isfinite(out["F"]).all():
        raise InputFileError(
            path, "finite fluorescence", f"{int((~np.isfinite(out['F'])).sum())} NaN/inf"
        )
    n_planes = int(out["plane"].max()) + 1
    if np.ptp(starts) > 0:
        out["time_offset_s"] = out["start"] - starts.min()
    else:
        out["time_offset_s"] = out["plane"] / n_planes / rate
    out["frame_times"] = blocks[int(np.argmin(starts))]["times"][:n_frames]
    truncated = {n: int(v - n_frames) for n, v in zip(names, lengths, strict=True) if v > n_frames}
    out["counts"] = {"n_planes": n_planes, "n_frames": n_frames, "n_frames_truncated": truncated}
    return out


def _read_imaging(nwbfile: Any, params: IngestParams, options: NwbOptions, path: Path) -> _Imaging:
    """Every ROI series of the file (module docstring), stacked in plane order."""
    all_series, names, signal_kind = _roi_series(nwbfile, options, path, _describe_nwb(nwbfile))
    blocks, rates, pixel_sizes = _read_blocks(all_series, names, options.mask_order, path)
    rate = _frame_rate(rates, params.frame_rate_hz, path)
    pixel_size = _pixel_size(pixel_sizes, params.pixel_size_um)
    stacked = _stack(blocks, names, rate, path)
    counts = {
        "n_planes": stacked["counts"]["n_planes"],
        "n_neurons": int(stacked["F"].shape[0]),
        "n_frames": stacked["counts"]["n_frames"],
        "n_frames_truncated": stacked["counts"]["n_frames_truncated"],
        "roi_series": list(names),
        "signal_kind": signal_kind,
    }
    return _Imaging(
        F=stacked["F"],
        plane=stacked["plane"],
        roi=stacked["roi"],
        y_px=stacked["y"],
        x_px=stacked["x"],
        time_offset_s=stacked["time_offset_s"],
        frame_times=stacked["frame_times"],
        frame_rate_hz=rate,
        pixel_size_um=pixel_size,
        counts=counts,
    )


# --------------------------------------------------------------------------------------------
# Behaviour and stimulus
# --------------------------------------------------------------------------------------------


def _find_tail_series(module: Any, name: str | None, source: Path, describe: str) -> Any:
    """The tail TimeSeries: `name`, else the only 2-D series (preferring names with 'tail')."""
    from pynwb import TimeSeries

    candidates: dict[str, Any] = {}
    for iface_name, iface in module.data_interfaces.items():
        if isinstance(iface, TimeSeries):
            candidates[iface_name] = iface
        else:
            for child in getattr(iface, "children", []):
                if isinstance(child, TimeSeries):
                    candidates[child.name] = child
    if name is not None:
        if name not in candidates:
            raise InputFileError(
                source, f"a behavioural TimeSeries named {name!r}", f"{sorted(candidates)}"
            )
        return candidates[name]
    two_d = {k: v for k, v in candidates.items() if len(v.data.shape) == 2}
    tail_named = {k: v for k, v in two_d.items() if "tail" in k.lower()}
    chosen = tail_named or two_d
    if len(chosen) != 1:
        raise InputFileError(
            source,
            "exactly one 2-D behavioural TimeSeries (samples x segments) or tail_series=<name>",
            f"{sorted(chosen) or 'none'}; the file has {describe}",
        )
    return next(iter(chosen.values()))


def _tail_angles(tail_ts: Any, path: Path) -> np.ndarray:
    """float64 (samples, segments) angles in radians (degrees converted)."""
    angles = _scaled(tail_ts)
    unit = str(tail_ts.unit).strip().lower()
    if unit in _DEGREES:
        angles = np.deg2rad(angles)
    elif unit not in _RADIANS:
        raise InputFileError(
            path, f"tail angles in radians or degrees ({tail_ts.name})", f"unit {tail_ts.unit!r}"
        )
    if angles.ndim != 2:
        raise InputFileError(path, f"{tail_ts.name} as (samples, segments)", f"{angles.shape}")
    return angles


def _read_tail(nwbfile: Any, options: NwbOptions, imaging: _Imaging, path: Path) -> PerFrameTail:
    """Tail samples assigned to imaging frames by time, then averaged per frame."""
    describe = _describe_nwb(nwbfile)
    if options.behavior_module not in nwbfile.processing:
        raise InputFileError(
            path, f"processing module {options.behavior_module!r} with the tail angles", describe
        )
    module = nwbfile.processing[options.behavior_module]
    tail_ts = _find_tail_series(module, options.tail_series, path, describe)
    angles = _tail_angles(tail_ts, path)
    tail_times = _series_times(tail_ts)
    frame_times = imaging.frame_times
    frame = np.searchsorted(frame_times, tail_times, side="right") - 1
    inside = (frame >= 0) & (tail_times < frame_times[-1] + 1.0 / imaging.frame_rate_hz)
    segments = segment_names(angles.shape[1])
    table = pd.DataFrame(angles[inside], columns=segments)
    table["frame"] = frame[inside].astype(np.int64)
    frames, mean, counts = tail_per_frame(table, frame_times.size, source=path)
    counts = {"tail_series": tail_ts.name, **counts}
    counts["n_samples_outside_imaging"] = int((~inside).sum())
    return PerFrameTail(frames, mean, segments, counts, path)


def _stimulus(nwbfile: Any, frame_times: np.ndarray) -> np.ndarray:
    """Stimulus per frame from the epochs' ``stimulus`` column; the last epoch wins overlaps."""
    epochs = nwbfile.epochs
    if epochs is None or "stimulus" not in epochs.colnames:
        return np.full(frame_times.size, "", dtype=object)
    start = np.asarray(epochs["start_time"].data[:], dtype=np.float64)
    stop = np.asarray(epochs["stop_time"].data[:], dtype=np.float64)
    label = np.asarray([str(s) for s in epochs["stimulus"].data[:]], dtype=object)
    inside = (frame_times[:, None] >= start) & (frame_times[:, None] < stop)
    last = inside.shape[1] - 1 - np.argmax(inside[:, ::-1], axis=1)
    return np.where(inside.any(axis=1), label[last], "").astype(object)


def ingest_nwb(path: str | Path, fish: str, params: IngestParams) -> xr.Dataset:
    """Read an NWB file's traces, ROI geometry and tail angles (module docstring).

    Args:
        path: the .nwb file.
        fish: fish id stored in the attrs.
        params: the ``data`` section; ``nwb`` says where the series are. frame_rate_hz None
            takes the series' rate (or timestamps); pixel_size_um None (possible only when
            called directly) takes ImagingPlane.grid_spacing.

    Raises:
        InputFileError: the file is missing, not NWB, or lacks the expected series (the message
            lists what the file has); inconsistent frame counts or rates.
        ConfigError: no frame rate, or no pixel size in the file nor the parameters.
    """
    path = Path(path)
    options = build(NwbOptions, params.nwb, "data.nwb")
    with _open_nwb(path) as nwbfile:
        imaging = _read_imaging(nwbfile, params, options, path)
        tail = _read_tail(nwbfile, options, imaging, path)
        stimulus = _stimulus(nwbfile, imaging.frame_times)
    counts = {**imaging.counts, **tail.counts}
    log_counts(fish, counts)
    positions = positions_um(
        imaging.x_px, imaging.y_px, imaging.plane, imaging.pixel_size_um, params.plane_spacing_um
    )
    neurons = Neurons(
        plane=imaging.plane,
        roi=imaging.roi,
        region=np.full(imaging.F.shape[0], "", dtype=object),
        time_offset_s=imaging.time_offset_s,
        **positions,
    )
    signal_kind = counts["signal_kind"]
    long_name = "dF/F (from the file)" if signal_kind == "dff" else "fluorescence"
    used = {"frame_rate_hz": imaging.frame_rate_hz, "pixel_size_um": imaging.pixel_size_um}
    return ingested_dataset(
        F=imaging.F,
        Fneu=None,
        neurons=neurons,
        tail=tail,
        stimulus=stimulus,
        attrs={
            "fish": str(fish),
            "frame_rate_hz": imaging.frame_rate_hz,
            "n_planes": counts["n_planes"],
            "source_dir": str(path.parent),
            "source_format": "nwb",
            "signal_kind": signal_kind,
            "first_frame_time_s": float(imaging.frame_times[0]),
            "source_checksums": source_checksums([path], path.parent),
            "counts": counts,
            "ingest": {"format": "nwb", **asdict(params), **used},
        },
        f_attrs={"units": "a.u." if signal_kind == "fluorescence" else "1", "long_name": long_name},
        min_tail_coverage=params.min_tail_coverage,
    )
