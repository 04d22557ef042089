"""Synthetic head-fixed larval zebrafish experiment written in the paper's raw suite2p layout.

One call of `simulate_fish` writes a folder that the ingest reads exactly like a real fish
(`docs/architecture.md`, "Raw fish folder"), plus `ground_truth.nc` with everything the simulation
knows and an analysis cannot see: which neurons drive the tail, with which weights, their tuning,
the noiseless dF/F and the noiseless per-frame tail angles.

The generative model, in the order it runs:

1. Visual stimulus: epochs of leftward, rightward and forward whole-field motion and still
   periods, random order, durations uniform in [epoch_min_s, epoch_max_s].
2. Behaviour: swim bouts from an inhomogeneous Poisson process (spontaneous rate everywhere plus an
   evoked rate during motion epochs), with a refractory period. Evoked bouts follow the optomotor
   response: forward motion -> forward swims, leftward -> left turns, rightward -> right turns.
3. Tail (at `tail_rate_hz`): during a bout, a travelling wave at 20-30 Hz whose amplitude grows
   toward the tip, plus, for turns, a one-sided bend (positive angle = bend to the fish's left).
   The oscillation averages out over an imaging frame; the bend does not, so turns move the
   per-frame mean angle that the pipeline decodes.
4. Neurons: direction-tuned pretectal and tectal neurons driven by the stimulus; lateralised
   hindbrain "driver" neurons whose firing is the bout vigour of their side (left hindbrain for
   left turns, both sides for forward swims); cerebellar neurons that carry a bilateral copy of the
   motor drive; and a majority of neurons unrelated to stimulus and behaviour (sparse spontaneous
   events and a weak brain-wide fluctuation). Spikes are filtered by a GCaMP6s-like
   double-exponential kernel at the tail sampling step and sampled at each plane's own acquisition
   time within the volume.
5. Fluorescence: F = F0 (1 + dF/F) x photobleaching x slow drift, plus neuropil contamination
   r * Fneu from a local neuropil trace, plus shot noise whose variance grows with intensity. A few
   ROIs are not cells (neuropil blobs) and are flagged 0 in `iscell.npy`.

Coordinates: image rows (y) run rostral -> caudal, image columns (x) run from the fish's left to
its right; z = plane * plane_spacing_um. Because the latent time courses are few, neuronal activity
is a weighted sum of a handful of filtered latents, which keeps a paper-scale fish (10,000 neurons,
2,800 frames) within seconds and about 1-2 GB.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr
from scipy import signal, sparse, spatial

from nlp4neuro import __version__
from nlp4neuro.errors import ConfigError
from nlp4neuro.provenance import atomic_output, versions_json

logger = logging.getLogger(__name__)

STIMULI = ("leftward", "rightward", "forward", "still")
MOVING_STIMULI = ("leftward", "rightward", "forward")
# Direction of each moving stimulus in the fish's frame (degrees; 0 = toward the head, + = left).
STIMULUS_DIRECTION_DEG = {"leftward": 90.0, "rightward": -90.0, "forward": 0.0}
BOUT_KINDS = ("left_turn", "right_turn", "forward_swim")
# Which bout kind each moving stimulus evokes (the optomotor response).
EVOKED_KIND = {"leftward": "left_turn", "rightward": "right_turn", "forward": "forward_swim"}
ROLES = ("unrelated", "visual", "motor_driver", "motor_correlate", "not_cell")

# Region ellipses (centre and semi-axes as fractions of image height (y), width (x) and stack depth
# (z)). Plausible larval midbrain + hindbrain layout seen from above; ellipses do not overlap.
REGION_GEOMETRY: dict[str, tuple[float, float, float, float, float, float]] = {
    # name: (cy, cx, cz, ry, rx, rz)
    "Pt_left": (0.22, 0.40, 0.35, 0.07, 0.06, 0.9),
    "Pt_right": (0.22, 0.60, 0.35, 0.07, 0.06, 0.9),
    "tectum_left": (0.25, 0.22, 0.30, 0.14, 0.12, 1.0),
    "tectum_right": (0.25, 0.78, 0.30, 0.14, 0.12, 1.0),
    "cerebellum": (0.50, 0.50, 0.25, 0.06, 0.22, 0.9),
    "Hb_left": (0.72, 0.42, 0.60, 0.16, 0.07, 1.0),
    "Hb_right": (0.72, 0.58, 0.60, 0.16, 0.07, 1.0),
}
# The whole imaged brain; neurons inside it but outside every region above are "other".
BRAIN_GEOMETRY = (0.50, 0.50, 0.50, 0.48, 0.46, 1.2)
# Where each functional population lives (region: probability).
ROLE_REGIONS = {
    "visual": {"Pt_left": 0.35, "Pt_right": 0.35, "tectum_left": 0.15, "tectum_right": 0.15},
    "motor_driver": {"Hb_left": 0.5, "Hb_right": 0.5},
    "motor_correlate": {"cerebellum": 1.0},
}


@dataclasses.dataclass(frozen=True)
class SimulationParams:
    """Every parameter of one simulated fish, with units.

    Recording
        n_neurons: ROIs over all planes together (cells and not-cells).
        n_planes: imaging planes per volume.
        n_frames: imaging volumes (frames) T.
        frame_rate_hz: volume rate fs (Hz); plane k of frame f is acquired at (f + k/n_planes)/fs s.
        tail_rate_hz: tail camera sampling rate (Hz).
        n_segments: tail segment angles theta_00.. written per tail sample.
        tail_frames_missing: the tail stream ends this many frames before the imaging stream
            (the paper's T vs T-2 mismatch).
    Geometry
        image_height_px, image_width_px: Ly, Lx of each plane (pixels; y runs rostral->caudal,
            x from the fish's left to its right).
        pixel_size_um: pixel size (um).
        plane_spacing_um: distance between planes (um).
        roi_radius_um: radius of each ROI's pixel disk (um; H2B-GCaMP nuclei are ~5 um across).
    Populations
        fraction_not_cell: fraction of ROIs that are not cells (iscell = 0).
        fraction_unrelated: fraction of cells unrelated to stimulus and behaviour.
        fraction_visual: fraction of the related cells that are direction-tuned visual neurons.
        fraction_motor_driver: fraction of the related cells that are hindbrain driver neurons; the
            rest of the related cells are cerebellar motor-correlated (efference copy) neurons.
    Stimulus
        epoch_min_s, epoch_max_s: bounds of the uniform stimulus epoch duration (s).
        visual_firing_rate_hz: firing rate of a visual neuron at motion onset in its preferred
            direction (spikes/s).
        visual_adaptation_s: time constant of the response decay within a motion epoch (s).
        visual_sustained_fraction: fraction of the onset response that is sustained (0-1).
    Behaviour
        spontaneous_bout_rate_hz: bout rate in every epoch (bouts/s).
        evoked_bout_rate_hz: extra bout rate during motion epochs (bouts/s).
        evoked_latency_s: no evoked bout starts earlier than this after motion onset (s).
        evoked_kind_fidelity: probability that an evoked bout has the stimulus' kind (the rest split
            evenly between the two other kinds).
        min_interbout_s: minimum pause between the end of a bout and the next onset (s).
        bout_duration_s: median bout duration (s).
        bout_duration_log_sd: standard deviation of log bout duration.
        vigour_log_sd: standard deviation of log bout vigour (median vigour 1, dimensionless).
        beat_min_hz, beat_max_hz: range of the tail-beat frequency of a bout (Hz).
    Tail
        tail_tip_amplitude_rad: oscillation amplitude of the last segment at vigour 1 (rad).
        turn_bias_tip_rad: peak one-sided bend of the last segment in a turn at vigour 1 (rad).
        forward_bias_sd_rad: standard deviation of the small bend of forward swims (rad).
        tail_profile_exponent: segment k's amplitude is ((k+1)/n_segments) ** exponent x the tip's.
        tail_phase_lag_rad: phase lag of the travelling wave per segment (rad).
        rest_posture_sd_rad: standard deviation of the fish's resting tail posture at the tip (rad).
        tail_tracking_noise_rad: standard deviation of the tracking noise per sample (rad).
    Calcium
        calcium_rise_s, calcium_decay_s: rise and decay time constants of the double-exponential
            indicator kernel (s; GCaMP6s ~0.2 and ~1.8).
        dff_per_spike: peak dF/F of one spike (dimensionless; nuclear GCaMP6s ~0.1-0.2).
        dff_saturation: dF/F at which the indicator response is halved relative to linear.
        bout_firing_rate_hz: firing rate of a driver neuron of weight 1 during a bout of vigour 1.
        spontaneous_event_rate_hz: rate of spontaneous burst events of every cell (events/s).
        spontaneous_event_spikes: mean spikes per spontaneous event.
        global_fluctuation_dff: mean dF/F amplitude of a slow brain-wide fluctuation.
        global_timescale_s: timescale of that fluctuation (s).
    Fluorescence
        baseline_f: median cell baseline fluorescence F0 (a.u., photon-count-like).
        baseline_log_sd: standard deviation of log F0 across cells.
        neuropil_f: median neuropil baseline fluorescence (a.u.).
        neuropil_coefficient: mean true contamination r in F = F_cell + r * Fneu.
        neuropil_coefficient_sd: standard deviation of r across ROIs.
        neuropil_radius_um: Gaussian radius over which the neuropil averages nearby cells (um).
        neuropil_dff_gain: neuropil dF/F per unit of the local mean cell dF/F.
        shot_noise_gain: variance of the shot noise per unit intensity (a.u.).
        read_noise_sd: additive detector noise (a.u.).
        neuropil_pixels: pixels averaged in a neuropil trace (divides its shot-noise variance).
        bleach_fraction: mean fraction of fluorescence lost to photobleaching at long times.
        bleach_time_s: mean photobleaching time constant (s).
        drift_amplitude: standard deviation of the slow multiplicative drift (fraction of F).
        drift_timescale_s: Gaussian smoothing timescale of that drift (s).
    Ground truth
        write_noiseless_dff: store the noiseless dF/F (time x neuron) in ground_truth.nc.
    """

    # recording
    n_neurons: int = 600
    n_planes: int = 3
    n_frames: int = 900
    frame_rate_hz: float = 1.1
    tail_rate_hz: float = 200.0
    n_segments: int = 6
    tail_frames_missing: int = 2
    # geometry
    image_height_px: int = 1024
    image_width_px: int = 768
    pixel_size_um: float = 0.6
    plane_spacing_um: float = 10.0
    roi_radius_um: float = 2.5
    # populations
    fraction_not_cell: float = 0.05
    fraction_unrelated: float = 0.8
    fraction_visual: float = 0.45
    fraction_motor_driver: float = 0.35
    # stimulus
    epoch_min_s: float = 10.0
    epoch_max_s: float = 30.0
    visual_firing_rate_hz: float = 3.0
    visual_adaptation_s: float = 5.0
    visual_sustained_fraction: float = 0.5
    # behaviour
    spontaneous_bout_rate_hz: float = 0.05
    evoked_bout_rate_hz: float = 0.4
    evoked_latency_s: float = 0.5
    evoked_kind_fidelity: float = 0.8
    min_interbout_s: float = 0.3
    bout_duration_s: float = 0.3
    bout_duration_log_sd: float = 0.25
    vigour_log_sd: float = 0.3
    beat_min_hz: float = 20.0
    beat_max_hz: float = 30.0
    # tail
    tail_tip_amplitude_rad: float = 0.6
    turn_bias_tip_rad: float = 0.8
    forward_bias_sd_rad: float = 0.05
    tail_profile_exponent: float = 1.5
    tail_phase_lag_rad: float = 0.5
    rest_posture_sd_rad: float = 0.02
    tail_tracking_noise_rad: float = 0.01
    # calcium
    calcium_rise_s: float = 0.2
    calcium_decay_s: float = 1.8
    dff_per_spike: float = 0.15
    dff_saturation: float = 5.0
    bout_firing_rate_hz: float = 20.0
    spontaneous_event_rate_hz: float = 0.03
    spontaneous_event_spikes: float = 4.0
    global_fluctuation_dff: float = 0.05
    global_timescale_s: float = 30.0
    # fluorescence
    baseline_f: float = 400.0
    baseline_log_sd: float = 0.4
    neuropil_f: float = 200.0
    neuropil_coefficient: float = 0.7
    neuropil_coefficient_sd: float = 0.05
    neuropil_radius_um: float = 20.0
    neuropil_dff_gain: float = 0.5
    shot_noise_gain: float = 1.0
    read_noise_sd: float = 5.0
    neuropil_pixels: float = 100.0
    bleach_fraction: float = 0.15
    bleach_time_s: float = 1200.0
    drift_amplitude: float = 0.03
    drift_timescale_s: float = 120.0
    # ground truth
    write_noiseless_dff: bool = True

    def __post_init__(self) -> None:
        positive_ints = ("n_neurons", "n_planes", "n_frames", "n_segments")
        for name in positive_ints:
            value = getattr(self, name)
            if not isinstance(value, int | np.integer) or value < 1:
                raise ConfigError(f"simulation.{name}", "an integer >= 1", value)
        if self.n_neurons < self.n_planes:
            raise ConfigError(
                "simulation.n_neurons",
                f"at least one ROI per plane (>= {self.n_planes})",
                self.n_neurons,
            )
        if self.image_height_px < 8 or self.image_width_px < 8:
            raise ConfigError(
                "simulation.image_height_px/image_width_px",
                "at least 8 pixels each",
                (self.image_height_px, self.image_width_px),
            )
        positive = (
            "frame_rate_hz",
            "tail_rate_hz",
            "pixel_size_um",
            "plane_spacing_um",
            "roi_radius_um",
            "epoch_min_s",
            "visual_adaptation_s",
            "bout_duration_s",
            "beat_min_hz",
            "calcium_rise_s",
            "calcium_decay_s",
            "dff_saturation",
            "global_timescale_s",
            "baseline_f",
            "neuropil_f",
            "neuropil_radius_um",
            "neuropil_pixels",
            "bleach_time_s",
            "drift_timescale_s",
        )
        for name in positive:
            value = getattr(self, name)
            if not np.isfinite(value) or value <= 0:
                raise ConfigError(f"simulation.{name}", "a finite number > 0", value)
        non_negative = (
            "visual_firing_rate_hz",
            "spontaneous_bout_rate_hz",
            "evoked_bout_rate_hz",
            "evoked_latency_s",
            "min_interbout_s",
            "bout_duration_log_sd",
            "vigour_log_sd",
            "tail_tip_amplitude_rad",
            "turn_bias_tip_rad",
            "forward_bias_sd_rad",
            "tail_profile_exponent",
            "tail_phase_lag_rad",
            "rest_posture_sd_rad",
            "tail_tracking_noise_rad",
            "dff_per_spike",
            "bout_firing_rate_hz",
            "spontaneous_event_rate_hz",
            "spontaneous_event_spikes",
            "global_fluctuation_dff",
            "baseline_log_sd",
            "neuropil_coefficient",
            "neuropil_coefficient_sd",
            "neuropil_dff_gain",
            "shot_noise_gain",
            "read_noise_sd",
            "drift_amplitude",
        )
        for name in non_negative:
            value = getattr(self, name)
            if not np.isfinite(value) or value < 0:
                raise ConfigError(f"simulation.{name}", "a finite number >= 0", value)
        fractions = (
            "fraction_not_cell",
            "fraction_unrelated",
            "fraction_visual",
            "fraction_motor_driver",
            "visual_sustained_fraction",
            "evoked_kind_fidelity",
        )
        for name in fractions:
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"simulation.{name}", "a fraction in [0, 1]", value)
        if not 0.0 <= self.bleach_fraction < 1.0:
            raise ConfigError(
                "simulation.bleach_fraction", "a fraction in [0, 1)", self.bleach_fraction
            )
        if self.fraction_visual + self.fraction_motor_driver > 1.0:
            raise ConfigError(
                "simulation.fraction_visual + fraction_motor_driver",
                "at most 1",
                self.fraction_visual + self.fraction_motor_driver,
            )
        if self.epoch_max_s < self.epoch_min_s:
            raise ConfigError(
                "simulation.epoch_max_s", f">= epoch_min_s ({self.epoch_min_s})", self.epoch_max_s
            )
        if self.beat_max_hz < self.beat_min_hz:
            raise ConfigError(
                "simulation.beat_max_hz", f">= beat_min_hz ({self.beat_min_hz})", self.beat_max_hz
            )
        if self.beat_max_hz >= self.tail_rate_hz / 2:
            raise ConfigError(
                "simulation.beat_max_hz",
                f"below the tail Nyquist frequency ({self.tail_rate_hz / 2} Hz)",
                self.beat_max_hz,
            )
        if self.calcium_rise_s >= self.calcium_decay_s:
            raise ConfigError(
                "simulation.calcium_rise_s",
                f"< calcium_decay_s ({self.calcium_decay_s})",
                self.calcium_rise_s,
            )
        if not 0 <= self.tail_frames_missing < self.n_frames:
            raise ConfigError(
                "simulation.tail_frames_missing",
                f"an integer in [0, n_frames) = [0, {self.n_frames})",
                self.tail_frames_missing,
            )
        if self.tail_rate_hz < 2 * self.frame_rate_hz:
            raise ConfigError(
                "simulation.tail_rate_hz",
                f"at least twice frame_rate_hz ({self.frame_rate_hz})",
                self.tail_rate_hz,
            )

    @classmethod
    def from_config(
        cls, simulation: dict, *, pixel_size_um: float, plane_spacing_um: float
    ) -> SimulationParams:
        """Build from the config's ``simulation`` section (its ``overrides`` merged in).

        The pixel size and plane spacing come from the config's ``data`` section so that the
        simulated ROI positions and the ingest's micrometre coordinates agree.
        """
        fields = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in simulation.items() if k != "overrides"}
        overrides = dict(simulation.get("overrides", {}))
        for name in overrides:
            if name not in fields:
                raise ConfigError(
                    f"simulation.overrides.{name}", "a field of SimulationParams", name
                )
        values.update(overrides)
        unknown = sorted(set(values) - fields)
        if unknown:
            raise ConfigError("simulation", "fields of SimulationParams", unknown)
        values.update(pixel_size_um=pixel_size_um, plane_spacing_um=plane_spacing_um)
        return cls(**values)

    @property
    def duration_s(self) -> float:
        """Length of the imaging recording (s): n_frames / frame_rate_hz."""
        return self.n_frames / self.frame_rate_hz

    def to_json(self) -> str:
        """Every parameter as a JSON object string (for netCDF attributes)."""
        return json.dumps(dataclasses.asdict(self), sort_keys=True)


def paper_scale_params() -> SimulationParams:
    """Parameters at the scale of one fish of the paper.

    ~10,000 ROIs over 6 planes, 2,800 volumes at 1.1 Hz (~42 min), tail at 200 Hz.
    """
    return SimulationParams(n_neurons=10_000, n_planes=6, n_frames=2_800)


# --------------------------------------------------------------------------------------------------
# Stimulus
# --------------------------------------------------------------------------------------------------


def stimulus_timeline(
    duration_s: float,
    rng: np.random.Generator,
    epoch_min_s: float = 10.0,
    epoch_max_s: float = 30.0,
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
    # Enough draws to cover the recording even if every epoch is the shortest.
    n_draw = int(np.ceil(duration_s / epoch_min_s)) + 1
    durations = rng.uniform(epoch_min_s, epoch_max_s, size=n_draw)
    stops = np.cumsum(durations)
    n_epochs = int(np.searchsorted(stops, duration_s, side="left")) + 1
    stops = np.minimum(stops[:n_epochs], duration_s)
    starts = np.concatenate([[0.0], stops[:-1]])
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
    return pd.DataFrame({"start_s": starts, "stop_s": stops, "stimulus": names})


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


# --------------------------------------------------------------------------------------------------
# Calcium indicator
# --------------------------------------------------------------------------------------------------


def kernel_peak(rise_s: float, decay_s: float) -> tuple[float, float]:
    """Time (s) and height of the maximum of exp(-t/decay) - exp(-t/rise).

    t_peak = rise * decay / (decay - rise) * ln(decay / rise).
    """
    if not 0 < rise_s < decay_s:
        raise ConfigError("simulation.calcium_rise_s", f"in (0, decay_s={decay_s})", rise_s)
    t_peak = rise_s * decay_s / (decay_s - rise_s) * np.log(decay_s / rise_s)
    return float(t_peak), float(np.exp(-t_peak / decay_s) - np.exp(-t_peak / rise_s))


def calcium_kernel(
    dt_s: float, rise_s: float, decay_s: float, duration_s: float | None = None
) -> np.ndarray:
    """Indicator response to one spike sampled every dt_s, normalised to a peak of 1.

    h(t) = (exp(-t/decay) - exp(-t/rise)) / peak, t = 0, dt, 2 dt, ... up to duration_s
    (default 10 decay constants). Shape (n_steps,), dimensionless (multiply by dF/F per spike).
    """
    if dt_s <= 0:
        raise ConfigError("simulation.dt_s", "a time step > 0 s", dt_s)
    _, peak = kernel_peak(rise_s, decay_s)
    duration_s = 10.0 * decay_s if duration_s is None else duration_s
    t = np.arange(int(np.floor(duration_s / dt_s)) + 1) * dt_s
    return (np.exp(-t / decay_s) - np.exp(-t / rise_s)) / peak


def convolve_calcium(
    events: np.ndarray, dt_s: float, rise_s: float, decay_s: float, axis: int = -1
) -> np.ndarray:
    """Causal convolution of spike counts per time step with `calcium_kernel` (untruncated).

    Equal to sum_n h[n] events[t - n] with h = calcium_kernel(dt_s, rise_s, decay_s); computed
    exactly as the difference of two first-order recursions (scipy.signal.lfilter), so its cost
    does not grow with the kernel length. `events` may have any shape; time runs along `axis`.
    Returns float64 of the same shape (calcium in units of single-spike peaks).
    """
    _, peak = kernel_peak(rise_s, decay_s)
    decay_factor = np.exp(-dt_s / decay_s)
    rise_factor = np.exp(-dt_s / rise_s)
    events = np.asarray(events, dtype=float)
    slow = signal.lfilter([1.0], [1.0, -decay_factor], events, axis=axis)
    fast = signal.lfilter([1.0], [1.0, -rise_factor], events, axis=axis)
    return (slow - fast) / peak


def saturate(dff: np.ndarray, dff_saturation: float) -> np.ndarray:
    """Indicator saturation: dff / (1 + dff / dff_saturation); halves the response at saturation."""
    return dff / (1.0 + np.maximum(dff, 0.0) / dff_saturation)


# --------------------------------------------------------------------------------------------------
# Behaviour: bouts and tail
# --------------------------------------------------------------------------------------------------


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
    kind = np.concatenate(kinds)
    is_evoked = np.concatenate(evoked)
    order = np.argsort(onset, kind="stable")
    onset, kind, is_evoked = onset[order], kind[order], is_evoked[order]
    n = onset.size
    duration = params.bout_duration_s * np.exp(params.bout_duration_log_sd * rng.standard_normal(n))
    duration = np.clip(duration, 0.1, 4.0 * params.bout_duration_s)
    vigour = np.exp(params.vigour_log_sd * rng.standard_normal(n))
    beat = rng.uniform(params.beat_min_hz, params.beat_max_hz, size=n)
    turn_sign = np.select([kind == 0, kind == 1], [1.0, -1.0], 0.0)
    bias = np.where(
        turn_sign != 0,
        turn_sign * params.turn_bias_tip_rad * vigour * rng.uniform(0.7, 1.3, size=n),
        params.forward_bias_sd_rad * vigour * rng.standard_normal(n),
    )
    bend_exponent = params.tail_profile_exponent * rng.uniform(0.7, 1.3, size=n)
    # Refractory filter: sequential by nature; a few thousand candidates at most.
    keep = np.zeros(n, dtype=bool)
    free_from = -np.inf
    for i in range(n):
        if onset[i] >= free_from and onset[i] + duration[i] <= duration_s:
            keep[i] = True
            free_from = onset[i] + duration[i] + params.min_interbout_s
    return pd.DataFrame(
        {
            "onset_s": onset[keep],
            "duration_s": duration[keep],
            "kind": np.asarray(BOUT_KINDS)[kind[keep]],
            "vigour": vigour[keep],
            "beat_hz": beat[keep],
            "bias_rad": bias[keep],
            "bend_exponent": bend_exponent[keep],
            "evoked": is_evoked[keep],
        }
    )


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


# --------------------------------------------------------------------------------------------------
# Anatomy and populations
# --------------------------------------------------------------------------------------------------


def _plane_depth_fraction(n_planes: int) -> np.ndarray:
    """Depth of each plane as a fraction of the stack (0 = top plane, 1 = bottom)."""
    return np.full(1, 0.5) if n_planes == 1 else np.arange(n_planes) / (n_planes - 1)


def _cross_section(geometry: tuple[float, ...], depth: np.ndarray) -> np.ndarray:
    """Scale factor in [0, 1] of an ellipsoid's cross-section at each plane depth fraction."""
    _, _, cz, _, _, rz = geometry
    return np.sqrt(np.clip(1.0 - ((depth - cz) / rz) ** 2, 0.0, None))


def _sample_in_ellipse(
    geometry: tuple[float, ...], scale: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Uniform points (y, x fractions) in the ellipse cross-sections of the given scales."""
    cy, cx, _, ry, rx, _ = geometry
    radius = np.sqrt(rng.random(scale.size)) * scale
    angle = rng.uniform(0, 2 * np.pi, size=scale.size)
    return cy + ry * radius * np.sin(angle), cx + rx * radius * np.cos(angle)


def region_of(y_frac: np.ndarray, x_frac: np.ndarray, plane_depth: np.ndarray) -> np.ndarray:
    """Region name of each point (fractions of image height/width, plane depth fraction)."""
    names = np.full(y_frac.shape, "other", dtype=object)
    for name, geometry in REGION_GEOMETRY.items():
        cy, cx, _, ry, rx, _ = geometry
        scale = _cross_section(geometry, plane_depth)
        with np.errstate(divide="ignore", invalid="ignore"):
            inside = ((y_frac - cy) / ry) ** 2 + ((x_frac - cx) / rx) ** 2 < scale**2
        names[inside & (names == "other")] = name
    return names.astype(str)


def assign_roles(n_rois: int, params: SimulationParams, rng: np.random.Generator) -> np.ndarray:
    """Functional role of each ROI (ROLES), with counts rounded from the fractions, shuffled."""
    n_not_cell = round(params.fraction_not_cell * n_rois)
    n_cells = n_rois - n_not_cell
    n_related = round((1.0 - params.fraction_unrelated) * n_cells)
    n_visual = round(params.fraction_visual * n_related)
    n_driver = round(params.fraction_motor_driver * n_related)
    n_correlate = max(n_related - n_visual - n_driver, 0)
    roles = np.array(
        ["not_cell"] * n_not_cell
        + ["visual"] * n_visual
        + ["motor_driver"] * n_driver
        + ["motor_correlate"] * n_correlate
        + ["unrelated"] * (n_cells - n_visual - n_driver - n_correlate)
    )
    return rng.permutation(roles)


def place_neurons(
    roles: np.ndarray, params: SimulationParams, rng: np.random.Generator
) -> pd.DataFrame:
    """Plane, sub-pixel position and region of each ROI.

    Related cells are drawn uniformly inside their role's region ellipsoids (ROLE_REGIONS), the
    plane weighted by the ellipsoid's cross-section area there; unrelated cells and not-cells are
    drawn uniformly inside the whole brain ellipsoid and take the region they fall in. Returns a
    table in input order with `plane` (int), `y_px`, `x_px` (float pixels), `region` (str).
    """
    depth = _plane_depth_fraction(params.n_planes)
    n = roles.size
    plane = np.zeros(n, dtype=np.int64)
    y_frac = np.zeros(n)
    x_frac = np.zeros(n)
    forced_region = np.full(n, "", dtype=object)

    def draw(indices: np.ndarray, geometry: tuple[float, ...]) -> None:
        area = _cross_section(geometry, depth) ** 2
        if area.sum() <= 0:
            raise ConfigError(
                "simulation.n_planes", "planes that cut every region", params.n_planes
            )
        planes = rng.choice(params.n_planes, size=indices.size, p=area / area.sum())
        y, x = _sample_in_ellipse(geometry, _cross_section(geometry, depth)[planes], rng)
        plane[indices], y_frac[indices], x_frac[indices] = planes, y, x

    for role, table in ROLE_REGIONS.items():
        members = np.flatnonzero(roles == role)
        names = list(table)
        chosen = rng.choice(len(names), size=members.size, p=np.array(list(table.values())))
        for k, name in enumerate(names):
            draw(members[chosen == k], REGION_GEOMETRY[name])
            forced_region[members[chosen == k]] = name
    background = np.flatnonzero(~np.isin(roles, list(ROLE_REGIONS)))
    draw(background, BRAIN_GEOMETRY)
    # suite2p never writes an empty plane: move background ROIs into planes left empty by chance.
    for k in np.flatnonzero(np.bincount(plane, minlength=params.n_planes) == 0):
        counts = np.bincount(plane, minlength=params.n_planes)
        donors = background[counts[plane[background]] > 1]
        if donors.size == 0:
            logger.warning("plane %d has no ROI: too few unrelated ROIs to fill it", k)
            continue
        moved = donors[:1]
        plane[moved] = k
        y_frac[moved], x_frac[moved] = _sample_in_ellipse(
            BRAIN_GEOMETRY, _cross_section(BRAIN_GEOMETRY, depth[[k]]), rng
        )
    region = region_of(y_frac, x_frac, depth[plane]).astype(object)
    region[forced_region != ""] = forced_region[forced_region != ""]
    y_px = np.clip(y_frac * params.image_height_px, 0, params.image_height_px - 1)
    x_px = np.clip(x_frac * params.image_width_px, 0, params.image_width_px - 1)
    return pd.DataFrame({"plane": plane, "y_px": y_px, "x_px": x_px, "region": region.astype(str)})


def roi_stat(y_px: float, x_px: float, radius_px: float, height: int, width: int) -> dict:
    """suite2p-like `stat` dict of a disk ROI centred at sub-pixel (y_px, x_px).

    Keys: `ypix`, `xpix` (int32 pixel coordinates), `lam` (float32 Gaussian weights, sum 1),
    `npix`, `med` ([y, x] ints: the pixel under the centre), `radius` (pixels).
    """
    reach = int(np.ceil(radius_px))
    cy, cx = round(y_px), round(x_px)
    dy, dx = np.mgrid[-reach : reach + 1, -reach : reach + 1]
    ypix, xpix = (cy + dy).ravel(), (cx + dx).ravel()
    dist2 = (ypix - y_px) ** 2 + (xpix - x_px) ** 2
    inside = (dist2 <= radius_px**2) & (ypix >= 0) & (ypix < height) & (xpix >= 0) & (xpix < width)
    inside[np.argmin(dist2)] = True  # never an empty ROI
    lam = np.exp(-dist2[inside] / (2 * (radius_px / 2) ** 2))
    return {
        "ypix": ypix[inside].astype(np.int32),
        "xpix": xpix[inside].astype(np.int32),
        "lam": (lam / lam.sum()).astype(np.float32),
        "npix": int(inside.sum()),
        "med": [cy, cx],
        "radius": float(radius_px),
    }


def visual_tuning(preferred_deg: np.ndarray, sharpness: np.ndarray) -> np.ndarray:
    """Graded von Mises tuning to each moving stimulus, shape (n, len(MOVING_STIMULI)), peak 1.

    r_s = exp(kappa (cos(theta_s - theta_pref) - 1)), theta_s from STIMULUS_DIRECTION_DEG.
    """
    directions = np.deg2rad([STIMULUS_DIRECTION_DEG[s] for s in MOVING_STIMULI])
    delta = directions[None, :] - np.deg2rad(preferred_deg)[:, None]
    return np.exp(sharpness[:, None] * (np.cos(delta) - 1.0))


def _weights(
    roles: np.ndarray, regions: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Visual weights (n, 3), motor weights (n, 3), preferred direction (deg, NaN) and tuning label.

    Pretectum: mostly tuned to ipsilateral-direction motion (left Pt -> leftward), some to forward;
    tectum: broader, weaker, any direction. Hindbrain drivers: strong weight on the ipsilateral
    turn, moderate on forward swims, little on the contralateral turn. Cerebellum: bilateral copy.
    """
    n = roles.size
    visual_w = np.zeros((n, len(MOVING_STIMULI)))
    motor_w = np.zeros((n, len(BOUT_KINDS)))
    preferred = np.full(n, np.nan)
    tuning = np.full(n, "none", dtype=object)

    visual = roles == "visual"
    is_pt = visual & np.char.startswith(regions.astype(str), "Pt")
    side = np.where(np.char.endswith(regions.astype(str), "left"), 1.0, -1.0)
    # Pt: 60 % around the ipsilateral lateral direction, 40 % around forward, 20 deg jitter.
    centre = np.where(rng.random(n) < 0.6, 90.0 * side, 0.0)
    pt_pref = centre + rng.normal(0.0, 20.0, size=n)
    tectum_pref = rng.uniform(-180.0, 180.0, size=n)
    preferred[visual] = np.where(is_pt, pt_pref, tectum_pref)[visual]
    sharpness = np.where(is_pt, rng.uniform(1.0, 4.0, size=n), rng.uniform(0.5, 1.5, size=n))
    gain = np.where(is_pt, rng.uniform(0.5, 1.5, size=n), rng.uniform(0.2, 0.7, size=n))
    curves = visual_tuning(np.nan_to_num(preferred), sharpness)
    visual_w[visual] = (gain[:, None] * curves)[visual]
    tuning[visual] = np.asarray(MOVING_STIMULI)[np.argmax(curves[visual], axis=1)]

    drivers = np.flatnonzero(roles == "motor_driver")
    left = np.char.endswith(regions[drivers].astype(str), "left")
    ipsi = rng.uniform(0.6, 1.4, size=drivers.size)
    contra = rng.uniform(0.0, 0.15, size=drivers.size)
    motor_w[drivers, 0] = np.where(left, ipsi, contra)
    motor_w[drivers, 1] = np.where(left, contra, ipsi)
    motor_w[drivers, 2] = rng.uniform(0.2, 0.8, size=drivers.size)
    tuning[drivers] = np.where(left, "left_turn", "right_turn")

    correlates = np.flatnonzero(roles == "motor_correlate")
    motor_w[correlates] = rng.uniform(0.2, 0.6, size=(correlates.size, 1))
    tuning[correlates] = "bout"
    return visual_w, motor_w, preferred, tuning.astype(str)


def _smooth_noise(
    n_rows: int, n_steps: int, sigma_steps: float, rng: np.random.Generator
) -> np.ndarray:
    """Gaussian-smoothed white noise with unit variance, shape (n_rows, n_steps).

    The noise is drawn 4 sigma beyond both ends and cropped, so every sample is a full filter
    window of independent noise and the variance is exactly sum w^2 of the weights, even when the
    recording is shorter than the timescale (then each row is a nearly constant offset).
    """
    pad = int(4.0 * sigma_steps + 0.5)  # Gaussian truncated at 4 sigma
    offsets = np.arange(-pad, pad + 1)
    weights = np.exp(-0.5 * (offsets / sigma_steps) ** 2)
    weights /= weights.sum()
    noise = rng.standard_normal((n_rows, n_steps + 2 * pad)).astype(np.float32)
    # FFT convolution: long timescales make direct filtering cost n_steps x 8 sigma per row.
    smooth = signal.fftconvolve(noise, weights[None, :].astype(np.float32), mode="valid", axes=1)
    return smooth / np.float32(np.sqrt(np.sum(weights**2)))


def _local_neuropil(
    positions_um: np.ndarray, is_cell: np.ndarray, dff: np.ndarray, radius_um: float
) -> np.ndarray:
    """Gaussian-weighted mean dF/F of the other cells within 3 radii, per ROI, (n_rois, T) float32.

    `positions_um` (n_rois, 2) for one plane; ROIs with no cell nearby get 0.
    """
    n = positions_um.shape[0]
    cells = np.flatnonzero(is_cell)
    out = np.zeros((n, dff.shape[1]), dtype=np.float32)
    if cells.size == 0:
        return out
    pairs = spatial.cKDTree(positions_um).sparse_distance_matrix(
        spatial.cKDTree(positions_um[cells]), 3.0 * radius_um, output_type="ndarray"
    )
    rows, cols, dist = pairs["i"], pairs["j"], pairs["v"]
    not_self = rows != cells[cols]
    rows, cols, dist = rows[not_self], cols[not_self], dist[not_self]
    weights = sparse.csr_matrix(
        (np.exp(-(dist**2) / (2 * radius_um**2)), (rows, cols)), shape=(n, cells.size)
    )
    total = np.asarray(weights.sum(axis=1)).ravel()
    local = weights @ dff[cells]
    has = total > 0
    out[has] = local[has] / total[has, None]
    return out


# --------------------------------------------------------------------------------------------------
# The whole fish
# --------------------------------------------------------------------------------------------------


def simulate_fish(out_dir: str | Path, params: SimulationParams, seed: int) -> Path:
    """Simulate one fish and write it to `out_dir` in the raw layout, atomically.

    Written files (see docs/architecture.md, "Raw fish folder"):
    - `plane_{k}/F.npy`, `Fneu.npy` (float32, n_rois_k x n_frames), `iscell.npy` (float32,
      n_rois_k x 2: flag, probability), `stat.npy` (object array of dicts), `ops.npy` (0-d object
      array holding a dict: fs, nplanes, Ly, Lx, neucoeff, tau, nframes, iplane);
    - `plane_0/tail_df.h5` (key `tail`: theta_00.. in rad, `t` in s, `frame` int64), ending
      `tail_frames_missing` frames before the imaging;
    - `neuron_labels.tsv` (plane, roi, region), `stimulus.tsv` (start_s, stop_s, stimulus);
    - `ground_truth.nc` (see `_ground_truth`).
    An existing `out_dir` is replaced only once everything has been written. Returns `out_dir`.
    """
    out_dir = Path(out_dir)
    p = params
    streams = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(8)]
    rng_stim, rng_bout, rng_tail, rng_anat, rng_neural, rng_fluor, rng_noise, rng_meta = streams
    duration = p.duration_s
    logger.info(
        "simulating fish: %d ROIs, %d planes, %d frames (%.0f s), seed %d",
        p.n_neurons,
        p.n_planes,
        p.n_frames,
        duration,
        seed,
    )

    # Stimulus and behaviour on the fine (tail) time grid covering the whole imaging.
    timeline = stimulus_timeline(duration, rng_stim, p.epoch_min_s, p.epoch_max_s)
    dt = 1.0 / p.tail_rate_hz
    t_fine = np.arange(int(np.ceil(duration * p.tail_rate_hz))) * dt
    frame_fine = np.floor(t_fine * p.frame_rate_hz).astype(np.int64)
    bouts = generate_bouts(timeline, duration, p, rng_bout)
    logger.info("%d stimulus epochs, %d bouts", len(timeline), len(bouts))
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
    motor = bout_drive(bouts, t_fine)
    visual = visual_drive(timeline, t_fine, p.visual_adaptation_s, p.visual_sustained_fraction)

    # Latent calcium: spikes per fine step of a unit-weight neuron, filtered by the indicator.
    latent_events = np.concatenate(
        [visual * p.visual_firing_rate_hz * dt, motor * p.bout_firing_rate_hz * dt]
    )
    latent_calcium = convolve_calcium(latent_events, dt, p.calcium_rise_s, p.calcium_decay_s)

    # Anatomy and roles, then suite2p ROI order: planes in order, random detection order inside.
    roles = assign_roles(p.n_neurons, p, rng_anat)
    places = place_neurons(roles, p, rng_anat)
    order = np.lexsort((rng_anat.random(p.n_neurons), places["plane"].to_numpy()))
    roles = roles[order]
    places = places.iloc[order].reset_index(drop=True)
    plane = places["plane"].to_numpy()
    regions = places["region"].to_numpy(dtype=str)
    roi = np.zeros(p.n_neurons, dtype=np.int64)
    for k in range(p.n_planes):
        roi[plane == k] = np.arange(int((plane == k).sum()))
    is_cell = roles != "not_cell"
    visual_w, motor_w, preferred, tuning = _weights(roles, regions, rng_neural)
    weights = np.concatenate([visual_w, motor_w], axis=1)

    # Noiseless dF/F of the cells, each plane sampled at its own time within the volume.
    n, n_frames = p.n_neurons, p.n_frames
    time_offset = plane / (p.n_planes * p.frame_rate_hz)
    spikes_equiv = np.zeros((n, n_frames), dtype=np.float32)
    for k in range(p.n_planes):
        members = plane == k
        t_plane = np.arange(n_frames) / p.frame_rate_hz + k / (p.n_planes * p.frame_rate_hz)
        sampled = np.stack([np.interp(t_plane, t_fine, trace) for trace in latent_calcium])
        spikes_equiv[members] = weights[members] @ sampled
    # Spontaneous burst events at frame resolution: count ~ Poisson, spikes ~ Gamma(count, mean).
    counts = rng_neural.poisson(p.spontaneous_event_rate_hz / p.frame_rate_hz, size=(n, n_frames))
    spikes = rng_neural.gamma(counts.astype(float), p.spontaneous_event_spikes)  # 0 when count 0
    spikes_equiv += convolve_calcium(
        spikes, 1.0 / p.frame_rate_hz, p.calcium_rise_s, p.calcium_decay_s
    ).astype(np.float32)
    del counts, spikes
    global_trace = _smooth_noise(1, n_frames, p.global_timescale_s * p.frame_rate_hz, rng_neural)
    global_load = p.global_fluctuation_dff * rng_neural.uniform(0.0, 2.0, size=(n, 1))
    dff = saturate(p.dff_per_spike * spikes_equiv, p.dff_saturation) + global_load * global_trace
    dff = dff.astype(np.float32)
    del spikes_equiv
    dff[~is_cell] = 0.0

    # Neuropil: a blurred, diluted local mean of the cells in the same plane.
    positions_um = places[["y_px", "x_px"]].to_numpy() * p.pixel_size_um
    neuropil_dff = np.zeros_like(dff)
    for k in range(p.n_planes):
        members = np.flatnonzero(plane == k)
        neuropil_dff[members] = p.neuropil_dff_gain * _local_neuropil(
            positions_um[members], is_cell[members], dff[members], p.neuropil_radius_um
        )
    # Not-cells are neuropil blobs: they show the local neuropil signal.
    dff[~is_cell] = neuropil_dff[~is_cell]
    logger.info("noiseless dF/F done")

    # Fluorescence: baselines, bleaching, drift, contamination, shot noise.
    t_frames = (np.arange(n_frames)[None, :] + plane[:, None] / p.n_planes) / p.frame_rate_hz
    f0 = p.baseline_f * np.exp(p.baseline_log_sd * rng_fluor.standard_normal((n, 1)))
    f0[~is_cell] *= 0.5  # neuropil blobs are dimmer than nuclei
    fneu0 = p.neuropil_f * np.exp(0.2 * rng_fluor.standard_normal((n, 1)))
    bleach_amount = np.clip(p.bleach_fraction * rng_fluor.uniform(0.5, 1.5, (n, 1)), 0.0, 0.95)
    bleach_tau = p.bleach_time_s * rng_fluor.uniform(0.7, 1.3, (n, 1))
    bleach = (1.0 - bleach_amount + bleach_amount * np.exp(-t_frames / bleach_tau)).astype(
        np.float32
    )
    drift = 1.0 + p.drift_amplitude * _smooth_noise(
        n, n_frames, p.drift_timescale_s * p.frame_rate_hz, rng_fluor
    )
    slow = bleach * drift
    del bleach, drift
    r = np.clip(
        p.neuropil_coefficient + p.neuropil_coefficient_sd * rng_fluor.standard_normal(n), 0.0, None
    )
    f_cell = (f0 * (1.0 + dff) * slow).astype(np.float32)
    fneu_clean = (fneu0 * (1.0 + neuropil_dff) * slow).astype(np.float32)
    del slow, neuropil_dff
    f_clean = f_cell + r[:, None].astype(np.float32) * fneu_clean
    del f_cell
    f_noisy = f_clean + (
        np.sqrt(p.shot_noise_gain * np.clip(f_clean, 0.0, None))
        * rng_noise.standard_normal(f_clean.shape, dtype=np.float32)
        + p.read_noise_sd * rng_noise.standard_normal(f_clean.shape, dtype=np.float32)
    )
    del f_clean
    fneu_noisy = fneu_clean + np.sqrt(
        p.shot_noise_gain * np.clip(fneu_clean, 0.0, None) / p.neuropil_pixels
    ) * rng_noise.standard_normal(fneu_clean.shape, dtype=np.float32)
    del fneu_clean
    logger.info("fluorescence done")

    # Tail stream as recorded: noisy, ending tail_frames_missing frames early.
    recorded = frame_fine < n_frames - p.tail_frames_missing
    tail_noisy = tail_clean[recorded] + p.tail_tracking_noise_rad * rng_tail.standard_normal(
        (int(recorded.sum()), p.n_segments)
    )
    segment_names = [f"theta_{k:02d}" for k in range(p.n_segments)]
    tail_table = pd.DataFrame(tail_noisy, columns=segment_names)
    tail_table["t"] = t_fine[recorded]
    tail_table["frame"] = frame_fine[recorded]

    # iscell: flag and a classifier-like probability that agrees with it.
    prob = np.where(
        is_cell, 0.5 + 0.5 * rng_meta.beta(4.0, 2.0, n), 0.5 * rng_meta.beta(2.0, 4.0, n)
    )
    iscell = np.stack([is_cell.astype(np.float32), prob.astype(np.float32)], axis=1)
    radius_px = p.roi_radius_um / p.pixel_size_um

    ground_truth = _ground_truth(
        params=p,
        seed=seed,
        places=places,
        roi=roi,
        roles=roles,
        is_cell=is_cell,
        neuropil_coefficient=r,
        visual_w=visual_w,
        motor_w=motor_w,
        preferred=preferred,
        tuning=tuning,
        time_offset=time_offset,
        timeline=timeline,
        bouts=bouts,
        tail_frames=frame_average(tail_clean, frame_fine, n_frames),
        bout_vigour=frame_average(motor.T, frame_fine, n_frames),
        dff=dff,
    )

    with atomic_output(out_dir) as tmp:
        tmp.mkdir()
        for k in range(p.n_planes):
            members = np.flatnonzero(plane == k)
            plane_dir = tmp / f"plane_{k}"
            plane_dir.mkdir()
            np.save(plane_dir / "F.npy", f_noisy[members].astype(np.float32))
            np.save(plane_dir / "Fneu.npy", fneu_noisy[members].astype(np.float32))
            np.save(plane_dir / "iscell.npy", iscell[members])
            stat = np.empty(members.size, dtype=object)
            for j, i in enumerate(members):
                stat[j] = roi_stat(
                    places["y_px"].iat[i],
                    places["x_px"].iat[i],
                    radius_px,
                    p.image_height_px,
                    p.image_width_px,
                )
            np.save(plane_dir / "stat.npy", stat, allow_pickle=True)
            ops = {
                "fs": float(p.frame_rate_hz),
                "nplanes": int(p.n_planes),
                "Ly": int(p.image_height_px),
                "Lx": int(p.image_width_px),
                "neucoeff": float(p.neuropil_coefficient),
                "tau": float(p.calcium_decay_s),
                "nframes": int(n_frames),
                "iplane": int(k),
            }
            np.save(plane_dir / "ops.npy", np.array(ops, dtype=object), allow_pickle=True)
        tail_table.to_hdf(tmp / "plane_0" / "tail_df.h5", key="tail", format="table")
        pd.DataFrame({"plane": plane, "roi": roi, "region": regions}).to_csv(
            tmp / "neuron_labels.tsv", sep="\t", index=False
        )
        timeline.to_csv(tmp / "stimulus.tsv", sep="\t", index=False, float_format="%.6f")
        encoding = {
            name: {"zlib": True, "complevel": 1}
            for name in ("dff_noiseless", "tail_noiseless", "bout_vigour")
            if name in ground_truth
        }
        ground_truth.to_netcdf(tmp / "ground_truth.nc", engine="netcdf4", encoding=encoding)
    logger.info("wrote %s", out_dir)
    return out_dir


def _ground_truth(
    *,
    params: SimulationParams,
    seed: int,
    places: pd.DataFrame,
    roi: np.ndarray,
    roles: np.ndarray,
    is_cell: np.ndarray,
    neuropil_coefficient: np.ndarray,
    visual_w: np.ndarray,
    motor_w: np.ndarray,
    preferred: np.ndarray,
    tuning: np.ndarray,
    time_offset: np.ndarray,
    timeline: pd.DataFrame,
    bouts: pd.DataFrame,
    tail_frames: np.ndarray,
    bout_vigour: np.ndarray,
    dff: np.ndarray,
) -> xr.Dataset:
    """Ground truth as an xarray Dataset.

    Dims: `time` (frames), `neuron` (ROIs, planes concatenated in ROI order), `segment`, `driver`
    (BOUT_KINDS), `direction` (MOVING_STIMULI), `bout`, `epoch`. Per neuron: plane, roi, region,
    role, x/y/z_um, iscell, time_offset_s, neuropil_coefficient, is_driver, drive_weight (neuron,
    driver), visual_weight (neuron, direction), preferred_direction_deg, tuning. Per frame: stimulus
    (at the frame's centre), tail_noiseless (time, segment; frame mean of the noiseless tail),
    tail_recorded, bout_vigour (time, driver; frame mean of the motor drive) and, if requested,
    dff_noiseless (time, neuron). Bouts and epochs as tables. Attrs: params (JSON), seed, version.
    """
    p = params
    n_frames = p.n_frames
    frames = np.arange(n_frames)
    frame_centre_s = (frames + 0.5) / p.frame_rate_hz
    segments = [f"theta_{k:02d}" for k in range(p.n_segments)]
    data_vars: dict[str, tuple] = {
        "is_driver": ("neuron", roles == "motor_driver"),
        "drive_weight": (("neuron", "driver"), motor_w),
        "visual_weight": (("neuron", "direction"), visual_w),
        "preferred_direction_deg": ("neuron", preferred),
        "tuning": ("neuron", tuning.astype(str)),
        "neuropil_coefficient": ("neuron", neuropil_coefficient),
        "tail_noiseless": (("time", "segment"), tail_frames.astype(np.float32)),
        "tail_recorded": ("time", frames < n_frames - p.tail_frames_missing),
        "bout_vigour": (("time", "driver"), bout_vigour.astype(np.float32)),
        "bout_onset_s": ("bout", bouts["onset_s"].to_numpy(dtype=float)),
        "bout_duration_s": ("bout", bouts["duration_s"].to_numpy(dtype=float)),
        "bout_kind": ("bout", bouts["kind"].to_numpy(dtype=str)),
        "bout_vigour_scale": ("bout", bouts["vigour"].to_numpy(dtype=float)),
        "bout_beat_hz": ("bout", bouts["beat_hz"].to_numpy(dtype=float)),
        "bout_bias_rad": ("bout", bouts["bias_rad"].to_numpy(dtype=float)),
        "bout_bend_exponent": ("bout", bouts["bend_exponent"].to_numpy(dtype=float)),
        "bout_evoked": ("bout", bouts["evoked"].to_numpy(dtype=bool)),
        "epoch_start_s": ("epoch", timeline["start_s"].to_numpy(dtype=float)),
        "epoch_stop_s": ("epoch", timeline["stop_s"].to_numpy(dtype=float)),
        "epoch_stimulus": ("epoch", timeline["stimulus"].to_numpy(dtype=str)),
    }
    if p.write_noiseless_dff:
        data_vars["dff_noiseless"] = (("time", "neuron"), dff.T.astype(np.float32))
    coords = {
        "time": ("time", frames / p.frame_rate_hz),
        "frame": ("time", frames.astype(np.int64)),
        "stimulus": ("time", stimulus_at(frame_centre_s, timeline)),
        "neuron": ("neuron", np.arange(roles.size, dtype=np.int64)),
        "plane": ("neuron", places["plane"].to_numpy(dtype=np.int64)),
        "roi": ("neuron", roi.astype(np.int64)),
        "region": ("neuron", places["region"].to_numpy(dtype=str)),
        "role": ("neuron", roles.astype(str)),
        "iscell": ("neuron", is_cell),
        "x_um": ("neuron", places["x_px"].to_numpy() * p.pixel_size_um),
        "y_um": ("neuron", places["y_px"].to_numpy() * p.pixel_size_um),
        "z_um": ("neuron", places["plane"].to_numpy() * p.plane_spacing_um),
        "time_offset_s": ("neuron", time_offset.astype(float)),
        "segment": ("segment", segments),
        "driver": ("driver", list(BOUT_KINDS)),
        "direction": ("direction", list(MOVING_STIMULI)),
    }
    dataset = xr.Dataset(data_vars, coords=coords)
    dataset.attrs = {
        "title": "nlp4neuro simulated fish: ground truth",
        "params": p.to_json(),
        "seed": int(seed),
        "frame_rate_hz": float(p.frame_rate_hz),
        "units_time": "s",
        "units_tail": "rad; positive = bend to the fish's left",
        "units_position": "um; y rostral->caudal, x fish's left->right, z = plane * spacing",
        "stimulus_convention": "stimulus shown at the centre of each frame",
        "nlp4neuro_version": __version__,
        "versions": versions_json(),
    }
    return dataset
