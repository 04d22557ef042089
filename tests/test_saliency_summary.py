"""Tests of nlp4neuro.saliency_summary: the summary across explained runs, without torch."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from nlp4neuro.saliency_summary import CONSISTENCY_COLUMNS, summarise_explanations


def run(model, fish, importance, means, regions=("a", "b", "c"), seed=0):
    """One explained run as the summarise_saliency script reads it back."""
    ds = xr.Dataset(
        {"importance": (("target", "neuron"), np.asarray([importance], dtype=float))},
        coords={"target": ["summed"]},
    )
    table = pd.DataFrame({"region": list(regions), "mean": means})
    scores = {"motor_map": {"spearman_rho": 0.5}, "convergence_delta_relative": 0.01}
    return {"model": model, "window": 5, "fish": fish, "seed": seed, "importance": ds,
            "regions": table, "scores": scores}  # fmt: skip


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
