"""Tests for the synthetic fish: building blocks against hand-computed values, then the files."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
import yaml

from nlp4neuro.config import default_value, schema, validate_config
from nlp4neuro.errors import ConfigError
from nlp4neuro.simulate import (
    BOUT_KINDS,
    MOVING_STIMULI,
    STIMULI,
    SimulationParams,
    assign_roles,
    bout_drive,
    calcium_kernel,
    convolve_calcium,
    fish_seed,
    frame_average,
    generate_bouts,
    kernel_peak,
    place_neurons,
    region_of,
    roi_stat,
    saturate,
    simulate_fish,
    stimulus_at,
    stimulus_timeline,
    tail_kinematics,
    tail_profile,
    visual_drive,
    visual_tuning,
)
from nlp4neuro.simulate.calcium import _smooth_noise
from nlp4neuro.simulate.params import DATA_FIELDS

REPO = Path(__file__).resolve().parents[1]


def _params(**simulation) -> SimulationParams:
    """Parameters from the schema's defaults with `simulation` keys changed (as the workflow)."""
    return SimulationParams.from_config(
        simulation,
        pixel_size_um=default_value("data", "pixel_size_um"),
        plane_spacing_um=default_value("data", "plane_spacing_um"),
    )


TINY = _params(n_neurons=60, n_planes=3, n_frames=120)


@pytest.fixture(scope="module")
def tiny_fish(tmp_path_factory: pytest.TempPathFactory):
    return simulate_fish(tmp_path_factory.mktemp("sim") / "raw_data_f1", TINY, seed=3)


def _bouts(rows: list[dict]) -> pd.DataFrame:
    defaults = {"vigour": 1.0, "beat_hz": 25.0, "bias_rad": 0.0, "evoked": False}
    return pd.DataFrame([{**defaults, **row} for row in rows])


# ----------------------------------------------------------------------------- stimulus


def test_stimulus_timeline_fixed_durations_by_hand():
    # min = max = 30 s over 100 s: epochs [0,30), [30,60), [60,90), [90,100).
    timeline = stimulus_timeline(100.0, np.random.default_rng(0), 30.0, 30.0)
    np.testing.assert_allclose(timeline["start_s"], [0, 30, 60, 90])
    np.testing.assert_allclose(timeline["stop_s"], [30, 60, 90, 100])


def test_stimulus_timeline_tiles_recording_within_bounds():
    timeline = stimulus_timeline(1000.0, np.random.default_rng(1), 10.0, 30.0)
    starts, stops = timeline["start_s"].to_numpy(), timeline["stop_s"].to_numpy()
    assert starts[0] == 0.0 and stops[-1] == pytest.approx(1000.0)
    np.testing.assert_array_equal(starts[1:], stops[:-1])
    durations = stops - starts
    assert np.all((durations[:-1] >= 10.0) & (durations[:-1] <= 30.0))
    assert 0 < durations[-1] <= 30.0
    names = timeline["stimulus"].to_numpy()
    assert set(names) <= set(STIMULI) and len(set(names)) == len(STIMULI)
    assert np.all(names[1:] != names[:-1])  # no stimulus twice in a row


def test_stimulus_at_and_visual_drive_by_hand():
    timeline = pd.DataFrame(
        {"start_s": [0.0, 10.0, 20.0], "stop_s": [10.0, 20.0, 30.0]}
        | {"stimulus": ["still", "leftward", "forward"]}
    )
    times = np.array([0.0, 9.99, 10.0, 15.0, 29.0])
    assert list(stimulus_at(times, timeline)) == [
        "still",
        "still",
        "leftward",
        "leftward",
        "forward",
    ]
    drive = visual_drive(timeline, times, adaptation_s=5.0, sustained_fraction=0.5)
    left, right, forward = (MOVING_STIMULI.index(s) for s in ("leftward", "rightward", "forward"))
    # At onset 1; after one adaptation constant 0.5 + 0.5/e; nothing in still or other rows.
    assert drive[left, 2] == pytest.approx(1.0)
    assert drive[left, 3] == pytest.approx(0.5 + 0.5 / np.e)
    assert drive[forward, 4] == pytest.approx(0.5 + 0.5 * np.exp(-9.0 / 5.0))
    assert np.all(drive[:, :2] == 0) and np.all(drive[right] == 0)


def test_visual_tuning_von_mises_by_hand():
    curves = visual_tuning(np.array([90.0]), np.array([2.0]))[0]
    expected = {"leftward": 1.0, "forward": np.exp(-2.0), "rightward": np.exp(-4.0)}
    for name, value in expected.items():
        assert curves[MOVING_STIMULI.index(name)] == pytest.approx(value)


# ----------------------------------------------------------------------------- calcium


def test_kernel_peak_matches_hand_computation():
    # t_peak = 0.2 * 1.8 / 1.6 * ln 9 = 0.49438 s; height = e^-0.27466 - e^-2.47190 = 0.67541.
    t_peak, height = kernel_peak(0.2, 1.8)
    assert t_peak == pytest.approx(0.49438, abs=1e-4)
    assert height == pytest.approx(0.67541, abs=1e-4)
    kernel = calcium_kernel(0.001, 0.2, 1.8)
    assert kernel.max() == pytest.approx(1.0, abs=1e-5)
    assert np.argmax(kernel) * 0.001 == pytest.approx(0.494, abs=0.002)


def test_kernel_decays_by_one_over_e_per_decay_constant():
    dt, decay = 0.001, 1.8
    kernel = calcium_kernel(dt, 0.2, decay)
    at_2s, at_2s_plus_tau = kernel[2000], kernel[2000 + 1800]
    assert at_2s_plus_tau / at_2s == pytest.approx(1 / np.e, rel=1e-3)
    # Integral of (e^-t/1.8 - e^-t/0.2) / 0.67541 = (1.8 - 0.2) / 0.67541 = 2.3689 s.
    assert kernel.sum() * dt == pytest.approx(2.3689, rel=5e-3)
    assert kernel[0] == 0.0  # causal, no instantaneous response


def test_convolve_calcium_equals_direct_convolution():
    rng = np.random.default_rng(0)
    events = rng.poisson(0.2, size=(3, 400)).astype(float)
    kernel = calcium_kernel(0.05, 0.2, 1.8, duration_s=400 * 0.05)
    fast = convolve_calcium(events, 0.05, 0.2, 1.8)
    direct = np.stack([np.convolve(row, kernel)[:400] for row in events])
    np.testing.assert_allclose(fast, direct, atol=1e-9)
    single = convolve_calcium(np.eye(1, 50)[0], 0.05, 0.2, 1.8)
    np.testing.assert_allclose(single, kernel[:50], atol=1e-12)


def test_saturation_halves_at_saturation_level():
    assert saturate(np.array([5.0]), 5.0)[0] == pytest.approx(2.5)
    assert saturate(np.array([0.01]), 5.0)[0] == pytest.approx(0.01, rel=3e-3)


# ----------------------------------------------------------------------------- behaviour


def test_frame_average_hand_made():
    values = np.array([[1.0, 0.0], [2.0, 0.0], [3.0, 3.0], [10.0, 1.0], [20.0, 1.0], [99.0, 9.0]])
    frame = np.array([0, 0, 0, 2, 2, 5])  # frame 1 empty, frame 5 out of range (n_frames = 3)
    means = frame_average(values, frame, n_frames=3)
    np.testing.assert_allclose(means[0], [2.0, 1.0])
    assert np.all(np.isnan(means[1]))
    np.testing.assert_allclose(means[2], [15.0, 1.0])


def test_frame_average_removes_whole_cycles_of_a_200hz_oscillation():
    # 25 Hz sine + 0.1 rad offset at 200 Hz, 1 Hz frames: 25 whole cycles per frame -> mean 0.1.
    t = np.arange(400) / 200.0
    values = 0.1 + 0.5 * np.sin(2 * np.pi * 25.0 * t)
    means = frame_average(values, np.floor(t).astype(int), n_frames=2)
    np.testing.assert_allclose(means, [0.1, 0.1], atol=1e-12)


def test_tail_amplitude_grows_toward_tip_and_beats_at_bout_frequency():
    t = np.arange(200) / 200.0
    bouts = _bouts([{"onset_s": 0.2, "duration_s": 0.4, "kind": "forward_swim"}])
    angles = tail_kinematics(bouts, t, 6, 0.6, 1.5, 0.5)
    inside = (t >= 0.2) & (t < 0.6)
    amplitude = np.abs(angles[inside]).max(axis=0)
    assert np.all(np.diff(amplitude) > 0)
    assert amplitude[-1] <= 0.6 + 1e-12  # tip amplitude x envelope peak <= 0.6 rad
    np.testing.assert_allclose(angles[~inside], 0.0, atol=1e-12)
    spectrum = np.abs(np.fft.rfft(angles[:, -1]))
    assert np.fft.rfftfreq(200, 1 / 200.0)[np.argmax(spectrum)] == pytest.approx(25.0, abs=2.0)
    np.testing.assert_allclose(tail_profile(4, 1.0), [0.25, 0.5, 0.75, 1.0])


def test_left_and_right_turns_give_opposite_frame_means():
    t = np.arange(800) / 200.0  # 4 frames at 1 Hz
    bouts = _bouts(
        [
            {"onset_s": 0.3, "duration_s": 0.3, "kind": "left_turn", "bias_rad": 0.8},
            {"onset_s": 2.3, "duration_s": 0.3, "kind": "right_turn", "bias_rad": -0.8},
        ]
    )
    means = frame_average(tail_kinematics(bouts, t, 6, 0.6, 1.5, 0.5), np.floor(t), 4)
    # Bend 0.8 x mean of sin^2 (1/2) x 0.3 s bout / 1 s frame = 0.12 rad at the tip.
    assert means[0, -1] == pytest.approx(0.12, abs=0.02)
    assert means[2, -1] == pytest.approx(-0.12, abs=0.02)
    assert np.all(means[0] > 0) and np.all(means[2] < 0)
    np.testing.assert_allclose(means[[1, 3]], 0.0)


def test_generate_bouts_follow_stimulus_and_never_overlap():
    params = _params(
        spontaneous_bout_rate_hz=0.0,
        evoked_bout_rate_hz=1.0,
        evoked_kind_fidelity=1.0,
        min_interbout_s=0.3,
    )
    timeline = stimulus_timeline(600.0, np.random.default_rng(0), 10.0, 30.0)
    bouts = generate_bouts(timeline, 600.0, params, np.random.default_rng(1))
    assert len(bouts) > 50 and bouts["evoked"].all()
    shown = stimulus_at(bouts["onset_s"].to_numpy(), timeline)
    expected = {"leftward": "left_turn", "rightward": "right_turn", "forward": "forward_swim"}
    assert list(bouts["kind"]) == [expected[s] for s in shown]
    ends = (bouts["onset_s"] + bouts["duration_s"]).to_numpy()
    assert np.all(bouts["onset_s"].to_numpy()[1:] >= ends[:-1] + 0.3 - 1e-12)
    starts = timeline.set_index("stimulus", append=True)["start_s"].to_numpy()
    onset_epoch = np.searchsorted(starts, bouts["onset_s"], side="right") - 1
    assert np.all(bouts["onset_s"].to_numpy() - starts[onset_epoch] >= params.evoked_latency_s)
    signs = np.sign(bouts["bias_rad"]).groupby(bouts["kind"]).unique()
    assert list(signs["left_turn"]) == [1.0] and list(signs["right_turn"]) == [-1.0]
    silent = _params(spontaneous_bout_rate_hz=0.0, evoked_bout_rate_hz=0.0)
    assert generate_bouts(timeline, 600.0, silent, np.random.default_rng(1)).empty


def test_bout_drive_is_vigour_of_the_right_kind():
    t = np.arange(10) / 10.0
    bouts = _bouts([{"onset_s": 0.2, "duration_s": 0.3, "kind": "right_turn", "vigour": 1.5}])
    drive = bout_drive(bouts, t)
    expected = np.zeros((3, 10))
    expected[BOUT_KINDS.index("right_turn"), 2:5] = 1.5
    np.testing.assert_allclose(drive, expected)


# ----------------------------------------------------------------------------- anatomy


def test_roi_stat_disk_by_hand():
    stat = roi_stat(10.0, 10.0, 1.0, 64, 64)  # radius 1 px: centre + 4 neighbours
    assert stat["npix"] == 5 and stat["med"] == [10, 10]
    assert sorted(zip(stat["ypix"].tolist(), stat["xpix"].tolist(), strict=True)) == [
        (9, 10),
        (10, 9),
        (10, 10),
        (10, 11),
        (11, 10),
    ]
    assert stat["lam"].sum() == pytest.approx(1.0)
    corner = roi_stat(0.0, 0.0, 1.0, 64, 64)  # clipped at the image edge
    assert corner["npix"] == 3 and corner["ypix"].min() >= 0 and corner["xpix"].min() >= 0


def test_related_neurons_sit_in_their_regions():
    params = _params(n_neurons=400)
    rng = np.random.default_rng(0)
    roles = assign_roles(400, params, rng)
    # 5 % not cells = 20; 20 % of the 380 cells related = 76 -> 34 visual, 27 drivers, 15 other.
    counts = pd.Series(roles).value_counts()
    assert counts["not_cell"] == 20 and counts["visual"] == 34 and counts["motor_driver"] == 27
    places = place_neurons(roles, params, rng)
    regions = places["region"].to_numpy()
    assert set(regions[roles == "motor_driver"]) <= {"Hb_left", "Hb_right"}
    assert set(regions[roles == "visual"]) <= {"Pt_left", "Pt_right", "tectum_left", "tectum_right"}
    assert places["y_px"].between(0, params.image_height_px - 1).all()
    assert places["x_px"].between(0, params.image_width_px - 1).all()
    assert places["plane"].between(0, params.n_planes - 1).all()
    # Labels by location agree with the labels of related neurons drawn inside a region.
    depth = places["plane"].to_numpy() / (params.n_planes - 1)
    located = region_of(
        places["y_px"].to_numpy() / params.image_height_px,
        places["x_px"].to_numpy() / params.image_width_px,
        depth,
    )
    related = np.isin(roles, ["visual", "motor_driver", "motor_correlate"])
    assert np.mean(located[related] == regions[related]) > 0.95


# ----------------------------------------------------------------------------- whole fish


def test_files_have_the_raw_layout(tiny_fish):
    gt = xr.open_dataset(tiny_fish / "ground_truth.nc")
    n_frames = TINY.n_frames
    total = 0
    for k in range(TINY.n_planes):
        plane_dir = tiny_fish / f"plane_{k}"
        f = np.load(plane_dir / "F.npy")
        fneu = np.load(plane_dir / "Fneu.npy")
        iscell = np.load(plane_dir / "iscell.npy")
        stat = np.load(plane_dir / "stat.npy", allow_pickle=True)
        ops = np.load(plane_dir / "ops.npy", allow_pickle=True).item()
        assert f.dtype == np.float32 and fneu.dtype == np.float32
        assert f.shape == fneu.shape == (stat.size, n_frames)
        assert iscell.shape == (stat.size, 2)
        assert {"med", "ypix", "xpix", "npix", "lam"} <= set(stat[0])
        assert ops["fs"] == TINY.frame_rate_hz and ops["nplanes"] == TINY.n_planes
        assert (ops["Ly"], ops["Lx"], ops["neucoeff"]) == (1024, 768, 0.7)
        assert np.all(np.isfinite(f)) and np.all(f > 0)
        in_plane = gt["plane"].to_numpy() == k
        np.testing.assert_array_equal(gt["roi"].to_numpy()[in_plane], np.arange(stat.size))
        np.testing.assert_array_equal(iscell[:, 0], gt["iscell"].to_numpy()[in_plane])
        total += stat.size
    assert total == TINY.n_neurons
    assert not (tiny_fish / "plane_1" / "tail_df.h5").exists()

    tail = pd.read_hdf(tiny_fish / "plane_0" / "tail_df.h5", key="tail")
    assert list(tail.columns) == [f"theta_{k:02d}" for k in range(6)] + ["t", "frame"]
    assert tail["frame"].dtype == np.int64
    # The tail stops 2 frames before the imaging; ~200/1.1 = 182 samples per frame.
    assert tail["frame"].max() == n_frames - 3 and tail["frame"].min() == 0
    np.testing.assert_array_equal(np.floor(tail["t"] * 1.1).astype(int), tail["frame"])
    assert tail.groupby("frame").size().between(181, 183).all()

    labels = pd.read_csv(tiny_fish / "neuron_labels.tsv", sep="\t")
    assert list(labels.columns) == ["plane", "roi", "region"] and len(labels) == TINY.n_neurons
    np.testing.assert_array_equal(labels["region"], gt["region"].to_numpy())
    stimulus = pd.read_csv(tiny_fish / "stimulus.tsv", sep="\t")
    assert list(stimulus.columns) == ["start_s", "stop_s", "stimulus"]
    assert stimulus["stop_s"].iloc[-1] == pytest.approx(n_frames / 1.1)


def test_ground_truth_round_trips_and_is_consistent(tiny_fish):
    gt = xr.open_dataset(tiny_fish / "ground_truth.nc")
    assert gt.sizes["time"] == TINY.n_frames and gt.sizes["neuron"] == TINY.n_neurons
    assert gt["tail_noiseless"].dims == ("time", "segment")
    assert gt["drive_weight"].dims == ("neuron", "driver")
    assert gt["is_driver"].dtype == bool
    assert json.loads(gt.attrs["params"]) == json.loads(TINY.to_json())
    assert gt.attrs["seed"] == 3
    drivers = gt["is_driver"].to_numpy()
    assert drivers.any() and np.all(gt["drive_weight"].to_numpy()[drivers].max(axis=1) > 0)
    unrelated = gt["role"].to_numpy() == "unrelated"
    assert np.all(gt["drive_weight"].to_numpy()[unrelated] == 0)
    assert set(gt["tuning"].to_numpy()[unrelated]) == {"none"}
    np.testing.assert_allclose(
        gt["time_offset_s"], gt["plane"].to_numpy() / (TINY.n_planes * TINY.frame_rate_hz)
    )
    np.testing.assert_array_equal(gt["tail_recorded"], np.arange(TINY.n_frames) < TINY.n_frames - 2)
    centres = (np.arange(TINY.n_frames) + 0.5) / TINY.frame_rate_hz
    table = pd.read_csv(tiny_fish / "stimulus.tsv", sep="\t")
    np.testing.assert_array_equal(gt["stimulus"].to_numpy(), stimulus_at(centres, table))
    # The recorded tail, frame-averaged, matches the noiseless truth up to tracking noise.
    tail = pd.read_hdf(tiny_fish / "plane_0" / "tail_df.h5", key="tail")
    recorded = frame_average(tail.iloc[:, :6].to_numpy(), tail["frame"].to_numpy(), TINY.n_frames)
    truth = gt["tail_noiseless"].to_numpy()
    np.testing.assert_allclose(recorded[:-2], truth[:-2], atol=0.01 * 6 / np.sqrt(181))
    assert np.all(np.isnan(recorded[-2:])) and np.all(np.isfinite(truth))


def test_same_seed_same_files_other_seed_other_files(tmp_path, tiny_fish):
    again = simulate_fish(tmp_path / "again", TINY, seed=3)
    other = simulate_fish(tmp_path / "other", TINY, seed=4)
    for name in ("plane_0/F.npy", "plane_2/Fneu.npy", "plane_1/iscell.npy"):
        np.testing.assert_array_equal(np.load(again / name), np.load(tiny_fish / name))
    tail = pd.read_hdf(tiny_fish / "plane_0" / "tail_df.h5", key="tail")
    pd.testing.assert_frame_equal(pd.read_hdf(again / "plane_0" / "tail_df.h5", key="tail"), tail)
    assert not np.array_equal(
        pd.read_hdf(other / "plane_0" / "tail_df.h5", key="tail").iloc[:, :6], tail.iloc[:, :6]
    )
    assert (other / "stimulus.tsv").read_text() != (tiny_fish / "stimulus.tsv").read_text()


def test_driver_fluorescence_tracks_the_true_drive(tmp_path):
    params = _params(n_neurons=150, n_frames=400)
    fish = simulate_fish(tmp_path / "fish", params, seed=0)
    gt = xr.open_dataset(fish / "ground_truth.nc")
    f = np.concatenate([np.load(fish / f"plane_{k}" / "F.npy") for k in range(params.n_planes)])
    # Expected calcium of the total motor drive at frame resolution.
    drive = gt["bout_vigour"].sum("driver").to_numpy()
    expected = convolve_calcium(drive, 1 / params.frame_rate_hz, 0.2, 1.8)
    corr = np.array([np.corrcoef(row, expected)[0, 1] for row in f])
    role = gt["role"].to_numpy()
    drivers, unrelated = corr[role == "motor_driver"], corr[role == "unrelated"]
    assert drivers.size >= 5
    assert drivers.mean() > 0.45
    assert drivers.mean() > unrelated.mean() + 0.4
    assert np.abs(unrelated.mean()) < 0.1
    # Lateralised: left hindbrain drivers follow left turns better than right turns.
    left_turns = convolve_calcium(
        gt["bout_vigour"].sel(driver="left_turn").to_numpy(), 1 / params.frame_rate_hz, 0.2, 1.8
    )
    right_turns = convolve_calcium(
        gt["bout_vigour"].sel(driver="right_turn").to_numpy(), 1 / params.frame_rate_hz, 0.2, 1.8
    )
    left_drivers = f[(role == "motor_driver") & (gt["region"].to_numpy() == "Hb_left")]
    assert len(left_drivers) >= 2
    to_left = np.mean([np.corrcoef(row, left_turns)[0, 1] for row in left_drivers])
    to_right = np.mean([np.corrcoef(row, right_turns)[0, 1] for row in left_drivers])
    assert to_left > to_right + 0.2


def test_existing_output_is_replaced_atomically(tmp_path):
    target = tmp_path / "fish"
    target.mkdir()
    (target / "stale.txt").write_text("old")
    small = _params(n_neurons=20, n_planes=2, n_frames=50, write_noiseless_dff=False)
    simulate_fish(target, small, seed=0)
    assert not (target / "stale.txt").exists()
    assert sorted(p.name for p in target.iterdir()) == [
        "ground_truth.nc",
        "neuron_labels.tsv",
        "plane_0",
        "plane_1",
        "stimulus.tsv",
    ]
    assert "dff_noiseless" not in xr.open_dataset(target / "ground_truth.nc")
    assert [p.name for p in tmp_path.iterdir()] == ["fish"]  # no temporary left behind


# ----------------------------------------------------------------------------- parameters


@pytest.mark.parametrize(
    ("changes", "key"),
    [
        # checked by the schema
        ({"n_planes": 0}, "simulation.n_planes"),
        ({"fraction_unrelated": 1.5}, "simulation.fraction_unrelated"),
        ({"frame_rate_hz": -1.0}, "simulation.frame_rate_hz"),
        ({"bleach_fraction": 1.0}, "simulation.bleach_fraction"),
        ({"n_segments": 2.5}, "simulation.n_segments"),
        ({"calcium_decay": 2.0}, "simulation"),  # a misspelt key is not silently ignored
        # checked by SimulationParams.__post_init__ (relations and finiteness)
        ({"calcium_rise_s": 2.0}, "simulation.calcium_rise_s"),
        ({"epoch_max_s": 5.0}, "simulation.epoch_max_s"),
        ({"tail_frames_missing": 900}, "simulation.tail_frames_missing"),
        ({"beat_max_hz": 150.0}, "simulation.beat_max_hz"),
        ({"beat_min_hz": 40.0}, "simulation.beat_max_hz"),
        ({"n_neurons": 10, "n_planes": 12}, "simulation.n_neurons"),
        ({"fraction_visual": 0.7}, "simulation.fraction_visual + fraction_motor_driver"),
        (
            {"tail_rate_hz": 3.0, "frame_rate_hz": 2.0, "beat_min_hz": 0.5, "beat_max_hz": 1.0},
            "simulation.tail_rate_hz",
        ),
        ({"frame_rate_hz": float("inf")}, "simulation.frame_rate_hz"),
        ({"read_noise_sd": float("nan")}, "simulation.read_noise_sd"),
    ],
)
def test_bad_parameters_raise_config_error(changes, key):
    with pytest.raises(ConfigError, match=re.escape(f"'{key}'")) as error:
        _params(**changes)
    assert "expected" in str(error.value) and "found" in str(error.value)


def test_pixel_size_from_the_data_section_is_checked_too():
    with pytest.raises(ConfigError, match=re.escape("'data.pixel_size_um'")):
        SimulationParams.from_config({}, pixel_size_um=float("inf"), plane_spacing_um=10.0)


def test_schema_lists_every_parameter_and_nothing_else():
    fields = {f.name for f in dataclasses.fields(SimulationParams)}
    section = schema()["properties"]["simulation"]["properties"]
    assert set(section) == fields - set(DATA_FIELDS)
    assert all("default" in node and "description" in node for node in section.values())
    with pytest.raises(TypeError):
        SimulationParams()  # no defaults outside the schema


def test_paper_scale_preset_matches_the_paper():
    config = validate_config(
        yaml.safe_load((REPO / "config/synthetic-paper-scale.yaml").read_text())
    )
    params = SimulationParams.from_config(
        config["simulation"],
        pixel_size_um=config["data"]["pixel_size_um"],
        plane_spacing_um=config["data"]["plane_spacing_um"],
    )
    assert (params.n_neurons, params.n_planes, params.n_frames) == (10_000, 6, 2_800)
    assert params.frame_rate_hz == 1.1 and params.pixel_size_um == 0.6
    assert params.duration_s == pytest.approx(2545.45, abs=0.01)  # ~42 min


def test_smooth_noise_has_unit_variance_even_when_shorter_than_its_timescale():
    rng = np.random.default_rng(0)
    long = _smooth_noise(500, 3000, 30.0, rng)
    short = _smooth_noise(2000, 100, 130.0, rng)  # timescale > recording: near-constant rows
    assert long.shape == (500, 3000) and short.shape == (2000, 100)
    assert long.std() == pytest.approx(1.0, abs=0.05)
    assert short.std() == pytest.approx(1.0, abs=0.1)
    assert np.abs(np.diff(short, axis=1)).max() < 0.1


def test_every_plane_gets_rois_even_when_tiny():
    # 10 ROIs over 6 planes: in about half of these seeds a plane is first left empty.
    params = _params(n_neurons=10, n_planes=6, n_frames=50)
    for seed in range(10):
        rng = np.random.default_rng(seed)
        places = place_neurons(assign_roles(10, params, rng), params, rng)
        assert set(places["plane"]) == set(range(6))


# ----------------------------------------------------------------------------- seeds and identity


def test_fish_seed_depends_on_the_base_seed_and_the_fish_id_only():
    # The formula of the comparison runs: SeedSequence([seed, crc32(id)]), first 32-bit word.
    assert fish_seed(0, "3") == 2209525650
    assert fish_seed(0, 3) == fish_seed(0, "3")  # config ints and wildcard strings agree
    seeds = {fish_seed(0, fish) for fish in ("1", "2", "3", "10", "fish3")}
    assert len(seeds) == 5
    assert fish_seed(1, "3") != fish_seed(0, "3")


def test_a_fish_gets_the_same_data_whatever_other_fish_are_listed(tmp_path):
    small = _params(n_neurons=20, n_planes=2, n_frames=50, write_noiseless_dff=False)
    runs = {}
    for name, fish_list in {"three": [1, 2, 3], "one": [3]}.items():
        # As the workflow: one job per listed fish, seeded from the config seed and its id.
        runs[name] = {
            str(fish): simulate_fish(
                tmp_path / name / f"raw_data_f{fish}", small, seed=fish_seed(0, str(fish))
            )
            for fish in fish_list
        }
    alone, listed = runs["one"]["3"], runs["three"]["3"]
    for name in ("plane_0/F.npy", "plane_1/Fneu.npy", "plane_0/iscell.npy"):
        np.testing.assert_array_equal(np.load(alone / name), np.load(listed / name))
    assert (alone / "stimulus.tsv").read_text() == (listed / "stimulus.tsv").read_text()
    other = runs["three"]["1"]
    assert not np.array_equal(np.load(other / "plane_0/F.npy"), np.load(alone / "plane_0/F.npy"))


def _fingerprint(fish: Path, n_planes: int) -> dict[str, object]:
    """Sums, position-weighted sums and text digests of every file of a simulated fish."""

    def sums(values: np.ndarray) -> tuple[float, float]:
        values = np.asarray(values, dtype=np.float64)
        weights = np.linspace(1.0, 2.0, values.size).reshape(values.shape)
        return float(values.sum()), float((values * weights).sum())

    def planes(name: str) -> np.ndarray:
        return np.concatenate([np.load(fish / f"plane_{k}" / name) for k in range(n_planes)])

    stat = [
        roi
        for k in range(n_planes)
        for roi in np.load(fish / f"plane_{k}" / "stat.npy", allow_pickle=True)
    ]
    tail = pd.read_hdf(fish / "plane_0" / "tail_df.h5", key="tail")
    gt = xr.open_dataset(fish / "ground_truth.nc")
    return {
        "F": sums(planes("F.npy")),
        "Fneu": sums(planes("Fneu.npy")),
        "iscell": sums(planes("iscell.npy")),
        "stat": sums([[s["npix"], s["ypix"].sum(), s["xpix"].sum()] for s in stat]),
        "lam": sums(np.concatenate([s["lam"] for s in stat])),
        "tail": sums(tail.filter(like="theta_").to_numpy()),
        "tail_t": [len(tail), *sums(tail["t"]), int(tail["frame"].sum())],
        **{name: sums(gt[name].to_numpy()) for name in _GROUND_TRUTH_FLOATS},
        "bouts": [len(gt["bout"]), "".join(gt["bout_kind"].to_numpy().astype(str))],
        **{
            name: hashlib.sha256((fish / name).read_bytes()).hexdigest()[:16]
            for name in ("stimulus.tsv", "neuron_labels.tsv")
        },
    }


_GROUND_TRUTH_FLOATS = (
    "dff_noiseless",
    "tail_noiseless",
    "bout_vigour",
    "drive_weight",
    "visual_weight",
    "neuropil_coefficient",
    "x_um",
    "y_um",
    "z_um",
)

# Computed once from the simulator before it was split into a package (commit 9171675,
# SimulationParams(n_neurons=30, n_planes=2, n_frames=60), seed 5): the split, and any later
# refactoring, must not change a single draw.
_FINGERPRINT_BEFORE_SPLIT = {
    "F": (1182136.5748596191, 1733938.1817966567),
    "Fneu": (395882.05616760254, 597252.5997131416),
    "iscell": (51.1359721487388, 76.42933600986282),
    "stat": (1574145.0, 2351564.9325842694),
    "lam": (29.999999975785613, 44.9624656923491),
    "tail": (-12.377561225532013, -14.040643593409055),
    "tail_t": [10546, 278018.925, 463373.66333333333, 300551],
    "dff_noiseless": (166.4292702965904, 248.96277650000982),
    "tail_noiseless": (-0.0949037389291334, -0.13313818334895358),
    "bout_vigour": (1.5660610496997833, 2.6231297938017875),
    "drive_weight": (3.403812576325583, 4.277945545331299),
    "visual_weight": (3.950776225702691, 4.777780917630934),
    "neuropil_coefficient": (20.50312745017426, 30.725943506518306),
    "x_um": (8118.879527825961, 11795.017061821729),
    "y_um": (9163.941042452701, 13908.198152757199),
    "z_um": (120.0, 217.24137931034485),
    "bouts": [7, "left_turnleft_turnright_turnleft_turnleft_turnleft_turnright_turn"],
    "stimulus.tsv": "9f89a692d8e34a62",
    "neuron_labels.tsv": "3769950e409e36fc",
}


def test_same_numbers_as_before_the_split(tmp_path):
    fish = simulate_fish(tmp_path / "fish", _params(n_neurons=30, n_planes=2, n_frames=60), seed=5)
    found = _fingerprint(fish, n_planes=2)
    assert found.keys() == _FINGERPRINT_BEFORE_SPLIT.keys()
    for name, expected in _FINGERPRINT_BEFORE_SPLIT.items():
        if isinstance(expected, str) or name == "bouts":
            assert found[name] == expected, name
        else:
            assert found[name] == pytest.approx(expected, rel=1e-6, abs=1e-9), name
