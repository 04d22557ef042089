"""Other input layouts, each read into the same "ingested" dataset as :func:`io.ingest_fish`.

Every reader here returns an xarray Dataset with dims ``neuron``, ``frame`` (every imaging
volume), ``tail_frame`` (volumes that have tail samples) and ``segment``:

- ``F`` (neuron, frame) float32; ``Fneu`` likewise where the source has neuropil traces;
- ``tail`` (tail_frame, segment) float32 per-frame mean tail angles, radians;
- ``stimulus`` (frame) str, "" where unknown;
- neuron coords ``plane``, ``roi``, ``x_um``, ``y_um``, ``z_um``, ``region``, ``time_offset_s``;
- attrs ``fish``, ``frame_rate_hz``, ``n_planes``, ``source_dir``, ``source_checksums`` (JSON
  {relative path: sha256}), ``counts`` (JSON), ``ingest`` (JSON parameters) and ``source_format``
  (``prepared`` or ``nwb``) plus ``signal_kind`` (what ``F`` holds; see each reader).

Layouts (``data-format.md`` describes the paper's):

- the paper's raw suite2p layout ``raw_data_f{N}/plane_k/{F.npy, stat.npy, tail_df.h5}`` is read
  by :func:`nlp4neuro.io.ingest_fish` itself (with ``frame_rate_hz=1.1``: the folders hold no
  ops.npy); :func:`write_paper_raw_fixture` writes a tiny copy of that layout for tests;
- the paper's prepared matrices ``exp1-4_data/fish{N}/data/`` (:func:`ingest_prepared`), whose
  neural matrix is ALREADY reference-normalised: run preprocessing mode ``raw`` on it;
- ``functional_types_df.h5`` neuron annotations (:func:`read_functional_types`,
  :func:`labels_from_functional_types`);
- Neurodata Without Borders files (:func:`ingest_nwb`);
- plane mean images used as brain-map backgrounds (:func:`read_plane_images`).
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from nlp4neuro.errors import ConfigError, InputFileError
from nlp4neuro.io import (
    IngestParams,
    discover_planes,
    ingest_fish,
    ingested_dataset,
    load_npy,
    read_centroids,
    source_checksums,
    tail_per_frame,
)

logger = logging.getLogger(__name__)

_TRAILING_INT = re.compile(r"(\d+)\s*$")
_PLANE_IMAGE = re.compile(r"^plane_?(\d+)\.(jpe?g|tiff?|png)$", re.IGNORECASE)
# The reference drops the last 2 neural frames: they have no tail samples.
PAPER_TRAILING_FRAMES = 2
PAPER_FRAME_RATE_HZ = 1.1


def _segment_names(n: int) -> list[str]:
    return [f"theta_{j:02d}" for j in range(n)]


# --------------------------------------------------------------------------------------------
# The paper's raw layout: a tiny fixture writer (io.ingest_fish reads the layout)
# --------------------------------------------------------------------------------------------


def write_paper_raw_fixture(
    out_dir: str | Path,
    *,
    fish: int = 9,
    rois_per_plane: Sequence[int] = (3, 2),
    n_frames: int = 12,
    samples_per_frame: int = 4,
    frame_rate_hz: float = PAPER_FRAME_RATE_HZ,
    seed: int = 0,
) -> Path:
    """Write a tiny fish in the paper's published raw layout; return its fish folder.

    Layout (exactly the published one, nothing more): ``out_dir/raw_data_f{fish}/plane_{k}/``
    with ``F.npy`` (float32, n_rois x n_frames), a pickled ``stat.npy`` (dicts with ``med``
    [y, x], ``ypix``, ``xpix``, ``lam``, ``npix``) and ``tail_df.h5`` (key ``tail``; an identical
    copy in every plane, as published). No Fneu.npy, iscell.npy or ops.npy.

    Values are chosen so a test can compute every expected number by hand:

    - ``F[r, t]`` of plane k = ``1000 + 100 k + 10 r + t`` plus uniform noise in [0, 0.5)
      (from ``seed``);
    - ROI r of plane k covers pixels (y, x) = (10 k + r, 20 + r) with weight 3 and
      (10 k + r + 1, 20 + r + 2) with weight 1: lam-weighted centroid (10 k + r + 0.25, 20 + r +
      0.5); ``med`` = (10 k + r, 20 + r);
    - tail: ``samples_per_frame`` samples per frame for frames 0..n_frames-3 (the last 2 frames
      have none, as in the paper); angle j at frame f = ``0.01 f + 0.001 j`` plus offsets that
      average to exactly zero within the frame; ``t`` = frame / rate + sample / (rate * n).
    """
    if n_frames < PAPER_TRAILING_FRAMES + 1 or samples_per_frame < 1 or not rois_per_plane:
        raise ConfigError(
            "fixture",
            "n_frames >= 3, samples_per_frame >= 1, >= 1 plane",
            (n_frames, samples_per_frame, list(rois_per_plane)),
        )
    rng = np.random.default_rng(seed)
    fish_dir = Path(out_dir) / f"raw_data_f{fish}"
    tail_frames = n_frames - PAPER_TRAILING_FRAMES
    frame = np.repeat(np.arange(tail_frames), samples_per_frame)
    # Symmetric offsets (-a, ..., +a) sum to zero, so the per-frame mean is the base angle.
    offsets = np.tile(np.linspace(-0.002, 0.002, samples_per_frame), tail_frames)
    tail = pd.DataFrame(
        {
            name: 0.01 * frame + 0.001 * j + offsets * (j + 1)
            for j, name in enumerate(_segment_names(6))
        }
    )
    sample = np.tile(np.arange(samples_per_frame), tail_frames)
    tail["t"] = frame / frame_rate_hz + sample / (frame_rate_hz * samples_per_frame)
    tail["frame"] = frame.astype(np.int64)
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


# --------------------------------------------------------------------------------------------
# functional_types_df.h5: neuron coordinates and coarse regions (fish 11-13)
# --------------------------------------------------------------------------------------------


def _plane_number(value: Any) -> int:
    """Plane index from 3, 3.0, "3", "plane_3" or "plane3"; -1 where it cannot be read."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return -1
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return int(value)
    match = _TRAILING_INT.search(str(value))
    return int(match.group(1)) if match else -1


def read_functional_types(path: str | Path, key: str | None = None) -> pd.DataFrame:
    """Read the paper's ``functional_types_df.h5`` into a tidy neuron table.

    The file is a pandas HDFStore whose table has one row per neuron, the row index being the
    global neuron index (planes concatenated in plane order), with columns ``neur_coords``
    ([x, y] pixel centroid), ``plane`` (string) and ``region`` ("Pt", "Hb" or missing), plus
    functional columns (``visual_barcode``, ``motor_corr``, photostimulation ...).

    Args:
        path: the .h5 file.
        key: HDF5 key of the table; None takes the store's only key.

    Returns:
        DataFrame indexed by ``neuron`` (int64 global index, sorted) with ``plane`` (int64),
        ``x_px``, ``y_px`` (float64 pixels; NaN where missing) and ``region`` (str, "" where
        missing), followed by every other column of the file unchanged.

    Raises:
        InputFileError: unreadable file, several keys without `key`, missing columns, a
        malformed coordinate or plane, or a duplicated / negative neuron index.
    """
    path = Path(path)
    if not path.is_file():
        raise InputFileError(path, "a functional-types HDF5 table", "no such file")
    try:
        with pd.HDFStore(path, mode="r") as store:
            keys = [k.lstrip("/") for k in store.keys()]
            if key is None:
                if len(keys) != 1:
                    raise InputFileError(path, "exactly one table (or pass key=)", f"keys {keys}")
                key = keys[0]
            elif key not in keys:
                raise InputFileError(path, f"HDF5 key {key!r}", f"keys {keys}")
            table = store[key]
    except InputFileError:
        raise
    except (OSError, ValueError, RuntimeError, KeyError, TypeError) as err:
        raise InputFileError(
            path, "a readable pandas HDF5 table", f"{type(err).__name__}: {err}"
        ) from err
    if not isinstance(table, pd.DataFrame):
        raise InputFileError(path, "a DataFrame", type(table).__name__)
    missing = [c for c in ("neur_coords", "plane") if c not in table.columns]
    if missing:
        raise InputFileError(
            path, "columns neur_coords and plane", f"missing {missing}; has {list(table.columns)}"
        )
    try:
        neuron = np.asarray(table.index, dtype=np.int64)
    except (TypeError, ValueError) as err:
        raise InputFileError(path, "an integer row index (global neuron index)", str(err)) from err
    if (neuron < 0).any() or pd.Index(neuron).has_duplicates:
        raise InputFileError(path, "unique non-negative neuron indices", "duplicates or negatives")

    xy = np.full((len(table), 2), np.nan)
    for i, cell in enumerate(table["neur_coords"].to_numpy()):  # object cells: a loop is needed
        if cell is None or (np.ndim(cell) == 0 and pd.isna(cell)):
            continue
        values = np.asarray(cell, dtype=np.float64).ravel()
        if values.shape != (2,):
            raise InputFileError(
                path, "neur_coords = [x, y] pixels", f"{values.tolist()} at neuron {neuron[i]}"
            )
        xy[i] = values
    plane = np.array([_plane_number(v) for v in table["plane"].to_numpy()], dtype=np.int64)
    if (plane < 0).any():
        row = int(np.flatnonzero(plane < 0)[0])
        raise InputFileError(
            path,
            "a plane number in every row ('3' or 'plane_3')",
            f"{table['plane'].iloc[row]!r} at neuron {neuron[row]}",
        )
    if "region" in table.columns:
        raw_region = table["region"].to_numpy(dtype=object)
        region = np.array(
            [
                "" if v is None or (not isinstance(v, str) and pd.isna(v)) else str(v).strip()
                for v in raw_region
            ],
            dtype=object,
        )
        region[region == "nan"] = ""
    else:
        region = np.full(len(table), "", dtype=object)
    out = pd.DataFrame(
        {"plane": plane, "x_px": xy[:, 0], "y_px": xy[:, 1], "region": region},
        index=pd.Index(neuron, name="neuron"),
    )
    others = table.drop(columns=[c for c in ("neur_coords", "plane", "region") if c in table])
    others.index = out.index
    return pd.concat([out, others], axis=1).sort_index()


def labels_from_functional_types(
    table: pd.DataFrame, plane_sizes: Sequence[int] | None = None, *, source: str | Path = ""
) -> pd.DataFrame:
    """(plane, roi, region) rows for the fish folder's ``neuron_labels.tsv``.

    The global neuron index g of plane p maps to ``roi = g - offset[p]``, where ``offset[p]`` is
    the number of neurons in planes 0..p-1.

    Args:
        table: from :func:`read_functional_types` (index = global neuron index).
        plane_sizes: ROIs per plane (plane 0 first); None infers them from the table, which then
            must cover every neuron 0..N-1 with planes in non-decreasing order.
        source: file named in errors.

    Returns:
        DataFrame with int64 ``plane``, ``roi`` and str ``region`` ("" where unknown), one row per
        table row; write it with ``to_csv(path, sep="\\t", index=False)``.
    """
    neuron = np.asarray(table.index, dtype=np.int64)
    plane = table["plane"].to_numpy(dtype=np.int64)
    order = np.argsort(neuron, kind="stable")
    neuron, plane = neuron[order], plane[order]
    region = table["region"].to_numpy(dtype=object)[order]
    if plane_sizes is None:
        if not np.array_equal(neuron, np.arange(neuron.size)):
            raise InputFileError(
                source,
                "rows for every neuron 0..N-1 (or pass plane_sizes)",
                f"{neuron.size} rows with indices {neuron.min()}..{neuron.max()}",
            )
        if (np.diff(plane) < 0).any():
            i = int(np.flatnonzero(np.diff(plane) < 0)[0])
            raise InputFileError(
                source,
                "planes concatenated in plane order (plane never decreasing with the index)",
                f"plane {plane[i]} at neuron {i} then plane {plane[i + 1]}",
            )
        sizes = np.bincount(plane)
    else:
        sizes = np.asarray(plane_sizes, dtype=np.int64)
        if plane.max() >= sizes.size:
            raise InputFileError(
                source, f"planes 0..{sizes.size - 1} (plane_sizes)", f"plane {plane.max()}"
            )
    offset = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    roi = neuron - offset[plane]
    bad = (roi < 0) | (roi >= sizes[plane])
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise InputFileError(
            source,
            f"neuron {neuron[i]} inside plane {plane[i]}'s index range "
            f"[{offset[plane[i]]}, {offset[plane[i]] + sizes[plane[i]]})",
            f"roi {roi[i]}",
        )
    return pd.DataFrame({"plane": plane, "roi": roi, "region": region.astype(str)})


# --------------------------------------------------------------------------------------------
# The paper's prepared matrices
# --------------------------------------------------------------------------------------------


def _raw_centroids(raw_fish_dir: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[Path]]:
    """plane, y_px, x_px of every ROI in a raw fish folder (planes concatenated), from stat.npy."""
    planes, ys, xs, files = [], [], [], []
    for k, folder in discover_planes(raw_fish_dir):
        n_rois = load_npy(folder / "F.npy", mmap=True).shape[0]
        y_px, x_px, _ = read_centroids(folder / "stat.npy", n_rois)
        planes.append(np.full(n_rois, k, dtype=np.int64))
        ys.append(y_px)
        xs.append(x_px)
        files.append(folder / "stat.npy")
    return np.concatenate(planes), np.concatenate(ys), np.concatenate(xs), files


def ingest_prepared(
    data_dir: str | Path,
    fish: int | str,
    *,
    frame_rate_hz: float = PAPER_FRAME_RATE_HZ,
    pixel_size_um: float = 0.6,
    plane_spacing_um: float = 10.0,
    n_planes: int | None = None,
    functional_types_file: str | None = "functional_types_df.h5",
    raw_fish_dir: str | Path | None = None,
    neural_file: str = "fish{fish}_neural_data_matched.npy",
    tail_file: str = "fish{fish}_tail_data_matched.npy",
) -> xr.Dataset:
    """Read the paper's prepared per-fish matrices into the ingested dataset.

    Files in `data_dir` (``exp1-4_data/fish{N}/data/``): ``fish{N}_neural_data_matched.npy``
    float32 (n_neurons, T), ALREADY reference-normalised (per frame: z-score then min-max across
    neurons), and ``fish{N}_tail_data_matched.npy`` float32 (T - 2, 6) per-frame mean tail angles
    in radians for frames 0..T-3 (the last 2 neural frames have no behaviour and are dropped by
    the models). ``F`` therefore holds normalised values (``signal_kind`` "reference"): run
    preprocessing mode ``raw`` on it, not ``dff`` or ``reference``.

    Neuron positions and regions come from ``functional_types_df.h5`` (looked up in `data_dir`,
    then its parent; fish 11-13), else from the raw folder's stat.npy (`raw_fish_dir`, whose ROI
    count must equal the matrix's), else they are unknown: plane and roi -1, coordinates and
    time offset NaN, region "".

    Args:
        data_dir: folder holding the two .npy files.
        fish: fish id (fills ``{fish}`` in the file names).
        frame_rate_hz: volume rate, Hz (1.1 in the paper).
        pixel_size_um, plane_spacing_um: micrometres per pixel and between planes.
        n_planes: planes per volume for ``time_offset_s`` (default: highest plane + 1).
        functional_types_file: file name to look for; None to ignore.
        raw_fish_dir: the fish's raw suite2p folder, for centroids when no annotation exists.
        neural_file, tail_file: file name patterns with ``{fish}``.

    Raises:
        InputFileError: missing or malformed files, or frame/neuron counts that disagree.
    """
    data_dir = Path(data_dir)
    for key, value in (("frame_rate_hz", frame_rate_hz), ("pixel_size_um", pixel_size_um)):
        if not (math.isfinite(float(value)) and value > 0):
            raise ConfigError(key, "a finite number > 0", value)
    neural_path = data_dir / neural_file.format(fish=fish)
    tail_path = data_dir / tail_file.format(fish=fish)
    neural = load_npy(neural_path, mmap=True)
    tail = load_npy(tail_path)
    if neural.ndim != 2 or 0 in neural.shape:
        raise InputFileError(neural_path, "a 2-D (neurons, frames) matrix", f"shape {neural.shape}")
    if tail.ndim != 2 or 0 in tail.shape:
        raise InputFileError(tail_path, "a 2-D (frames, segments) matrix", f"shape {tail.shape}")
    n_neurons, n_frames = neural.shape
    n_tail = tail.shape[0]
    if not 0 <= n_frames - n_tail <= PAPER_TRAILING_FRAMES:
        raise InputFileError(
            tail_path,
            f"{n_frames - PAPER_TRAILING_FRAMES} to {n_frames} rows (the {n_frames} frames of "
            f"{neural_path.name}, of which the last {PAPER_TRAILING_FRAMES} may lack tail)",
            f"{n_tail} rows",
        )
    F = np.asarray(neural, dtype=np.float32)
    if not np.isfinite(F).all():
        raise InputFileError(
            neural_path, "finite values", f"{int((~np.isfinite(F)).sum())} NaN/inf"
        )
    angles = np.asarray(tail, dtype=np.float32)
    if not np.isfinite(angles).all():
        raise InputFileError(
            tail_path, "finite angles", f"{int((~np.isfinite(angles)).sum())} NaN/inf"
        )

    sources = [neural_path, tail_path]
    plane = np.full(n_neurons, -1, dtype=np.int64)
    roi = np.full(n_neurons, -1, dtype=np.int64)
    x_px = np.full(n_neurons, np.nan)
    y_px = np.full(n_neurons, np.nan)
    region = np.full(n_neurons, "", dtype=object)
    position_source = "unknown"
    ft_path = None
    if functional_types_file is not None:
        for candidate in (
            data_dir / functional_types_file,
            data_dir.parent / functional_types_file,
        ):
            if candidate.is_file():
                ft_path = candidate
                break
    if ft_path is not None:
        table = read_functional_types(ft_path)
        if not np.array_equal(table.index.to_numpy(), np.arange(n_neurons)):
            raise InputFileError(
                ft_path,
                f"one row per neuron 0..{n_neurons - 1} of {neural_path.name}",
                f"{len(table)} rows",
            )
        labels = labels_from_functional_types(table, source=ft_path)
        plane, roi = labels["plane"].to_numpy(), labels["roi"].to_numpy()
        x_px, y_px = table["x_px"].to_numpy(), table["y_px"].to_numpy()
        region = table["region"].to_numpy(dtype=object)
        sources.append(ft_path)
        position_source = "functional_types"
    elif raw_fish_dir is not None:
        raw_plane, raw_y, raw_x, stat_files = _raw_centroids(Path(raw_fish_dir))
        if raw_plane.size != n_neurons:
            raise InputFileError(
                raw_fish_dir,
                f"{n_neurons} ROIs over all planes (the neurons of {neural_path.name})",
                f"{raw_plane.size} ROIs",
            )
        plane, y_px, x_px = raw_plane, raw_y, raw_x
        roi = np.concatenate([np.arange(np.count_nonzero(plane == p)) for p in np.unique(plane)])
        sources.extend(stat_files)
        position_source = "raw_stat"
    else:
        logger.warning("fish %s: no neuron positions (no %s)", fish, functional_types_file)

    known = plane >= 0
    planes_total = (
        int(n_planes) if n_planes is not None else int(plane.max() + 1 if known.any() else 0)
    )
    time_offset = np.where(known, plane / max(planes_total, 1) / frame_rate_hz, np.nan)
    segments = _segment_names(angles.shape[1])
    counts = {
        "n_neurons": n_neurons,
        "n_frames": n_frames,
        "n_frames_with_tail": n_tail,
        "n_trailing_frames_dropped": n_frames - n_tail,
        "n_neurons_with_position": int(np.isfinite(x_px).sum()),
        "n_neurons_labelled": int(np.count_nonzero(region != "")),
        "position_source": position_source,
    }
    for key, value in counts.items():
        logger.info("fish %s: %s = %s", fish, key, value)
    params = {
        "format": "prepared",
        "frame_rate_hz": frame_rate_hz,
        "pixel_size_um": pixel_size_um,
        "plane_spacing_um": plane_spacing_um,
        "n_planes": n_planes,
        "functional_types_file": functional_types_file,
        "raw_fish_dir": str(raw_fish_dir) if raw_fish_dir is not None else None,
        "neural_file": neural_file,
        "tail_file": tail_file,
    }
    return ingested_dataset(
        F=F,
        Fneu=None,
        tail_frames=np.arange(n_tail),
        tail_angles=angles,
        segments=segments,
        stimulus=np.full(n_frames, "", dtype=object),
        plane=plane,
        roi=roi,
        x_um=x_px * pixel_size_um,
        y_um=y_px * pixel_size_um,
        z_um=np.where(known, plane * plane_spacing_um, np.nan),
        region=region,
        time_offset_s=time_offset,
        attrs={
            "fish": str(fish),
            "frame_rate_hz": float(frame_rate_hz),
            "n_planes": planes_total,
            "source_dir": str(data_dir),
            "source_format": "prepared",
            "signal_kind": "reference",
            "normalisation": "already reference-normalised upstream (per frame across neurons: "
            "z-score then min-max); use preprocessing mode 'raw'",
            "source_checksums": source_checksums(sources, data_dir),
            "counts": counts,
            "ingest": params,
        },
        f_attrs={"units": "1", "long_name": "reference-normalised fluorescence (prepared)"},
    )


# --------------------------------------------------------------------------------------------
# Neurodata Without Borders
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


def _segmentation_geometry(
    table: Any, order: str, source: Path
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Centroid row, column (pixels) and plane (from voxel z, or None) of every ROI of a table.

    Masks are weighted by their pixel weights. ``order`` says what the first mask axis/field is:
    "yx" (row first; suite2p's NWB export and numpy image convention) or "xy".
    """
    n = len(table)
    colnames = set(table.colnames)
    z = None
    if "image_mask" in colnames:
        data = table["image_mask"].data
        first = np.empty(n)
        second = np.empty(n)
        batch = 256  # image masks are full-frame: a few hundred at a time bounds memory
        for a in range(0, n, batch):
            masks = np.asarray(data[a : a + batch], dtype=np.float64)
            if masks.ndim == 4:  # (roi, x, y, z) volume masks
                w_z = masks.sum(axis=(1, 2))
                z_part = w_z @ np.arange(masks.shape[3]) / w_z.sum(axis=1)
                z = np.empty(n) if z is None else z
                z[a : a + batch] = z_part
                masks = masks.sum(axis=3)
            weight = masks.sum(axis=(1, 2))
            first[a : a + batch] = masks.sum(axis=2) @ np.arange(masks.shape[1]) / weight
            second[a : a + batch] = masks.sum(axis=1) @ np.arange(masks.shape[2]) / weight
    elif "pixel_mask" in colnames or "voxel_mask" in colnames:
        name = "voxel_mask" if "voxel_mask" in colnames else "pixel_mask"
        index = table[name]
        ends = np.asarray(index.data[:], dtype=np.int64)
        fields = ("x", "y", "z", "weight") if name == "voxel_mask" else ("x", "y", "weight")
        values = _mask_fields(index.target.data, fields)
        owner = np.repeat(np.arange(n), np.diff(np.concatenate([[0], ends])))
        weight = np.bincount(owner, weights=values[:, -1], minlength=n)
        first = np.bincount(owner, weights=values[:, 0] * values[:, -1], minlength=n) / weight
        second = np.bincount(owner, weights=values[:, 1] * values[:, -1], minlength=n) / weight
        if name == "voxel_mask":
            z = np.bincount(owner, weights=values[:, 2] * values[:, -1], minlength=n) / weight
    else:
        raise InputFileError(
            source,
            f"image_mask, pixel_mask or voxel_mask in PlaneSegmentation {table.name!r}",
            f"columns {sorted(colnames)}",
        )
    if order == "yx":
        return first, second, z
    return second, first, z


def _pixel_size_from_plane(imaging_plane: Any) -> float | None:
    """Micrometres per pixel from ImagingPlane.grid_spacing, or None."""
    spacing = getattr(imaging_plane, "grid_spacing", None)
    if spacing is None:
        return None
    values = np.asarray(spacing[:], dtype=np.float64)
    unit = str(getattr(imaging_plane, "grid_spacing_unit", "meters") or "meters").lower()
    scale = {
        "meters": 1e6,
        "m": 1e6,
        "millimeters": 1e3,
        "mm": 1e3,
        "micrometers": 1.0,
        "microns": 1.0,
        "um": 1.0,
    }.get(unit)
    if scale is None or values.size < 2 or not np.isclose(values[0], values[1]):
        return None
    return float(values[0] * scale)


def _find_tail_series(module: Any, name: str | None, source: Path, describe: str) -> Any:
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


def ingest_nwb(
    path: str | Path,
    fish: int | str,
    *,
    frame_rate_hz: float | None = None,
    pixel_size_um: float | None = None,
    plane_spacing_um: float = 10.0,
    ophys_module: str = "ophys",
    behavior_module: str = "behavior",
    roi_series: str | None = None,
    tail_series: str | None = None,
    mask_order: str = "yx",
) -> xr.Dataset:
    """Read an NWB file's calcium traces, ROI geometry and tail angles into the ingested dataset.

    Imaging: the ``RoiResponseSeries`` in a ``Fluorescence`` container of processing module
    `ophys_module` (else a ``DfOverF`` container: ``signal_kind`` is then "dff" and the
    preprocessing mode must be ``raw``). Every series in the container is read (or only
    `roi_series`), e.g. one per plane; data are (time, roi) in NWB and are transposed to
    (neuron, frame). Neurons are ordered by plane, then by row of their PlaneSegmentation.

    Geometry: weighted centroids of ``image_mask`` / ``pixel_mask`` / ``voxel_mask``. NWB names
    the mask fields (x, y[, z]) but producers differ; `mask_order` "yx" reads the first field or
    image axis as the row (suite2p's NWB export and numpy images), "xy" as the column. The plane
    of a ROI is its voxel-mask z (rounded), else a ``plane`` column of its PlaneSegmentation,
    else the index of its PlaneSegmentation (in the natural order of the series names). ``roi``
    is the ROI's rank among its segmentation's ROIs of the same plane.

    Behaviour: a 2-D TimeSeries (samples, segments) in processing module `behavior_module`
    (directly or inside e.g. BehavioralTimeSeries), in radians (degrees are converted); each
    sample goes to the imaging frame whose interval [t_k, t_k+1) contains its timestamp (the last
    frame's interval is one frame period long), then angles are averaged per frame with
    :func:`nlp4neuro.io.tail_per_frame`. Samples outside the imaging are dropped and counted.

    Frame times are those of the series that starts first. ``time_offset_s`` is each series'
    start relative to it; when all series start together (a single series, or volume-stamped
    planes) it is ``plane / n_planes / frame_rate_hz`` as in :func:`io.read_suite2p_fish`.
    Stimulus: a ``stimulus`` column of the file's epochs table, where present.

    Args:
        path: the .nwb file.
        fish: fish id stored in the attrs.
        frame_rate_hz: volume rate override; default from the series' rate or timestamps.
        pixel_size_um: micrometres per pixel; default from ImagingPlane.grid_spacing.
        plane_spacing_um: micrometres between planes (z_um = plane * spacing).
        ophys_module, behavior_module: processing module names.
        roi_series, tail_series: series names to pick when there are several.
        mask_order: "yx" or "xy", see above.

    Raises:
        InputFileError: the file is missing, not NWB, or lacks the expected series (the message
            lists what the file has); inconsistent frame counts or rates.
        ConfigError: a bad argument, or no pixel size in the file nor the arguments.
    """
    from pynwb import NWBHDF5IO
    from pynwb.ophys import DfOverF, Fluorescence

    path = Path(path)
    if mask_order not in ("yx", "xy"):
        raise ConfigError("mask_order", "'yx' or 'xy'", mask_order)
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
        describe = _describe_nwb(nwbfile)
        if ophys_module not in nwbfile.processing:
            raise InputFileError(
                path, f"processing module {ophys_module!r} with Fluorescence or DfOverF", describe
            )
        module = nwbfile.processing[ophys_module]
        containers = [c for c in module.data_interfaces.values() if isinstance(c, Fluorescence)]
        signal_kind = "fluorescence"
        if not containers:
            containers = [c for c in module.data_interfaces.values() if isinstance(c, DfOverF)]
            signal_kind = "dff"
        if not containers:
            raise InputFileError(
                path, f"a Fluorescence or DfOverF container in processing/{ophys_module}", describe
            )
        all_series = containers[0].roi_response_series
        names = sorted(all_series, key=_natural_key)
        if roi_series is not None:
            if roi_series not in all_series:
                raise InputFileError(
                    path, f"RoiResponseSeries {roi_series!r} in {containers[0].name}", f"{names}"
                )
            names = [roi_series]
        if not names:
            raise InputFileError(path, f"RoiResponseSeries in {containers[0].name}", describe)

        # Per series: traces (rois, T), times, ROI geometry.
        geometry_cache: dict[int, tuple] = {}
        tables: list[int] = []
        blocks = []
        rates = []
        pixel_sizes = []
        for name in names:
            series = all_series[name]
            data = _scaled(series)
            if data.ndim == 1:
                data = data[:, None]
            times = _series_times(series)
            if times.size != data.shape[0]:
                raise InputFileError(
                    path, f"{data.shape[0]} timestamps for {name}", f"{times.size}"
                )
            rows = np.asarray(series.rois.data[:], dtype=np.int64)
            table = series.rois.table
            if id(table) not in geometry_cache:
                y_px, x_px, z = _segmentation_geometry(table, mask_order, path)
                if z is not None:
                    plane_all = np.rint(z).astype(np.int64)
                elif "plane" in table.colnames:
                    plane_all = np.array(
                        [_plane_number(v) for v in table["plane"].data[:]], dtype=np.int64
                    )
                else:
                    plane_all = np.full(len(table), len(tables), dtype=np.int64)
                rank = np.empty(len(table), dtype=np.int64)
                for p in np.unique(plane_all):
                    members = np.flatnonzero(plane_all == p)
                    rank[members] = np.arange(members.size)
                geometry_cache[id(table)] = (y_px, x_px, plane_all, rank)
                tables.append(id(table))
                pixel_sizes.append(_pixel_size_from_plane(table.imaging_plane))
            y_px, x_px, plane_all, rank = geometry_cache[id(table)]
            rate = float(series.rate) if series.rate is not None else None
            if rate is None and times.size > 1:
                rate = 1.0 / float(np.median(np.diff(times)))
            rates.append(rate)
            blocks.append(
                {
                    "name": name,
                    "F": data.T.astype(np.float32),  # halve memory before concatenation
                    "times": times,
                    "plane": plane_all[rows],
                    "roi": rank[rows],
                    "y": y_px[rows],
                    "x": x_px[rows],
                }
            )

        # Frame rate and pixel size.
        if frame_rate_hz is None:
            known = [r for r in rates if r is not None]
            if not known:
                raise ConfigError("frame_rate_hz", "a rate (the file has a single frame)", None)
            if not np.allclose(known, known[0], rtol=1e-3):
                raise InputFileError(
                    path, "the same frame rate in every RoiResponseSeries", f"{known} Hz"
                )
            frame_rate_hz = known[0]
        if not (math.isfinite(float(frame_rate_hz)) and frame_rate_hz > 0):
            raise ConfigError("frame_rate_hz", "a finite number > 0", frame_rate_hz)
        if pixel_size_um is None:
            found = {p for p in pixel_sizes if p is not None}
            if len(found) != 1:
                raise ConfigError(
                    "pixel_size_um",
                    "a value (the file's ImagingPlane.grid_spacing gives none or several)",
                    sorted(found) or None,
                )
            pixel_size_um = found.pop()

        # Frames: truncate to the shortest series (suite2p planes may differ by one frame).
        lengths = np.array([b["F"].shape[1] for b in blocks])
        n_frames = int(lengths.min())
        if lengths.max() - n_frames > 1:
            raise InputFileError(
                path,
                "RoiResponseSeries with the same number of frames (at most 1 apart)",
                f"{dict(zip(names, lengths.tolist(), strict=True))}",
            )
        starts = np.array([b["times"][0] for b in blocks])
        reference = blocks[int(np.argmin(starts))]
        frame_times = reference["times"][:n_frames]

        plane = np.concatenate([b["plane"] for b in blocks])
        roi = np.concatenate([b["roi"] for b in blocks])
        y_px = np.concatenate([b["y"] for b in blocks])
        x_px = np.concatenate([b["x"] for b in blocks])
        series_start = np.concatenate([np.full(b["plane"].size, b["times"][0]) for b in blocks])
        F = np.concatenate([b["F"][:, :n_frames] for b in blocks], axis=0)
        order = np.lexsort((np.arange(plane.size), plane))  # plane order, stable within plane
        plane, roi, y_px, x_px, F = plane[order], roi[order], y_px[order], x_px[order], F[order]
        series_start = series_start[order]
        n_planes = int(plane.max()) + 1
        if np.ptp(starts) > 0:
            time_offset = series_start - starts.min()
        else:
            time_offset = plane / n_planes / frame_rate_hz
        if not np.isfinite(F).all():
            raise InputFileError(
                path, "finite fluorescence", f"{int((~np.isfinite(F)).sum())} NaN/inf"
            )

        # Behaviour.
        if behavior_module not in nwbfile.processing:
            raise InputFileError(
                path, f"processing module {behavior_module!r} with the tail angles", describe
            )
        tail_ts = _find_tail_series(
            nwbfile.processing[behavior_module], tail_series, path, describe
        )
        angles = _scaled(tail_ts)
        unit = str(tail_ts.unit).strip().lower()
        if unit in ("degrees", "degree", "deg"):
            angles = np.deg2rad(angles)
        elif unit not in ("radians", "radian", "rad"):
            raise InputFileError(
                path,
                f"tail angles in radians or degrees ({tail_ts.name})",
                f"unit {tail_ts.unit!r}",
            )
        if angles.ndim != 2:
            raise InputFileError(path, f"{tail_ts.name} as (samples, segments)", f"{angles.shape}")
        tail_times = _series_times(tail_ts)
        period = 1.0 / frame_rate_hz
        frame = np.searchsorted(frame_times, tail_times, side="right") - 1
        inside = (frame >= 0) & (tail_times < frame_times[-1] + period)
        segments = _segment_names(angles.shape[1])
        table = pd.DataFrame(angles[inside], columns=segments)
        table["frame"] = frame[inside].astype(np.int64)
        tail_frames, tail_angles, tail_counts = tail_per_frame(table, n_frames, source=path)
        tail_counts["n_samples_outside_imaging"] = int((~inside).sum())

        stimulus = np.full(n_frames, "", dtype=object)
        epochs = nwbfile.epochs
        if epochs is not None and "stimulus" in epochs.colnames:
            start = np.asarray(epochs["start_time"].data[:], dtype=np.float64)
            stop = np.asarray(epochs["stop_time"].data[:], dtype=np.float64)
            label = np.asarray([str(s) for s in epochs["stimulus"].data[:]], dtype=object)
            inside_epoch = (frame_times[:, None] >= start) & (frame_times[:, None] < stop)
            has = inside_epoch.any(axis=1)
            # the last epoch containing the frame wins where epochs overlap
            last = inside_epoch.shape[1] - 1 - np.argmax(inside_epoch[:, ::-1], axis=1)
            stimulus = np.where(has, label[last], "").astype(object)
    finally:
        io_handle.close()

    counts = {
        "n_planes": n_planes,
        "n_neurons": int(F.shape[0]),
        "n_frames": n_frames,
        "n_frames_truncated": {
            n: int(v - n_frames) for n, v in zip(names, lengths, strict=True) if v > n_frames
        },
        "roi_series": names,
        "tail_series": tail_ts.name,
        "signal_kind": signal_kind,
        **tail_counts,
    }
    for key, value in counts.items():
        logger.info("fish %s: %s = %s", fish, key, value)
    params = {
        "format": "nwb",
        "frame_rate_hz": float(frame_rate_hz),
        "pixel_size_um": float(pixel_size_um),
        "plane_spacing_um": plane_spacing_um,
        "ophys_module": ophys_module,
        "behavior_module": behavior_module,
        "roi_series": roi_series,
        "tail_series": tail_series,
        "mask_order": mask_order,
    }
    long_name = "dF/F (from the file)" if signal_kind == "dff" else "fluorescence"
    return ingested_dataset(
        F=F,
        Fneu=None,
        tail_frames=tail_frames,
        tail_angles=tail_angles,
        segments=segments,
        stimulus=stimulus,
        plane=plane,
        roi=roi,
        x_um=x_px * pixel_size_um,
        y_um=y_px * pixel_size_um,
        z_um=plane * plane_spacing_um,
        region=np.full(F.shape[0], "", dtype=object),
        time_offset_s=time_offset,
        attrs={
            "fish": str(fish),
            "frame_rate_hz": float(frame_rate_hz),
            "n_planes": n_planes,
            "source_dir": str(path.parent),
            "source_format": "nwb",
            "signal_kind": signal_kind,
            "first_frame_time_s": float(frame_times[0]),
            "source_checksums": source_checksums([path], path.parent),
            "counts": counts,
            "ingest": params,
        },
        f_attrs={"units": "a.u." if signal_kind == "fluorescence" else "1", "long_name": long_name},
    )


# --------------------------------------------------------------------------------------------
# Plane images
# --------------------------------------------------------------------------------------------


def read_plane_images(folder: str | Path) -> dict[int, np.ndarray]:
    """Plane mean images ``plane_{k}.jpg`` (or .tif/.png) of a fish, keyed by plane index.

    The paper's ``images/plane_{k}.jpg`` are really TIFF files: each is read with tifffile
    first, and with matplotlib's reader (real JPEG/PNG through Pillow) when it is not a TIFF.

    Returns:
        {plane: image} with each image 2-D (rows, columns) in its stored dtype; RGB(A) images
        are reduced to their channel mean (grey levels) so every background is 2-D.

    Raises:
        InputFileError: no plane image in the folder, two files for one plane, or an image that
        neither reader understands.
    """
    import matplotlib.image
    import tifffile

    folder = Path(folder)
    if not folder.is_dir():
        raise InputFileError(folder, "a folder of plane images", "no such directory")
    found: dict[int, Path] = {}
    for child in sorted(folder.iterdir()):
        match = _PLANE_IMAGE.match(child.name)
        if match is None or not child.is_file():
            continue
        k = int(match.group(1))
        if k in found:
            raise InputFileError(folder, "one image per plane", f"{found[k].name} and {child.name}")
        found[k] = child
    if not found:
        raise InputFileError(
            folder,
            "plane_<k>.jpg/.tif/.png images",
            f"entries {sorted(p.name for p in folder.iterdir())[:10]}",
        )
    images = {}
    for k in sorted(found):
        path = found[k]
        try:
            image = tifffile.imread(path)
        except (tifffile.TiffFileError, ValueError):
            try:
                image = matplotlib.image.imread(path)
            except (OSError, ValueError, SyntaxError) as err:
                raise InputFileError(
                    path, "a TIFF, JPEG or PNG image", f"{type(err).__name__}: {err}"
                ) from err
        image = np.asarray(image)
        if image.ndim == 3 and image.shape[-1] in (3, 4):
            image = image[..., :3].mean(axis=-1)
        if image.ndim != 2:
            raise InputFileError(path, "a 2-D grey image", f"shape {image.shape}")
        images[k] = image
    return images


SOURCES = ("synthetic", "suite2p", "prepared", "nwb")


def ingest_source(
    source: str,
    path: str | Path,
    fish: str,
    params: IngestParams,
    *,
    nwb: Mapping[str, Any] | None = None,
) -> xr.Dataset:
    """Ingest one fish from any supported layout into the same "ingested" dataset.

    Args:
        source: "synthetic" or "suite2p" (a suite2p-style fish folder), "prepared" (the paper's
            prepared matrices folder) or "nwb" (one NWB file).
        path: the fish's folder (or NWB file).
        fish: fish identifier.
        params: the config's ``data`` section (`IngestParams`); for NWB the frame rate and
            pixel size are taken from it when given.
        nwb: options of `ingest_nwb` (ophys_module, behavior_module, roi_series, tail_series,
            mask_order).
    """
    if source in ("synthetic", "suite2p"):
        return ingest_fish(path, params, fish=fish)
    if source == "prepared":
        return ingest_prepared(
            path,
            fish,
            frame_rate_hz=params.frame_rate_hz or PAPER_FRAME_RATE_HZ,
            pixel_size_um=params.pixel_size_um,
            plane_spacing_um=params.plane_spacing_um,
        )
    if source == "nwb":
        return ingest_nwb(
            path,
            fish,
            frame_rate_hz=params.frame_rate_hz,
            pixel_size_um=params.pixel_size_um,
            plane_spacing_um=params.plane_spacing_um,
            **dict(nwb or {}),
        )
    raise ConfigError("data.source", f"one of {SOURCES}", source)
