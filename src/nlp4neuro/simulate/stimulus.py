"""Visual stimulus: random epochs of whole-field motion and still periods, and the responses.

Epochs of leftward, rightward and forward motion and still periods follow in random order (never
the same stimulus twice in a row), with durations uniform in [epoch_min_s, epoch_max_s].
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from nlp4neuro.errors import ConfigError

STIMULI = ("leftward", "rightward", "forward", "still")
MOVING_STIMULI = ("leftward", "rightward", "forward")
# Direction of each moving stimulus in the fish's frame (degrees; 0 = toward the head, + = left).
STIMULUS_DIRECTION_DEG = {"leftward": 90.0, "rightward": -90.0, "forward": 0.0}


def stimulus_timeline(
    duration_s: float,
    rng: np.random.Generator,
    epoch_min_s: float,
    epoch_max_s: float,
    stimuli: tuple[str, ...] = STIMULI,
) -> pd.DataFrame:
    """Random sequence of stimulus epochs that tiles [0, duration_s).

    Durations are uniform in [epoch_min_s, epoch_max_s]; the last epoch is cut at duration_s (so it
    can be shorter than epoch_min_s). Each epoch shows a stimulus drawn uniformly among `stimuli`
    other than the previous one, so no two consecutive epochs show the same stimulus.

    Returns a table with one row per epoch: `start_s`, `stop_s` (float seconds, stop exclusive)
    and `stimulus` (str).
    """
    if duration_s <= 0:
        raise ConfigError("simulation.duration_s", "a duration > 0 s", duration_s)
    if not 0 < epoch_min_s <= epoch_max_s:
        raise ConfigError(
            "simulation.epoch_min_s/epoch_max_s", "0 < min <= max", (epoch_min_s, epoch_max_s)
        )
    starts, stops = _epoch_bounds(duration_s, rng, epoch_min_s, epoch_max_s)
    names = _epoch_stimuli(starts.size, rng, stimuli)
    return pd.DataFrame({"start_s": starts, "stop_s": stops, "stimulus": names})


def _epoch_bounds(
    duration_s: float, rng: np.random.Generator, epoch_min_s: float, epoch_max_s: float
) -> tuple[np.ndarray, np.ndarray]:
    """Start and stop times (s) of consecutive epochs covering [0, duration_s), each (n_epochs,)."""
    # Enough draws to cover the recording even if every epoch is the shortest.
    n_draw = int(np.ceil(duration_s / epoch_min_s)) + 1
    durations = rng.uniform(epoch_min_s, epoch_max_s, size=n_draw)
    stops = np.cumsum(durations)
    n_epochs = int(np.searchsorted(stops, duration_s, side="left")) + 1
    stops = np.minimum(stops[:n_epochs], duration_s)
    starts = np.concatenate([[0.0], stops[:-1]])
    return starts, stops


def _epoch_stimuli(n_epochs: int, rng: np.random.Generator, stimuli: tuple[str, ...]) -> list[str]:
    """One stimulus per epoch, uniform among those other than the previous epoch's."""
    names: list[str] = []
    previous = -1
    n_stimuli = len(stimuli)
    for _ in range(n_epochs):
        if n_stimuli == 1:
            choice = 0
        else:
            # Draw among the others: offset 1..n-1 from the previous index.
            choice = (
                int(rng.integers(n_stimuli))
                if previous < 0
                else (previous + 1 + int(rng.integers(n_stimuli - 1))) % n_stimuli
            )
        names.append(stimuli[choice])
        previous = choice
    return names


def stimulus_at(times_s: np.ndarray, timeline: pd.DataFrame) -> np.ndarray:
    """Stimulus shown at each time (s) according to `timeline`; times after the end get the last.

    Returns a str array with the shape of `times_s`.
    """
    starts = timeline["start_s"].to_numpy(dtype=float)
    index = np.clip(np.searchsorted(starts, times_s, side="right") - 1, 0, len(starts) - 1)
    return timeline["stimulus"].to_numpy(dtype=str)[index]


def visual_drive(
    timeline: pd.DataFrame,
    times_s: np.ndarray,
    adaptation_s: float,
    sustained_fraction: float,
) -> np.ndarray:
    """Normalised visual input per moving stimulus, shape (len(MOVING_STIMULI), n_times).

    Inside an epoch of stimulus s, row s is sustained + (1 - sustained) exp(-(t - onset)/adaptation)
    (an onset transient that adapts to a plateau, as direction-selective responses do); every other
    row and every still epoch is 0.
    """
    drive = np.zeros((len(MOVING_STIMULI), times_s.size))
    for start, stop, name in timeline[["start_s", "stop_s", "stimulus"]].itertuples(index=False):
        if name not in MOVING_STIMULI:
            continue
        inside = (times_s >= start) & (times_s < stop)
        since_onset = times_s[inside] - start
        drive[MOVING_STIMULI.index(name), inside] = sustained_fraction + (
            1.0 - sustained_fraction
        ) * np.exp(-since_onset / adaptation_s)
    return drive


def visual_tuning(preferred_deg: np.ndarray, sharpness: np.ndarray) -> np.ndarray:
    """Graded von Mises tuning to each moving stimulus, shape (n, len(MOVING_STIMULI)), peak 1.

    r_s = exp(kappa (cos(theta_s - theta_pref) - 1)), theta_s from STIMULUS_DIRECTION_DEG.
    """
    directions = np.deg2rad([STIMULUS_DIRECTION_DEG[s] for s in MOVING_STIMULI])
    delta = directions[None, :] - np.deg2rad(preferred_deg)[:, None]
    return np.exp(sharpness[:, None] * (np.cos(delta) - 1.0))
