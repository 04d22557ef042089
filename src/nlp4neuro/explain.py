"""Explain one trained decoder and compare explanations across fish, models and controls.

This module joins the saliency and anatomy stages for the workflow: per run it attributes the
decoder's output to neurons, maps the importance onto regions, checks it against ground truth and
controls, and measures deletion curves; across runs it summarises region rankings and controls.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
import xarray as xr
from torch import nn

from nlp4neuro.anatomy import rank_consistency, region_enrichment, region_importance
from nlp4neuro.dataset import InputNormaliser, lag_neural
from nlp4neuro.saliency import (
    SaliencyParams,
    attribute,
    correlation_motor_map,
    deletion_curve,
    ground_truth_auc,
    map_similarity,
    region_ablation,
    saliency_starts,
)

logger = logging.getLogger(__name__)

SUMMED = "summed"
# Integrated gradients' completeness error above which a map is flagged as unconverged.
IG_DELTA_WARNING = 0.1


@dataclass(frozen=True)
class ExplainParams:
    """Region statistics, deletion curves and controls of one explained run.

    Attributes:
        top_k: neurons counted as most salient (enrichment, overlaps); clipped to N.
        n_permutations: permutations of the region-enrichment test.
        deletion_ks: numbers of neurons masked in the deletion curves (those >= N are dropped).
        deletion_random_repeats: random neuron sets per k.
        seed: seed of the permutations, random deletions and the weight-randomisation control.
        randomised_control: also explain a copy of the model with its weights shuffled within
            each tensor (a model-randomisation sanity check: a faithful map must change).
    """

    top_k: int = 30
    n_permutations: int = 2000
    deletion_ks: tuple[int, ...] = (5, 10, 20, 40, 80)
    deletion_random_repeats: int = 10
    seed: int = 0
    randomised_control: bool = True


@dataclass
class Explanation:
    """Everything `explain_run` finds for one run."""

    importance: xr.Dataset
    regions: pd.DataFrame
    deletion: pd.DataFrame
    scores: dict[str, Any] = field(default_factory=dict)


def split_slices(run_info: Mapping[str, Any]) -> dict[str, slice]:
    """The run's train/val/test frame ranges (from run.json) as slices along the time axis."""
    return {name: slice(s["start"], s["stop"]) for name, s in run_info["splits"].items()}


def randomised_copy(model: nn.Module, seed: int) -> nn.Module:
    """A copy of `model` with every parameter's entries shuffled within its tensor.

    Shuffling keeps each tensor's distribution of values (so activations stay in range) but
    destroys what training learnt: an attribution method that gives the same map for this copy
    explains the architecture or the input, not the trained decoder.
    """
    generator = torch.Generator().manual_seed(seed)
    shuffled = copy.deepcopy(model)
    with torch.no_grad():
        for parameter in shuffled.parameters():
            flat = parameter.detach().reshape(-1)
            order = torch.randperm(flat.numel(), generator=generator).to(flat.device)
            parameter.copy_(flat[order].reshape(parameter.shape))
    return shuffled


def driver_mask(dataset: xr.Dataset, ground_truth: xr.Dataset) -> np.ndarray:
    """Ground-truth driver flags aligned to the dataset's neurons by (plane, roi)."""
    truth = pd.DataFrame(
        {
            "plane": ground_truth["plane"].values.astype(int),
            "roi": ground_truth["roi"].values.astype(int),
            "is_driver": ground_truth["is_driver"].values.astype(bool),
        }
    )
    ours = pd.DataFrame(
        {"plane": dataset["plane"].values.astype(int), "roi": dataset["roi"].values.astype(int)}
    )
    merged = ours.merge(truth, on=["plane", "roi"], how="left", validate="one_to_one")
    if merged["is_driver"].isna().any():
        missing = int(merged["is_driver"].isna().sum())
        raise ValueError(
            f"ground_truth.nc: expected an entry (plane, roi) for every dataset neuron, "
            f"found {missing} dataset neurons without one"
        )
    return merged["is_driver"].to_numpy(dtype=bool)


def explain_run(
    dataset: xr.Dataset,
    model: nn.Module,
    normaliser: InputNormaliser,
    run_info: Mapping[str, Any],
    saliency: SaliencyParams,
    params: ExplainParams,
    *,
    regions: np.ndarray,
    ground_truth: xr.Dataset | None = None,
    device: str | torch.device = "cpu",
) -> Explanation:
    """Attribute, map onto regions, validate and control one trained decoder on one fish.

    Args:
        dataset: the fish's dataset (architecture.md "Dataset netCDF").
        model: the trained torch decoder, (batch, window, N) -> (batch, window, K).
        normaliser: the run's input normaliser (training-split statistics).
        run_info: the run's run.json (splits, window).
        saliency: attribution settings.
        params: region statistics, deletion and control settings.
        regions: (N,) region label per neuron (dataset labels or an atlas lookup).
        ground_truth: the simulator's ground_truth.nc, when the data are synthetic.
        device: where the model runs.

    Returns:
        `Explanation`: ``importance`` (attribute's dataset, plus ``region`` from `regions`),
        ``regions`` (one row per region: mean importance, top-k enrichment, ablation damage),
        ``deletion`` (RMSE vs k masked neurons, top vs random) and ``scores`` (ROC-AUC against
        planted drivers, similarity to the correlation motor map and to the randomised-weights
        control, IG completeness).
    """
    window = int(run_info["window_frames"])
    splits = split_slices(run_info)
    # the same pairing of tail and neural frames as in training
    dataset = lag_neural(dataset, int(run_info["params"].get("neural_lag_frames", 0)))
    x = normaliser.apply(dataset["dff"].values.astype(np.float32)).astype(np.float32)
    y = dataset["tail"].values.astype(np.float32)
    n_neurons = x.shape[1]
    # masking a neuron = setting it to its training mean (0 after z-scoring)
    train_mean = x[splits["train"]].mean(axis=0).astype(np.float32)
    starts = saliency_starts(splits, window, saliency)
    logger.info("explaining %d windows of %d frames, %d neurons", len(starts), window, n_neurons)
    baseline_values = train_mean if saliency.baseline == "training_mean" else None
    importance = attribute(
        model,
        x,
        starts,
        window,
        saliency,
        device,
        neuron_coords=dataset,
        baseline_values=baseline_values,
        segment_names=[str(s) for s in dataset["segment"].values],
    )
    regions = np.asarray(regions, dtype=object).astype(str)
    importance = importance.assign_coords(region=("neuron", regions.astype(object)))
    summed = importance["importance"].sel(target=SUMMED).values.astype(np.float64)

    top_k = min(params.top_k, n_neurons)
    region_table = region_importance(summed, regions)
    labelled = np.isin(regions, ["", "outside"], invert=True)
    if labelled.sum() >= top_k and len(set(regions[labelled])) > 1:
        enrichment = region_enrichment(
            summed, regions, top_k, n_permutations=params.n_permutations, seed=params.seed
        )
        region_table = region_table.merge(enrichment, on="region", how="outer", suffixes=("", "_e"))
    ablation = region_ablation(
        model, x, starts, window, regions, device, y_true=y, baseline_values=train_mean
    )
    region_table = region_table.merge(
        ablation, on="region", how="outer", suffixes=("", "_ablation")
    )

    ks = [k for k in params.deletion_ks if k < n_neurons]
    deletion = deletion_curve(
        model,
        x,
        y,
        starts,
        window,
        np.argsort(-summed, kind="stable"),
        ks,
        n_random=params.deletion_random_repeats,
        seed=params.seed,
        device=device,
        baseline_values=train_mean,
    )

    explained = np.zeros(len(x), dtype=bool)
    for name in saliency.splits:
        explained[splits[name]] = True
    motor_map = correlation_motor_map(x[explained], y[explained])
    delta = float(importance.attrs.get("convergence_delta_relative", float("nan")))
    if delta > IG_DELTA_WARNING:
        logger.warning(
            "integrated gradients did not converge: |sum of attributions - output change| is "
            "%.2f x the output change (n_steps %d); raise saliency.n_steps before trusting "
            "this map",
            delta,
            saliency.n_steps,
        )
    scores: dict[str, Any] = {
        "n_windows": len(starts),
        "n_neurons": n_neurons,
        "top_k": top_k,
        "motor_map": map_similarity(summed, motor_map, top_k=top_k),
        "convergence_delta_relative": delta,
        "ig_converged": bool(delta <= IG_DELTA_WARNING) if np.isfinite(delta) else None,
    }
    if ground_truth is not None:
        drivers = driver_mask(dataset, ground_truth)
        if 0 < drivers.sum() < n_neurons:
            scores["ground_truth"] = {
                "n_drivers": int(drivers.sum()),
                "auc_importance": ground_truth_auc(summed, drivers),
                "auc_motor_map": ground_truth_auc(motor_map, drivers),
                "top_k_drivers": int(drivers[np.argsort(-summed)[:top_k]].sum()),
            }
    if params.randomised_control:
        shuffled = randomised_copy(model, params.seed)
        control = attribute(
            shuffled, x, starts, window, saliency, device, baseline_values=baseline_values
        )
        control_summed = control["importance"].sel(target=SUMMED).values
        scores["randomised_weights"] = map_similarity(summed, control_summed, top_k=top_k)
    return Explanation(importance, region_table, deletion, scores)


def summarise_explanations(
    runs: Sequence[Mapping[str, Any]],
    untrained_twins: Mapping[str, str],
    *,
    top_k: int = 30,
) -> dict[str, pd.DataFrame]:
    """Across runs: region tables, cross-fish consistency and control similarities.

    Args:
        runs: one mapping per explained run with keys model, window, fish, seed, ``regions``
            (DataFrame), ``scores`` (dict) and ``importance`` (xr.Dataset).
        untrained_twins: pretrained model -> its untrained twin.
        top_k: overlap size for map similarities.

    Returns:
        ``regions`` (all runs' region rows with run columns), ``consistency`` (per model, window
        and seed: Kendall's W and mean Spearman of region rankings across fish) and
        ``controls`` (per run: ground-truth AUC, motor-map and randomised-weights similarity,
        and similarity to the untrained twin's map of the same fish, window and seed).
    """
    keys = ("model", "window", "fish", "seed")
    region_rows = [run["regions"].assign(**{k: run[k] for k in keys}) for run in runs]
    regions = pd.concat(region_rows, ignore_index=True) if region_rows else pd.DataFrame()

    consistency = []
    grouped: dict[tuple, dict[str, pd.DataFrame]] = {}
    for run in runs:
        grouped.setdefault((run["model"], run["window"], run["seed"]), {})[str(run["fish"])] = run[
            "regions"
        ]
    for (model, window, seed), tables in grouped.items():
        row: dict[str, Any] = {"model": model, "window": window, "seed": seed}
        if len(tables) >= 2:
            result = rank_consistency(tables, value="mean")
            row.update({k: v for k, v in result.items() if k != "regions"})
        else:
            row.update(n_fish=len(tables), note="consistency needs at least 2 fish")
        consistency.append(row)

    by_key = {tuple(run[k] for k in keys): run for run in runs}
    controls = []
    for run in runs:
        scores = run["scores"]
        row = {k: run[k] for k in keys}
        truth = scores.get("ground_truth", {})
        row.update(
            auc_importance=truth.get("auc_importance", np.nan),
            auc_motor_map=truth.get("auc_motor_map", np.nan),
            top_k_drivers=truth.get("top_k_drivers", np.nan),
            n_drivers=truth.get("n_drivers", np.nan),
            motor_map_spearman=scores["motor_map"]["spearman_rho"],
            randomised_spearman=scores.get("randomised_weights", {}).get("spearman_rho", np.nan),
            randomised_jaccard_top_k=scores.get("randomised_weights", {}).get(
                "jaccard_top_k", np.nan
            ),
            convergence_delta_relative=scores.get("convergence_delta_relative", np.nan),
            ig_converged=scores.get("ig_converged"),
        )
        twin = untrained_twins.get(run["model"])
        twin_run = by_key.get((twin, run["window"], run["fish"], run["seed"])) if twin else None
        if twin_run is not None:
            similarity = map_similarity(
                run["importance"]["importance"].sel(target=SUMMED).values,
                twin_run["importance"]["importance"].sel(target=SUMMED).values,
                top_k=top_k,
            )
            row.update(
                twin=twin,
                twin_spearman=similarity["spearman_rho"],
                twin_jaccard_top_k=similarity["jaccard_top_k"],
            )
        controls.append(row)
    return {
        "regions": regions,
        "consistency": pd.DataFrame(consistency),
        "controls": pd.DataFrame(controls),
    }


def params_from_config(
    saliency: Mapping[str, Any], seed: int = 0
) -> tuple[SaliencyParams, ExplainParams]:
    """Split the config's ``saliency`` section into attribution and explanation parameters."""
    attribution_keys = {f for f in SaliencyParams.__dataclass_fields__}
    explain_keys = {f for f in ExplainParams.__dataclass_fields__} - {"seed"}
    attribution = {k: v for k, v in saliency.items() if k in attribution_keys}
    explanation = {k: v for k, v in saliency.items() if k in explain_keys}
    if "deletion_ks" in explanation:
        explanation["deletion_ks"] = tuple(explanation["deletion_ks"])
    return SaliencyParams(**attribution), ExplainParams(**explanation, seed=seed)
