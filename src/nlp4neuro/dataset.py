"""Per-fish datasets: the netCDF file between preprocessing and the models, splits and windows.

A fish's dataset (`assemble_dataset`, `write_netcdf`, `open_dataset`) follows the "Dataset netCDF"
contract in docs/architecture.md: ``dff`` (time, neuron) float32 and ``tail`` (time, segment)
float32 radians, with neuron anatomy, time in seconds, the stimulus per frame and provenance.

Modelling helpers work on plain numpy index arithmetic (no torch here): `chronological_split`
cuts the time axis into contiguous train / val / test blocks, `window_starts` lists the sliding
windows that lie entirely inside one block, `fit_input_normaliser` z-scores neurons with
statistics of the training block only, and `average_window_predictions` averages overlapping
window outputs per frame. All frame indices in these helpers are positions along the dataset's
``time`` axis (0..T-1), not imaging frame numbers (those are the ``frame`` coordinate).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from nlp4neuro import __version__
from nlp4neuro.errors import ConfigError, InputFileError
from nlp4neuro.provenance import atomic_output, versions_json

logger = logging.getLogger(__name__)

SIGNAL_KINDS = ("dff", "reference", "raw")
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
SPLIT_NAMES = ("train", "val", "test")


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
        signal_kind: "dff", "reference" or "raw" (stored as ``dff.attrs["kind"]``).
        preprocessing: every preprocessing parameter (stored as JSON).
        source_checksums: {relative path: sha256} of the raw inputs (stored as JSON).
        extra_attrs: further global attributes; dicts, lists and bools are stored as JSON.

    Returns:
        The dataset, `dff` (time, neuron) float32 and `tail` (time, segment) float32.
    """
    signal = np.asarray(signal)
    if signal.ndim != 2:
        raise ValueError(f"signal: expected (n_neurons, n_frames), found shape {signal.shape}")
    n_neurons, n_all_frames = signal.shape
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
    n_time = frames.size
    segment_names = _strings(list(segment_names), "segment_names", len(segment_names))
    tail = np.asarray(tail)
    if tail.shape != (n_time, segment_names.size):
        raise ValueError(
            f"tail: expected shape (T={n_time}, n_segments={segment_names.size}), "
            f"found {tail.shape}"
        )
    if signal_kind not in SIGNAL_KINDS:
        raise ValueError(f"signal_kind: expected one of {SIGNAL_KINDS}, found {signal_kind!r}")
    if not frame_rate_hz > 0:
        raise ValueError(f"frame_rate_hz: expected a positive rate in Hz, found {frame_rate_hz!r}")

    time_s = frames.astype(np.float64) / float(frame_rate_hz)
    dff = np.ascontiguousarray(signal[:, frames].T, dtype=np.float32)
    neuron_coord = {
        "plane": _vector(plane, "plane", n_neurons, np.int64),
        "roi": _vector(roi, "roi", n_neurons, np.int64),
        "x_um": _vector(x_um, "x_um", n_neurons, np.float64),
        "y_um": _vector(y_um, "y_um", n_neurons, np.float64),
        "z_um": _vector(z_um, "z_um", n_neurons, np.float64),
        "region": _strings(region, "region", n_neurons),
        "time_offset_s": _vector(time_offset_s, "time_offset_s", n_neurons, np.float64),
    }
    neuron_units = {"x_um": "um", "y_um": "um", "z_um": "um", "time_offset_s": "s"}
    coords: dict[str, tuple[Any, ...]] = {
        "time": ("time", time_s, {"units": "s", "long_name": "imaging frame / frame_rate_hz"}),
        "frame": ("time", frames.astype(np.int64), {"long_name": "imaging frame index"}),
        "stimulus": ("time", _strings(stimulus, "stimulus", n_time)),
        "neuron": ("neuron", np.arange(n_neurons, dtype=np.int64)),
        "segment": ("segment", segment_names),
    }
    for name, values in neuron_coord.items():
        attrs = {"units": neuron_units[name]} if name in neuron_units else {}
        coords[name] = ("neuron", values, attrs)

    attrs: dict[str, Any] = {
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
    for key, value in (extra_attrs or {}).items():
        if key in attrs:
            raise ValueError(
                f"extra_attrs: expected keys other than {sorted(attrs)}, found {key!r}"
            )
        attrs[key] = _attr_value(value)

    data_vars = {
        "dff": (
            ("time", "neuron"),
            dff,
            {
                "kind": signal_kind,
                "units": _SIGNAL_UNITS[signal_kind],
                "long_name": _SIGNAL_LONG_NAMES[signal_kind],
            },
        ),
        "tail": (
            ("time", "segment"),
            tail.astype(np.float32),
            {"units": "rad", "long_name": "per-frame mean tail segment angle"},
        ),
    }
    return xr.Dataset(data_vars, coords=coords, attrs=attrs)


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


def chronological_split(
    n_frames: int,
    train: float = 0.7,
    val: float = 0.1,
    test: float = 0.2,
    gap_frames: int = 0,
) -> dict[str, slice]:
    """Cut frames 0..n_frames-1 into contiguous train, val and test blocks in time order.

    `gap_frames` frames are left out between train and val and between val and test, so that
    windows built inside each block never share frames with (or sit right beside) another
    block. The remaining n_usable = n_frames - 2 * gap_frames frames are divided by cumulative
    fractions: the train block ends at floor(train * n_usable) and the val block after
    floor((train + val) * n_usable) usable frames (a 1e-9 tolerance absorbs float error such as
    0.7 + 0.1 = 0.7999...), and test takes the rest, so test absorbs the rounding. With no gap
    this is the reference split (fish 9, 3047 frames: 2132 / 305 / 610).

    Args:
        n_frames: number of frames T on the dataset's time axis.
        train, val, test: fractions, each > 0, summing to 1.
        gap_frames: frames dropped between consecutive blocks (>= 0).

    Returns:
        {"train": slice, "val": slice, "test": slice} over positions 0..T-1.

    Raises:
        ConfigError: fractions invalid, gap negative, or a block would be empty.
    """
    fractions = {"train": train, "val": val, "test": test}
    if any(not f > 0 for f in fractions.values()) or not math.isclose(
        sum(fractions.values()), 1.0, abs_tol=1e-6
    ):
        raise ConfigError("split (train, val, test)", "fractions > 0 that sum to 1", fractions)
    if int(gap_frames) != gap_frames or gap_frames < 0:
        raise ConfigError("split.gap_frames", "an integer >= 0", gap_frames)
    gap_frames = int(gap_frames)
    n_usable = int(n_frames) - 2 * gap_frames
    train_end = math.floor(train * n_usable + 1e-9)
    val_end = math.floor((train + val) * n_usable + 1e-9)
    lengths = {"train": train_end, "val": val_end - train_end, "test": n_usable - val_end}
    if min(lengths.values()) < 1:
        raise ConfigError(
            "split",
            f"at least one frame per block from {n_frames} frames with gap_frames={gap_frames}",
            lengths,
        )
    splits: dict[str, slice] = {}
    start = 0
    for name in SPLIT_NAMES:
        splits[name] = slice(start, start + lengths[name])
        start += lengths[name] + gap_frames
    return splits


def check_window_fits(splits: Mapping[str, slice], window_frames: int) -> None:
    """Raise ConfigError if a window of `window_frames` is longer than any split."""
    for name, block in splits.items():
        length = block.stop - block.start
        if window_frames > length:
            raise ConfigError(
                "window_frames",
                f"a window no longer than every split (split {name!r} has {length} frames)",
                window_frames,
            )


def window_starts(split: slice, window_frames: int, stride: int = 1) -> np.ndarray:
    """Start positions of the windows lying entirely inside `split`.

    Args:
        split: contiguous block of positions (step None or 1).
        window_frames: window length in frames (>= 1).
        stride: frames between consecutive starts (>= 1).

    Returns:
        (n_windows,) int64 starts s with split.start <= s and s + window_frames <= split.stop;
        empty when the window is longer than the split (see `check_window_fits`).
    """
    if window_frames < 1:
        raise ConfigError("window_frames", "an integer >= 1", window_frames)
    if stride < 1:
        raise ConfigError("window_stride", "an integer >= 1", stride)
    if split.step not in (None, 1):
        raise ValueError(f"split: expected a contiguous slice, found step {split.step}")
    return np.arange(split.start, split.stop - window_frames + 1, stride, dtype=np.int64)


@dataclass(eq=False)
class InputNormaliser:
    """Per-neuron input scaling, fitted on training frames: x' = (x - mean) / std.

    Attributes:
        mean: (n_neurons,) float32 training mean of each neuron.
        std: (n_neurons,) float32 training standard deviation, floored (never 0).
        method: "zscore", or "none" (mean 0, std 1: identity).

    `to_dict` stores the arrays as JSON lists of floats (a few hundred kB for 14k neurons), so a
    normaliser travels in the same JSON as a run's other parameters.
    """

    mean: np.ndarray
    std: np.ndarray
    method: str = "zscore"

    def __post_init__(self) -> None:
        self.mean = np.asarray(self.mean, dtype=np.float32)
        self.std = np.asarray(self.std, dtype=np.float32)
        if self.method not in ("zscore", "none"):
            raise ConfigError("input_normalisation", "'zscore' or 'none'", self.method)
        if self.mean.ndim != 1 or self.mean.shape != self.std.shape:
            raise ValueError(
                f"InputNormaliser: expected mean and std of one shape (n_neurons,), found "
                f"{self.mean.shape} and {self.std.shape}"
            )
        if not np.all(self.std > 0):
            raise ValueError("InputNormaliser: expected std > 0 for every neuron")

    @property
    def n_neurons(self) -> int:
        return int(self.mean.size)

    def apply(self, x: np.ndarray) -> np.ndarray:
        """Normalise `x` of shape (..., n_neurons); float32 in, float32 out."""
        x = np.asarray(x)
        if x.shape[-1:] != (self.n_neurons,):
            raise ValueError(
                f"x: expected a last axis of {self.n_neurons} neurons, found shape {x.shape}"
            )
        if self.method == "none":
            return x
        return (x - self.mean) / self.std

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict: {"method", "mean": [...], "std": [...]}."""
        return {"method": self.method, "mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> InputNormaliser:
        """Inverse of `to_dict`."""
        missing = [key for key in ("method", "mean", "std") if key not in data]
        if missing:
            raise ValueError(f"InputNormaliser.from_dict: expected keys {missing}, found "
                             f"{sorted(data)}")  # fmt: skip
        return cls(mean=data["mean"], std=data["std"], method=data["method"])


def fit_input_normaliser(
    dff: np.ndarray,
    train: slice,
    method: str = "zscore",
    std_floor_fraction: float = 0.01,
) -> InputNormaliser:
    """Per-neuron mean and std from the TRAINING frames only (no leakage from val/test).

    The std of each neuron is floored at `std_floor_fraction` times the median std over neurons:
    a neuron silent during training but active later would otherwise be divided by ~0 and
    blow up the model's inputs. If every neuron is flat in training the floor is 1 (no scaling).

    Args:
        dff: (T, n_neurons) signal (the dataset's `dff`).
        train: the training block of `chronological_split`.
        method: "zscore" or "none" (identity normaliser).
        std_floor_fraction: floor as a fraction of the median neuron std, in [0, 1].

    Returns:
        The fitted normaliser.
    """
    dff = np.asarray(dff)
    if dff.ndim != 2:
        raise ValueError(f"dff: expected (T, n_neurons), found shape {dff.shape}")
    n_neurons = dff.shape[1]
    if method == "none":
        return InputNormaliser(
            np.zeros(n_neurons, np.float32), np.ones(n_neurons, np.float32), "none"
        )
    if method != "zscore":
        raise ConfigError("input_normalisation", "'zscore' or 'none'", method)
    if not 0 <= std_floor_fraction <= 1:
        raise ConfigError("input_std_floor_fraction", "a value in [0, 1]", std_floor_fraction)
    block = dff[train]
    if block.shape[0] < 2:
        raise ValueError(f"train: expected at least 2 frames to fit a std, found {block.shape[0]}")
    mean = block.mean(axis=0, dtype=np.float64)
    std = block.std(axis=0, dtype=np.float64)
    median = float(np.median(std))
    floor = std_floor_fraction * median if median > 0 else 1.0
    n_floored = int(np.count_nonzero(std < floor))
    if n_floored:
        logger.info("input normaliser: %d neuron(s) with training std below the floor %.3g",
                    n_floored, floor)  # fmt: skip
    # A zero floor (fraction 0) still must not divide by zero.
    std = np.maximum(std, floor) if floor > 0 else np.where(std > 0, std, 1.0)
    return InputNormaliser(mean, std, "zscore")


def average_window_predictions(
    starts: np.ndarray,
    window_frames: int,
    predictions: np.ndarray,
    n_frames: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Average overlapping window predictions per frame.

    Args:
        starts: (n_windows,) start position of each window on the time axis.
        window_frames: window length w.
        predictions: (n_windows, w, n_out) model output for every frame of every window.
        n_frames: length T of the time axis (positions 0..T-1).

    Returns:
        frame_index: (n_covered,) int64 sorted positions covered by at least one window.
        averaged: (n_covered, n_out) float32 mean over the windows covering each position
            (accumulated in float64).
    """
    starts = np.asarray(starts, dtype=np.int64)
    predictions = np.asarray(predictions)
    if predictions.ndim != 3 or predictions.shape[:2] != (starts.size, window_frames):
        raise ValueError(
            f"predictions: expected shape (n_windows={starts.size}, window={window_frames}, "
            f"n_out), found {predictions.shape}"
        )
    if starts.size and (starts.min() < 0 or starts.max() + window_frames > n_frames):
        raise ValueError(
            f"starts: expected windows inside [0, {n_frames}), found starts in "
            f"[{starts.min()}, {starts.max()}] with window {window_frames}"
        )
    n_out = predictions.shape[2]
    positions = (starts[:, None] + np.arange(window_frames)).ravel()
    counts = np.bincount(positions, minlength=n_frames)
    sums = np.zeros((n_frames, n_out), dtype=np.float64)
    np.add.at(sums, positions, predictions.reshape(-1, n_out))
    frame_index = np.flatnonzero(counts)
    averaged = sums[frame_index] / counts[frame_index, None]
    return frame_index.astype(np.int64), averaged.astype(np.float32)


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


def lag_neural(dataset: xr.Dataset, lag_frames: int) -> xr.Dataset:
    """Pair the tail at each frame with the neural activity `lag_frames` frames later.

    Calcium indicators report spiking with a delay (GCaMP6s rises over ~0.2-0.5 s and a volume
    takes ~0.9 s), so a bout late in frame t is often first visible in frame t + 1. The returned
    dataset keeps every coordinate and the tail of frames 0..T-lag-1 and puts ``dff`` of frames
    lag..T-1 beside them; windows, splits and predictions then refer to the behaviour's frames.
    ``lag_frames = 0`` returns the dataset unchanged (the reference's concurrent decoding).

    Raises:
        ConfigError: a negative lag, or one that leaves no frames.
    """
    if lag_frames < 0:
        raise ConfigError("decoding.neural_lag_frames", "an integer >= 0", lag_frames)
    if lag_frames == 0:
        return dataset
    n_time = dataset.sizes["time"]
    if lag_frames >= n_time:
        raise ConfigError("decoding.neural_lag_frames", f"fewer than {n_time} frames", lag_frames)
    frames = dataset["frame"].values
    uneven = int(np.count_nonzero(frames[lag_frames:] - frames[:-lag_frames] != lag_frames))
    if uneven:
        logger.warning(
            "%d of %d frame pairs are not exactly %d imaging frames apart (frames without tail "
            "samples inside the recording)",
            uneven,
            n_time - lag_frames,
            lag_frames,
        )
    lagged = dataset.isel(time=slice(0, n_time - lag_frames)).copy(deep=True)
    lagged["dff"].values[:] = dataset["dff"].values[lag_frames:]
    lagged.attrs["neural_lag_frames"] = int(lag_frames)
    return lagged
