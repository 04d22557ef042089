"""Skill against horizon: how far ahead of the tail the neural activity tells it.

With ``decoding.horizons`` every model is trained once per horizon h to decode the tail at frame
t + h from neural frames up to t (`nlp4neuro.problem.lag_neural`; `models.see_past_only` keeps
every decoder to past frames). `horizon_table` puts, per model, window, horizon and tail
segment, the test R² averaged over fish (the unit) beside the floor: the circular-shift null
of ridge at the same horizon (`nlp4neuro.null`), whose 95th percentile each fish's R² must
beat. A model above the floor at horizon h decodes the tail h frames ahead better than ridge on
neurons shifted against the tail; it does not say that the brain plans the movement: a tail
that is itself predictable h frames ahead (slow or rhythmic swimming) is decodable from
concurrent activity, so read the curve beside the tail's own autocorrelation.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from nlp4neuro.errors import InputFileError
from nlp4neuro.metrics import POOLED, SUMMED, table_frame_rate_hz

METRIC = "r2"
"""The score plotted against horizon (the null's R² is on the same frames and segments)."""

HORIZON_COLUMNS: tuple[str, ...] = (
    "model", "kind", "window_frames", "horizon", "horizon_s", "segment", "r2_mean", "r2_sem",
    "n_fish", "null_r2_p95_mean", "n_fish_above_null", "n_fish_with_null",
)  # fmt: skip
"""Columns of `horizon_table` (results/evaluation/horizons.csv), in order."""

SEGMENTS = (SUMMED, POOLED)
"""The tail segments scored against horizon: those the null scores too."""

_NULL_COLUMNS = ("fish", "window_frames", "horizon", "segment", "r2_null_p95")


def _scores(summary: pd.DataFrame) -> pd.DataFrame:
    """The test R² rows of `summary` on the segments the null scores, fish as text."""
    required = ["model", "kind", "fish", "horizon", "window_frames", "metric", "segment", "value"]
    missing = [c for c in required if c not in summary.columns]
    if missing:
        raise InputFileError("<summary table>", f"columns {required}", f"{missing} missing")
    rows = summary[(summary["metric"] == METRIC) & summary["segment"].isin(SEGMENTS)]
    if "split" in rows.columns:
        rows = rows[rows["split"] == "test"]
    rows = rows[np.isfinite(rows["value"].to_numpy(dtype=np.float64))]
    return rows.assign(fish=rows["fish"].astype(str))


def _with_null(scores: pd.DataFrame, null: pd.DataFrame | None) -> pd.DataFrame:
    """`scores` with each fish's null 95th percentile at its window, horizon and segment."""
    if null is None or null.empty:
        return scores.assign(r2_null_p95=np.nan)
    missing = [c for c in _NULL_COLUMNS if c not in null.columns]
    if missing:
        raise InputFileError("<null table>", f"columns {list(_NULL_COLUMNS)}", f"{missing} missing")
    floor = null[list(_NULL_COLUMNS)].assign(fish=null["fish"].astype(str))
    return scores.merge(floor, on=["fish", "window_frames", "horizon", "segment"], how="left")


def horizon_table(summary: pd.DataFrame, null: pd.DataFrame | None) -> pd.DataFrame:
    """Test R² against horizon per model, window and segment, beside the null floor.

    Args:
        summary: `metrics.summarise` output with every horizon (results/evaluation/summary.csv).
        null: `null.gather_null_summaries` output (results/evaluation/null.csv), or None when
            the null is switched off (the floor columns are then NaN).

    Returns:
        `HORIZON_COLUMNS`, one row per model x window x horizon x segment: `r2_mean` and
        `r2_sem` over fish, `n_fish` fish with a finite R²; `null_r2_p95_mean` the fish mean of
        each fish's null 95th percentile; `n_fish_above_null` how many of the
        `n_fish_with_null` fish beat their own (a one-sided 5 % level per fish; nothing is
        pooled across fish, and with few fish the count is the result, not a test).
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
    # seconds from the summary's own window_s (NaN without a frame rate)
    table["horizon_s"] = table["horizon"] / table_frame_rate_hz(summary)
    for column in ("n_fish", "n_fish_above_null", "n_fish_with_null"):
        table[column] = table[column].astype(int)
    return table[list(HORIZON_COLUMNS)]
