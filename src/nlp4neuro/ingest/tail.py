"""Behaviour and annotation tables: tail angles, per-frame tail, stimulus epochs, neuron labels.

Nothing here writes to the input files (HDF5 stores are opened with ``mode="r"``); every bad
input raises :class:`nlp4neuro.errors.InputFileError` naming the file, what was expected and
what was found.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from nlp4neuro.conventions import SEGMENT_PREFIX, segment_names
from nlp4neuro.errors import InputFileError
from nlp4neuro.ingest.contract import PerFrameTail

logger = logging.getLogger(__name__)

# Anything that looks like a numbered angle column (theta_0, theta03, theta_00): such columns
# must be exactly theta_00..theta_{n-1}.
_ANGLE_LIKE = re.compile(rf"{re.escape(SEGMENT_PREFIX.rstrip('_'))}_?\d+")
LABEL_COLUMNS = ("plane", "roi", "region")
STIMULUS_COLUMNS = ("start_s", "stop_s", "stimulus")
_TABLE_READ_ERRORS = (OSError, ValueError, RuntimeError, KeyError, TypeError, UnicodeDecodeError)


def show(value: Any) -> str:
    """A cell value for an error message: strings quoted, numpy scalars as plain numbers."""
    return repr(value) if isinstance(value, str) else str(value)


# --------------------------------------------------------------------------------------------
# Tail table
# --------------------------------------------------------------------------------------------


def angle_columns(table: pd.DataFrame, source: str | Path) -> list[str]:
    """The tail-angle columns of a table, ``theta_00`` .. ``theta_{n-1}`` (base to tip).

    Raises:
        InputFileError: naming `source`, the expected and the found columns, when the table has
            numbered angle columns that are not exactly theta_00.. (e.g. theta_0, or a gap).
    """
    found = [str(c) for c in table.columns if _ANGLE_LIKE.fullmatch(str(c))]
    expected = segment_names(len(found))
    if sorted(found) != expected:
        raise InputFileError(
            source,
            f"tail angle columns {expected} (theta_00.. without gaps, radians)",
            f"angle columns {found}; all columns {[str(c) for c in table.columns]}",
        )
    return expected


def _load_tail_table(path: Path) -> pd.DataFrame:
    """The raw table: pandas HDFStore key ``tail`` (read-only), or .csv/.tsv/.tab/.txt."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            raw = pd.read_csv(path)
        elif suffix in (".tsv", ".tab", ".txt"):
            raw = pd.read_csv(path, sep="\t")
        else:
            with pd.HDFStore(path, mode="r") as store:
                keys = [k.lstrip("/") for k in store.keys()]
                if "tail" not in keys:
                    raise InputFileError(path, "HDF5 key 'tail'", f"keys {keys}")
                raw = store["tail"]
    except InputFileError:
        raise
    except _TABLE_READ_ERRORS as err:
        raise InputFileError(
            path, "a readable tail table", f"an unreadable file ({type(err).__name__}: {err})"
        ) from err
    if not isinstance(raw, pd.DataFrame):
        raise InputFileError(path, "a DataFrame under key 'tail'", type(raw).__name__)
    return raw


def _tail_frames(raw: pd.DataFrame, path: Path) -> np.ndarray:
    """float64 (n,) whole, non-negative imaging frame indices of the samples."""
    frame = pd.to_numeric(raw["frame"], errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(frame) | (frame != np.round(frame))
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise InputFileError(
            path,
            "integer frame indices",
            f"{int(bad.sum())} non-integer value(s), "
            f"first {show(raw['frame'].iloc[row])} at row {row}",
        )
    if (frame < 0).any():
        row = int(np.flatnonzero(frame < 0)[0])
        raise InputFileError(
            path, "non-negative frame indices", f"frame {int(frame[row])} at row {row}"
        )
    return frame


def _tail_angles(raw: pd.DataFrame, segments: list[str], path: Path) -> np.ndarray:
    """float64 (n, n_segments) angles in radians; NaN kept (tracking failures), inf refused."""
    try:
        angles = raw[segments].to_numpy(dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise InputFileError(path, "numeric angles in radians", f"{err}") from err
    if np.isinf(angles).any():
        row, col = np.argwhere(np.isinf(angles))[0]
        raise InputFileError(
            path,
            "finite angles (NaN marks a tracking failure)",
            f"inf in {segments[col]} row {row}",
        )
    return angles


def read_tail_table(path: str | Path) -> pd.DataFrame:
    """Read the tail-angle table: one row per tail-camera sample (~200 Hz).

    Accepts a pandas HDFStore (key ``tail``, opened read-only) or a .csv/.tsv/.tab table with
    the same columns: ``theta_00``.. (radians, at least one), ``frame`` (imaging frame index of
    the sample, non-negative integer) and optionally ``t`` (seconds).

    Samples with a NaN angle (tracking failures) are dropped; how many is in
    ``df.attrs["n_samples_nan_dropped"]``. Infinite angles are an error.

    Returns:
        DataFrame with the segment columns (float64, sorted), ``frame`` (int64) and ``t`` when
        present, in the file's row order, index reset.
    """
    path = Path(path)
    if not path.is_file():
        raise InputFileError(path, "a tail table (HDF5 key 'tail', or .csv/.tsv)", "no such file")
    raw = _load_tail_table(path)
    has_angles = any(_ANGLE_LIKE.fullmatch(str(c)) for c in raw.columns)
    missing = ([] if has_angles else ["theta_00.."]) + (["frame"] if "frame" not in raw else [])
    if missing:
        raise InputFileError(
            path,
            "columns theta_00, theta_01, ... (radians) and frame",
            f"missing {missing}; has {[str(c) for c in raw.columns]}",
        )
    segments = angle_columns(raw, path)
    if len(raw) == 0:
        raise InputFileError(path, "at least one tail sample", "0 rows")
    frame = _tail_frames(raw, path)
    angles = _tail_angles(raw, segments, path)
    valid = ~np.isnan(angles).any(axis=1)
    out = pd.DataFrame(angles[valid], columns=segments)
    out["frame"] = frame[valid].astype(np.int64)
    if "t" in raw:
        out["t"] = pd.to_numeric(raw["t"], errors="coerce").to_numpy(dtype=np.float64)[valid]
    n_dropped = int((~valid).sum())
    if len(out) == 0:
        raise InputFileError(path, "at least one tail sample without NaN angles", "none")
    if n_dropped:
        logger.warning("%s: dropped %d of %d samples with NaN angles", path, n_dropped, len(raw))
    out.attrs["n_samples_nan_dropped"] = n_dropped
    out.attrs["source"] = str(path)
    return out


def _valid_samples(
    tail: pd.DataFrame, segments: list[str], n_frames: int, source: Path
) -> tuple[np.ndarray, np.ndarray, int]:
    """int64 frames (n,), float64 angles (n, n_segments) of the samples without NaN, #NaN."""
    frame = tail["frame"].to_numpy()
    if not np.issubdtype(frame.dtype, np.integer):
        raise InputFileError(source, "integer frame indices", f"dtype {frame.dtype}")
    angles = tail[segments].to_numpy(dtype=np.float64)
    valid = ~np.isnan(angles).any(axis=1)
    frame, angles = frame[valid].astype(np.int64), angles[valid]
    if frame.size == 0:
        raise InputFileError(source, "at least one tail sample without NaN angles", "none")
    if not np.isfinite(angles).all():
        raise InputFileError(source, "finite tail angles", "inf values")
    if frame.min() < 0 or frame.max() >= n_frames:
        raise InputFileError(
            source,
            f"tail frames within the imaging (0..{n_frames - 1}, n_frames = {n_frames})",
            f"frames {int(frame.min())}..{int(frame.max())} (max frame {int(frame.max())})",
        )
    return frame, angles, int((~valid).sum())


def _tail_counts(
    frames: np.ndarray, n_samples: np.ndarray, n_frames: int, n_nan: int
) -> dict[str, Any]:
    """What `tail_per_frame` kept and dropped (see its docstring)."""
    first, last = int(frames[0]), int(frames[-1])
    per_frame = n_samples[frames]
    return {
        "n_frames": int(n_frames),
        "n_frames_with_tail": int(frames.size),
        "n_frames_without_tail": int(n_frames - frames.size),
        "n_leading_frames_without_tail": first,
        "n_gap_frames_without_tail": int((last - first + 1) - frames.size),
        "n_trailing_frames_dropped": int(n_frames - 1 - last),
        "n_samples_nan_dropped": n_nan,
        "n_samples_per_frame_median": float(np.median(per_frame)),
        "n_samples_per_frame_min": int(per_frame.min()),
        "n_samples_per_frame_max": int(per_frame.max()),
    }


def tail_per_frame(
    tail: pd.DataFrame, n_frames: int, *, source: str | Path
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Average the tail samples of each imaging frame (the reference's decoding target).

    Args:
        tail: table from :func:`read_tail_table` (``theta_00``.. radians, integer ``frame``).
        n_frames: number of imaging frames T of the fish.
        source: the tail file, named in errors.

    Returns:
        frames: int64 (n,) sorted imaging frames with at least one tail sample.
        angles: float32 (n, n_segments) per-frame arithmetic mean of each angle, radians.
        counts: n_frames_without_tail (all imaging frames lacking samples),
            n_leading_frames_without_tail, n_gap_frames_without_tail (inside the tail range,
            excluded, not interpolated), n_trailing_frames_dropped (after the last tail sample,
            usually 2 in the paper's data), n_samples_nan_dropped and the median/min/max
            number of samples per frame.

    Raises:
        InputFileError: a tail frame outside 0..n_frames-1, or no usable sample.
    """
    source = Path(source)
    if "frame" not in tail:
        raise InputFileError(source, "columns theta_00.. and frame", f"{list(tail.columns)}")
    segments = angle_columns(tail, source)
    frame, angles, n_nan = _valid_samples(tail, segments, n_frames, source)
    n_samples = np.bincount(frame, minlength=n_frames)
    sums = np.stack(
        [
            np.bincount(frame, weights=angles[:, j], minlength=n_frames)
            for j in range(len(segments))
        ],
        axis=1,
    )
    frames = np.flatnonzero(n_samples > 0)
    mean = (sums[frames] / n_samples[frames, None]).astype(np.float32)
    n_nan += int(tail.attrs.get("n_samples_nan_dropped", 0))
    counts = _tail_counts(frames, n_samples, n_frames, n_nan)
    if counts["n_gap_frames_without_tail"]:
        logger.warning(
            "%s: %d imaging frames inside the tail recording have no tail samples (excluded)",
            source,
            counts["n_gap_frames_without_tail"],
        )
    return frames, mean, counts


# --------------------------------------------------------------------------------------------
# Stimulus epochs
# --------------------------------------------------------------------------------------------


def _read_tsv(path: Path, columns: tuple[str, ...], **kwargs: Any) -> pd.DataFrame:
    """A tab-separated table that must have `columns`."""
    try:
        table = pd.read_csv(path, sep="\t", **kwargs)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise InputFileError(path, "a tab-separated table", f"unreadable ({err})") from err
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise InputFileError(
            path, f"columns {list(columns)}", f"missing {missing}; has {list(table.columns)}"
        )
    return table


def _check_epochs(table: pd.DataFrame, out: pd.DataFrame, path: Path) -> None:
    """Finite start/stop with start < stop (row numbers of the file in the errors)."""
    times = out[["start_s", "stop_s"]].to_numpy(dtype=np.float64)
    bad = ~np.isfinite(times).all(axis=1)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise InputFileError(
            path,
            "finite numbers in start_s and stop_s",
            f"{show(table['start_s'].iloc[row])}, {show(table['stop_s'].iloc[row])} at row {row}",
        )
    bad = times[:, 1] <= times[:, 0]
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise InputFileError(
            path, "start_s < stop_s", f"start {times[row, 0]} stop {times[row, 1]} at row {row}"
        )


def read_stimulus_table(path: str | Path) -> pd.DataFrame | None:
    """Stimulus epochs from a TSV with columns start_s, stop_s (seconds), stimulus (name).

    Returns None when the file does not exist (stimulus information is optional). Epochs are
    returned sorted by start; they must satisfy start_s < stop_s and must not overlap, so that
    every time point has at most one stimulus.
    """
    path = Path(path)
    if not path.exists():
        return None
    table = _read_tsv(path, STIMULUS_COLUMNS, dtype={"stimulus": str})
    out = pd.DataFrame(
        {
            "start_s": pd.to_numeric(table["start_s"], errors="coerce"),
            "stop_s": pd.to_numeric(table["stop_s"], errors="coerce"),
            "stimulus": table["stimulus"].fillna("").astype(str),
        }
    )
    _check_epochs(table, out, path)
    out = out.sort_values("start_s", kind="stable").reset_index(drop=True)
    starts, stops = out["start_s"].to_numpy(), out["stop_s"].to_numpy()
    overlap = starts[1:] < stops[:-1]
    if overlap.any():
        i = int(np.flatnonzero(overlap)[0])
        raise InputFileError(
            path,
            "non-overlapping epochs",
            f"{out['stimulus'].iloc[i]!r} [{starts[i]}, {stops[i]}) overlaps "
            f"{out['stimulus'].iloc[i + 1]!r} starting at {starts[i + 1]}",
        )
    return out


def stimulus_per_frame(stimulus_df: pd.DataFrame | None, times_s: np.ndarray) -> np.ndarray:
    """Stimulus name at each time (epochs are half-open [start_s, stop_s)); "" where none.

    Args:
        stimulus_df: table from :func:`read_stimulus_table` (sorted, non-overlapping), or None.
        times_s: float (n,) frame times in seconds.

    Returns:
        str array (n,).
    """
    times_s = np.asarray(times_s, dtype=np.float64)
    if stimulus_df is None or len(stimulus_df) == 0:
        return np.full(times_s.shape, "", dtype=str)
    starts = stimulus_df["start_s"].to_numpy(dtype=np.float64)
    stops = stimulus_df["stop_s"].to_numpy(dtype=np.float64)
    names = stimulus_df["stimulus"].astype(str).to_numpy()
    # Last epoch starting at or before t; it covers t only if t is before its stop.
    idx = np.searchsorted(starts, times_s, side="right") - 1
    safe = np.maximum(idx, 0)
    covered = (idx >= 0) & (times_s < stops[safe])
    return np.where(covered, names[safe], "").astype(str)


# --------------------------------------------------------------------------------------------
# Neuron labels
# --------------------------------------------------------------------------------------------


def _label_keys(table: pd.DataFrame, path: Path) -> dict[str, np.ndarray]:
    """int64 ``plane`` and ``roi`` columns, checked non-negative, whole and unique together."""
    keys = {}
    for col in ("plane", "roi"):
        values = pd.to_numeric(table[col], errors="coerce").to_numpy(dtype=np.float64)
        bad = ~np.isfinite(values) | (values != np.round(values)) | (values < 0)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise InputFileError(
                path,
                f"non-negative integers in column '{col}'",
                f"{show(table[col].iloc[row])} at row {row}",
            )
        keys[col] = values.astype(np.int64)
    dup = pd.DataFrame(keys).duplicated()
    if dup.any():
        row = int(np.flatnonzero(dup.to_numpy())[0])
        raise InputFileError(
            path,
            "one row per (plane, roi)",
            f"duplicate plane {keys['plane'][row]}, roi {keys['roi'][row]}",
        )
    return keys


def read_neuron_labels(
    path: str | Path, plane: np.ndarray, roi: np.ndarray
) -> tuple[np.ndarray, dict[str, int]]:
    """Region per neuron from a TSV with columns plane, roi, region, joined on (plane, roi).

    Args:
        path: the TSV.
        plane, roi: int (n_neurons,) of the neurons to label.

    Returns:
        region: str (n_neurons,), "" where the table has no row; counts of rows and matches.
    """
    path = Path(path)
    table = _read_tsv(path, LABEL_COLUMNS, dtype={"region": str}, keep_default_na=True)
    keys = _label_keys(table, path)
    regions = table["region"].fillna("").astype(str).str.strip().to_numpy()
    index = pd.MultiIndex.from_arrays([keys["plane"], keys["roi"]])
    pos = index.get_indexer(pd.MultiIndex.from_arrays([plane, roi]))
    region = np.where(pos >= 0, regions[np.maximum(pos, 0)], "").astype(str)
    counts = {
        "n_label_rows": len(table),
        "n_neurons_labelled": int(np.count_nonzero(region != "")),
        "n_label_rows_unmatched": int(len(table) - np.count_nonzero(pos >= 0)),
    }
    return region, counts


# --------------------------------------------------------------------------------------------
# One fish's tail and stimulus, per imaging frame
# --------------------------------------------------------------------------------------------


def read_tail_per_frame(path: str | Path, n_frames: int) -> PerFrameTail:
    """The tail table at `path` averaged per imaging frame (:func:`tail_per_frame`)."""
    path = Path(path)
    table = read_tail_table(path)
    frames, angles, counts = tail_per_frame(table, n_frames, source=path)
    return PerFrameTail(frames, angles, angle_columns(table, path), counts, path)


def read_stimulus_per_frame(
    path: str | Path | None, n_frames: int, frame_rate_hz: float
) -> tuple[np.ndarray, list[Path]]:
    """Stimulus name per imaging frame (frame k at k / rate seconds) and the files read.

    `path` None or a missing file gives "" everywhere and no file.
    """
    epochs = None if path is None else read_stimulus_table(path)
    if epochs is None:
        return np.full(n_frames, "", dtype=object), []
    return stimulus_per_frame(epochs, np.arange(n_frames) / frame_rate_hz), [Path(path)]
