"""Skill against horizon: how far ahead of the tail the neural activity tells it.

With ``decoding.horizons`` every model is trained once per horizon h to decode the tail at frame
t + h from neural frames up to t (`nlp4neuro.problem.lag_neural`; `models.see_past_only` keeps
every decoder to past frames). `horizon_table` puts, per model, window, horizon and tail
segment, the test R² averaged over fish (the unit) beside two references: the floor, the
circular-shift null of ridge at the same horizon (`nlp4neuro.null`), whose 95th percentile each
fish's R² must beat; and the tail's own past (`tail_history_scores`: ridge from the tail h
frames earlier to the tail, on the same folds and test frames). A model above the floor at
horizon h decodes the tail h frames ahead better than ridge on neurons shifted against the
tail; it does not say that the brain plans the movement: a tail that is itself predictable h
frames ahead (slow or rhythmic swimming) is decodable from concurrent activity, which the
tail-history reference measures.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import xarray as xr

from nlp4neuro.metrics import require_columns, table_frame_rate_hz
from nlp4neuro.null import SEGMENTS, fit_and_score
from nlp4neuro.problem import DecodingParams, build_problem

METRIC = "r2"
"""The score plotted against horizon (the null's R² is on the same frames and segments)."""

HORIZON_COLUMNS: tuple[str, ...] = (
    "model", "kind", "window_frames", "horizon", "horizon_s", "segment", "r2_mean", "r2_sem",
    "n_fish", "null_r2_p95_mean", "n_fish_above_null", "n_fish_with_null",
    "tail_history_r2_mean",
)  # fmt: skip
"""Columns of `horizon_table` (results/evaluation/horizons.csv), in order."""

_NULL_COLUMNS = ("fish", "window_frames", "horizon", "segment", "r2_null_p95")

TAIL_HISTORY_COLUMNS: tuple[str, ...] = (
    "fish", "window_frames", "horizon", "segment", "r2_tail_history", "n_folds",
)  # fmt: skip
"""Columns of `tail_history_scores`, in order."""


def _history_fold(
    dataset: xr.Dataset, params: DecodingParams, window: int, fold: int, horizon: int,
    alphas: Sequence[float],
) -> dict[str, float]:  # fmt: skip
    """Ridge from the tail `horizon` frames before each target frame to the target, on one
    fold's blocks (rows whose earlier frame precedes the recording are left out)."""
    problem = build_problem(dataset, window, params, fold, horizon)
    lagged = problem.lagged(dataset)
    y = np.asarray(lagged["tail"].values, dtype=np.float64)
    tail = np.asarray(dataset["tail"].values, dtype=np.float64)
    # each target's row in the recording (the lagged dataset keeps the time coordinate)
    targets = dataset.indexes["time"].get_indexer(lagged["time"].values)
    earlier = targets - horizon
    valid = earlier >= 0
    history = np.full_like(y, np.nan)
    history[valid] = tail[earlier[valid]]
    splits = {name: rows[valid[rows]] for name, rows in problem.splits.items()}
    return fit_and_score(history, y, splits, alphas)


def tail_history_scores(
    dataset: xr.Dataset, params: DecodingParams, window_frames: int, *, alphas: Sequence[float]
) -> pd.DataFrame:
    """How well the tail's own past predicts it, per horizon above 0: the reference beside
    which decoding ahead from neurons is read.

    For each horizon h > 0 of `params` and each fold, ridge (penalty chosen on the validation
    block among `alphas`) maps the tail angles h frames before a target frame to the target's,
    trained on the fold's training frames and scored on its test frames (the decoders' own
    problems, `build_problem`); test R² averaged over folds.

    Returns:
        `TAIL_HISTORY_COLUMNS`, one row per horizon > 0 and segment (summed, pooled); empty
        when every horizon is 0.
    """
    rows = []
    for horizon in (h for h in params.horizons if h > 0):
        folds = [
            _history_fold(dataset, params, window_frames, k, horizon, alphas)
            for k in range(params.folds)
        ]
        for segment in SEGMENTS:
            rows.append({
                "fish": str(dataset.attrs["fish"]), "window_frames": int(window_frames),
                "horizon": horizon, "segment": segment,
                "r2_tail_history": float(np.mean([f[f"r2_{segment}"] for f in folds])),
                "n_folds": len(folds),
            })  # fmt: skip
    return pd.DataFrame(rows, columns=list(TAIL_HISTORY_COLUMNS))


def _scores(summary: pd.DataFrame) -> pd.DataFrame:
    """The test R² rows of `summary` on the segments the null scores, fish as text."""
    required = ["model", "kind", "fish", "horizon", "window_frames", "metric", "segment", "value"]
    require_columns(summary, required, "<summary table>")
    rows = summary[(summary["metric"] == METRIC) & summary["segment"].isin(SEGMENTS)]
    if "split" in rows.columns:
        rows = rows[rows["split"] == "test"]
    rows = rows[np.isfinite(rows["value"].to_numpy(dtype=np.float64))]
    return rows.assign(fish=rows["fish"].astype(str))


def _with_null(scores: pd.DataFrame, null: pd.DataFrame | None) -> pd.DataFrame:
    """`scores` with each fish's null 95th percentile at its window, horizon and segment."""
    if null is None or null.empty:
        return scores.assign(r2_null_p95=np.nan)
    require_columns(null, _NULL_COLUMNS, "<null table>")
    floor = null[list(_NULL_COLUMNS)].assign(fish=null["fish"].astype(str))
    return scores.merge(floor, on=["fish", "window_frames", "horizon", "segment"], how="left")


def horizon_table(
    summary: pd.DataFrame, null: pd.DataFrame | None, tail_history: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Test R² against horizon per model, window and segment, beside the null floor.

    Args:
        summary: `metrics.summarise` output with every horizon (results/evaluation/summary.csv).
        null: `null.gather_null_summaries` output (results/evaluation/null.csv), or None when
            the null is switched off (the floor columns are then NaN).
        tail_history: `tail_history_scores` of every fish and window, or None.

    Returns:
        `HORIZON_COLUMNS`, one row per model x window x horizon x segment: `r2_mean` and
        `r2_sem` over fish, `n_fish` fish with a finite R²; `null_r2_p95_mean` the fish mean of
        each fish's null 95th percentile; `n_fish_above_null` how many of the
        `n_fish_with_null` fish beat their own (a one-sided 5 % level per fish; nothing is
        pooled across fish, and with few fish the count is the result, not a test);
        `tail_history_r2_mean` the fish mean of the tail-history reference (NaN at horizon 0,
        where the tail itself is the target, or without `tail_history`).
    """
    rows = _with_null(_scores(summary), null)
    rows = rows.assign(
        above=rows["value"] > rows["r2_null_p95"], has_null=rows["r2_null_p95"].notna()
    )
    keys = ["model", "kind", "window_frames", "horizon", "segment"]
    table = (
        rows.groupby(keys, sort=True)
        .agg(
            r2_mean=("value", "mean"),
            r2_sem=("value", "sem"),
            n_fish=("value", "count"),
            null_r2_p95_mean=("r2_null_p95", "mean"),
            n_fish_above_null=("above", "sum"),
            n_fish_with_null=("has_null", "sum"),
        )
        .reset_index()
    )
    table = _with_tail_history(table, tail_history)
    # seconds from the summary's own window_s (NaN without a frame rate)
    table["horizon_s"] = table["horizon"] / table_frame_rate_hz(summary)
    for column in ("n_fish", "n_fish_above_null", "n_fish_with_null"):
        table[column] = table[column].astype(int)
    return table[list(HORIZON_COLUMNS)]


def _with_tail_history(table: pd.DataFrame, tail_history: pd.DataFrame | None) -> pd.DataFrame:
    """`table` with the fish mean of the tail-history reference per window, horizon, segment."""
    keys = ["window_frames", "horizon", "segment"]
    if tail_history is None or tail_history.empty:
        return table.assign(tail_history_r2_mean=np.nan)
    require_columns(tail_history, TAIL_HISTORY_COLUMNS, "<tail history table>")
    means = tail_history.groupby(keys)["r2_tail_history"].mean().rename("tail_history_r2_mean")
    return table.merge(means.reset_index(), on=keys, how="left")
