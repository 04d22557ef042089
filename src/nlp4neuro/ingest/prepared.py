"""The paper's prepared per-fish matrices (data.source prepared) into the ingested dataset.

Files in the fish folder ``exp1-4_data/fish{N}/data/``: ``fish{N}_neural_data_matched.npy``
float32 (n_neurons, T), ALREADY reference-normalised (per frame: z-score then min-max across
neurons), and ``fish{N}_tail_data_matched.npy`` float32 (T - 2, 6) per-frame mean tail angles in
radians for frames 0..T-3 (the last 2 neural frames have no behaviour). ``F`` therefore holds
normalised values (``signal_kind`` "reference"): run preprocessing mode ``raw`` on it.
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path

import numpy as np
import xarray as xr

from nlp4neuro.conventions import positions_um, segment_names
from nlp4neuro.errors import InputFileError
from nlp4neuro.ingest.contract import (
    TRAILING_FRAMES_WITHOUT_TAIL,
    IngestParams,
    Neurons,
    PerFrameTail,
    ingested_dataset,
    log_counts,
    source_checksums,
)
from nlp4neuro.ingest.functional_types import labels_from_functional_types, read_functional_types
from nlp4neuro.ingest.suite2p import discover_planes, load_npy, read_centroids

logger = logging.getLogger(__name__)

NEURAL_FILE = "fish{fish}_neural_data_matched.npy"
TAIL_FILE = "fish{fish}_tail_data_matched.npy"
# Where the published layout keeps its region table (fish 11-13), when data.functional_types_file
# does not name another one.
FUNCTIONAL_TYPES_FILE = "functional_types_df.h5"
# The paper's volume rate, used when data.frame_rate_hz is null (the matrices carry no rate).
PAPER_FRAME_RATE_HZ = 1.1
PREPARED_ATTRS = {
    "source_format": "prepared",
    "signal_kind": "reference",
    "normalisation": "already reference-normalised upstream (per frame across neurons: "
    "z-score then min-max); use preprocessing mode 'raw'",
}


def _read_matrices(data_dir: Path, fish: str) -> tuple[np.ndarray, np.ndarray, list[Path]]:
    """float32 neural (n_neurons, T) and tail (T - 2..T, n_segments) matrices, and their paths."""
    neural_path = data_dir / NEURAL_FILE.format(fish=fish)
    tail_path = data_dir / TAIL_FILE.format(fish=fish)
    neural = load_npy(neural_path, mmap=True)
    tail = load_npy(tail_path)
    if neural.ndim != 2 or 0 in neural.shape:
        raise InputFileError(neural_path, "a 2-D (neurons, frames) matrix", f"shape {neural.shape}")
    if tail.ndim != 2 or 0 in tail.shape:
        raise InputFileError(tail_path, "a 2-D (frames, segments) matrix", f"shape {tail.shape}")
    n_frames, n_tail = neural.shape[1], tail.shape[0]
    if not 0 <= n_frames - n_tail <= TRAILING_FRAMES_WITHOUT_TAIL:
        raise InputFileError(
            tail_path,
            f"{n_frames - TRAILING_FRAMES_WITHOUT_TAIL} to {n_frames} rows (the {n_frames} frames "
            f"of {neural_path.name}, of which the last {TRAILING_FRAMES_WITHOUT_TAIL} may lack "
            "tail)",
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
    return F, angles, [neural_path, tail_path]


def _find_functional_types(data_dir: Path, name: str) -> Path | None:
    """`name` in the fish folder, else in its parent; None when in neither."""
    for candidate in (data_dir / name, data_dir.parent / name):
        if candidate.is_file():
            return candidate
    return None


def _from_functional_types(path: Path, n_neurons: int, neural_name: str) -> dict[str, np.ndarray]:
    """plane, roi, x_px, y_px, region of every neuron from the region table."""
    table = read_functional_types(path)
    if not np.array_equal(table.index.to_numpy(), np.arange(n_neurons)):
        raise InputFileError(
            path, f"one row per neuron 0..{n_neurons - 1} of {neural_name}", f"{len(table)} rows"
        )
    labels = labels_from_functional_types(table, source=path)
    return {
        "plane": labels["plane"].to_numpy(),
        "roi": labels["roi"].to_numpy(),
        "x_px": table["x_px"].to_numpy(),
        "y_px": table["y_px"].to_numpy(),
        "region": table["region"].to_numpy(dtype=object),
    }


def _from_raw_stat(
    raw_fish_dir: Path, n_neurons: int, neural_name: str
) -> tuple[dict[str, np.ndarray], list[Path]]:
    """plane, roi, x_px, y_px (region "") of every ROI of the raw folder, from stat.npy."""
    planes, ys, xs, files = [], [], [], []
    for k, folder in discover_planes(raw_fish_dir):
        n_rois = load_npy(folder / "F.npy", mmap=True).shape[0]
        y_px, x_px, _ = read_centroids(folder / "stat.npy", n_rois)
        planes.append(np.full(n_rois, k, dtype=np.int64))
        ys.append(y_px)
        xs.append(x_px)
        files.append(folder / "stat.npy")
    plane = np.concatenate(planes)
    if plane.size != n_neurons:
        raise InputFileError(
            raw_fish_dir,
            f"{n_neurons} ROIs over all planes (the neurons of {neural_name})",
            f"{plane.size} ROIs",
        )
    roi = np.concatenate([np.arange(p.size) for p in planes])
    region = np.full(n_neurons, "", dtype=object)
    located = {"plane": plane, "roi": roi, "x_px": np.concatenate(xs), "y_px": np.concatenate(ys)}
    return {**located, "region": region}, files


def _unknown_positions(n_neurons: int) -> dict[str, np.ndarray]:
    return {
        "plane": np.full(n_neurons, -1, dtype=np.int64),
        "roi": np.full(n_neurons, -1, dtype=np.int64),
        "x_px": np.full(n_neurons, np.nan),
        "y_px": np.full(n_neurons, np.nan),
        "region": np.full(n_neurons, "", dtype=object),
    }


def _neurons(
    located: dict[str, np.ndarray], params: IngestParams, frame_rate_hz: float, n_planes: int
) -> Neurons:
    """Neuron coords; plane -1 (unknown) gives NaN z and time offset."""
    plane = located["plane"]
    known = plane >= 0
    pos = positions_um(
        located["x_px"], located["y_px"], plane, params.pixel_size_um, params.plane_spacing_um
    )
    pos["z_um"] = np.where(known, pos["z_um"], np.nan)
    time_offset = np.where(known, plane / max(n_planes, 1) / frame_rate_hz, np.nan)
    return Neurons(
        plane=plane, roi=located["roi"], region=located["region"], time_offset_s=time_offset, **pos
    )


def _positions(
    data_dir: Path, fish: str, params: IngestParams, n_neurons: int, raw_fish_dir: Path | None
) -> tuple[dict[str, np.ndarray], list[Path], str]:
    """Per-neuron plane/roi/pixels/region, the files read and where they came from.

    The region table (data.functional_types_file, else functional_types_df.h5; in the fish
    folder, then its parent), else the raw folder's stat.npy, else unknown.
    """
    neural_name = NEURAL_FILE.format(fish=fish)
    name = (params.functional_types_file or FUNCTIONAL_TYPES_FILE).format(fish=fish)
    ft_path = _find_functional_types(data_dir, name)
    if ft_path is not None:
        return (
            _from_functional_types(ft_path, n_neurons, neural_name),
            [ft_path],
            "functional_types",
        )
    if raw_fish_dir is not None:
        located, files = _from_raw_stat(Path(raw_fish_dir), n_neurons, neural_name)
        return located, files, "raw_stat"
    logger.warning("fish %s: no neuron positions (no %s)", fish, name)
    return _unknown_positions(n_neurons), [], "unknown"


def ingest_prepared(
    data_dir: str | Path,
    fish: str,
    params: IngestParams,
    *,
    raw_fish_dir: str | Path | None = None,
    n_planes: int | None = None,
) -> xr.Dataset:
    """Read the paper's prepared per-fish matrices (module docstring) into the ingested dataset.

    Positions and regions come from the region table (``data.functional_types_file``, else the
    published ``functional_types_df.h5``; looked up in `data_dir`, then its parent; fish 11-13),
    else from the raw folder's stat.npy (`raw_fish_dir`, whose ROI count must equal the
    matrix's), else they are unknown: plane and roi -1, coordinates and time offset NaN,
    region "". The frame rate is ``data.frame_rate_hz``, or the paper's 1.1 Hz when null.

    Args:
        data_dir: folder holding the two .npy files.
        fish: fish id (fills ``{fish}`` in the file names).
        params: the ``data`` section.
        raw_fish_dir: the fish's raw suite2p folder, for centroids when no region table exists.
        n_planes: planes per volume for ``time_offset_s`` (None: highest plane + 1).

    Raises:
        InputFileError: missing or malformed files, or frame/neuron counts that disagree.
    """
    data_dir = Path(data_dir)
    rate = params.frame_rate_hz or PAPER_FRAME_RATE_HZ
    F, angles, sources = _read_matrices(data_dir, fish)
    (n_neurons, n_frames), n_tail = F.shape, angles.shape[0]
    located, position_files, position_source = _positions(
        data_dir, fish, params, n_neurons, raw_fish_dir
    )
    n_planes_used = _plane_count(located["plane"], n_planes)
    counts = {
        "n_neurons": n_neurons,
        "n_frames": n_frames,
        "n_frames_with_tail": n_tail,
        "n_trailing_frames_dropped": n_frames - n_tail,
        "n_neurons_with_position": int(np.isfinite(located["x_px"]).sum()),
        "n_neurons_labelled": int(np.count_nonzero(located["region"] != "")),
        "position_source": position_source,
    }
    log_counts(fish, counts)
    used = {"frame_rate_hz": rate, "n_planes": n_planes, "raw_fish_dir": raw_fish_dir}
    return ingested_dataset(
        F=F,
        Fneu=None,
        neurons=_neurons(located, params, rate, n_planes_used),
        tail=PerFrameTail(
            np.arange(n_tail), angles, segment_names(angles.shape[1]), {}, sources[1]
        ),
        stimulus=np.full(n_frames, "", dtype=object),
        attrs={
            "fish": str(fish),
            "frame_rate_hz": float(rate),
            "n_planes": n_planes_used,
            "source_dir": str(data_dir),
            "source_checksums": source_checksums([*sources, *position_files], data_dir),
            "counts": counts,
            "ingest": {"format": "prepared", **asdict(params), **used},
            **PREPARED_ATTRS,
        },
        f_attrs={"units": "1", "long_name": "reference-normalised fluorescence (prepared)"},
        min_tail_coverage=params.min_tail_coverage,
    )


def _plane_count(plane: np.ndarray, n_planes: int | None) -> int:
    """`n_planes` if given, else the highest known plane + 1 (0 when no plane is known)."""
    if n_planes is not None:
        return int(n_planes)
    return int(plane.max() + 1) if (plane >= 0).any() else 0
