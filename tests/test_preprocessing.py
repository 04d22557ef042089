"""Tests for nlp4neuro.preprocessing with hand-computed expectations."""

from __future__ import annotations

import json

import numpy as np
import pytest

from nlp4neuro.config import allowed_values, section
from nlp4neuro.errors import ConfigError
from nlp4neuro.preprocessing import (
    PreprocessingParams,
    baseline_maximin,
    baseline_percentile,
    delta_f_over_f,
    drop_flat_neurons,
    f0_floor,
    neuropil_correct,
    preprocess,
    reference_normalise,
)


def params(**values) -> PreprocessingParams:
    """Parameters from the validated config section: schema defaults plus `values`."""
    return PreprocessingParams.from_config(section("preprocessing", **values))


def _transient_trace(n_frames: int = 200, level: float = 10.0, bump: float = 5.0) -> np.ndarray:
    """(1, n_frames): a constant `level` with a 5-frame transient of +`bump` at frames 50..54."""
    trace = np.full((1, n_frames), level, dtype=np.float32)
    trace[0, 50:55] += bump
    return trace


def test_neuropil_correct_by_hand():
    F = np.array([[10.0, 12.0]], dtype=np.float32)
    Fneu = np.array([[5.0, 10.0]], dtype=np.float32)
    np.testing.assert_allclose(neuropil_correct(F, Fneu, 0.7), [[6.5, 5.0]], rtol=1e-6)
    np.testing.assert_array_equal(neuropil_correct(F, Fneu, 0.0), F)
    assert neuropil_correct(F, Fneu, 0.7).dtype == np.float32


def test_neuropil_correct_rejects_shape_mismatch():
    with pytest.raises(ValueError, match=r"Fneu: expected the shape of F \(1, 2\), found \(1, 3\)"):
        neuropil_correct(np.ones((1, 2)), np.ones((1, 3)), 0.7)


def test_maximin_constant_with_transient_is_constant():
    # Smoothing spreads the 5-frame transient over ~21 frames, shorter than the 31-frame window,
    # so every window still contains untouched frames at 10.
    F0 = baseline_maximin(_transient_trace(), frame_rate_hz=1.0, sigma_s=2.0, window_s=31.0)
    assert F0.dtype == np.float32
    np.testing.assert_allclose(F0, 10.0, atol=1e-5)


def test_maximin_linear_ramp_by_hand():
    # No smoothing, 5-frame window. Minimum with nearest padding: m(t) = max(t - 2, 0).
    # Maximum of m over [t-2, t+2] (nearest padding): m(min(t + 2, 19)) = [0, 1, ..., 17, 17, 17].
    ramp = np.arange(20, dtype=np.float32)[None, :]
    expected = np.concatenate([np.arange(18), [17, 17]]).astype(np.float32)
    np.testing.assert_array_equal(
        baseline_maximin(ramp, 1.0, sigma_s=0.0, window_s=5.0)[0], expected
    )
    # 4 s at 1 Hz rounds up to the odd 5-frame window.
    np.testing.assert_array_equal(
        baseline_maximin(ramp, 1.0, sigma_s=0.0, window_s=4.0)[0], expected
    )


def test_maximin_rejects_bad_rate():
    with pytest.raises(ValueError, match="frame_rate_hz"):
        baseline_maximin(np.ones((1, 5)), frame_rate_hz=0.0, sigma_s=10.0, window_s=60.0)


def _step_trace() -> np.ndarray:
    """(1, 100): 0 before frame 50, 10 from frame 50."""
    return np.where(np.arange(100) >= 50, 10.0, 0.0).astype(np.float32)[None, :]


def test_percentile_baseline_on_step_by_hand():
    # 21-frame window centred on t holds 60 - t zeros for 40 <= t <= 60. The 8th percentile sits
    # at rank 0.08 * 20 = 1.6: 0 while >= 3 zeros (t <= 57), 0 + 0.6 * 10 = 6 with 2 zeros
    # (t = 58), 10 with <= 1 zero (t >= 59).
    F0 = baseline_percentile(_step_trace(), 1.0, window_s=21.0, percentile=8.0, step_frames=1)[0]
    expected = np.where(np.arange(100) >= 59, 10.0, 0.0)
    expected[58] = 6.0
    np.testing.assert_allclose(F0, expected, atol=1e-5)
    # The median reproduces the step exactly (11 of 21 values are 10 from t = 50 on).
    median = baseline_percentile(_step_trace(), 1.0, window_s=21.0, percentile=50.0, step_frames=1)
    np.testing.assert_array_equal(median[0], _step_trace()[0])


def test_percentile_baseline_strided_is_exact_at_evaluated_frames():
    trace = _step_trace()
    exact = baseline_percentile(trace, 1.0, window_s=21.0, percentile=8.0, step_frames=1)
    strided = baseline_percentile(trace, 1.0, window_s=21.0, percentile=8.0, step_frames=4)
    evaluated = np.append(np.arange(0, 100, 4), 99)
    np.testing.assert_allclose(strided[:, evaluated], exact[:, evaluated], atol=1e-5)
    # Between evaluations: linear interpolation (frame 58 lies between 56 -> 0 and 60 -> 10).
    np.testing.assert_allclose(strided[0, 58], 5.0, atol=1e-5)


def test_percentile_baseline_default_step_follows_a_slow_baseline():
    rng = np.random.default_rng(0)
    t = np.arange(2000) / 1.1
    slow = 100 + 20 * np.sin(2 * np.pi * t / 600)  # 10-minute drift, 60 s window
    F = (slow + rng.exponential(5.0, size=(8, t.size))).astype(np.float32)
    exact = baseline_percentile(F, 1.1, window_s=60.0, percentile=8.0, step_frames=1)
    approx = baseline_percentile(F, 1.1, window_s=60.0, percentile=8.0)
    deviation = approx - exact
    # The exact running percentile itself jumps by up to ~2 between neighbouring frames (order
    # statistics entering/leaving the window); the interpolation stays within that jitter.
    assert np.sqrt(np.mean(deviation**2)) < 0.5  # noise scale 5, drift amplitude 20
    assert np.max(np.abs(deviation)) <= np.max(np.abs(np.diff(exact, axis=1))) + 0.5
    # The baseline tracks the drift's floor (noise 8th percentile 0.42 plus the drift inside a
    # window), far below the noise mean of 5.
    assert np.all(np.abs(np.median(exact - slow, axis=1)) < 2.0)


def test_delta_f_over_f_by_hand():
    F = np.array([[12.0, 15.0, 10.0]], dtype=np.float32)
    F0 = np.full((1, 3), 10.0, dtype=np.float32)
    np.testing.assert_allclose(delta_f_over_f(F, F0, 0.1), [[0.2, 0.5, 0.0]], rtol=1e-6)


def test_f0_floor_guards_dips_and_nonpositive_baselines():
    F0 = np.array(
        [[100, 100, 100, 1, 100], [-5, -5, -5, -5, -5], [50, 50, 50, 50, 50]], dtype=np.float32
    )
    # Own medians 100 and 50; neuron 1 has none, so gets 0.1 x median(100, 50) = 7.5.
    np.testing.assert_allclose(f0_floor(F0, 0.1), [10.0, 7.5, 5.0])
    F = np.array(
        [[110, 100, 100, 6, 100], [10, -5, -5, -5, -5], [50, 55, 50, 50, 50]], dtype=np.float32
    )
    expected = [[0.1, 0, 0, (6 - 1) / 10, 0], [15 / 7.5, 0, 0, 0, 0], [0, 0.1, 0, 0, 0]]
    np.testing.assert_allclose(delta_f_over_f(F, F0, 0.1), expected, rtol=1e-6, atol=1e-7)


def test_f0_floor_without_any_positive_baseline_raises():
    with pytest.raises(ValueError, match="positive median baseline"):
        f0_floor(np.full((2, 4), -1.0), 0.1)


def test_reference_normalise_3x2_by_hand():
    # Frame 0: [1, 2, 3] -> z = [-1.22, 0, 1.22] -> [0, 0.5, 1].
    # Frame 1: [2, 4, 9] -> min-max of the z-scores = [0, 2/7, 1].
    X = np.array([[1.0, 2.0], [2.0, 4.0], [3.0, 9.0]], dtype=np.float32)
    expected = np.array([[0.0, 0.0], [0.5, 2 / 7], [1.0, 1.0]])
    out = reference_normalise(X)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, expected, atol=1e-6)


def test_reference_normalise_zero_variance_frame_is_zero():
    X = np.array([[5.0, 1.0], [5.0, 3.0]], dtype=np.float32)
    np.testing.assert_allclose(reference_normalise(X), [[0.0, 0.0], [0.0, 1.0]])


def test_drop_flat_neurons_counts_each_reason():
    rng = np.random.default_rng(1)
    F = np.stack(
        [
            rng.normal(100, 5, 50),  # kept
            np.zeros(50),  # all zero
            np.full(50, 3.0),  # constant
            np.r_[np.nan, rng.normal(100, 5, 49)],  # non-finite
            100 + 1e-9 * rng.standard_normal(50),  # within tolerance of constant
        ]
    ).astype(np.float32)
    keep, counts = drop_flat_neurons(F, atol=1e-6)
    np.testing.assert_array_equal(keep, [True, False, False, False, False])
    assert counts == {
        "n_neurons": 5,
        "n_kept": 1,
        "n_all_zero": 1,
        "n_constant": 2,
        "n_non_finite": 1,
    }


def test_params_validation_and_to_dict():
    built = params(mode="reference", baseline_method="percentile")
    as_dict = built.to_dict()
    assert json.loads(json.dumps(as_dict)) == as_dict
    assert PreprocessingParams(**as_dict) == built
    assert PreprocessingParams.from_config(as_dict) == built
    with pytest.raises(ConfigError, match=r"preprocessing\.mode.*one of.*'dF/F'"):
        params(mode="dF/F")
    with pytest.raises(ConfigError, match=r"preprocessing\.f0_floor_fraction"):
        params(f0_floor_fraction=0.0)
    # No field has a default of its own: a missing key names it.
    with pytest.raises(ConfigError, match=r"preprocessing\.flat_atol"):
        PreprocessingParams.from_config({k: v for k, v in as_dict.items() if k != "flat_atol"})


def _fish(n_frames: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """(3, T) F and Fneu: two neurons at 110 with transients, neuropil 20, one all-zero ROI."""
    F = np.full((3, n_frames), 110.0, dtype=np.float32)
    F[0, 50:55] += 50.0
    F[2, 120:125] += 100.0
    F[1] = 0.0
    Fneu = np.full((3, n_frames), 20.0, dtype=np.float32)
    return F, Fneu


def test_preprocess_dff_mode_by_hand():
    F, Fneu = _fish()
    F_before = F.copy()
    chosen = params(neuropil_coefficient=0.5, baseline_sigma_s=2.0, baseline_window_s=31.0)
    signal, keep, info = preprocess(F, Fneu, 1.0, chosen)
    # F - 0.5 * 20 = 100 at rest; transients of +50 and +100 -> dF/F 0.5 and 1.0.
    expected = np.zeros((2, 200))
    expected[0, 50:55] = 0.5
    expected[1, 120:125] = 1.0
    np.testing.assert_array_equal(keep, [True, False, True])
    assert signal.dtype == np.float32 and signal.shape == (2, 200)
    np.testing.assert_allclose(signal, expected, atol=1e-5)
    assert info["neuropil_applied"] and info["n_all_zero"] == 1 and info["n_f0_clipped"] == 0
    np.testing.assert_array_equal(F, F_before)


def test_preprocess_dff_percentile_without_neuropil():
    F, _ = _fish()
    chosen = params(baseline_method="percentile", baseline_window_s=31.0)
    signal, _, info = preprocess(F, None, 1.0, chosen)
    # No neuropil: rest 110, transients +50 / +100.
    np.testing.assert_allclose(signal[0, 50:55], 50 / 110, rtol=1e-5)
    np.testing.assert_allclose(signal[1, 120:125], 100 / 110, rtol=1e-5)
    np.testing.assert_allclose(signal[0, :40], 0.0, atol=1e-6)
    assert not info["neuropil_applied"]


def test_preprocess_reference_mode_ignores_neuropil():
    F, Fneu = _fish()
    signal, keep, info = preprocess(F, Fneu, 1.0, params(mode="reference"))
    np.testing.assert_array_equal(signal, reference_normalise(F[keep]))
    # Two kept neurons: the larger one is 1, the other 0, and equal frames are 0.
    assert signal[0, 52] == 1.0 and signal[1, 52] == 0.0 and np.all(signal[:, 0] == 0.0)
    assert not info["neuropil_applied"]


def test_preprocess_raw_mode():
    F, Fneu = _fish()
    signal, keep, _ = preprocess(F, Fneu, 1.0, params(mode="raw"))
    np.testing.assert_allclose(signal, F[keep] - 0.7 * Fneu[keep], rtol=1e-6)
    no_neuropil = params(mode="raw", neuropil_coefficient=0)
    untouched, _, info = preprocess(F, Fneu, 1.0, no_neuropil)
    np.testing.assert_array_equal(untouched, F[keep])
    assert not info["neuropil_applied"]
    untouched[0, 0] = -1.0  # the result never aliases the caller's array
    assert F[0, 0] == 110.0


def test_preprocess_rejects_all_flat_and_bad_shapes():
    with pytest.raises(ValueError, match="at least one neuron with a varying trace"):
        preprocess(np.zeros((3, 10)), None, 1.0, params())
    with pytest.raises(ValueError, match="Fneu: expected the shape of F"):
        preprocess(np.ones((3, 10)), np.ones((2, 10)), 1.0, params())
    with pytest.raises(ValueError, match="2-D"):
        preprocess(np.ones(10), None, 1.0, params())


def test_unvalidated_mode_or_baseline_method_is_a_config_error():
    F, Fneu = _fish()
    as_dict = params().to_dict()
    for key in ("mode", "baseline_method"):
        bad = PreprocessingParams(**{**as_dict, key: "dF/F"})
        with pytest.raises(ConfigError, match=rf"preprocessing\.{key}.*one of"):
            preprocess(F, Fneu, 1.0, bad)


@pytest.mark.parametrize(
    ("key", "value"),
    [("mode", m) for m in allowed_values("preprocessing", "mode")]
    + [("baseline_method", b) for b in allowed_values("preprocessing", "baseline_method")],
)
def test_every_value_the_schema_allows_has_a_step(key, value):
    F, Fneu = _fish()
    chosen = params(**{key: value}, baseline_window_s=31.0)
    signal, keep, info = preprocess(F, Fneu, 1.0, chosen)
    np.testing.assert_array_equal(keep, [True, False, True])
    assert signal.shape == (2, 200) and np.isfinite(signal).all()
    assert info["mode"] == chosen.mode


@pytest.mark.parametrize("method", ["maximin", "percentile"])
def test_preprocess_runs_at_realistic_size(method):
    # Speed sanity (no timing assertion): 2000 neurons x 2800 frames at 1.1 Hz.
    rng = np.random.default_rng(2)
    F = (200 + rng.gamma(2.0, 10.0, size=(2000, 2800))).astype(np.float32)
    Fneu = (80 + rng.normal(0, 3, size=(2000, 2800))).astype(np.float32)
    signal, keep, _ = preprocess(F, Fneu, 1.1, params(baseline_method=method))
    assert signal.shape == (2000, 2800) and signal.dtype == np.float32 and keep.all()
    assert np.isfinite(signal).all()
