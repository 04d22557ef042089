"""Every decoding metric, in one module, frozen and tested against hand-computed values.

Array metrics take `true` and `predicted` of shape (n_frames, n_segments) (tail angles in
radians) and return one value per segment, shape (n_segments,). A 1-D input of shape (n_frames,)
is one series and gives a 0-d result. The `*_pooled` variants return one float over all frames and
segments together:

- RMSE and MAE pooled are computed on the flattened arrays: sqrt(mean over frames and segments of
  the squared error) is the number the NLP4Neuro paper reports (radians).
- R² pooled is 1 - sum(SSres) / sum(SStot), both summed over segments, with SStot taken around
  each segment's own mean (scikit-learn's ``multioutput="variance_weighted"``). Flattening and
  centring on one grand mean would credit a model for the constant offsets between segments (the
  angles are absolute orientations, so theta_05 sits far from theta_00), which is not decoding.
- Pearson r pooled is the correlation after removing each segment's own means, for the same
  reason.

R² uses the mean of the TRUE values of the scored split (the test mean), not the training mean:
R² = 0 means "as good as predicting the test mean", which a model cannot know in advance, so
R² here is slightly optimistic for the mean predictor and comparable across models.

`mse` is the pooled mean squared error of arrays of any shape (the training loss and
early-stopping score).

Scores of per-neuron importance maps (saliency): `top_k_indices` (the k most important
neurons), `map_similarity` (Spearman rho and top-k Jaccard of two maps), `ground_truth_auc`
(ROC AUC against planted drivers), `kendalls_w` and `rank_agreement` (do raters, e.g. fish,
rank items, e.g. regions, alike?) and `rank_consistency` (the same for one region table per
fish, over the regions that every fish ranks).

Table functions turn prediction files (architecture.md, "Predictions netCDF") into tidy tables:
`score_predictions` (one file), `metrics_table` (many files), `summarise` (folds, then seeds,
averaged within each fish; the fish is the unit of replication for `nlp4neuro.statistics`) and
`skill` (1 - error / error of a named reference model such as "ridge" or "mean").
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
from scipy import stats
from sklearn.metrics import roc_auc_score

from nlp4neuro.errors import ConfigError, InputFileError

logger = logging.getLogger(__name__)

METRICS: tuple[str, ...] = ("rmse", "mae", "r2", "pearson_r")
"""Metric names written by `score_predictions`, in table order."""

POOLED = "pooled"
"""Segment label of metrics over all frames and segments together."""

SUMMED = "summed"
"""Segment label of metrics on the sum of the angles over segments (the paper's Fig. 2c trace)."""

ID_COLUMNS: tuple[str, ...] = (
    "model", "kind", "fish", "seed", "fold", "horizon", "window_frames", "window_s",
)  # fmt: skip
"""Columns that identify one trained run in the tidy tables."""

TABLE_COLUMNS: tuple[str, ...] = (
    *ID_COLUMNS,
    "split",
    "metric",
    "segment",
    "value",
    "n_frames",
)
"""Columns of `score_predictions` / `metrics_table` output, in order."""

SUMMARY_COLUMNS: tuple[str, ...] = (
    "model",
    "kind",
    "fish",
    "horizon",
    "window_frames",
    "window_s",
    "split",
    "metric",
    "segment",
    "value",
    "seed_sd",
    "n_seeds",
    "n_seeds_failed",
    "n_folds",
)
"""Columns of `summarise` output, in order (`value` is the mean over finite seeds of each
seed's mean over its folds)."""


# --------------------------------------------------------------------------------------------
# Array metrics
# --------------------------------------------------------------------------------------------


def _pair(true: np.ndarray, predicted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    true = np.asarray(true, dtype=np.float64)
    predicted = np.asarray(predicted, dtype=np.float64)
    if true.shape != predicted.shape:
        raise ValueError(
            f"true and predicted must have the same shape, found {true.shape} and {predicted.shape}"
        )
    if true.ndim not in (1, 2) or true.shape[0] == 0:
        raise ValueError(
            f"expected arrays of shape (n_frames,) or (n_frames, n_segments) with n_frames > 0, "
            f"found shape {true.shape}"
        )
    return true, predicted


def rmse(true: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """Root-mean-square error per segment (same units as the inputs, radians for tail angles).

    Shapes: (n_frames, n_segments) -> (n_segments,); (n_frames,) -> ().
    """
    true, predicted = _pair(true, predicted)
    return np.sqrt(np.mean((predicted - true) ** 2, axis=0))


def mae(true: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """Mean absolute error per segment (radians). Shapes as in `rmse`."""
    true, predicted = _pair(true, predicted)
    return np.mean(np.abs(predicted - true), axis=0)


def _safe_ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator with NaN (and no warning) where the denominator is 0."""
    numerator = np.asarray(numerator, dtype=np.float64)
    denominator = np.asarray(denominator, dtype=np.float64)
    defined = denominator > 0
    out = np.full(np.broadcast(numerator, denominator).shape, np.nan)
    np.divide(numerator, denominator, out=out, where=defined)
    return out


def r2(true: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """Coefficient of determination per segment, 1 - SSres / SStot (dimensionless).

    SStot is taken around the mean of `true` over the frames given (the test mean). A constant
    true series (SStot = 0) gives NaN. Shapes as in `rmse`.
    """
    true, predicted = _pair(true, predicted)
    ss_res = np.sum((true - predicted) ** 2, axis=0)
    ss_tot = np.sum((true - true.mean(axis=0)) ** 2, axis=0)
    return 1.0 - _safe_ratio(ss_res, ss_tot)


def pearson_r(true: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """Pearson correlation per segment (dimensionless, in [-1, 1]).

    A constant series (zero variance in `true` or `predicted`) gives NaN without a warning.
    Shapes as in `rmse`.
    """
    true, predicted = _pair(true, predicted)
    t = true - true.mean(axis=0)
    p = predicted - predicted.mean(axis=0)
    r = _safe_ratio(np.sum(t * p, axis=0), np.sqrt(np.sum(t**2, axis=0) * np.sum(p**2, axis=0)))
    # Rounding can push |r| a hair above 1 for perfectly (anti-)correlated series.
    return np.clip(r, -1.0, 1.0)


def rmse_pooled(true: np.ndarray, predicted: np.ndarray) -> float:
    """RMSE over all frames and segments flattened (the paper's number, radians)."""
    true, predicted = _pair(true, predicted)
    return float(np.sqrt(np.mean((predicted - true) ** 2)))


def mae_pooled(true: np.ndarray, predicted: np.ndarray) -> float:
    """MAE over all frames and segments flattened (radians)."""
    true, predicted = _pair(true, predicted)
    return float(np.mean(np.abs(predicted - true)))


def r2_pooled(true: np.ndarray, predicted: np.ndarray) -> float:
    """1 - sum over segments of SSres / sum over segments of SStot (each around its own mean).

    Equivalent to scikit-learn's ``r2_score(..., multioutput="variance_weighted")``.
    """
    true, predicted = _pair(true, predicted)
    ss_res = np.sum((true - predicted) ** 2)
    ss_tot = np.sum((true - true.mean(axis=0)) ** 2)
    return float(1.0 - _safe_ratio(ss_res, ss_tot))


def pearson_r_pooled(true: np.ndarray, predicted: np.ndarray) -> float:
    """Pearson r over all frames and segments after removing each segment's own means."""
    true, predicted = _pair(true, predicted)
    t = true - true.mean(axis=0)
    p = predicted - predicted.mean(axis=0)
    r = _safe_ratio(np.sum(t * p), np.sqrt(np.sum(t**2) * np.sum(p**2)))
    return float(np.clip(r, -1.0, 1.0))


def mse(pred: np.ndarray, true: np.ndarray) -> float:
    """Mean squared error over every element of two arrays of one shape (radians squared).

    Any shape, e.g. (n_frames, n_segments) or (n_windows, window, n_segments); float64 inside.
    Symmetric in its arguments.
    """
    pred = np.asarray(pred, dtype=np.float64)
    true = np.asarray(true, dtype=np.float64)
    if pred.shape != true.shape:
        raise ValueError(
            f"pred and true must have the same shape, found {pred.shape} and {true.shape}"
        )
    return float(np.mean((pred - true) ** 2))


_PER_SEGMENT = {"rmse": rmse, "mae": mae, "r2": r2, "pearson_r": pearson_r}
_POOLED = {
    "rmse": rmse_pooled,
    "mae": mae_pooled,
    "r2": r2_pooled,
    "pearson_r": pearson_r_pooled,
}


# --------------------------------------------------------------------------------------------
# Scores of importance maps
# --------------------------------------------------------------------------------------------


def top_k_indices(importance: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest values, most important first (ties: lower index first).

    Shapes: (N,) -> (min(k, N),) int64.
    """
    importance = np.asarray(importance, dtype=np.float64).ravel()
    return np.argsort(-importance, kind="stable")[: int(k)]


def map_similarity(a: np.ndarray, b: np.ndarray, *, top_k: int) -> dict[str, float]:
    """Agreement of two per-neuron importance maps (e.g. pretrained vs untrained twin).

    Args:
        a, b: (N,) importance maps over the same neurons.
        top_k: size of the top sets compared (clipped to 1..N).

    Returns:
        {"spearman_rho", "spearman_p", "top_k", "jaccard_top_k", "n_neurons"}. Jaccard =
        |top_a & top_b| / |top_a | top_b|; two unrelated maps give about k / (2N - k).
    """
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    if a.shape != b.shape or a.size < 2:
        raise ValueError(
            f"a, b: expected two maps of one shape (N >= 2,), found {a.shape}, {b.shape}"
        )
    k = int(min(max(top_k, 1), a.size))
    rho, p = stats.spearmanr(a, b)
    top_a, top_b = set(top_k_indices(a, k).tolist()), set(top_k_indices(b, k).tolist())
    return {
        "spearman_rho": float(rho),
        "spearman_p": float(p),
        "top_k": k,
        "jaccard_top_k": len(top_a & top_b) / len(top_a | top_b),
        "n_neurons": int(a.size),
    }


def ground_truth_auc(importance: np.ndarray, is_driver: np.ndarray) -> float:
    """ROC AUC of an importance map at separating planted driver neurons from the others.

    Args:
        importance: (N,) importance (higher = more important).
        is_driver: (N,) bool, True for the simulator's planted drivers.

    Returns:
        AUC in [0, 1]: the fraction of (driver, non-driver) pairs where the driver ranks higher,
        ties counting 1/2; 0.5 = chance, 1 = every driver ranked above every other neuron.
    """
    importance = np.asarray(importance, dtype=np.float64).ravel()
    is_driver = np.asarray(is_driver, dtype=bool).ravel()
    if importance.shape != is_driver.shape:
        raise ValueError(
            f"importance, is_driver: expected one shape, found {importance.shape} "
            f"and {is_driver.shape}"
        )
    n_drivers = int(is_driver.sum())
    if n_drivers == 0 or n_drivers == is_driver.size:
        raise ValueError(
            f"is_driver: expected both driver and non-driver neurons, found {n_drivers} of "
            f"{is_driver.size} drivers"
        )
    return float(roc_auc_score(is_driver, importance))


def kendalls_w(values: np.ndarray) -> float:
    """Kendall's coefficient of concordance W with the tie correction (dimensionless, [0, 1]).

    Args:
        values: (m raters, n items) scores; each row is ranked (average ranks for ties).

    Returns:
        W = 12 S / (m^2 (n^3 - n) - m sum_j T_j), S = sum_i (R_i - mean R)^2 over item rank
        sums R_i, T_j = sum over tie groups of rater j of (t^3 - t). 1 = identical rankings;
        NaN when every rater ties every item.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 2 or values.shape[0] < 2 or values.shape[1] < 2:
        raise ValueError(f"values: expected (m >= 2 raters, n >= 2 items), found {values.shape}")
    m, n = values.shape
    ranks = stats.rankdata(values, axis=1)
    rank_sums = ranks.sum(axis=0)
    s = float(((rank_sums - rank_sums.mean()) ** 2).sum())
    ties = 0.0
    for row in values:
        t = np.unique(row, return_counts=True)[1].astype(np.float64)
        ties += float((t**3 - t).sum())
    denominator = m**2 * (n**3 - n) - m * ties
    return 12.0 * s / denominator if denominator > 0 else float("nan")


def rank_agreement(values: np.ndarray) -> dict[str, float]:
    """Do m raters rank n items alike? Kendall's W, its chi-square test and mean Spearman rho.

    Args:
        values: (m raters, n items) scores, e.g. fish x regions mean importance.

    Returns:
        {"kendall_w", "chi2", "p_value", "mean_spearman"}: chi2 = m (n - 1) W is Friedman's
        statistic on n - 1 df (a large-sample approximation; p = its upper tail) and
        mean_spearman the mean over rater pairs of Spearman rho (NaN pairs left out).
    """
    w = kendalls_w(values)
    matrix = np.asarray(values, dtype=np.float64)
    m, n = matrix.shape
    chi2 = m * (n - 1) * w
    rhos = [stats.spearmanr(a, b)[0] for a, b in itertools.combinations(matrix, 2)]
    return {
        "kendall_w": float(w),
        "chi2": float(chi2),
        "p_value": float(stats.chi2.sf(chi2, n - 1)),
        "mean_spearman": float(np.nanmean(rhos)),
    }


def rankable_regions(tables: Sequence[pd.DataFrame], value: str) -> tuple[list[str], list[str]]:
    """Regions shared by every table, and those of them with a finite `value` in every table.

    A region without a value in some fish (e.g. the "unlabelled" row that region ablation adds,
    whose mean importance is NaN) cannot be ranked in that fish. Both lists sorted.
    """
    for frame in tables:
        if not {"region", value} <= set(frame.columns):
            raise ValueError(
                f"tables: expected columns region, {value}, found {list(frame.columns)}"
            )
    shared = sorted(set.intersection(*(set(f["region"].astype(str)) for f in tables)))
    finite = [
        set(f.loc[np.isfinite(f[value].to_numpy(dtype=np.float64)), "region"].astype(str))
        for f in tables
    ]
    return shared, [region for region in shared if all(region in f for f in finite)]


def rank_consistency(
    tables: Mapping[str, pd.DataFrame] | Sequence[pd.DataFrame], value: str = "mean"
) -> dict[str, Any]:
    """Do fish agree on which regions matter? `rank_agreement` of one region table per fish.

    Args:
        tables: one region table per fish ({fish: table} or a list) with columns ``region``
            and `value` (e.g. `nlp4neuro.anatomy.region_importance` output).
        value: column ranked within each fish.

    Returns:
        `rank_agreement`'s {"kendall_w", "chi2", "p_value", "mean_spearman"} over the regions
        that every fish ranks (`rankable_regions`), and "n_fish", "n_regions", "regions".

    Raises:
        ValueError: fewer than 2 fish, or fewer than 2 regions that every fish ranks.
    """
    frames = list(tables.values()) if isinstance(tables, Mapping) else list(tables)
    if len(frames) < 2:
        raise ValueError(f"tables: expected at least 2 fish, found {len(frames)}")
    shared, common = rankable_regions(frames, value)
    if len(common) < 2:
        raise ValueError(
            f"tables: expected at least 2 regions with a {value} in every fish, found {common} "
            f"(regions shared by all fish: {shared})"
        )
    matrix = np.vstack(
        [
            f.assign(region=f["region"].astype(str))
            .set_index("region")
            .loc[common, value]
            .to_numpy(dtype=np.float64)
            for f in frames
        ]
    )
    m, n = matrix.shape
    return {**rank_agreement(matrix), "n_fish": int(m), "n_regions": int(n), "regions": common}


# --------------------------------------------------------------------------------------------
# Tables from prediction files
# --------------------------------------------------------------------------------------------


def _source(ds: xr.Dataset) -> str:
    return str(ds.encoding.get("source", "<predictions dataset in memory>"))


def _frame_rate_hz(ds: xr.Dataset) -> float:
    """Imaging volume rate (Hz) from the `time` (s) and `frame` coords; NaN if not derivable."""
    if np.isfinite(float(ds.attrs.get("frame_rate_hz", np.nan))):
        return float(ds.attrs["frame_rate_hz"])
    if "frame" not in ds.coords or ds.sizes.get("time", 0) < 2:
        return float("nan")
    frames = np.asarray(ds["frame"].values, dtype=np.float64)
    seconds = np.asarray(ds["time"].values, dtype=np.float64)
    step = np.diff(frames)
    ok = step > 0
    if not ok.any():
        return float("nan")
    # The median over consecutive frames ignores the jump between the val and test blocks.
    seconds_per_frame = float(np.median(np.diff(seconds)[ok] / step[ok]))
    return 1.0 / seconds_per_frame if seconds_per_frame > 0 else float("nan")


def _check_predictions(ds: xr.Dataset, split: str) -> xr.Dataset:
    """Validate the predictions contract and return the frames of `split`."""
    source = _source(ds)
    for name in ("predicted", "true"):
        if name not in ds.data_vars:
            raise InputFileError(
                source, f"data variable '{name}' (time, segment)", f"{sorted(ds.data_vars)}"
            )
        if tuple(ds[name].dims) != ("time", "segment"):
            raise InputFileError(
                source, f"'{name}' with dims ('time', 'segment')", f"dims {ds[name].dims}"
            )
    if "split" not in ds.coords:
        raise InputFileError(source, "coord 'split' (time) with 'val'/'test'", "no 'split'")
    required = ("model", "kind", "fish", "seed", "fold", "window_frames")
    missing = [key for key in required if key not in ds.attrs]
    if missing:
        raise InputFileError(source, f"attrs {', '.join(required)}", f"{missing} missing")
    selected = ds.isel(time=np.flatnonzero(ds["split"].values.astype(str) == split))
    if selected.sizes["time"] == 0:
        found = sorted(set(ds["split"].values.astype(str)))
        raise InputFileError(source, f"frames with split == '{split}'", f"splits {found}")
    if not np.all(np.isfinite(selected["true"].values)):
        raise InputFileError(source, f"finite 'true' tail angles on split '{split}'", "NaN/inf")
    return selected


def score_predictions(ds: xr.Dataset, split: str = "test") -> pd.DataFrame:
    """Score one predictions dataset: a tidy table, one row per metric x segment.

    Args:
        ds: predictions dataset (architecture.md, "Predictions netCDF"): `predicted` and `true`
            (time, segment) in radians, coord `split`, attrs model, kind, fish, seed, fold,
            window_frames.
        split: which frames to score ("test" for reported numbers, "val" for model selection).

    Returns:
        DataFrame with columns `TABLE_COLUMNS`: one row per metric in `METRICS` x segment, where
        segment is each segment name, "pooled" (all frames and segments; see the module
        docstring) and "summed" (metrics on the sum of the angles over segments, radians).
        `window_s` is window_frames / frame rate (NaN if the frame rate cannot be derived).

    Raises:
        InputFileError: if the dataset breaks the predictions contract or `true` is not finite.
        Non-finite predictions (a diverged run) are scored as NaN with a warning, so that the
        run stays visible in the tables instead of stopping the pipeline.
    """
    selected = _check_predictions(ds, split)
    true = selected["true"].values.astype(np.float64)
    predicted = selected["predicted"].values.astype(np.float64)
    if not np.all(np.isfinite(predicted)):
        logger.warning(
            "%s: non-finite predictions on split %s; metrics are NaN", _source(ds), split
        )
    segments = [str(s) for s in selected["segment"].values]

    rows: list[tuple[str, str, float]] = []
    true_sum, predicted_sum = true.sum(axis=1), predicted.sum(axis=1)
    for metric in METRICS:
        per_segment = _PER_SEGMENT[metric](true, predicted)
        rows.extend((metric, seg, float(v)) for seg, v in zip(segments, per_segment, strict=True))
        rows.append((metric, POOLED, _POOLED[metric](true, predicted)))
        rows.append((metric, SUMMED, float(_PER_SEGMENT[metric](true_sum, predicted_sum))))

    table = pd.DataFrame(rows, columns=["metric", "segment", "value"])
    window_frames = int(ds.attrs["window_frames"])
    frame_rate_hz = _frame_rate_hz(ds)
    table.insert(0, "split", split)
    for position, (column, value) in enumerate(
        [
            ("model", str(ds.attrs["model"])),
            ("kind", str(ds.attrs["kind"])),
            ("fish", int(ds.attrs["fish"])),
            ("seed", int(ds.attrs["seed"])),
            ("fold", int(ds.attrs["fold"])),
            # files written before horizons existed decoded concurrently
            ("horizon", int(ds.attrs.get("horizon", 0))),
            ("window_frames", window_frames),
            ("window_s", window_frames / frame_rate_hz),
        ]
    ):
        table.insert(position, column, value)
    table["n_frames"] = selected.sizes["time"]
    return table[list(TABLE_COLUMNS)]


def metrics_table(paths: Iterable[str | Path], split: str = "test") -> pd.DataFrame:
    """`score_predictions` of every predictions netCDF in `paths`, concatenated.

    Raises InputFileError if a file is missing, unreadable or breaks the contract, or if two files
    describe the same run (model, fish, seed, fold, horizon, window_frames).
    """
    tables = []
    for path in paths:
        path = Path(path)
        if not path.is_file():
            raise InputFileError(path, "a predictions netCDF file", "no such file")
        try:
            with xr.open_dataset(path) as ds:
                ds.load()
        except (OSError, ValueError) as error:
            raise InputFileError(path, "a readable predictions netCDF file", repr(error)) from error
        ds.encoding["source"] = str(path)
        tables.append(score_predictions(ds, split=split))
        logger.info("scored %s", path)
    if not tables:
        raise InputFileError("<metrics_table paths>", "at least one predictions file", "none")
    table = pd.concat(tables, ignore_index=True)
    run = ["model", "fish", "seed", "fold", "horizon", "window_frames", "metric", "segment"]
    duplicated = table.duplicated(run)
    if duplicated.any():
        first = table.loc[duplicated, run].iloc[0].to_dict()
        raise InputFileError(
            "<metrics_table paths>", "one predictions file per run", f"{first} twice"
        )
    return table


def _fold_means(table: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Each seed's mean over its folds (NaN if any fold is: a diverged fold fails the seed),
    with the number of folds averaged in `n_folds`."""

    def finite_mean(values: pd.Series) -> float:
        values = values.to_numpy(dtype=np.float64)
        return float(values.mean()) if np.isfinite(values).all() else float("nan")

    grouped = table.groupby([*keys, "seed"], sort=True, dropna=False)
    return grouped.agg(
        value=("value", finite_mean), n_folds=("fold", "nunique"), window_s=("window_s", "mean")
    ).reset_index()


def summarise(table: pd.DataFrame) -> pd.DataFrame:
    """Average folds within each seed, then seeds within each fish: model x fish x horizon x
    window x metric x segment (the fish stays the unit: folds and seeds are not replicates).

    Args:
        table: output of `metrics_table` / `score_predictions` (or `skill`); a table without
            a `horizon` column is concurrent decoding (horizon 0).

    Returns:
        DataFrame with columns `SUMMARY_COLUMNS`: `value` is the mean over the seeds with a finite
        value of each seed's mean over its folds, `seed_sd` their standard deviation (ddof=1;
        NaN with one seed), `n_seeds` how many finite seeds were averaged, `n_seeds_failed` how
        many were NaN (a diverged fold; they are left out of the mean, so check this column
        before trusting a fish's value) and `n_folds` the folds per seed.
    """
    require_columns(
        table,
        ("model", "kind", "fish", "seed", "fold", "window_frames", "metric", "segment", "value"),
    )
    # window_s is a float derived per file (the frame rate estimated from its frames): averaged,
    # never a grouping key, so that folds and seeds of one run stay one row
    table = table.assign(window_s=table.get("window_s", np.nan), horizon=table.get("horizon", 0))
    keys = [c for c in SUMMARY_COLUMNS[:9] if c in table.columns and c != "window_s"]
    seeds = _fold_means(table, keys)
    finite = np.isfinite(seeds["value"].to_numpy(dtype=np.float64))
    grouped = seeds.assign(_finite=finite).groupby(keys, sort=True, dropna=False)
    summary = grouped.agg(
        value=("value", "mean"),
        seed_sd=("value", "std"),
        n_seeds=("_finite", "sum"),
        n_seeds_total=("seed", "nunique"),
        n_folds=("n_folds", "max"),
        window_s=("window_s", "mean"),
    ).reset_index()
    summary["n_seeds"] = summary["n_seeds"].astype(int)
    summary["n_seeds_failed"] = summary["n_seeds_total"] - summary["n_seeds"]
    if (summary["n_seeds_failed"] > 0).any():
        logger.warning(
            "%d model/fish/window groups have non-finite seeds (left out of the seed mean)",
            int((summary["n_seeds_failed"] > 0).sum()),
        )
    for column in SUMMARY_COLUMNS:
        if column not in summary.columns:
            summary[column] = np.nan
    return summary[list(SUMMARY_COLUMNS)]


def table_frame_rate_hz(rows: pd.DataFrame) -> float:
    """A table's frame rate from window_frames / window_s (median over rows); NaN where
    `window_s` is absent or NaN."""
    if "window_s" not in rows.columns:
        return float("nan")
    seconds = rows["window_s"].to_numpy(dtype=np.float64)
    ok = np.isfinite(seconds) & (seconds > 0)
    if not ok.any():
        return float("nan")
    return float(np.median(rows["window_frames"].to_numpy(np.float64)[ok] / seconds[ok]))


def smallest_horizon(table: pd.DataFrame) -> pd.DataFrame:
    """The rows of the run's smallest horizon (concurrent decoding when 0 is configured): what
    the statistics, the verdict and the model-comparison figures report, one horizon at a time
    (`nlp4neuro.horizons` shows skill against horizon). A table without `horizon` is returned
    as it is."""
    if "horizon" not in table.columns or table.empty:
        return table
    return table[table["horizon"] == table["horizon"].min()].reset_index(drop=True)


def skill(table: pd.DataFrame, reference_model: str, metric: str = "rmse") -> pd.DataFrame:
    """Skill relative to a named reference model: 1 - error_model / error_reference.

    Computed per fish, seed, fold, horizon, window and segment. 0 means "as good as the
    reference", 1 a perfect model, negative values worse than the reference. Typical references
    are the mean predictor and ridge regression, named as in the `model` column
    (``skill(table, "ridge")``).

    Deterministic references are often trained with one seed only: where the reference has no
    run with the model's seed, the reference's mean over its seeds for that
    fish/fold/window/segment is used instead.

    Args:
        table: output of `metrics_table`.
        reference_model: the `model` value of the reference.
        metric: an error metric where lower is better ("rmse" or "mae").

    Returns:
        Rows of every other model in the same columns as `table`, with
        metric = f"{metric}_skill_vs_{reference_model}" and the skill as `value`, so the result
        can be concatenated with `table` and passed to `summarise`.
    """
    require_columns(
        table, ("model", "fish", "seed", "fold", "window_frames", "metric", "segment", "value")
    )
    if metric not in ("rmse", "mae"):
        raise ConfigError("metric", "an error metric, 'rmse' or 'mae'", metric)
    rows = table[table["metric"] == metric]
    reference = rows[rows["model"] == reference_model]
    if reference.empty:
        found = sorted(rows["model"].unique())
        raise ConfigError(
            "reference_model", f"a model in the table, one of {found}", reference_model
        )
    others = rows[rows["model"] != reference_model]
    split_key = ["split"] if "split" in rows.columns else []
    keys = ["fish", "fold", "window_frames", "segment", *split_key]
    keys += ["horizon"] if "horizon" in rows.columns else []
    by_seed = reference[[*keys, "seed", "value"]].rename(columns={"value": "reference_value"})
    seed_mean = (
        reference.groupby(keys, dropna=False)["value"].mean().rename("reference_mean").reset_index()
    )
    merged = others.merge(by_seed, on=[*keys, "seed"], how="left").merge(
        seed_mean, on=keys, how="left"
    )
    reference_value = merged["reference_value"].fillna(merged["reference_mean"])
    unmatched = reference_value.isna()
    if unmatched.any():
        logger.warning(
            "%d rows have no %s run for their fish/fold/window/segment; their skill is NaN",
            int(unmatched.sum()),
            reference_model,
        )
    ratio = merged["value"].to_numpy(dtype=np.float64) / reference_value.to_numpy(np.float64)
    result = merged[list(others.columns)].copy()
    result["value"] = 1.0 - ratio
    result["metric"] = f"{metric}_skill_vs_{reference_model}"
    return result.reset_index(drop=True)


def require_columns(
    table: pd.DataFrame, columns: Iterable[str], where: str = "<metrics table>"
) -> None:
    """InputFileError naming `where` (the table's file or role) unless `table` has `columns`."""
    columns = list(columns)
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise InputFileError(
            where, f"columns {columns}", f"{list(table.columns)} (missing {missing})"
        )


# --------------------------------------------------------------------------------------------
# Training convergence
# --------------------------------------------------------------------------------------------

CONVERGENCE_STATUS = {
    "closed form": "fitted in one step (ridge, mean): nothing to converge",
    "stopped improving": "the best validation loss came before the last epoch",
    "flat": "the last epoch was the best but improved the validation loss by less than the "
    "tolerance",
    "still improving": "the last epoch improved the validation loss by more than the tolerance: "
    "more epochs would likely help",
    "diverged": "no finite validation loss in any epoch",
}
"""The `status` values of `convergence_table` and what each means."""


def _convergence_row(curve: pd.DataFrame, tolerance: float) -> dict[str, Any]:
    """Status of one run's training curve (rows of one run, sorted by epoch)."""
    val = curve["val_loss"].to_numpy(dtype=np.float64)
    epochs = curve["epoch"].to_numpy()
    best = int(epochs[int(np.nanargmin(val))]) if np.isfinite(val).any() else -1
    change = float((val[-1] - val[-2]) / val[-2]) if val.size > 1 else float("nan")
    if best < 0:
        status = "diverged"
    elif val.size == 1 and epochs[0] == 0:
        status = "closed form"
    elif best != int(epochs[-1]):
        status = "stopped improving"
    elif np.isfinite(change) and -change < tolerance:
        status = "flat"
    else:
        status = "still improving"
    return {
        "epochs_run": int(epochs[-1]),
        "best_epoch": best,
        "last_val_change": change,
        "status": status,
        "converged": status not in ("still improving", "diverged"),
    }


def convergence_table(curves: pd.DataFrame, keys: Sequence[str], tolerance: float) -> pd.DataFrame:
    """Did each run train to convergence? One row per run of `curves`.

    Args:
        curves: training curves, one row per run and epoch with `keys`, `epoch`, `val_loss`.
        keys: the columns naming a run (e.g. model, window, fish, seed, fold).
        tolerance: relative validation-loss decrease of the last epoch below which a curve
            counts as flat (0.01 = 1 %).

    Returns:
        `keys`, epochs_run, best_epoch, last_val_change ((last - previous) / previous val loss;
        negative is an improvement), status (`CONVERGENCE_STATUS`) and converged (bool).
    """
    require_columns(curves, [*keys, "epoch", "val_loss"])
    rows = []
    for run, curve in curves.groupby(list(keys), sort=True):
        run = run if isinstance(run, tuple) else (run,)
        rows.append({**dict(zip(keys, run, strict=True)),
                     **_convergence_row(curve.sort_values("epoch"), tolerance)})  # fmt: skip
    return pd.DataFrame(rows)
