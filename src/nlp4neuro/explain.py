"""Explain one trained decoder and compare explanations across fish, models and controls.

This module joins the saliency and anatomy stages for the workflow: per run it attributes the
decoder's output to neurons, maps the importance onto regions, checks it against ground truth and
controls, and measures deletion curves; across runs it summarises region rankings and controls.
"""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import xarray as xr
from torch import nn

from nlp4neuro.anatomy import (
    load_affine,
    load_atlas,
    neuron_regions,
    region_enrichment,
    region_importance,
)
from nlp4neuro.config import build, default_value
from nlp4neuro.dataset import write_netcdf
from nlp4neuro.metrics import SUMMED, ground_truth_auc, map_similarity, r2
from nlp4neuro.models.baselines import RidgeDecoder
from nlp4neuro.problem import DecodingProblem
from nlp4neuro.provenance import atomic_output, versions, write_table
from nlp4neuro.saliency import (
    SaliencyParams,
    attribute,
    correlation_motor_map,
    deletion_curve,
    ig_convergence,
    region_ablation,
    saliency_starts,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExplainParams:
    """Region statistics, deletion curves and controls of one explained run.

    Build with `params_from_config` from the validated ``saliency`` section (the schema holds
    every default).

    Attributes:
        top_k: neurons counted as most salient (enrichment, overlaps); clipped to N.
        n_permutations: permutations of the region-enrichment test.
        deletion_ks: numbers of neurons masked in the deletion curves (those >= N are dropped).
        deletion_random_repeats: random neuron sets per k.
        seed: seed of the permutations, random deletions and retraining draws and of the
            weight-randomisation control (the run's training seed).
        randomised_control: also explain a copy of the model with its weights shuffled within
            each tensor (a model-randomisation sanity check: a faithful map must change).
        retrain_random_draws: random neuron sets of the ridge retraining check.
        ridge_alphas: penalties of the ridge baseline map and retraining check (the one with
            the lowest validation RMSE is kept, as for the ridge decoder).
    """

    top_k: int
    n_permutations: int
    deletion_ks: tuple[int, ...]
    deletion_random_repeats: int
    seed: int
    randomised_control: bool
    retrain_random_draws: int
    ridge_alphas: tuple[float, ...]


@dataclass
class Explanation:
    """Everything `explain_run` finds for one run."""

    importance: xr.Dataset
    regions: pd.DataFrame
    deletion: pd.DataFrame
    scores: dict[str, Any]


@dataclass(frozen=True, eq=False)
class _Run:
    """One trained decoder on its lagged recording, as every step of an explanation sees it.

    Attributes:
        model: torch decoder, (batch, window, N) -> (batch, window, K).
        x: (T', N) float32 normalised inputs of the lagged recording.
        y: (T', K) float32 tail angles in rad.
        starts: (n_windows,) int64 starts of the explained windows (positions along T').
        window: window length in frames.
        train_mean: (N,) float32 training-split mean of x: the value of a masked neuron.
        splits: {"train", "val", "test": (n,) int64} frames of x per block (the run's own).
        device: where the model runs.
    """

    model: nn.Module
    x: np.ndarray
    y: np.ndarray
    starts: np.ndarray
    window: int
    train_mean: np.ndarray
    splits: Mapping[str, np.ndarray]
    device: str | torch.device


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
    problem: DecodingProblem,
    saliency: SaliencyParams,
    params: ExplainParams,
    *,
    regions: np.ndarray,
    ground_truth: xr.Dataset | None = None,
    device: str | torch.device = "cpu",
) -> Explanation:
    """Attribute, map onto regions, validate and control one trained decoder on one fish.

    The lag, splits and normaliser are the run's own (its problem.json), never re-derived.

    Args:
        dataset: the fish's dataset (architecture.md "Dataset netCDF"), unlagged; `problem`
            checks it is the one the decoder was trained on.
        model: the trained torch decoder, (batch, window, N) -> (batch, window, K).
        problem: the run's decoding problem (lag, splits, window, normaliser).
        saliency: attribution settings.
        params: region statistics, deletion and control settings.
        regions: (N,) region label per neuron (dataset labels or an atlas lookup).
        ground_truth: the simulator's ground_truth.nc, when the data are synthetic.
        device: where the model runs.

    Returns:
        `Explanation`: ``importance`` (attribute's dataset, plus ``region`` from `regions`),
        ``regions`` (one row per region: mean importance, top-k enrichment, ablation damage),
        ``deletion`` (RMSE vs k masked neurons, top vs random) and ``scores`` (see `_scores`:
        IG convergence, ROC-AUC of the map, the correlation map and the ridge-weight map against
        planted drivers, similarity to the correlation map and to the randomised-weights
        control, and the ridge retraining check). An Integrated Gradients map that misses
        ``saliency.ig_tolerance`` at ``saliency.max_n_steps`` is kept but not scored.
    """
    lagged = problem.lagged(dataset)
    x, y = problem.recording(dataset)
    starts = saliency_starts(problem.segments, problem.window_frames, saliency)
    # masking a neuron = setting it to its training mean (0 after z-scoring)
    train_mean = x[problem.splits["train"]].mean(axis=0).astype(np.float32)
    run = _Run(model, x, y, starts, problem.window_frames, train_mean, problem.splits, device)
    logger.info(
        "explaining %d windows of %d frames, %d neurons", len(starts), run.window, x.shape[1]
    )
    regions = np.asarray(regions, dtype=object).astype(str)
    importance = _attribution(run, saliency, lagged).assign_coords(
        region=("neuron", regions.astype(object))
    )
    summed = importance["importance"].sel(target=SUMMED).values.astype(np.float64)
    top_k = min(params.top_k, x.shape[1])
    region_table = _region_table(run, summed, regions, params, top_k)
    deletion = _deletion(run, summed, params)
    drivers = driver_mask(lagged, ground_truth) if ground_truth is not None else None
    explained = _explained_frames(problem, saliency)
    motor_map = correlation_motor_map(x[explained], y[explained])
    scores = _scores(run, importance, motor_map, drivers, saliency, params)
    return Explanation(importance, region_table, deletion, scores)


def _baseline_values(run: _Run, saliency: SaliencyParams) -> np.ndarray | None:
    """Integrated gradients' baseline: the training mean, or None for all-zero inputs."""
    return run.train_mean if saliency.baseline == "training_mean" else None


def _attribution(run: _Run, saliency: SaliencyParams, lagged: xr.Dataset) -> xr.Dataset:
    """Per-neuron importance of the explained windows, with the lagged recording's coords."""
    return attribute(
        run.model,
        run.x,
        run.starts,
        run.window,
        saliency,
        run.device,
        neuron_coords=lagged,
        baseline_values=_baseline_values(run, saliency),
        segment_names=[str(s) for s in lagged["segment"].values],
    )


def _region_table(
    run: _Run, summed: np.ndarray, regions: np.ndarray, params: ExplainParams, top_k: int
) -> pd.DataFrame:
    """One row per region: mean importance, top-k enrichment (when testable), ablation damage.

    Enrichment needs at least `top_k` labelled neurons in more than one region ("" and
    "outside" are unlabelled).
    """
    table = region_importance(summed, regions)
    labelled = np.isin(regions, ["", "outside"], invert=True)
    if labelled.sum() >= top_k and len(set(regions[labelled])) > 1:
        enrichment = region_enrichment(
            summed, regions, top_k, n_permutations=params.n_permutations, seed=params.seed
        )
        table = table.merge(enrichment, on="region", how="outer", suffixes=("", "_e"))
    ablation = region_ablation(
        run.model,
        run.x,
        run.starts,
        run.window,
        regions,
        run.device,
        y_true=run.y,
        baseline_values=run.train_mean,
    )
    return table.merge(ablation, on="region", how="outer", suffixes=("", "_ablation"))


def _deletion(run: _Run, summed: np.ndarray, params: ExplainParams) -> pd.DataFrame:
    """RMSE with the k most important vs k random neurons masked, for each k < N."""
    ks = [k for k in params.deletion_ks if k < run.x.shape[1]]
    return deletion_curve(
        run.model,
        run.x,
        run.y,
        run.starts,
        run.window,
        np.argsort(-summed, kind="stable"),
        ks,
        n_random=params.deletion_random_repeats,
        seed=params.seed,
        device=run.device,
        baseline_values=run.train_mean,
    )


def _explained_frames(problem: DecodingProblem, saliency: SaliencyParams) -> np.ndarray:
    """(T',) bool: rows of the lagged recording inside the explained splits."""
    explained = np.zeros(problem.n_frames, dtype=bool)
    for name in saliency.splits:
        explained[problem.splits[name]] = True
    return explained


def _scores(
    run: _Run,
    importance: xr.Dataset,
    motor_map: np.ndarray,
    drivers: np.ndarray | None,
    saliency: SaliencyParams,
    params: ExplainParams,
) -> dict[str, Any]:
    """scores.json of one run: counts, IG convergence, the map's scores beside its baselines.

    The baselines (correlation map, ridge-weight map, ridge without random neurons) are always
    scored. The map's own scores (motor-map similarity, ``auc_importance``, ``top_k_drivers``,
    ridge without the top-k, randomised-weights similarity) are None when the map is excluded
    (an Integrated Gradients map that missed its tolerance), with ``excluded_reason``.
    """
    summed = importance["importance"].sel(target=SUMMED).values.astype(np.float64)
    top_k = min(params.top_k, run.x.shape[1])
    convergence = ig_convergence(importance)
    excluded = convergence["converged"] is False
    if excluded:
        logger.warning("importance map left out of every score: %s", convergence["excluded_reason"])
    scored = None if excluded else summed
    ridge = _fit_ridge(run, params.ridge_alphas, np.arange(run.x.shape[1]))
    ridge_map = np.abs(ridge.coef_.sum(axis=0))
    scores: dict[str, Any] = {
        "n_windows": len(run.starts),
        "n_neurons": run.x.shape[1],
        "top_k": top_k,
        "method": importance.attrs["method"],
        "ig_converged": convergence["converged"],
        "excluded": excluded,
        "excluded_reason": convergence["excluded_reason"],
        "convergence_note": convergence["note"],
        "convergence_delta_relative": convergence["convergence_delta_relative"],
        "ig_tolerance": convergence["ig_tolerance"],
        "ig_n_steps": convergence["n_steps_used"],
        "ig_steps_tried": convergence["steps_tried"],
        "motor_map": None if excluded else map_similarity(summed, motor_map, top_k=top_k),
        "ridge_alpha": ridge.alpha_,
        "retraining": _retraining(run, scored, params, top_k),
    }
    if drivers is not None and 0 < drivers.sum() < drivers.size:
        scores["ground_truth"] = _ground_truth_scores(
            drivers, scored, {"motor_map": motor_map, "ridge_weights": ridge_map}, top_k
        )
    if params.randomised_control:
        scores["randomised_weights"] = (
            {"excluded_reason": "the map itself is excluded"}
            if excluded
            else _randomised_control(run, summed, saliency, params, top_k)
        )
    return scores


def _ground_truth_scores(
    drivers: np.ndarray,
    summed: np.ndarray | None,
    baselines: Mapping[str, np.ndarray],
    top_k: int,
) -> dict[str, Any]:
    """ROC-AUC of the map (None when excluded) and of each baseline map against planted
    drivers (``auc_<baseline name>``), and the drivers among the map's top k.

    `drivers` (N,) bool holds both drivers and non-drivers.
    """
    return {
        "n_drivers": int(drivers.sum()),
        "auc_importance": None if summed is None else ground_truth_auc(summed, drivers),
        **{f"auc_{name}": ground_truth_auc(values, drivers) for name, values in baselines.items()},
        "top_k_drivers": (
            None
            if summed is None
            else int(drivers[np.argsort(-summed, kind="stable")[:top_k]].sum())
        ),
    }


def _fit_ridge(run: _Run, alphas: Sequence[float], keep: np.ndarray) -> RidgeDecoder:
    """The project's ridge decoder (penalty chosen on the validation frames) from the `keep`
    neurons' training frames to the K tail angles (rad), as the ridge baseline is trained.

    Ridge is linear in its targets: at the chosen penalty, the sum of its K outputs is the
    ridge predictor of the summed tail, with weights ``coef_.sum(axis=0)`` (rad per unit input).
    """
    train, val = run.splits["train"], run.splits["val"]
    ridge = RidgeDecoder(keep.size, run.y.shape[1], tuple(alphas))
    return ridge.fit(run.x[train][:, keep], run.y[train], run.x[val][:, keep], run.y[val])


def _ridge_test_r2(run: _Run, alphas: Sequence[float], dropped: np.ndarray) -> float:
    """Test R² of the summed tail of a ridge refitted without the `dropped` neurons."""
    keep = np.setdiff1d(np.arange(run.x.shape[1]), dropped)
    test = run.splits["test"]
    predicted = _fit_ridge(run, alphas, keep).predict(run.x[test][:, keep])
    summed = run.y[test].sum(axis=1, keepdims=True)
    return float(r2(summed, predicted.sum(axis=1, keepdims=True))[0])


def _retraining(
    run: _Run, summed: np.ndarray | None, params: ExplainParams, top_k: int
) -> dict[str, Any]:
    """Ridge refitted without the k most salient vs k random neurons: test R² of the summed
    tail (k = top_k, at most N - 1; random sets drawn from all N neurons, as in the deletion
    curves, with the run's seed). The top-k entries are None when the map is excluded."""
    n_neurons = run.x.shape[1]
    k = min(top_k, n_neurons - 1)
    rng = np.random.default_rng(params.seed)
    full = _ridge_test_r2(run, params.ridge_alphas, np.array([], dtype=np.int64))
    random = [
        _ridge_test_r2(run, params.ridge_alphas, rng.choice(n_neurons, size=k, replace=False))
        for _ in range(params.retrain_random_draws)
    ]
    top = None
    if summed is not None:
        top = _ridge_test_r2(run, params.ridge_alphas, np.argsort(-summed, kind="stable")[:k])
    logger.info("retraining check: test R2 %.4g in full, %s without the top %d, %.4g without "
                "%d random", full, top, k, float(np.mean(random)), k)  # fmt: skip
    return {
        "k": k,
        "n_random_draws": len(random),
        "r2_full": full,
        "r2_without_top_k": top,
        "r2_without_random_k": float(np.mean(random)),
        "r2_without_random_k_sd": float(np.std(random, ddof=1)) if len(random) > 1 else 0.0,
        "r2_drop_top_k": None if top is None else full - top,
        "r2_drop_random_k": full - float(np.mean(random)),
    }


def _randomised_control(
    run: _Run, summed: np.ndarray, saliency: SaliencyParams, params: ExplainParams, top_k: int
) -> dict[str, Any]:
    """Similarity of the map to that of a weight-shuffled copy of the model (should be low);
    only the ``excluded_reason`` when the copy's own IG map misses its tolerance."""
    shuffled = randomised_copy(run.model, params.seed)
    control = attribute(
        shuffled,
        run.x,
        run.starts,
        run.window,
        saliency,
        run.device,
        baseline_values=_baseline_values(run, saliency),
    )
    convergence = ig_convergence(control)
    if convergence["converged"] is False:
        reason = f"randomised-weights map: {convergence['excluded_reason']}"
        logger.warning("randomised-weights control not scored: %s", reason)
        return {"excluded_reason": reason}
    control_summed = control["importance"].sel(target=SUMMED).values
    return map_similarity(summed, control_summed, top_k=top_k)


def configured_regions(dataset: xr.Dataset, atlas: Mapping[str, Any]) -> np.ndarray:
    """(N,) region label per neuron: an atlas lookup, or the dataset's own labels.

    Args:
        dataset: the fish's dataset (neuron coords x_um, y_um, z_um and, without an atlas,
            region).
        atlas: the validated config section ``saliency.atlas`` (kind null = the dataset's own
            labels).
    """
    affine = load_affine(atlas["affine"]) if atlas["affine"] is not None else None
    if atlas["kind"] is None:
        return neuron_regions(dataset, None, affine)
    loaded = load_atlas(
        atlas["kind"],
        atlas["path"],
        names_path=atlas["labels"],
        voxel_size_um=atlas["voxel_size_um"],
        masks=atlas["masks"],
    )
    return neuron_regions(dataset, loaded, affine)


def write_explanation(
    explanation: Explanation,
    problem: DecodingProblem,
    *,
    importance: str | Path,
    regions: str | Path,
    deletion: str | Path,
    scores: str | Path,
    parameters: Mapping[str, Any],
) -> None:
    """Write one run's explanation, each file atomically: the importance netCDF, the region and
    deletion tables (each with a provenance sidecar) and the scores JSON.

    The sidecars and the scores record `parameters` plus the run's split segments (``run``, rows of
    the lagged recording), fold and neural lag.
    """
    segments = {
        name: [{"start": p.start, "stop": p.stop} for p in parts]
        for name, parts in problem.segments.items()
    }
    record = {
        **parameters,
        "run": segments,
        "fold": problem.fold,
        "neural_lag_frames": problem.params.neural_lag_frames,
    }
    write_netcdf(explanation.importance, importance)
    write_table(explanation.regions, regions, record)
    write_table(explanation.deletion, deletion, record)
    with atomic_output(scores) as tmp:
        tmp.write_text(
            json.dumps(
                {**explanation.scores, "parameters": record, "versions": versions()},
                indent=2,
                default=str,
            )
        )


def params_from_config(
    saliency: Mapping[str, Any], seed: int
) -> tuple[SaliencyParams, ExplainParams]:
    """Attribution and explanation parameters from the validated ``saliency`` section.

    Args:
        saliency: `nlp4neuro.config.section("saliency", ...)` (or the workflow's validated
            config["saliency"]).
        seed: the run's training seed (permutations, random deletions, weight shuffling).
    """
    alphas = saliency["ridge_alphas"]
    if alphas is None:
        alphas = default_value("models", "*", "ridge_alphas")
    explanation = build(
        ExplainParams,
        saliency,
        "saliency",
        seed=int(seed),
        deletion_ks=tuple(saliency["deletion_ks"]),
        ridge_alphas=tuple(float(a) for a in alphas),
    )
    return SaliencyParams.from_config(saliency), explanation
