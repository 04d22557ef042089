"""The paper's region table ``functional_types_df.h5`` (fish 11-13), read by two layouts.

The file is a pandas HDFStore whose table has one row per neuron; the row index is the GLOBAL
neuron index: every ROI of every plane, planes concatenated in plane order, before any is-cell
filtering. Columns: ``neur_coords`` ([x, y] pixel centroid), ``plane`` (string), ``region``
("Pt", "Hb" or missing), plus functional columns (``visual_barcode``, ``motor_corr``, ...).

The prepared layout (:mod:`nlp4neuro.ingest.prepared`) takes positions and regions from it; the
suite2p layout (:mod:`nlp4neuro.ingest.suite2p`) joins its regions onto the ROIs it read
(:func:`regions_for_rois`). It lives in its own module because both layouts need it.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from nlp4neuro.errors import InputFileError

logger = logging.getLogger(__name__)

_TRAILING_INT = re.compile(r"(\d+)\s*$")
_HDF_READ_ERRORS = (OSError, ValueError, RuntimeError, KeyError, TypeError)


def plane_number(value: Any) -> int:
    """Plane index from 3, 3.0, "3", "plane_3" or "plane3"; -1 where it cannot be read."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return -1
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return int(value)
    match = _TRAILING_INT.search(str(value))
    return int(match.group(1)) if match else -1


def _read_hdf_table(path: Path, key: str | None) -> pd.DataFrame:
    """The table under `key` (None: the store's only key), opened read-only."""
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
    except _HDF_READ_ERRORS as err:
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
    return table


def _neuron_index(table: pd.DataFrame, path: Path) -> np.ndarray:
    """int64 (n,) row index: the unique, non-negative global neuron indices."""
    try:
        neuron = np.asarray(table.index, dtype=np.int64)
    except (TypeError, ValueError) as err:
        raise InputFileError(path, "an integer row index (global neuron index)", str(err)) from err
    if (neuron < 0).any():
        raise InputFileError(
            path, "non-negative neuron indices", f"row index {int(neuron[neuron < 0][0])}"
        )
    duplicated = pd.Index(neuron).duplicated()
    if duplicated.any():
        raise InputFileError(
            path, "unique neuron indices", f"row index {int(neuron[duplicated][0])} twice"
        )
    return neuron


def _coordinates(table: pd.DataFrame, neuron: np.ndarray, path: Path) -> np.ndarray:
    """float64 (n, 2) [x, y] pixels from ``neur_coords``; NaN where missing."""
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
    return xy


def _planes(table: pd.DataFrame, neuron: np.ndarray, path: Path) -> np.ndarray:
    """int64 (n,) plane index of every row."""
    plane = np.array([plane_number(v) for v in table["plane"].to_numpy()], dtype=np.int64)
    if (plane < 0).any():
        row = int(np.flatnonzero(plane < 0)[0])
        raise InputFileError(
            path,
            "a plane number in every row ('3' or 'plane_3')",
            f"{table['plane'].iloc[row]!r} at neuron {neuron[row]}",
        )
    return plane


def _regions(table: pd.DataFrame) -> np.ndarray:
    """str (n,) object array of region labels, "" where missing."""
    if "region" not in table.columns:
        return np.full(len(table), "", dtype=object)
    region = np.array(
        [
            "" if v is None or (not isinstance(v, str) and pd.isna(v)) else str(v).strip()
            for v in table["region"].to_numpy(dtype=object)
        ],
        dtype=object,
    )
    region[region == "nan"] = ""
    return region


def read_functional_types(path: str | Path, key: str | None = None) -> pd.DataFrame:
    """Read the paper's ``functional_types_df.h5`` into a tidy neuron table.

    Args:
        path: the .h5 file.
        key: HDF5 key of the table; None takes the store's only key.

    Returns:
        DataFrame indexed by ``neuron`` (int64 global index, sorted) with ``plane`` (int64),
        ``x_px``, ``y_px`` (float64 pixels; NaN where missing) and ``region`` (str, "" where
        missing), followed by every other column of the file unchanged.

    Raises:
        InputFileError: unreadable file, several keys without `key`, missing columns, a
        malformed coordinate or plane, or a duplicated / negative neuron index (named).
    """
    path = Path(path)
    table = _read_hdf_table(path, key)
    neuron = _neuron_index(table, path)
    xy = _coordinates(table, neuron, path)
    out = pd.DataFrame(
        {
            "plane": _planes(table, neuron, path),
            "x_px": xy[:, 0],
            "y_px": xy[:, 1],
            "region": _regions(table),
        },
        index=pd.Index(neuron, name="neuron"),
    )
    others = table.drop(columns=[c for c in ("neur_coords", "plane", "region") if c in table])
    others.index = out.index
    return pd.concat([out, others], axis=1).sort_index()


def _sizes_from_table(neuron: np.ndarray, plane: np.ndarray, source: str | Path) -> np.ndarray:
    """ROIs per plane when the table covers every neuron 0..N-1 with planes in order."""
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
    return np.bincount(plane)


def labels_from_functional_types(
    table: pd.DataFrame, plane_sizes: Sequence[int] | None = None, *, source: str | Path = ""
) -> pd.DataFrame:
    """(plane, roi, region) rows: the global neuron index g of plane p is ROI g - offset[p].

    Args:
        table: from :func:`read_functional_types` (index = global neuron index).
        plane_sizes: ROIs per plane (plane 0 first); None infers them from the table, which then
            must cover every neuron 0..N-1 with planes in non-decreasing order.
        source: file named in errors.

    Returns:
        DataFrame with int64 ``plane``, ``roi`` and str ``region`` ("" where unknown), one row per
        table row (sorted by neuron); write it with ``to_csv(path, sep="\\t", index=False)``.
    """
    neuron = np.asarray(table.index, dtype=np.int64)
    plane = table["plane"].to_numpy(dtype=np.int64)
    order = np.argsort(neuron, kind="stable")
    neuron, plane = neuron[order], plane[order]
    region = table["region"].to_numpy(dtype=object)[order]
    if plane_sizes is None:
        sizes = _sizes_from_table(neuron, plane, source)
    else:
        sizes = np.asarray(plane_sizes, dtype=np.int64)
        if plane.max() >= sizes.size:
            row = int(np.argmax(plane))
            raise InputFileError(
                source,
                f"planes 0..{sizes.size - 1} (plane_sizes)",
                f"plane index {plane[row]} at neuron {neuron[row]}",
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


def _check_planes_agree(table: pd.DataFrame, sizes: np.ndarray, path: Path) -> int:
    """How many rows name another plane than their index falls in (a WARNING when any)."""
    neuron = table.index.to_numpy()
    index_plane = np.searchsorted(np.cumsum(sizes), neuron, side="right")
    disagree = np.flatnonzero(index_plane != table["plane"].to_numpy())
    if disagree.size:
        i = int(disagree[0])
        logger.warning(
            "%s: %d rows name another plane than their global index falls in (first: row "
            "index %d says plane %d, the index is in plane %d); regions are joined by index",
            path,
            disagree.size,
            int(neuron[i]),
            int(table["plane"].iloc[i]),
            int(index_plane[i]),
        )
    return int(disagree.size)


def regions_for_rois(
    path: str | Path, plane: np.ndarray, roi: np.ndarray, plane_sizes: Sequence[int]
) -> tuple[np.ndarray, dict[str, Any]]:
    """Region of each ROI from the table, joined on the global neuron index.

    Args:
        path: the functional_types_df.h5 file.
        plane, roi: int (n_neurons,) plane index and row of each neuron in its plane's suite2p
            arrays (before any is-cell filtering).
        plane_sizes: number of ROIs of every plane (all of them, filtered or not), plane 0 first.

    Returns:
        region: str (n_neurons,), "" where the table has no region; counts for the log.

    Raises:
        InputFileError: a row index beyond the ROIs of all planes (the index is named).
    """
    path = Path(path)
    table = read_functional_types(path)
    sizes = np.asarray(plane_sizes, dtype=np.int64)
    n_rois = int(sizes.sum())
    neuron = table.index.to_numpy()
    if neuron.size and neuron.max() >= n_rois:
        raise InputFileError(
            path,
            f"row indices 0..{n_rois - 1} (global neuron index over the {n_rois} ROIs of "
            f"{sizes.size} planes, concatenated in plane order)",
            f"row index {int(neuron.max())}",
        )
    by_index = np.full(n_rois, "", dtype=object)
    by_index[neuron] = table["region"].to_numpy(dtype=object)
    offset = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    region = by_index[offset[np.asarray(plane)] + np.asarray(roi)].astype(str)
    counts = {
        "n_functional_types_rows": len(table),
        "n_functional_types_plane_disagreements": _check_planes_agree(table, sizes, path),
        "n_neurons_labelled": int(np.count_nonzero(region != "")),
    }
    return region, counts
