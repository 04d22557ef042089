"""Across explained runs: region tables, cross-fish consistency of region rankings, controls.

This stage reads what `nlp4neuro.explain` wrote for each run (its region table, scores and
importance map) and needs no torch: it runs in the evaluation environment. The fish is the unit
of replication: consistency is measured per model, window and seed across fish, and is reported
as not testable (in the table's ``note`` column, never as an error) when fewer than 2 fish or
fewer than 2 labelled regions shared by all fish exist, e.g. for suite2p output without region
labels.
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
    "note",
)
"""Columns of the ``consistency`` table, in order (``note`` says why a row was not tested)."""


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
        and seed: Kendall's W and mean Spearman of region rankings across fish, or a ``note``
        saying why they are not testable) and ``controls`` (per run: ground-truth AUC,
        motor-map and randomised-weights similarity, and similarity to the untrained twin's map
        of the same fish, window and seed).
    """
    region_rows = [run["regions"].assign(**{k: run[k] for k in RUN_KEYS}) for run in runs]
    regions = pd.concat(region_rows, ignore_index=True) if region_rows else pd.DataFrame()
    return {
        "regions": regions,
        "consistency": consistency_table(runs),
        "controls": controls_table(runs, untrained_twins, top_k=top_k),
    }


def consistency_table(runs: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """One row per model, window and seed: do its fish rank the regions alike (by mean)?"""
    grouped: dict[tuple, dict[str, pd.DataFrame]] = {}
    for run in runs:
        group = grouped.setdefault((run["model"], run["window"], run["seed"]), {})
        group[str(run["fish"])] = run["regions"]
    rows = []
    for (model, window, seed), tables in grouped.items():
        row = {"model": model, "window": window, "seed": seed, **_consistency(tables)}
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
    """One row per run: ground truth, motor-map, randomised-weights and untrained-twin scores."""
    by_key = {tuple(run[k] for k in RUN_KEYS): run for run in runs}
    rows = []
    for run in runs:
        row = {k: run[k] for k in RUN_KEYS} | _score_columns(run["scores"])
        twin = untrained_twins.get(run["model"])
        twin_run = by_key.get((twin, run["window"], run["fish"], run["seed"])) if twin else None
        if twin_run is not None:
            similarity = map_similarity(_summed_map(run), _summed_map(twin_run), top_k=top_k)
            row.update(
                twin=twin,
                twin_spearman=similarity["spearman_rho"],
                twin_jaccard_top_k=similarity["jaccard_top_k"],
            )
        rows.append(row)
    return pd.DataFrame(rows)


def _score_columns(scores: Mapping[str, Any]) -> dict[str, Any]:
    """The controls columns of one run's scores.json (NaN where a score was not computed)."""
    truth = scores.get("ground_truth", {})
    randomised = scores.get("randomised_weights", {})
    return {
        "auc_importance": truth.get("auc_importance", np.nan),
        "auc_motor_map": truth.get("auc_motor_map", np.nan),
        "top_k_drivers": truth.get("top_k_drivers", np.nan),
        "n_drivers": truth.get("n_drivers", np.nan),
        "motor_map_spearman": scores["motor_map"]["spearman_rho"],
        "randomised_spearman": randomised.get("spearman_rho", np.nan),
        "randomised_jaccard_top_k": randomised.get("jaccard_top_k", np.nan),
        "convergence_delta_relative": scores.get("convergence_delta_relative", np.nan),
        "ig_converged": scores.get("ig_converged"),
    }


def _summed_map(run: Mapping[str, Any]) -> np.ndarray:
    """(N,) importance of the summed tail from a run's importance dataset."""
    return run["importance"]["importance"].sel(target=SUMMED).values
