"""Tests for nlp4neuro.horizons (skill against horizon) and its figure: hand-computed means."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from nlp4neuro.config import section
from nlp4neuro.errors import InputFileError
from nlp4neuro.horizons import (
    HORIZON_COLUMNS,
    TAIL_HISTORY_COLUMNS,
    horizon_table,
    tail_history_scores,
)
from nlp4neuro.metrics import smallest_horizon, summarise
from nlp4neuro.plots.evaluation import plot_horizons
from nlp4neuro.problem import DecodingParams


def summary_rows(values: dict[tuple[str, int, int], float], window: int = 10) -> pd.DataFrame:
    """Summary rows (test R², summed tail) from {(model, fish, horizon): value}; 2 Hz."""
    rows = [
        {"model": m, "kind": "llm", "fish": f, "horizon": h, "window_frames": window,
         "window_s": window / 2.0, "split": "test", "metric": "r2", "segment": "summed",
         "value": v}
        for (m, f, h), v in values.items()
    ]  # fmt: skip
    return pd.DataFrame(rows)


def null_rows(p95: dict[tuple[int, int], float], window: int = 10) -> pd.DataFrame:
    """Null summary rows from {(fish, horizon): r2_null_p95}; fish as text (as null.csv)."""
    rows = [
        {"model": "ridge", "fish": str(f), "window_frames": window, "horizon": h,
         "segment": "summed", "r2_null_p95": v}
        for (f, h), v in p95.items()
    ]  # fmt: skip
    return pd.DataFrame(rows)


VALUES = {
    ("a", 1, 0): 0.50, ("a", 2, 0): 0.30, ("a", 3, 0): 0.40,
    ("a", 1, 4): 0.10, ("a", 2, 4): 0.02, ("a", 3, 4): np.nan,
}  # fmt: skip
P95 = {(1, 0): 0.05, (2, 0): 0.05, (3, 0): 0.05, (1, 4): 0.04, (2, 4): 0.06, (3, 4): 0.05}


def test_horizon_table_by_hand():
    table = horizon_table(summary_rows(VALUES), null_rows(P95))
    assert list(table.columns) == list(HORIZON_COLUMNS)
    table = table.set_index("horizon")
    # horizon 0: mean (0.5 + 0.3 + 0.4) / 3 = 0.4, sd 0.1, sem 0.1 / sqrt(3)
    assert table.loc[0, "r2_mean"] == pytest.approx(0.4)
    assert table.loc[0, "r2_sem"] == pytest.approx(0.1 / np.sqrt(3))
    assert table.loc[0, "n_fish"] == 3 and table.loc[0, "n_fish_above_null"] == 3
    assert table.loc[0, "null_r2_p95_mean"] == pytest.approx(0.05)
    # horizon 4: fish 3 is NaN (left out); fish 1 beats 0.04, fish 2 does not beat 0.06
    assert table.loc[4, "r2_mean"] == pytest.approx(0.06)
    assert table.loc[4, "n_fish"] == 2 and table.loc[4, "n_fish_above_null"] == 1
    assert table.loc[4, "n_fish_with_null"] == 2
    assert table.loc[4, "null_r2_p95_mean"] == pytest.approx(0.05)  # (0.04 + 0.06) / 2
    assert table.loc[4, "horizon_s"] == pytest.approx(2.0)  # 4 frames at 2 Hz


def test_horizon_table_without_a_null_has_no_floor():
    table = horizon_table(summary_rows(VALUES), None)
    assert table["null_r2_p95_mean"].isna().all()
    assert (table["n_fish_with_null"] == 0).all() and (table["n_fish_above_null"] == 0).all()
    with pytest.raises(InputFileError, match="horizon"):
        horizon_table(summary_rows(VALUES).drop(columns="horizon"), None)
    with pytest.raises(InputFileError, match="r2_null_p95"):
        horizon_table(summary_rows(VALUES), null_rows(P95).drop(columns="r2_null_p95"))


def test_summarise_keeps_horizons_apart_and_smallest_horizon_selects_one():
    table = summary_rows(VALUES).drop(columns=["window_s"]).assign(seed=0, fold=0)
    summary = summarise(table)
    assert sorted(summary["horizon"].unique()) == [0, 4]
    assert len(summary) == 6
    only = smallest_horizon(summary)
    assert set(only["horizon"]) == {0} and len(only) == 3
    assert smallest_horizon(summary.drop(columns="horizon")).shape[0] == 6


def test_plot_horizons_writes_png_and_svg(tmp_path):
    table = horizon_table(summary_rows(VALUES), null_rows(P95))
    paths = plot_horizons(table, tmp_path / "horizons")
    assert [p.suffix for p in paths] == [".png", ".svg"]
    assert all(p.stat().st_size > 1000 for p in paths)
    with pytest.raises(InputFileError, match="pooled"):
        plot_horizons(table, tmp_path / "none", segment="pooled")


def echo_dataset(horizon: int, n_frames: int = 400) -> xr.Dataset:
    """I.i.d. tail angles except segment 1, which repeats segment 0 `horizon` frames later."""
    rng = np.random.default_rng(0)
    tail = rng.normal(size=(n_frames, 3))
    tail[horizon:, 1] = tail[:-horizon, 0]
    return xr.Dataset(
        {"dff": (("time", "neuron"), rng.normal(size=(n_frames, 4)).astype(np.float32)),
         "tail": (("time", "segment"), tail.astype(np.float32))},
        coords={"time": np.arange(n_frames) / 2.0, "frame": ("time", np.arange(n_frames)),
                "segment": ["theta_00", "theta_01", "theta_02"]},
        attrs={"fish": "7", "frame_rate_hz": 2.0},
    )  # fmt: skip


@pytest.mark.parametrize("lag", [0, 1])
def test_tail_history_finds_the_tail_h_frames_earlier(lag):
    """Segment 1 repeats segment 0 three frames later: with the tail 3 frames earlier one of
    three equal-variance segments is predicted exactly (pooled R² ~ 1/3); 2 frames earlier is
    the wrong frame (R² ~ 0); no row at horizon 0."""
    params = DecodingParams.from_config(
        section("decoding", horizons=[0, 2, 3], gap_frames=12, neural_lag_frames=lag, folds=2)
    )
    table = tail_history_scores(echo_dataset(3), params, 5, alphas=[1e-3, 1.0])
    assert list(table.columns) == list(TAIL_HISTORY_COLUMNS)
    assert sorted(set(table["horizon"])) == [2, 3] and len(table) == 4
    assert (table["n_folds"] == 2).all() and (table["fish"] == "7").all()
    pooled = table[table["segment"] == "pooled"].set_index("horizon")["r2_tail_history"]
    assert 0.25 < pooled[3] < 0.4
    assert pooled[2] < 0.05  # no skill (slightly negative: three noise features fitted)
    no_ahead = DecodingParams.from_config(section("decoding", gap_frames=12))
    assert tail_history_scores(echo_dataset(3), no_ahead, 5, alphas=[1.0]).empty


def test_horizon_table_carries_the_tail_history_mean():
    history = pd.DataFrame(
        [("1", 10, 4, "summed", 0.2, 1), ("2", 10, 4, "summed", 0.4, 1),
         ("3", 10, 4, "summed", 0.6, 1)],
        columns=list(TAIL_HISTORY_COLUMNS),
    )  # fmt: skip
    table = horizon_table(summary_rows(VALUES), null_rows(P95), history).set_index("horizon")
    assert np.isnan(table.loc[0, "tail_history_r2_mean"])
    assert table.loc[4, "tail_history_r2_mean"] == pytest.approx(0.4)
    with pytest.raises(InputFileError, match="r2_tail_history"):
        horizon_table(summary_rows(VALUES), None, history.drop(columns="r2_tail_history"))
