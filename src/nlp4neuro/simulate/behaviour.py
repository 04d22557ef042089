"""Behaviour: swim bouts and the tail.

Bouts come from an inhomogeneous Poisson process (spontaneous rate everywhere plus an evoked rate
during motion epochs) with a refractory period. Evoked bouts follow the optomotor response:
forward motion -> forward swims, leftward -> left turns, rightward -> right turns. The tail, at
`tail_rate_hz`, beats during a bout as a travelling wave at 20-30 Hz whose amplitude grows toward
the tip, plus, for turns, a one-sided bend (positive angle = bend to the fish's left). The
oscillation averages out over an imaging frame; the bend does not, so turns move the per-frame
mean angle that the pipeline decodes.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from nlp4neuro.conventions import segment_names
from nlp4neuro.simulate.params import SimulationParams
from nlp4neuro.simulate.stimulus import MOVING_STIMULI, stimulus_timeline, visual_drive

BOUT_KINDS = ("left_turn", "right_turn", "forward_swim")
# Which bout kind each moving stimulus evokes (the optomotor response).
EVOKED_KIND = {"leftward": "left_turn", "rightward": "right_turn", "forward": "forward_swim"}


@dataclasses.dataclass(frozen=True)
class Behaviour:
    """Stimulus and behaviour of one fish on the fine (tail) time grid covering the imaging.

    `timeline`: stimulus epochs (`stimulus_timeline`); `bouts`: one row per bout
    (`generate_bouts`); `t_fine` (n_fine,) s and `frame_fine` (n_fine,) int64 imaging frame of
    each tail sample; `tail_clean` (n_fine, n_segments) noiseless angles in rad; `motor`
    (len(BOUT_KINDS), n_fine) bout vigour per kind; `visual` (len(MOVING_STIMULI), n_fine)
    normalised visual input.
    """

    timeline: pd.DataFrame
    bouts: pd.DataFrame
    t_fine: np.ndarray
    frame_fine: np.ndarray
    tail_clean: np.ndarray
    motor: np.ndarray
    visual: np.ndarray


def simulate_behaviour(
    params: SimulationParams,
    rng_stimulus: np.random.Generator,
    rng_bout: np.random.Generator,
    rng_tail: np.random.Generator,
) -> Behaviour:
    """Stimulus epochs, bouts, noiseless tail and the motor and visual drives of one fish."""
    p = params
    duration = p.duration_s
    timeline = stimulus_timeline(duration, rng_stimulus, p.epoch_min_s, p.epoch_max_s)
    t_fine = np.arange(int(np.ceil(duration * p.tail_rate_hz))) * (1.0 / p.tail_rate_hz)
    frame_fine = np.floor(t_fine * p.frame_rate_hz).astype(np.int64)
    bouts = generate_bouts(timeline, duration, p, rng_bout)
    rest = rng_tail.normal(0.0, p.rest_posture_sd_rad) * tail_profile(
        p.n_segments, p.tail_profile_exponent
    )
    tail_clean = tail_kinematics(
        bouts,
        t_fine,
        p.n_segments,
        p.tail_tip_amplitude_rad,
        p.tail_profile_exponent,
        p.tail_phase_lag_rad,
        rest,
    )
    return Behaviour(
        timeline=timeline,
        bouts=bouts,
        t_fine=t_fine,
        frame_fine=frame_fine,
        tail_clean=tail_clean,
        motor=bout_drive(bouts, t_fine),
        visual=visual_drive(timeline, t_fine, p.visual_adaptation_s, p.visual_sustained_fraction),
    )


def generate_bouts(
    timeline: pd.DataFrame,
    duration_s: float,
    params: SimulationParams,
    rng: np.random.Generator,
) -> pd.DataFrame:
    """Swim bouts from an inhomogeneous Poisson process with a refractory period.

    Candidate onsets: spontaneous at `spontaneous_bout_rate_hz` over [0, duration_s) (kinds equally
    likely) and evoked at `evoked_bout_rate_hz` inside each motion epoch after `evoked_latency_s`
    (kind = the stimulus' optomotor kind with probability `evoked_kind_fidelity`). Candidates are
    then accepted in time order only if they start at least `min_interbout_s` after the previous
    accepted bout ends, so the realised rate is a little below the nominal one.

    Returns one row per bout: `onset_s`, `duration_s`, `kind` (BOUT_KINDS), `vigour` (median 1),
    `beat_hz`, `bias_rad` (signed tip bend; + = left), `bend_exponent` (how the bend is spread
    along the tail: `tail_profile_exponent` x U(0.7, 1.3), so segments are not exact multiples of
    one another) and `evoked` (bool), sorted by onset.
    """
    onset, kind, evoked = _candidate_onsets(timeline, duration_s, params, rng)
    properties = _bout_properties(kind, params, rng)
    keep = _refractory(onset, properties["duration_s"], duration_s, params)
    return pd.DataFrame(
        {
            "onset_s": onset[keep],
            "duration_s": properties["duration_s"][keep],
            "kind": np.asarray(BOUT_KINDS)[kind[keep]],
            **{name: properties[name][keep] for name in ("vigour", "beat_hz", "bias_rad")},
            "bend_exponent": properties["bend_exponent"][keep],
            "evoked": evoked[keep],
        }
    )


def _candidate_onsets(
    timeline: pd.DataFrame, duration_s: float, params: SimulationParams, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Candidate bout onsets (s), kind indices into BOUT_KINDS and evoked flags, sorted by onset."""
    onsets = [
        rng.uniform(0.0, duration_s, size=rng.poisson(params.spontaneous_bout_rate_hz * duration_s))
    ]
    kinds = [rng.integers(len(BOUT_KINDS), size=onsets[0].size)]
    evoked = [np.zeros(onsets[0].size, dtype=bool)]
    for start, stop, name in timeline[["start_s", "stop_s", "stimulus"]].itertuples(index=False):
        if name not in MOVING_STIMULI:
            continue
        window = stop - (start + params.evoked_latency_s)
        if window <= 0:
            continue
        n = rng.poisson(params.evoked_bout_rate_hz * window)
        onsets.append(rng.uniform(start + params.evoked_latency_s, stop, size=n))
        preferred = BOUT_KINDS.index(EVOKED_KIND[name])
        faithful = rng.random(n) < params.evoked_kind_fidelity
        # Unfaithful bouts take one of the two other kinds with equal probability.
        other = (preferred + 1 + rng.integers(2, size=n)) % len(BOUT_KINDS)
        kinds.append(np.where(faithful, preferred, other))
        evoked.append(np.ones(n, dtype=bool))
    onset = np.concatenate(onsets)
    order = np.argsort(onset, kind="stable")
    return onset[order], np.concatenate(kinds)[order], np.concatenate(evoked)[order]


def _bout_properties(
    kind: np.ndarray, params: SimulationParams, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """Duration (s), vigour, beat frequency (Hz), tip bend (rad) and bend exponent of each bout."""
    p = params
    n = kind.size
    duration = p.bout_duration_s * np.exp(p.bout_duration_log_sd * rng.standard_normal(n))
    duration = np.clip(duration, 0.1, 4.0 * p.bout_duration_s)
    vigour = np.exp(p.vigour_log_sd * rng.standard_normal(n))
    beat = rng.uniform(p.beat_min_hz, p.beat_max_hz, size=n)
    turn_sign = np.select([kind == 0, kind == 1], [1.0, -1.0], 0.0)
    bias = np.where(
        turn_sign != 0,
        turn_sign * p.turn_bias_tip_rad * vigour * rng.uniform(0.7, 1.3, size=n),
        p.forward_bias_sd_rad * vigour * rng.standard_normal(n),
    )
    bend_exponent = p.tail_profile_exponent * rng.uniform(0.7, 1.3, size=n)
    return {
        "duration_s": duration,
        "vigour": vigour,
        "beat_hz": beat,
        "bias_rad": bias,
        "bend_exponent": bend_exponent,
    }


def _refractory(
    onset: np.ndarray, duration: np.ndarray, duration_s: float, params: SimulationParams
) -> np.ndarray:
    """Which sorted candidates to keep: inside the recording, `min_interbout_s` after the last."""
    # Sequential by nature; a few thousand candidates at most.
    keep = np.zeros(onset.size, dtype=bool)
    free_from = -np.inf
    for i in range(onset.size):
        if onset[i] >= free_from and onset[i] + duration[i] <= duration_s:
            keep[i] = True
            free_from = onset[i] + duration[i] + params.min_interbout_s
    return keep


def _bout_samples(bouts: pd.DataFrame, times_s: np.ndarray) -> list[tuple[int, slice, np.ndarray]]:
    """For each bout: its row, the slice of sorted `times_s` inside it and its phase u in [0, 1)."""
    first = np.searchsorted(times_s, bouts["onset_s"].to_numpy(), side="left")
    last = np.searchsorted(
        times_s, (bouts["onset_s"] + bouts["duration_s"]).to_numpy(), side="left"
    )
    out = []
    for row, (a, b) in enumerate(zip(first, last, strict=True)):
        span = slice(int(a), int(b))
        u = (times_s[span] - bouts["onset_s"].iat[row]) / bouts["duration_s"].iat[row]
        out.append((row, span, u))
    return out


def bout_drive(bouts: pd.DataFrame, times_s: np.ndarray) -> np.ndarray:
    """Motor drive per bout kind, shape (len(BOUT_KINDS), n_times), for sorted `times_s` (s).

    Row c is the vigour of the ongoing bout of kind BOUT_KINDS[c] (0 outside bouts): the command
    that the driver neurons of that kind fire at (times bout_firing_rate_hz).
    """
    drive = np.zeros((len(BOUT_KINDS), times_s.size))
    kind_index = bouts["kind"].map(BOUT_KINDS.index).to_numpy()
    for row, span, _ in _bout_samples(bouts, times_s):
        drive[kind_index[row], span] = bouts["vigour"].iat[row]
    return drive


def tail_profile(n_segments: int, exponent: float) -> np.ndarray:
    """Relative amplitude ((k+1)/n_segments) ** exponent per segment, (n_segments,); tip = 1."""
    return (np.arange(1, n_segments + 1) / n_segments) ** exponent


def tail_kinematics(
    bouts: pd.DataFrame,
    times_s: np.ndarray,
    n_segments: int,
    tip_amplitude_rad: float,
    profile_exponent: float,
    phase_lag_rad: float,
    rest_posture_rad: np.ndarray | None = None,
) -> np.ndarray:
    """Noiseless tail segment angles (rad), shape (n_times, n_segments), at sorted `times_s` (s).

    At rest the tail holds `rest_posture_rad` (shape (n_segments,), default 0). During a bout with
    phase u = (t - onset)/duration in [0, 1), segment k adds
        profile_k * vigour * tip_amplitude * sin(pi u) * sin(2 pi f (t - onset) - k * lag)
        + bend_k * bias * sin(pi u) ** 2,
    profile_k = ((k+1)/n_segments) ** profile_exponent, bend_k the same with the bout's
    `bend_exponent` (profile_k if the bouts table has no such column): a travelling wave at the beat
    frequency f growing toward the tip, plus the one-sided bend `bias_rad` (signed, + = left) of
    turns. The bend survives frame averaging; the wave mostly does not.
    """
    profile = tail_profile(n_segments, profile_exponent)
    lags = np.arange(n_segments) * phase_lag_rad
    angles = np.zeros((times_s.size, n_segments))
    if rest_posture_rad is not None:
        angles += np.asarray(rest_posture_rad, dtype=float)[None, :]
    if "bend_exponent" in bouts:
        bend_profile = (np.arange(1, n_segments + 1)[None, :] / n_segments) ** bouts[
            "bend_exponent"
        ].to_numpy()[:, None]
    else:
        bend_profile = np.broadcast_to(profile, (len(bouts), n_segments))
    for row, span, u in _bout_samples(bouts, times_s):
        onset = bouts["onset_s"].iat[row]
        envelope = np.sin(np.pi * u)
        phase = 2 * np.pi * bouts["beat_hz"].iat[row] * (times_s[span] - onset)
        wave = (
            bouts["vigour"].iat[row]
            * tip_amplitude_rad
            * envelope[:, None]
            * np.sin(phase[:, None] - lags[None, :])
        )
        bend = bouts["bias_rad"].iat[row] * (envelope**2)[:, None] * bend_profile[row][None, :]
        angles[span] += profile[None, :] * wave + bend
    return angles


def frame_average(values: np.ndarray, frame: np.ndarray, n_frames: int) -> np.ndarray:
    """Mean of `values` (n_samples, k) over the samples of each frame 0..n_frames-1.

    `frame` (n_samples,) holds the frame index of each sample; samples outside [0, n_frames) are
    ignored. Returns (n_frames, k) float64 with NaN for frames without samples.
    """
    values = np.asarray(values, dtype=float)
    squeeze = values.ndim == 1
    values = values[:, None] if squeeze else values
    frame = np.asarray(frame)
    inside = (frame >= 0) & (frame < n_frames)
    frame, values = frame[inside].astype(np.int64), values[inside]
    counts = np.bincount(frame, minlength=n_frames).astype(float)
    sums = np.stack(
        [
            np.bincount(frame, weights=values[:, j], minlength=n_frames)
            for j in range(values.shape[1])
        ],
        axis=1,
    )
    with np.errstate(invalid="ignore", divide="ignore"):
        means = sums / counts[:, None]
    means[counts == 0] = np.nan
    return means[:, 0] if squeeze else means


def recorded_tail(
    behaviour: Behaviour, params: SimulationParams, rng: np.random.Generator
) -> pd.DataFrame:
    """The tail stream as recorded: noisy, ending `tail_frames_missing` frames before the imaging.

    One row per tail sample: theta_00.. (rad), `t` (s) and `frame` (int64 imaging frame).
    """
    p = params
    recorded = behaviour.frame_fine < p.n_frames - p.tail_frames_missing
    tail_noisy = behaviour.tail_clean[recorded] + p.tail_tracking_noise_rad * rng.standard_normal(
        (int(recorded.sum()), p.n_segments)
    )
    table = pd.DataFrame(tail_noisy, columns=segment_names(p.n_segments))
    table["t"] = behaviour.t_fine[recorded]
    table["frame"] = behaviour.frame_fine[recorded]
    return table
