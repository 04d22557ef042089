"""The "ingested" dataset every input layout is read into, built in one place.

Dims ``neuron``, ``frame`` (every imaging volume), ``tail_frame`` (the volumes that have tail
samples) and ``segment``:

- ``F`` (neuron, frame) float32; ``Fneu`` likewise where the source has neuropil traces;
- ``tail`` (tail_frame, segment) float32 per-frame mean tail angles, radians;
- ``stimulus`` (frame) str, "" where unknown;
- neuron coords ``plane``, ``roi``, ``x_um``, ``y_um``, ``z_um``, ``region``, ``time_offset_s``;
- attrs ``fish``, ``frame_rate_hz``, ``n_planes``, ``source_dir``, ``source_checksums`` (JSON
  {relative path: sha256}), ``counts`` (JSON), ``ingest`` (JSON parameters as used) and
  ``tail_coverage`` (fraction of the frames that should have tail samples that do; below
  ``data.min_tail_coverage`` a WARNING names the tail file). Layouts add their own attrs
  (``source_format``, ``signal_kind``, ...).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from nlp4neuro.config import build
from nlp4neuro.provenance import json_default, sha256_file

logger = logging.getLogger(__name__)

# The paper's tail recording (and the simulator's) ends 2 imaging frames before the neural one;
# those 2 frames never count against the tail coverage.
TRAILING_FRAMES_WITHOUT_TAIL = 2


@dataclass(frozen=True)
class IngestParams:
    """How a fish's files are read: the validated ``data`` config section (see the schema)."""

    pixel_size_um: float
    plane_spacing_um: float
    frame_rate_hz: float | None
    use_iscell: bool
    iscell_threshold: float
    tail_file: str
    labels_file: str | None
    stimulus_file: str | None
    functional_types_file: str | None
    min_tail_coverage: float
    nwb: Mapping[str, Any]

    @classmethod
    def from_config(cls, data: Mapping[str, Any]) -> IngestParams:
        """Build from the validated ``data`` section; keys not read here are ignored."""
        return build(cls, data, "data")


@dataclass
class Neurons:
    """Coordinates of the neurons, each (n_neurons,).

    plane, roi: int64 plane index and row in the plane's source arrays (-1 where unknown);
    x_um, y_um, z_um: float64 micrometres (NaN where unknown); region: str ("" unknown);
    time_offset_s: float64 acquisition delay of the neuron's plane within a volume, seconds.
    """

    plane: np.ndarray
    roi: np.ndarray
    x_um: np.ndarray
    y_um: np.ndarray
    z_um: np.ndarray
    region: np.ndarray
    time_offset_s: np.ndarray


@dataclass
class PerFrameTail:
    """Tail angles averaged per imaging frame (see `nlp4neuro.ingest.tail.tail_per_frame`).

    frames: int64 (n,) imaging frames with tail samples; angles: float32 (n, n_segments) rad;
    segments: the angle names theta_00..; counts: what was dropped and why; source: the file.
    """

    frames: np.ndarray
    angles: np.ndarray
    segments: Sequence[str]
    counts: dict[str, Any]
    source: Path


def tail_coverage(n_frames_with_tail: int, n_frames: int) -> float:
    """Fraction (0..1) of frames 0..T-3 that have tail samples (the last 2 never do)."""
    expected = max(n_frames - TRAILING_FRAMES_WITHOUT_TAIL, 1)
    return min(1.0, n_frames_with_tail / expected)


def check_tail_coverage(tail: PerFrameTail, n_frames: int, min_coverage: float) -> float:
    """The tail coverage; a WARNING naming the file when it is below `min_coverage`."""
    coverage = tail_coverage(int(tail.frames.size), n_frames)
    if coverage < min_coverage:
        logger.warning(
            "%s: the tail covers only %.1f%% of the %d imaging frames that should have tail "
            "samples (%d frames with tail; data.min_tail_coverage = %g): frames without tail "
            "are excluded from decoding",
            tail.source,
            100 * coverage,
            max(n_frames - TRAILING_FRAMES_WITHOUT_TAIL, 1),
            int(tail.frames.size),
            min_coverage,
        )
    return coverage


def ingested_dataset(
    *,
    F: np.ndarray,
    Fneu: np.ndarray | None,
    neurons: Neurons,
    tail: PerFrameTail,
    stimulus: np.ndarray,
    attrs: Mapping[str, Any],
    f_attrs: Mapping[str, Any],
    min_tail_coverage: float,
) -> xr.Dataset:
    """The ingested dataset (module docstring) from one layout's arrays.

    F, Fneu: (n_neurons, n_frames); stimulus: str (n_frames,). Mapping-valued attrs are stored
    as JSON text; ``tail_coverage`` is added to the attrs and to ``counts``.
    """
    n_neurons, n_frames = F.shape
    coverage = check_tail_coverage(tail, n_frames, min_tail_coverage)
    attrs = dict(attrs)
    attrs["counts"] = {**attrs.get("counts", {}), "tail_coverage": coverage}
    attrs["tail_coverage"] = coverage
    data_vars: dict[str, Any] = {
        "F": (("neuron", "frame"), F.astype(np.float32, copy=False), dict(f_attrs)),
        "tail": (
            ("tail_frame", "segment"),
            tail.angles.astype(np.float32, copy=False),
            {"units": "rad", "long_name": "per-frame mean tail segment angle"},
        ),
    }
    if Fneu is not None:
        data_vars["Fneu"] = (("neuron", "frame"), Fneu.astype(np.float32, copy=False), {})
    coords = {
        **_neuron_coords(neurons, n_neurons),
        "frame": np.arange(n_frames, dtype=np.int64),
        "stimulus": ("frame", np.asarray(stimulus, dtype=object)),
        "tail_frame": np.asarray(tail.frames, dtype=np.int64),
        "segment": np.asarray(list(tail.segments), dtype=object),
    }
    out_attrs = {
        key: (json.dumps(v, sort_keys=True, default=json_default) if isinstance(v, Mapping) else v)
        for key, v in attrs.items()
    }
    return xr.Dataset(data_vars, coords=coords, attrs=out_attrs)


def _neuron_coords(neurons: Neurons, n_neurons: int) -> dict[str, Any]:
    float_um = {"units": "um"}
    return {
        "neuron": np.arange(n_neurons, dtype=np.int64),
        "plane": ("neuron", np.asarray(neurons.plane, dtype=np.int64)),
        "roi": ("neuron", np.asarray(neurons.roi, dtype=np.int64)),
        "x_um": ("neuron", np.asarray(neurons.x_um, dtype=np.float64), float_um),
        "y_um": ("neuron", np.asarray(neurons.y_um, dtype=np.float64), float_um),
        "z_um": ("neuron", np.asarray(neurons.z_um, dtype=np.float64), float_um),
        "region": ("neuron", np.asarray(neurons.region, dtype=object)),
        "time_offset_s": (
            "neuron",
            np.asarray(neurons.time_offset_s, dtype=np.float64),
            {"units": "s"},
        ),
    }


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


def log_counts(fish: str, counts: Mapping[str, Any]) -> None:
    """One INFO line per count, for the rule's log."""
    for key, value in counts.items():
        logger.info("fish %s: %s = %s", fish, key, value)
