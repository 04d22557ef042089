"""Read the raw inputs of one fish: suite2p plane folders, tail table, neuron labels, stimulus.

Two layouts are accepted for the fluorescence (see ``docs/architecture.md``, "Raw fish folder"):

- the paper's public data: ``raw_data_f{N}/plane_{k}/`` with ``F.npy`` and ``stat.npy`` only;
- a general suite2p output: ``<fish>/suite2p/plane{k}/`` with ``F.npy``, ``Fneu.npy``,
  ``iscell.npy``, ``stat.npy`` and ``ops.npy`` (suite2p < 1.0) or a nested ``settings.npy``
  (suite2p >= 1.0).

Nothing here writes to the input folders: arrays are opened read-only (memory-mapped where
possible) and HDF5 stores are opened with ``mode="r"``. Every bad input raises
:class:`nlp4neuro.errors.InputFileError` naming the file, what was expected and what was found.
"""

from __future__ import annotations

import json
import logging
import math
import pickle
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from nlp4neuro.errors import ConfigError, InputFileError
from nlp4neuro.provenance import sha256_file

logger = logging.getLogger(__name__)

_PLANE_DIR = re.compile(r"^plane(_?)(\d+)$")
_SEGMENT_COL = re.compile(r"^theta_(\d+)$")
# Errors numpy/pickle raise for a truncated, corrupt or non-.npy file.
_NPY_READ_ERRORS = (ValueError, EOFError, OSError, pickle.UnpicklingError, TypeError)
LABEL_COLUMNS = ("plane", "roi", "region")
STIMULUS_COLUMNS = ("start_s", "stop_s", "stimulus")


# --------------------------------------------------------------------------------------------
# suite2p fluorescence
# --------------------------------------------------------------------------------------------


@dataclass
class RawFish:
    """Raw suite2p traces and ROI geometry of one fish, planes concatenated in plane order.

    Attributes:
        F: float32 (n_neurons, n_frames) raw suite2p fluorescence (arbitrary units).
        Fneu: float32 (n_neurons, n_frames) neuropil fluorescence, or None when no plane has
            ``Fneu.npy`` (the paper's data).
        plane: int64 (n_neurons,) plane index of each neuron.
        roi: int64 (n_neurons,) row index of the neuron in its plane's suite2p arrays (before
            iscell filtering, so it can be joined back to ``stat.npy``).
        x_um, y_um, z_um: float64 (n_neurons,) centroid in micrometres; x = column * pixel size,
            y = row * pixel size, z = plane * plane spacing.
        region: str (n_neurons,) region label, "" where unknown.
        frame_rate_hz: volume rate (one frame = one pass over all planes), Hz.
        n_planes: number of planes read.
        time_offset_s: float64 (n_neurons,) acquisition delay of the neuron's plane within a
            volume, ``plane / n_planes / frame_rate_hz`` seconds.
        source_files: every file that was read, in reading order.
        counts: what was dropped or filtered and why (JSON-serialisable, for the log).
    """

    F: np.ndarray
    Fneu: np.ndarray | None
    plane: np.ndarray
    roi: np.ndarray
    x_um: np.ndarray
    y_um: np.ndarray
    z_um: np.ndarray
    region: np.ndarray
    frame_rate_hz: float
    n_planes: int
    time_offset_s: np.ndarray
    source_files: list[Path] = field(default_factory=list)
    counts: dict[str, Any] = field(default_factory=dict)

    @property
    def n_neurons(self) -> int:
        return int(self.F.shape[0])

    @property
    def n_frames(self) -> int:
        return int(self.F.shape[1])


@dataclass
class _Plane:
    """One plane folder after validation; traces stay memory-mapped until concatenation."""

    index: int
    folder: Path
    F: np.ndarray  # (n_rois, T) memmap or array, any numeric dtype
    Fneu: np.ndarray | None
    keep: np.ndarray  # bool (n_rois,) iscell filter
    y_px: np.ndarray  # float64 (n_rois,) centroid row
    x_px: np.ndarray  # float64 (n_rois,) centroid column
    n_from_lam: int
    has_iscell: bool
    fs: float | None
    files: list[Path]


def _check_positive(key: str, value: float, *, allow_zero: bool = False) -> float:
    value = float(value)
    ok = math.isfinite(value) and (value >= 0 if allow_zero else value > 0)
    if not ok:
        raise ConfigError(key, "a finite number " + (">= 0" if allow_zero else "> 0"), value)
    return value


def _show(value: Any) -> str:
    """A cell value for an error message: strings quoted, numpy scalars as plain numbers."""
    return repr(value) if isinstance(value, str) else str(value)


def load_npy(path: Path, *, allow_pickle: bool = False, mmap: bool = False) -> Any:
    """np.load that turns every read failure into an InputFileError naming the file."""
    if not path.is_file():
        raise InputFileError(path, "an existing .npy file", "no such file")
    size = path.stat().st_size
    if size == 0:
        raise InputFileError(path, "a .npy array", "an empty file (0 bytes)")
    try:
        # mmap_mode="r" never writes and keeps memory low for large F matrices.
        return np.load(path, allow_pickle=allow_pickle, mmap_mode="r" if mmap else None)
    except _NPY_READ_ERRORS as err:
        raise InputFileError(
            path, "a readable .npy array", f"an unreadable file ({type(err).__name__}: {err})"
        ) from err


def discover_planes(fish_dir: Path) -> list[tuple[int, Path]]:
    """Plane folders ``plane_{k}`` or ``plane{k}`` in fish_dir or fish_dir/suite2p, sorted by k."""
    if not fish_dir.is_dir():
        raise InputFileError(fish_dir, "a fish folder", "no such directory")
    for parent in (fish_dir, fish_dir / "suite2p"):
        if not parent.is_dir():
            continue
        found: dict[int, Path] = {}
        underscore = False
        for child in parent.iterdir():
            match = _PLANE_DIR.match(child.name)
            if match is None or not child.is_dir():
                continue  # e.g. suite2p/combined, which tiles all planes and is not a plane
            k = int(match.group(2))
            if k in found:
                raise InputFileError(
                    parent,
                    "one folder per plane index",
                    f"both {found[k].name}/ and {child.name}/ for plane {k}",
                )
            found[k] = child
            underscore = underscore or bool(match.group(1))
        if not found:
            continue
        expected = set(range(max(found) + 1))
        missing = sorted(expected - set(found))
        if missing:
            name = f"plane_{missing[0]}" if underscore else f"plane{missing[0]}"
            raise InputFileError(
                parent / name,
                f"a plane folder (planes are numbered 0..{max(found)} without gaps)",
                f"it missing; present: {', '.join(found[k].name for k in sorted(found))}",
            )
        return [(k, found[k]) for k in sorted(found)]
    entries = sorted(p.name for p in fish_dir.iterdir())[:10]
    raise InputFileError(
        fish_dir,
        "plane folders plane_<k>/ or plane<k>/ (directly or under suite2p/)",
        f"none; entries: {entries}",
    )


def _check_trace(path: Path, arr: np.ndarray) -> None:
    """Shape, dtype and finiteness checks shared by F.npy and Fneu.npy."""
    if arr.ndim != 2:
        raise InputFileError(path, "a 2-D array (n_rois, n_frames)", f"shape {arr.shape}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise InputFileError(path, "at least one ROI and one frame", f"shape {arr.shape}")
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise InputFileError(path, "a real numeric array", f"dtype {arr.dtype}")
    if np.issubdtype(arr.dtype, np.floating):
        bad_rows = ~np.isfinite(arr).all(axis=1)
        if bad_rows.any():
            n_bad = int(np.count_nonzero(~np.isfinite(arr)))
            first = int(np.flatnonzero(bad_rows)[0])
            raise InputFileError(
                path,
                "finite values",
                f"{n_bad} NaN/inf value(s) in {int(bad_rows.sum())} ROI(s), first at ROI {first}",
            )


def _read_iscell(path: Path, n_rois: int, threshold: float) -> np.ndarray:
    """Boolean keep mask from iscell.npy: column 0 (the is-cell flag) >= threshold."""
    iscell = load_npy(path)
    if iscell.ndim == 2 and iscell.shape[1] >= 1:
        flag = iscell[:, 0]
    elif iscell.ndim == 1:
        flag = iscell
    else:
        raise InputFileError(path, "shape (n_rois, 2) or (n_rois,)", f"shape {iscell.shape}")
    if flag.shape[0] != n_rois:
        raise InputFileError(path, f"{n_rois} rows (one per ROI in F.npy)", f"{flag.shape[0]} rows")
    try:
        flag = flag.astype(np.float64)
    except (TypeError, ValueError) as err:
        raise InputFileError(path, "numeric is-cell flags", f"dtype {iscell.dtype}") from err
    return flag >= threshold


def read_centroids(path: Path, n_rois: int) -> tuple[np.ndarray, np.ndarray, int]:
    """ROI centroids (y, x) in pixels from stat.npy, plus how many came from `lam` weights.

    Uses the `lam`-weighted mean of ypix/xpix (sub-pixel) where a ROI has non-empty, equally
    long lam/ypix/xpix with positive total weight, else suite2p's `med` ([y, x], whole pixels).
    """
    stat = load_npy(path, allow_pickle=True)
    if stat.ndim != 1:
        raise InputFileError(path, "a 1-D object array of dicts", f"shape {stat.shape}")
    if stat.shape[0] != n_rois:
        raise InputFileError(path, f"{n_rois} ROIs (one per row of F.npy)", f"{stat.shape[0]}")
    med = np.empty((n_rois, 2), dtype=np.float64)
    lam_parts: list[np.ndarray] = []
    ypix_parts: list[np.ndarray] = []
    xpix_parts: list[np.ndarray] = []
    lam_rois: list[int] = []
    for i, entry in enumerate(stat):  # stat is an object array: a Python loop is unavoidable
        if not isinstance(entry, Mapping):
            raise InputFileError(path, "a dict per ROI", f"{type(entry).__name__} at ROI {i}")
        if "med" not in entry:
            raise InputFileError(path, "key 'med' in every ROI dict", f"ROI {i} without 'med'")
        m = np.asarray(entry["med"], dtype=np.float64).ravel()
        if m.shape != (2,) or not np.isfinite(m).all():
            raise InputFileError(path, "'med' = [y, x] finite pixels", f"{m.tolist()} at ROI {i}")
        med[i] = m
        if all(k in entry for k in ("lam", "ypix", "xpix")):
            lam = np.asarray(entry["lam"], dtype=np.float64).ravel()
            ypix = np.asarray(entry["ypix"], dtype=np.float64).ravel()
            xpix = np.asarray(entry["xpix"], dtype=np.float64).ravel()
            if lam.size and lam.size == ypix.size == xpix.size and lam.sum() > 0:
                lam_parts.append(lam)
                ypix_parts.append(ypix)
                xpix_parts.append(xpix)
                lam_rois.append(i)
    y_px, x_px = med[:, 0].copy(), med[:, 1].copy()
    if lam_rois:
        # Weighted centroids of all ROIs at once: bincount over the concatenated pixel lists.
        sizes = np.array([p.size for p in lam_parts])
        owner = np.repeat(np.arange(len(lam_rois)), sizes)
        lam = np.concatenate(lam_parts)
        weight = np.bincount(owner, weights=lam)
        rois = np.asarray(lam_rois)
        y_px[rois] = np.bincount(owner, weights=lam * np.concatenate(ypix_parts)) / weight
        x_px[rois] = np.bincount(owner, weights=lam * np.concatenate(xpix_parts)) / weight
    return y_px, x_px, len(lam_rois)


def _find_key(obj: Any, key: str) -> Any:
    """Value of `key` at the top level of a (nested) mapping, else breadth-first in sub-dicts."""
    queue = [obj]
    while queue:
        current = queue.pop(0)
        if isinstance(current, Mapping):
            if key in current:
                return current[key]
            queue.extend(v for v in current.values() if isinstance(v, Mapping))
    return None


def _read_plane_rate(folder: Path) -> tuple[float | None, list[Path]]:
    """Volume rate `fs` (Hz) from settings.npy (suite2p >= 1.0) or ops.npy, if either exists."""
    read: list[Path] = []
    for name in ("settings.npy", "ops.npy"):
        path = folder / name
        if not path.exists():
            continue
        loaded = load_npy(path, allow_pickle=True)
        read.append(path)
        obj = loaded.item() if isinstance(loaded, np.ndarray) and loaded.shape == () else loaded
        if not isinstance(obj, Mapping):
            raise InputFileError(path, "a pickled dict", f"{type(obj).__name__}")
        fs = _find_key(obj, "fs")
        if fs is None:
            continue
        try:
            fs = float(fs)
        except (TypeError, ValueError) as err:
            raise InputFileError(path, "a numeric 'fs' (Hz)", repr(fs)) from err
        if not (math.isfinite(fs) and fs > 0):
            raise InputFileError(path, "'fs' > 0 (Hz)", repr(fs))
        return fs, read
    return None, read


def _read_plane(k: int, folder: Path, use_iscell: bool, iscell_threshold: float) -> _Plane:
    files: list[Path] = []
    f_path = folder / "F.npy"
    if not f_path.exists():
        raise InputFileError(f_path, "suite2p fluorescence F.npy in every plane folder", "none")
    F = load_npy(f_path, mmap=True)
    _check_trace(f_path, F)
    files.append(f_path)
    n_rois = F.shape[0]

    Fneu = None
    neu_path = folder / "Fneu.npy"
    if neu_path.exists():
        Fneu = load_npy(neu_path, mmap=True)
        if Fneu.shape != F.shape:
            raise InputFileError(neu_path, f"shape {F.shape} like F.npy", f"shape {Fneu.shape}")
        _check_trace(neu_path, Fneu)
        files.append(neu_path)

    keep = np.ones(n_rois, dtype=bool)
    iscell_path = folder / "iscell.npy"
    if iscell_path.exists():
        iscell_keep = _read_iscell(iscell_path, n_rois, iscell_threshold)
        files.append(iscell_path)
        if use_iscell:
            keep = iscell_keep

    stat_path = folder / "stat.npy"
    y_px, x_px, n_from_lam = read_centroids(stat_path, n_rois)
    files.append(stat_path)

    fs, rate_files = _read_plane_rate(folder)
    files.extend(rate_files)
    has_iscell = iscell_path in files
    return _Plane(k, folder, F, Fneu, keep, y_px, x_px, n_from_lam, has_iscell, fs, files)


def _resolve_rate(planes: list[_Plane], frame_rate_hz: float | None) -> float:
    """Volume rate: the argument if given, else the `fs` all planes agree on."""
    rates = {p.folder.name: p.fs for p in planes if p.fs is not None}
    if frame_rate_hz is not None:
        rate = _check_positive("frame_rate_hz", frame_rate_hz)
        for name, fs in rates.items():
            if not math.isclose(fs, rate, rel_tol=1e-6):
                logger.warning("%s: fs = %g Hz overridden by frame_rate_hz = %g Hz", name, fs, rate)
        return rate
    if not rates:
        raise InputFileError(
            planes[0].folder,
            "key 'fs' (volume rate, Hz) in settings.npy or ops.npy, or the frame_rate_hz argument",
            "no 'fs' in any plane folder",
        )
    first_name, first = next(iter(rates.items()))
    for name, fs in rates.items():
        if not math.isclose(fs, first, rel_tol=1e-6):
            raise InputFileError(
                planes[0].folder.parent / name,
                f"the same 'fs' in every plane ({first} Hz in {first_name})",
                f"{fs} Hz",
            )
    return first


def _read_labels(path: Path, plane: np.ndarray, roi: np.ndarray) -> tuple[np.ndarray, dict]:
    """Region per neuron from a TSV with columns plane, roi, region; joined on (plane, roi)."""
    try:
        table = pd.read_csv(path, sep="\t", dtype={"region": str}, keep_default_na=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise InputFileError(path, "a tab-separated table", f"unreadable ({err})") from err
    missing = [c for c in LABEL_COLUMNS if c not in table.columns]
    if missing:
        raise InputFileError(
            path, f"columns {list(LABEL_COLUMNS)}", f"missing {missing}; has {list(table.columns)}"
        )
    keys = {}
    for col in ("plane", "roi"):
        values = pd.to_numeric(table[col], errors="coerce").to_numpy(dtype=np.float64)
        bad = ~np.isfinite(values) | (values != np.round(values)) | (values < 0)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise InputFileError(
                path, f"non-negative integers in column '{col}'", f"{_show(table[col].iloc[row])}"
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


def read_suite2p_fish(
    fish_dir: str | Path,
    *,
    pixel_size_um: float,
    plane_spacing_um: float,
    frame_rate_hz: float | None = None,
    use_iscell: bool = True,
    iscell_threshold: float = 0.5,
    labels_file: str | None = "neuron_labels.tsv",
) -> RawFish:
    """Read every suite2p plane of one fish and concatenate the ROIs in plane order.

    Args:
        fish_dir: folder holding ``plane_{k}/`` or ``plane{k}/`` folders, directly or under
            ``suite2p/`` (``combined/`` is ignored).
        pixel_size_um: lateral pixel size in micrometres (x and y).
        plane_spacing_um: axial distance between consecutive planes in micrometres.
        frame_rate_hz: volume rate in Hz; overrides ``fs`` from settings.npy/ops.npy. Required
            when no plane folder has either file (the paper's data: 1.1 Hz).
        use_iscell: keep only ROIs whose is-cell flag (iscell.npy column 0) is >= threshold,
            where iscell.npy exists. Without iscell.npy every ROI is kept.
        iscell_threshold: threshold on the is-cell column.
        labels_file: TSV in fish_dir (columns plane, roi, region) joined on (plane, roi); a
            missing file gives "" regions. None disables it.

    Returns:
        RawFish with F (and Fneu when every plane has it) as float32 (n_neurons, n_frames).
        Planes whose frame counts differ by one (suite2p does this) are truncated to the
        shortest; the number of frames cut is in ``counts["n_frames_truncated"]``.

    Raises:
        InputFileError: a missing, empty, corrupt or inconsistent input file.
        ConfigError: a non-positive pixel size, frame rate or threshold out of range.
    """
    fish_dir = Path(fish_dir)
    pixel_size_um = _check_positive("pixel_size_um", pixel_size_um)
    plane_spacing_um = _check_positive("plane_spacing_um", plane_spacing_um, allow_zero=True)
    if not math.isfinite(float(iscell_threshold)):
        raise ConfigError("iscell_threshold", "a finite number", iscell_threshold)

    planes: list[_Plane] = []
    for k, folder in discover_planes(fish_dir):
        plane = _read_plane(k, folder, use_iscell, iscell_threshold)
        logger.info(
            "%s: %d ROIs x %d frames, %d kept%s",
            folder,
            plane.F.shape[0],
            plane.F.shape[1],
            int(plane.keep.sum()),
            ", Fneu" if plane.Fneu is not None else "",
        )
        planes.append(plane)
    n_planes = len(planes)

    has_neu = [p.Fneu is not None for p in planes]
    if any(has_neu) and not all(has_neu):
        lacking = planes[has_neu.index(False)]
        raise InputFileError(
            lacking.folder / "Fneu.npy",
            "Fneu.npy in every plane folder or in none",
            f"it missing while {sum(has_neu)} of {n_planes} planes have one",
        )

    frames = np.array([p.F.shape[1] for p in planes])
    n_frames = int(frames.min())
    if frames.max() - n_frames > 1:
        longest = planes[int(frames.argmax())]
        shortest = planes[int(frames.argmin())]
        raise InputFileError(
            longest.folder / "F.npy",
            f"the frame count of the other planes ({n_frames} in {shortest.folder.name}, "
            "at most 1 frame difference)",
            f"{int(frames.max())} frames",
        )
    rate = _resolve_rate(planes, frame_rate_hz)

    n_keep = np.array([int(p.keep.sum()) for p in planes])
    n_total = int(n_keep.sum())
    if n_total == 0:
        raise InputFileError(
            fish_dir,
            f"at least one ROI with is-cell >= {iscell_threshold}",
            f"0 of {sum(p.F.shape[0] for p in planes)} ROIs",
        )
    # Preallocate and copy plane by plane so peak memory is one copy of the fish, not two.
    F = np.empty((n_total, n_frames), dtype=np.float32)
    Fneu = np.empty((n_total, n_frames), dtype=np.float32) if all(has_neu) else None
    starts = np.concatenate([[0], np.cumsum(n_keep)])
    for p, a, b in zip(planes, starts[:-1], starts[1:], strict=True):
        F[a:b] = p.F[p.keep, :n_frames]
        if Fneu is not None:
            Fneu[a:b] = p.Fneu[p.keep, :n_frames]

    plane_idx = np.repeat(np.array([p.index for p in planes], dtype=np.int64), n_keep)
    roi = np.concatenate([np.flatnonzero(p.keep) for p in planes]).astype(np.int64)
    y_px = np.concatenate([p.y_px[p.keep] for p in planes])
    x_px = np.concatenate([p.x_px[p.keep] for p in planes])

    counts: dict[str, Any] = {
        "n_planes": n_planes,
        "n_rois_per_plane": {p.folder.name: int(p.F.shape[0]) for p in planes},
        "n_rois_total": int(sum(p.F.shape[0] for p in planes)),
        "n_not_cell_per_plane": {p.folder.name: int((~p.keep).sum()) for p in planes},
        "n_neurons": n_total,
        "n_frames": n_frames,
        "n_frames_truncated": {
            p.folder.name: int(p.F.shape[1] - n_frames) for p in planes if p.F.shape[1] > n_frames
        },
        # Centroids of all ROIs read (kept or not): lam-weighted where possible, else `med`.
        "n_centroid_from_lam": int(sum(p.n_from_lam for p in planes)),
        "neuropil": Fneu is not None,
        "iscell_filter": bool(use_iscell and any(p.has_iscell for p in planes)),
    }
    source_files = [f for p in planes for f in p.files]

    region = np.full(n_total, "", dtype=object)
    if labels_file is not None:
        labels_path = fish_dir / labels_file
        if labels_path.exists():
            region, label_counts = _read_labels(labels_path, plane_idx, roi)
            counts.update(label_counts)
            source_files.append(labels_path)
        else:
            logger.info("%s not found: regions left empty", labels_path)
    if counts["n_frames_truncated"]:
        logger.warning("planes truncated to %d frames: %s", n_frames, counts["n_frames_truncated"])

    return RawFish(
        F=F,
        Fneu=Fneu,
        plane=plane_idx,
        roi=roi,
        x_um=x_px * pixel_size_um,
        y_um=y_px * pixel_size_um,
        z_um=plane_idx.astype(np.float64) * plane_spacing_um,
        region=np.asarray(region, dtype=str),
        frame_rate_hz=rate,
        n_planes=n_planes,
        time_offset_s=plane_idx / n_planes / rate,
        source_files=source_files,
        counts=counts,
    )


# --------------------------------------------------------------------------------------------
# Tail angles
# --------------------------------------------------------------------------------------------


def segment_names(tail: pd.DataFrame) -> list[str]:
    """The ``theta_<k>`` columns of a tail table, sorted by segment number (base to tip)."""
    named = [(int(m.group(1)), c) for c in tail.columns if (m := _SEGMENT_COL.match(str(c)))]
    return [c for _, c in sorted(named)]


def find_tail_file(fish_dir: str | Path, name: str = "tail_df.h5") -> Path:
    """The tail table of a fish: ``fish_dir/name``, else the lowest plane folder's copy.

    The paper's data hold an identical ``tail_df.h5`` in every plane folder; the reference uses
    plane_0's, which is what this returns.
    """
    fish_dir = Path(fish_dir)
    direct = fish_dir / name
    if direct.is_file():
        return direct
    for _, folder in discover_planes(fish_dir):
        if (folder / name).is_file():
            return folder / name
    raise InputFileError(direct, f"{name} in the fish folder or a plane folder", "none")


def read_tail_table(path: str | Path) -> pd.DataFrame:
    """Read the tail-angle table: one row per tail-camera sample (~200 Hz).

    Accepts a pandas HDFStore (key ``tail``, opened read-only) or a .csv/.tsv/.tab table with
    the same columns: ``theta_<k>`` (radians, at least one), ``frame`` (imaging frame index of
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
    except (OSError, ValueError, RuntimeError, KeyError, TypeError, UnicodeDecodeError) as err:
        raise InputFileError(
            path, "a readable tail table", f"an unreadable file ({type(err).__name__}: {err})"
        ) from err
    if not isinstance(raw, pd.DataFrame):
        raise InputFileError(path, "a DataFrame under key 'tail'", type(raw).__name__)

    segments = segment_names(raw)
    missing = ([] if segments else ["theta_00.."]) + (["frame"] if "frame" not in raw else [])
    if missing:
        raise InputFileError(
            path,
            "columns theta_<k> (radians) and frame",
            f"missing {missing}; has {[str(c) for c in raw.columns]}",
        )
    if len(raw) == 0:
        raise InputFileError(path, "at least one tail sample", "0 rows")

    frame = pd.to_numeric(raw["frame"], errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(frame) | (frame != np.round(frame))
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise InputFileError(
            path,
            "integer frame indices",
            f"{int(bad.sum())} non-integer value(s), "
            f"first {_show(raw['frame'].iloc[row])} at row {row}",
        )
    if (frame < 0).any():
        row = int(np.flatnonzero(frame < 0)[0])
        raise InputFileError(
            path, "non-negative frame indices", f"frame {int(frame[row])} at row {row}"
        )

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


def tail_per_frame(
    tail: pd.DataFrame, n_frames: int, *, source: Path
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Average the tail samples of each imaging frame (the reference's decoding target).

    Args:
        tail: table from :func:`read_tail_table` (``theta_<k>`` radians, integer ``frame``).
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
    segments = segment_names(tail)
    if not segments or "frame" not in tail:
        raise InputFileError(source, "columns theta_<k> and frame", f"{list(tail.columns)}")
    frame = tail["frame"].to_numpy()
    if not np.issubdtype(frame.dtype, np.integer):
        raise InputFileError(source, "integer frame indices", f"dtype {frame.dtype}")
    angles = tail[segments].to_numpy(dtype=np.float64)
    valid = ~np.isnan(angles).any(axis=1)
    n_nan = int((~valid).sum())
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

    first, last = int(frames[0]), int(frames[-1])
    per_frame = n_samples[frames]
    counts = {
        "n_frames": int(n_frames),
        "n_frames_with_tail": int(frames.size),
        "n_frames_without_tail": int(n_frames - frames.size),
        "n_leading_frames_without_tail": first,
        "n_gap_frames_without_tail": int((last - first + 1) - frames.size),
        "n_trailing_frames_dropped": int(n_frames - 1 - last),
        "n_samples_nan_dropped": n_nan + int(tail.attrs.get("n_samples_nan_dropped", 0)),
        "n_samples_per_frame_median": float(np.median(per_frame)),
        "n_samples_per_frame_min": int(per_frame.min()),
        "n_samples_per_frame_max": int(per_frame.max()),
    }
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


def read_stimulus_table(path: str | Path) -> pd.DataFrame | None:
    """Stimulus epochs from a TSV with columns start_s, stop_s (seconds), stimulus (name).

    Returns None when the file does not exist (stimulus information is optional). Epochs are
    returned sorted by start; they must satisfy start_s < stop_s and must not overlap, so that
    every time point has at most one stimulus.
    """
    path = Path(path)
    if not path.exists():
        return None
    try:
        table = pd.read_csv(path, sep="\t", dtype={"stimulus": str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise InputFileError(path, "a tab-separated table", f"unreadable ({err})") from err
    missing = [c for c in STIMULUS_COLUMNS if c not in table.columns]
    if missing:
        raise InputFileError(
            path,
            f"columns {list(STIMULUS_COLUMNS)}",
            f"missing {missing}; has {list(table.columns)}",
        )
    out = pd.DataFrame(
        {
            "start_s": pd.to_numeric(table["start_s"], errors="coerce"),
            "stop_s": pd.to_numeric(table["stop_s"], errors="coerce"),
            "stimulus": table["stimulus"].fillna("").astype(str),
        }
    )
    times = out[["start_s", "stop_s"]].to_numpy(dtype=np.float64)
    bad = ~np.isfinite(times).all(axis=1)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise InputFileError(
            path,
            "finite numbers in start_s and stop_s",
            f"{_show(table['start_s'].iloc[row])}, {_show(table['stop_s'].iloc[row])} at row {row}",
        )
    bad = times[:, 1] <= times[:, 0]
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise InputFileError(
            path, "start_s < stop_s", f"start {times[row, 0]} stop {times[row, 1]} at row {row}"
        )
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
# One fish's raw inputs as one xarray dataset
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class IngestParams:
    """Where a fish's files are and how to read them (the config's ``data`` section)."""

    pixel_size_um: float = 0.6
    plane_spacing_um: float = 10.0
    frame_rate_hz: float | None = None
    use_iscell: bool = True
    iscell_threshold: float = 0.5
    tail_file: str = "plane_0/tail_df.h5"
    labels_file: str | None = "neuron_labels.tsv"
    stimulus_file: str | None = "stimulus.tsv"

    @classmethod
    def from_config(cls, data: Mapping[str, Any]) -> IngestParams:
        """Build from the config's ``data`` section, ignoring keys that are not read here."""
        names = cls.__dataclass_fields__
        return cls(**{key: value for key, value in data.items() if key in names})


def ingest_fish(fish_dir: str | Path, params: IngestParams, fish: str) -> xr.Dataset:
    """Read one fish's fluorescence, tail and annotations into one self-describing dataset.

    Returns an xarray Dataset with dims ``neuron``, ``frame`` (every imaging volume),
    ``tail_frame`` (the volumes that have tail samples) and ``segment``:

    - ``F`` (neuron, frame) float32 raw fluorescence; ``Fneu`` likewise where Fneu.npy exists;
    - ``tail`` (tail_frame, segment) float32 per-frame mean tail angles in radians;
    - ``stimulus`` (frame) str, "" where unknown;
    - neuron coords ``plane``, ``roi``, ``x_um``, ``y_um``, ``z_um``, ``region``,
      ``time_offset_s``; attrs ``fish``, ``frame_rate_hz``, ``source_checksums`` (JSON: path
      relative to fish_dir -> sha256), ``counts`` (JSON) and ``ingest`` (JSON parameters).
    """
    fish_dir = Path(fish_dir)
    raw = read_suite2p_fish(
        fish_dir,
        pixel_size_um=params.pixel_size_um,
        plane_spacing_um=params.plane_spacing_um,
        frame_rate_hz=params.frame_rate_hz,
        use_iscell=params.use_iscell,
        iscell_threshold=params.iscell_threshold,
        labels_file=params.labels_file,
    )
    tail_path = fish_dir / params.tail_file
    tail_table = read_tail_table(tail_path)
    segments = segment_names(tail_table)
    tail_frames, tail_angles, tail_counts = tail_per_frame(
        tail_table, raw.n_frames, source=tail_path
    )
    sources = [*raw.source_files, tail_path]
    stimulus = np.full(raw.n_frames, "", dtype=object)
    if params.stimulus_file is not None:
        stimulus_path = fish_dir / params.stimulus_file
        epochs = read_stimulus_table(stimulus_path)
        if epochs is not None:
            sources.append(stimulus_path)
            stimulus = stimulus_per_frame(epochs, np.arange(raw.n_frames) / raw.frame_rate_hz)

    counts = {**raw.counts, **tail_counts}
    for key, value in counts.items():
        logger.info("fish %s: %s = %s", fish, key, value)
    return ingested_dataset(
        F=raw.F,
        Fneu=raw.Fneu,
        tail_frames=tail_frames,
        tail_angles=tail_angles,
        segments=segments,
        stimulus=stimulus,
        plane=raw.plane,
        roi=raw.roi,
        x_um=raw.x_um,
        y_um=raw.y_um,
        z_um=raw.z_um,
        region=raw.region,
        time_offset_s=raw.time_offset_s,
        attrs={
            "fish": str(fish),
            "frame_rate_hz": float(raw.frame_rate_hz),
            "n_planes": int(raw.n_planes),
            "source_dir": str(fish_dir),
            "source_checksums": source_checksums(sources, fish_dir),
            "counts": counts,
            "ingest": asdict(params),
        },
        f_attrs={"units": "a.u.", "long_name": "raw fluorescence"},
    )


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    return value


def ingested_dataset(
    *,
    F: np.ndarray,
    Fneu: np.ndarray | None,
    tail_frames: np.ndarray,
    tail_angles: np.ndarray,
    segments: Sequence[str],
    stimulus: np.ndarray,
    plane: np.ndarray,
    roi: np.ndarray,
    x_um: np.ndarray,
    y_um: np.ndarray,
    z_um: np.ndarray,
    region: np.ndarray,
    time_offset_s: np.ndarray,
    attrs: Mapping[str, Any],
    f_attrs: Mapping[str, Any],
) -> xr.Dataset:
    """The "ingested" dataset every input layout is read into (see `ingest_fish`).

    Mapping-valued attrs are stored as JSON text.
    """
    n_neurons, n_frames = F.shape
    data_vars: dict[str, Any] = {
        "F": (("neuron", "frame"), F.astype(np.float32, copy=False), dict(f_attrs)),
        "tail": (
            ("tail_frame", "segment"),
            tail_angles.astype(np.float32, copy=False),
            {"units": "rad", "long_name": "per-frame mean tail segment angle"},
        ),
    }
    if Fneu is not None:
        data_vars["Fneu"] = (("neuron", "frame"), Fneu.astype(np.float32, copy=False), {})
    coords = {
        "neuron": np.arange(n_neurons, dtype=np.int64),
        "plane": ("neuron", np.asarray(plane, dtype=np.int64)),
        "roi": ("neuron", np.asarray(roi, dtype=np.int64)),
        "x_um": ("neuron", np.asarray(x_um, dtype=np.float64), {"units": "um"}),
        "y_um": ("neuron", np.asarray(y_um, dtype=np.float64), {"units": "um"}),
        "z_um": ("neuron", np.asarray(z_um, dtype=np.float64), {"units": "um"}),
        "region": ("neuron", np.asarray(region, dtype=object)),
        "time_offset_s": ("neuron", np.asarray(time_offset_s, dtype=np.float64), {"units": "s"}),
        "frame": np.arange(n_frames, dtype=np.int64),
        "stimulus": ("frame", np.asarray(stimulus, dtype=object)),
        "tail_frame": np.asarray(tail_frames, dtype=np.int64),
        "segment": np.asarray(list(segments), dtype=object),
    }
    out_attrs = {
        key: (json.dumps(_jsonable(v), sort_keys=True) if isinstance(v, Mapping) else v)
        for key, v in attrs.items()
    }
    return xr.Dataset(data_vars, coords=coords, attrs=out_attrs)


def source_checksums(paths: Sequence[Path], root: Path) -> dict[str, str]:
    """{path relative to `root` (absolute where outside it): sha256} of each file."""
    out = {}
    for path in dict.fromkeys(Path(p) for p in paths):
        try:
            key = str(path.resolve().relative_to(root.resolve()))
        except ValueError:
            key = str(path)
        out[key] = sha256_file(path)
    return out
