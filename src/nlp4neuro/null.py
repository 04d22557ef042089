"""Chance level of decoding skill: ridge refitted after circularly shifting neurons against tail.

A decoder's test R² alone does not say how much of it is decoding: smooth signals and a finite
test block give a chance level that is not exactly 0. `circular_shift_null` estimates it per
fish and window, for the ridge baseline:

1. The decoding problem of every fold is built once (`nlp4neuro.problem.build_problem`): lag,
   blocks and input normaliser are exactly those the trained decoders use.
2. Each shift s is drawn uniformly from the integers in [min_shift, T' - min_shift] (seeded;
   with replacement), T' the lagged recording's frames. The smallest shift is the largest of
   the config floor (`null_distribution.min_shift_frames`), the autocorrelation length of the
   summed tail (`autocorrelation_length`) and 2 x window + gap frames, so a shifted neural frame
   carries no trace of the behaviour it is paired with.
3. The normalised, lagged neural frames x (T', N) are rolled over the WHOLE recording before the
   split, ``np.roll(x, s, axis=0)``: the tail of frame t is paired with neural frame
   (t - s) mod T'. The tail, the split blocks and the normaliser (fitted on the unshifted
   training rows) stay as in the problem; only the pairing changes, and each neural frame's
   own temporal structure is kept.
4. Ridge is fitted on the training block, its penalty chosen on the validation block
   (`nlp4neuro.ridge.fit_ridge`, the fit of the ridge baseline) and scored on the test block
   with `nlp4neuro.metrics`: R² and RMSE of the summed tail and pooled over segments. With K
   folds (decoding.folds) every fit is done per fold, with the fold's normaliser, and the K
   scores averaged, as the metrics of the trained models are; the same shift serves all folds.

The unshifted fit is the observed score (the ridge baseline's, up to the float32 rounding of
its stored predictions). `summarise_null` states each metric against its null: mean, sd, the
95th percentile (R²; the 5th for RMSE, lower being better), observed minus null mean
(`r2_above_null`; `rmse_below_null` is null mean minus observed) and the empirical p,
(1 + #null at least as good as observed) / (1 + n_shifts). No torch here.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from nlp4neuro import metrics
from nlp4neuro.errors import ConfigError, InputFileError
from nlp4neuro.problem import DecodingParams, DecodingProblem, build_problem
from nlp4neuro.ridge import check_frame_pair, fit_ridge

logger = logging.getLogger(__name__)

MODEL = "ridge"
"""The decoder refitted for the null (the only one `null_distribution.models` allows)."""

SCORES: dict[str, str] = {"r2": "higher", "rmse": "lower"}
"""Metrics of the null, each with the direction that is better."""

SEGMENTS: tuple[str, ...] = (metrics.SUMMED, metrics.POOLED)
"""What each metric is computed on: the summed tail, and all segments pooled."""

P_POLICY = "(1 + #null at least as good as observed) / (1 + n_shifts)"
"""How `summarise_null` computes p, written into the table itself."""

SHIFT_COLUMNS: tuple[str, ...] = (
    "model", "fish", "window_frames", "window_s", "horizon", "role", "shift_frames",
    "min_shift_frames", "n_frames", "alpha", "r2_summed", "rmse_summed", "r2_pooled", "rmse_pooled",
)  # fmt: skip
"""Columns of `circular_shift_null` output, in order."""

SUMMARY_COLUMNS: tuple[str, ...] = (
    "model", "fish", "window_frames", "window_s", "horizon", "segment", "n_shifts",
    "min_shift_frames",
    "r2_observed", "r2_null_mean", "r2_null_sd", "r2_null_p95", "r2_above_null", "r2_p",
    "rmse_observed", "rmse_null_mean", "rmse_null_sd", "rmse_null_p05", "rmse_below_null",
    "rmse_p", "p_policy",
)  # fmt: skip
"""Columns of `summarise_null` output (and of results/evaluation/null.csv), in order."""


def autocorrelation_length(x: np.ndarray) -> int:
    """First lag (frames) at which the autocorrelation of a series falls below 1/e.

    The autocorrelation is the biased estimate sum_t x_t x_{t+k} / sum_t x_t^2 of the series
    minus its mean (so for an AR(1) of coefficient phi, about the first k with phi^k < 1/e).
    Returns len(x) if it never falls below 1/e, and 0 for a constant or one-frame series.

    Args:
        x: (T,) series, e.g. the summed tail angle in radians.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"x: expected a 1-D series (T,), found shape {x.shape}")
    x = x - x.mean() if x.size else x
    energy = float(x @ x)
    if x.size < 2 or energy == 0:
        return 0
    n = x.size
    spectrum = np.fft.rfft(x, 2 * n)  # zero-padded: the linear, not circular, correlation
    acf = np.fft.irfft(spectrum * spectrum.conj(), 2 * n)[:n] / energy
    below = np.flatnonzero(acf[1:] < 1.0 / np.e)
    return int(below[0] + 1) if below.size else n


def smallest_shift(
    floor_frames: int, tail_summed: np.ndarray, window_frames: int, gap_frames: int
) -> int:
    """The smallest circular shift in frames: max(floor, autocorrelation length of the summed
    tail (T',), 2 x window + gap)."""
    return max(
        int(floor_frames),
        autocorrelation_length(tail_summed),
        2 * int(window_frames) + int(gap_frames),
    )


def draw_shifts(n_frames: int, n_shifts: int, min_shift: int, seed: int) -> np.ndarray:
    """(n_shifts,) int64 shifts drawn uniformly, with replacement, from [min_shift,
    n_frames - min_shift] (both ends included), reproducibly from `seed`.

    Raises:
        ConfigError (null_distribution.min_shift_frames): no shift fits the recording.
    """
    if min_shift < 1 or 2 * min_shift > n_frames:
        raise ConfigError(
            "null_distribution.min_shift_frames",
            f"a smallest shift in [1, {n_frames // 2}] for a recording of {n_frames} frames "
            "(the floor, the summed tail's autocorrelation length and 2 x window + gap)",
            min_shift,
        )
    rng = np.random.default_rng(seed)
    return rng.integers(min_shift, n_frames - min_shift, size=n_shifts, endpoint=True)


def empirical_p(null: np.ndarray, observed: float, higher_is_better: bool = True) -> float:
    """(1 + #null at least as good as observed) / (1 + n): never 0, at least 1 / (n + 1).

    NaN null values count as not as good; a NaN observed score gives NaN.
    """
    null = np.asarray(null, dtype=np.float64)
    if not np.isfinite(observed):
        return float("nan")
    as_good = null >= observed if higher_is_better else null <= observed
    return float((1 + np.count_nonzero(as_good)) / (1 + null.size))


def _scores(true: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """Test scores of (T, K) angles in rad: `<metric>_<segment>` for SCORES x SEGMENTS."""
    true_sum, predicted_sum = true.sum(axis=1), predicted.sum(axis=1)
    return {
        "r2_summed": float(metrics.r2(true_sum, predicted_sum)),
        "rmse_summed": float(metrics.rmse(true_sum, predicted_sum)),
        "r2_pooled": metrics.r2_pooled(true, predicted),
        "rmse_pooled": metrics.rmse_pooled(true, predicted),
    }


def fit_and_score(
    x: np.ndarray, y: np.ndarray, splits: Mapping[str, np.ndarray], alphas: Sequence[float]
) -> dict[str, float]:
    """Ridge on the train rows of x (T', N) -> y (T', K), penalty chosen on val, test scores
    (`r2_summed`, `rmse_summed`, `r2_pooled`, `rmse_pooled`) and the chosen `alpha`."""
    train, val, test = splits["train"], splits["val"], splits["test"]
    x_train, y_train = check_frame_pair("train", x[train], y[train], None, None)
    x_val, y_val = check_frame_pair("val", x[val], y[val], None, None)
    fitted = fit_ridge(x_train, y_train, x_val, y_val, tuple(float(a) for a in alphas))
    x_test, y_test = check_frame_pair("test", x[test], y[test], None, None)
    return {"alpha": fitted.alpha, **_scores(y_test, fitted.predict(x_test))}


def _identity(dataset: xr.Dataset, window_frames: int, horizon: int) -> dict[str, Any]:
    """The columns naming the run: model, fish, window_frames, window_s, horizon."""
    source = dataset.encoding.get("source", "<dataset in memory>")
    if "fish" not in dataset.attrs:
        raise InputFileError(source, "a 'fish' attribute (the dataset contract)", "none")
    rate = float(dataset.attrs.get("frame_rate_hz", np.nan))
    return {
        "model": MODEL,
        "fish": str(dataset.attrs["fish"]),
        "window_frames": int(window_frames),
        "window_s": int(window_frames) / rate,
        "horizon": int(horizon),
    }


def _fold_scores(
    folds: Sequence[tuple[DecodingProblem, np.ndarray]],
    y: np.ndarray,
    shift: int,
    alphas: Sequence[float],
) -> dict[str, float]:
    """Ridge's test scores averaged over the folds, after rolling each fold's x by `shift`
    frames; `alpha` is the median of the penalties the folds chose."""
    scores = [
        fit_and_score(np.roll(x, shift, axis=0) if shift else x, y, problem.splits, alphas)
        for problem, x in folds
    ]
    mean = {key: float(np.mean([score[key] for score in scores])) for key in scores[0]}
    return {**mean, "alpha": float(np.median([score["alpha"] for score in scores]))}


def circular_shift_null(
    dataset: xr.Dataset,
    params: DecodingParams,
    window_frames: int,
    *,
    horizon: int,
    n_shifts: int,
    min_shift_frames: int,
    seed: int,
    alphas: Sequence[float],
) -> pd.DataFrame:
    """Ridge's test scores after `n_shifts` circular shifts, and unshifted (module docstring).

    Args:
        dataset: one fish's dataset (the "Dataset netCDF" contract).
        params: the decoding settings (`DecodingParams.from_config`; its folds are averaged).
        window_frames: window length in frames (sets the smallest shift with the gap).
        horizon: decode the tail this many frames ahead (one of params.horizons; ridge is
            frame-wise, so it sees only the paired neural frame).
        n_shifts: number of shifts (null_distribution.n_shifts).
        min_shift_frames: floor of the smallest shift (null_distribution.min_shift_frames).
        seed: seed of the shift draw (the config's seed).
        alphas: ridge penalties, chosen on the validation block.

    Returns:
        One row per fit: model, fish, window_frames, window_s, horizon, role ("observed" for the
        unshifted fit, first, then "null"), shift_frames (0 for observed), min_shift_frames (the
        smallest shift allowed), n_frames (T'), alpha (chosen penalty, median over folds),
        r2_summed, rmse_summed, r2_pooled, rmse_pooled (dimensionless, rad; means over folds).
    """
    problems = [
        build_problem(dataset, window_frames, params, k, horizon) for k in range(params.folds)
    ]
    recordings = [problem.recording(dataset) for problem in problems]
    folds = [(problem, x) for problem, (x, _) in zip(problems, recordings, strict=True)]
    y = recordings[0][1]  # the targets are the same in every fold; only x's normaliser differs
    n_frames = problems[0].n_frames
    min_shift = smallest_shift(
        min_shift_frames, y.sum(axis=1, dtype=np.float64), window_frames, problems[0].gap_frames
    )
    shifts = draw_shifts(n_frames, n_shifts, min_shift, seed)
    logger.info(
        "null: %d shifts in [%d, %d] of %d frames, %d fold(s)",
        n_shifts, min_shift, n_frames - min_shift, n_frames, len(folds),
    )  # fmt: skip
    fixed = {**_identity(dataset, window_frames, horizon), "min_shift_frames": min_shift}
    rows = [{**fixed, "role": "observed", "shift_frames": 0, **_fold_scores(folds, y, 0, alphas)}]
    logger.info("null: observed R² (summed tail) %.4f", rows[0]["r2_summed"])
    for index, shift in enumerate(shifts, start=1):
        scores = _fold_scores(folds, y, int(shift), alphas)
        rows.append({**fixed, "role": "null", "shift_frames": int(shift), **scores})
        if index % 10 == 0 or index == n_shifts:
            logger.info("null: %d of %d shifts fitted", index, n_shifts)
    table = pd.DataFrame(rows)
    table["n_frames"] = n_frames
    return table[list(SHIFT_COLUMNS)]


def _against_null(metric: str, observed: float, null: np.ndarray) -> dict[str, float]:
    """One metric's columns of the summary: observed, null mean/sd/percentile, margin, p."""
    higher = SCORES[metric] == "higher"
    percentile = 95 if higher else 5
    margin = (observed - null.mean()) if higher else (null.mean() - observed)
    return {
        f"{metric}_observed": observed,
        f"{metric}_null_mean": float(np.mean(null)),
        f"{metric}_null_sd": float(np.std(null, ddof=1)) if null.size > 1 else float("nan"),
        f"{metric}_null_p{percentile:02d}": float(np.percentile(null, percentile)),
        f"{metric}_{'above' if higher else 'below'}_null": float(margin),
        f"{metric}_p": empirical_p(null, observed, higher),
    }


def summarise_null(shifts: pd.DataFrame) -> pd.DataFrame:
    """One row per horizon and segment (summed, pooled) of `circular_shift_null` tables (one
    per horizon, concatenated): `SUMMARY_COLUMNS`.

    Raises:
        ValueError: the table lacks its columns, or a horizon has not exactly one observed row.
    """
    missing = [c for c in SHIFT_COLUMNS if c not in shifts.columns]
    if missing or shifts.empty:
        raise ValueError(
            f"shifts: expected a circular_shift_null table (columns {list(SHIFT_COLUMNS)}), "
            f"found columns {list(shifts.columns)}, {len(shifts)} rows"
        )
    horizons = [_summarise_horizon(group) for _, group in shifts.groupby("horizon", sort=True)]
    return pd.concat(horizons, ignore_index=True)


def _summarise_horizon(shifts: pd.DataFrame) -> pd.DataFrame:
    """`summarise_null` of one horizon's fits."""
    observed = shifts[shifts["role"] == "observed"]
    if len(observed) != 1:
        raise ValueError(
            f"shifts: expected one observed row per horizon, found {len(observed)} at horizon "
            f"{shifts['horizon'].iloc[0]}"
        )
    null = shifts[shifts["role"] == "null"]
    first = observed.iloc[0]
    rows = []
    for segment in SEGMENTS:
        row = {key: first[key] for key in ("model", "fish", "window_frames", "window_s", "horizon")}
        row.update(segment=segment, n_shifts=len(null), min_shift_frames=first["min_shift_frames"])
        for metric in SCORES:
            column = f"{metric}_{segment}"
            values = null[column].to_numpy(dtype=np.float64)
            row.update(_against_null(metric, float(first[column]), values))
        row["p_policy"] = P_POLICY
        rows.append(row)
    return pd.DataFrame(rows)[list(SUMMARY_COLUMNS)]


def gather_null_summaries(paths: Iterable[str | Path]) -> pd.DataFrame:
    """Every fish's and window's `summarise_null` CSV in one table, sorted by model, fish,
    window, horizon and segment.

    Raises:
        InputFileError: a file is missing or lacks a summary column.
    """
    tables = []
    for path in paths:
        path = Path(path)
        if not path.is_file():
            raise InputFileError(path, "a null summary CSV (rule null_distribution)", "no file")
        table = pd.read_csv(path, dtype={"fish": str})
        missing = [c for c in SUMMARY_COLUMNS if c not in table.columns]
        if missing:
            raise InputFileError(path, f"columns {list(SUMMARY_COLUMNS)}", f"{missing} missing")
        tables.append(table[list(SUMMARY_COLUMNS)])
    if not tables:
        return pd.DataFrame(columns=list(SUMMARY_COLUMNS))
    gathered = pd.concat(tables, ignore_index=True)
    order = ["model", "fish", "window_frames", "horizon", "segment"]
    return gathered.sort_values(order, ignore_index=True)
