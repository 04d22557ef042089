"""The circular-shift null of decoding skill (nlp4neuro.null): hand-checked pieces, and on
synthetic data with a planted linear mapping a null at chance next to a real signal well above."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from nlp4neuro.config import default_value, section
from nlp4neuro.errors import ConfigError, InputFileError
from nlp4neuro.null import (
    P_POLICY,
    SHIFT_COLUMNS,
    SUMMARY_COLUMNS,
    autocorrelation_length,
    circular_shift_null,
    draw_shifts,
    empirical_p,
    gather_null_summaries,
    smallest_shift,
    summarise_null,
)
from nlp4neuro.problem import DecodingParams, build_problem
from nlp4neuro.ridge import fit_ridge

N, K = 20, 3
WINDOW = 10
ALPHAS = tuple(default_value("models", "*", "ridge_alphas"))


def ar1(n_frames: int, n_series: int, phi: float, rng: np.random.Generator) -> np.ndarray:
    """(n_frames, n_series) unit-variance AR(1) series of coefficient phi."""
    innovations = rng.normal(size=(n_frames, n_series))
    out = np.empty_like(innovations)
    out[0] = innovations[0]
    for t in range(1, n_frames):
        out[t] = phi * out[t - 1] + np.sqrt(1 - phi**2) * innovations[t]
    return out


def make_dataset(
    n_frames: int = 2000, seed: int = 0, noise: float = 0.5, neural_roll: int = 0
) -> xr.Dataset:
    """Synthetic fish with temporally smooth neurons: tail = dff @ W + noise (dataset contract).

    `neural_roll` stores dff rolled by -neural_roll frames against the tail, so that only a
    circular shift of +neural_roll brings the planted mapping back.
    """
    rng = np.random.default_rng(seed)
    dff = ar1(n_frames, N, 0.5, rng)
    tail = dff @ (0.3 * rng.normal(size=(N, K))) + noise * rng.normal(size=(n_frames, K))
    stored = np.roll(dff, -neural_roll, axis=0)
    return xr.Dataset(
        {
            "dff": (("time", "neuron"), stored.astype(np.float32)),
            "tail": (("time", "segment"), tail.astype(np.float32)),
        },
        coords={
            "time": ("time", np.arange(n_frames) / 1.1),
            "frame": ("time", np.arange(n_frames, dtype=np.int64)),
            "stimulus": ("time", np.array(["none"] * n_frames, dtype=object)),
            "neuron": np.arange(N),
            "segment": [f"theta_{k:02d}" for k in range(K)],
        },
        attrs={"fish": "9", "frame_rate_hz": 1.1},
    )


def null_table(dataset: xr.Dataset, n_shifts: int = 40, seed: int = 0) -> pd.DataFrame:
    params = DecodingParams.from_config(section("decoding"))
    floor = section("null_distribution")["min_shift_frames"]
    return circular_shift_null(
        dataset, params, WINDOW, horizon=0, n_shifts=n_shifts, min_shift_frames=floor, seed=seed,
        alphas=ALPHAS,
    )  # fmt: skip


# ----------------------------------------------------------------------------------------------
# Hand-checked pieces


def test_autocorrelation_length_by_hand():
    # [1, 1, 1, -1, -1, -1]: mean 0, sum x² = 6; lag 1: 1 + 1 - 1 + 1 + 1 = 3 -> 0.5 > 1/e;
    # lag 2: 1 - 1 - 1 + 1 = 0 -> 0 < 1/e.
    assert autocorrelation_length(np.array([1, 1, 1, -1, -1, -1])) == 2
    # alternating signs: lag 1 gives -3/4 at once
    assert autocorrelation_length(np.array([1.0, -1.0, 1.0, -1.0])) == 1
    # the mean is removed first: an offset changes nothing
    assert autocorrelation_length(np.array([1, 1, 1, -1, -1, -1]) + 5.0) == 2
    assert autocorrelation_length(np.full(10, 3.0)) == 0
    assert autocorrelation_length(np.array([1.0])) == 0
    with pytest.raises(ValueError, match=r"1-D series"):
        autocorrelation_length(np.zeros((4, 2)))


def test_autocorrelation_length_of_an_ar1_is_where_phi_to_the_k_falls_below_1_over_e():
    # 0.9^9 = 0.387 > 1/e = 0.368 > 0.9^10 = 0.349: the length is 10 frames.
    series = ar1(100_000, 1, 0.9, np.random.default_rng(1))[:, 0]
    assert abs(autocorrelation_length(series) - 10) <= 1
    white = np.random.default_rng(2).normal(size=10_000)
    assert autocorrelation_length(white) == 1


def test_smallest_shift_is_the_largest_of_floor_autocorrelation_and_windows():
    white = np.random.default_rng(0).normal(size=1000)
    assert smallest_shift(20, white, window_frames=10, gap_frames=10) == 30  # 2 x 10 + 10
    assert smallest_shift(50, white, window_frames=10, gap_frames=10) == 50  # the floor
    slow = ar1(20_000, 1, 0.99, np.random.default_rng(3))[:, 0]  # length about 100 frames
    assert smallest_shift(20, slow, 10, 10) == autocorrelation_length(slow) > 60


def test_shifts_are_seeded_and_within_bounds():
    shifts = draw_shifts(100, 500, 30, seed=4)
    assert shifts.shape == (500,) and shifts.min() >= 30 and shifts.max() <= 70
    assert {30, 70} <= set(shifts.tolist())  # both ends can be drawn
    np.testing.assert_array_equal(shifts, draw_shifts(100, 500, 30, seed=4))
    assert not np.array_equal(shifts, draw_shifts(100, 500, 30, seed=5))
    np.testing.assert_array_equal(draw_shifts(10, 3, 5, seed=0), [5, 5, 5])
    with pytest.raises(ConfigError, match=r"null_distribution\.min_shift_frames"):
        draw_shifts(10, 3, 6, seed=0)


def test_empirical_p_by_hand():
    null = np.array([0.1, 0.2, 0.3, 0.4])
    assert empirical_p(null, 0.25) == pytest.approx((1 + 2) / 5)  # 0.3 and 0.4 as good
    assert empirical_p(null, 0.5) == pytest.approx(1 / 5)  # the smallest p with 4 shifts
    assert empirical_p(null, 0.0) == pytest.approx(5 / 5)
    assert empirical_p(null, 0.3) == pytest.approx(3 / 5)  # ties count as good
    # lower is better (RMSE): 1 and 2 are at least as good as 2
    assert empirical_p(np.array([1.0, 2.0, 3.0, 4.0]), 2.0, higher_is_better=False) == 0.6
    assert np.isnan(empirical_p(null, float("nan")))
    assert empirical_p(np.array([np.nan, 0.5]), 0.4) == pytest.approx(2 / 3)


def test_schema_section_defaults_and_allowed_models():
    values = section("null_distribution")
    assert values == {"enabled": True, "n_shifts": 100, "min_shift_frames": 20, "models": ["ridge"]}
    with pytest.raises(ConfigError, match=r"null_distribution\.models\.0"):
        section("null_distribution", models=["lstm"])


# ----------------------------------------------------------------------------------------------
# Planted truth


@pytest.fixture(scope="module")
def planted() -> pd.DataFrame:
    return null_table(make_dataset())


def test_null_is_at_chance_where_the_real_signal_is_well_above(planted):
    summary = summarise_null(planted).set_index("segment")
    for segment in ("summed", "pooled"):
        row = summary.loc[segment]
        assert abs(row["r2_null_mean"]) < 0.05, row
        assert row["r2_observed"] > 0.7 > 0.05 > row["r2_null_p95"], row
        assert row["r2_above_null"] == pytest.approx(row["r2_observed"] - row["r2_null_mean"])
        assert row["r2_p"] == pytest.approx(1 / 41)  # no shift as good as the real pairing
        assert row["rmse_observed"] < row["rmse_null_p05"]
        assert row["rmse_below_null"] == pytest.approx(row["rmse_null_mean"] - row["rmse_observed"])
        assert row["rmse_p"] == pytest.approx(1 / 41)


def test_shift_table_layout(planted):
    assert list(planted.columns) == list(SHIFT_COLUMNS)
    assert list(planted["role"]) == ["observed"] + ["null"] * 40
    assert planted["shift_frames"].iloc[0] == 0
    min_shift = planted["min_shift_frames"].iloc[0]
    n_frames = planted["n_frames"].iloc[0]
    # gap_frames null: window 10 + ceil(5.4 s x 1.1 Hz) = 16; the floor 20 is smaller
    assert min_shift == 2 * WINDOW + WINDOW + 6
    null_shifts = planted["shift_frames"].iloc[1:]
    assert null_shifts.min() >= min_shift and null_shifts.max() <= n_frames - min_shift
    assert set(planted["fish"]) == {"9"} and set(planted["window_frames"]) == {WINDOW}
    assert set(planted["alpha"]) <= set(ALPHAS)


def test_the_shift_pairs_tail_frame_t_with_neural_frame_t_minus_s(planted):
    # Store the neurons rolled back by the first drawn shift: the "observed" pairing is now at
    # chance and only that one shift restores the planted mapping (the tail, hence the drawn
    # shifts, are unchanged). A wrong roll direction or a per-split roll would miss it.
    shift = int(planted["shift_frames"].iloc[1])
    misaligned = null_table(make_dataset(neural_roll=shift))
    np.testing.assert_array_equal(misaligned["shift_frames"], planted["shift_frames"])
    assert abs(misaligned["r2_summed"].iloc[0]) < 0.05
    restored = misaligned[misaligned["shift_frames"] == shift]
    assert (restored["r2_summed"] > 0.7).all()
    others = misaligned[(misaligned["role"] == "null") & (misaligned["shift_frames"] != shift)]
    assert (others["r2_summed"].abs() < 0.1).all()


def test_same_seed_same_table(planted):
    again = null_table(make_dataset())
    pd.testing.assert_frame_equal(again, planted)


# ----------------------------------------------------------------------------------------------
# Summaries


def test_summary_needs_one_observed_row(planted):
    with pytest.raises(ValueError, match=r"one observed row"):
        summarise_null(planted[planted["role"] == "null"])
    with pytest.raises(ValueError, match=r"circular_shift_null table"):
        summarise_null(planted.drop(columns="alpha"))


def test_gather_null_summaries(planted, tmp_path):
    summary = summarise_null(planted)
    assert list(summary.columns) == list(SUMMARY_COLUMNS)
    assert set(summary["p_policy"]) == {P_POLICY}
    other = summary.assign(fish="10", window_frames=5)
    paths = [tmp_path / "b.csv", tmp_path / "a.csv"]
    summary.to_csv(paths[0], index=False)
    other.to_csv(paths[1], index=False)
    gathered = gather_null_summaries(paths)
    assert list(gathered.columns) == list(SUMMARY_COLUMNS) and len(gathered) == 4
    assert list(gathered["fish"]) == ["10", "10", "9", "9"]
    assert list(gathered["segment"]) == ["pooled", "summed", "pooled", "summed"]
    with pytest.raises(InputFileError, match=r"missing\.csv"):
        gather_null_summaries([tmp_path / "missing.csv"])
    summary.drop(columns="r2_p").to_csv(paths[0], index=False)
    with pytest.raises(InputFileError, match=r"r2_p"):
        gather_null_summaries(paths)


def test_with_folds_every_score_is_the_mean_of_the_folds_fits():
    dataset = make_dataset()
    params = DecodingParams.from_config(section("decoding", folds=3))
    table = circular_shift_null(
        dataset, params, WINDOW, horizon=0, n_shifts=2, min_shift_frames=20, seed=0, alphas=ALPHAS
    )
    shift = int(table["shift_frames"].iloc[1])
    for row, roll in ((0, 0), (1, shift)):
        per_fold = []
        for fold in range(3):
            problem = build_problem(dataset, WINDOW, params, fold)
            x, y = problem.recording(dataset)  # each fold's own normaliser
            train, val, test = (problem.splits[k] for k in ("train", "val", "test"))
            fit = fit_ridge(np.roll(x, roll, axis=0)[train], y[train],
                            np.roll(x, roll, axis=0)[val], y[val], ALPHAS)  # fmt: skip
            summed = y[test].sum(axis=1)
            predicted = fit.predict(np.roll(x, roll, axis=0)[test]).sum(axis=1)
            residual = ((summed - predicted) ** 2).sum()
            per_fold.append(1 - residual / ((summed - summed.mean()) ** 2).sum())
        assert table["r2_summed"].iloc[row] == pytest.approx(np.mean(per_fold), rel=1e-5)
    # the real pairing still decodes in every fold; its null does not
    assert table["r2_summed"].iloc[0] > 0.5 > 0.1 > table["r2_summed"].iloc[1]
