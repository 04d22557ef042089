"""Fish-level paired statistics on known numbers."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from nlp4neuro.errors import ConfigError, InputFileError
from nlp4neuro.statistics import (
    COMPARISON_COLUMNS,
    MIN_FISH_FOR_T,
    VERDICT_COLUMNS,
    default_pairs,
    model_statistics,
    paired_comparisons,
    summary_pairs,
    verdict_table,
    wilcoxon_min_fish,
    wilcoxon_min_p,
)

# The significance level the hand-computed expectations below assume (the schema's default).
ALPHA = 0.05
FISH6 = [9, 10, 11, 12, 13, 14]
A6 = np.array([0.050, 0.052, 0.048, 0.055, 0.051, 0.049])
# b - a = [4, 2, 6, -1, 3, 5] x 1e-3
B6 = A6 + np.array([0.004, 0.002, 0.006, -0.001, 0.003, 0.005])


def summary_from(values: dict[str, dict[int, float]], window: int = 10) -> pd.DataFrame:
    """A summarise()-shaped table from {model: {fish: value}} (metric rmse, pooled)."""
    rows = [
        {
            "model": model,
            "fish": fish,
            "window_frames": window,
            "window_s": window / 1.1,
            "split": "test",
            "metric": "rmse",
            "segment": "pooled",
            "value": value,
            "seed_sd": 0.0,
            "n_seeds": 3,
        }
        for model, by_fish in values.items()
        for fish, value in by_fish.items()
    ]
    return pd.DataFrame(rows)


def compare(summary: pd.DataFrame, pairs, **options) -> pd.DataFrame:
    """`paired_comparisons` at ALPHA, seed 0 and 200 resamples unless `options` say otherwise."""
    return paired_comparisons(
        summary, pairs=pairs, **{"alpha": ALPHA, "seed": 0, "n_bootstrap": 200, **options}
    )


def six_fish(**extra: np.ndarray) -> pd.DataFrame:
    models = {"a": A6, "b": B6, **extra}
    return summary_from({m: dict(zip(FISH6, v, strict=True)) for m, v in models.items()})


def test_six_fish_against_hand_and_scipy():
    table = compare(six_fish(), [("a", "b")], n_bootstrap=2000)
    assert list(table.columns) == list(COMPARISON_COLUMNS)
    row = table.iloc[0]
    # a - b = -[4, 2, 6, -1, 3, 5] x 1e-3
    assert row["n_fish"] == 6 and row["n_dropped"] == 0
    assert row["mean_diff"] == pytest.approx(-19 / 6 * 1e-3)
    assert row["mean_a"] == pytest.approx(A6.mean()) and row["mean_b"] == pytest.approx(B6.mean())
    # t = mean / (sd / sqrt(n)); sd² = sum of squared deviations 30.8333e-6 / 5
    sd = math.sqrt(30.833333333e-6 / 5)
    t_hand = (-19 / 6 * 1e-3) / (sd / math.sqrt(6))
    assert row["t_stat"] == pytest.approx(t_hand, rel=1e-6)
    assert row["t_p"] == pytest.approx(2 * stats.t.sf(abs(t_hand), df=5), rel=1e-6)
    assert row["t_p"] == pytest.approx(stats.ttest_rel(A6, B6).pvalue)
    assert row["t_testable"] and row["t_min_fish"] == 3
    # Cohen's dz = mean / sd (ddof=1), i.e. t / sqrt(n)
    assert row["cohens_dz"] == pytest.approx((-19 / 6 * 1e-3) / sd, rel=1e-6)
    # Wilcoxon: |diff| ranks 4, 2, 6, 1, 3, 5; only the +1 difference is positive -> W = 1.
    # Sign patterns with W+ <= 1: {} and {rank 1} -> 2 of 64, two-sided p = 2 * 2/64 = 0.0625.
    assert row["wilcoxon_stat"] == 1
    assert row["wilcoxon_p"] == pytest.approx(0.0625)
    assert row["wilcoxon_min_p"] == pytest.approx(2 / 64) and row["wilcoxon_testable"]
    assert row["wilcoxon_min_fish"] == 6
    # a has the lower error in 5 of 6 fish
    assert row["n_a_better"] == 5
    assert row["sign_summary"] == "a better in 5 of 6 fish"
    assert row["fish"] == "9,10,11,12,13,14"
    # the percentile CI brackets the mean difference and excludes 0 for these data
    assert row["ci_low"] < row["mean_diff"] < row["ci_high"] < 0
    assert row["ci_level"] == pytest.approx(0.95)
    # one comparison: Holm leaves p unchanged
    assert row["t_p_holm"] == pytest.approx(row["t_p"])
    assert row["t_holm_n_tests"] == 1 and row["wilcoxon_holm_n_tests"] == 1
    assert row["holm_family"] == "rmse/pooled, every pair x window (1 x 1 rows)"
    assert row["note"] == ""


def test_holm_across_all_rows_by_hand():
    c6 = A6 + np.array([0.001, -0.002, 0.0005, 0.002, -0.001, 0.0015])
    table = compare(six_fish(c=c6), [("a", "b"), ("a", "c"), ("b", "c")])
    raw = table["t_p"].to_numpy()
    expected_raw = [stats.ttest_rel(x, y).pvalue for x, y in ((A6, B6), (A6, c6), (B6, c6))]
    np.testing.assert_allclose(raw, expected_raw)
    # Holm by hand: sort ascending p(1) <= p(2) <= p(3); adjusted = running max of (m - i) p(i)
    order = np.argsort(raw)
    adjusted = np.empty(3)
    running = 0.0
    for i, index in enumerate(order):
        running = max(running, (3 - i) * raw[index])
        adjusted[index] = min(1.0, running)
    np.testing.assert_allclose(table["t_p_holm"], adjusted)
    # the smallest raw p stays the smallest adjusted p, and every adjusted p >= raw p
    assert np.argmin(table["t_p_holm"]) == np.argmin(raw)
    assert np.all(table["t_p_holm"].to_numpy() >= raw)
    # Wilcoxon column corrected as its own family of 3 tests
    w_raw = table["wilcoxon_p"].to_numpy()
    assert np.all(table["wilcoxon_p_holm"].to_numpy() >= w_raw)
    assert table["wilcoxon_p_holm"].min() == pytest.approx(min(1.0, 3 * w_raw.min()))
    assert list(table["t_significant"]) == list(table["t_p_holm"] < 0.05)


@pytest.mark.parametrize(("n_fish", "min_p"), [(5, 0.0625), (3, 0.25)])
def test_too_few_fish_for_wilcoxon_says_so_and_reports_no_p(n_fish, min_p):
    fish = FISH6[:n_fish]
    summary = summary_from(
        {
            "a": dict(zip(fish, A6[:n_fish], strict=True)),
            "b": dict(zip(fish, B6[:n_fish], strict=True)),
        }
    )
    row = compare(summary, [("a", "b")], n_bootstrap=500).iloc[0]
    assert row["n_fish"] == n_fish
    assert math.isnan(row["wilcoxon_p"]) and math.isnan(row["wilcoxon_p_holm"])
    assert not row["wilcoxon_testable"] and not row["wilcoxon_significant"]
    assert row["wilcoxon_min_p"] == pytest.approx(min_p)
    assert (
        f"not testable: Wilcoxon cannot reach p<0.05 with {n_fish} fish (min p = {min_p:.4g}), "
        "needs >= 6 non-zero differences"
    ) in row["note"]
    # the paired t-test is still computed, and the CI (n >= 3)
    assert row["t_p"] == pytest.approx(stats.ttest_rel(A6[:n_fish], B6[:n_fish]).pvalue)
    assert np.isfinite(row["ci_low"]) and np.isfinite(row["ci_high"])


def test_alpha_decides_wilcoxon_testability():
    # 5 fish: min p = 2/32 = 0.0625 cannot reach 0.05 but can reach 0.1.
    summary = summary_from(
        {
            "a": dict(zip(FISH6[:5], A6[:5], strict=True)),
            "b": dict(zip(FISH6[:5], B6[:5], strict=True)),
        }
    )
    row = compare(summary, [("a", "b")], alpha=0.1).iloc[0]
    assert row["wilcoxon_testable"] and row["note"] == ""
    assert row["wilcoxon_p"] == pytest.approx(stats.wilcoxon(A6[:5], B6[:5], method="exact").pvalue)


def fish_with_differences(steps: list[int], window: int = 10) -> pd.DataFrame:
    """Fish 1..n with a = 0.05 and b = a + steps x 1e-3, so a - b = -steps x 1e-3."""
    fish = range(1, len(steps) + 1)
    return summary_from(
        {
            "a": dict.fromkeys(fish, 0.05),
            "b": {f: 0.05 + s * 1e-3 for f, s in zip(fish, steps, strict=True)},
        },
        window=window,
    )


def test_two_fish_by_hand_effect_size_but_no_test():
    # d = a - b = [-1, -4] x 1e-3: mean -2.5e-3, sd = |d1 - d2| / sqrt(2) = 3e-3 / sqrt(2)
    row = compare(fish_with_differences([1, 4]), [("a", "b")]).iloc[0]
    assert row["mean_diff"] == pytest.approx(-2.5e-3)
    assert row["cohens_dz"] == pytest.approx(-5 / (3 * math.sqrt(2)))  # -1.1785
    # no test where it cannot mean anything: no statistic, no p, not in the Holm family
    assert MIN_FISH_FOR_T == 3 and row["t_min_fish"] == 3 and not row["t_testable"]
    for column in ("t_stat", "t_p", "t_p_holm", "wilcoxon_p", "wilcoxon_p_holm", "ci_low"):
        assert math.isnan(row[column]), column
    assert not row["t_significant"] and not row["wilcoxon_significant"]
    assert row["t_holm_n_tests"] == 0 and row["wilcoxon_holm_n_tests"] == 0
    assert row["wilcoxon_min_p"] == pytest.approx(0.5)
    assert row["note"] == (
        "bootstrap CI not computable with 2 fish (need >= 3); "
        "not testable: paired t needs >= 3 fish, found 2; "
        "not testable: Wilcoxon cannot reach p<0.05 with 2 fish (min p = 0.5), "
        "needs >= 6 non-zero differences"
    )
    assert row["sign_summary"] == "a better in 2 of 2 fish"


def test_three_fish_by_hand():
    # d = [-1, -2, -3] x 1e-3: mean -2e-3, sd 1e-3, dz = -2, t = dz sqrt(3) with df 2
    row = compare(fish_with_differences([1, 2, 3]), [("a", "b")], n_bootstrap=20000).iloc[0]
    t_hand = -2 * math.sqrt(3)
    assert row["cohens_dz"] == pytest.approx(-2.0)
    assert row["t_stat"] == pytest.approx(t_hand)
    # t with 2 df: CDF = 1/2 + t / (2 sqrt(t² + 2)), so two-sided p = 1 - |t| / sqrt(t² + 2)
    assert row["t_p"] == pytest.approx(1 - abs(t_hand) / math.sqrt(t_hand**2 + 2))  # 0.0742
    # The 27 resamples of 3 fish are equally likely; all three the same fish has 1/27 = 3.7 %
    # > 2.5 %, so the 95 % percentile interval is [min d, max d].
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((-3e-3, -1e-3))
    assert row["wilcoxon_min_p"] == pytest.approx(0.25) and math.isnan(row["wilcoxon_p"])
    assert row["note"].startswith("not testable: Wilcoxon cannot reach p<0.05 with 3 fish")


def test_five_fish_by_hand():
    # d = [-1 .. -5] x 1e-3: mean -3e-3, sd sqrt(10 / 4) e-3, t = -3 / sqrt(2.5 / 5) = -sqrt(18)
    row = compare(fish_with_differences([1, 2, 3, 4, 5]), [("a", "b")], n_bootstrap=20000)
    row = row.iloc[0]
    t_hand = -math.sqrt(18)
    assert row["cohens_dz"] == pytest.approx(-3 / math.sqrt(2.5))  # -1.897
    assert row["t_stat"] == pytest.approx(t_hand)
    # t with 4 df: CDF = 1/2 + t (t² + 6) / (2 (t² + 4)^1.5)
    assert row["t_p"] == pytest.approx(1 - abs(t_hand) * (t_hand**2 + 6) / (t_hand**2 + 4) ** 1.5)
    # Exact bootstrap distribution: the sum of 5 draws from {1..5} is <= 8 in 56 and <= 9 in 126
    # of 3125 resamples (1.8 % < 2.5 % < 4.0 %), so the 2.5 % quantile of the mean is 9 / 5 and,
    # by symmetry, the 97.5 % quantile 21 / 5.
    sums = np.array([sum(s) for s in itertools.product(range(1, 6), repeat=5)])
    assert (np.sum(sums <= 8), np.sum(sums <= 9), np.sum(sums >= 21)) == (56, 126, 126)
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((-4.2e-3, -1.8e-3))
    assert row["t_testable"] and not row["wilcoxon_testable"]


def test_holm_family_is_the_testable_rows():
    # one pair in three windows with 5, 3 and 2 fish: the 2-fish row has no p and is left out
    summary = pd.concat(
        [
            fish_with_differences([1, 2, 3, 4, 5], window=10),
            fish_with_differences([1, 2, 3], window=20),
            fish_with_differences([1, 4], window=30),
        ],
        ignore_index=True,
    )
    table = compare(summary, [("a", "b")])
    assert list(table["t_holm_n_tests"]) == [2, 2, 2]
    assert set(table["holm_family"]) == {"rmse/pooled, every pair x window (1 x 3 rows)"}
    p5 = 1 - math.sqrt(18) * 24 / 22**1.5  # 0.0132, the 5-fish p above
    p3 = 1 - math.sqrt(12) / math.sqrt(14)  # 0.0742, the 3-fish p above
    # Holm with m = 2: smallest p x 2, then max(that, next p x 1)
    assert table["t_p_holm"].iloc[0] == pytest.approx(2 * p5)
    assert table["t_p_holm"].iloc[1] == pytest.approx(max(2 * p5, p3))
    assert math.isnan(table["t_p_holm"].iloc[2])
    assert list(table["t_significant"]) == [True, False, False]


@pytest.mark.parametrize(("alpha", "n"), [(0.05, 6), (0.0625, 6), (0.1, 5), (0.01, 8)])
def test_wilcoxon_min_fish(alpha, n):
    # 2 / 2**n < alpha first at n: 2/64 < 0.05; 2/32 = 0.0625 is not < 0.0625; 2/256 < 0.01
    assert wilcoxon_min_fish(alpha) == n
    assert wilcoxon_min_p(n) < alpha <= wilcoxon_min_p(n - 1)


def test_wilcoxon_min_p():
    assert wilcoxon_min_p(5) == pytest.approx(0.0625)
    assert wilcoxon_min_p(6) == pytest.approx(0.03125)
    assert wilcoxon_min_p(0) == 1.0


def test_ci_reproducible_with_seed_and_matches_scipy():
    # 12 fish with irregular values, so that resampled percentiles differ between seeds
    fish = list(range(12))
    a = np.random.default_rng(1).normal(0.05, 0.005, size=12)
    b = a + np.random.default_rng(2).normal(0.002, 0.003, size=12)
    summary = summary_from(
        {"a": dict(zip(fish, a, strict=True)), "b": dict(zip(fish, b, strict=True))}
    )

    def ci(seed: int) -> tuple[float, float]:
        row = compare(summary, [("a", "b")], n_bootstrap=1000, seed=seed).iloc[0]
        return row["ci_low"], row["ci_high"]

    assert ci(7) == ci(7)
    assert ci(7) != ci(8)
    direct = stats.bootstrap(
        (a - b,), np.mean, n_resamples=1000, method="percentile", rng=np.random.default_rng(7)
    ).confidence_interval
    assert ci(7) == pytest.approx((direct.low, direct.high))


def test_unpaired_fish_are_dropped_and_counted():
    values_a = dict(zip(FISH6, A6, strict=True))  # fish 9..14
    values_b = dict(zip([9, 10, 11, 12, 13, 15], B6, strict=True))  # 15 instead of 14
    values_b[13] = np.nan  # a diverged fish counts as missing
    row = compare(summary_from({"a": values_a, "b": values_b}), [("a", "b")]).iloc[0]
    assert row["n_fish"] == 4 and row["n_dropped"] == 3
    assert row["fish"] == "9,10,11,12"
    assert "3 fish dropped (not present for both models): 13, 14, 15" in row["note"]
    assert row["mean_diff"] == pytest.approx(float(np.mean(A6[:4] - B6[:4])))


def test_higher_is_better_flips_the_sign_count():
    row = compare(six_fish(), [("a", "b")], lower_is_better=False).iloc[0]
    assert row["sign_summary"] == "a better in 1 of 6 fish"


def test_one_row_per_pair_and_window():
    summary = pd.concat([six_fish(), six_fish().assign(window_frames=20)], ignore_index=True)
    table = compare(summary, [("a", "b")])
    assert list(table["window_frames"]) == [10, 20]
    # two identical windows: raw p equal, Holm over 2 rows doubles it
    assert table["t_p_holm"].iloc[0] == pytest.approx(min(1.0, 2 * table["t_p"].iloc[0]))


def test_default_pairs_flags_twins():
    pairs = default_pairs(
        ["gpt2_untrained", "gpt2", "lstm"], {"gpt2": "gpt2_untrained", "bert": "bert_untrained"}
    )
    assert list(map(tuple, pairs[["model_a", "model_b", "contrast"]].to_numpy())) == [
        ("gpt2", "gpt2_untrained", "pretrained_vs_untrained"),
        ("gpt2_untrained", "lstm", "model_vs_model"),
        ("gpt2", "lstm", "model_vs_model"),
        ("bert", "bert_untrained", "pretrained_vs_untrained"),
    ]


def test_contrast_column_is_carried_through():
    summary = six_fish()
    pairs = default_pairs(["a", "b"], {"a": "b"})
    table = compare(summary, pairs)
    assert list(table["contrast"]) == ["pretrained_vs_untrained"]


def test_bad_inputs():
    summary = six_fish()
    with pytest.raises(ConfigError, match="pairs"):
        compare(summary, [("a", "gpt9")])
    with pytest.raises(ConfigError, match="metric/segment"):
        compare(summary, [("a", "b")], metric="mae")
    with pytest.raises(InputFileError, match="averages folds and seeds"):
        compare(pd.concat([summary, summary]), [("a", "b")])
    with pytest.raises(InputFileError, match="missing"):
        compare(summary.drop(columns="fish"), [("a", "b")])


def test_bca_interval_and_identical_differences():
    row = compare(six_fish(), [("a", "b")], ci_method="BCa", n_bootstrap=2000)
    row = row.iloc[0]
    assert row["ci_method"] == "BCa"
    assert row["ci_low"] < row["mean_diff"] < row["ci_high"]
    # b = a + 0.01 in every fish: CI collapses to the difference, t-test undefined, Wilcoxon exact
    constant = six_fish(c=A6 + 0.01)
    row = compare(constant, [("a", "c")]).iloc[0]
    assert row["ci_low"] == pytest.approx(-0.01) and row["ci_high"] == pytest.approx(-0.01)
    assert math.isnan(row["t_p"]) and math.isnan(row["cohens_dz"]) and not row["t_testable"]
    assert row["note"] == (
        "paired differences identical in every fish: t-test and Cohen's dz undefined"
    )
    assert row["wilcoxon_p"] == pytest.approx(2 / 64)
    with pytest.raises(ConfigError, match="ci_method"):
        compare(constant, [("a", "c")], ci_method="studentized")


def test_default_pairs_labels_every_rung_and_ridge_pretrained_first():
    pairs = default_pairs(
        ["gpt2_block", "gpt2_untrained", "lstm", "gpt2", "ridge"],
        {"gpt2": "gpt2_untrained"},
        {"gpt2": {"untrained": "gpt2_untrained", "block": "gpt2_block"}},
        ["ridge"],
    )
    rows = list(map(tuple, pairs[["model_a", "model_b", "contrast"]].to_numpy()))
    assert rows == [
        ("gpt2_block", "gpt2_untrained", "model_vs_model"),
        ("gpt2_block", "lstm", "model_vs_model"),
        ("gpt2", "gpt2_block", "pretrained_vs_block"),
        ("gpt2_block", "ridge", "model_vs_model"),
        ("gpt2_untrained", "lstm", "model_vs_model"),
        ("gpt2", "gpt2_untrained", "pretrained_vs_untrained"),
        ("gpt2_untrained", "ridge", "model_vs_model"),
        ("lstm", "gpt2", "model_vs_model"),
        ("lstm", "ridge", "model_vs_model"),
        ("gpt2", "ridge", "pretrained_vs_ridge"),
    ]
    # the ladder alone (no twins mapping) gives the same labels
    alone = default_pairs(["gpt2", "gpt2_untrained"], {}, {"gpt2": {"untrained": "gpt2_untrained"}})
    assert list(alone["contrast"]) == ["pretrained_vs_untrained"]


def test_default_pairs_refuses_inconsistent_references():
    with pytest.raises(ConfigError, match=r"ladders\.gpt2\.untrained"):
        default_pairs(["gpt2"], {"gpt2": "gpt2_untrained"}, {"gpt2": {"untrained": "other"}})
    with pytest.raises(ConfigError, match=r"ladders\.gpt2"):
        default_pairs(["gpt2"], {}, {"gpt2": {"block": "gpt2"}})
    with pytest.raises(ConfigError, match="untrained_twins"):
        default_pairs(["gpt2"], {"gpt2": "gpt2"})


def test_summary_pairs_keeps_what_the_summary_holds():
    summary = summary_from({"gpt2": {1: 0.1}, "gpt2_untrained": {1: 0.2}, "ridge": {1: 0.3}})
    summary["kind"] = summary["model"].map({"ridge": "ridge"}).fillna("llm")
    pairs = summary_pairs(
        summary,
        untrained_twins={"gpt2": "gpt2_untrained", "bert": "bert_untrained"},
        ladders={"gpt2": {"untrained": "gpt2_untrained", "block": "gpt2_block"}},
    )
    assert list(map(tuple, pairs[["model_a", "model_b", "contrast"]].to_numpy())) == [
        ("gpt2", "gpt2_untrained", "pretrained_vs_untrained"),
        ("gpt2", "ridge", "pretrained_vs_ridge"),
        ("gpt2_untrained", "ridge", "model_vs_model"),
    ]


def verdict_summary() -> pd.DataFrame:
    """llm vs ridge: d = -steps (llm better); llm vs untrained: d = +steps (llm worse).

    Window 10 has 5 fish (steps 1..5) for both; window 20 has 3 fish (steps 1..3) for ridge but
    only 2 of them for the untrained twin; window 30 has 2 fish (steps 1, 4).
    """
    tables = []
    for window, steps, twin_fish in ((10, [1, 2, 3, 4, 5], 5), (20, [1, 2, 3], 2), (30, [1, 4], 2)):
        fish = range(1, len(steps) + 1)
        values = {
            "llm": dict.fromkeys(fish, 0.05),
            "ridge": {f: 0.05 + s * 1e-3 for f, s in zip(fish, steps, strict=True)},
            "llm_untrained": {
                f: 0.05 - s * 1e-3 for f, s in zip(fish, steps, strict=True) if f <= twin_fish
            },
        }
        tables.append(summary_from(values, window=window))
    return pd.concat(tables, ignore_index=True)


def test_verdict_for_five_three_and_two_fish_by_hand():
    pairs = [
        ("llm", "ridge", "pretrained_vs_ridge"),
        ("llm", "llm_untrained", "pretrained_vs_untrained"),
    ]
    statistics = compare(verdict_summary(), pairs, n_bootstrap=20000)
    verdict = verdict_table(statistics, alpha=ALPHA)
    assert list(verdict.columns) == list(VERDICT_COLUMNS)
    # Testable rows: 5 fish (ridge, twin; p5 each) and 3 fish (ridge; p3) -> Holm with m = 3:
    # 3 p5, max(3 p5, 2 p5), max(3 p5, p3).
    p5 = 1 - math.sqrt(18) * 24 / 22**1.5  # 0.0132, t = sqrt(18) with 4 df (see above)
    p3 = 1 - math.sqrt(12) / math.sqrt(14)  # 0.0742, t = sqrt(12) with 2 df
    expected = [
        ("ridge", 10, -3e-3, 5, 3 * p5, "better (p_holm=0.04, n=5)"),
        ("ridge", 20, -2e-3, 3, max(3 * p5, p3), "no detectable difference (p_holm=0.074, n=3)"),
        ("ridge", 30, -2.5e-3, 2, np.nan, "not testable, needs >= 3 fish (n=2)"),
        ("untrained", 10, 3e-3, 5, 3 * p5, "worse (p_holm=0.04, n=5)"),
        ("untrained", 20, 1.5e-3, 2, np.nan, "not testable, needs >= 3 fish (n=2)"),
        ("untrained", 30, 2.5e-3, 2, np.nan, "not testable, needs >= 3 fish (n=2)"),
    ]
    assert list(verdict["reference"]) == [e[0] for e in expected]
    assert list(verdict["window_frames"]) == [e[1] for e in expected]
    np.testing.assert_allclose(verdict["mean_difference"], [e[2] for e in expected])
    assert list(verdict["n_fish"]) == [e[3] for e in expected]
    np.testing.assert_allclose(verdict["p_holm"], [e[4] for e in expected])
    assert list(verdict["verdict"]) == [e[5] for e in expected]
    assert set(verdict["model"]) == {"llm"} and set(verdict["better_if"]) == {"mean_difference < 0"}
    assert list(verdict["reference_model"][:3]) == ["ridge"] * 3
    # CIs as derived in test_five_fish_by_hand / test_three_fish_by_hand; none with 2 fish
    assert (verdict["ci_low"][0], verdict["ci_high"][0]) == pytest.approx((-4.2e-3, -1.8e-3))
    assert (verdict["ci_low"][3], verdict["ci_high"][3]) == pytest.approx((1.8e-3, 4.2e-3))
    assert (verdict["ci_low"][1], verdict["ci_high"][1]) == pytest.approx((-3e-3, -1e-3))
    assert verdict["ci_low"][[2, 4, 5]].isna().all()
    assert verdict["test"].str.startswith("paired t-test, two-sided, Holm").all()
    # the verdict's significance is the statistics table's, not a second rule
    significant = statistics.set_index(["contrast", "window_frames"])["t_significant"]
    judged = ~verdict["verdict"].str.startswith(("no detectable", "not testable"))
    keys = zip("pretrained_vs_" + verdict["reference"], verdict["window_frames"], strict=True)
    assert list(judged) == [bool(significant[key]) for key in keys]


def test_verdict_by_metric_direction_and_identical_differences():
    # 5 fish: rmse llm - ridge = -[1..5] e-3 (lower: better); r2 llm - ridge = +[1..5] e-3
    # (higher: better); the twin differs from llm by exactly 0.01 in every fish.
    fish = range(1, 6)
    rmse = summary_from(
        {
            "llm": dict.fromkeys(fish, 0.05),
            "ridge": {f: 0.05 + f * 1e-3 for f in fish},
            "llm_untrained": dict.fromkeys(fish, 0.06),
        }
    )
    r2 = rmse.assign(metric="r2", segment="summed", value=1 - rmse["value"])
    summary = pd.concat([rmse, r2], ignore_index=True)
    summary["kind"] = summary["model"].map({"ridge": "ridge"}).fillna("llm")
    options = {"alpha": ALPHA, "n_bootstrap": 200, "seed": 0}
    twins = {"llm": "llm_untrained"}
    statistics = model_statistics(summary, untrained_twins=twins, ladders={}, **options)
    assert list(statistics.groupby("metric", sort=False).size().items()) == [("rmse", 3), ("r2", 3)]
    verdict = verdict_table(statistics, alpha=ALPHA)
    # Each metric is its own Holm family of the two testable rows: llm vs ridge (d = -[1..5]
    # e-3, p5) and twin vs ridge (d = [9..5] e-3: t = 7 / sqrt(2.5 / 5) = 7 sqrt(2), 4 df); the
    # identical twin difference has no p. Holm: max(2 p_twin_ridge, p5) = p5.
    p5 = 1 - math.sqrt(18) * 24 / 22**1.5
    t = 7 * math.sqrt(2)
    p_twin_ridge = 1 - t * (t**2 + 6) / (t**2 + 4) ** 1.5  # 0.0006
    assert 2 * p_twin_ridge < p5
    assert list(verdict["metric"]) == ["rmse", "rmse", "r2", "r2"]
    lower, higher = "mean_difference < 0", "mean_difference > 0"
    assert list(verdict["better_if"]) == [lower, lower, higher, higher]
    assert list(verdict["reference"]) == ["ridge", "untrained", "ridge", "untrained"]
    np.testing.assert_allclose(verdict["p_holm"], [p5, np.nan, p5, np.nan])
    np.testing.assert_allclose(verdict["mean_difference"], [-3e-3, -0.01, 3e-3, 0.01])
    assert list(verdict["verdict"]) == [
        "better (p_holm=0.013, n=5)",
        "not testable, paired differences identical in every fish (n=5)",
        "better (p_holm=0.013, n=5)",
        "not testable, paired differences identical in every fish (n=5)",
    ]
    # without R² rows only RMSE is compared
    only_rmse = model_statistics(
        summary[summary["metric"] == "rmse"], untrained_twins=twins, ladders={}, **options
    )
    assert set(only_rmse["metric"]) == {"rmse"}


def test_verdict_table_without_pretrained_models_is_empty_with_its_columns():
    """Baselines only (ridge, mean, gru): no pretrained model, so no verdict rows."""
    summary = summary_from({m: {1: v, 2: v + 0.01, 3: v + 0.02} for m, v in
                            (("gru", 0.1), ("ridge", 0.2), ("mean", 0.3))})  # fmt: skip
    summary["kind"] = summary["model"]
    options = {"alpha": ALPHA, "n_bootstrap": 200, "seed": 0}
    statistics = model_statistics(summary, untrained_twins={}, ladders={}, **options)
    assert len(statistics) == 3
    table = verdict_table(statistics, alpha=ALPHA)
    assert table.empty and list(table.columns) == list(VERDICT_COLUMNS)
