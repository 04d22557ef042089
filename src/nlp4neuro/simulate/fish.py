"""One whole simulated fish: stimulus, behaviour, neurons, fluorescence, files.

The generative model, in the order it runs (each step in its own module):

1. `stimulus`: epochs of leftward, rightward and forward whole-field motion and still periods.
2. `behaviour`: swim bouts (spontaneous plus optomotor-evoked) and the tail at `tail_rate_hz`.
3. `anatomy`: ROI roles, regions and positions, and each neuron's weights on the latent drives.
4. `calcium`: spikes through the indicator to noiseless dF/F and neuropil, then fluorescence
   with photobleaching, drift, neuropil contamination and shot noise.
5. `writing`: the raw suite2p layout the ingest reads and `ground_truth.nc`.

Each step draws from its own random stream spawned from the seed, so one step's draws never shift
another's.
"""

from __future__ import annotations

import logging
import zlib
from pathlib import Path

import numpy as np

from nlp4neuro.simulate.anatomy import iscell_table, simulate_population
from nlp4neuro.simulate.behaviour import recorded_tail, simulate_behaviour
from nlp4neuro.simulate.calcium import (
    add_noise,
    clean_fluorescence,
    latent_calcium,
    neuropil_dff,
    noiseless_dff,
)
from nlp4neuro.simulate.params import SimulationParams
from nlp4neuro.simulate.writing import ground_truth, write_raw_fish

logger = logging.getLogger(__name__)

# Names of the independent random streams spawned from a fish's seed, in spawn order.
STREAMS = ("stimulus", "bout", "tail", "anatomy", "neural", "fluorescence", "noise", "meta")


def fish_seed(seed: int, fish: str) -> int:
    """The simulation seed of one fish: from the base seed and the fish's id only.

    So a fish's data never depend on which other fish are listed (or in which order);
    `fish_seed(0, 3) == fish_seed(0, "3")`.
    """
    entropy = [int(seed), zlib.crc32(str(fish).encode())]
    return int(np.random.SeedSequence(entropy).generate_state(1)[0])


def simulate_fish(out_dir: str | Path, params: SimulationParams, seed: int) -> Path:
    """Simulate one fish and write it to `out_dir` in the raw layout, atomically.

    Written files (see docs/architecture.md, "Raw fish folder"):
    - `plane_{k}/F.npy`, `Fneu.npy` (float32, n_rois_k x n_frames), `iscell.npy` (float32,
      n_rois_k x 2: flag, probability), `stat.npy` (object array of dicts), `ops.npy` (0-d object
      array holding a dict: fs, nplanes, Ly, Lx, neucoeff, tau, nframes, iplane);
    - `plane_0/tail_df.h5` (key `tail`: theta_00.. in rad, `t` in s, `frame` int64), ending
      `tail_frames_missing` frames before the imaging;
    - `neuron_labels.tsv` (plane, roi, region), `stimulus.tsv` (start_s, stop_s, stimulus);
    - `ground_truth.nc` (see `writing.ground_truth`).
    An existing `out_dir` is replaced only once everything has been written. Returns `out_dir`.
    """
    out_dir = Path(out_dir)
    p = params
    children = np.random.SeedSequence(seed).spawn(len(STREAMS))
    rng = {
        name: np.random.default_rng(child) for name, child in zip(STREAMS, children, strict=True)
    }
    logger.info(
        "simulating fish: %d ROIs, %d planes, %d frames (%.0f s), seed %d",
        p.n_neurons,
        p.n_planes,
        p.n_frames,
        p.duration_s,
        seed,
    )
    behaviour = simulate_behaviour(p, rng["stimulus"], rng["bout"], rng["tail"])
    logger.info("%d stimulus epochs, %d bouts", len(behaviour.timeline), len(behaviour.bouts))
    latents = latent_calcium(behaviour.visual, behaviour.motor, p)
    population = simulate_population(p, rng["anatomy"], rng["neural"])
    plane, is_cell = population.plane, population.is_cell
    weights = np.concatenate([population.visual_w, population.motor_w], axis=1)
    dff = noiseless_dff(latents, behaviour.t_fine, weights, plane, is_cell, p, rng["neural"])
    yx_um = population.places[["y_px", "x_px"]].to_numpy() * p.pixel_size_um
    neuropil = neuropil_dff(yx_um, plane, is_cell, dff, p)
    dff[~is_cell] = neuropil[~is_cell]  # not-cells are neuropil blobs: the local neuropil signal
    logger.info("noiseless dF/F done")
    f_clean, fneu_clean, r = clean_fluorescence(
        dff, neuropil, plane, is_cell, p, rng["fluorescence"]
    )
    del neuropil
    f, fneu = add_noise(f_clean, fneu_clean, p, rng["noise"])
    del f_clean, fneu_clean
    logger.info("fluorescence done")
    write_raw_fish(
        out_dir,
        p,
        f=f,
        fneu=fneu,
        iscell=iscell_table(is_cell, rng["meta"]),
        population=population,
        tail_table=recorded_tail(behaviour, p, rng["tail"]),
        timeline=behaviour.timeline,
        ground_truth=ground_truth(p, seed, behaviour, population, r, dff),
    )
    logger.info("wrote %s", out_dir)
    return out_dir
