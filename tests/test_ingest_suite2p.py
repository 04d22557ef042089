"""Tests for nlp4neuro.ingest.suite2p: suite2p plane folders, the paper's raw layout, regions."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fixtures_ingest import (
    check_ingested_contract,
    params,
    plane_F,
    stat_array,
    tail_frame,
    write_functional_types,
    write_paper_raw_fixture,
    write_plane,
)

from nlp4neuro.config import section
from nlp4neuro.errors import ConfigError, InputFileError
from nlp4neuro.ingest import IngestParams
from nlp4neuro.ingest.suite2p import find_tail_file, ingest_suite2p, read_suite2p_fish
from nlp4neuro.ingest.tail import read_stimulus_table, read_tail_table, tail_per_frame

PIX = 0.5  # um per pixel
DZ = 10.0  # um between planes


@pytest.fixture
def paper_fish(tmp_path: Path) -> Path:
    """The paper's layout: 2 planes x 3 ROIs x 5 frames, F.npy + stat.npy only."""
    fish = tmp_path / "raw_data_f9"
    for k in range(2):
        write_plane(fish / f"plane_{k}", k)
    return fish


def _read(fish: Path, **data):
    data.setdefault("pixel_size_um", PIX)
    data.setdefault("plane_spacing_um", DZ)
    data.setdefault("frame_rate_hz", 2.0)
    return read_suite2p_fish(fish, params(**data), fish="9")


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
    np.testing.assert_array_equal(raw.F[:3], plane_F(0, 3, 5))
    np.testing.assert_array_equal(raw.F[3:], plane_F(1, 3, 5))
    np.testing.assert_array_equal(raw.neurons.plane, [0, 0, 0, 1, 1, 1])
    np.testing.assert_array_equal(raw.neurons.roi, [0, 1, 2, 0, 1, 2])
    assert raw.Fneu is None
    assert raw.n_planes == 2 and raw.frame_rate_hz == 2.0
    assert list(raw.neurons.region) == [""] * 6
    assert raw.counts["n_neurons"] == 6 and raw.counts["neuropil"] is False
    assert {p.name for p in raw.source_files} == {"F.npy", "stat.npy"}
    assert len(raw.source_files) == 4


def test_coordinates_in_micrometres_from_med(paper_fish: Path) -> None:
    neurons = _read(paper_fish).neurons
    # med = [y, x] = [2r + plane, 4r + 1]; x = med[1] * 0.5, y = med[0] * 0.5, z = plane * 10.
    np.testing.assert_allclose(neurons.x_um, [0.5, 2.5, 4.5, 0.5, 2.5, 4.5])
    np.testing.assert_allclose(neurons.y_um, [0.0, 1.0, 2.0, 0.5, 1.5, 2.5])
    np.testing.assert_allclose(neurons.z_um, [0, 0, 0, 10, 10, 10])
    assert neurons.x_um.dtype == np.float64
    # 2 planes at 2 Hz volume rate: plane 1 is acquired 0.25 s into each volume.
    np.testing.assert_allclose(neurons.time_offset_s, [0, 0, 0, 0.25, 0.25, 0.25])


def test_lam_weighted_centroid(tmp_path: Path) -> None:
    write_plane(tmp_path / "plane_0", 0, n_rois=2, lam=True)
    raw = _read(tmp_path)
    # ROI 1: med [2, 5] -> lam-weighted centroid (2.25, 5.5) pixels.
    np.testing.assert_allclose(raw.neurons.y_um, [0.25 * PIX, 2.25 * PIX])
    np.testing.assert_allclose(raw.neurons.x_um, [1.5 * PIX, 5.5 * PIX])
    np.testing.assert_allclose(raw.neurons.z_um, [0.0, 0.0])
    assert raw.counts["n_centroid_from_lam"] == 2


def test_suite2p_layout_with_iscell_fneu_and_nested_settings(tmp_path: Path) -> None:
    fish = tmp_path / "fish"
    iscell = np.array([[1.0, 0.9], [0.0, 0.2], [1.0, 0.7]])
    for k in range(2):
        write_plane(
            fish / "suite2p" / f"plane{k}",
            k,
            fneu=True,
            iscell=iscell,
            settings={"extraction": {"neucoeff": 0.7}, "io": {"fs": 3.5}},
        )
    (fish / "suite2p" / "combined").mkdir()
    np.save(fish / "suite2p" / "combined" / "F.npy", np.zeros((6, 5), np.float32))
    raw = _read(fish, frame_rate_hz=None)
    assert raw.frame_rate_hz == 3.5
    np.testing.assert_array_equal(raw.neurons.roi, [0, 2, 0, 2])
    np.testing.assert_array_equal(raw.neurons.plane, [0, 0, 1, 1])
    np.testing.assert_array_equal(raw.F[1], plane_F(0, 3, 5)[2])
    np.testing.assert_array_equal(raw.Fneu, raw.F / 2)
    np.testing.assert_allclose(raw.neurons.x_um, [0.5, 4.5, 0.5, 4.5])
    assert raw.counts["n_not_cell_per_plane"] == {"plane0": 1, "plane1": 1}
    assert raw.counts["n_rois_total"] == 6 and raw.counts["iscell_filter"] is True
    # The same folder without the filter keeps all 3 ROIs per plane.
    assert _read(fish, use_iscell=False).F.shape == (6, 5)


def test_iscell_1d_and_threshold_on_probability_like_column(tmp_path: Path) -> None:
    write_plane(tmp_path / "plane0", 0, iscell=np.array([0.2, 0.6, 0.5]))
    np.testing.assert_array_equal(_read(tmp_path).neurons.roi, [1, 2])
    np.testing.assert_array_equal(_read(tmp_path, iscell_threshold=0.55).neurons.roi, [1])


def test_ops_fs_and_config_override(tmp_path: Path) -> None:
    write_plane(tmp_path / "plane0", 0, ops={"fs": 1.1, "neucoeff": 0.7})
    assert _read(tmp_path, frame_rate_hz=None).frame_rate_hz == 1.1
    assert _read(tmp_path, frame_rate_hz=4.0).frame_rate_hz == 4.0


def test_eleven_planes_sorted_numerically(tmp_path: Path) -> None:
    for k in range(11):
        write_plane(tmp_path / f"plane_{k}", k, n_rois=1)
    raw = _read(tmp_path)
    np.testing.assert_array_equal(raw.neurons.plane, np.arange(11))
    np.testing.assert_array_equal(raw.F[:, 0], 100.0 * np.arange(11))  # plane_10 is last
    np.testing.assert_allclose(raw.neurons.z_um, DZ * np.arange(11))


def test_planes_differing_by_one_frame_are_truncated(tmp_path: Path) -> None:
    write_plane(tmp_path / "plane_0", 0, n_frames=6)
    write_plane(tmp_path / "plane_1", 1, n_frames=5)
    raw = _read(tmp_path)
    assert raw.F.shape == (6, 5)
    np.testing.assert_array_equal(raw.F[:3], plane_F(0, 3, 6)[:, :5])
    assert raw.counts["n_frames_truncated"] == {"plane_0": 1}


def test_labels_joined_on_plane_and_roi(paper_fish: Path) -> None:
    pd.DataFrame({"plane": [1, 0, 5], "roi": [2, 0, 0], "region": ["Hb", "Pt", "Cb"]}).to_csv(
        paper_fish / "neuron_labels.tsv", sep="\t", index=False
    )
    raw = _read(paper_fish)
    assert list(raw.neurons.region) == ["Pt", "", "", "", "", "Hb"]
    assert raw.counts["n_label_rows_unmatched"] == 1
    assert raw.counts["n_neurons_labelled"] == 2
    assert raw.counts["region_source"] == "labels_file"
    assert paper_fish / "neuron_labels.tsv" in raw.source_files
    # Disabled labels: all unknown.
    assert list(_read(paper_fish, labels_file=None).neurons.region) == [""] * 6


def test_reading_never_modifies_inputs(tmp_path: Path) -> None:
    fish = tmp_path / "fish"
    write_plane(fish / "plane_0", 0, fneu=True, iscell=np.ones((3, 2)), ops={"fs": 2.0})
    pd.DataFrame({"plane": [0], "roi": [1], "region": ["Hb"]}).to_csv(
        fish / "neuron_labels.tsv", sep="\t", index=False
    )
    tail_frame([0, 0, 1], [0.1, 0.2, 0.3]).to_hdf(fish / "plane_0" / "tail_df.h5", key="tail")
    (fish / "stimulus.tsv").write_text("start_s\tstop_s\tstimulus\n0\t1\tleft\n")
    before = _tree_digest(fish)
    raw = _read(fish, frame_rate_hz=None)
    raw.F[:] = -1  # the returned arrays are copies, not views on the files
    tail = read_tail_table(find_tail_file(fish, "tail_df.h5"))
    tail_per_frame(tail, 5, source=fish / "plane_0" / "tail_df.h5")
    read_stimulus_table(fish / "stimulus.tsv")
    ingest_suite2p(fish, "1", params(pixel_size_um=PIX))
    assert _tree_digest(fish) == before


def test_find_tail_file(paper_fish: Path) -> None:
    with pytest.raises(InputFileError, match=r"tail_df\.h5"):
        find_tail_file(paper_fish, "tail_df.h5")
    tail_frame([0], [0.0]).to_hdf(paper_fish / "plane_1" / "tail_df.h5", key="tail")
    tail_frame([0], [0.0]).to_hdf(paper_fish / "plane_0" / "tail_df.h5", key="tail")
    assert find_tail_file(paper_fish, "tail_df.h5") == paper_fish / "plane_0" / "tail_df.h5"


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
        write_plane(tmp_path / f"plane_{k}", k)
    err = _raises(r"plane_2: expected a plane folder", _read, tmp_path)
    assert err.path == tmp_path / "plane_2"


def test_duplicate_plane_index(tmp_path: Path) -> None:
    write_plane(tmp_path / "plane_0", 0)
    write_plane(tmp_path / "plane0", 0)
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
    write_plane(tmp_path / "plane_0", 0, F=F)
    _raises(r"F\.npy: expected .*" + found, _read, tmp_path)


def test_nan_in_F_reports_count_and_first_neuron(paper_fish: Path) -> None:
    F = plane_F(1, 3, 5)
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
    np.save(paper_fish / "plane_0" / "Fneu.npy", plane_F(0, 3, 5))
    err = _raises(r"plane_1/Fneu\.npy: expected Fneu\.npy in every plane", _read, paper_fish)
    assert "1 of 2 planes" in err.found


def test_stat_length_mismatch(paper_fish: Path) -> None:
    np.save(paper_fish / "plane_1" / "stat.npy", stat_array([(1, 1)] * 2), allow_pickle=True)
    _raises(r"plane_1/stat\.npy: expected 3 ROIs .*found 2", _read, paper_fish)


def test_stat_without_med(paper_fish: Path) -> None:
    stat = stat_array([(1, 1)] * 3)
    del stat[2]["med"]
    np.save(paper_fish / "plane_0" / "stat.npy", stat, allow_pickle=True)
    _raises(r"stat\.npy: expected key 'med'.*ROI 2 without 'med'", _read, paper_fish)


def test_iscell_length_mismatch(paper_fish: Path) -> None:
    np.save(paper_fish / "plane_0" / "iscell.npy", np.ones((4, 2)))
    _raises(r"plane_0/iscell\.npy: expected 3 rows .*found 4 rows", _read, paper_fish)


def test_frame_counts_differ_by_more_than_one(tmp_path: Path) -> None:
    write_plane(tmp_path / "plane_0", 0, n_frames=5)
    write_plane(tmp_path / "plane_1", 1, n_frames=8)
    _raises(r"plane_1/F\.npy: expected .*5 in plane_0.*found 8 frames", _read, tmp_path)


def test_no_frame_rate_anywhere(paper_fish: Path) -> None:
    err = _raises(r"plane_0: expected key 'fs'", _read, paper_fish, frame_rate_hz=None)
    assert err.path == paper_fish / "plane_0"


def test_planes_disagree_on_fs(tmp_path: Path) -> None:
    write_plane(tmp_path / "plane0", 0, ops={"fs": 2.0})
    write_plane(tmp_path / "plane1", 1, ops={"fs": 3.0})
    _raises(r"plane1: expected the same 'fs' .*found 3.0 Hz", _read, tmp_path, frame_rate_hz=None)


def test_labels_missing_columns(paper_fish: Path) -> None:
    (paper_fish / "neuron_labels.tsv").write_text("plane\tregion\n0\tHb\n")
    _raises(r"neuron_labels\.tsv: expected columns .*found missing \['roi'\]", _read, paper_fish)


def test_bad_config_values_name_the_key(paper_fish: Path) -> None:
    with pytest.raises(ConfigError, match=r"data\.pixel_size_um"):
        _read(paper_fish, pixel_size_um=0)
    with pytest.raises(ConfigError, match=r"data\.frame_rate_hz"):
        _read(paper_fish, frame_rate_hz=-1.0)
    with pytest.raises(ConfigError, match=r"data\.plane_spacing_um.*validate the config"):
        IngestParams.from_config({"pixel_size_um": 1.0})  # not a validated section


# --------------------------------------------------------------------------------------------
# The paper's raw layout, end to end
# --------------------------------------------------------------------------------------------


def test_paper_raw_layout_is_read_by_ingest_suite2p(tmp_path: Path) -> None:
    fish_dir = write_paper_raw_fixture(tmp_path, fish=9, rois_per_plane=(3, 2), n_frames=12)
    # exactly the published files, nothing else
    assert sorted(str(p.relative_to(fish_dir)) for p in fish_dir.rglob("*") if p.is_file()) == [
        f"plane_{k}/{name}" for k in (0, 1) for name in ("F.npy", "stat.npy", "tail_df.h5")
    ]
    ds = ingest_suite2p(fish_dir, "9", params(frame_rate_hz=1.1, pixel_size_um=0.5))
    check_ingested_contract(ds)
    assert "Fneu" not in ds  # no neuropil in the published data
    expected_F = np.concatenate([np.load(fish_dir / f"plane_{k}/F.npy") for k in (0, 1)])
    np.testing.assert_array_equal(ds["F"].values, expected_F)
    np.testing.assert_array_equal(ds["plane"].values, [0, 0, 0, 1, 1])
    np.testing.assert_array_equal(ds["roi"].values, [0, 1, 2, 0, 1])
    # lam-weighted centroid (10k + r + 0.25, 20 + r + 0.5) pixels at 0.5 um/pixel
    np.testing.assert_allclose(ds["y_um"].values, 0.5 * np.array([0.25, 1.25, 2.25, 10.25, 11.25]))
    np.testing.assert_allclose(ds["x_um"].values, 0.5 * np.array([20.5, 21.5, 22.5, 20.5, 21.5]))
    np.testing.assert_allclose(ds["z_um"].values, [0, 0, 0, 10, 10])
    np.testing.assert_allclose(ds["time_offset_s"].values, [0, 0, 0, 0.5 / 1.1, 0.5 / 1.1])
    # tail: frames 0..9 (the last 2 have none); mean angle j at frame f = 0.01 f + 0.001 j
    np.testing.assert_array_equal(ds["tail_frame"].values, np.arange(10))
    f, j = np.meshgrid(np.arange(10), np.arange(6), indexing="ij")
    np.testing.assert_allclose(ds["tail"].values, 0.01 * f + 0.001 * j, atol=1e-7)
    counts = json.loads(ds.attrs["counts"])
    assert counts["n_trailing_frames_dropped"] == 2
    assert counts["n_samples_per_frame_median"] == 4
    assert counts["neuropil"] is False and counts["iscell_filter"] is False
    assert counts["tail_coverage"] == 1.0 and ds.attrs["tail_coverage"] == 1.0
    assert ds.attrs["frame_rate_hz"] == 1.1
    assert json.loads(ds.attrs["ingest"])["format"] == "suite2p"
    # only plane_0's copy of the tail table is read, as in the reference
    assert "plane_0/tail_df.h5" in json.loads(ds.attrs["source_checksums"])
    assert "plane_1/tail_df.h5" not in json.loads(ds.attrs["source_checksums"])


def test_paper_raw_layout_needs_the_frame_rate(tmp_path: Path) -> None:
    fish_dir = write_paper_raw_fixture(tmp_path)
    with pytest.raises(InputFileError, match=r"'fs'.*frame_rate_hz argument"):
        ingest_suite2p(fish_dir, "9", params(frame_rate_hz=None))


# --------------------------------------------------------------------------------------------
# data.functional_types_file: the paper's region table joined on the global ROI index
# --------------------------------------------------------------------------------------------

FT_FILE = "../exp1-4_data/fish{fish}/data/functional_types_df.h5"


def _paper_fish_with_regions(tmp_path: Path, **table) -> Path:
    """Raw fish 11 (planes of 3 and 2 ROIs) and its region table where the paper keeps it."""
    fish_dir = write_paper_raw_fixture(tmp_path, fish=11, rois_per_plane=(3, 2))
    write_functional_types(tmp_path / "exp1-4_data/fish11/data/functional_types_df.h5", **table)
    return fish_dir


def test_functional_types_regions_joined_on_global_index(tmp_path: Path) -> None:
    fish_dir = _paper_fish_with_regions(tmp_path)
    ds = ingest_suite2p(fish_dir, "11", params(frame_rate_hz=1.1, functional_types_file=FT_FILE))
    # rows 0..4 = plane 0 ROIs 0..2, plane 1 ROIs 0..1; regions Pt, -, Hb, -, Pt
    assert list(ds["region"].values) == ["Pt", "", "Hb", "", "Pt"]
    counts = json.loads(ds.attrs["counts"])
    assert counts["region_source"] == "functional_types"
    assert counts["n_neurons_labelled"] == 3
    assert counts["n_functional_types_plane_disagreements"] == 0
    checksums = json.loads(ds.attrs["source_checksums"])
    assert any(k.endswith("fish11/data/functional_types_df.h5") for k in checksums)


def test_functional_types_index_counts_rois_before_iscell_filtering(tmp_path: Path) -> None:
    fish_dir = _paper_fish_with_regions(
        tmp_path, region=["Pt", "Hb", "Cb", "Tel", "Hb"], plane=["0", "0", "0", "1", "1"]
    )
    # drop plane 0's ROI 1 and plane 1's ROI 0: the kept ROIs are global 0, 2, 4
    np.save(fish_dir / "plane_0" / "iscell.npy", np.array([[1, 0.9], [0, 0.1], [1, 0.8]]))
    np.save(fish_dir / "plane_1" / "iscell.npy", np.array([[0, 0.1], [1, 0.9]]))
    ds = ingest_suite2p(fish_dir, "11", params(frame_rate_hz=1.1, functional_types_file=FT_FILE))
    np.testing.assert_array_equal(ds["plane"].values, [0, 0, 1])
    np.testing.assert_array_equal(ds["roi"].values, [0, 2, 1])
    # by global index 0, 2, 4 -- not by position 0, 1, 2 among the kept neurons (Pt, Hb, Cb)
    assert list(ds["region"].values) == ["Pt", "Cb", "Hb"]


def test_functional_types_missing_file_warns_and_continues(tmp_path: Path, caplog) -> None:
    fish_dir = write_paper_raw_fixture(tmp_path, fish=9)
    with caplog.at_level(logging.WARNING, logger="nlp4neuro.ingest.suite2p"):
        ds = ingest_suite2p(fish_dir, "9", params(frame_rate_hz=1.1, functional_types_file=FT_FILE))
    assert list(ds["region"].values) == [""] * 5
    warned = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert any("fish9/data/functional_types_df.h5" in r.getMessage() for r in warned)
    assert json.loads(ds.attrs["counts"])["region_source"] == "none"


def test_functional_types_row_index_out_of_range_is_named(tmp_path: Path) -> None:
    fish_dir = _paper_fish_with_regions(tmp_path, index=[0, 1, 2, 3, 7])
    with pytest.raises(
        InputFileError,
        match=r"functional_types_df\.h5: expected row indices 0\.\.4 .*found row index 7",
    ):
        ingest_suite2p(fish_dir, "11", params(frame_rate_hz=1.1, functional_types_file=FT_FILE))


def test_functional_types_plane_disagreement_is_a_warning(tmp_path: Path, caplog) -> None:
    fish_dir = _paper_fish_with_regions(tmp_path, plane=["0", "0", "1", "1", "1"])
    with caplog.at_level(logging.WARNING):
        ds = ingest_suite2p(
            fish_dir, "11", params(frame_rate_hz=1.1, functional_types_file=FT_FILE)
        )
    assert json.loads(ds.attrs["counts"])["n_functional_types_plane_disagreements"] == 1
    assert any("row index 2 says plane 1" in r.getMessage() for r in caplog.records)


def test_functional_types_key_is_in_the_schema() -> None:
    assert section("data")["functional_types_file"] is None
    assert section("data", functional_types_file=FT_FILE)["functional_types_file"] == FT_FILE
