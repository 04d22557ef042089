"""Per-fish datasets: the netCDF file between preprocessing and the models.

A fish's dataset (`assemble_from_stages` / `assemble_dataset`, `write_netcdf`, `open_dataset`)
follows the "Dataset netCDF" contract in docs/architecture.md: ``dff`` (time, neuron) float32 and
``tail`` (time, segment) float32 radians, with neuron anatomy, time in seconds, the stimulus per
frame and provenance. How a dataset is cut into a decoding problem (lag, splits, windows, input
normalisation) is `nlp4neuro.problem`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from nlp4neuro import __version__
from nlp4neuro.config import allowed_values
from nlp4neuro.errors import InputFileError
from nlp4neuro.provenance import atomic_output, versions_json

logger = logging.getLogger(__name__)

# `dff` units per signal kind: "1" is the CF/udunits spelling of dimensionless.
_SIGNAL_UNITS = {"dff": "1", "reference": "1", "raw": "a.u."}
_SIGNAL_LONG_NAMES = {
    "dff": "dF/F",
    "reference": "raw F, standardised and min-max scaled per frame across neurons",
    "raw": "fluorescence",
}

# The contract of docs/architecture.md: variable -> dims.
REQUIRED_DATA_VARS: dict[str, tuple[str, ...]] = {
    "dff": ("time", "neuron"),
    "tail": ("time", "segment"),
}
REQUIRED_COORDS: dict[str, tuple[str, ...]] = {
    "time": ("time",),
    "frame": ("time",),
    "stimulus": ("time",),
    "neuron": ("neuron",),
    "plane": ("neuron",),
    "roi": ("neuron",),
    "x_um": ("neuron",),
    "y_um": ("neuron",),
    "z_um": ("neuron",),
    "region": ("neuron",),
    "time_offset_s": ("neuron",),
    "segment": ("segment",),
}
REQUIRED_ATTRS = (
    "fish",
    "frame_rate_hz",
    "preprocessing",
    "source_checksums",
    "nlp4neuro_version",
    "versions",
)


def _vector(values: Any, name: str, length: int, dtype: Any) -> np.ndarray:
    """`values` as a 1-D array of `length` and `dtype`, or ValueError naming `name`."""
    arr = np.asarray(values)
    if arr.shape != (length,):
        raise ValueError(f"{name}: expected shape ({length},), found {arr.shape}")
    return arr.astype(dtype)


def _strings(values: Sequence[str] | np.ndarray | None, name: str, length: int) -> np.ndarray:
    """Unicode string array of `length`; None becomes "" everywhere (unknown)."""
    if values is None:
        return np.full(length, "", dtype=str)
    arr = np.asarray(values, dtype=object)
    if arr.shape != (length,):
        raise ValueError(f"{name}: expected shape ({length},), found {arr.shape}")
    return np.array(["" if v is None else str(v) for v in arr], dtype=str)


def _attr_value(value: Any) -> Any:
    """A value netCDF can store as an attribute and give back unchanged."""
    if isinstance(value, str | int | float | np.integer | np.floating) and not isinstance(
        value, bool
    ):
        return value
    return json.dumps(value, sort_keys=True)


def assemble_dataset(
    *,
    signal: np.ndarray,
    frames: np.ndarray,
    tail: np.ndarray,
    segment_names: Sequence[str],
    frame_rate_hz: float,
    plane: np.ndarray,
    roi: np.ndarray,
    x_um: np.ndarray,
    y_um: np.ndarray,
    z_um: np.ndarray,
    region: Sequence[str] | np.ndarray | None,
    time_offset_s: np.ndarray,
    stimulus: Sequence[str] | np.ndarray | None,
    fish: str,
    signal_kind: str,
    preprocessing: Mapping[str, Any],
    source_checksums: Mapping[str, str],
    extra_attrs: Mapping[str, Any] | None = None,
) -> xr.Dataset:
    """Build one fish's dataset in the "Dataset netCDF" layout of docs/architecture.md.

    Args:
        signal: (n_neurons, n_all_frames) preprocessed signal (`preprocessing.preprocess`).
        frames: (T,) int imaging frame indices kept (those with tail data), indexing
            `signal`'s time axis; `dff` = signal[:, frames].T.
        tail: (T, n_segments) tail angles in radians for the same frames.
        segment_names: (n_segments,) names, e.g. theta_00..theta_05.
        frame_rate_hz: imaging (volume) rate in Hz; time = frames / frame_rate_hz seconds.
        plane, roi: (n_neurons,) int plane of each neuron and its index in that plane's
            suite2p arrays.
        x_um, y_um, z_um: (n_neurons,) float positions in micrometres.
        region: (n_neurons,) str anatomical label ("" or None where unknown), or None.
        time_offset_s: (n_neurons,) acquisition offset of the neuron's plane within a volume, s.
        stimulus: (T,) str stimulus per frame ("" or None where unknown), or None.
        fish: fish identifier.
        signal_kind: a `preprocessing.mode` (stored as ``dff.attrs["kind"]``).
        preprocessing: every preprocessing parameter (stored as JSON).
        source_checksums: {relative path: sha256} of the raw inputs (stored as JSON).
        extra_attrs: further global attributes; dicts, lists and bools are stored as JSON.

    Returns:
        The dataset, `dff` (time, neuron) float32 and `tail` (time, segment) float32.
    """
    signal, frames, tail, segments = _checked_arrays(signal, frames, tail, segment_names)
    _check_scalars(signal_kind, frame_rate_hz)
    n_neurons = signal.shape[0]
    coords = {
        **_time_coords(frames, frame_rate_hz, stimulus),
        "neuron": ("neuron", np.arange(n_neurons, dtype=np.int64)),
        "segment": ("segment", segments),
        **_neuron_coords(n_neurons, plane, roi, x_um, y_um, z_um, region, time_offset_s),
    }
    attrs = _global_attrs(fish, frame_rate_hz, signal_kind, preprocessing, source_checksums)
    for key, value in (extra_attrs or {}).items():
        if key in attrs:
            raise ValueError(
                f"extra_attrs: expected keys other than {sorted(attrs)}, found {key!r}"
            )
        attrs[key] = _attr_value(value)
    return xr.Dataset(_data_vars(signal, frames, tail, signal_kind), coords=coords, attrs=attrs)


def _checked_arrays(
    signal: np.ndarray, frames: np.ndarray, tail: np.ndarray, segment_names: Sequence[str]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """signal (n_neurons, n_all_frames), frames (T,) int indices into it, tail (T, n_segments)
    and the segment names as arrays, or ValueError naming the argument, expected and found."""
    signal = np.asarray(signal)
    if signal.ndim != 2:
        raise ValueError(f"signal: expected (n_neurons, n_frames), found shape {signal.shape}")
    n_all_frames = signal.shape[1]
    frames = np.asarray(frames)
    if frames.ndim != 1 or not np.issubdtype(frames.dtype, np.integer):
        raise ValueError(
            f"frames: expected a 1-D integer array, found {frames.dtype} {frames.shape}"
        )
    if frames.size and (frames.min() < 0 or frames.max() >= n_all_frames):
        raise ValueError(
            f"frames: expected indices in [0, {n_all_frames}), found "
            f"[{frames.min()}, {frames.max()}]"
        )
    segments = _strings(list(segment_names), "segment_names", len(segment_names))
    tail = np.asarray(tail)
    if tail.shape != (frames.size, segments.size):
        raise ValueError(
            f"tail: expected shape (T={frames.size}, n_segments={segments.size}), "
            f"found {tail.shape}"
        )
    return signal, frames, tail, segments


def _check_scalars(signal_kind: str, frame_rate_hz: float) -> None:
    kinds = allowed_values("preprocessing", "mode")
    if signal_kind not in kinds:
        raise ValueError(f"signal_kind: expected one of {kinds}, found {signal_kind!r}")
    if not frame_rate_hz > 0:
        raise ValueError(f"frame_rate_hz: expected a positive rate in Hz, found {frame_rate_hz!r}")


def _time_coords(
    frames: np.ndarray, frame_rate_hz: float, stimulus: Sequence[str] | np.ndarray | None
) -> dict[str, tuple[Any, ...]]:
    """Coordinates along time: time (s), imaging frame and stimulus of each kept frame."""
    time_s = frames.astype(np.float64) / float(frame_rate_hz)
    return {
        "time": ("time", time_s, {"units": "s", "long_name": "imaging frame / frame_rate_hz"}),
        "frame": ("time", frames.astype(np.int64), {"long_name": "imaging frame index"}),
        "stimulus": ("time", _strings(stimulus, "stimulus", frames.size)),
    }


def _neuron_coords(
    n_neurons: int,
    plane: np.ndarray,
    roi: np.ndarray,
    x_um: np.ndarray,
    y_um: np.ndarray,
    z_um: np.ndarray,
    region: Sequence[str] | np.ndarray | None,
    time_offset_s: np.ndarray,
) -> dict[str, tuple[Any, ...]]:
    """Coordinates along neuron: plane, roi, position (um), region, time offset (s)."""
    values = {
        "plane": _vector(plane, "plane", n_neurons, np.int64),
        "roi": _vector(roi, "roi", n_neurons, np.int64),
        "x_um": _vector(x_um, "x_um", n_neurons, np.float64),
        "y_um": _vector(y_um, "y_um", n_neurons, np.float64),
        "z_um": _vector(z_um, "z_um", n_neurons, np.float64),
        "region": _strings(region, "region", n_neurons),
        "time_offset_s": _vector(time_offset_s, "time_offset_s", n_neurons, np.float64),
    }
    units = {"x_um": "um", "y_um": "um", "z_um": "um", "time_offset_s": "s"}
    return {
        name: ("neuron", array, {"units": units[name]} if name in units else {})
        for name, array in values.items()
    }


def _global_attrs(
    fish: str,
    frame_rate_hz: float,
    signal_kind: str,
    preprocessing: Mapping[str, Any],
    source_checksums: Mapping[str, str],
) -> dict[str, Any]:
    """The dataset's units and provenance attributes."""
    return {
        "fish": str(fish),
        "frame_rate_hz": float(frame_rate_hz),
        "units_time": "s",
        "units_tail": "rad",
        "units_dff": _SIGNAL_UNITS[signal_kind],
        "units_position": "um",
        "units_frame_rate": "Hz",
        "preprocessing": json.dumps(dict(preprocessing), sort_keys=True),
        "source_checksums": json.dumps(dict(source_checksums), sort_keys=True),
        "nlp4neuro_version": __version__,
        "versions": versions_json(),
    }


def _data_vars(
    signal: np.ndarray, frames: np.ndarray, tail: np.ndarray, signal_kind: str
) -> dict[str, tuple[Any, ...]]:
    """`dff` = signal[:, frames].T (time, neuron) and `tail` (time, segment), float32."""
    dff = np.ascontiguousarray(signal[:, frames].T, dtype=np.float32)
    dff_attrs = {
        "kind": signal_kind,
        "units": _SIGNAL_UNITS[signal_kind],
        "long_name": _SIGNAL_LONG_NAMES[signal_kind],
    }
    tail_attrs = {"units": "rad", "long_name": "per-frame mean tail segment angle"}
    return {
        "dff": (("time", "neuron"), dff, dff_attrs),
        "tail": (("time", "segment"), tail.astype(np.float32), tail_attrs),
    }


def write_netcdf(ds: xr.Dataset, path: str | Path, compress: bool = True) -> Path:
    """Write `ds` to netCDF4 at `path` atomically (temporary sibling, then rename).

    String variables are stored as netCDF4 variable-length strings so they read back as the
    same strings; float/int data variables are zlib-compressed (level 4) when `compress`.
    `xarray.open_dataset(path).load()` gives back a dataset identical to `ds`.

    Returns:
        `path` as a Path.
    """
    encoding: dict[str, dict[str, Any]] = {}
    for name, var in ds.variables.items():
        if var.dtype.kind in "UO":
            encoding[str(name)] = {"dtype": str}
        elif compress and name in ds.data_vars:
            encoding[str(name)] = {"zlib": True, "complevel": 4}
    path = Path(path)
    with atomic_output(path) as tmp:
        ds.to_netcdf(tmp, engine="netcdf4", format="NETCDF4", encoding=encoding)
    logger.info("wrote %s (%s)", path, dict(ds.sizes))
    return path


def open_dataset(path: str | Path) -> xr.Dataset:
    """Load a dataset netCDF fully into memory and check it against the contract.

    Raises:
        InputFileError: the file is missing or unreadable, lacks a required variable,
            coordinate, dimension or attribute (all missing names are listed), has a variable
            on the wrong dims, or holds NaN/inf in `dff` or `tail` (with the count).
    """
    path = Path(path)
    if not path.is_file():
        raise InputFileError(path, "a dataset netCDF file", "no such file")
    try:
        ds = xr.load_dataset(path, engine="netcdf4")
    except (OSError, ValueError, RuntimeError) as error:
        raise InputFileError(path, "a netCDF4 file readable by xarray", repr(error)) from error

    problems: list[str] = []
    missing_dims = [d for d in ("time", "neuron", "segment") if d not in ds.dims]
    if missing_dims:
        problems.append(f"missing dims {missing_dims}")
    for kind, required, present in (
        ("data variable", REQUIRED_DATA_VARS, ds.data_vars),
        ("coordinate", REQUIRED_COORDS, ds.coords),
    ):
        missing = [name for name in required if name not in present]
        if missing:
            problems.append(f"missing {kind}s {missing}")
        for name, dims in required.items():
            if name in present and ds[name].dims != dims:
                problems.append(f"{kind} {name!r} on dims {ds[name].dims} instead of {dims}")
    missing_attrs = [name for name in REQUIRED_ATTRS if name not in ds.attrs]
    if missing_attrs:
        problems.append(f"missing attributes {missing_attrs}")
    if problems:
        raise InputFileError(
            path, "a dataset in the layout of docs/architecture.md", "; ".join(problems)
        )

    for name in REQUIRED_DATA_VARS:
        n_bad = int(np.count_nonzero(~np.isfinite(ds[name].values)))
        if n_bad:
            raise InputFileError(
                path,
                f"finite values in {name!r}",
                f"{n_bad} NaN/inf of {ds[name].size} values",
            )
    return ds


def assemble_from_stages(ingested: xr.Dataset, preprocessed: xr.Dataset) -> xr.Dataset:
    """The final per-fish dataset from the ingest and preprocessing stages' outputs.

    Keeps the neurons the preprocessing kept and the imaging frames that have tail samples (the
    reference convention: frames without behaviour, e.g. the trailing T vs T-2 frames, are
    dropped); everything else is carried over with its units and provenance.
    """
    neurons = preprocessed["neuron"].values
    meta = ingested.sel(neuron=neurons)
    frame_position = {int(f): i for i, f in enumerate(preprocessed["frame"].values)}
    tail_frames = ingested["tail_frame"].values
    missing = [int(f) for f in tail_frames if int(f) not in frame_position]
    if missing:
        raise ValueError(f"tail frames {missing[:5]} have no preprocessed imaging frame")
    dropped = ingested.sizes["frame"] - len(tail_frames)
    logger.info(
        "fish %s: %d neurons kept of %d; %d of %d frames have tail samples (%d dropped)",
        ingested.attrs["fish"],
        len(neurons),
        ingested.sizes["neuron"],
        len(tail_frames),
        ingested.sizes["frame"],
        dropped,
    )
    stimulus = ingested["stimulus"].sel(frame=tail_frames).values
    return assemble_dataset(
        signal=preprocessed["signal"].values,
        frames=np.asarray([frame_position[int(f)] for f in tail_frames], dtype=np.int64),
        tail=ingested["tail"].values,
        segment_names=[str(s) for s in ingested["segment"].values],
        frame_rate_hz=float(ingested.attrs["frame_rate_hz"]),
        plane=meta["plane"].values,
        roi=meta["roi"].values,
        x_um=meta["x_um"].values,
        y_um=meta["y_um"].values,
        z_um=meta["z_um"].values,
        region=[str(r) for r in meta["region"].values],
        time_offset_s=meta["time_offset_s"].values,
        stimulus=[str(s) for s in stimulus],
        fish=str(ingested.attrs["fish"]),
        signal_kind=str(preprocessed.attrs["signal_kind"]),
        preprocessing=json.loads(preprocessed.attrs["preprocessing"]),
        source_checksums=json.loads(ingested.attrs["source_checksums"]),
        extra_attrs={
            "ingest": ingested.attrs["ingest"],
            "ingest_counts": ingested.attrs["counts"],
            "preprocessing_info": preprocessed.attrs["preprocessing_info"],
            "n_frames_without_tail": int(dropped),
        },
    )
