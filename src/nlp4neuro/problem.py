"""The decoding problem of one fish and window: lag, splits, window starts and input scaling.

`build_problem(dataset, window_frames, params)` decides everything about how a fish's dataset is
cut into a decoding problem, once; training, prediction and explanation then read the same
numbers from the one `DecodingProblem` (saved as ``problem.json`` in the run folder):

- the neural lag and the horizon: the tail of frame t is paired with ``dff`` of frame
  t + lag - horizon (`lag_neural`); every horizon of a run keeps the same target frames;
- the train / val / test blocks of one fold (`fold_segments`): with ``folds: 1`` one
  chronological split (`chronological_split`); with K > 1 folds the K-th test block of K
  contiguous ones (`blocked_split`, blocked cross-validation). A gap on each side of the test
  and validation blocks, the same for every window length (`DecodingParams.resolved_gap`), so
  every window and model is scored on the same test frames and no window, lagged input or
  calcium transient reaches across a block boundary. A block may be cut in two (training
  before and after a middle test block): its `segments`; windows never cross a segment edge;
- the sliding-window starts inside each segment (`window_starts`, stride 1);
- the per-neuron input normaliser, fitted on training frames only (`fit_input_normaliser`).

All frame indices here are positions along the LAGGED dataset's ``time`` axis (0..T'-1), not
imaging frame numbers (those are the ``frame`` coordinate). No torch here: numpy index arithmetic.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from nlp4neuro.config import allowed_values, build
from nlp4neuro.errors import ConfigError, InputFileError
from nlp4neuro.provenance import write_json

logger = logging.getLogger(__name__)

PROBLEM_NAME = "problem.json"
SPLIT_NAMES = ("train", "val", "test")
# A neuron's training std is floored at this fraction of the median neuron std: a neuron silent
# during training but active later would otherwise be divided by ~0. A numerical guard, not a
# modelling choice, so it is no config key.
STD_FLOOR_FRACTION = 0.01
_FORMAT = "nlp4neuro decoding problem 3"


@dataclass(frozen=True)
class DecodingParams:
    """How a decoding problem is cut from a dataset (the config's ``decoding`` section).

    Attributes:
        windows: every window length of the run (the default gap follows the longest).
        folds: K; 1 = one chronological split, K > 1 = blocked cross-validation.
        train_fraction, val_fraction, test_fraction: the split with one fold (sum 1); with
            K > 1 folds only val_fraction is used (test blocks are 1 / K of the recording).
        gap_frames: frames left out on each side of the test and validation blocks; None =
            max(windows) + calcium_decay_s in frames (`resolved_gap`).
        calcium_decay_s: time for the indicator's response to fade, in seconds.
        neural_lag_frames: pair the tail at frame t with neural frame t + lag; 0 = concurrent.
        horizons: decode the tail h frames ahead of the neural frames, one problem per h
            (sorted, unique); with any h > 0 every decoder of the run sees only past frames
            (`past_only`).
        input_normalisation: "zscore" (per neuron, training statistics) or "none".
    """

    windows: tuple[int, ...]
    folds: int
    train_fraction: float
    val_fraction: float
    test_fraction: float
    gap_frames: int | None
    calcium_decay_s: float
    neural_lag_frames: int
    horizons: tuple[int, ...]
    input_normalisation: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "windows", tuple(int(w) for w in self.windows))
        horizons = tuple(sorted({int(h) for h in self.horizons}))
        if not horizons or horizons[0] < 0 or len(horizons) != len(self.horizons):
            raise ConfigError("decoding.horizons", "unique integers >= 0", list(self.horizons))
        object.__setattr__(self, "horizons", horizons)
        total = self.train_fraction + self.val_fraction + self.test_fraction
        if not math.isclose(total, 1.0, abs_tol=1e-6):
            raise ConfigError(
                "decoding.train_fraction + val_fraction + test_fraction", "a sum of 1", total
            )
        if not self.windows or min(self.windows) < 1:
            raise ConfigError("decoding.windows", "integers >= 1", list(self.windows))
        if int(self.folds) != self.folds or self.folds < 1:
            raise ConfigError("decoding.folds", "an integer >= 1", self.folds)
        if self.gap_frames is not None:
            self.resolved_gap(float("nan"))

    @classmethod
    def from_config(cls, decoding: Mapping[str, Any]) -> DecodingParams:
        """From the validated ``decoding`` section (`nlp4neuro.config.section("decoding")`)."""
        return build(cls, decoding, "decoding")

    def to_dict(self) -> dict[str, Any]:
        values = {name: getattr(self, name) for name in self.__dataclass_fields__}
        return {**values, "windows": list(self.windows), "horizons": list(self.horizons)}

    @property
    def past_only(self) -> bool:
        """True when the run decodes ahead: then no prediction may see a neural frame after
        the frame it is paired with, at any horizon (`models.see_past_only`)."""
        return max(self.horizons) > 0

    def resolved_gap(self, frame_rate_hz: float) -> int:
        """Gap on each side of the test and validation blocks, in frames.

        `gap_frames`, or when None the longest window plus `calcium_decay_s` in frames (rounded
        up): the same for every window length, so the test blocks do not move with the window.

        Raises:
            ConfigError (decoding.gap_frames): a gap shorter than the neural lag, which would let
                the last training frames' lagged inputs reach into the validation block.
            ValueError: a null gap_frames and no positive frame rate to convert by.
        """
        if self.gap_frames is None:
            if not (math.isfinite(frame_rate_hz) and frame_rate_hz > 0):
                raise ValueError(
                    f"frame_rate_hz: expected a positive rate to convert decoding.calcium_decay_s "
                    f"into frames, found {frame_rate_hz}"
                )
            decay = math.ceil(self.calcium_decay_s * frame_rate_hz - 1e-9)
            gap = max(self.windows) + decay
        else:
            gap = int(self.gap_frames)
        if gap < self.neural_lag_frames:
            raise ConfigError(
                "decoding.gap_frames",
                f"a gap of at least decoding.neural_lag_frames ({self.neural_lag_frames}) frames",
                gap,
            )
        return gap


# ----------------------------------------------------------------------------------------------
# Lag, splits, windows


def lag_neural(
    dataset: xr.Dataset, lag_frames: int, horizon: int = 0, max_horizon: int = 0
) -> xr.Dataset:
    """Pair the tail at each frame t with the neural activity of frame t + lag - horizon.

    Calcium indicators report spiking with a delay (GCaMP6s rises over ~0.2-0.5 s and a volume
    takes ~0.9 s), so a bout late in frame t is often first visible in frame t + 1: the lag.
    The horizon decodes ahead: the tail h frames after the neural frames. The returned dataset
    keeps every coordinate and the tail of the target frames max(H - lag, 0)..T-lag-1 (H =
    `max_horizon`, so every horizon of a run has the same target frames) and puts ``dff`` of
    the paired neural frames beside them; windows, splits and predictions then refer to the
    behaviour's frames. Lag and horizon 0 return the dataset unchanged (the reference's
    concurrent decoding).

    Raises:
        ConfigError: a negative lag or horizon, a horizon above `max_horizon`, or a shift that
            leaves no frames.
    """
    if lag_frames < 0:
        raise ConfigError("decoding.neural_lag_frames", "an integer >= 0", lag_frames)
    if not 0 <= horizon <= max_horizon:
        raise ConfigError("decoding.horizons", f"horizons in 0..{max_horizon}", horizon)
    n_time = dataset.sizes["time"]
    first = max(max_horizon - lag_frames, 0)
    if first == 0 and lag_frames == 0:
        return dataset
    if first + lag_frames >= n_time:
        raise ConfigError(
            "decoding.neural_lag_frames / horizons",
            f"a lag and largest horizon that leave some of the {n_time} frames",
            f"lag {lag_frames}, horizon {max_horizon}",
        )
    shift = lag_frames - horizon
    _warn_uneven(dataset["frame"].values, first, n_time - lag_frames, shift)
    lagged = dataset.isel(time=slice(first, n_time - lag_frames)).copy(deep=True)
    lagged["dff"].values[:] = dataset["dff"].values[first + shift : n_time - lag_frames + shift]
    lagged.attrs["neural_lag_frames"] = int(lag_frames)
    lagged.attrs["horizon_frames"] = int(horizon)
    return lagged


def _warn_uneven(frames: np.ndarray, start: int, stop: int, shift: int) -> None:
    """Warn when target frame t and its neural frame are not `shift` imaging frames apart."""
    if shift == 0:
        return
    uneven = int(
        np.count_nonzero(frames[start + shift : stop + shift] - frames[start:stop] != shift)
    )
    if uneven:
        logger.warning(
            "%d of %d frame pairs are not exactly %d imaging frames apart (frames without tail "
            "samples inside the recording)",
            uneven,
            stop - start,
            shift,
        )


def chronological_split(
    n_frames: int, train: float, val: float, test: float, gap_frames: int
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
        n_frames: number of frames T on the (lagged) dataset's time axis.
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
        raise ConfigError(
            "decoding.*_fraction (train, val, test)", "fractions > 0 that sum to 1", fractions
        )
    if int(gap_frames) != gap_frames or gap_frames < 0:
        raise ConfigError("decoding.gap_frames", "an integer >= 0", gap_frames)
    gap_frames = int(gap_frames)
    n_usable = int(n_frames) - 2 * gap_frames
    train_end = math.floor(train * n_usable + 1e-9)
    val_end = math.floor((train + val) * n_usable + 1e-9)
    lengths = {"train": train_end, "val": val_end - train_end, "test": n_usable - val_end}
    if min(lengths.values()) < 1:
        raise ConfigError(
            "decoding",
            f"at least one frame per block from {n_frames} frames with gap_frames={gap_frames}",
            lengths,
        )
    splits: dict[str, slice] = {}
    start = 0
    for name in SPLIT_NAMES:
        splits[name] = slice(start, start + lengths[name])
        start += lengths[name] + gap_frames
    return splits


def blocked_split(
    n_frames: int, fold: int, folds: int, val: float, gap_frames: int
) -> dict[str, tuple[slice, ...]]:
    """Fold `fold` of a blocked K-fold cross-validation over frames 0..n_frames-1.

    The recording is cut into K contiguous test blocks, block k = [floor(k T / K), floor((k + 1)
    T / K)), so the K test blocks tile it. The validation block (floor(val T) frames) sits
    before the test block, `gap_frames` away, when it fits there with a gap before it, else
    after the test block; training takes every other frame at least `gap_frames` away from
    both blocks: up to two segments, before and after. Example (T = 100, K = 5, val 0.1, gap
    3, fold 2): test 40-59, val 27-36, train 0-23 and 63-99.

    Returns:
        {"train", "val", "test": tuple of slices}, the segments of each block in time order.

    Raises:
        ConfigError: fold outside 0..K-1, or a block left without frames.
    """
    if not 0 <= fold < folds:
        raise ConfigError("decoding.folds", f"a fold in 0..{folds - 1}", fold)
    test = slice(math.floor(fold * n_frames / folds), math.floor((fold + 1) * n_frames / folds))
    n_val = math.floor(val * n_frames + 1e-9)
    if test.start - 2 * gap_frames - n_val >= 0:
        val_block = slice(test.start - gap_frames - n_val, test.start - gap_frames)
    else:
        val_block = slice(test.stop + gap_frames, test.stop + gap_frames + n_val)
    first, second = sorted((test, val_block), key=lambda block: block.start)
    train = (slice(0, first.start - gap_frames), slice(second.stop + gap_frames, n_frames))
    segments = {
        "train": tuple(part for part in train if part.stop > part.start),
        "val": (val_block,) if 0 < n_val and val_block.stop <= n_frames else (),
        "test": (test,) if test.stop > test.start else (),
    }
    lengths = {name: sum(p.stop - p.start for p in parts) for name, parts in segments.items()}
    if min(lengths.values()) < 1:
        raise ConfigError(
            "decoding.folds",
            f"frames in every block of fold {fold} of {folds} from {n_frames} frames with a "
            f"gap of {gap_frames} and val_fraction {val}",
            lengths,
        )
    return segments


def fold_segments(
    n_frames: int, fold: int, params: DecodingParams, gap_frames: int
) -> dict[str, tuple[slice, ...]]:
    """The train / val / test segments of one fold: `chronological_split` with one fold (test
    last), `blocked_split` with more."""
    if params.folds == 1:
        if fold != 0:
            raise ConfigError("decoding.folds", "fold 0 (decoding.folds is 1)", fold)
        split = chronological_split(
            n_frames, params.train_fraction, params.val_fraction, params.test_fraction, gap_frames
        )
        return {name: (block,) for name, block in split.items()}
    return blocked_split(n_frames, fold, params.folds, params.val_fraction, gap_frames)


def segment_frames(segments: tuple[slice, ...]) -> np.ndarray:
    """(n,) int64 positions of every frame in `segments`, in time order."""
    if not segments:
        return np.zeros(0, dtype=np.int64)
    return np.concatenate([np.arange(p.start, p.stop, dtype=np.int64) for p in segments])


def check_window_fits(segments: Mapping[str, tuple[slice, ...]], window_frames: int) -> None:
    """Raise ConfigError (decoding.windows) unless a window fits in some segment of every block
    and covers the whole test block (every test segment at least one window long)."""
    for name, parts in segments.items():
        lengths = [p.stop - p.start for p in parts]
        short = min(lengths) if name == "test" else max(lengths)
        if window_frames > short:
            raise ConfigError(
                "decoding.windows",
                f"a window no longer than the {name!r} block ({short} frames in its "
                f"{'shortest' if name == 'test' else 'longest'} segment)",
                window_frames,
            )


def segment_starts(segments: tuple[slice, ...], window_frames: int, stride: int = 1) -> np.ndarray:
    """Starts of the windows lying entirely inside one of `segments` (`window_starts` each)."""
    starts = [window_starts(part, window_frames, stride) for part in segments]
    return np.concatenate(starts) if starts else np.zeros(0, dtype=np.int64)


def window_starts(split: slice, window_frames: int, stride: int = 1) -> np.ndarray:
    """Start positions of the windows lying entirely inside `split`.

    Args:
        split: contiguous block of positions (step None or 1).
        window_frames: window length in frames (>= 1).
        stride: frames between consecutive starts (>= 1; saliency.window_stride).

    Returns:
        (n_windows,) int64 starts s with split.start <= s and s + window_frames <= split.stop;
        empty when the window is longer than the split (see `check_window_fits`).
    """
    if window_frames < 1:
        raise ConfigError("decoding.windows", "an integer >= 1", window_frames)
    if stride < 1:
        raise ConfigError("saliency.window_stride", "an integer >= 1", stride)
    if split.step not in (None, 1):
        raise ValueError(f"split: expected a contiguous slice, found step {split.step}")
    return np.arange(split.start, split.stop - window_frames + 1, stride, dtype=np.int64)


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


# ----------------------------------------------------------------------------------------------
# Input normalisation


def _check_method(method: str) -> None:
    methods = allowed_values("decoding", "input_normalisation")
    if method not in methods:
        raise ConfigError("decoding.input_normalisation", f"one of {methods}", method)


@dataclass(eq=False)
class InputNormaliser:
    """Per-neuron input scaling, fitted on training frames: x' = (x - mean) / std.

    Attributes:
        mean: (n_neurons,) float32 training mean of each neuron.
        std: (n_neurons,) float32 training standard deviation, floored (never 0).
        method: "zscore", or "none" (mean 0, std 1: identity).

    `to_dict` stores the arrays as JSON lists of floats (a few hundred kB for 14k neurons), so a
    normaliser travels in problem.json.
    """

    mean: np.ndarray
    std: np.ndarray
    method: str

    def __post_init__(self) -> None:
        self.mean = np.asarray(self.mean, dtype=np.float32)
        self.std = np.asarray(self.std, dtype=np.float32)
        _check_method(self.method)
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
            raise ValueError(
                f"InputNormaliser.from_dict: expected keys {missing}, found {sorted(data)}"
            )
        return cls(mean=data["mean"], std=data["std"], method=data["method"])


def fit_input_normaliser(
    dff: np.ndarray,
    train: slice | np.ndarray,
    method: str,
    std_floor_fraction: float = STD_FLOOR_FRACTION,
) -> InputNormaliser:
    """Per-neuron mean and std from the TRAINING frames only (no leakage from val/test).

    The std of each neuron is floored at `std_floor_fraction` times the median std over neurons
    (see `STD_FLOOR_FRACTION`). If every neuron is flat in training the floor is 1 (no scaling).

    Args:
        dff: (T, n_neurons) signal (the lagged dataset's `dff`).
        train: the training frames (a slice, or index positions as `DecodingProblem.splits`).
        method: "zscore" or "none" (identity normaliser).
        std_floor_fraction: floor as a fraction of the median neuron std, in [0, 1].
    """
    dff = np.asarray(dff)
    if dff.ndim != 2:
        raise ValueError(f"dff: expected (T, n_neurons), found shape {dff.shape}")
    _check_method(method)
    n_neurons = dff.shape[1]
    if method == "none":
        return InputNormaliser(
            np.zeros(n_neurons, np.float32), np.ones(n_neurons, np.float32), "none"
        )
    if not 0 <= std_floor_fraction <= 1:
        raise ValueError(
            f"std_floor_fraction: expected a value in [0, 1], found {std_floor_fraction}"
        )
    block = dff[train]
    if block.shape[0] < 2:
        raise ValueError(f"train: expected at least 2 frames to fit a std, found {block.shape[0]}")
    mean = block.mean(axis=0, dtype=np.float64)
    std = block.std(axis=0, dtype=np.float64)
    median = float(np.median(std))
    floor = std_floor_fraction * median if median > 0 else 1.0
    n_floored = int(np.count_nonzero(std < floor))
    if n_floored:
        logger.info(
            "input normaliser: %d neuron(s) with training std below the floor %.3g",
            n_floored,
            floor,
        )
    # A zero floor (fraction 0) still must not divide by zero.
    std = np.maximum(std, floor) if floor > 0 else np.where(std > 0, std, 1.0)
    return InputNormaliser(mean, std, "zscore")


# ----------------------------------------------------------------------------------------------
# The problem


def _arrays(dataset: xr.Dataset) -> tuple[np.ndarray, np.ndarray]:
    """`dff` (T, N) and `tail` (T, K) as float32 arrays, checked against the dataset contract."""
    source = dataset.encoding.get("source", "<dataset in memory>")
    for name, dims in (("dff", ("time", "neuron")), ("tail", ("time", "segment"))):
        if name not in dataset.data_vars:
            raise InputFileError(source, f"data variable '{name}' {dims}", "none")
        if dataset[name].dims != dims:
            raise InputFileError(source, f"'{name}' with dims {dims}", dataset[name].dims)
    dff = np.asarray(dataset["dff"].values, dtype=np.float32)
    tail = np.asarray(dataset["tail"].values, dtype=np.float32)
    return dff, tail


def dataset_fingerprint(dataset: xr.Dataset) -> dict[str, Any]:
    """SHA-256 of a dataset's float32 `dff` and `tail` plus their shapes (the data a run saw)."""
    dff, tail = _arrays(dataset)
    digest = hashlib.sha256()
    for array in (dff, tail):
        contiguous = np.ascontiguousarray(array)
        digest.update(str((contiguous.dtype.str, contiguous.shape)).encode())
        digest.update(memoryview(contiguous).cast("B"))
    return {
        "sha256": digest.hexdigest(),
        "dff_shape": list(dff.shape),
        "tail_shape": list(tail.shape),
    }


@dataclass(frozen=True, eq=False)
class DecodingProblem:
    """One fish's decoding problem for one window length; build with `build_problem`.

    Attributes:
        window_frames: window length in frames.
        fold: which fold of `params.folds` this problem is (0 with one fold).
        horizon: frames between the neural frames and the tail decoded (one of
            `params.horizons`; see `lag_neural`).
        gap_frames: the resolved gap beside the blocks in frames (`DecodingParams.resolved_gap`).
        params: the decoding settings it was built with.
        segments: {"train", "val", "test": tuple of slices} contiguous rows of the LAGGED
            recording per block (`fold_segments`); `splits` gives their frames as index arrays.
        starts: {split: (n_windows,) int64} window starts inside each segment (stride 1).
        normaliser: per-neuron input scaling fitted on the training rows.
        n_frames, n_neurons, n_outputs: shape of the lagged recording, T' x N -> K.
        dataset: fingerprint of the (unlagged) dataset it was built from (`dataset_fingerprint`).
        source: the problem.json it was loaded from (None when built in memory), for errors.
    """

    window_frames: int
    fold: int
    horizon: int
    gap_frames: int
    params: DecodingParams
    segments: dict[str, tuple[slice, ...]]
    starts: dict[str, np.ndarray]
    normaliser: InputNormaliser
    n_frames: int
    n_neurons: int
    n_outputs: int
    dataset: dict[str, Any]
    source: Path | None = None

    @property
    def splits(self) -> dict[str, np.ndarray]:
        """{"train", "val", "test": (n,) int64} the frames of each block, in time order (index
        arrays: ``x[problem.splits["train"]]`` are the training frames)."""
        return {name: segment_frames(parts) for name, parts in self.segments.items()}

    def lagged(self, dataset: xr.Dataset) -> xr.Dataset:
        """`dataset` with the neural lag applied: coords and tail are those of the target frames.

        Raises:
            InputFileError: `dataset` is not the one this problem was built from (naming
                problem.json when the problem was loaded from one).
        """
        found = dataset_fingerprint(dataset)
        if found != self.dataset:
            where = self.source or f"{PROBLEM_NAME} (built in memory)"
            raise InputFileError(
                where,
                f"the dataset it was built from ({self.dataset})",
                f"a different dataset ({found}, from "
                f"{dataset.encoding.get('source', '<dataset in memory>')})",
            )
        return lag_neural(
            dataset, self.params.neural_lag_frames, self.horizon, max(self.params.horizons)
        )

    def recording(self, dataset: xr.Dataset) -> tuple[np.ndarray, np.ndarray]:
        """The arrays training uses: x (T', N) float32 normalised lagged inputs, y (T', K)
        float32 targets in rad; both C-contiguous and writable (torch.from_numpy shares them)."""
        dff, tail = _arrays(self.lagged(dataset))
        x = np.require(self.normaliser.apply(dff), dtype=np.float32, requirements=["C", "W"])
        y = np.require(tail, dtype=np.float32, requirements=["C", "W"])
        return x, y

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict of everything above (the content of problem.json)."""
        return {
            "format": _FORMAT,
            "window_frames": self.window_frames,
            "fold": self.fold,
            "horizon": self.horizon,
            "gap_frames": self.gap_frames,
            "params": self.params.to_dict(),
            "segments": {
                name: [{"start": p.start, "stop": p.stop} for p in parts]
                for name, parts in self.segments.items()
            },
            "starts": {name: starts.tolist() for name, starts in self.starts.items()},
            "normaliser": self.normaliser.to_dict(),
            "n_frames": self.n_frames,
            "n_neurons": self.n_neurons,
            "n_outputs": self.n_outputs,
            "dataset": self.dataset,
        }

    def save(self, path: str | Path) -> Path:
        """Write problem.json at `path` atomically; returns `path`."""
        return write_json(path, self.to_dict(), indent=1)


def _frame_rate(dataset: xr.Dataset, params: DecodingParams) -> float:
    """The dataset's frame rate when the gap needs it (gap_frames null), else NaN."""
    if params.gap_frames is not None:
        return float("nan")
    rate = float(dataset.attrs.get("frame_rate_hz", np.nan))
    if not (math.isfinite(rate) and rate > 0):
        raise InputFileError(
            dataset.encoding.get("source", "<dataset in memory>"),
            "a positive 'frame_rate_hz' attribute (it converts decoding.calcium_decay_s into "
            "the gap; or set decoding.gap_frames)",
            dataset.attrs.get("frame_rate_hz"),
        )
    return rate


def build_problem(
    dataset: xr.Dataset,
    window_frames: int,
    params: DecodingParams,
    fold: int = 0,
    horizon: int = 0,
) -> DecodingProblem:
    """Cut one fish's dataset into the decoding problem of one window, fold and horizon (see
    the module docstring).

    Raises:
        InputFileError: the dataset lacks `dff`/`tail` on (time, neuron)/(time, segment), or a
            frame rate when the gap needs one.
        ConfigError: a window < 1 or longer than a block (decoding.windows), a gap shorter than
            the lag (decoding.gap_frames), a fold outside 0..folds-1, a horizon not in
            decoding.horizons, or an empty block.
    """
    window = int(window_frames)
    if window < 1:
        raise ConfigError("decoding.windows", "an integer >= 1", window_frames)
    if int(horizon) not in params.horizons:
        raise ConfigError("decoding.horizons", f"a list containing {horizon}", params.horizons)
    gap = params.resolved_gap(_frame_rate(dataset, params))
    fingerprint = dataset_fingerprint(dataset)
    dff, _ = _arrays(
        lag_neural(dataset, params.neural_lag_frames, int(horizon), max(params.horizons))
    )
    n_frames, n_neurons = dff.shape
    segments = fold_segments(n_frames, int(fold), params, gap)
    check_window_fits(segments, window)
    return DecodingProblem(
        window_frames=window,
        fold=int(fold),
        horizon=int(horizon),
        gap_frames=gap,
        params=params,
        segments=segments,
        starts={name: segment_starts(parts, window) for name, parts in segments.items()},
        normaliser=fit_input_normaliser(
            dff, segment_frames(segments["train"]), params.input_normalisation
        ),
        n_frames=n_frames,
        n_neurons=n_neurons,
        n_outputs=int(dataset.sizes["segment"]),
        dataset=fingerprint,
    )


# ----------------------------------------------------------------------------------------------
# problem.json


def _fields(data: Any, keys: tuple[str, ...], path: Path, where: str) -> None:
    """InputFileError naming `path` unless `data` is a mapping holding every key."""
    if not isinstance(data, Mapping):
        raise InputFileError(path, f"an object at {where}", type(data).__name__)
    missing = [key for key in keys if key not in data]
    if missing:
        raise InputFileError(path, f"fields {missing} at {where}", f"only {sorted(data)}")


def _read_json(path: Path) -> Any:
    if not path.is_file():
        raise InputFileError(
            path, f"a {PROBLEM_NAME} written by the training stage", "no such file"
        )
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise InputFileError(path, "a JSON file", repr(error)) from error


_TOP_LEVEL = ("format", "window_frames", "fold", "horizon", "gap_frames", "params", "segments",
              "starts", "normaliser", "n_frames", "n_neurons", "n_outputs", "dataset")  # fmt: skip


def _check_layout(data: Any, path: Path) -> None:
    """InputFileError naming `path` and the first missing field, if `data` lacks one."""
    _fields(data, _TOP_LEVEL, path, "the top level")
    if data["format"] != _FORMAT:
        raise InputFileError(path, f"format {_FORMAT!r}", repr(data["format"]))
    _fields(data["params"], tuple(DecodingParams.__dataclass_fields__), path, "params")
    _fields(data["segments"], SPLIT_NAMES, path, "segments")
    _fields(data["starts"], SPLIT_NAMES, path, "starts")
    for name in SPLIT_NAMES:
        if not isinstance(data["segments"][name], list):
            raise InputFileError(path, f"a list at segments.{name}", data["segments"][name])
        for k, part in enumerate(data["segments"][name]):
            _fields(part, ("start", "stop"), path, f"segments.{name}[{k}]")
    _fields(data["dataset"], ("sha256", "dff_shape", "tail_shape"), path, "dataset")


def load_problem(path: str | Path) -> DecodingProblem:
    """Read a problem.json written by `DecodingProblem.save`.

    Raises:
        InputFileError naming `path`: missing or unreadable file, a missing field, or window
            starts that do not match the splits and window.
    """
    path = Path(path)
    data = _read_json(path)
    _check_layout(data, path)
    try:
        normaliser = InputNormaliser.from_dict(data["normaliser"])
        params = build(DecodingParams, data["params"], "decoding")
    except (ValueError, TypeError) as error:
        raise InputFileError(path, "a valid normaliser and params", str(error)) from error
    window = int(data["window_frames"])
    segments = {
        name: tuple(slice(int(p["start"]), int(p["stop"])) for p in data["segments"][name])
        for name in SPLIT_NAMES
    }
    starts = {name: np.asarray(data["starts"][name], dtype=np.int64) for name in SPLIT_NAMES}
    for name in SPLIT_NAMES:
        if not np.array_equal(starts[name], segment_starts(segments[name], window)):
            raise InputFileError(
                path,
                f"starts.{name} = the windows of {window} frames inside segments.{name}",
                "other starts",
            )
    return DecodingProblem(
        window_frames=window,
        fold=int(data["fold"]),
        horizon=int(data["horizon"]),
        gap_frames=int(data["gap_frames"]),
        params=params,
        segments=segments,
        starts=starts,
        normaliser=normaliser,
        n_frames=int(data["n_frames"]),
        n_neurons=int(data["n_neurons"]),
        n_outputs=int(data["n_outputs"]),
        dataset=dict(data["dataset"]),
        source=path,
    )
