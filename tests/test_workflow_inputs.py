"""End to end: every input layout, and a user-supplied atlas, through the real workflow.

Two tiny fish are simulated once per session and rewritten into each layout the README lists:
the paper's published raw folders (``raw_data_f{N}/plane_k/`` with only F.npy, stat.npy and
tail_df.h5), the paper's prepared matrices (``exp1-4_data/fish{N}/data/``) and one NWB file per
fish. Each layout runs the whole workflow (ingest to evaluation) with cheap models; the tests
check the datasets against the simulated files, the model outputs and tables, that the input
files were only read, and that the layouts agree with each other where they hold the same data.
A last run uses the built-in simulator with a synthetic NRRD atlas and checks that the saliency
regions are the atlas's, looked up through the configured affine.
"""

from __future__ import annotations

import functools
import json
import shutil
import warnings
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
import yaml
from _workflow import snakemake
from fixtures_atlas import make_synthetic_atlas

from nlp4neuro.dataset import open_dataset
from nlp4neuro.ingest.tail import read_tail_table, tail_per_frame
from nlp4neuro.preprocessing import reference_normalise
from nlp4neuro.provenance import sha256_file
from nlp4neuro.simulate import SimulationParams, simulate_fish

pytestmark = pytest.mark.e2e

FISH = [1, 2]
N_NEURONS, N_PLANES, N_FRAMES = 80, 2, 200
N_TAIL_FRAMES = N_FRAMES - 2  # the simulator, like the paper, has no tail for the last 2 frames
FRAME_RATE_HZ = 1.1
PIXEL_SIZE_UM = 0.6
PLANE_SPACING_UM = 10.0
SIM = SimulationParams.from_config(
    {
        "n_neurons": N_NEURONS,
        "n_planes": N_PLANES,
        "n_frames": N_FRAMES,
        "frame_rate_hz": FRAME_RATE_HZ,
        "write_noiseless_dff": False,
    },
    pixel_size_um=PIXEL_SIZE_UM,
    plane_spacing_um=PLANE_SPACING_UM,
)
MODELS = {
    "ridge": {"kind": "ridge"},
    "mean": {"kind": "mean"},
    "gru": {"kind": "gru", "hidden_size": 8, "training": {"epochs": 1}},
}
LAYOUTS = ("paper_raw", "prepared", "nwb")


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def tree_checksums(root: Path) -> dict[str, str]:
    """{relative path: sha256} of every file under `root` (new or removed files show too)."""
    files = sorted(p for p in root.rglob("*") if p.is_file())
    return {str(p.relative_to(root)): sha256_file(p) for p in files}


def plane_dirs(sim_fish: Path) -> list[Path]:
    return [sim_fish / f"plane_{k}" for k in range(N_PLANES)]


def concatenated_F(sim_fish: Path) -> np.ndarray:
    """(n_rois, n_frames) float32 F of every plane, planes in order (suite2p's ROI order)."""
    return np.concatenate([np.load(d / "F.npy") for d in plane_dirs(sim_fish)], axis=0)


def lam_centroids(sim_fish: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """plane, y_px, x_px of every ROI: lam-weighted mean of its pixels in stat.npy."""
    planes, ys, xs = [], [], []
    for k, folder in enumerate(plane_dirs(sim_fish)):
        for entry in np.load(folder / "stat.npy", allow_pickle=True):
            lam = np.asarray(entry["lam"], dtype=np.float64)
            planes.append(k)
            ys.append(np.sum(lam * entry["ypix"]) / lam.sum())
            xs.append(np.sum(lam * entry["xpix"]) / lam.sum())
    return np.array(planes), np.array(ys), np.array(xs)


def expected_tail(sim_fish: Path) -> np.ndarray:
    """(N_TAIL_FRAMES, 6) per-frame mean of the 200 Hz tail samples, by pandas groupby."""
    table = pd.read_hdf(sim_fish / "plane_0" / "tail_df.h5", "tail")
    means = table.groupby("frame")[[f"theta_{j:02d}" for j in range(6)]].mean()
    assert list(means.index) == list(range(N_TAIL_FRAMES))
    return means.to_numpy()


# --------------------------------------------------------------------------------------------
# layout writers (each reads only the simulated folder, writes only under `out_root`)
# --------------------------------------------------------------------------------------------


def write_paper_raw(sim_fish: Path, out_root: Path, fish: int) -> None:
    """The published raw layout: plane_k/{F.npy, stat.npy, tail_df.h5}, tail in every plane."""
    for k, folder in enumerate(plane_dirs(sim_fish)):
        target = out_root / f"raw_data_f{fish}" / f"plane_{k}"
        target.mkdir(parents=True)
        shutil.copy2(folder / "F.npy", target / "F.npy")
        shutil.copy2(folder / "stat.npy", target / "stat.npy")
        # the published folders hold an identical copy of the tail table in every plane
        shutil.copy2(sim_fish / "plane_0" / "tail_df.h5", target / "tail_df.h5")


def write_prepared(sim_fish: Path, out_root: Path, fish: int) -> None:
    """The paper's prepared matrices; fish 2 also gets a functional_types_df.h5 annotation."""
    data_dir = out_root / "exp1-4_data" / f"fish{fish}" / "data"
    data_dir.mkdir(parents=True)
    neural = reference_normalise(concatenated_F(sim_fish)).astype(np.float32)
    np.save(data_dir / f"fish{fish}_neural_data_matched.npy", neural)
    tail_path = sim_fish / "plane_0" / "tail_df.h5"
    frames, angles, _ = tail_per_frame(read_tail_table(tail_path), N_FRAMES, source=tail_path)
    np.testing.assert_array_equal(frames, np.arange(N_TAIL_FRAMES))
    np.save(data_dir / f"fish{fish}_tail_data_matched.npy", angles.astype(np.float32))
    if fish == 2:
        plane, y_px, x_px = lam_centroids(sim_fish)
        labels = pd.read_csv(sim_fish / "neuron_labels.tsv", sep="\t")
        table = pd.DataFrame(
            {
                "neur_coords": [[x, y] for x, y in zip(x_px, y_px, strict=True)],
                "plane": [f"plane_{p}" for p in plane],
                "region": labels["region"].to_numpy(dtype=object),
                "motor_corr": np.linspace(-1, 1, plane.size),
            }
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pandas warns that object columns are pickled
            table.to_hdf(data_dir / "functional_types_df.h5", key="df", mode="w")


def write_nwb(sim_fish: Path, out_root: Path, fish: int) -> None:
    """One NWB file: a RoiResponseSeries and PlaneSegmentation (pixel masks) per plane in
    processing/ophys Fluorescence, the 200 Hz tail angles as a TimeSeries in processing/behavior.

    Planes are imaged one after the other: plane k's frame f is stamped (f + k / n_planes) /
    rate, as a volumetric scan would be.
    """
    from pynwb import NWBHDF5IO, NWBFile, TimeSeries
    from pynwb.behavior import BehavioralTimeSeries
    from pynwb.ophys import Fluorescence, ImageSegmentation, OpticalChannel, RoiResponseSeries

    nwb = NWBFile(
        session_description=f"simulated fish {fish}",
        identifier=f"nlp4neuro-sim-fish{fish}",
        session_start_time=datetime(2024, 1, 1, tzinfo=UTC),
    )
    device = nwb.create_device(name="2p")
    ophys = nwb.create_processing_module(name="ophys", description="calcium imaging")
    segmentation = ImageSegmentation()
    ophys.add(segmentation)
    fluorescence = Fluorescence()
    ophys.add(fluorescence)
    for k, folder in enumerate(plane_dirs(sim_fish)):
        plane = nwb.create_imaging_plane(
            name=f"imaging_plane{k}",
            optical_channel=OpticalChannel(
                name="green", description="GCaMP", emission_lambda=510.0
            ),
            description=f"plane {k}",
            device=device,
            excitation_lambda=920.0,
            indicator="GCaMP6s",
            location="whole brain",
            grid_spacing=[PIXEL_SIZE_UM * 1e-6, PIXEL_SIZE_UM * 1e-6],
            grid_spacing_unit="meters",
        )
        ps = segmentation.create_plane_segmentation(
            name=f"PlaneSegmentation{k}", description="suite2p ROIs", imaging_plane=plane
        )
        for entry in np.load(folder / "stat.npy", allow_pickle=True):
            # (row, column, weight): suite2p's NWB export order, read with mask_order "yx"
            ps.add_roi(
                pixel_mask=[
                    (int(y), int(x), float(w))
                    for y, x, w in zip(entry["ypix"], entry["xpix"], entry["lam"], strict=True)
                ]
            )
        rois = ps.create_roi_table_region(region=list(range(len(ps))), description="all ROIs")
        F = np.load(folder / "F.npy")
        fluorescence.add_roi_response_series(
            RoiResponseSeries(
                name=f"plane{k}",
                data=F.T,  # NWB stores (time, roi)
                rois=rois,
                unit="a.u.",
                timestamps=(np.arange(F.shape[1]) + k / N_PLANES) / FRAME_RATE_HZ,
            )
        )
    tail = pd.read_hdf(sim_fish / "plane_0" / "tail_df.h5", "tail")
    behavior = nwb.create_processing_module(name="behavior", description="tail tracking")
    behavior.add(
        BehavioralTimeSeries(
            time_series=TimeSeries(
                name="tail_angles",
                data=tail[[f"theta_{j:02d}" for j in range(6)]].to_numpy(),
                unit="radians",
                timestamps=tail["t"].to_numpy(),
            )
        )
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # hdmf warns about tables linked across containers
        with NWBHDF5IO(str(out_root / f"fish{fish}.nwb"), "w") as io:
            io.write(nwb)


WRITERS: dict[str, Callable[[Path, Path, int], None]] = {
    "paper_raw": write_paper_raw,
    "prepared": write_prepared,
    "nwb": write_nwb,
}


def layout_data_config(layout: str, raw_dir: Path) -> dict:
    """The config's data (and preprocessing) sections that point the workflow at a layout."""
    if layout == "paper_raw":
        data = {
            "source": "suite2p",
            "raw_dir": str(raw_dir),
            "fish_dir": "raw_data_f{fish}",
            "frame_rate_hz": FRAME_RATE_HZ,  # the published folders hold no ops.npy
            "labels_file": None,
            "stimulus_file": None,
        }
        return {"data": data}
    if layout == "prepared":
        data = {
            "source": "prepared",
            "raw_dir": str(raw_dir),
            "fish_dir": "exp1-4_data/fish{fish}/data",
            "frame_rate_hz": FRAME_RATE_HZ,
        }
        return {"data": data, "preprocessing": {"mode": "raw"}}
    # NWB: frame rate and pixel size from the file (timestamps, grid spacing)
    return {"data": {"source": "nwb", "raw_dir": str(raw_dir), "fish_dir": "fish{fish}.nwb"}}


def cheap_config(**sections: dict) -> dict:
    config = {
        "seed": 0,
        "fish": FISH,
        "decoding": {"windows": [5], "seeds": [0]},
        "training": {"epochs": 1, "batch_size": 16, "learning_rate": 0.001},
        "models": MODELS,
        "evaluation": {"n_bootstrap": 200},
        "saliency": {"enabled": False},
    }
    config.update(sections)
    return config


# --------------------------------------------------------------------------------------------
# fixtures: one simulation, one input tree per layout, one workflow run per layout
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def simulated(tmp_path_factory) -> Path:
    """Folder with fish1/ and fish2/ written by the simulator (its full raw layout)."""
    root = tmp_path_factory.mktemp("simulated")
    for fish in FISH:
        simulate_fish(root / f"fish{fish}", SIM, seed=100 + fish)
    return root


@pytest.fixture(scope="session")
def inputs(simulated, tmp_path_factory) -> dict[str, tuple[Path, dict[str, str]]]:
    """{layout: (raw_dir, checksums of every file under it before any workflow run)}."""
    out = {}
    for layout, writer in WRITERS.items():
        raw_dir = tmp_path_factory.mktemp(f"input_{layout}")
        for fish in FISH:
            writer(simulated / f"fish{fish}", raw_dir, fish)
        out[layout] = (raw_dir, tree_checksums(raw_dir))
    return out


@pytest.fixture(scope="session")
def run_layout(inputs, tmp_path_factory) -> Callable[[str], Path]:
    """Run the whole workflow on a layout once (memoised); return its working directory."""

    @functools.cache
    def run(layout: str) -> Path:
        raw_dir, _ = inputs[layout]
        workdir = tmp_path_factory.mktemp(f"workflow_{layout}")
        config = cheap_config(**layout_data_config(layout, raw_dir))
        (workdir / "config.yaml").write_text(yaml.safe_dump(config))
        result = snakemake(workdir, "--cores", "2", "--configfile", str(workdir / "config.yaml"))
        (workdir / "snakemake.log").write_text(result.stdout + result.stderr)
        assert result.returncode == 0, f"{layout}: snakemake failed\n{result.stderr[-5000:]}"
        return workdir

    return run


# --------------------------------------------------------------------------------------------
# one workflow run per layout
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", LAYOUTS)
def test_layout_runs_end_to_end_and_only_reads_its_inputs(layout, inputs, run_layout, simulated):
    workdir = run_layout(layout)
    raw_dir, before = inputs[layout]
    assert tree_checksums(raw_dir) == before, "the workflow modified, added or removed inputs"

    for fish in FISH:
        dataset = open_dataset(workdir / f"results/datasets/fish{fish}.nc")
        sim_fish = simulated / f"fish{fish}"
        # every ROI is kept: none of these layouts has iscell.npy, no simulated trace is flat
        assert dataset.sizes == {"time": N_TAIL_FRAMES, "neuron": N_NEURONS, "segment": 6}
        np.testing.assert_array_equal(dataset["frame"].values, np.arange(N_TAIL_FRAMES))
        np.testing.assert_allclose(
            dataset["time"].values, np.arange(N_TAIL_FRAMES) / FRAME_RATE_HZ, rtol=1e-6
        )
        assert float(dataset.attrs["frame_rate_hz"]) == pytest.approx(FRAME_RATE_HZ, rel=1e-6)
        assert np.isfinite(dataset["dff"].values).all()
        # the decoding target is the frame mean of the 200 Hz samples (NWB: samples assigned to
        # frames by their timestamps, which for these seeds matches the table's frame column)
        np.testing.assert_allclose(dataset["tail"].values, expected_tail(sim_fish), atol=1e-6)

        # provenance: the checksums recorded in the dataset are those of the files read
        recorded = json.loads(dataset.attrs["source_checksums"])
        if layout == "paper_raw":
            base = raw_dir / f"raw_data_f{fish}"
            wanted = {f"plane_{k}/{n}" for k in range(N_PLANES) for n in ("F.npy", "stat.npy")}
            wanted.add("plane_0/tail_df.h5")
        elif layout == "prepared":
            base = raw_dir / f"exp1-4_data/fish{fish}/data"
            wanted = {f"fish{fish}_neural_data_matched.npy", f"fish{fish}_tail_data_matched.npy"}
            if fish == 2:
                wanted.add("functional_types_df.h5")
        else:
            base = raw_dir
            wanted = {f"fish{fish}.nwb"}
        assert wanted <= set(recorded), recorded
        for name, digest in recorded.items():
            assert digest == sha256_file(base / name), name

        if layout == "prepared":
            # mode raw: the prepared (already normalised) matrix goes to the models unchanged
            neural = np.load(base / f"fish{fish}_neural_data_matched.npy")
            np.testing.assert_allclose(dataset["dff"].values, neural[:, :N_TAIL_FRAMES].T)
            if fish == 1:  # no annotation file: positions and regions unknown
                assert (dataset["plane"].values == -1).all()
                assert np.isnan(dataset["x_um"].values).all()
                assert (dataset["region"].values == "").all()
        else:
            # plane-ordered suite2p ROIs, centroids from the lam-weighted masks
            plane, y_px, x_px = lam_centroids(sim_fish)
            np.testing.assert_array_equal(dataset["plane"].values, plane)
            np.testing.assert_allclose(dataset["x_um"].values, x_px * PIXEL_SIZE_UM, rtol=1e-9)
            np.testing.assert_allclose(dataset["y_um"].values, y_px * PIXEL_SIZE_UM, rtol=1e-9)
            np.testing.assert_allclose(dataset["z_um"].values, plane * PLANE_SPACING_UM)
            assert (dataset["region"].values == "").all()  # no labels in these layouts

        for model in MODELS:
            run = workdir / f"results/train/{model}/w5/fish{fish}/seed0/h0/fold0"
            predictions = xr.load_dataset(run / "predictions.nc")
            assert predictions.attrs["model"] == model
            assert set(predictions["split"].values) == {"val", "test"}
            assert predictions["predicted"].shape == predictions["true"].shape
            assert np.isfinite(predictions["predicted"].values).all()
            # the targets are the dataset's tail at the predicted frames
            np.testing.assert_allclose(
                predictions["true"].values,
                dataset["tail"].sel(time=predictions["time"].values, method="nearest").values,
                rtol=1e-6,
            )

    metrics = pd.read_csv(workdir / "results/evaluation/metrics.csv")
    assert set(metrics["model"]) == set(MODELS)
    assert set(metrics["fish"].astype(str)) == {str(f) for f in FISH}
    assert {"rmse", "mae", "r2", "pearson_r"} <= set(metrics["metric"])
    # Pearson's r of the constant mean predictor is undefined; every other score is finite
    undefined = (metrics["model"] == "mean") & (metrics["metric"] == "pearson_r")
    assert np.isfinite(metrics.loc[~undefined, "value"]).all()
    # the table's test RMSE is the one recomputed from the prediction file
    run = workdir / "results/train/ridge/w5/fish1/seed0/h0/fold0"
    predictions = xr.load_dataset(run / "predictions.nc")
    test = predictions.where(predictions["split"] == "test", drop=True)
    rmse = np.sqrt(((test["predicted"] - test["true"]) ** 2).mean("time")).values
    row = metrics[
        (metrics["model"] == "ridge")
        & (metrics["fish"].astype(str) == "1")
        & (metrics["metric"] == "rmse")
        & (metrics["split"] == "test")
    ].set_index("segment")
    np.testing.assert_allclose(row.loc[list(test["segment"].values), "value"], rmse, rtol=1e-4)

    statistics = pd.read_csv(workdir / "results/evaluation/statistics.csv")
    pairs = set(zip(statistics["model_a"], statistics["model_b"], strict=True))
    assert {frozenset(p) for p in pairs} >= {frozenset(("ridge", "mean"))}
    assert (statistics["n_fish"] == len(FISH)).all()


def test_raw_and_nwb_layouts_give_the_same_dataset(run_layout):
    """The NWB file holds the same traces and masks as the raw folders: same dF/F and tail."""
    raw_dir, nwb_dir = run_layout("paper_raw"), run_layout("nwb")
    for fish in FISH:
        raw = open_dataset(raw_dir / f"results/datasets/fish{fish}.nc")
        nwb = open_dataset(nwb_dir / f"results/datasets/fish{fish}.nc")
        np.testing.assert_array_equal(nwb["roi"].values, raw["roi"].values)
        np.testing.assert_allclose(nwb["time_offset_s"].values, raw["time_offset_s"].values)
        np.testing.assert_allclose(nwb["dff"].values, raw["dff"].values, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(nwb["tail"].values, raw["tail"].values, atol=1e-7)


def test_prepared_annotation_gives_positions_and_regions(run_layout, simulated):
    """fish 2's functional_types_df.h5 gives the same positions as the raw stat.npy."""
    prepared = open_dataset(run_layout("prepared") / "results/datasets/fish2.nc")
    raw = open_dataset(run_layout("paper_raw") / "results/datasets/fish2.nc")
    for coord in ("plane", "roi", "x_um", "y_um", "z_um", "time_offset_s"):
        np.testing.assert_allclose(prepared[coord].values, raw[coord].values, err_msg=coord)
    labels = pd.read_csv(simulated / "fish2" / "neuron_labels.tsv", sep="\t")
    np.testing.assert_array_equal(prepared["region"].values, labels["region"].to_numpy(str))
    # the prepared matrix is the reference normalisation of the raw F of the same neurons
    reference = reference_normalise(concatenated_F(simulated / "fish2"))[:, :N_TAIL_FRAMES].T
    np.testing.assert_allclose(prepared["dff"].values, reference, atol=1e-6)


# --------------------------------------------------------------------------------------------
# a user-supplied atlas
# --------------------------------------------------------------------------------------------


def test_saliency_regions_come_from_the_configured_atlas(tmp_path):
    import nrrd

    atlas = make_synthetic_atlas(tmp_path / "atlas", "nrrd")
    volume, _ = nrrd.read(str(atlas["atlas"]), index_order="F")  # (x, y, z) voxels
    names = pd.read_csv(atlas["names"], sep="\t")
    names = dict(zip(names["label"], names["name"], strict=True))
    # imaging um (x < 768 px, y < 1024 px at 0.6 um; z = 0 or 10 um) -> voxels of the 20 x 20
    # x 10 volume: x, y scaled to 0..19, plane 0 -> z voxel 2, plane 1 -> z voxel 6
    sx = (volume.shape[0] - 1) / (SIM.image_width_px * PIXEL_SIZE_UM)
    sy = (volume.shape[1] - 1) / (SIM.image_height_px * PIXEL_SIZE_UM)
    affine = [[sx, 0, 0, 0], [0, sy, 0, 0], [0, 0, 0.4, 2.0], [0, 0, 0, 1]]
    config = cheap_config(
        simulation={
            "n_neurons": N_NEURONS,
            "n_planes": N_PLANES,
            "n_frames": N_FRAMES,
            "write_noiseless_dff": False,
        },
        models={"gru": {"kind": "gru", "hidden_size": 8}, "mean": {"kind": "mean"}},
        saliency={
            "models": ["gru"],
            "n_steps": 4,
            "top_k": 5,
            "n_permutations": 50,
            "deletion_ks": [2],
            "deletion_random_repeats": 2,
            "atlas": {
                "kind": "nrrd",
                "path": str(atlas["atlas"]),
                "labels": str(atlas["names"]),
                "affine": affine,
            },
        },
    )
    atlas_files = tree_checksums(tmp_path / "atlas")
    workdir = tmp_path / "work"
    workdir.mkdir()
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    result = snakemake(workdir, "--cores", "2", "--configfile", str(workdir / "config.yaml"))
    assert result.returncode == 0, result.stderr[-5000:]
    assert tree_checksums(tmp_path / "atlas") == atlas_files

    simulator_regions: set[str] = set()
    atlas_expected: set[str] = set()
    for fish in FISH:
        dataset = open_dataset(workdir / f"results/datasets/fish{fish}.nc")
        simulator_regions |= set(dataset["region"].values.astype(str))
        # expected region of every neuron: nearest voxel of its transformed position
        points = np.column_stack([dataset[c].values for c in ("x_um", "y_um", "z_um")])
        voxels = np.rint(points @ np.asarray(affine)[:3, :3].T + np.asarray(affine)[:3, 3])
        voxels = voxels.astype(int)
        assert ((voxels >= 0) & (voxels < volume.shape)).all()  # the affine covers the imaging
        expected = np.array([names.get(label, "") for label in volume[tuple(voxels.T)]])
        atlas_expected |= set(expected)

        run = workdir / f"results/saliency/gru/w5/fish{fish}/seed0"
        importance = xr.load_dataset(run / "importance.nc")
        np.testing.assert_array_equal(importance["region"].values.astype(str), expected)
        # the region table groups neurons on unlabelled voxels as "unlabelled"
        table = pd.read_csv(run / "regions.csv", keep_default_na=False)
        assert set(table["region"]) == {r or "unlabelled" for r in expected}

    assert {"Pt", "Hb", "Cb"} <= atlas_expected  # the affine reaches every atlas region
    summary = pd.read_csv(workdir / "results/saliency/summary/regions.csv", keep_default_na=False)
    atlas_regions = set(summary["region"].astype(str)) - {"unlabelled"}
    assert atlas_regions == {"Pt", "Hb", "Cb"}
    # the dataset itself keeps the simulator's own labels: the atlas replaced them in saliency
    assert "Hb_left" in simulator_regions and not simulator_regions & {"Pt", "Hb", "Cb"}
