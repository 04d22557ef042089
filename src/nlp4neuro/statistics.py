"""Fish-level paired comparisons between models.

The fish is the unit of replication: cross-validation folds and seeds (repeated trainings) are
averaged within each fish first (`nlp4neuro.metrics.summarise`), and two models are compared on
the fish they were both run on. This replaces the reference analysis, which pooled fish x runs as
independent samples in a Mann-Whitney U test without multiple-comparison correction.

For every pair of models (and every window size) `paired_comparisons` reports, with d the
per-fish difference model_a - model_b:
- effect sizes: the mean of d with a bootstrap confidence interval over fish (level 1 - alpha,
  `ci_level`), and Cohen's dz = mean(d) / sd(d) (sd with ddof=1);
- tests: a paired t-test and an exact Wilcoxon signed-rank test, each with its p-value, its
  Holm-corrected p-value and the fewest fish it needs (`t_min_fish`, `wilcoxon_min_fish`);
- a sign count (in how many fish model_a was better).

Small-sample policy (why some p-values are NaN): a test runs only where it can mean something,
and the table says why where it does not (`note` starts with "not testable:").
- Paired t-test: at least `MIN_FISH_FOR_T` = 3 fish. With 2 fish the t-statistic has one degree
  of freedom (a Cauchy distribution): the spread of the differences is estimated from a single
  number, the normality the test assumes cannot be judged at all, and p only says how close the
  two differences are to each other.
- Exact two-sided Wilcoxon signed-rank test on n non-zero differences: it cannot give a p-value
  below 2 / 2**n (all differences of one sign). It runs only with n >= `wilcoxon_min_fish(alpha)`
  (6 at alpha = 0.05; 5 fish give at best 0.0625); `wilcoxon_min_p` always holds the minimum
  achievable p. Reporting the raw exact p (0.0625) would invite reading "nearly significant" into
  a test that had no power at all.
- Bootstrap CI: at least `MIN_FISH_FOR_CI` = 3 fish (with 2 the resampled means take only 3
  values). With few fish a percentile bootstrap CI is too narrow (it ignores the
  t-distribution's heavier tails); read it as descriptive. Every comparison draws from a fresh
  generator seeded with `seed`, so a CI does not depend on the order of the pairs.
- Cohen's dz: at least `MIN_FISH_FOR_DZ` = 2 fish, and NaN where the differences are identical
  in every fish (sd 0).
- Holm's correction (one family per test and per call, i.e. per metric and segment: every pair x
  window of the table, `holm_family`) runs over the rows that have a p-value; `t_holm_n_tests` and
  `wilcoxon_holm_n_tests` give the family size. A test that cannot run cannot cause a false
  rejection, so leaving it out of the family keeps the family-wise error rate at alpha.

Contrasts (`default_pairs`, column `contrast`): every unordered pair of models is compared
("model_vs_model"); a pretrained language model and one of its controls are labelled and
oriented pretrained first (model_a): `pretrained_vs_<rung>` for each rung of its ablation ladder
(`nlp4neuro.ladder`; the untrained twin gives "pretrained_vs_untrained") and
"pretrained_vs_ridge" against each ridge model. Labelling changes neither the set of pairs nor
the Holm family.

The verdict (`verdict_table`): one row per pretrained model x reference (ridge, each rung) x
window x verdict metric (`VERDICT_METRICS`: pooled RMSE and R² of the summed tail), with the
mean paired difference, its CI, the number of fish and the Holm-corrected paired t-test p
(primary test: it is testable from 3 fish, the exact Wilcoxon test only from 6), read off the
statistics table unchanged, and a verdict in words: "better", "worse" (p_holm < alpha), "no
detectable difference" or "not testable".
"""

from __future__ import annotations

import itertools
import logging
import warnings
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.stats.multitest import multipletests

from nlp4neuro.errors import ConfigError, InputFileError
from nlp4neuro.ladder import rungs

logger = logging.getLogger(__name__)

PRETRAINED_VS = "pretrained_vs_"
"""Prefix of the contrasts of a pretrained model (model_a) with one of its references."""
PRETRAINED_VS_UNTRAINED = f"{PRETRAINED_VS}untrained"
MODEL_VS_MODEL = "model_vs_model"
RIDGE = "ridge"
"""Reference name (and model kind) of the ridge regression baseline."""

VERDICT_METRICS: tuple[tuple[str, str, bool], ...] = (
    ("rmse", "pooled", True),
    ("r2", "summed", False),
)
"""(metric, segment, lower_is_better) compared by `model_statistics` and judged by
`verdict_table`: pooled test RMSE (radians) and R² of the summed tail angle."""

MIN_FISH_FOR_T = 3
"""Fewest fish for a paired t-test (df >= 2); see the module docstring."""
MIN_FISH_FOR_CI = 3
"""Fewest fish for a bootstrap CI of the mean paired difference."""
MIN_FISH_FOR_DZ = 2
"""Fewest fish for Cohen's dz (an sd needs two values)."""

COMPARISON_COLUMNS: tuple[str, ...] = (
    "window_frames",
    "metric",
    "segment",
    "model_a",
    "model_b",
    "contrast",
    "n_fish",
    "n_dropped",
    "mean_a",
    "mean_b",
    "mean_diff",
    "ci_low",
    "ci_high",
    "ci_level",
    "ci_method",
    "cohens_dz",
    "t_min_fish",
    "t_testable",
    "t_stat",
    "t_p",
    "t_p_holm",
    "t_significant",
    "wilcoxon_min_fish",
    "wilcoxon_testable",
    "wilcoxon_stat",
    "wilcoxon_p",
    "wilcoxon_min_p",
    "wilcoxon_p_holm",
    "wilcoxon_significant",
    "holm_family",
    "t_holm_n_tests",
    "wilcoxon_holm_n_tests",
    "n_a_better",
    "sign_summary",
    "fish",
    "note",
)
"""Columns of `paired_comparisons` output, in order."""


def default_pairs(
    models: Sequence[str],
    untrained_twins: Mapping[str, str],
    ladders: Mapping[str, Mapping[str, str]] | None = None,
    ridge_models: Sequence[str] = (),
) -> pd.DataFrame:
    """Every unordered pair of `models`, with each pretrained model's contrasts labelled.

    Args:
        models: model names in display order; pairs keep this order (model_a comes first).
        untrained_twins: pretrained model -> its random-weight twin, e.g.
            {"gpt2": "gpt2_untrained"}.
        ladders: pretrained model -> {rung: rung model}, e.g. {"gpt2": {"untrained":
            "gpt2_untrained", "nobackbone": "gpt2_nobackbone"}} (`nlp4neuro.ladder.rungs_of`).
        ridge_models: ridge baselines each pretrained model is contrasted with.

    Returns:
        DataFrame with columns model_a, model_b, contrast, one row per pair, without
        duplicates. A pretrained model (a key of `untrained_twins` or `ladders`) paired with a
        reference comes first, with contrast `pretrained_vs_<rung>` ("pretrained_vs_untrained"
        for the twin) or "pretrained_vs_ridge"; such a pair is added even if one of its models
        is not in `models`. Every other pair is "model_vs_model".
    """
    models = list(dict.fromkeys(models))
    labelled = _labelled_pairs(untrained_twins, ladders or {}, ridge_models)
    rows: list[tuple[str, str, str]] = []
    seen: set[frozenset[str]] = set()
    for a, b in itertools.combinations(models, 2):
        key = frozenset((a, b))
        seen.add(key)
        rows.append(labelled.get(key, (a, b, MODEL_VS_MODEL)))
    rows.extend(pair for key, pair in labelled.items() if key not in seen)
    return pd.DataFrame(rows, columns=["model_a", "model_b", "contrast"])


def _references(
    untrained_twins: Mapping[str, str], ladders: Mapping[str, Mapping[str, str]]
) -> dict[str, dict[str, str]]:
    """Pretrained model -> {reference: model}: the twin as rung "untrained", then the ladder."""
    references = {p: {"untrained": u} for p, u in untrained_twins.items()}
    for pretrained, by_rung in ladders.items():
        twin = references.get(pretrained, {}).get("untrained")
        if twin is not None and by_rung.get("untrained", twin) != twin:
            raise ConfigError(
                f"ladders.{pretrained}.untrained", f"its untrained twin {twin!r}", by_rung
            )
        references.setdefault(pretrained, {}).update(by_rung)
    return references


def _labelled_pairs(
    untrained_twins: Mapping[str, str],
    ladders: Mapping[str, Mapping[str, str]],
    ridge_models: Sequence[str],
) -> dict[frozenset[str], tuple[str, str, str]]:
    """{pair: (pretrained, reference model, contrast)} for every pretrained model's references."""
    labelled: dict[frozenset[str], tuple[str, str, str]] = {}
    for pretrained, by_rung in _references(untrained_twins, ladders).items():
        for reference, model in [*by_rung.items(), *((RIDGE, r) for r in ridge_models)]:
            if model == pretrained:
                key = "untrained_twins" if reference == "untrained" else f"ladders.{pretrained}"
                raise ConfigError(key, "a different model name for each reference", pretrained)
            labelled.setdefault(
                frozenset((pretrained, model)), (pretrained, model, PRETRAINED_VS + reference)
            )
    return labelled


def summary_pairs(
    summary: pd.DataFrame,
    *,
    untrained_twins: Mapping[str, str],
    ladders: Mapping[str, Mapping[str, str]],
) -> pd.DataFrame:
    """`default_pairs` of the models in `summary` (sorted by name), keeping only the twins and
    rungs it holds, with its ridge models (`kind` "ridge") as references."""
    models = sorted(set(summary["model"]))
    present = set(models)
    twins = {p: u for p, u in untrained_twins.items() if {p, u} <= present}
    present_ladders = {
        p: {rung: m for rung, m in by_rung.items() if m in present}
        for p, by_rung in ladders.items()
        if p in present
    }
    ridge = summary["kind"] == RIDGE if "kind" in summary.columns else []
    ridge_models = sorted(set(summary.loc[ridge, "model"]))
    return default_pairs(models, twins, present_ladders, ridge_models)


def _normalise_pairs(pairs: pd.DataFrame | Iterable[Sequence[str]]) -> list[tuple[str, str, str]]:
    if isinstance(pairs, pd.DataFrame):
        if not {"model_a", "model_b"} <= set(pairs.columns):
            raise ConfigError("pairs", "columns model_a, model_b[, contrast]", list(pairs.columns))
        contrast = pairs["contrast"] if "contrast" in pairs else [MODEL_VS_MODEL] * len(pairs)
        items = list(zip(pairs["model_a"], pairs["model_b"], contrast, strict=True))
    else:
        items = []
        for pair in pairs:
            pair = tuple(pair)
            if len(pair) not in (2, 3):
                raise ConfigError(
                    "pairs", "(model_a, model_b) or (model_a, model_b, contrast)", pair
                )
            items.append(pair if len(pair) == 3 else (*pair, MODEL_VS_MODEL))
    if not items:
        raise ConfigError("pairs", "at least one pair of models", "none")
    for a, b, _ in items:
        if a == b:
            raise ConfigError("pairs", "two different models per pair", (a, b))
    return [(str(a), str(b), str(c)) for a, b, c in items]


def wilcoxon_min_p(n_nonzero: int) -> float:
    """Smallest two-sided exact Wilcoxon signed-rank p-value with n non-zero differences: 2/2**n."""
    return float(min(1.0, 2.0 ** (1 - n_nonzero))) if n_nonzero > 0 else 1.0


def wilcoxon_min_fish(alpha: float) -> int:
    """Fewest non-zero differences for which the exact Wilcoxon test can reach p < alpha.

    6 at alpha = 0.05 (min p 2/64 = 0.031; 5 fish give at best 2/32 = 0.0625).
    """
    n = 1
    while wilcoxon_min_p(n) >= alpha:
        n += 1
    return n


def _identical(diff: np.ndarray) -> bool:
    """True where the paired differences are equal in every fish (up to rounding): sd is 0."""
    scale = max(float(np.max(np.abs(diff))), np.finfo(float).tiny)
    return bool(np.ptp(diff) <= 1e-12 * scale)


def _bootstrap_ci(
    diff: np.ndarray, alpha: float, n_bootstrap: int, seed: int, method: str
) -> tuple[float, float, str | None]:
    """Bootstrap CI (level 1 - alpha) of the mean of `diff` (one value per fish), with a note."""
    if diff.size < MIN_FISH_FOR_CI:
        return (
            np.nan,
            np.nan,
            f"bootstrap CI not computable with {diff.size} fish (need >= {MIN_FISH_FOR_CI})",
        )
    if np.ptp(diff) == 0:
        # Every resample has the same mean; scipy would warn about a degenerate distribution.
        return float(diff[0]), float(diff[0]), None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = stats.bootstrap(
            (diff,),
            np.mean,
            n_resamples=n_bootstrap,
            confidence_level=1.0 - alpha,
            method=method,
            rng=np.random.default_rng(seed),
        )
    interval = result.confidence_interval
    note = f"bootstrap: {caught[0].message}" if caught else None
    return float(interval.low), float(interval.high), note


def _cohens_dz(diff: np.ndarray) -> tuple[float, str | None]:
    """Cohen's dz = mean(diff) / sd(diff, ddof=1); NaN with fewer than 2 fish or sd 0."""
    if diff.size < MIN_FISH_FOR_DZ:
        return np.nan, f"Cohen's dz needs >= {MIN_FISH_FOR_DZ} fish, found {diff.size}"
    if _identical(diff):
        return np.nan, None  # named by the note on identical differences
    return float(diff.mean() / diff.std(ddof=1)), None


def _paired_t(a: np.ndarray, b: np.ndarray) -> tuple[float, float, str | None]:
    """Paired t statistic and two-sided p of a - b; NaN below `MIN_FISH_FOR_T` fish or sd 0."""
    diff = a - b
    if diff.size < MIN_FISH_FOR_T:
        return (
            np.nan,
            np.nan,
            f"not testable: paired t needs >= {MIN_FISH_FOR_T} fish, found {diff.size}",
        )
    if _identical(diff):
        return np.nan, np.nan, None  # named by the note on identical differences
    result = stats.ttest_rel(a, b)
    return float(result.statistic), float(result.pvalue), None


def _wilcoxon(
    a: np.ndarray, b: np.ndarray, alpha: float
) -> tuple[float, float, float, bool, str | None]:
    """Exact Wilcoxon signed-rank; zero differences are dropped (zero_method='wilcox')."""
    diff = a - b
    n_nonzero = int(np.count_nonzero(diff))
    min_p = wilcoxon_min_p(n_nonzero)
    if min_p >= alpha:
        zeros = "" if n_nonzero == diff.size else f" ({n_nonzero} non-zero differences)"
        note = (
            f"not testable: Wilcoxon cannot reach p<{alpha:g} with {diff.size} fish{zeros} "
            f"(min p = {min_p:.4g}), needs >= {wilcoxon_min_fish(alpha)} non-zero differences"
        )
        return np.nan, np.nan, min_p, False, note
    result = stats.wilcoxon(a, b, zero_method="wilcox", method="exact")
    return float(result.statistic), float(result.pvalue), min_p, True, None


def _holm(p_values: pd.Series, alpha: float) -> pd.Series:
    """Holm-adjusted p-values over the finite entries; NaN stays NaN."""
    adjusted = pd.Series(np.nan, index=p_values.index)
    finite = np.isfinite(p_values.to_numpy(dtype=np.float64))
    if finite.any():
        adjusted[finite] = multipletests(p_values[finite].to_numpy(), alpha=alpha, method="holm")[1]
    return adjusted


def _fish_values(rows: pd.DataFrame, model: str) -> pd.Series:
    values = rows.loc[rows["model"] == model].set_index("fish")["value"].astype(np.float64)
    return values[np.isfinite(values.to_numpy())]


def paired_comparisons(
    summary: pd.DataFrame,
    *,
    pairs: pd.DataFrame | Iterable[Sequence[str]],
    alpha: float,
    n_bootstrap: int,
    seed: int,
    metric: str = "rmse",
    segment: str = "pooled",
    lower_is_better: bool = True,
    ci_method: str = "percentile",
) -> pd.DataFrame:
    """Paired, fish-level comparisons of models on one metric and segment.

    Args:
        summary: output of `nlp4neuro.metrics.summarise` (one value per model x fish x window x
            metric x segment; columns model, fish, window_frames, metric, segment, value).
        pairs: (model_a, model_b) tuples, (model_a, model_b, contrast) tuples, or the DataFrame
            of `default_pairs`. Differences are model_a - model_b.
        alpha: significance level for the CI (1 - alpha), the Wilcoxon testability rule and the
            `*_significant` columns (config `evaluation.alpha`).
        n_bootstrap: bootstrap resamples for the CI of the mean paired difference (config
            `evaluation.n_bootstrap`).
        seed: seeds a fresh numpy Generator for every comparison, so each CI is reproducible and
            does not depend on the order of the pairs.
        metric, segment: which rows of `summary` to compare (e.g. "rmse", "pooled").
        lower_is_better: True for errors (RMSE, MAE), False for R², Pearson r and skill; decides
            which model counts as "better" in the sign count.
        ci_method: "percentile" or "BCa" (`scipy.stats.bootstrap`).

    Returns:
        DataFrame with columns `COMPARISON_COLUMNS`, one row per pair and window size. Only fish
        with a finite value for both models are paired; `n_dropped` counts the others (named in
        `note`). `fish` lists the paired fish. `t_p_holm` and `wilcoxon_p_holm` are Holm-adjusted
        over the rows of this table that have a p-value (the family, `holm_family`; its size in
        `*_holm_n_tests`). Tests below their minimum number of fish (`t_min_fish`,
        `wilcoxon_min_fish`) give no p-value and a `note` starting "not testable:"; see the
        module docstring for when p-values, CIs or Cohen's dz are NaN.
    """
    _check_summary(summary)
    _check_options(alpha, n_bootstrap, ci_method)
    pair_list = _normalise_pairs(pairs)
    selected = _select(summary, metric, segment, pair_list)
    options = {
        "alpha": alpha,
        "n_bootstrap": n_bootstrap,
        "seed": seed,
        "lower_is_better": lower_is_better,
        "ci_method": ci_method,
    }
    rows = [
        row | {"metric": metric, "segment": segment}
        for row in _compare_windows(selected, pair_list, options)
    ]
    windows = selected["window_frames"].nunique()
    family = f"{metric}/{segment}, every pair x window ({len(pair_list)} x {windows} rows)"
    table = _with_holm(pd.DataFrame(rows), alpha, family)
    logger.info("%d paired comparisons on %s/%s", len(table), metric, segment)
    return table[list(COMPARISON_COLUMNS)]


def _compare_windows(
    selected: pd.DataFrame, pair_list: list[tuple[str, str, str]], options: dict[str, object]
) -> list[dict[str, object]]:
    """One `_compare` row per window size (ascending) and pair (in `pair_list` order)."""
    rows = []
    for window in sorted(selected["window_frames"].unique()):
        in_window = selected[selected["window_frames"] == window]
        for model_a, model_b, contrast in pair_list:
            row = _compare(
                _fish_values(in_window, model_a),
                _fish_values(in_window, model_b),
                model_a=model_a,
                model_b=model_b,
                **options,
            )
            rows.append(row | {"window_frames": window, "contrast": contrast})
    return rows


def _check_options(alpha: float, n_bootstrap: int, ci_method: str) -> None:
    if not 0.0 < alpha < 1.0:
        raise ConfigError("evaluation.alpha", "a number in (0, 1)", alpha)
    if n_bootstrap < 1:
        raise ConfigError("evaluation.n_bootstrap", "a positive integer", n_bootstrap)
    if ci_method not in ("percentile", "BCa"):
        raise ConfigError("ci_method", "'percentile' or 'BCa'", ci_method)


def _select(
    summary: pd.DataFrame, metric: str, segment: str, pair_list: list[tuple[str, str, str]]
) -> pd.DataFrame:
    """The rows of one metric and segment; every model of `pair_list` must have some."""
    selected = summary[(summary["metric"] == metric) & (summary["segment"] == segment)]
    if selected.empty:
        raise ConfigError(
            "metric/segment",
            f"a metric in {sorted(summary['metric'].unique())} and a segment in "
            f"{sorted(summary['segment'].unique())}",
            (metric, segment),
        )
    known = set(selected["model"])
    unknown = sorted({m for a, b, _ in pair_list for m in (a, b)} - known)
    if unknown:
        raise ConfigError("pairs", f"models present in the summary {sorted(known)}", unknown)
    return selected


def _with_holm(table: pd.DataFrame, alpha: float, family: str) -> pd.DataFrame:
    """Add Holm-adjusted p-values over the testable rows, the family and `*_significant`."""
    table["holm_family"] = family
    for test in ("t", "wilcoxon"):
        table[f"{test}_p_holm"] = _holm(table[f"{test}_p"], alpha)
        table[f"{test}_holm_n_tests"] = int(np.isfinite(table[f"{test}_p"]).sum())
        table[f"{test}_significant"] = table[f"{test}_p_holm"] < alpha
    return table


def _pair_fish(values_a: pd.Series, values_b: pd.Series) -> tuple[pd.Index, pd.Index, list[str]]:
    """Fish with a value for both models (sorted), the others, and notes naming the others."""
    shared = values_a.index.intersection(values_b.index).sort_values()
    dropped = values_a.index.union(values_b.index).difference(shared).sort_values()
    notes: list[str] = []
    if len(dropped):
        notes.append(
            f"{len(dropped)} fish dropped (not present for both models): "
            + ", ".join(str(f) for f in dropped)
        )
    if shared.size == 0:
        notes.append("no fish present for both models")
    return shared, dropped, notes


def _effect_sizes(
    diff: np.ndarray, alpha: float, n_bootstrap: int, seed: int, ci_method: str
) -> tuple[dict[str, object], list[str | None]]:
    """Mean paired difference, its bootstrap CI and Cohen's dz (diff: one value per fish)."""
    ci_low, ci_high, ci_note = _bootstrap_ci(diff, alpha, n_bootstrap, seed, ci_method)
    dz, dz_note = _cohens_dz(diff)
    identical = None
    if diff.size >= MIN_FISH_FOR_DZ and _identical(diff):
        identical = "paired differences identical in every fish: t-test and Cohen's dz undefined"
    effects = {
        "mean_diff": float(diff.mean()) if diff.size else np.nan,
        "ci_low": ci_low,
        "ci_high": ci_high,
        "ci_level": 1.0 - alpha,
        "ci_method": ci_method,
        "cohens_dz": dz,
    }
    return effects, [identical, ci_note, dz_note]


def _paired_tests(
    a: np.ndarray, b: np.ndarray, alpha: float
) -> tuple[dict[str, object], list[str | None]]:
    """Paired t and exact Wilcoxon tests of a - b (one value per fish), with their minimum fish."""
    t_stat, t_p, t_note = _paired_t(a, b)
    w_stat, w_p, min_p, w_testable, w_note = _wilcoxon(a, b, alpha)
    tests = {
        "t_min_fish": MIN_FISH_FOR_T,
        "t_testable": bool(np.isfinite(t_p)),
        "t_stat": t_stat,
        "t_p": t_p,
        "wilcoxon_min_fish": wilcoxon_min_fish(alpha),
        "wilcoxon_testable": w_testable,
        "wilcoxon_stat": w_stat,
        "wilcoxon_p": w_p,
        "wilcoxon_min_p": min_p,
    }
    return tests, [t_note, w_note]


def _compare(
    values_a: pd.Series,
    values_b: pd.Series,
    *,
    model_a: str,
    model_b: str,
    alpha: float,
    n_bootstrap: int,
    seed: int,
    lower_is_better: bool,
    ci_method: str,
) -> dict[str, object]:
    """One row of the table: the paired fish, effect sizes, tests and a sign count."""
    shared, dropped, notes = _pair_fish(values_a, values_b)
    a = values_a.loc[shared].to_numpy()
    b = values_b.loc[shared].to_numpy()
    diff = a - b
    effects, effect_notes = _effect_sizes(diff, alpha, n_bootstrap, seed, ci_method)
    tests, test_notes = _paired_tests(a, b, alpha)
    notes.extend(note for note in effect_notes + test_notes if note)
    a_better = int(np.sum(diff < 0) if lower_is_better else np.sum(diff > 0))
    return {
        "model_a": model_a,
        "model_b": model_b,
        "n_fish": int(shared.size),
        "n_dropped": len(dropped),
        "mean_a": float(a.mean()) if a.size else np.nan,
        "mean_b": float(b.mean()) if b.size else np.nan,
        **effects,
        **tests,
        "n_a_better": a_better,
        "sign_summary": f"{model_a} better in {a_better} of {shared.size} fish",
        "fish": ",".join(str(f) for f in shared),
        "note": "; ".join(notes),
    }


def _check_summary(summary: pd.DataFrame) -> None:
    required = ["model", "fish", "window_frames", "metric", "segment", "value"]
    missing = [c for c in required if c not in summary.columns]
    if missing:
        raise InputFileError(
            "<summary table>", f"columns {required}", f"{list(summary.columns)} (missing {missing})"
        )
    if "split" in summary.columns and summary["split"].nunique() > 1:
        found = sorted(summary["split"].unique())
        raise InputFileError("<summary table>", "one split (filter to 'test')", f"splits {found}")
    if "horizon" in summary.columns and summary["horizon"].nunique() > 1:
        found = sorted(summary["horizon"].unique())
        raise InputFileError(
            "<summary table>", "one horizon (metrics.smallest_horizon)", f"horizons {found}"
        )
    keys = ["model", "fish", "window_frames", "metric", "segment"]
    duplicated = summary.duplicated(keys)
    if duplicated.any():
        example = summary.loc[duplicated, keys].iloc[0].to_dict()
        raise InputFileError(
            "<summary table>",
            "one row per model x fish x window x metric x segment (summarise averages folds "
            "and seeds)",
            f"repeated {example}",
        )


def model_statistics(
    summary: pd.DataFrame,
    *,
    untrained_twins: Mapping[str, str],
    ladders: Mapping[str, Mapping[str, str]],
    alpha: float,
    n_bootstrap: int,
    seed: int,
) -> pd.DataFrame:
    """`paired_comparisons` of the `summary_pairs` on each of `VERDICT_METRICS`, concatenated.

    Pooled RMSE must be in `summary`; R² of the summed tail is compared where the summary has
    it. Each metric is its own Holm family (see `paired_comparisons`).
    """
    pairs = summary_pairs(summary, untrained_twins=untrained_twins, ladders=ladders)
    present = set(zip(summary["metric"], summary["segment"], strict=True))
    tables = [
        paired_comparisons(
            summary,
            pairs=pairs,
            alpha=alpha,
            n_bootstrap=n_bootstrap,
            seed=seed,
            metric=metric,
            segment=segment,
            lower_is_better=lower_is_better,
        )
        for index, (metric, segment, lower_is_better) in enumerate(VERDICT_METRICS)
        if index == 0 or (metric, segment) in present
    ]
    return pd.concat(tables, ignore_index=True)


VERDICT_COLUMNS: tuple[str, ...] = (
    "model",
    "reference",
    "reference_model",
    "window_frames",
    "metric",
    "segment",
    "better_if",
    "mean_model",
    "mean_reference",
    "mean_difference",
    "ci_low",
    "ci_high",
    "n_fish",
    "test",
    "p_holm",
    "verdict",
    "holm_family",
)
"""Columns of `verdict_table` output, in order."""

PRIMARY_TEST = "paired t-test, two-sided, Holm-corrected (t_p_holm of the statistics table)"
"""The test a verdict rests on: testable from `MIN_FISH_FOR_T` fish (Wilcoxon needs 6)."""


def verdict_table(statistics: pd.DataFrame, *, alpha: float) -> pd.DataFrame:
    """Each pretrained model against each of its references, in words, from `model_statistics`.

    Args:
        statistics: `paired_comparisons` / `model_statistics` output (rows of contrast
            `pretrained_vs_<reference>` are used; model_a is the pretrained model).
        alpha: significance level of the Holm-corrected p (config `evaluation.alpha`).

    Returns:
        DataFrame with columns `VERDICT_COLUMNS`, one row per pretrained model x metric x
        reference ("ridge", then the rungs in ladder order) x window, for the metrics of
        `VERDICT_METRICS`. `mean_difference` = model - reference averaged over fish with its
        bootstrap CI (`better_if` says which sign favours the model); `p_holm` is the
        Holm-corrected paired t p. `verdict` is "better"/"worse" (p_holm < alpha, by the sign
        of the difference), "no detectable difference" or "not testable, ..." (too few fish,
        or differences identical in every fish), each with p_holm and the number of fish.
    """
    lower = {(m, s): low for m, s, low in VERDICT_METRICS}
    rows = statistics[statistics["contrast"].str.startswith(PRETRAINED_VS)]
    # a boolean Series, not a list: an empty list would select no columns instead of no rows
    rows = rows[
        pd.Series([key in lower for key in _metric_keys(rows)], index=rows.index, dtype=bool)
    ]
    table = pd.DataFrame(
        {
            "model": rows["model_a"],
            "reference": rows["contrast"].str.removeprefix(PRETRAINED_VS),
            "reference_model": rows["model_b"],
            "window_frames": rows["window_frames"],
            "metric": rows["metric"],
            "segment": rows["segment"],
            "better_if": [_better_if(lower[key]) for key in _metric_keys(rows)],
            "mean_model": rows["mean_a"],
            "mean_reference": rows["mean_b"],
            "mean_difference": rows["mean_diff"],
            "ci_low": rows["ci_low"],
            "ci_high": rows["ci_high"],
            "n_fish": rows["n_fish"],
            "test": PRIMARY_TEST,
            "p_holm": rows["t_p_holm"],
            "verdict": [_verdict(row, alpha, lower) for _, row in rows.iterrows()],
            "holm_family": rows["holm_family"],
        },
        columns=list(VERDICT_COLUMNS),
    )
    return _verdict_order(table)


def _metric_keys(table: pd.DataFrame) -> list[tuple[str, str]]:
    """(metric, segment) of every row."""
    return list(zip(table["metric"], table["segment"], strict=True))


def _better_if(lower_is_better: bool) -> str:
    return "mean_difference < 0" if lower_is_better else "mean_difference > 0"


def _format_p_holm(p: float) -> str:
    return "p_holm<0.001" if p < 0.001 else f"p_holm={p:.2g}"


def _verdict(row: pd.Series, alpha: float, lower: Mapping[tuple[str, str], bool]) -> str:
    """The verdict on one `paired_comparisons` row (model_a against model_b), e.g.
    "better (p_holm=0.012, n=5)" or "not testable, needs >= 3 fish (n=2)"."""
    n = int(row["n_fish"])
    if n < row["t_min_fish"]:
        return f"not testable, needs >= {int(row['t_min_fish'])} fish (n={n})"
    p = float(row["t_p_holm"])
    if not np.isfinite(p):
        return f"not testable, paired differences identical in every fish (n={n})"
    if p >= alpha:
        return f"no detectable difference ({_format_p_holm(p)}, n={n})"
    model_lower = row["mean_diff"] < 0
    better = model_lower == lower[(row["metric"], row["segment"])]
    return f"{'better' if better else 'worse'} ({_format_p_holm(p)}, n={n})"


def _verdict_order(table: pd.DataFrame) -> pd.DataFrame:
    """Rows by model (first appearance), metric (`VERDICT_METRICS`), reference (ridge, then the
    ladder's rungs) and window."""
    metrics = [(m, s) for m, s, _ in VERDICT_METRICS]
    references = [RIDGE, *rungs()]
    keys = pd.DataFrame(
        {
            "model": pd.factorize(table["model"])[0],
            "metric": [metrics.index(key) for key in _metric_keys(table)],
            "reference": [
                references.index(r) if r in references else len(references)
                for r in table["reference"]
            ],
            "window": table["window_frames"],
        },
        index=table.index,
    )
    order = keys.sort_values(list(keys.columns), kind="stable").index
    return table.loc[order].reset_index(drop=True)
