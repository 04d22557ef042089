"""Evaluation figures: model comparison, predicted vs true tail, training curves, window sweep.

Every function draws on a standalone `matplotlib.figure.Figure` (Agg canvas, no pyplot state, so
it is safe in any process) and writes `<out_stem>.png` (raster, 200 dpi) and `<out_stem>.svg`
(vector) atomically, returning the two paths. Colours come from the Okabe-Ito palette, which stays
distinguishable under the common colour-vision deficiencies. Angles are in radians, time in
seconds.
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
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from nlp4neuro.errors import ConfigError, InputFileError
from nlp4neuro.metrics import table_frame_rate_hz
from nlp4neuro.plots import save_figure

logger = logging.getLogger(__name__)

OKABE_ITO: tuple[str, ...] = (
    "#0072B2",  # blue
    "#E69F00",  # orange
    "#009E73",  # bluish green
    "#CC79A7",  # reddish purple
    "#56B4E9",  # sky blue
    "#D55E00",  # vermillion
    "#999999",  # grey (instead of yellow, which vanishes on white)
    "#F0E442",  # yellow
)
"""Colour-blind-safe palette (Okabe & Ito 2008), cycled for models, fish and stimuli."""

_METRIC_LABELS = {
    "rmse": "RMSE (rad)",
    "mae": "MAE (rad)",
    "r2": "R² (test mean as reference)",
    "pearson_r": "Pearson r",
}
_SEGMENT_LABELS = {"pooled": "all segments", "summed": "summed tail angle"}


def _colour(index: int) -> str:
    return OKABE_ITO[index % len(OKABE_ITO)]


def metric_label(metric: str) -> str:
    """Axis label with units for a metric name of `nlp4neuro.metrics` (incl. skill metrics)."""
    if metric in _METRIC_LABELS:
        return _METRIC_LABELS[metric]
    if "_skill_vs_" in metric:
        error, reference = metric.split("_skill_vs_", 1)
        return f"{error.upper()} skill vs {reference} (1 - {error.upper()}/{error.upper()}_ref)"
    return metric


def _segment_label(segment: str) -> str:
    return _SEGMENT_LABELS.get(segment, segment)


def _select(summary: pd.DataFrame, metric: str, segment: str) -> pd.DataFrame:
    required = ["model", "fish", "window_frames", "metric", "segment", "value"]
    missing = [c for c in required if c not in summary.columns]
    if missing:
        raise InputFileError(
            "<summary table>", f"columns {required}", f"{list(summary.columns)} (missing {missing})"
        )
    rows = summary[(summary["metric"] == metric) & (summary["segment"] == segment)]
    if rows.empty:
        raise ConfigError(
            "metric/segment",
            f"a metric in {sorted(summary['metric'].unique())} and a segment in "
            f"{sorted(summary['segment'].unique())}",
            (metric, segment),
        )
    return rows


def _window_title(window: int, frame_rate_hz: float) -> str:
    if np.isfinite(frame_rate_hz):
        return f"window {window} frames ({window / frame_rate_hz:.1f} s)"
    return f"window {window} frames"


def _model_order(rows: pd.DataFrame, stats: pd.DataFrame | None) -> list[str]:
    """Models in the order the comparisons name them (twins side by side), then the rest."""
    order: list[str] = []
    if stats is not None and not stats.empty:
        for a, b in zip(stats["model_a"], stats["model_b"], strict=True):
            order.extend(m for m in (a, b) if m not in order)
    present = list(dict.fromkeys(rows["model"]))
    return [m for m in order if m in present] + [m for m in present if m not in order]


def _format_p(p: float) -> str:
    return "p<0.001" if p < 0.001 else f"p={p:.3f}"


def _annotation(row: pd.Series) -> str:
    """The tests that the statistics table gives a (Holm-corrected) p-value, Cohen's dz beside
    them, and the fish count.

    A test the table leaves without a p-value (too few fish, identical differences) is not
    named: the figure draws no p-value where no test was possible, and says how many fish a test
    needs where the table has fewer (`t_min_fish`).
    """
    n_fish = f"(n={int(row['n_fish'])} fish)"
    tests = [
        f"{name} {_format_p(row[column])}"
        for name, column in (("paired t", "t_p_holm"), ("Wilcoxon", "wilcoxon_p_holm"))
        if np.isfinite(row[column])
    ]
    if not tests:
        return f"{_no_test(row)} {n_fish}"
    dz = float(row.get("cohens_dz", np.nan))
    effect = f"dz={dz:.2f} " if np.isfinite(dz) else ""
    return "\n".join(tests) + f"\n{effect}{n_fish}"


def _no_test(row: pd.Series) -> str:
    """'no test', with the paired t-test's minimum number of fish where the row has fewer."""
    needed = float(row.get("t_min_fish", np.nan))
    if np.isfinite(needed) and row["n_fish"] < needed:
        return f"no test: needs ≥ {int(needed)} fish"
    return "no test"


def plot_model_comparison(
    summary: pd.DataFrame,
    stats: pd.DataFrame | None,
    out_stem: str | Path,
    metric: str = "rmse",
    segment: str = "pooled",
) -> list[Path]:
    """Per-model error at fish level (paper Fig. 2a/2b, but one dot per fish, not per run).

    One panel per window size. Each fish is one colour; a thin line joins the same fish across
    models, so paired differences are visible. Black bars: mean +- s.e.m. over fish. Brackets
    above pretrained-vs-untrained pairs give the Holm-corrected paired t-test and Wilcoxon
    p-values with Cohen's dz where the statistics table has them, and "no test" where it has
    none ("no test: needs ≥ 3 fish" where there were too few fish for any test).

    Args:
        summary: `nlp4neuro.metrics.summarise` output (folds, then seeds, averaged within fish).
        stats: `nlp4neuro.statistics.paired_comparisons` output for the same metric/segment, or
            None for no annotations.
        out_stem: output path without suffix; `.png` and `.svg` are written.
        metric, segment: which rows of `summary` to plot.

    Returns:
        The written paths [png, svg].
    """
    rows = _select(summary, metric, segment)
    stats_rows = None
    if stats is not None and not stats.empty:
        stats_rows = stats[(stats["metric"] == metric) & (stats["segment"] == segment)]
    models = _model_order(rows, stats_rows)
    windows = sorted(rows["window_frames"].unique())
    fish_ids = sorted(rows["fish"].unique())
    frame_rate_hz = table_frame_rate_hz(rows)
    low, high, step = _value_range(rows)
    fig = Figure(figsize=(1.5 + 1.2 * len(models) * len(windows), 4.6), layout="constrained")
    axes = fig.subplots(1, len(windows), sharey=True, squeeze=False)[0]
    top = high + step * 0.5
    for ax, window in zip(axes, windows, strict=True):
        _draw_fish_panel(ax, rows[rows["window_frames"] == window], models, fish_ids)
        ax.set_title(_window_title(int(window), frame_rate_hz), fontsize=10)
        if stats_rows is not None:
            pairs = stats_rows[stats_rows["window_frames"] == window]
            top = max(top, _annotate_pairs(ax, pairs, models, high + step * 0.5, step))
    axes[0].set_ylim(low - step * 0.5, top)
    axes[0].set_ylabel(f"{metric_label(metric)}, {_segment_label(segment)}")
    _comparison_legend(fig, axes[0], stats_rows)
    return save_figure(fig, out_stem)


def _value_range(rows: pd.DataFrame) -> tuple[float, float, float]:
    """(lowest, highest finite value, bracket step) in data units; (0, 1) if none is finite."""
    finite = rows["value"].to_numpy(dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    # Vertical unit for brackets: a fraction of the data range (or of the value if all equal).
    return low, high, 0.12 * ((high - low) or abs(high) or 1.0)


def _draw_fish_panel(ax: Axes, rows: pd.DataFrame, models: list[str], fish_ids: list[Any]) -> None:
    """One window's panel: a dot per fish and model, lines joining a fish, mean +- s.e.m."""
    table = rows.pivot_table(index="fish", columns="model", values="value", aggfunc="mean")
    table = table.reindex(index=fish_ids, columns=models)
    values = table.to_numpy(dtype=np.float64)
    x = np.arange(len(models))
    for i, fish in enumerate(fish_ids):
        ax.plot(x, values[i], color="0.75", linewidth=0.8, zorder=1)
        ax.scatter(x, values[i], s=22, color=_colour(i), zorder=2, label=f"fish {fish}")
    # pandas skips missing fish and gives NaN s.e.m. for fewer than 2 fish.
    mean = table.mean(axis=0).to_numpy(dtype=np.float64)
    sem = table.sem(axis=0).to_numpy(dtype=np.float64)
    ax.errorbar(
        x + 0.22, mean, yerr=sem, fmt="_", color="black", markersize=12, capsize=3, zorder=3
    )
    ax.set_xticks(x, models, rotation=30, ha="right", rotation_mode="anchor")
    ax.set_xlim(-0.5, len(models) - 0.5)
    ax.grid(axis="y", color="0.92")
    ax.set_axisbelow(True)


def _comparison_legend(fig: Figure, first: Axes, stats_rows: pd.DataFrame | None) -> None:
    """Fish colours, the mean bar and (where drawn) the meaning of the brackets."""
    handles, labels = first.get_legend_handles_labels()
    handles.append(Line2D([], [], color="black", marker="_", markersize=12, linestyle=""))
    labels.append("mean ± s.e.m. over fish")
    if stats_rows is not None and (stats_rows["contrast"] == "pretrained_vs_untrained").any():
        handles.append(Line2D([], [], color="black", lw=0.8))
        labels.append(
            "pretrained vs untrained:\nHolm-corrected p and\nCohen's dz where a test\nwas possible"
        )
    fig.legend(handles, labels, loc="outside right upper", fontsize=8, frameon=False)


def _annotate_pairs(
    ax: Axes, stats_rows: pd.DataFrame, models: list[str], level: float, step: float
) -> float:
    """Brackets with corrected p-values over the pretrained-vs-untrained pairs of one panel.

    Brackets stack upwards from `level` in units of `step` (data units); returns the y value
    that the axis must reach to show them all.
    """
    twins = stats_rows[stats_rows["contrast"] == "pretrained_vs_untrained"]
    for _, row in twins.iterrows():
        if row["model_a"] not in models or row["model_b"] not in models:
            continue
        xa, xb = sorted((models.index(row["model_a"]), models.index(row["model_b"])))
        tip = level + step * 0.2
        ax.plot([xa, xa, xb, xb], [level, tip, tip, level], color="black", lw=0.8)
        ax.text((xa + xb) / 2, tip, _annotation(row), ha="center", va="bottom", fontsize=7)
        level += step * 2.2
    return level


def _check_prediction_dataset(name: str, ds: xr.Dataset) -> None:
    source = ds.encoding.get("source", f"<predictions of {name}>")
    for var in ("predicted", "true"):
        if var not in ds.data_vars or tuple(ds[var].dims) != ("time", "segment"):
            raise InputFileError(source, f"'{var}' with dims (time, segment)", f"{ds.data_vars}")
    if "split" not in ds.coords or not np.any(ds["split"].values.astype(str) == "test"):
        raise InputFileError(source, "coord 'split' with 'test' frames", "none")


def _test_split(ds: xr.Dataset) -> xr.Dataset:
    return ds.isel(time=np.flatnonzero(ds["split"].values.astype(str) == "test"))


def _stimulus_epochs(ds: xr.Dataset, stimulus: pd.DataFrame | None) -> pd.DataFrame:
    """Epochs (start_s, stop_s, stimulus) from the argument or from the `stimulus` coord."""
    if stimulus is not None:
        missing = {"start_s", "stop_s", "stimulus"} - set(stimulus.columns)
        if missing:
            raise InputFileError(
                "<stimulus table>", "columns start_s, stop_s, stimulus", f"{list(stimulus.columns)}"
            )
        return stimulus[["start_s", "stop_s", "stimulus"]]
    if "stimulus" not in ds.coords or ds.sizes["time"] == 0:
        return pd.DataFrame(columns=["start_s", "stop_s", "stimulus"])
    labels = ds["stimulus"].values.astype(str)
    time = ds["time"].values.astype(np.float64)
    frame_s = float(np.median(np.diff(time))) if time.size > 1 else 0.0
    # Runs of identical consecutive labels; each run spans its frames plus one frame period.
    change = np.flatnonzero(labels[1:] != labels[:-1]) + 1
    starts = np.r_[0, change]
    stops = np.r_[change, labels.size]
    epochs = pd.DataFrame(
        {
            "start_s": time[starts],
            "stop_s": time[stops - 1] + frame_s,
            "stimulus": labels[starts],
        }
    )
    return epochs[epochs["stimulus"] != ""].reset_index(drop=True)


def plot_predictions(
    ds_by_model: Mapping[str, xr.Dataset],
    out_stem: str | Path,
    stimulus: pd.DataFrame | None = None,
) -> list[Path]:
    """Predicted vs true tail angles on the test split of one fish (paper Fig. 2c-like).

    Top panel: the sum of the angles over segments; below: one panel per segment. True angles in
    black, each model in its own colour. Stimulus epochs are shaded, from `stimulus` if given
    (columns start_s, stop_s, stimulus; seconds, as in stimulus.tsv), else from the first
    dataset's `stimulus` coord where it is non-empty.

    Args:
        ds_by_model: model name -> predictions dataset (architecture.md, "Predictions netCDF"),
            all of the same fish.
        out_stem: output path without suffix; `.png` and `.svg` are written.
        stimulus: optional epoch table overriding the `stimulus` coord.

    Returns:
        The written paths [png, svg].
    """
    tests, fish = _test_splits_of_one_fish(ds_by_model)
    reference = next(iter(tests.values()))
    segments = [str(s) for s in reference["segment"].values]
    epochs = _stimulus_epochs(reference, stimulus)
    stimulus_colour = {label: _colour(i + 4) for i, label in enumerate(epochs["stimulus"].unique())}

    n_panels = 1 + len(segments)
    fig = Figure(figsize=(10, 1.3 * n_panels + 0.8), layout="constrained")
    axes = np.atleast_1d(fig.subplots(n_panels, 1, sharex=True))
    true = reference["true"].values
    labels = ["summed angle (rad)"] + [f"{seg} (rad)" for seg in segments]
    for panel, (ax, label) in enumerate(zip(axes, labels, strict=True)):
        _shade_epochs(ax, epochs, stimulus_colour)
        true_angle = _panel_angle(true, panel)
        ax.plot(reference["time"].values, true_angle, color="black", linewidth=1.0, label="true")
        for i, (name, ds) in enumerate(tests.items()):
            predicted = _panel_angle(ds["predicted"].values, panel)
            ax.plot(ds["time"].values, predicted, color=_colour(i), linewidth=0.9, label=name)
        ax.set_ylabel(label, fontsize=8)
        ax.tick_params(labelsize=8)
    axes[-1].set_xlabel("time (s)")
    handles, names = axes[0].get_legend_handles_labels()
    handles += [Patch(color=c, alpha=0.3) for c in stimulus_colour.values()]
    names += [f"stimulus: {s}" for s in stimulus_colour]
    fig.legend(handles, names, loc="outside lower center", ncol=min(len(names), 6), fontsize=8)
    axes[0].set_title(f"fish {fish}, test split", fontsize=10)
    return save_figure(fig, out_stem)


def _panel_angle(angles: np.ndarray, panel: int) -> np.ndarray:
    """(time,) angle in rad drawn in a panel: panel 0 sums the segments, panel k is segment k-1."""
    return angles.sum(axis=1) if panel == 0 else angles[:, panel - 1]


def _shade_epochs(ax: Axes, epochs: pd.DataFrame, colours: Mapping[str, str]) -> None:
    """Shade each stimulus epoch (start_s to stop_s) in its stimulus's colour."""
    for _, epoch in epochs.iterrows():
        colour = colours[epoch["stimulus"]]
        ax.axvspan(epoch["start_s"], epoch["stop_s"], color=colour, alpha=0.15, linewidth=0)


def _test_splits_of_one_fish(
    ds_by_model: Mapping[str, xr.Dataset],
) -> tuple[dict[str, xr.Dataset], str]:
    """Each model's test split, checked to be predictions of one fish; and that fish's id."""
    if not ds_by_model:
        raise ConfigError("ds_by_model", "at least one model's predictions", "none")
    for name, ds in ds_by_model.items():
        _check_prediction_dataset(name, ds)
    fish = {str(ds.attrs.get("fish", "?")) for ds in ds_by_model.values()}
    if len(fish) > 1:
        raise ConfigError("ds_by_model", "predictions of one fish", f"fish {sorted(fish)}")
    return {name: _test_split(ds) for name, ds in ds_by_model.items()}, fish.pop()


CURVE_KEYS = ("model", "window", "fish", "seed", "horizon", "fold")


def plot_training_curves(curves: pd.DataFrame, out_stem: str | Path) -> list[Path]:
    """Loss per epoch, one panel per model (rows) and window (columns), log y axis.

    Each run (fish, seed, fold) is a thin line, train solid and validation dashed; the median
    over runs is drawn bold, so a grid of thousands of runs stays readable.

    Args:
        curves: one row per run and epoch: `model`, `window`, `fish`, `seed`, `fold`, `epoch`,
            `train_loss` and optionally `val_loss` (mean-squared error, rad²).
        out_stem: output path without suffix; `.png` and `.svg` are written.

    Returns:
        The written paths [png, svg].
    """
    missing = {*CURVE_KEYS, "epoch", "train_loss"} - set(curves.columns)
    if missing:
        raise InputFileError(
            "<training curves>", f"columns {[*CURVE_KEYS, 'epoch', 'train_loss']}", list(curves)
        )
    if curves.empty:
        raise ConfigError("curves", "at least one run's loss curve", "none")
    models = list(dict.fromkeys(curves["model"]))
    windows = sorted(set(curves["window"]))
    fig = Figure(figsize=(2.6 * len(windows) + 1, 1.9 * len(models) + 0.8), layout="constrained")
    axes = fig.subplots(len(models), len(windows), squeeze=False, sharex=True)
    for row, model in enumerate(models):
        for col, window in enumerate(windows):
            panel = curves[(curves["model"] == model) & (curves["window"] == window)]
            _curve_panel(axes[row][col], panel, _colour(row))
            axes[row][col].set_title(f"{model}, window {window}", fontsize=8)
    for ax in axes[-1]:
        ax.set_xlabel("epoch")
    for row in axes:
        row[0].set_ylabel("MSE (rad²)")
    style = [
        Line2D([], [], color="black", label="train"),
        Line2D([], [], color="black", ls="--", label="validation"),
        Line2D([], [], color="black", lw=2.5, label="median over runs"),
    ]
    fig.legend(handles=style, loc="outside upper center", ncols=3, fontsize=8, frameon=False)
    return save_figure(fig, out_stem)


def _curve_panel(ax: Axes, panel: pd.DataFrame, colour: str) -> None:
    """Thin lines per run, bold medians per epoch; an empty panel says so."""
    if panel.empty:
        ax.text(0.5, 0.5, "no runs", ha="center", va="center", transform=ax.transAxes)
        return
    columns = ["train_loss"] + (["val_loss"] if "val_loss" in panel else [])
    for column, style in zip(columns, ("-", "--"), strict=False):
        for _, run in panel.groupby(["fish", "seed", "horizon", "fold"]):
            ax.plot(run["epoch"], run[column], color=colour, ls=style, lw=0.6, alpha=0.35)
        median = panel.groupby("epoch")[column].median()
        ax.plot(median.index, median.values, color=colour, ls=style, lw=2.0)
    ax.set_yscale("log")
    ax.grid(color="0.92", which="both")
    ax.tick_params(labelsize=7)


def plot_window_sweep(
    summary: pd.DataFrame,
    out_stem: str | Path,
    metric: str = "rmse",
    segment: str = "pooled",
) -> list[Path]:
    """Error vs window size per model: mean over fish +- s.e.m. over fish.

    Bottom axis in frames, top axis in seconds (from `window_s` when the summary has it). With a
    single window size the plot still shows one point per model, labelled clearly.

    Args:
        summary: `nlp4neuro.metrics.summarise` output.
        out_stem: output path without suffix; `.png` and `.svg` are written.
        metric, segment: which rows of `summary` to plot.

    Returns:
        The written paths [png, svg].
    """
    rows = _select(summary, metric, segment)
    rows = rows[np.isfinite(rows["value"].to_numpy(dtype=np.float64))]
    per_window = (
        rows.groupby(["model", "window_frames"])["value"]
        .agg(mean="mean", sem="sem", n_fish="count")
        .reset_index()
    )
    windows = np.array(sorted(per_window["window_frames"].unique()), dtype=np.float64)
    models = list(dict.fromkeys(per_window["model"]))
    spacing = np.min(np.diff(windows)) if windows.size > 1 else 4.0
    # Dodge models sideways so their error bars do not overlap.
    offsets = (np.arange(len(models)) - (len(models) - 1) / 2) * spacing * 0.6 / max(len(models), 1)

    fig = Figure(figsize=(8.0, 4.2), layout="constrained")
    ax = fig.subplots()
    for i, model in enumerate(models):
        table = per_window[per_window["model"] == model].sort_values("window_frames")
        n_fish = table["n_fish"].min()
        ax.errorbar(
            table["window_frames"] + offsets[i], table["mean"], yerr=table["sem"],
            color=_colour(i), marker="o", capsize=3, label=f"{model} (n={n_fish} fish)",
        )  # fmt: skip
    ax.set_xticks(windows, [str(int(w)) for w in windows])
    ax.set_xlim(windows.min() - spacing * 0.6, windows.max() + spacing * 0.6)
    ax.set_xlabel("window size (frames)")
    ax.set_ylabel(f"{metric_label(metric)}, {_segment_label(segment)}")
    ax.grid(color="0.92")
    _add_seconds_axis(ax, windows, table_frame_rate_hz(rows))
    if windows.size == 1:
        ax.set_title(f"single window size ({int(windows[0])} frames)", fontsize=10)
    fig.legend(
        loc="outside right upper", fontsize=8, frameon=False,
        title="mean ± s.e.m. over fish", title_fontsize=8,
    )  # fmt: skip
    return save_figure(fig, out_stem)


def _add_seconds_axis(
    ax: Axes, windows: np.ndarray, frame_rate_hz: float, label: str = "window length (s)"
) -> None:
    """A top axis giving the window sizes (frames) in seconds; none without a frame rate."""
    if not np.isfinite(frame_rate_hz):
        return
    top = ax.secondary_xaxis(
        "top", functions=(lambda f: f / frame_rate_hz, lambda s: s * frame_rate_hz)
    )
    top.set_xticks(windows / frame_rate_hz, [f"{w / frame_rate_hz:.1f}" for w in windows])
    top.set_xlabel(label)


def plot_horizons(table: pd.DataFrame, out_stem: str | Path, segment: str = "summed") -> list[Path]:
    """Test R² against horizon per model, one panel per window (`horizons.horizon_table`).

    Each model: mean ± s.e.m. over fish; the floor: the circular-shift null's 95th percentile
    (ridge, mean over fish) at each horizon, dashed; the tail's own past (ridge from the tail h
    frames earlier, mean over fish), dotted. Returns the written [png, svg].
    """
    rows = table[table["segment"] == segment]
    if rows.empty:
        raise InputFileError("<horizon table>", f"rows for segment '{segment}'", "none")
    windows = sorted(rows["window_frames"].unique())
    models = list(dict.fromkeys(rows["model"]))
    ahead = rows[rows["horizon"] > 0]  # the frame rate from horizon / horizon_s
    rate = float((ahead["horizon"] / ahead["horizon_s"]).median()) if len(ahead) else np.nan
    fig = Figure(figsize=(4.2 * len(windows) + 2.2, 4.2), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(windows), sharey=True))
    for ax, window in zip(axes, windows, strict=True):
        panel = rows[rows["window_frames"] == window]
        for i, model in enumerate(models):
            line = panel[panel["model"] == model].sort_values("horizon")
            ax.errorbar(
                line["horizon"], line["r2_mean"], yerr=line["r2_sem"], color=_colour(i),
                marker="o", capsize=3, label=model if ax is axes[0] else None,
            )  # fmt: skip
        floor = panel.groupby("horizon")["null_r2_p95_mean"].mean()
        if floor.notna().any():
            label = "null 95th percentile (ridge, shifted)" if ax is axes[0] else None
            ax.plot(floor.index, floor.to_numpy(), color="0.3", linestyle="--", label=label)
        history = panel.groupby("horizon")["tail_history_r2_mean"].mean().dropna()
        if not history.empty:
            label = "the tail's own past (ridge, h frames earlier)" if ax is axes[0] else None
            ax.plot(history.index, history.to_numpy(), color="0.3", linestyle=":", marker="x",
                    label=label)  # fmt: skip
        horizons = np.array(sorted(panel["horizon"].unique()), dtype=np.float64)
        ax.set_xticks(horizons, [str(int(h)) for h in horizons])
        ax.set_xlabel("horizon: tail decoded this many frames ahead")
        ax.set_title(_window_title(int(window), rate), fontsize=10)
        ax.grid(color="0.92")
        _add_seconds_axis(ax, horizons, rate, label="horizon (s)")
    axes[0].set_ylabel(f"{metric_label('r2')}, {_segment_label(segment)}")
    fig.legend(
        loc="outside right upper", fontsize=8, frameon=False,
        title="mean ± s.e.m. over fish", title_fontsize=8,
    )  # fmt: skip
    return save_figure(fig, out_stem)


__all__: Sequence[str] = (
    "OKABE_ITO",
    "metric_label",
    "plot_horizons",
    "plot_model_comparison",
    "plot_predictions",
    "plot_training_curves",
    "plot_window_sweep",
)
