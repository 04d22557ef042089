"""Saliency figures: brain maps, left- vs right-turn maps, region importance, deletion curves.

Every function draws on a standalone `matplotlib.figure.Figure` (Agg canvas, no pyplot state) and
writes `<out_stem>.png` (200 dpi) and `<out_stem>.svg` atomically, returning the written paths.
Neuron positions are the dataset's (x_um, y_um, z_um) coords; y and z grow downwards as in the
imaging frame. Colour scales of importance maps stop at the 99.5th percentile (attribution maps
are heavy-tailed: a few neurons would otherwise wash the rest out); the colour bar says so.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from nlp4neuro.metrics import top_k_indices
from nlp4neuro.plots import save_figure

logger = logging.getLogger(__name__)

_TOP_COLOUR = "#56B4E9"  # sky blue outline, visible on the magma colour map
_FISH_COLOURS = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#999999")
_CLIP_PERCENTILE = 99.5


def _natural(name: str) -> tuple[int, int, str]:
    """Sort key putting numeric names in numeric order ("9" before "10")."""
    return (0, int(name), "") if name.isdigit() else (1, 0, name)


def _positions(ds: xr.Dataset | xr.DataArray) -> dict[str, np.ndarray]:
    missing = [c for c in ("x_um", "y_um") if c not in ds.coords]
    if missing:
        raise ValueError(
            f"importance dataset: expected neuron coords x_um, y_um; missing {missing}"
        )
    n = ds.sizes["neuron"]
    out = {c: np.asarray(ds[c].values, dtype=np.float64) for c in ("x_um", "y_um")}
    out["z_um"] = (
        np.asarray(ds["z_um"].values, dtype=np.float64) if "z_um" in ds.coords else np.zeros(n)
    )
    out["plane"] = np.asarray(ds["plane"].values) if "plane" in ds.coords else np.zeros(n, int)
    return out


def _marker_size(n: int) -> float:
    # ~12k neurons need tiny dots; a handful of neurons can be large
    return float(np.clip(3e3 / max(n, 1), 0.5, 30.0))


def _vmax(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return 1.0
    top = float(np.percentile(np.abs(finite), _CLIP_PERCENTILE))
    return top if top > 0 else 1.0


def _scatter_map(
    ax: Axes,
    x: np.ndarray,
    y: np.ndarray,
    values: np.ndarray,
    *,
    vmin: float,
    vmax: float,
    cmap: str,
    size: float,
    top: np.ndarray | None = None,
) -> Any:
    """Neurons coloured by value, largest |value| drawn last (on top): a max projection."""
    order = np.argsort(np.abs(values), kind="stable")
    artist = ax.scatter(
        x[order],
        y[order],
        c=values[order],
        s=size,
        cmap=cmap,
        vmin=vmin,
        vmax=vmax,
        linewidths=0,
        rasterized=True,
    )
    if top is not None and top.size:
        ax.scatter(
            x[top],
            y[top],
            s=size * 4 + 6,
            facecolors="none",
            edgecolors=_TOP_COLOUR,
            linewidths=0.6,
        )
    ax.set_aspect("equal")
    if not ax.yaxis_inverted():  # imshow backgrounds already point y downwards
        ax.invert_yaxis()
    return artist


def _label(ax: Axes, title: str, ylabel: str = "y (µm)") -> None:
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("x (µm)")
    ax.set_ylabel(ylabel)


def plot_brain_map(
    importance_ds: xr.Dataset,
    out_stem: str | Path,
    target: str,
    top_k: int,
    backgrounds: Mapping[int, np.ndarray] | None = None,
    background_pixel_um: float = 1.0,
    cmap: str = "magma",
) -> list[Path]:
    """Per-neuron importance at each neuron's position: one panel per plane plus projections.

    Args:
        importance_ds: output of `nlp4neuro.saliency.attribute` (``importance`` (target,
            neuron) with coords x_um, y_um and ideally plane, z_um).
        out_stem: output path without suffix.
        target: which target's map to draw (e.g. "summed").
        top_k: the k most important neurons are outlined (0 for none).
        backgrounds: optional {plane: 2-D image} (e.g. suite2p mean images) drawn in grey
            under that plane's neurons, pixel (row, col) at (y, x) = (row, col) *
            `background_pixel_um`.
        background_pixel_um: um per background pixel (0.6 for the paper's data).
        cmap: colour map of importance.

    Returns:
        [png, svg] paths. Panels: each plane (x-y), the x-y max projection over planes and the
        x-z projection.
    """
    if "importance" not in importance_ds:
        raise ValueError("importance_ds: expected an 'importance' variable (target, neuron)")
    targets = list(importance_ds["target"].values.astype(str))
    if target not in targets:
        raise ValueError(f"target: expected one of {targets}, found {target!r}")
    values = np.asarray(importance_ds["importance"].sel(target=target).values, dtype=np.float64)
    pos = _positions(importance_ds)
    planes = np.unique(pos["plane"])
    top = top_k_indices(values, max(0, min(int(top_k), values.size)))
    style = {"vmin": 0, "vmax": _vmax(values), "cmap": cmap, "size": _marker_size(values.size)}

    n_panels = planes.size + 2
    n_cols = min(4, n_panels)
    n_rows = -(-n_panels // n_cols)
    fig = Figure(figsize=(3.2 * n_cols + 0.8, 3.0 * n_rows), layout="constrained")
    axes = fig.subplots(n_rows, n_cols, squeeze=False).ravel()
    for ax, plane in zip(axes, planes, strict=False):
        keep = pos["plane"] == plane
        if backgrounds is not None and plane in backgrounds:
            _background(ax, backgrounds[plane], background_pixel_um)
        in_top = np.flatnonzero(np.isin(np.flatnonzero(keep), top))
        _scatter_map(ax, pos["x_um"][keep], pos["y_um"][keep], values[keep], top=in_top, **style)
        _label(ax, f"plane {plane} ({keep.sum()} neurons)")
    artist = _projections(axes[planes.size], axes[planes.size + 1], pos, values, top, style)
    for ax in axes[n_panels:]:
        ax.set_axis_off()
    bar = fig.colorbar(artist, ax=list(axes[:n_panels]), shrink=0.8)
    bar.set_label(f"importance ({target}; scale clipped at {_CLIP_PERCENTILE:g}th pct)")
    method = importance_ds.attrs.get("method", "")
    outline = f", top {len(top)} outlined" if len(top) else ""
    fig.suptitle(f"{method} importance, target {target}{outline}", fontsize=10)
    return save_figure(fig, out_stem)


def _background(ax: Axes, image: np.ndarray, pixel_um: float) -> None:
    """A grey image under a plane's neurons, pixel centres at (col, row) * `pixel_um` (um)."""
    image = np.asarray(image, dtype=np.float64)
    h, w = image.shape[:2]
    half = 0.5 * pixel_um
    extent = (-half, w * pixel_um - half, h * pixel_um - half, -half)
    ax.imshow(image, cmap="gray", extent=extent, interpolation="nearest")


def _projections(
    ax_xy: Axes,
    ax_xz: Axes,
    pos: Mapping[str, np.ndarray],
    values: np.ndarray,
    top: np.ndarray,
    style: Mapping[str, Any],
) -> Any:
    """x-y and x-z max projections of all neurons; returns the x-y artist (for a colour bar)."""
    artist = _scatter_map(ax_xy, pos["x_um"], pos["y_um"], values, top=top, **style)
    _label(ax_xy, "max projection (x-y)")
    _scatter_map(ax_xz, pos["x_um"], pos["z_um"], values, top=top, **style)
    ax_xz.set_aspect("auto")
    _label(ax_xz, "max projection (x-z)", "z (µm)")
    return artist


def plot_turn_maps(
    importance_ds: xr.Dataset,
    tail: Any,
    out_stem: str | Path,
    threshold_rad: float = 0.1,
    left_is_positive: bool = True,
    cmap: str = "magma",
) -> list[Path]:
    """Importance maps for left-turn vs right-turn frames, and their difference.

    Frames are classified by the TRUE summed tail angle (sum over segments, radians): left when
    it exceeds +`threshold_rad` (or falls below -threshold with `left_is_positive=False`), right
    for the opposite sign; frames in between are not used. Each map is the mean of the per-frame
    importance (``frame_importance``, summed target) over that class's frames, drawn as an x-y
    max projection; the third panel is left minus right on a symmetric diverging scale.

    Args:
        importance_ds: `attribute` output with ``frame_importance`` (time, neuron).
        tail: (T_covered,) summed tail or (T_covered, K) tail angles, aligned with
            ``frame_importance``'s time axis (e.g. ``tail[ds.frame_index]``).
        out_stem: output path without suffix.
        threshold_rad: |summed tail| needed to count as a turn (radians).
        left_is_positive: sign convention of the tail angles.
        cmap: colour map of the two class maps.

    Returns:
        [png, svg] paths.
    """
    if "frame_importance" not in importance_ds:
        raise ValueError("importance_ds: expected 'frame_importance' (attribute(keep_frames=True))")
    frames = np.asarray(importance_ds["frame_importance"].transpose("time", "neuron").values)
    maps, counts = _turn_maps(frames, tail, threshold_rad, left_is_positive)
    pos = _positions(importance_ds)
    size = _marker_size(frames.shape[1])
    both = np.concatenate([maps["left"], maps["right"]])
    vmax = _vmax(both)
    # signed per-frame maps (attribute(absolute=False)) need a diverging scale around 0
    signed = bool(np.nanmin(both, initial=0.0) < 0)
    vmin, class_cmap = (-vmax, "RdBu_r") if signed else (0.0, cmap)

    fig = Figure(figsize=(11.5, 3.6), layout="constrained")
    axes = fig.subplots(1, 3)
    for ax, name in zip(axes[:2], ("left", "right"), strict=True):
        artist = _scatter_map(
            ax, pos["x_um"], pos["y_um"], np.nan_to_num(maps[name]),
            vmin=vmin, vmax=vmax, cmap=class_cmap, size=size,
        )  # fmt: skip
        _label(ax, f"{name} turns ({counts[name]} frames)")
        if counts[name] == 0:
            ax.text(0.5, 0.5, "no frames", transform=ax.transAxes, ha="center", va="center")
    fig.colorbar(artist, ax=list(axes[:2]), shrink=0.8).set_label("mean frame importance")
    difference = maps["left"] - maps["right"]
    dmax = _vmax(difference)
    diff_artist = _scatter_map(
        axes[2], pos["x_um"], pos["y_um"], np.nan_to_num(difference),
        vmin=-dmax, vmax=dmax, cmap="RdBu_r", size=size,
    )  # fmt: skip
    _label(axes[2], "left − right")
    fig.colorbar(diff_artist, ax=axes[2], shrink=0.8).set_label("importance difference")
    fig.suptitle(f"turn-specific importance (|summed tail| > {threshold_rad:g} rad)", fontsize=10)
    return save_figure(fig, out_stem)


def _turn_maps(
    frames: np.ndarray, tail: Any, threshold_rad: float, left_is_positive: bool
) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """Mean per-frame importance (N,) of left- and right-turn frames (NaN if none), and counts.

    `frames` (T, N); `tail` (T,) summed tail or (T, K) angles in radians.
    """
    summed = np.asarray(tail, dtype=np.float64)
    if summed.ndim == 2:
        summed = summed.sum(axis=1)
    if summed.shape != (frames.shape[0],):
        raise ValueError(
            f"tail: expected {frames.shape[0]} frames aligned with frame_importance, found "
            f"shape {np.shape(tail)}"
        )
    sign = 1.0 if left_is_positive else -1.0
    classes = {"left": sign * summed > threshold_rad, "right": sign * summed < -threshold_rad}
    maps = {
        name: frames[chosen].mean(axis=0) if chosen.any() else np.full(frames.shape[1], np.nan)
        for name, chosen in classes.items()
    }
    return maps, {name: int(chosen.sum()) for name, chosen in classes.items()}


def plot_region_importance(
    tables: Mapping[str, pd.DataFrame],
    out_stem: str | Path,
    value: str = "mean",
    max_regions: int = 30,
) -> list[Path]:
    """Importance per region with one dot per fish and the across-fish mean ± SEM.

    Args:
        tables: {fish: `nlp4neuro.anatomy.region_importance` table}.
        out_stem: output path without suffix.
        value: column plotted (e.g. "mean" or "median" per-neuron importance).
        max_regions: regions shown, those with the highest across-fish mean first.

    Returns:
        [png, svg] paths. The error bar is the SEM across fish (the unit of replication), only
        for regions present in at least 2 fish.
    """
    data = _long_region_table(tables, value)
    summary = data.groupby("region")["value"].agg(["mean", "sem", "count"])
    summary = summary.sort_values("mean", ascending=False).head(max_regions)
    order = list(summary.index)

    fig = Figure(figsize=(max(4.0, 0.45 * len(order) + 2.0), 3.8), layout="constrained")
    ax = fig.subplots()
    _fish_dots(ax, data[data.region.isin(order)], {region: i for i, region in enumerate(order)})
    err = np.where(summary["count"] >= 2, summary["sem"], np.nan)
    ax.errorbar(
        np.arange(len(order)),
        summary["mean"],
        yerr=err,
        fmt="_",
        color="black",
        markersize=14,
        capsize=3,
        zorder=4,
        label="mean ± SEM over fish",
    )
    ax.set_xticks(np.arange(len(order)), order, rotation=60, ha="right")
    ax.set_ylabel(f"{value} importance per neuron")
    ax.set_xlabel("region")
    ax.legend(fontsize=7, frameon=False, loc="best")
    ax.set_title(f"region importance ({data.fish.nunique()} fish)", fontsize=10)
    return save_figure(fig, out_stem)


def _long_region_table(tables: Mapping[str, pd.DataFrame], value: str) -> pd.DataFrame:
    """One row per fish and region: columns fish, region, value (the `value` column)."""
    if not tables:
        raise ValueError("tables: expected at least one fish's region table, found none")
    long = []
    for fish, table in tables.items():
        if not {"region", value} <= set(table.columns):
            raise ValueError(f"tables[{fish!r}]: expected columns region, {value}")
        long.append(
            pd.DataFrame(
                {
                    "fish": str(fish),
                    "region": table["region"].astype(str),
                    "value": table[value].astype(float),
                }
            )
        )
    return pd.concat(long, ignore_index=True)


def _fish_dots(ax: Axes, shown: pd.DataFrame, x_of: Mapping[str, int]) -> None:
    """One jittered dot per fish and region, a colour per fish (fish in natural order)."""
    rng = np.random.default_rng(0)  # jitter only; fixed so figures are reproducible
    fish_order = sorted(shown["fish"].unique(), key=_natural)
    for i, fish in enumerate(fish_order):
        rows = shown[shown["fish"] == fish]
        x = rows["region"].map(x_of).to_numpy(float) + rng.uniform(-0.15, 0.15, len(rows))
        ax.scatter(
            x,
            rows["value"],
            s=18,
            color=_FISH_COLOURS[i % len(_FISH_COLOURS)],
            label=f"fish {fish}",
            zorder=3,
            alpha=0.85,
        )


def plot_deletion_curves(
    df: pd.DataFrame, out_stem: str | Path, group: str | None = None
) -> list[Path]:
    """Decoding RMSE vs number of masked neurons: top-k salient vs random (mean ± sd).

    Args:
        df: `nlp4neuro.saliency.deletion_curve` output (k, condition, rmse_mean, rmse_sd), maybe
            several concatenated with a `group` column (e.g. "fish" or "model").
        out_stem: output path without suffix.
        group: column separating curves (one colour each); None for a single curve pair.

    Returns:
        [png, svg] paths. Solid line: top-k; dashed line and band: random k (mean ± sd).
    """
    needed = {"k", "condition", "rmse_mean", "rmse_sd"} | ({group} if group else set())
    if not needed <= set(df.columns):
        raise ValueError(f"df: expected columns {sorted(needed)}, found {list(df.columns)}")
    groups: Sequence[tuple[str, pd.DataFrame]] = (
        sorted(
            ((str(g), rows) for g, rows in df.groupby(group)), key=lambda item: _natural(item[0])
        )
        if group
        else [("", df)]
    )
    fig = Figure(figsize=(4.8, 3.6), layout="constrained")
    ax = fig.subplots()
    for i, (name, rows) in enumerate(groups):
        colour = _FISH_COLOURS[i % len(_FISH_COLOURS)]
        prefix = f"{name}: " if name else ""
        top = rows[rows.condition == "top"].sort_values("k")
        rand = rows[rows.condition == "random"].sort_values("k")
        ax.plot(
            top["k"],
            top["rmse_mean"],
            "-o",
            color=colour,
            markersize=3,
            label=f"{prefix}top-k salient",
        )
        ax.plot(rand["k"], rand["rmse_mean"], "--", color=colour, label=f"{prefix}random k")
        ax.fill_between(
            rand["k"],
            rand["rmse_mean"] - rand["rmse_sd"],
            rand["rmse_mean"] + rand["rmse_sd"],
            color=colour,
            alpha=0.2,
            linewidth=0,
        )
    ax.set_xlabel("neurons masked (k)")
    ax.set_ylabel("test RMSE (rad)")
    ax.legend(fontsize=7, frameon=False)
    ax.set_title("deletion curve (masked = training mean)", fontsize=10)
    return save_figure(fig, out_stem)
