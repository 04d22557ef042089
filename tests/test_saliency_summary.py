"""Tests of nlp4neuro.saliency_summary: the summary across explained runs, without torch."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from nlp4neuro.saliency_summary import CONSISTENCY_COLUMNS, summarise_explanations


def run(model, fish, importance, means, regions=("a", "b", "c"), seed=0, scores=None):
    """One explained run as the summarise_saliency script reads it back."""
    ds = xr.Dataset(
        {"importance": (("target", "neuron"), np.asarray([importance], dtype=float))},
        coords={"target": ["summed"]},
    )
    table = pd.DataFrame({"region": list(regions), "mean": means})
    scores = scores or {"motor_map": {"spearman_rho": 0.5}, "convergence_delta_relative": 0.01}
    return {"model": model, "window": 5, "fish": fish, "seed": seed, "importance": ds,
            "regions": table, "scores": scores}  # fmt: skip


def scored(auc, motor, ridge, drop_top, drop_random):
    """scores.json of a converged IG map (keys as explain_run writes them)."""
    return {
        "method": "integrated_gradients", "ig_converged": True, "excluded": False,
        "excluded_reason": None, "convergence_delta_relative": 0.01, "ig_n_steps": 16,
        "motor_map": {"spearman_rho": 0.5},
        "ground_truth": {"n_drivers": 2, "auc_importance": auc, "auc_motor_map": motor,
                         "auc_ridge_weights": ridge, "top_k_drivers": 2},
        "retraining": {"k": 2, "r2_full": 0.9, "r2_without_top_k": 0.9 - drop_top,
                       "r2_without_random_k": 0.9 - drop_random, "r2_drop_top_k": drop_top,
                       "r2_drop_random_k": drop_random},
        "randomised_weights": {"spearman_rho": 0.1, "jaccard_top_k": 0.0},
    }  # fmt: skip


REASON = "completeness error 0.31 > tolerance 0.05 at the cap of 256 steps"


def unconverged(motor, ridge, drop_random):
    """scores.json of an excluded IG map: its own scores null, baselines present."""
    return {
        "method": "integrated_gradients", "ig_converged": False, "excluded": True,
        "excluded_reason": REASON, "convergence_delta_relative": 0.31, "ig_n_steps": 256,
        "motor_map": None,
        "ground_truth": {"n_drivers": 2, "auc_importance": None, "auc_motor_map": motor,
                         "auc_ridge_weights": ridge, "top_k_drivers": None},
        "retraining": {"k": 2, "r2_full": 0.9, "r2_without_top_k": None,
                       "r2_without_random_k": 0.9 - drop_random, "r2_drop_top_k": None,
                       "r2_drop_random_k": drop_random},
        "randomised_weights": {"excluded_reason": "the map itself is excluded"},
    }  # fmt: skip


def test_summarise_explanations_pairs_twins_and_measures_consistency():
    runs = [
        run("llm", "1", [3, 2, 1, 0], [3.0, 2.0, 1.0]),
        run("llm", "2", [3, 2, 1, 0], [3.0, 2.0, 1.0]),
        run("llm_untrained", "1", [0, 1, 2, 3], [1.0, 2.0, 3.0]),
    ]
    summary = summarise_explanations(runs, {"llm": "llm_untrained"}, top_k=2)
    consistency = summary["consistency"].set_index("model")
    # two fish ranking the regions identically: Kendall's W = 1
    assert consistency.loc["llm", "kendall_w"] == pytest.approx(1.0)
    assert "at least 2 fish" in consistency.loc["llm_untrained", "note"]
    assert list(summary["consistency"].columns) == list(CONSISTENCY_COLUMNS)
    controls = summary["controls"]
    fish1 = controls[(controls["model"] == "llm") & (controls["fish"] == "1")].iloc[0]
    # the twin's map is the exact reverse: Spearman -1, top-2 sets disjoint
    assert fish1["twin_spearman"] == pytest.approx(-1.0)
    assert fish1["twin_jaccard_top_k"] == 0.0
    assert len(summary["regions"]) == 9


def test_top_k_reaches_the_twin_similarity():
    # maps [4, 3, 2, 1, 0] and [4, 2, 3, 0, 1]: top-1 sets {0} and {0} agree (Jaccard 1);
    # top-2 {0, 1} vs {0, 2}: 1 shared of 3
    runs = [
        run("llm", "1", [4, 3, 2, 1, 0], [3.0, 2.0, 1.0]),
        run("llm_untrained", "1", [4, 2, 3, 0, 1], [1.0, 2.0, 3.0]),
    ]
    twins = {"llm": "llm_untrained"}
    for top_k, jaccard in ((1, 1.0), (2, 1 / 3)):
        controls = summarise_explanations(runs, twins, top_k=top_k)["controls"]
        assert controls.set_index("model").loc["llm", "twin_jaccard_top_k"] == pytest.approx(
            jaccard
        )


def test_unlabelled_neurons_only_make_consistency_not_testable():
    # issue 11: genuine suite2p output has no region labels; region ablation then reports one
    # "unlabelled" group whose mean importance is NaN (region_importance leaves it out)
    runs = [
        run("llm", fish, [3, 2, 1, 0], [np.nan], regions=("unlabelled",)) for fish in ("1", "2")
    ]
    summary = summarise_explanations(runs, {}, top_k=2)
    row = summary["consistency"].iloc[0]
    assert row["note"].startswith("not testable: fewer than 2 labelled regions shared by all fish")
    assert "['unlabelled']" in row["note"]
    assert np.isnan(row["kendall_w"]) and row["n_fish"] == 2 and row["n_regions"] == 0
    assert len(summary["controls"]) == 2 and len(summary["regions"]) == 2


def test_consistency_ranks_only_regions_with_a_value_in_every_fish():
    # "unlabelled" (NaN mean) and "c" (missing in fish 2) are left out; a and b remain
    runs = [
        run("llm", "1", [0, 1], [2.0, 1.0, 5.0, np.nan], regions=("a", "b", "c", "unlabelled")),
        run("llm", "2", [0, 1], [4.0, 3.0, np.nan], regions=("a", "b", "unlabelled")),
    ]
    row = summarise_explanations(runs, {}, top_k=1)["consistency"].iloc[0]
    assert row["n_regions"] == 2 and row["kendall_w"] == pytest.approx(1.0)
    assert pd.isna(row["note"])
    # one labelled region left: not testable, and the note lists what was found
    runs[1]["regions"] = pd.DataFrame({"region": ["a", "unlabelled"], "mean": [1.0, np.nan]})
    row = summarise_explanations(runs, {}, top_k=1)["consistency"].iloc[0]
    assert "found ['a', 'unlabelled']" in row["note"]


def test_module_does_not_import_torch():
    code = "import sys, nlp4neuro.saliency_summary; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_unconverged_maps_are_marked_and_left_out_of_means_and_consistency():
    runs = [
        run("llm", "1", [3, 2, 1, 0], [3.0, 2.0, 1.0], scores=scored(0.9, 0.8, 0.7, 0.5, 0.1)),
        run("llm", "2", [3, 2, 1, 0], [3.0, 2.0, 1.0], scores=scored(0.7, 0.6, 0.5, 0.3, 0.1)),
        run("llm", "3", [0, 1, 2, 3], [1.0, 2.0, 3.0], scores=unconverged(0.1, 0.2, 0.4)),
        run("llm_untrained", "3", [0, 1, 2, 3], [1.0, 2.0, 3.0],
            scores=scored(0.5, 0.1, 0.2, 0.0, 0.1)),
    ]  # fmt: skip
    summary = summarise_explanations(runs, {"llm": "llm_untrained"}, top_k=2)
    controls = summary["controls"].set_index(["model", "fish"])
    # the AUC of every map stands beside the correlation-map and ridge-weight AUCs
    row = controls.loc[("llm", "1")]
    assert (row["auc_importance"], row["auc_motor_map"], row["auc_ridge_weights"]) == (
        0.9, 0.8, 0.7,
    )  # fmt: skip
    assert row["retrain_r2_drop_top_k"] == 0.5 and row["retrain_r2_drop_random_k"] == 0.1
    # the unconverged map is listed with its reason, its own scores NaN, baselines kept
    bad = controls.loc[("llm", "3")]
    assert bad["excluded"] and not bad["ig_converged"] and bad["excluded_reason"] == REASON
    assert np.isnan(bad["auc_importance"]) and np.isnan(bad["retrain_r2_drop_top_k"])
    assert np.isnan(bad["motor_map_spearman"]) and np.isnan(bad["randomised_spearman"])
    assert bad["auc_ridge_weights"] == 0.2 and bad["retrain_r2_drop_random_k"] == 0.4
    # its twin comparison is not made (the twin's map is fine, this one is not)
    assert bad["twin"] == "llm_untrained" and np.isnan(bad["twin_spearman"])
    # means over fish 1 and 2 only, baselines over the same fish
    means = summary["controls_by_model"].set_index("model").loc["llm"]
    assert (means["n_runs"], means["n_scored"], means["n_unconverged"]) == (3, 2, 1)
    assert means["mean_auc_importance"] == pytest.approx(0.8)
    assert means["mean_auc_motor_map"] == pytest.approx(0.7)
    assert means["mean_auc_ridge_weights"] == pytest.approx(0.6)
    assert means["mean_retrain_r2_drop_top_k"] == pytest.approx(0.4)
    assert means["mean_retrain_r2_drop_random_k"] == pytest.approx(0.1)
    assert means["note"] == f"fish 3 seed 0 left out: {REASON}"
    # fish 3 ranks the regions the other way; left out, the two others agree perfectly
    consistency = summary["consistency"].set_index("model").loc["llm"]
    assert consistency["n_fish"] == 2 and consistency["n_unconverged"] == 1
    assert consistency["kendall_w"] == pytest.approx(1.0)


def test_a_lone_fish_left_out_says_so_in_the_consistency_note():
    runs = [
        run("llm", "1", [3, 2, 1, 0], [3.0, 2.0, 1.0], scores=scored(0.9, 0.8, 0.7, 0.5, 0.1)),
        run("llm", "2", [3, 2, 1, 0], [3.0, 2.0, 1.0], scores=unconverged(0.1, 0.2, 0.4)),
    ]
    row = summarise_explanations(runs, {}, top_k=2)["consistency"].iloc[0]
    assert row["n_fish"] == 1 and row["n_unconverged"] == 1
    assert row["note"] == (
        "consistency needs at least 2 fish (1 fish left out: IG map unconverged)"
    )
