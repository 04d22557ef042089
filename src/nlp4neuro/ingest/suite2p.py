"""Suite2p plane folders (data.source suite2p or synthetic) into the ingested dataset.

Two layouts are accepted (see ``docs/architecture.md``, "Raw fish folder"):

- the paper's public data: ``raw_data_f{N}/plane_{k}/`` with ``F.npy`` and ``stat.npy`` only
  (and a copy of ``tail_df.h5``); set ``data.frame_rate_hz`` (1.1), the folders carry no `fs`;
- a general suite2p output: ``<fish>/suite2p/plane{k}/`` with ``F.npy``, ``Fneu.npy``,
  ``iscell.npy``, ``stat.npy`` and ``ops.npy`` (suite2p < 1.0) or a nested ``settings.npy``
  (suite2p >= 1.0); ``suite2p/combined/`` is not a plane and is ignored.

Regions come from ``data.functional_types_file`` (the paper's region table, joined on the global
ROI index) when it is set and exists, else from ``data.labels_file`` (plane, roi, region).

Nothing here writes to the input folders: arrays are opened read-only (memory-mapped where
possible). Every bad input raises :class:`nlp4neuro.errors.InputFileError` naming the file, what
was expected and what was found.
"""

from __future__ import annotations

import logging
import math
import pickle
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from nlp4neuro.conventions import positions_um
from nlp4neuro.errors import InputFileError
from nlp4neuro.ingest.contract import (
    IngestParams,
    Neurons,
    ingested_dataset,
    log_counts,
    source_checksums,
)
from nlp4neuro.ingest.functional_types import regions_for_rois
from nlp4neuro.ingest.tail import read_neuron_labels, read_stimulus_per_frame, read_tail_per_frame

logger = logging.getLogger(__name__)

_PLANE_DIR = re.compile(r"^plane(_?)(\d+)$")
# Errors numpy/pickle raise for a truncated, corrupt or non-.npy file.
_NPY_READ_ERRORS = (ValueError, EOFError, OSError, pickle.UnpicklingError, TypeError)


@dataclass
class RawFish:
    """Raw suite2p traces and ROI geometry of one fish, planes concatenated in plane order.

    Attributes:
        F: float32 (n_neurons, n_frames) raw suite2p fluorescence (arbitrary units).
        Fneu: float32 (n_neurons, n_frames) neuropil fluorescence, or None when no plane has
            ``Fneu.npy`` (the paper's data).
        neurons: plane, roi (row in the plane's suite2p arrays, before iscell filtering),
            x_um = column * pixel size, y_um = row * pixel size, z_um = plane * plane spacing,
            region ("" unknown), time_offset_s = plane / n_planes / frame_rate_hz.
        frame_rate_hz: volume rate (one frame = one pass over all planes), Hz.
        n_planes: number of planes read.
        source_files: every file that was read, in reading order.
        counts: what was dropped or filtered and why (JSON-serialisable, for the log).
    """

    F: np.ndarray
    Fneu: np.ndarray | None
    neurons: Neurons
    frame_rate_hz: float
    n_planes: int
    source_files: list[Path]
    counts: dict[str, Any]

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


# --------------------------------------------------------------------------------------------
# Files of one plane
# --------------------------------------------------------------------------------------------


def load_npy(path: Path, *, allow_pickle: bool = False, mmap: bool = False) -> Any:
    """np.load that turns every read failure into an InputFileError naming the file."""
    if not path.is_file():
        raise InputFileError(path, "an existing .npy file", "no such file")
    if path.stat().st_size == 0:
        raise InputFileError(path, "a .npy array", "an empty file (0 bytes)")
    try:
        # mmap_mode="r" never writes and keeps memory low for large F matrices.
        return np.load(path, allow_pickle=allow_pickle, mmap_mode="r" if mmap else None)
    except _NPY_READ_ERRORS as err:
        raise InputFileError(
            path, "a readable .npy array", f"an unreadable file ({type(err).__name__}: {err})"
        ) from err


def _plane_folders(parent: Path) -> dict[int, Path]:
    """{k: folder} of the ``plane_{k}``/``plane{k}`` folders directly in `parent`, gap-free."""
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
    missing = sorted(set(range(max(found, default=-1) + 1)) - set(found))
    if missing:
        name = f"plane_{missing[0]}" if underscore else f"plane{missing[0]}"
        raise InputFileError(
            parent / name,
            f"a plane folder (planes are numbered 0..{max(found)} without gaps)",
            f"it missing; present: {', '.join(found[k].name for k in sorted(found))}",
        )
    return found


def discover_planes(fish_dir: Path) -> list[tuple[int, Path]]:
    """Plane folders ``plane_{k}`` or ``plane{k}`` in fish_dir or fish_dir/suite2p, sorted by k."""
    if not fish_dir.is_dir():
        raise InputFileError(fish_dir, "a fish folder", "no such directory")
    for parent in (fish_dir, fish_dir / "suite2p"):
        found = _plane_folders(parent) if parent.is_dir() else {}
        if found:
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


def _stat_entries(path: Path, n_rois: int) -> tuple[np.ndarray, list[tuple[int, Mapping]]]:
    """float64 (n_rois, 2) `med` [y, x] pixels and the (ROI, dict) pairs with usable `lam`."""
    stat = load_npy(path, allow_pickle=True)
    if stat.ndim != 1:
        raise InputFileError(path, "a 1-D object array of dicts", f"shape {stat.shape}")
    if stat.shape[0] != n_rois:
        raise InputFileError(path, f"{n_rois} ROIs (one per row of F.npy)", f"{stat.shape[0]}")
    med = np.empty((n_rois, 2), dtype=np.float64)
    with_lam: list[tuple[int, Mapping]] = []
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
            with_lam.append((i, entry))
    return med, with_lam


def read_centroids(path: Path, n_rois: int) -> tuple[np.ndarray, np.ndarray, int]:
    """ROI centroids (y, x) in pixels from stat.npy, plus how many came from `lam` weights.

    Uses the `lam`-weighted mean of ypix/xpix (sub-pixel) where a ROI has non-empty, equally
    long lam/ypix/xpix with positive total weight, else suite2p's `med` ([y, x], whole pixels).
    """
    med, with_lam = _stat_entries(path, n_rois)
    lams, ypixs, xpixs, rois = [], [], [], []
    for i, entry in with_lam:
        lam = np.asarray(entry["lam"], dtype=np.float64).ravel()
        ypix = np.asarray(entry["ypix"], dtype=np.float64).ravel()
        xpix = np.asarray(entry["xpix"], dtype=np.float64).ravel()
        if lam.size and lam.size == ypix.size == xpix.size and lam.sum() > 0:
            lams.append(lam)
            ypixs.append(ypix)
            xpixs.append(xpix)
            rois.append(i)
    y_px, x_px = med[:, 0].copy(), med[:, 1].copy()
    if rois:
        # Weighted centroids of all ROIs at once: bincount over the concatenated pixel lists.
        owner = np.repeat(np.arange(len(rois)), [p.size for p in lams])
        lam = np.concatenate(lams)
        weight = np.bincount(owner, weights=lam)
        y_px[rois] = np.bincount(owner, weights=lam * np.concatenate(ypixs)) / weight
        x_px[rois] = np.bincount(owner, weights=lam * np.concatenate(xpixs)) / weight
    return y_px, x_px, len(rois)


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


def _read_traces(folder: Path) -> tuple[np.ndarray, np.ndarray | None, list[Path]]:
    """F.npy and, where present, Fneu.npy of one plane (memory-mapped), and the files read."""
    f_path = folder / "F.npy"
    if not f_path.exists():
        raise InputFileError(f_path, "suite2p fluorescence F.npy in every plane folder", "none")
    F = load_npy(f_path, mmap=True)
    _check_trace(f_path, F)
    neu_path = folder / "Fneu.npy"
    if not neu_path.exists():
        return F, None, [f_path]
    Fneu = load_npy(neu_path, mmap=True)
    if Fneu.shape != F.shape:
        raise InputFileError(neu_path, f"shape {F.shape} like F.npy", f"shape {Fneu.shape}")
    _check_trace(neu_path, Fneu)
    return F, Fneu, [f_path, neu_path]


def _read_plane(k: int, folder: Path, params: IngestParams) -> _Plane:
    F, Fneu, files = _read_traces(folder)
    n_rois = F.shape[0]
    keep = np.ones(n_rois, dtype=bool)
    iscell_path = folder / "iscell.npy"
    has_iscell = iscell_path.exists()
    if has_iscell:
        iscell_keep = _read_iscell(iscell_path, n_rois, params.iscell_threshold)
        files.append(iscell_path)
        if params.use_iscell:
            keep = iscell_keep
    stat_path = folder / "stat.npy"
    y_px, x_px, n_from_lam = read_centroids(stat_path, n_rois)
    files.append(stat_path)
    fs, rate_files = _read_plane_rate(folder)
    files.extend(rate_files)
    return _Plane(k, folder, F, Fneu, keep, y_px, x_px, n_from_lam, has_iscell, fs, files)


# --------------------------------------------------------------------------------------------
# All planes of one fish
# --------------------------------------------------------------------------------------------


def _read_planes(fish_dir: Path, params: IngestParams) -> list[_Plane]:
    """Every plane folder, read and checked to agree on neuropil and frame count."""
    planes = []
    for k, folder in discover_planes(fish_dir):
        plane = _read_plane(k, folder, params)
        logger.info(
            "%s: %d ROIs x %d frames, %d kept%s",
            folder,
            plane.F.shape[0],
            plane.F.shape[1],
            int(plane.keep.sum()),
            ", Fneu" if plane.Fneu is not None else "",
        )
        planes.append(plane)
    has_neu = [p.Fneu is not None for p in planes]
    if any(has_neu) and not all(has_neu):
        lacking = planes[has_neu.index(False)]
        raise InputFileError(
            lacking.folder / "Fneu.npy",
            "Fneu.npy in every plane folder or in none",
            f"it missing while {sum(has_neu)} of {len(planes)} planes have one",
        )
    return planes


def _common_frames(planes: Sequence[_Plane]) -> int:
    """The shortest plane's frame count; planes may differ by one frame (suite2p does this)."""
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
    return n_frames


def _resolve_rate(planes: Sequence[_Plane], frame_rate_hz: float | None) -> float:
    """Volume rate: `frame_rate_hz` (data.frame_rate_hz) if given, else the planes' `fs`."""
    rates = {p.folder.name: p.fs for p in planes if p.fs is not None}
    if frame_rate_hz is not None:
        for name, fs in rates.items():
            if not math.isclose(fs, frame_rate_hz, rel_tol=1e-6):
                logger.warning(
                    "%s: fs = %g Hz overridden by frame_rate_hz = %g Hz", name, fs, frame_rate_hz
                )
        return float(frame_rate_hz)
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


def _concatenate(
    planes: Sequence[_Plane], n_frames: int, fish_dir: Path, threshold: float
) -> tuple[np.ndarray, np.ndarray | None]:
    """float32 (n_kept, n_frames) F and Fneu of the kept ROIs, planes in order."""
    n_keep = np.array([int(p.keep.sum()) for p in planes])
    n_total = int(n_keep.sum())
    if n_total == 0:
        raise InputFileError(
            fish_dir,
            f"at least one ROI with is-cell >= {threshold}",
            f"0 of {sum(p.F.shape[0] for p in planes)} ROIs",
        )
    # Preallocate and copy plane by plane so peak memory is one copy of the fish, not two.
    F = np.empty((n_total, n_frames), dtype=np.float32)
    has_neu = planes[0].Fneu is not None
    Fneu = np.empty((n_total, n_frames), dtype=np.float32) if has_neu else None
    starts = np.concatenate([[0], np.cumsum(n_keep)])
    for p, a, b in zip(planes, starts[:-1], starts[1:], strict=True):
        F[a:b] = p.F[p.keep, :n_frames]
        if Fneu is not None:
            Fneu[a:b] = p.Fneu[p.keep, :n_frames]
    return F, Fneu


def _plane_counts(
    planes: Sequence[_Plane], n_frames: int, n_neurons: int, neuropil: bool, use_iscell: bool
) -> dict[str, Any]:
    """What was read, filtered and truncated, per plane (for the log and the attrs)."""
    return {
        "n_planes": len(planes),
        "n_rois_per_plane": {p.folder.name: int(p.F.shape[0]) for p in planes},
        "n_rois_total": int(sum(p.F.shape[0] for p in planes)),
        "n_not_cell_per_plane": {p.folder.name: int((~p.keep).sum()) for p in planes},
        "n_neurons": n_neurons,
        "n_frames": n_frames,
        "n_frames_truncated": {
            p.folder.name: int(p.F.shape[1] - n_frames) for p in planes if p.F.shape[1] > n_frames
        },
        # Centroids of all ROIs read (kept or not): lam-weighted where possible, else `med`.
        "n_centroid_from_lam": int(sum(p.n_from_lam for p in planes)),
        "neuropil": neuropil,
        "iscell_filter": bool(use_iscell and any(p.has_iscell for p in planes)),
    }


def _regions(
    fish_dir: Path,
    params: IngestParams,
    fish: str,
    plane: np.ndarray,
    roi: np.ndarray,
    plane_sizes: Sequence[int],
) -> tuple[np.ndarray, dict[str, Any], list[Path]]:
    """str (n_neurons,) region of each neuron, counts, and the file read (if any).

    data.functional_types_file (with {fish} filled in) when set and present; a WARNING when set
    but missing; then data.labels_file when set and present; else "" everywhere.
    """
    if params.functional_types_file is not None:
        path = fish_dir / params.functional_types_file.format(fish=fish)
        if path.is_file():
            region, counts = regions_for_rois(path, plane, roi, plane_sizes)
            return region, {**counts, "region_source": "functional_types"}, [path]
        logger.warning(
            "%s (data.functional_types_file) not found: fish %s has no region table", path, fish
        )
    if params.labels_file is not None:
        path = fish_dir / params.labels_file
        if path.exists():
            region, counts = read_neuron_labels(path, plane, roi)
            return region, {**counts, "region_source": "labels_file"}, [path]
        logger.info("%s not found: regions left empty", path)
    return np.full(plane.size, "", dtype=str), {"region_source": "none"}, []


def read_suite2p_fish(fish_dir: str | Path, params: IngestParams, *, fish: str) -> RawFish:
    """Read every suite2p plane of one fish and concatenate the ROIs in plane order.

    Args:
        fish_dir: folder holding ``plane_{k}/`` or ``plane{k}/`` folders, directly or under
            ``suite2p/`` (``combined/`` is ignored).
        params: the ``data`` section: pixel size and plane spacing (um), frame_rate_hz
            (overrides ``fs`` of settings.npy/ops.npy; required when no plane has either),
            use_iscell / iscell_threshold (is-cell filter where iscell.npy exists),
            functional_types_file / labels_file (regions).
        fish: fish id, filling ``{fish}`` in data.functional_types_file.

    Returns:
        RawFish with F (and Fneu when every plane has it) as float32 (n_neurons, n_frames).
        Planes whose frame counts differ by one are truncated to the shortest; the number of
        frames cut is in ``counts["n_frames_truncated"]``.

    Raises:
        InputFileError: a missing, empty, corrupt or inconsistent input file.
    """
    fish_dir = Path(fish_dir)
    planes = _read_planes(fish_dir, params)
    n_frames = _common_frames(planes)
    rate = _resolve_rate(planes, params.frame_rate_hz)
    F, Fneu = _concatenate(planes, n_frames, fish_dir, params.iscell_threshold)
    n_keep = [int(p.keep.sum()) for p in planes]
    plane = np.repeat(np.array([p.index for p in planes], dtype=np.int64), n_keep)
    roi = np.concatenate([np.flatnonzero(p.keep) for p in planes]).astype(np.int64)
    y_px = np.concatenate([p.y_px[p.keep] for p in planes])
    x_px = np.concatenate([p.x_px[p.keep] for p in planes])
    counts = _plane_counts(planes, n_frames, F.shape[0], Fneu is not None, params.use_iscell)
    plane_sizes = [int(p.F.shape[0]) for p in planes]
    region, region_counts, region_files = _regions(fish_dir, params, fish, plane, roi, plane_sizes)
    counts.update(region_counts)
    if counts["n_frames_truncated"]:
        logger.warning("planes truncated to %d frames: %s", n_frames, counts["n_frames_truncated"])
    positions = positions_um(x_px, y_px, plane, params.pixel_size_um, params.plane_spacing_um)
    neurons = Neurons(
        plane=plane,
        roi=roi,
        region=np.asarray(region, dtype=str),
        time_offset_s=plane / len(planes) / rate,
        **positions,
    )
    files = [f for p in planes for f in p.files] + region_files
    return RawFish(F, Fneu, neurons, rate, len(planes), files, counts)


def find_tail_file(fish_dir: str | Path, name: str) -> Path:
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


def ingest_suite2p(fish_dir: str | Path, fish: str, params: IngestParams) -> xr.Dataset:
    """Read one fish's suite2p folder, tail and annotations into the ingested dataset.

    ``F`` is raw fluorescence (a.u.), ``Fneu`` the neuropil where Fneu.npy exists; the tail is
    ``data.tail_file``, the stimulus ``data.stimulus_file`` (both relative to `fish_dir`). See
    :mod:`nlp4neuro.ingest.contract` for the dataset.
    """
    fish_dir = Path(fish_dir)
    raw = read_suite2p_fish(fish_dir, params, fish=fish)
    tail = read_tail_per_frame(fish_dir / params.tail_file, raw.n_frames)
    stimulus_path = None if params.stimulus_file is None else fish_dir / params.stimulus_file
    stimulus, stimulus_files = read_stimulus_per_frame(
        stimulus_path, raw.n_frames, raw.frame_rate_hz
    )
    counts = {**raw.counts, **tail.counts}
    log_counts(fish, counts)
    sources = [*raw.source_files, tail.source, *stimulus_files]
    return ingested_dataset(
        F=raw.F,
        Fneu=raw.Fneu,
        neurons=raw.neurons,
        tail=tail,
        stimulus=stimulus,
        attrs={
            "fish": str(fish),
            "frame_rate_hz": float(raw.frame_rate_hz),
            "n_planes": int(raw.n_planes),
            "source_dir": str(fish_dir),
            "source_checksums": source_checksums(sources, fish_dir),
            "counts": counts,
            "ingest": {"format": "suite2p", **asdict(params)},
        },
        f_attrs={"units": "a.u.", "long_name": "raw fluorescence"},
        min_tail_coverage=params.min_tail_coverage,
    )
