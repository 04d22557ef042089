"""Across explained runs: region tables, cross-fish consistency of region rankings, controls.

This stage reads what `nlp4neuro.explain` wrote for each run (its region table, scores and
importance map) and needs no torch: it runs in the evaluation environment. The fish is the unit
of replication: consistency is measured per model, window and seed across fish, and is reported
as not testable (in the table's ``note`` column, never as an error) when fewer than 2 fish or
fewer than 2 labelled regions shared by all fish exist, e.g. for suite2p output without region
labels.

Maps are held against baselines: every AUC of a map stands beside those of the correlation map
and the ridge-weight map of the same run, and the ridge retraining check beside its random
draws. An Integrated Gradients map that missed its completeness tolerance (scores.json
``excluded``) is listed with its reason but left out of every mean and of the consistency test.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from nlp4neuro.metrics import SUMMED, map_similarity, rank_consistency, rankable_regions

logger = logging.getLogger(__name__)

RUN_KEYS = ("model", "window", "fish", "seed")
"""Keys that identify one explained run."""

CONSISTENCY_COLUMNS = (
    "model",
    "window",
    "seed",
    "kendall_w",
    "chi2",
    "p_value",
    "mean_spearman",
    "n_fish",
    "n_regions",
    "n_unconverged",
    "note",
)
"""Columns of the ``consistency`` table, in order (``note`` says why a row was not tested;
``n_unconverged`` counts the fish whose map was left out)."""

RETRAIN_KEYS = (
    "k",
    "r2_full",
    "r2_without_top_k",
    "r2_without_random_k",
    "r2_drop_top_k",
    "r2_drop_random_k",
)
"""Keys of scores.json ``retraining`` copied to the controls table as ``retrain_<key>``."""

MEAN_COLUMNS = (
    "auc_importance",
    "auc_motor_map",
    "auc_ridge_weights",
    "motor_map_spearman",
    "randomised_spearman",
    "retrain_r2_full",
    "retrain_r2_drop_top_k",
    "retrain_r2_drop_random_k",
    "twin_spearman",
)
"""Controls averaged per model and window over the runs whose map is scored."""


def summarise_explanations(
    runs: Sequence[Mapping[str, Any]],
    untrained_twins: Mapping[str, str],
    *,
    top_k: int,
) -> dict[str, pd.DataFrame]:
    """Across runs: region tables, cross-fish consistency and control similarities.

    Args:
        runs: one mapping per explained run with keys model, window, fish, seed, ``regions``
            (DataFrame), ``scores`` (dict) and ``importance`` (xr.Dataset).
        untrained_twins: pretrained model -> its untrained twin.
        top_k: overlap size of the map similarities (config ``saliency.top_k``).

    Returns:
        ``regions`` (all runs' region rows with run columns), ``consistency`` (per model, window
        and seed: Kendall's W and mean Spearman of region rankings across the fish whose map is
        scored, or a ``note`` saying why they are not testable), ``controls`` (per run: IG
        convergence, ground-truth AUC of the map beside the correlation-map and ridge-weight
        AUCs, motor-map and randomised-weights similarity, ridge retraining check, similarity
        to the untrained twin's map of the same fish, window and seed) and ``controls_by_model``
        (`controls_means`).
    """
    region_rows = [run["regions"].assign(**{k: run[k] for k in RUN_KEYS}) for run in runs]
    regions = pd.concat(region_rows, ignore_index=True) if region_rows else pd.DataFrame()
    controls = controls_table(runs, untrained_twins, top_k=top_k)
    return {
        "regions": regions,
        "consistency": consistency_table(runs),
        "controls": controls,
        "controls_by_model": controls_means(controls),
    }


def _excluded(run: Mapping[str, Any]) -> bool:
    """True when the run's map missed its IG completeness tolerance (scores.json)."""
    return bool(run["scores"].get("excluded", False))


def consistency_table(runs: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """One row per model, window and seed: do its fish rank the regions alike (by mean)?"""
    grouped: dict[tuple, dict[str, pd.DataFrame]] = {}
    unconverged: dict[tuple, int] = {}
    for run in runs:
        key = (run["model"], run["window"], run["seed"])
        group = grouped.setdefault(key, {})
        unconverged[key] = unconverged.get(key, 0) + _excluded(run)
        if not _excluded(run):
            group[str(run["fish"])] = run["regions"]
    rows = []
    for (model, window, seed), tables in grouped.items():
        row = {"model": model, "window": window, "seed": seed, **_consistency(tables)}
        row["n_unconverged"] = unconverged[(model, window, seed)]
        if "note" in row and row["n_unconverged"]:
            row["note"] += f" ({row['n_unconverged']} fish left out: IG map unconverged)"
        if "note" in row:
            logger.info("consistency of %s w%s seed %s: %s", model, window, seed, row["note"])
        rows.append(row)
    return pd.DataFrame(rows, columns=list(CONSISTENCY_COLUMNS))


def _consistency(tables: Mapping[str, pd.DataFrame]) -> dict[str, Any]:
    """`rank_consistency` of one group's fish, or n_fish, n_regions and a note if not testable."""
    if len(tables) < 2:
        return {"n_fish": len(tables), "note": "consistency needs at least 2 fish"}
    shared, rankable = rankable_regions(list(tables.values()), "mean")
    if len(rankable) < 2:
        return {
            "n_fish": len(tables),
            "n_regions": len(rankable),
            "note": (
                "not testable: fewer than 2 labelled regions shared by all fish "
                f"(found {shared}; with a mean importance in every fish: {rankable})"
            ),
        }
    result = rank_consistency(tables, value="mean")
    return {k: v for k, v in result.items() if k != "regions"}


def controls_table(
    runs: Sequence[Mapping[str, Any]], untrained_twins: Mapping[str, str], *, top_k: int
) -> pd.DataFrame:
    """One row per run: IG convergence, ground truth (map beside the correlation-map and
    ridge-weight baselines), motor-map, randomised-weights, retraining and twin scores.

    An excluded map (missed IG tolerance) keeps its row with ``excluded_reason`` and NaN in
    every score of the map; the twin similarity is NaN when either map is excluded.
    """
    by_key = {tuple(run[k] for k in RUN_KEYS): run for run in runs}
    rows = []
    for run in runs:
        row = {k: run[k] for k in RUN_KEYS} | _score_columns(run["scores"])
        twin = untrained_twins.get(run["model"])
        twin_run = by_key.get((twin, run["window"], run["fish"], run["seed"])) if twin else None
        if twin_run is not None:
            row.update(twin=twin, **_twin_similarity(run, twin_run, top_k))
        rows.append(row)
    return pd.DataFrame(rows)


def _twin_similarity(
    run: Mapping[str, Any], twin_run: Mapping[str, Any], top_k: int
) -> dict[str, float]:
    """Spearman and top-k Jaccard of a run's map with its twin's (NaN if either is excluded)."""
    if _excluded(run) or _excluded(twin_run):
        return {"twin_spearman": np.nan, "twin_jaccard_top_k": np.nan}
    similarity = map_similarity(_summed_map(run), _summed_map(twin_run), top_k=top_k)
    return {
        "twin_spearman": similarity["spearman_rho"],
        "twin_jaccard_top_k": similarity["jaccard_top_k"],
    }


def _value(scores: Mapping[str, Any] | None, key: str) -> Any:
    """scores[key], NaN where the score (or its whole block) is absent or null."""
    value = (scores or {}).get(key)
    return np.nan if value is None else value


def _score_columns(scores: Mapping[str, Any]) -> dict[str, Any]:
    """The controls columns of one run's scores.json (NaN where a score was not computed)."""
    truth = scores.get("ground_truth")
    randomised = scores.get("randomised_weights")
    retraining = scores.get("retraining")
    return {
        "method": scores.get("method"),
        "ig_converged": scores.get("ig_converged"),
        "excluded": bool(scores.get("excluded", False)),
        "excluded_reason": scores.get("excluded_reason"),
        "convergence_delta_relative": _value(scores, "convergence_delta_relative"),
        "ig_n_steps": _value(scores, "ig_n_steps"),
        "auc_importance": _value(truth, "auc_importance"),
        "auc_motor_map": _value(truth, "auc_motor_map"),
        "auc_ridge_weights": _value(truth, "auc_ridge_weights"),
        "top_k_drivers": _value(truth, "top_k_drivers"),
        "n_drivers": _value(truth, "n_drivers"),
        "motor_map_spearman": _value(scores.get("motor_map"), "spearman_rho"),
        "randomised_spearman": _value(randomised, "spearman_rho"),
        "randomised_jaccard_top_k": _value(randomised, "jaccard_top_k"),
        **{f"retrain_{key}": _value(retraining, key) for key in RETRAIN_KEYS},
    }


def controls_means(controls: pd.DataFrame) -> pd.DataFrame:
    """Per model and window: the `MEAN_COLUMNS` averaged over the runs whose map is scored.

    Baselines are averaged over the same runs as the map, so each mean stands beside its
    baselines on the same fish. ``n_runs``, ``n_scored`` and ``n_unconverged`` count the runs;
    ``note`` names the runs left out and why.
    """
    if controls.empty:
        return pd.DataFrame()
    rows = []
    for (model, window), group in controls.groupby(["model", "window"], sort=False):
        excluded = group["excluded"].astype(bool)
        scored = group[~excluded]
        row = {"model": model, "window": window, "n_runs": len(group), "n_scored": len(scored)}
        row["n_unconverged"] = int(excluded.sum())
        for column in MEAN_COLUMNS:
            values = pd.to_numeric(scored[column], errors="coerce") if column in scored else None
            has_values = values is not None and values.notna().any()
            row[f"mean_{column}"] = float(values.mean()) if has_values else np.nan
        row["note"] = "; ".join(
            f"fish {r.fish} seed {r.seed} left out: {r.excluded_reason}"
            for r in group[excluded].itertuples()
        )
        rows.append(row)
    return pd.DataFrame(rows)


def _summed_map(run: Mapping[str, Any]) -> np.ndarray:
    """(N,) importance of the summed tail from a run's importance dataset."""
    return run["importance"]["importance"].sel(target=SUMMED).values
