"""Writing one simulated fish: the raw suite2p layout and `ground_truth.nc`.

The raw folder is read by the ingest exactly like a real fish (`docs/architecture.md`, "Raw fish
folder"); `ground_truth.nc` holds everything the simulation knows and an analysis cannot see.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from nlp4neuro import __version__
from nlp4neuro.conventions import positions_um, segment_names
from nlp4neuro.provenance import atomic_output, versions_json
from nlp4neuro.simulate.anatomy import Population, roi_stat
from nlp4neuro.simulate.behaviour import BOUT_KINDS, Behaviour, frame_average
from nlp4neuro.simulate.params import SimulationParams
from nlp4neuro.simulate.stimulus import MOVING_STIMULI, stimulus_at

COMPRESSED_VARIABLES = ("dff_noiseless", "tail_noiseless", "bout_vigour")


def write_raw_fish(
    out_dir: Path,
    params: SimulationParams,
    *,
    f: np.ndarray,
    fneu: np.ndarray,
    iscell: np.ndarray,
    population: Population,
    tail_table: pd.DataFrame,
    timeline: pd.DataFrame,
    ground_truth: xr.Dataset,
) -> None:
    """Write the raw layout and `ground_truth.nc` to `out_dir`, replacing it only when all is done.

    `f`, `fneu` (n_rois, n_frames) and `iscell` (n_rois, 2) are in the population's ROI order.
    """
    plane = population.plane
    with atomic_output(out_dir) as tmp:
        tmp.mkdir()
        for k in range(params.n_planes):
            members = np.flatnonzero(plane == k)
            plane_dir = tmp / f"plane_{k}"
            plane_dir.mkdir()
            np.save(plane_dir / "F.npy", f[members].astype(np.float32))
            np.save(plane_dir / "Fneu.npy", fneu[members].astype(np.float32))
            np.save(plane_dir / "iscell.npy", iscell[members])
            stat = _stat(population.places, members, params)
            np.save(plane_dir / "stat.npy", stat, allow_pickle=True)
            ops = np.array(_ops(params, k), dtype=object)
            np.save(plane_dir / "ops.npy", ops, allow_pickle=True)
        tail_table.to_hdf(tmp / "plane_0" / "tail_df.h5", key="tail", format="table")
        labels = {"plane": plane, "roi": population.roi, "region": population.regions}
        pd.DataFrame(labels).to_csv(tmp / "neuron_labels.tsv", sep="\t", index=False)
        timeline.to_csv(tmp / "stimulus.tsv", sep="\t", index=False, float_format="%.6f")
        encoding = {
            name: {"zlib": True, "complevel": 1}
            for name in COMPRESSED_VARIABLES
            if name in ground_truth
        }
        ground_truth.to_netcdf(tmp / "ground_truth.nc", engine="netcdf4", encoding=encoding)


def _stat(places: pd.DataFrame, members: np.ndarray, params: SimulationParams) -> np.ndarray:
    """suite2p `stat` of the ROIs `members` (one plane): an object array of disk-ROI dicts."""
    radius_px = params.roi_radius_um / params.pixel_size_um
    stat = np.empty(members.size, dtype=object)
    for j, i in enumerate(members):
        stat[j] = roi_stat(
            places["y_px"].iat[i],
            places["x_px"].iat[i],
            radius_px,
            params.image_height_px,
            params.image_width_px,
        )
    return stat


def _ops(params: SimulationParams, plane: int) -> dict:
    """suite2p `ops` of one plane."""
    return {
        "fs": float(params.frame_rate_hz),
        "nplanes": int(params.n_planes),
        "Ly": int(params.image_height_px),
        "Lx": int(params.image_width_px),
        "neucoeff": float(params.neuropil_coefficient),
        "tau": float(params.calcium_decay_s),
        "nframes": int(params.n_frames),
        "iplane": int(plane),
    }


def ground_truth(
    params: SimulationParams,
    seed: int,
    behaviour: Behaviour,
    population: Population,
    neuropil_coefficient: np.ndarray,
    dff: np.ndarray,
) -> xr.Dataset:
    """Ground truth as an xarray Dataset.

    Dims: `time` (frames), `neuron` (ROIs, planes concatenated in ROI order), `segment`, `driver`
    (BOUT_KINDS), `direction` (MOVING_STIMULI), `bout`, `epoch`. Per neuron: plane, roi, region,
    role, x/y/z_um, iscell, time_offset_s, neuropil_coefficient, is_driver, drive_weight (neuron,
    driver), visual_weight (neuron, direction), preferred_direction_deg, tuning. Per frame: stimulus
    (at the frame's centre), tail_noiseless (time, segment; frame mean of the noiseless tail),
    tail_recorded, bout_vigour (time, driver; frame mean of the motor drive) and, if requested,
    dff_noiseless (time, neuron; `dff` is (neuron, time)). Bouts and epochs as tables. Attrs:
    params (JSON), seed, version.
    """
    data_vars = {
        **_neuron_variables(population, neuropil_coefficient),
        **_frame_variables(behaviour, params),
        **_event_variables(behaviour),
    }
    if params.write_noiseless_dff:
        data_vars["dff_noiseless"] = (("time", "neuron"), dff.T.astype(np.float32))
    coords = {**_frame_coords(behaviour, params), **_neuron_coords(population, params)}
    coords |= {
        "segment": ("segment", segment_names(params.n_segments)),
        "driver": ("driver", list(BOUT_KINDS)),
        "direction": ("direction", list(MOVING_STIMULI)),
    }
    dataset = xr.Dataset(data_vars, coords=coords)
    dataset.attrs = {
        "title": "nlp4neuro simulated fish: ground truth",
        "params": params.to_json(),
        "seed": int(seed),
        "frame_rate_hz": float(params.frame_rate_hz),
        "units_time": "s",
        "units_tail": "rad; positive = bend to the fish's left",
        "units_position": "um; y rostral->caudal, x fish's left->right, z = plane * spacing",
        "stimulus_convention": "stimulus shown at the centre of each frame",
        "nlp4neuro_version": __version__,
        "versions": versions_json(),
    }
    return dataset


def _neuron_variables(population: Population, neuropil_coefficient: np.ndarray) -> dict:
    """Per-neuron truth: driver flag, drive and visual weights, preference, tuning, true r."""
    return {
        "is_driver": ("neuron", population.roles == "motor_driver"),
        "drive_weight": (("neuron", "driver"), population.motor_w),
        "visual_weight": (("neuron", "direction"), population.visual_w),
        "preferred_direction_deg": ("neuron", population.preferred),
        "tuning": ("neuron", population.tuning.astype(str)),
        "neuropil_coefficient": ("neuron", neuropil_coefficient),
    }


def _frame_variables(behaviour: Behaviour, params: SimulationParams) -> dict:
    """Per-frame truth: frame means of the noiseless tail and of the motor drive."""
    n_frames = params.n_frames
    tail_frames = frame_average(behaviour.tail_clean, behaviour.frame_fine, n_frames)
    vigour = frame_average(behaviour.motor.T, behaviour.frame_fine, n_frames)
    return {
        "tail_noiseless": (("time", "segment"), tail_frames.astype(np.float32)),
        "tail_recorded": ("time", np.arange(n_frames) < n_frames - params.tail_frames_missing),
        "bout_vigour": (("time", "driver"), vigour.astype(np.float32)),
    }


def _event_variables(behaviour: Behaviour) -> dict:
    """The bouts (dim `bout`) and the stimulus epochs (dim `epoch`) as tables."""
    bouts, timeline = behaviour.bouts, behaviour.timeline
    return {
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


def _frame_coords(behaviour: Behaviour, params: SimulationParams) -> dict:
    """Time (s, frame start), frame index and the stimulus shown at each frame's centre."""
    frames = np.arange(params.n_frames)
    frame_centre_s = (frames + 0.5) / params.frame_rate_hz
    return {
        "time": ("time", frames / params.frame_rate_hz),
        "frame": ("time", frames.astype(np.int64)),
        "stimulus": ("time", stimulus_at(frame_centre_s, behaviour.timeline)),
    }


def _neuron_coords(population: Population, params: SimulationParams) -> dict:
    """Neuron index, plane, roi, region, role, iscell, x/y/z_um and acquisition time offset."""
    places, plane = population.places, population.plane
    positions = positions_um(
        places["x_px"].to_numpy(),
        places["y_px"].to_numpy(),
        plane,
        params.pixel_size_um,
        params.plane_spacing_um,
    )
    time_offset = plane / (params.n_planes * params.frame_rate_hz)
    return {
        "neuron": ("neuron", np.arange(population.roles.size, dtype=np.int64)),
        "plane": ("neuron", plane.astype(np.int64)),
        "roi": ("neuron", population.roi.astype(np.int64)),
        "region": ("neuron", population.regions),
        "role": ("neuron", population.roles.astype(str)),
        "iscell": ("neuron", population.is_cell),
        **{name: ("neuron", values) for name, values in positions.items()},
        "time_offset_s": ("neuron", time_offset.astype(float)),
    }
