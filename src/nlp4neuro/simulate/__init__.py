"""Synthetic head-fixed larval zebrafish experiment written in the paper's raw suite2p layout.

One call of `simulate_fish` writes a folder that the ingest reads exactly like a real fish
(`docs/architecture.md`, "Raw fish folder"), plus `ground_truth.nc` with everything the simulation
knows and an analysis cannot see: which neurons drive the tail, with which weights, their tuning,
the noiseless dF/F and the noiseless per-frame tail angles. Parameters: `SimulationParams`, built
from the config's `simulation` section (`SimulationParams.from_config`); a fish's seed:
`fish_seed(config seed, fish id)`.

Modules, in the order the model runs: `stimulus`, `behaviour`, `anatomy`, `calcium`, `writing`;
`params` holds the parameters and `fish` puts the steps together.
"""

from nlp4neuro.simulate.anatomy import (
    BRAIN_GEOMETRY,
    REGION_GEOMETRY,
    ROLE_REGIONS,
    ROLES,
    assign_roles,
    place_neurons,
    region_of,
    roi_stat,
)
from nlp4neuro.simulate.behaviour import (
    BOUT_KINDS,
    EVOKED_KIND,
    bout_drive,
    frame_average,
    generate_bouts,
    tail_kinematics,
    tail_profile,
)
from nlp4neuro.simulate.calcium import calcium_kernel, convolve_calcium, kernel_peak, saturate
from nlp4neuro.simulate.fish import fish_seed, simulate_fish
from nlp4neuro.simulate.params import SimulationParams
from nlp4neuro.simulate.stimulus import (
    MOVING_STIMULI,
    STIMULI,
    STIMULUS_DIRECTION_DEG,
    stimulus_at,
    stimulus_timeline,
    visual_drive,
    visual_tuning,
)

__all__ = [
    "BOUT_KINDS",
    "BRAIN_GEOMETRY",
    "EVOKED_KIND",
    "MOVING_STIMULI",
    "REGION_GEOMETRY",
    "ROLES",
    "ROLE_REGIONS",
    "STIMULI",
    "STIMULUS_DIRECTION_DEG",
    "SimulationParams",
    "assign_roles",
    "bout_drive",
    "calcium_kernel",
    "convolve_calcium",
    "fish_seed",
    "frame_average",
    "generate_bouts",
    "kernel_peak",
    "place_neurons",
    "region_of",
    "roi_stat",
    "saturate",
    "simulate_fish",
    "stimulus_at",
    "stimulus_timeline",
    "tail_kinematics",
    "tail_profile",
    "visual_drive",
    "visual_tuning",
]
