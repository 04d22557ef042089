"""Every parameter of one simulated fish, built from the config's `simulation` section.

Each field's meaning, units, range and default are written once, in the `simulation` section of
the schema (`src/nlp4neuro/config.schema.yaml`); this dataclass has no defaults of its own.
`pixel_size_um` and `plane_spacing_um` come from the `data` section, so that the simulated ROI
positions and the ingest's micrometre coordinates agree.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any

import numpy as np

from nlp4neuro.config import build, section
from nlp4neuro.errors import ConfigError

# Fields that come from the `data` section rather than from `simulation`.
DATA_FIELDS = ("pixel_size_um", "plane_spacing_um")


@dataclasses.dataclass(frozen=True)
class SimulationParams:
    """Every parameter of one simulated fish (see the schema's `simulation` section for units).

    Build it with `from_config` (or `nlp4neuro.config.build` on a validated section). The schema
    checks each value's type and range; `__post_init__` checks what it cannot express: that
    floats are finite and how fields relate to one another. Errors name the config key.
    """

    # recording
    n_neurons: int
    n_planes: int
    n_frames: int
    frame_rate_hz: float
    tail_rate_hz: float
    n_segments: int
    tail_frames_missing: int
    # geometry
    image_height_px: int
    image_width_px: int
    pixel_size_um: float
    plane_spacing_um: float
    roi_radius_um: float
    # populations
    fraction_not_cell: float
    fraction_unrelated: float
    fraction_visual: float
    fraction_motor_driver: float
    # stimulus
    epoch_min_s: float
    epoch_max_s: float
    visual_firing_rate_hz: float
    visual_adaptation_s: float
    visual_sustained_fraction: float
    # behaviour
    spontaneous_bout_rate_hz: float
    evoked_bout_rate_hz: float
    evoked_latency_s: float
    evoked_kind_fidelity: float
    min_interbout_s: float
    bout_duration_s: float
    bout_duration_log_sd: float
    vigour_log_sd: float
    beat_min_hz: float
    beat_max_hz: float
    # tail
    tail_tip_amplitude_rad: float
    turn_bias_tip_rad: float
    forward_bias_sd_rad: float
    tail_profile_exponent: float
    tail_phase_lag_rad: float
    rest_posture_sd_rad: float
    tail_tracking_noise_rad: float
    # calcium
    calcium_rise_s: float
    calcium_decay_s: float
    dff_per_spike: float
    dff_saturation: float
    bout_firing_rate_hz: float
    spontaneous_event_rate_hz: float
    spontaneous_event_spikes: float
    global_fluctuation_dff: float
    global_timescale_s: float
    # fluorescence
    baseline_f: float
    baseline_log_sd: float
    neuropil_f: float
    neuropil_coefficient: float
    neuropil_coefficient_sd: float
    neuropil_radius_um: float
    neuropil_dff_gain: float
    shot_noise_gain: float
    read_noise_sd: float
    neuropil_pixels: float
    bleach_fraction: float
    bleach_time_s: float
    drift_amplitude: float
    drift_timescale_s: float
    # ground truth
    write_noiseless_dff: bool

    def __post_init__(self) -> None:
        self._check_finite()
        self._check_counts()
        self._check_ranges()
        self._check_rates()

    def _check_finite(self) -> None:
        """Every float field is finite (the schema lets .inf and .nan through)."""
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, float) and not np.isfinite(value):
                raise ConfigError(config_key(field.name), "a finite number", value)

    def _check_counts(self) -> None:
        """Every plane can hold an ROI and the tail stream is not empty."""
        if self.n_neurons < self.n_planes:
            raise ConfigError(
                "simulation.n_neurons",
                f"at least one ROI per plane (>= n_planes = {self.n_planes})",
                self.n_neurons,
            )
        if not 0 <= self.tail_frames_missing < self.n_frames:
            raise ConfigError(
                "simulation.tail_frames_missing",
                f"an integer in [0, n_frames) = [0, {self.n_frames})",
                self.tail_frames_missing,
            )

    def _check_ranges(self) -> None:
        """Lower bounds stay below upper bounds and population fractions add up to at most 1."""
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
        if self.calcium_rise_s >= self.calcium_decay_s:
            raise ConfigError(
                "simulation.calcium_rise_s",
                f"< calcium_decay_s ({self.calcium_decay_s})",
                self.calcium_rise_s,
            )

    def _check_rates(self) -> None:
        """The tail sampling resolves the tail beat and is faster than the imaging."""
        if self.beat_max_hz >= self.tail_rate_hz / 2:
            raise ConfigError(
                "simulation.beat_max_hz",
                f"below the tail Nyquist frequency ({self.tail_rate_hz / 2} Hz)",
                self.beat_max_hz,
            )
        if self.tail_rate_hz < 2 * self.frame_rate_hz:
            raise ConfigError(
                "simulation.tail_rate_hz",
                f"at least twice frame_rate_hz ({self.frame_rate_hz})",
                self.tail_rate_hz,
            )

    @classmethod
    def from_config(
        cls, simulation: Mapping[str, Any], *, pixel_size_um: float, plane_spacing_um: float
    ) -> SimulationParams:
        """Build from the config's `simulation` section (validated here; missing keys default).

        `pixel_size_um` and `plane_spacing_um` are the `data` section's. Unknown or invalid keys
        raise `ConfigError` naming `simulation.<key>`.
        """
        values = section("simulation", **dict(simulation))
        return build(
            cls,
            values,
            "simulation",
            pixel_size_um=pixel_size_um,
            plane_spacing_um=plane_spacing_um,
        )

    @property
    def duration_s(self) -> float:
        """Length of the imaging recording (s): n_frames / frame_rate_hz."""
        return self.n_frames / self.frame_rate_hz

    def to_json(self) -> str:
        """Every parameter as a JSON object string (for netCDF attributes)."""
        return json.dumps(dataclasses.asdict(self), sort_keys=True)


def config_key(field: str) -> str:
    """The dotted config key of a SimulationParams field (`data.` for pixel size and spacing)."""
    return f"data.{field}" if field in DATA_FIELDS else f"simulation.{field}"
