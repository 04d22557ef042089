"""Metrics against hand-computed values, and the tidy tables built from prediction files."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from sklearn.metrics import r2_score

from nlp4neuro import metrics
from nlp4neuro.errors import ConfigError, InputFileError

# The 3 x 2 example used throughout (frames x segments, radians).
TRUE = np.array([[0.0, 1.0], [1.0, 2.0], [2.0, 6.0]])
PRED = np.array([[1.0, 1.0], [1.0, 4.0], [2.0, 3.0]])
# errors pred - true: segment 0 [1, 0, 0], segment 1 [0, 2, -3]
# segment 0: SE [1, 0, 0] -> mean 1/3;  segment 1: SE [0, 4, 9] -> mean 13/3


def make_predictions(
    true_test: np.ndarray,
    predicted_test: np.ndarray,
    *,
    model: str = "gpt2",
    kind: str = "llm",
    fish: int = 9,
    seed: int = 0,
    fold: int = 0,
    window_frames: int = 10,
    frame_rate_hz: float = 1.1,
    n_val: int = 2,
    stimulus: list[str] | None = None,
) -> xr.Dataset:
    """A predictions dataset as in architecture.md: `n_val` val frames, then the test frames.

    Val frames get a huge error so that any test metric that includes them is visibly wrong.
    """
    n_test, n_segments = true_test.shape
    true_val = np.zeros((n_val, n_segments))
    predicted_val = np.full((n_val, n_segments), 100.0)
    frame = np.arange(n_val + n_test) + 50
    n_time = frame.size
    return xr.Dataset(
        {
            "predicted": (
                ("time", "segment"),
                np.vstack([predicted_val, predicted_test]).astype("f4"),
            ),
            "true": (("time", "segment"), np.vstack([true_val, true_test]).astype("f4")),
        },
        coords={
            "time": ("time", frame / frame_rate_hz),
            "frame": ("time", frame),
            "split": ("time", np.array(["val"] * n_val + ["test"] * n_test)),
            "stimulus": ("time", np.array(stimulus if stimulus is not None else [""] * n_time)),
            "segment": ("segment", [f"theta_{k:02d}" for k in range(n_segments)]),
        },
        attrs={
            "model": model,
            "kind": kind,
            "fish": fish,
            "seed": seed,
            "fold": fold,
            "window_frames": window_frames,
            "params": "{}",
            "versions": "{}",
        },
    )


# ---------------------------------------------------------------------------------------------
# Array metrics
# ---------------------------------------------------------------------------------------------


def test_rmse_and_mae_per_segment_by_hand():
    # RMSE: sqrt(1/3), sqrt(13/3). MAE: |errors| [1,0,0] -> 1/3; [0,2,3] -> 5/3.
    np.testing.assert_allclose(metrics.rmse(TRUE, PRED), [math.sqrt(1 / 3), math.sqrt(13 / 3)])
    np.testing.assert_allclose(metrics.mae(TRUE, PRED), [1 / 3, 5 / 3])


def test_pooled_rmse_and_mae_by_hand_differ_from_mean_of_segments():
    # Pooled RMSE: sqrt((1 + 0 + 0 + 0 + 4 + 9) / 6) = sqrt(7/3), the paper's number.
    assert metrics.rmse_pooled(TRUE, PRED) == pytest.approx(math.sqrt(7 / 3))
    # It is the root of the mean of per-segment MSEs, not the mean of per-segment RMSEs.
    assert metrics.rmse_pooled(TRUE, PRED) != pytest.approx(metrics.rmse(TRUE, PRED).mean())
    # Pooled MAE: (1 + 0 + 0 + 0 + 2 + 3) / 6 = 1.
    assert metrics.mae_pooled(TRUE, PRED) == pytest.approx(1.0)


def test_r2_by_hand_with_test_mean():
    # segment 0: mean true 1, SStot = 1 + 0 + 1 = 2, SSres = 1 -> 1 - 1/2 = 0.5
    # segment 1: mean true 3, SStot = (1-3)² + (2-3)² + (6-3)² = 4 + 1 + 9 = 14,
    #            SSres = 0 + 4 + 9 = 13 -> 1 - 13/14 = 1/14
    np.testing.assert_allclose(metrics.r2(TRUE, PRED), [0.5, 1 / 14])
    # pooled: 1 - (1 + 13) / (2 + 14) = 1/8, sklearn's variance-weighted R²
    assert metrics.r2_pooled(TRUE, PRED) == pytest.approx(1 / 8)
    assert metrics.r2_pooled(TRUE, PRED) == pytest.approx(
        r2_score(TRUE, PRED, multioutput="variance_weighted")
    )
    np.testing.assert_allclose(
        metrics.r2(TRUE, PRED), r2_score(TRUE, PRED, multioutput="raw_values")
    )


def test_r2_of_perfect_and_mean_predictions():
    np.testing.assert_allclose(metrics.r2(TRUE, TRUE), [1.0, 1.0])
    mean_prediction = np.broadcast_to(TRUE.mean(axis=0), TRUE.shape)
    np.testing.assert_allclose(metrics.r2(TRUE, mean_prediction), [0.0, 0.0], atol=1e-12)
    assert metrics.r2_pooled(TRUE, mean_prediction) == pytest.approx(0.0, abs=1e-12)
    assert metrics.r2_pooled(TRUE, TRUE) == pytest.approx(1.0)


def test_pearson_by_hand():
    # segment 0: t - mean = [-1, 0, 1], p - mean = [-1/3, -1/3, 2/3]
    #   sum tp = 1/3 + 0 + 2/3 = 1, sum t² = 2, sum p² = 2/3 -> r = 1 / sqrt(4/3) = sqrt(3)/2
    # segment 1: t - mean = [-2, -1, 3], p - mean (8/3) = [-5/3, 4/3, 1/3]
    #   sum tp = 10/3 - 4/3 + 1 = 3, sum t² = 14, sum p² = 42/9 = 14/3 -> r = 3 sqrt(3) / 14
    np.testing.assert_allclose(
        metrics.pearson_r(TRUE, PRED), [math.sqrt(3) / 2, 3 * math.sqrt(3) / 14]
    )
    # pooled after centring each segment: sum tp = 4, sum t² = 16, sum p² = 16/3 -> sqrt(3)/4
    assert metrics.pearson_r_pooled(TRUE, PRED) == pytest.approx(math.sqrt(3) / 4)


def test_pearson_anticorrelated_is_minus_one_and_constant_is_nan_without_warning():
    true = np.array([[0.0, 1.0], [1.0, 2.0], [2.0, 3.0]])
    np.testing.assert_allclose(metrics.pearson_r(true, -true), [-1.0, -1.0])
    constant = np.ones_like(true)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = metrics.pearson_r(true, constant)
        r2 = metrics.r2(constant, true)
        pooled = metrics.pearson_r_pooled(constant, true)
    assert np.all(np.isnan(r))
    assert np.all(np.isnan(r2))
    assert math.isnan(pooled)


def test_one_dimensional_series_gives_scalar():
    # summed angles of the example: true [1, 3, 8], predicted [2, 5, 5], errors [1, 2, -3]
    assert float(metrics.rmse(TRUE.sum(1), PRED.sum(1))) == pytest.approx(math.sqrt(14 / 3))
    assert metrics.rmse(TRUE.sum(1), PRED.sum(1)).shape == ()


def test_shape_mismatch_is_rejected():
    with pytest.raises(ValueError, match="same shape"):
        metrics.rmse(TRUE, PRED[:2])


# ---------------------------------------------------------------------------------------------
# score_predictions
# ---------------------------------------------------------------------------------------------


def _value(table: pd.DataFrame, metric: str, segment: str) -> float:
    row = table[(table["metric"] == metric) & (table["segment"] == segment)]
    assert len(row) == 1
    return float(row["value"].iloc[0])


def test_score_predictions_on_hand_made_dataset():
    ds = make_predictions(TRUE, PRED, model="gpt2", fish=11, seed=3, window_frames=11)
    table = metrics.score_predictions(ds)
    assert list(table.columns) == list(metrics.TABLE_COLUMNS)
    # 4 metrics x (2 segments + pooled + summed)
    assert len(table) == 16
    assert set(table["segment"]) == {"theta_00", "theta_01", "pooled", "summed"}
    assert (table["model"] == "gpt2").all() and (table["fish"] == 11).all()
    assert (table["seed"] == 3).all() and (table["window_frames"] == 11).all()
    assert (table["n_frames"] == 3).all() and (table["split"] == "test").all()
    # window_s = 11 frames / 1.1 Hz = 10 s, derived from the time and frame coords
    assert table["window_s"].iloc[0] == pytest.approx(10.0)
    # the val frames (error 100) are not scored
    assert _value(table, "rmse", "theta_00") == pytest.approx(math.sqrt(1 / 3))
    assert _value(table, "rmse", "pooled") == pytest.approx(math.sqrt(7 / 3))
    assert _value(table, "mae", "theta_01") == pytest.approx(5 / 3)
    assert _value(table, "r2", "pooled") == pytest.approx(1 / 8)
    # summed: true [1, 3, 8], predicted [2, 5, 5]: errors [1, 2, -3] -> RMSE sqrt(14/3), MAE 2
    # R²: mean 4, SStot = 9 + 1 + 16 = 26, SSres = 14 -> 12/26
    # r: t - 4 = [-3, -1, 4], p - 4 = [-2, 1, 1]: 9 / sqrt(26 * 6)
    assert _value(table, "rmse", "summed") == pytest.approx(math.sqrt(14 / 3))
    assert _value(table, "mae", "summed") == pytest.approx(2.0)
    assert _value(table, "r2", "summed") == pytest.approx(12 / 26)
    assert _value(table, "pearson_r", "summed") == pytest.approx(9 / math.sqrt(156))


def test_score_predictions_val_split():
    ds = make_predictions(TRUE, PRED)
    table = metrics.score_predictions(ds, split="val")
    # val: true 0, predicted 100 everywhere
    assert _value(table, "rmse", "pooled") == pytest.approx(100.0)


def test_score_predictions_bad_inputs_name_the_problem():
    ds = make_predictions(TRUE, PRED)
    with pytest.raises(InputFileError, match="'true'"):
        metrics.score_predictions(ds.drop_vars("true"))
    with pytest.raises(InputFileError, match="split == 'train'"):
        metrics.score_predictions(ds, split="train")
    no_attr = ds.copy()
    del no_attr.attrs["seed"]
    with pytest.raises(InputFileError, match="seed"):
        metrics.score_predictions(no_attr)


def test_diverged_predictions_score_nan():
    ds = make_predictions(TRUE, np.full_like(PRED, np.nan))
    table = metrics.score_predictions(ds)
    assert table.loc[table["metric"] == "rmse", "value"].isna().all()


def test_metrics_table_reads_files_and_rejects_duplicates(tmp_path):
    paths = []
    for seed in (0, 1):
        path = tmp_path / f"seed{seed}.nc"
        make_predictions(TRUE, PRED + seed, seed=seed).to_netcdf(path)
        paths.append(path)
    table = metrics.metrics_table(paths)
    assert sorted(table["seed"].unique()) == [0, 1]
    seed1 = table[table["seed"] == 1]
    # seed 1 predicts PRED + 1: errors segment 0 [2, 1, 1] -> RMSE sqrt(6/3)
    assert _value(seed1, "rmse", "theta_00") == pytest.approx(math.sqrt(2))
    with pytest.raises(InputFileError, match="one predictions file per run"):
        metrics.metrics_table([paths[0], paths[0]])
    with pytest.raises(InputFileError, match="no such file"):
        metrics.metrics_table([tmp_path / "missing.nc"])


# ---------------------------------------------------------------------------------------------
# summarise and skill
# ---------------------------------------------------------------------------------------------


def _table(rows: list[tuple], metric: str = "rmse") -> pd.DataFrame:
    """(model, fish, seed, value) or (model, fish, seed, fold, value) rows of a minimal metrics
    table with window 10, pooled (fold 0 when not given)."""
    columns = ["model", "fish", "seed", "value"]
    if rows and len(rows[0]) == 5:
        columns = ["model", "fish", "seed", "fold", "value"]
    frame = pd.DataFrame(rows, columns=columns)
    if "fold" not in frame:
        frame["fold"] = 0
    frame["kind"] = "llm"
    frame["horizon"] = 0
    frame["window_frames"] = 10
    frame["window_s"] = 10 / 1.1
    frame["split"] = "test"
    frame["metric"] = metric
    frame["segment"] = "pooled"
    frame["n_frames"] = 3
    return frame[list(metrics.TABLE_COLUMNS)]


def test_summarise_averages_seeds_within_fish():
    table = _table(
        [
            ("gpt2", 9, 0, 0.10),
            ("gpt2", 9, 1, 0.30),
            ("gpt2", 10, 0, 0.05),
            ("gpt2", 11, 0, 0.20),
            ("gpt2", 11, 1, np.nan),  # a diverged run
        ]
    )
    summary = metrics.summarise(table)
    assert list(summary.columns) == list(metrics.SUMMARY_COLUMNS)
    summary = summary.set_index("fish")
    # fish 9: mean (0.1 + 0.3) / 2 = 0.2; sd sqrt((0.1² + 0.1²) / (2 - 1)) = sqrt(0.02)
    assert summary.loc[9, "value"] == pytest.approx(0.2)
    assert summary.loc[9, "seed_sd"] == pytest.approx(math.sqrt(0.02))
    assert summary.loc[9, "n_seeds"] == 2
    # fish 10: one seed, no sd
    assert summary.loc[10, "value"] == pytest.approx(0.05)
    assert math.isnan(summary.loc[10, "seed_sd"]) and summary.loc[10, "n_seeds"] == 1
    # fish 11: the NaN seed is counted as failed and left out of the mean
    assert summary.loc[11, "value"] == pytest.approx(0.20)
    assert summary.loc[11, "n_seeds"] == 1 and summary.loc[11, "n_seeds_failed"] == 1


def test_summarise_averages_folds_within_each_seed_before_seeds():
    table = _table(
        [
            ("gpt2", 9, 0, 0, 0.10),
            ("gpt2", 9, 0, 1, 0.20),
            ("gpt2", 9, 0, 2, 0.60),  # seed 0: (0.1 + 0.2 + 0.6) / 3 = 0.3
            ("gpt2", 9, 1, 0, 0.10),
            ("gpt2", 9, 1, 1, 0.10),
            ("gpt2", 9, 1, 2, 0.10),  # seed 1: 0.1
            ("gpt2", 10, 0, 0, 0.40),
            ("gpt2", 10, 0, 1, np.nan),  # a diverged fold fails its seed
            ("gpt2", 10, 0, 2, 0.40),
            ("gpt2", 10, 1, 0, 0.20),
            ("gpt2", 10, 1, 1, 0.20),
            ("gpt2", 10, 1, 2, 0.20),
        ]
    )
    # the window in seconds estimated from each fold's own frames may differ in the last digits
    table.loc[table["fold"] == 1, "window_s"] += 1e-12
    summary = metrics.summarise(table).set_index("fish")
    assert summary.index.is_unique  # one row per fish all the same
    # fish 9: seeds 0.3 and 0.1 -> 0.2, sd sqrt(0.02), not the mean and sd of 6 fold values
    assert summary.loc[9, "value"] == pytest.approx(0.2)
    assert summary.loc[9, "seed_sd"] == pytest.approx(math.sqrt(0.02))
    assert summary.loc[9, "n_seeds"] == 2 and summary.loc[9, "n_folds"] == 3
    assert summary.loc[10, "value"] == pytest.approx(0.2)
    assert summary.loc[10, "n_seeds"] == 1 and summary.loc[10, "n_seeds_failed"] == 1


def test_skill_pairs_each_fold_with_the_reference_of_that_fold():
    table = _table(
        [
            ("gpt2", 9, 0, 0, 0.05),
            ("gpt2", 9, 0, 1, 0.09),
            ("ridge", 9, 0, 0, 0.10),
            ("ridge", 9, 0, 1, 0.30),
        ]
    )
    result = metrics.skill(table, "ridge").set_index("fold")
    # fold 0: 1 - 0.05 / 0.10 = 0.5; fold 1: 1 - 0.09 / 0.30 = 0.7
    assert result.loc[0, "value"] == pytest.approx(0.5)
    assert result.loc[1, "value"] == pytest.approx(0.7)
    assert metrics.summarise(result.reset_index()).loc[0, "value"] == pytest.approx(0.6)


def test_skill_against_reference_with_one_seed():
    table = _table(
        [
            ("gpt2", 9, 0, 0.05),
            ("gpt2", 9, 1, 0.08),
            ("ridge", 9, 0, 0.10),  # deterministic: one seed, reused for gpt2 seed 1
            ("gpt2", 10, 0, 0.03),
            ("ridge", 10, 0, 0.04),
            ("ridge", 10, 1, 0.02),
        ]
    )
    result = metrics.skill(table, "ridge").set_index(["fish", "seed"])
    assert set(result["model"]) == {"gpt2"}
    assert (result["metric"] == "rmse_skill_vs_ridge").all()
    # 1 - 0.05 / 0.10 = 0.5;  seed 1 falls back to the ridge seed mean 0.10: 1 - 0.08/0.10 = 0.2
    assert result.loc[(9, 0), "value"] == pytest.approx(0.5)
    assert result.loc[(9, 1), "value"] == pytest.approx(0.2)
    # fish 10 seed 0 matches ridge seed 0: 1 - 0.03 / 0.04 = 0.25
    assert result.loc[(10, 0), "value"] == pytest.approx(0.25)
    # the skill table summarises like any metric
    assert len(metrics.summarise(result.reset_index())) == 2


def test_skill_errors():
    table = _table([("gpt2", 9, 0, 0.05)])
    with pytest.raises(ConfigError, match="reference_model"):
        metrics.skill(table, "ridge")
    with pytest.raises(ConfigError, match="metric"):
        metrics.skill(table, "gpt2", metric="r2")
    with pytest.raises(InputFileError, match="missing"):
        metrics.summarise(table.drop(columns="seed"))


# ---------------------------------------------------------------------------------------------
# Pooled MSE and scores of importance maps


def test_mse_by_hand_any_shape():
    # squared errors 1, 0, 0 and 0, 4, 9: 14 / 6
    assert metrics.mse(PRED, TRUE) == pytest.approx(14 / 6)
    assert metrics.mse(TRUE, PRED) == metrics.mse(PRED, TRUE)
    assert metrics.mse(PRED.reshape(1, 3, 2), TRUE.reshape(1, 3, 2)) == pytest.approx(14 / 6)
    assert metrics.rmse_pooled(TRUE, PRED) == pytest.approx(math.sqrt(metrics.mse(PRED, TRUE)))
    with pytest.raises(ValueError, match="same shape"):
        metrics.mse(PRED, TRUE[:2])


def test_top_k_indices_breaks_ties_by_lower_index():
    assert metrics.top_k_indices([1.0, 3.0, 3.0, 2.0], 3).tolist() == [1, 2, 3]
    assert metrics.top_k_indices([1.0, 3.0], 5).tolist() == [1, 0]


def test_map_similarity_and_auc_by_hand() -> None:
    a = np.array([5.0, 4.0, 3.0, 2.0, 1.0])
    same = metrics.map_similarity(a, 2 * a, top_k=2)
    assert same["spearman_rho"] == pytest.approx(1.0) and same["jaccard_top_k"] == 1.0
    flipped = metrics.map_similarity(a, -a, top_k=2)
    assert flipped["spearman_rho"] == pytest.approx(-1.0) and flipped["jaccard_top_k"] == 0.0
    # top-2 {0, 1} vs {0, 2}: intersection 1, union 3
    assert metrics.map_similarity(a, [5, 1, 4, 2, 0], top_k=2)["jaccard_top_k"] == pytest.approx(
        1 / 3
    )

    importance = np.array([0.9, 0.1, 0.8, 0.2])
    assert metrics.ground_truth_auc(importance, [True, False, False, False]) == 1.0
    # driver at 0.8 beats 0.1 and 0.2 but loses to 0.9: 2 of 3 pairs
    assert metrics.ground_truth_auc(importance, [False, False, True, False]) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="both driver and non-driver"):
        metrics.ground_truth_auc(importance, [False] * 4)


def test_kendalls_w_by_hand() -> None:
    assert metrics.kendalls_w([[1, 2, 3, 4]] * 3) == pytest.approx(1.0)
    # rank sums (6, 7, 8, 9), S = 5: W = 12 * 5 / (9 * 60)
    assert metrics.kendalls_w([[1, 2, 3, 4], [1, 2, 3, 4], [4, 3, 2, 1]]) == pytest.approx(1 / 9)
    # ties: ranks (1.5, 1.5, 3) and (1, 2, 3); S = 6.5, T = 6: W = 78 / (4 * 24 - 2 * 6)
    assert metrics.kendalls_w([[1, 1, 2], [1, 2, 3]]) == pytest.approx(78 / 84)
    # perfectly opposed pair: rank sums all equal
    assert metrics.kendalls_w([[1, 2, 3], [3, 2, 1]]) == pytest.approx(0.0)
    with pytest.raises(ValueError, match="raters"):
        metrics.kendalls_w([[1, 2, 3]])


def test_rank_consistency_across_fish() -> None:
    def table(values: dict[str, float]) -> pd.DataFrame:
        return pd.DataFrame({"region": list(values), "mean": list(values.values())})

    same = {f"fish{i}": table({"Pt": 3.0, "Hb": 2.0, "Cb": 1.0, "Te": 0.5}) for i in range(3)}
    result = metrics.rank_consistency(same)
    assert result["kendall_w"] == pytest.approx(1.0)
    assert result["mean_spearman"] == pytest.approx(1.0)
    assert result["n_fish"] == 3 and result["regions"] == ["Cb", "Hb", "Pt", "Te"]
    # chi2 = m (n - 1) W = 3 * 3 * 1
    assert result["chi2"] == pytest.approx(9.0)

    mixed = [
        table({"a": 1, "b": 2, "c": 3, "d": 4, "extra": 9}),
        table({"a": 1, "b": 2, "c": 3, "d": 4}),
        table({"a": 4, "b": 3, "c": 2, "d": 1}),
    ]
    result = metrics.rank_consistency(mixed)
    assert result["regions"] == ["a", "b", "c", "d"]  # only regions shared by every fish
    assert result["kendall_w"] == pytest.approx(1 / 9)
    # pairwise Spearman: +1, -1, -1
    assert result["mean_spearman"] == pytest.approx(-1 / 3)
    with pytest.raises(ValueError, match="at least 2 fish"):
        metrics.rank_consistency([mixed[0]])


def test_rank_agreement_by_hand():
    result = metrics.rank_agreement([[1, 2, 3, 4], [1, 2, 3, 4], [4, 3, 2, 1]])
    assert result["kendall_w"] == pytest.approx(1 / 9)
    # chi2 = m (n - 1) W = 3 * 3 / 9 = 1 on 3 df: P(X > 1) = erfc(sqrt(1/2)) + sqrt(2/pi) e^-1/2
    assert result["chi2"] == pytest.approx(1.0)
    expected_p = math.erfc(math.sqrt(0.5)) + math.sqrt(2 / math.pi) * math.exp(-0.5)
    assert result["p_value"] == pytest.approx(expected_p)
    # pairwise Spearman: +1, -1, -1
    assert result["mean_spearman"] == pytest.approx(-1 / 3)


def test_rank_consistency_ranks_only_regions_with_a_value_in_every_fish():
    fish1 = pd.DataFrame({"region": ["a", "b", "c", "unlabelled"], "mean": [3, 2, 1, np.nan]})
    fish2 = pd.DataFrame({"region": ["a", "b", "c", "unlabelled"], "mean": [1, 2, np.nan, 5]})
    shared, rankable = metrics.rankable_regions([fish1, fish2], "mean")
    assert shared == ["a", "b", "c", "unlabelled"] and rankable == ["a", "b"]
    result = metrics.rank_consistency({"1": fish1, "2": fish2})
    # a, b ranked (2, 1) and (1, 2): rank sums (3, 3), S = 0
    assert result["regions"] == ["a", "b"] and result["kendall_w"] == pytest.approx(0.0)
    alone = pd.DataFrame({"region": ["unlabelled"], "mean": [np.nan]})
    with pytest.raises(ValueError, match=r"at least 2 regions .* found \[\]"):
        metrics.rank_consistency([alone, alone])
    with pytest.raises(ValueError, match="expected columns region, median"):
        metrics.rank_consistency([fish1, fish2], value="median")


# ---------------------------------------------------------------------------------------------
# Training convergence


def test_convergence_status_by_hand():
    def curve(model: str, val: list[float], first_epoch: int = 1) -> pd.DataFrame:
        epochs = np.arange(first_epoch, first_epoch + len(val))
        return pd.DataFrame({"model": model, "fish": 1, "epoch": epochs, "val_loss": val})

    curves = pd.concat(
        [
            curve("ridge", [0.5], first_epoch=0),
            curve("stopped", [1.0, 0.8, 0.85, 0.9]),  # best at epoch 2 of 4
            curve("flat", [1.0, 0.8, 0.796]),  # last epoch best, -0.5 % < 1 %
            curve("improving", [1.0, 0.8, 0.78]),  # last epoch best, -2.5 %
            curve("diverged", [np.nan, np.nan]),
        ]
    )
    table = metrics.convergence_table(curves, ["model", "fish"], 0.01).set_index("model")
    assert table.loc["ridge", "status"] == "closed form" and table.loc["ridge", "converged"]
    assert table.loc["stopped", "status"] == "stopped improving"
    assert table.loc["stopped", "best_epoch"] == 2 and table.loc["stopped", "epochs_run"] == 4
    assert table.loc["stopped", "last_val_change"] == pytest.approx(0.05 / 0.85)
    assert table.loc["flat", "status"] == "flat"
    assert table.loc["flat", "last_val_change"] == pytest.approx(-0.005)
    assert table.loc["improving", "status"] == "still improving"
    assert not table.loc["improving", "converged"]
    assert table.loc["diverged", "status"] == "diverged"
    assert not table.loc["diverged", "converged"]
    assert set(table["status"]) <= set(metrics.CONVERGENCE_STATUS)
    with pytest.raises(InputFileError, match="val_loss"):
        metrics.convergence_table(curves.drop(columns="val_loss"), ["model"], 0.01)
