"""Tests for nlp4neuro.io: raw suite2p folders, tail table, labels and stimulus epochs."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nlp4neuro.errors import ConfigError, InputFileError
from nlp4neuro.io import (
    find_tail_file,
    read_stimulus_table,
    read_suite2p_fish,
    read_tail_table,
    segment_names,
    stimulus_per_frame,
    tail_per_frame,
)

PIX = 0.5  # um per pixel
DZ = 10.0  # um between planes


# --------------------------------------------------------------------------------------------
# fixtures: tiny suite2p folders written by hand
# --------------------------------------------------------------------------------------------


def _stat(meds: list[tuple[float, float]], lam: bool = False) -> np.ndarray:
    """Object array of suite2p-like ROI dicts with the given `med` ([y, x]) values."""
    entries = []
    for y, x in meds:
        entry = {"med": [int(y), np.int64(x)], "npix": 1}  # suite2p mixes int types
        if lam:
            # Two pixels (y, x) and (y + 1, x + 2) with weights 3 and 1:
            # centroid = (y + 0.25, x + 0.5).
            entry.update(
                ypix=np.array([y, y + 1]), xpix=np.array([x, x + 2]), lam=np.array([3.0, 1.0])
            )
        entries.append(entry)
    out = np.empty(len(entries), dtype=object)
    out[:] = entries
    return out


def _plane_F(plane: int, n_rois: int, n_frames: int) -> np.ndarray:
    """F[r, t] = 100 * plane + 10 * roi + t: every value says where it came from."""
    r = np.arange(n_rois)[:, None]
    t = np.arange(n_frames)[None, :]
    return (100.0 * plane + 10.0 * r + t).astype(np.float32)


def _write_plane(
    folder: Path,
    plane: int,
    n_rois: int = 3,
    n_frames: int = 5,
    *,
    fneu: bool = False,
    iscell: np.ndarray | None = None,
    ops: dict | None = None,
    settings: dict | None = None,
    lam: bool = False,
    F: np.ndarray | None = None,
) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "F.npy", _plane_F(plane, n_rois, n_frames) if F is None else F)
    if fneu:
        np.save(folder / "Fneu.npy", _plane_F(plane, n_rois, n_frames) / 2)
    if iscell is not None:
        np.save(folder / "iscell.npy", iscell)
    if ops is not None:
        np.save(folder / "ops.npy", ops, allow_pickle=True)
    if settings is not None:
        np.save(folder / "settings.npy", settings, allow_pickle=True)
    meds = [(2.0 * r + plane, 4.0 * r + 1) for r in range(n_rois)]
    np.save(folder / "stat.npy", _stat(meds, lam=lam), allow_pickle=True)


@pytest.fixture
def paper_fish(tmp_path: Path) -> Path:
    """The paper's layout: 2 planes x 3 ROIs x 5 frames, F.npy + stat.npy only."""
    fish = tmp_path / "raw_data_f9"
    for k in range(2):
        _write_plane(fish / f"plane_{k}", k)
    return fish


def _read(fish: Path, **kw):
    kw.setdefault("pixel_size_um", PIX)
    kw.setdefault("plane_spacing_um", DZ)
    kw.setdefault("frame_rate_hz", 2.0)
    return read_suite2p_fish(fish, **kw)


def _tree_digest(root: Path) -> dict[str, tuple[str, int]]:
    return {
        str(p.relative_to(root)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


# --------------------------------------------------------------------------------------------
# read_suite2p_fish: good inputs
# --------------------------------------------------------------------------------------------


def test_paper_layout_concatenates_planes_in_order(paper_fish: Path) -> None:
    raw = _read(paper_fish)
    assert raw.F.dtype == np.float32 and raw.F.shape == (6, 5)
    np.testing.assert_array_equal(raw.F[:3], _plane_F(0, 3, 5))
    np.testing.assert_array_equal(raw.F[3:], _plane_F(1, 3, 5))
    np.testing.assert_array_equal(raw.plane, [0, 0, 0, 1, 1, 1])
    np.testing.assert_array_equal(raw.roi, [0, 1, 2, 0, 1, 2])
    assert raw.Fneu is None
    assert raw.n_planes == 2 and raw.frame_rate_hz == 2.0
    assert list(raw.region) == [""] * 6
    assert raw.counts["n_neurons"] == 6 and raw.counts["neuropil"] is False
    assert {p.name for p in raw.source_files} == {"F.npy", "stat.npy"}
    assert len(raw.source_files) == 4


def test_coordinates_in_micrometres_from_med(paper_fish: Path) -> None:
    raw = _read(paper_fish)
    # med = [y, x] = [2r + plane, 4r + 1]; x = med[1] * 0.5, y = med[0] * 0.5, z = plane * 10.
    np.testing.assert_allclose(raw.x_um, [0.5, 2.5, 4.5, 0.5, 2.5, 4.5])
    np.testing.assert_allclose(raw.y_um, [0.0, 1.0, 2.0, 0.5, 1.5, 2.5])
    np.testing.assert_allclose(raw.z_um, [0, 0, 0, 10, 10, 10])
    assert raw.x_um.dtype == np.float64
    # 2 planes at 2 Hz volume rate: plane 1 is acquired 0.25 s into each volume.
    np.testing.assert_allclose(raw.time_offset_s, [0, 0, 0, 0.25, 0.25, 0.25])


def test_lam_weighted_centroid(tmp_path: Path) -> None:
    _write_plane(tmp_path / "plane_0", 0, n_rois=2, lam=True)
    raw = _read(tmp_path, plane_spacing_um=0.0)
    # ROI 1: med [2, 5] -> lam-weighted centroid (2.25, 5.5) pixels.
    np.testing.assert_allclose(raw.y_um, [0.25 * PIX, 2.25 * PIX])
    np.testing.assert_allclose(raw.x_um, [1.5 * PIX, 5.5 * PIX])
    assert raw.counts["n_centroid_from_lam"] == 2


def test_suite2p_layout_with_iscell_fneu_and_nested_settings(tmp_path: Path) -> None:
    fish = tmp_path / "fish"
    iscell = np.array([[1.0, 0.9], [0.0, 0.2], [1.0, 0.7]])
    for k in range(2):
        _write_plane(
            fish / "suite2p" / f"plane{k}",
            k,
            fneu=True,
            iscell=iscell,
            settings={"extraction": {"neucoeff": 0.7}, "io": {"fs": 3.5}},
        )
    (fish / "suite2p" / "combined").mkdir()
    np.save(fish / "suite2p" / "combined" / "F.npy", np.zeros((6, 5), np.float32))
    raw = read_suite2p_fish(fish, pixel_size_um=PIX, plane_spacing_um=DZ)
    assert raw.frame_rate_hz == 3.5
    np.testing.assert_array_equal(raw.roi, [0, 2, 0, 2])
    np.testing.assert_array_equal(raw.plane, [0, 0, 1, 1])
    np.testing.assert_array_equal(raw.F[1], _plane_F(0, 3, 5)[2])
    np.testing.assert_array_equal(raw.Fneu, raw.F / 2)
    np.testing.assert_allclose(raw.x_um, [0.5, 4.5, 0.5, 4.5])
    assert raw.counts["n_not_cell_per_plane"] == {"plane0": 1, "plane1": 1}
    assert raw.counts["n_rois_total"] == 6 and raw.counts["iscell_filter"] is True
    # The same folder without the filter keeps all 3 ROIs per plane.
    assert _read(fish, use_iscell=False).F.shape == (6, 5)


def test_iscell_1d_and_threshold_on_probability_like_column(tmp_path: Path) -> None:
    _write_plane(tmp_path / "plane0", 0, iscell=np.array([0.2, 0.6, 0.5]))
    np.testing.assert_array_equal(_read(tmp_path).roi, [1, 2])
    np.testing.assert_array_equal(_read(tmp_path, iscell_threshold=0.55).roi, [1])


def test_ops_fs_and_argument_override(tmp_path: Path) -> None:
    _write_plane(tmp_path / "plane0", 0, ops={"fs": 1.1, "neucoeff": 0.7})
    assert read_suite2p_fish(tmp_path, pixel_size_um=1, plane_spacing_um=1).frame_rate_hz == 1.1
    assert _read(tmp_path, frame_rate_hz=4.0).frame_rate_hz == 4.0


def test_eleven_planes_sorted_numerically(tmp_path: Path) -> None:
    for k in range(11):
        _write_plane(tmp_path / f"plane_{k}", k, n_rois=1)
    raw = _read(tmp_path)
    np.testing.assert_array_equal(raw.plane, np.arange(11))
    np.testing.assert_array_equal(raw.F[:, 0], 100.0 * np.arange(11))  # plane_10 is last
    np.testing.assert_allclose(raw.z_um, DZ * np.arange(11))


def test_planes_differing_by_one_frame_are_truncated(tmp_path: Path) -> None:
    _write_plane(tmp_path / "plane_0", 0, n_frames=6)
    _write_plane(tmp_path / "plane_1", 1, n_frames=5)
    raw = _read(tmp_path)
    assert raw.F.shape == (6, 5)
    np.testing.assert_array_equal(raw.F[:3], _plane_F(0, 3, 6)[:, :5])
    assert raw.counts["n_frames_truncated"] == {"plane_0": 1}


def test_labels_joined_on_plane_and_roi(paper_fish: Path) -> None:
    pd.DataFrame({"plane": [1, 0, 5], "roi": [2, 0, 0], "region": ["Hb", "Pt", "Cb"]}).to_csv(
        paper_fish / "neuron_labels.tsv", sep="\t", index=False
    )
    raw = _read(paper_fish)
    assert list(raw.region) == ["Pt", "", "", "", "", "Hb"]
    assert raw.counts["n_label_rows_unmatched"] == 1
    assert raw.counts["n_neurons_labelled"] == 2
    assert paper_fish / "neuron_labels.tsv" in raw.source_files
    # Disabled labels: all unknown.
    assert list(_read(paper_fish, labels_file=None).region) == [""] * 6


def test_reading_never_modifies_inputs(tmp_path: Path) -> None:
    fish = tmp_path / "fish"
    _write_plane(fish / "plane_0", 0, fneu=True, iscell=np.ones((3, 2)), ops={"fs": 2.0})
    pd.DataFrame({"plane": [0], "roi": [1], "region": ["Hb"]}).to_csv(
        fish / "neuron_labels.tsv", sep="\t", index=False
    )
    _tail_frame([0, 0, 1], [0.1, 0.2, 0.3]).to_hdf(fish / "plane_0" / "tail_df.h5", key="tail")
    (fish / "stimulus.tsv").write_text("start_s\tstop_s\tstimulus\n0\t1\tleft\n")
    before = _tree_digest(fish)
    raw = read_suite2p_fish(fish, pixel_size_um=PIX, plane_spacing_um=DZ)
    raw.F[:] = -1  # the returned arrays are copies, not views on the files
    tail = read_tail_table(find_tail_file(fish))
    tail_per_frame(tail, 5, source=fish / "plane_0" / "tail_df.h5")
    read_stimulus_table(fish / "stimulus.tsv")
    assert _tree_digest(fish) == before


# --------------------------------------------------------------------------------------------
# read_suite2p_fish: bad inputs
# --------------------------------------------------------------------------------------------


def _raises(match: str, fn, *args, **kw) -> InputFileError:
    with pytest.raises(InputFileError, match=match) as info:
        fn(*args, **kw)
    return info.value


def test_no_plane_folder(tmp_path: Path) -> None:
    (tmp_path / "suite2p" / "combined").mkdir(parents=True)
    err = _raises(r"plane folders.*found none", _read, tmp_path)
    assert err.path == tmp_path


def test_missing_fish_folder(tmp_path: Path) -> None:
    _raises("no such directory", _read, tmp_path / "nope")


def test_gap_in_plane_numbering(tmp_path: Path) -> None:
    for k in (0, 1, 3):
        _write_plane(tmp_path / f"plane_{k}", k)
    err = _raises(r"plane_2: expected a plane folder", _read, tmp_path)
    assert err.path == tmp_path / "plane_2"


def test_duplicate_plane_index(tmp_path: Path) -> None:
    _write_plane(tmp_path / "plane_0", 0)
    _write_plane(tmp_path / "plane0", 0)
    _raises("both plane", _read, tmp_path)


def test_missing_F(paper_fish: Path) -> None:
    (paper_fish / "plane_1" / "F.npy").unlink()
    err = _raises(r"plane_1/F\.npy: expected suite2p fluorescence", _read, paper_fish)
    assert err.found == "none"


def test_missing_stat(paper_fish: Path) -> None:
    (paper_fish / "plane_0" / "stat.npy").unlink()
    _raises(r"plane_0/stat\.npy: .*no such file", _read, paper_fish)


def test_empty_file(paper_fish: Path) -> None:
    (paper_fish / "plane_0" / "F.npy").write_bytes(b"")
    _raises(r"plane_0/F\.npy: .*empty file \(0 bytes\)", _read, paper_fish)


def test_corrupt_npy(paper_fish: Path) -> None:
    (paper_fish / "plane_0" / "F.npy").write_bytes(b"this is not a numpy file at all")
    _raises(
        r"plane_0/F\.npy: expected a readable \.npy array, found an unreadable", _read, paper_fish
    )


def test_corrupt_pickle_in_stat(paper_fish: Path) -> None:
    path = paper_fish / "plane_0" / "stat.npy"
    path.write_bytes(path.read_bytes()[:-20])  # truncated pickle
    _raises(r"stat\.npy: expected a readable \.npy array", _read, paper_fish)


@pytest.mark.parametrize(
    ("F", "found"),
    [
        (np.zeros((0, 5), np.float32), r"shape \(0, 5\)"),
        (np.zeros((3, 0), np.float32), r"shape \(3, 0\)"),
        (np.zeros(5, np.float32), r"2-D array .*shape \(5,\)"),
        (np.zeros((3, 5, 1), np.float32), r"shape \(3, 5, 1\)"),
    ],
)
def test_bad_F_shape(tmp_path: Path, F: np.ndarray, found: str) -> None:
    _write_plane(tmp_path / "plane_0", 0, F=F)
    _raises(r"F\.npy: expected .*" + found, _read, tmp_path)


def test_nan_in_F_reports_count_and_first_neuron(paper_fish: Path) -> None:
    F = _plane_F(1, 3, 5)
    F[1, 2] = np.nan
    F[2, 0] = np.inf
    F[2, 4] = np.nan
    np.save(paper_fish / "plane_1" / "F.npy", F)
    _raises(
        r"plane_1/F\.npy: .*found 3 NaN/inf value\(s\) in 2 ROI\(s\), first at ROI 1",
        _read,
        paper_fish,
    )


def test_F_Fneu_shape_mismatch(paper_fish: Path) -> None:
    np.save(paper_fish / "plane_0" / "Fneu.npy", np.zeros((3, 4), np.float32))
    _raises(
        r"Fneu\.npy: expected shape \(3, 5\) like F\.npy, found shape \(3, 4\)", _read, paper_fish
    )


def test_Fneu_in_some_planes_only(paper_fish: Path) -> None:
    np.save(paper_fish / "plane_0" / "Fneu.npy", _plane_F(0, 3, 5))
    err = _raises(r"plane_1/Fneu\.npy: expected Fneu\.npy in every plane", _read, paper_fish)
    assert "1 of 2 planes" in err.found


def test_stat_length_mismatch(paper_fish: Path) -> None:
    np.save(paper_fish / "plane_1" / "stat.npy", _stat([(1, 1)] * 2), allow_pickle=True)
    _raises(r"plane_1/stat\.npy: expected 3 ROIs .*found 2", _read, paper_fish)


def test_stat_without_med(paper_fish: Path) -> None:
    stat = _stat([(1, 1)] * 3)
    del stat[2]["med"]
    np.save(paper_fish / "plane_0" / "stat.npy", stat, allow_pickle=True)
    _raises(r"stat\.npy: expected key 'med'.*ROI 2 without 'med'", _read, paper_fish)


def test_iscell_length_mismatch(paper_fish: Path) -> None:
    np.save(paper_fish / "plane_0" / "iscell.npy", np.ones((4, 2)))
    _raises(r"plane_0/iscell\.npy: expected 3 rows .*found 4 rows", _read, paper_fish)


def test_frame_counts_differ_by_more_than_one(tmp_path: Path) -> None:
    _write_plane(tmp_path / "plane_0", 0, n_frames=5)
    _write_plane(tmp_path / "plane_1", 1, n_frames=8)
    _raises(r"plane_1/F\.npy: expected .*5 in plane_0.*found 8 frames", _read, tmp_path)


def test_no_frame_rate_anywhere(paper_fish: Path) -> None:
    err = _raises(r"plane_0: expected key 'fs'", _read, paper_fish, frame_rate_hz=None)
    assert err.path == paper_fish / "plane_0"


def test_planes_disagree_on_fs(tmp_path: Path) -> None:
    _write_plane(tmp_path / "plane0", 0, ops={"fs": 2.0})
    _write_plane(tmp_path / "plane1", 1, ops={"fs": 3.0})
    _raises(r"plane1: expected the same 'fs' .*found 3.0 Hz", _read, tmp_path, frame_rate_hz=None)


def test_labels_missing_columns(paper_fish: Path) -> None:
    (paper_fish / "neuron_labels.tsv").write_text("plane\tregion\n0\tHb\n")
    _raises(r"neuron_labels\.tsv: expected columns .*found missing \['roi'\]", _read, paper_fish)


def test_bad_config_values(paper_fish: Path) -> None:
    with pytest.raises(ConfigError, match="pixel_size_um"):
        _read(paper_fish, pixel_size_um=0)
    with pytest.raises(ConfigError, match="frame_rate_hz"):
        _read(paper_fish, frame_rate_hz=-1.0)


# --------------------------------------------------------------------------------------------
# tail table
# --------------------------------------------------------------------------------------------


def _tail_frame(frames: list[int], theta0: list[float], n_seg: int = 6) -> pd.DataFrame:
    """Segment k angle = theta0 + k; t = sample index / 200 Hz."""
    data = {f"theta_{k:02d}": np.asarray(theta0, float) + k for k in range(n_seg)}
    data["t"] = np.arange(len(frames)) / 200.0
    data["frame"] = np.asarray(frames, dtype=np.int64)
    return pd.DataFrame(data)


def test_tail_per_frame_means_gaps_and_trailing(tmp_path: Path) -> None:
    # 8 imaging frames; frame 2 has no sample (gap), frames 6 and 7 have none (trailing).
    frames = [0, 0, 0, 1, 1, 3, 4, 4, 4, 4, 5]
    theta0 = [0.0, 0.3, 0.6, 1.0, 2.0, -1.0, 0.1, 0.2, 0.3, 0.4, 0.5]
    path = tmp_path / "tail_df.h5"
    _tail_frame(frames, theta0).to_hdf(path, key="tail")
    tail = read_tail_table(path)
    assert segment_names(tail) == [f"theta_{k:02d}" for k in range(6)]
    got_frames, angles, counts = tail_per_frame(tail, 8, source=path)
    np.testing.assert_array_equal(got_frames, [0, 1, 3, 4, 5])
    assert angles.dtype == np.float32 and angles.shape == (5, 6)
    expected0 = np.array([0.3, 1.5, -1.0, 0.25, 0.5])
    np.testing.assert_allclose(angles, expected0[:, None] + np.arange(6)[None, :], atol=1e-6)
    assert counts["n_frames_without_tail"] == 3
    assert counts["n_gap_frames_without_tail"] == 1
    assert counts["n_trailing_frames_dropped"] == 2
    assert counts["n_leading_frames_without_tail"] == 0
    assert counts["n_samples_per_frame_median"] == 2.0
    assert (counts["n_samples_per_frame_min"], counts["n_samples_per_frame_max"]) == (1, 4)


def test_tail_nan_samples_dropped_and_counted(tmp_path: Path) -> None:
    df = _tail_frame([0, 0, 1, 1], [1.0, 3.0, 5.0, 7.0])
    df.loc[1, "theta_03"] = np.nan
    path = tmp_path / "tail.csv"
    df.to_csv(path, index=False)
    tail = read_tail_table(path)
    assert len(tail) == 3 and tail.attrs["n_samples_nan_dropped"] == 1
    _, angles, counts = tail_per_frame(tail, 2, source=path)
    np.testing.assert_allclose(angles[:, 0], [1.0, 6.0])
    assert counts["n_samples_nan_dropped"] == 1


def test_tail_tsv_with_shuffled_segment_columns(tmp_path: Path) -> None:
    df = _tail_frame([0, 1], [0.0, 1.0], n_seg=3)[["frame", "theta_02", "theta_00", "theta_01"]]
    path = tmp_path / "tail.tsv"
    df.to_csv(path, sep="\t", index=False)
    tail = read_tail_table(path)
    assert segment_names(tail) == ["theta_00", "theta_01", "theta_02"]
    assert "t" not in tail and tail["frame"].dtype == np.int64


def test_tail_frames_beyond_imaging(tmp_path: Path) -> None:
    path = tmp_path / "tail_df.h5"
    _tail_frame([0, 1, 9], [0.0, 0.0, 0.0]).to_hdf(path, key="tail")
    err = _raises(
        r"tail_df\.h5: expected tail frames within the imaging .*n_frames = 5.*max frame 9",
        tail_per_frame,
        read_tail_table(path),
        5,
        source=path,
    )
    assert err.path == path


def test_tail_missing_file(tmp_path: Path) -> None:
    _raises(r"tail_df\.h5: .*no such file", read_tail_table, tmp_path / "tail_df.h5")


def test_tail_missing_key(tmp_path: Path) -> None:
    path = tmp_path / "tail_df.h5"
    _tail_frame([0], [0.0]).to_hdf(path, key="behaviour")
    _raises(r"expected HDF5 key 'tail', found keys \['behaviour'\]", read_tail_table, path)


def test_tail_not_hdf5(tmp_path: Path) -> None:
    path = tmp_path / "tail_df.h5"
    path.write_bytes(b"garbage")
    _raises(r"tail_df\.h5: expected a readable tail table", read_tail_table, path)


def test_tail_missing_columns(tmp_path: Path) -> None:
    path = tmp_path / "tail_df.h5"
    _tail_frame([0], [0.0]).drop(columns=["frame"]).to_hdf(path, key="tail")
    _raises(r"found missing \['frame'\]", read_tail_table, path)
    pd.DataFrame({"frame": [0], "angle": [0.1]}).to_hdf(path, key="tail")
    _raises(r"found missing \['theta_00\.\.'\]", read_tail_table, path)


def test_tail_non_integer_frames(tmp_path: Path) -> None:
    path = tmp_path / "tail.csv"
    df = _tail_frame([0, 1, 2], [0.0, 0.0, 0.0])
    df["frame"] = [0.0, 1.5, 2.0]
    df.to_csv(path, index=False)
    _raises(
        r"expected integer frame indices, found 1 non-integer .*1\.5 at row 1",
        read_tail_table,
        path,
    )


def test_tail_negative_frames(tmp_path: Path) -> None:
    path = tmp_path / "tail_df.h5"
    _tail_frame([0, -3], [0.0, 0.0]).to_hdf(path, key="tail")
    _raises(r"expected non-negative frame indices, found frame -3 at row 1", read_tail_table, path)


def test_tail_float_whole_frames_accepted(tmp_path: Path) -> None:
    # The prepared *_tail_data_full.npy stores frames as float64; whole numbers are fine.
    path = tmp_path / "tail_df.h5"
    df = _tail_frame([0, 1], [0.0, 0.0])
    df["frame"] = df["frame"].astype(float)
    df.to_hdf(path, key="tail")
    assert read_tail_table(path)["frame"].tolist() == [0, 1]


def test_find_tail_file(paper_fish: Path) -> None:
    with pytest.raises(InputFileError, match=r"tail_df\.h5"):
        find_tail_file(paper_fish)
    _tail_frame([0], [0.0]).to_hdf(paper_fish / "plane_1" / "tail_df.h5", key="tail")
    _tail_frame([0], [0.0]).to_hdf(paper_fish / "plane_0" / "tail_df.h5", key="tail")
    assert find_tail_file(paper_fish) == paper_fish / "plane_0" / "tail_df.h5"


# --------------------------------------------------------------------------------------------
# stimulus
# --------------------------------------------------------------------------------------------


def test_stimulus_table_and_per_frame(tmp_path: Path) -> None:
    path = tmp_path / "stimulus.tsv"
    path.write_text("start_s\tstop_s\tstimulus\n2.0\t4.0\tright\n0.0\t1.0\tleft\n")
    table = read_stimulus_table(path)
    assert table["stimulus"].tolist() == ["left", "right"]
    times = np.array([-0.5, 0.0, 0.5, 1.0, 1.5, 2.0, 3.9, 4.0])
    got = stimulus_per_frame(table, times)
    assert got.tolist() == ["", "left", "left", "", "", "right", "right", ""]
    assert stimulus_per_frame(None, times).tolist() == [""] * 8


def test_stimulus_missing_file_is_none(tmp_path: Path) -> None:
    assert read_stimulus_table(tmp_path / "stimulus.tsv") is None


def test_stimulus_missing_columns(tmp_path: Path) -> None:
    path = tmp_path / "stimulus.tsv"
    path.write_text("start_s\tstimulus\n0\tleft\n")
    _raises(
        r"stimulus\.tsv: expected columns .*found missing \['stop_s'\]", read_stimulus_table, path
    )


def test_stimulus_bad_epochs(tmp_path: Path) -> None:
    path = tmp_path / "stimulus.tsv"
    path.write_text("start_s\tstop_s\tstimulus\n3\t1\tleft\n")
    _raises(r"expected start_s < stop_s, found start 3.0 stop 1.0", read_stimulus_table, path)
    path.write_text("start_s\tstop_s\tstimulus\n0\t2\tleft\n1\t3\tright\n")
    _raises(r"expected non-overlapping epochs, found 'left'", read_stimulus_table, path)
    path.write_text("start_s\tstop_s\tstimulus\nabc\t2\tleft\n")
    _raises(r"expected finite numbers .*'abc'", read_stimulus_table, path)
