"""Tests for nlp4neuro.ingest.prepared and .functional_types: prepared matrices, region tables.

Every expected number is computed by hand from values the tests write.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fixtures_ingest import (
    check_ingested_contract,
    params,
    write_functional_types,
    write_paper_raw_fixture,
    write_prepared,
)

from nlp4neuro.errors import InputFileError
from nlp4neuro.ingest.functional_types import (
    labels_from_functional_types,
    read_functional_types,
    regions_for_rois,
)
from nlp4neuro.ingest.prepared import ingest_prepared

# --------------------------------------------------------------------------------------------
# functional_types_df.h5
# --------------------------------------------------------------------------------------------


def test_read_functional_types(tmp_path: Path) -> None:
    table = read_functional_types(write_functional_types(tmp_path / "ft.h5"))
    assert list(table.columns[:4]) == ["plane", "x_px", "y_px", "region"]
    assert table.index.name == "neuron"
    np.testing.assert_array_equal(table.index, np.arange(5))
    np.testing.assert_array_equal(table["plane"], [0, 0, 0, 1, 1])
    np.testing.assert_array_equal(table["x_px"], [10, 11, 12, 30, 31])  # neur_coords = [x, y]
    np.testing.assert_array_equal(table["y_px"], [20, 21, 22, 40, 41])
    assert list(table["region"]) == ["Pt", "", "Hb", "", "Pt"]
    np.testing.assert_allclose(table["motor_corr"], [0.1, 0.2, 0.3, 0.4, 0.5])


def test_labels_from_functional_types_roi_within_plane(tmp_path: Path) -> None:
    table = read_functional_types(write_functional_types(tmp_path / "ft.h5"))
    labels = labels_from_functional_types(table)
    assert list(labels.columns) == ["plane", "roi", "region"]
    np.testing.assert_array_equal(labels["plane"], [0, 0, 0, 1, 1])
    np.testing.assert_array_equal(labels["roi"], [0, 1, 2, 0, 1])
    # a subset of neurons needs the plane sizes: global 1 -> plane 0 roi 1, 4 -> plane 1 roi 1
    subset = table.loc[[1, 4]]
    sub = labels_from_functional_types(subset, plane_sizes=[3, 2])
    np.testing.assert_array_equal(sub["roi"], [1, 1])
    with pytest.raises(InputFileError, match=r"every neuron 0..N-1.*2 rows with indices 1..4"):
        labels_from_functional_types(subset)
    with pytest.raises(InputFileError, match=r"neuron 4 inside plane 1's index range \[3, 4\)"):
        labels_from_functional_types(subset, plane_sizes=[3, 1])
    with pytest.raises(InputFileError, match=r"planes 0\.\.0 .*found plane index 1 at neuron 4"):
        labels_from_functional_types(subset, plane_sizes=[3])


def test_functional_types_bad_input(tmp_path: Path) -> None:
    path = write_functional_types(tmp_path / "a.h5", plane=["0", "1", "0", "1", "1"])
    with pytest.raises(InputFileError, match=r"plane never decreasing.*plane 1 at neuron 1"):
        labels_from_functional_types(read_functional_types(path), source=path)
    bad = [[1.0, 2.0], [1.0], [1.0, 2.0], [1.0, 2.0], [1.0, 2.0]]
    path = write_functional_types(tmp_path / "b.h5", neur_coords=bad)
    with pytest.raises(InputFileError, match=r"neur_coords = \[x, y\] pixels, found \[1.0\] at"):
        read_functional_types(path)
    path = write_functional_types(tmp_path / "c.h5", plane=["0", "0", "top", "1", "1"])
    with pytest.raises(InputFileError, match=r"plane number in every row.*'top' at neuron 2"):
        read_functional_types(path)
    pd.DataFrame({"plane": ["0"]}).to_hdf(tmp_path / "d.h5", key="df")
    with pytest.raises(InputFileError, match=r"missing \['neur_coords'\]"):
        read_functional_types(tmp_path / "d.h5")


def test_functional_types_bad_row_index_is_named(tmp_path: Path) -> None:
    path = write_functional_types(tmp_path / "dup.h5", index=[0, 1, 1, 3, 4])
    with pytest.raises(InputFileError, match=r"unique neuron indices, found row index 1 twice"):
        read_functional_types(path)
    path = write_functional_types(tmp_path / "neg.h5", index=[0, 1, -2, 3, 4])
    with pytest.raises(InputFileError, match=r"non-negative neuron indices, found row index -2"):
        read_functional_types(path)


def test_regions_for_rois_uses_the_global_index(tmp_path: Path) -> None:
    path = write_functional_types(tmp_path / "ft.h5")  # regions Pt, -, Hb, -, Pt
    # neurons: plane 0 ROI 2 (global 2) and plane 1 ROI 1 (global 3 + 1 = 4)
    region, counts = regions_for_rois(path, np.array([0, 1]), np.array([2, 1]), [3, 2])
    assert region.tolist() == ["Hb", "Pt"]
    assert counts["n_functional_types_rows"] == 5 and counts["n_neurons_labelled"] == 2
    with pytest.raises(InputFileError, match=r"row indices 0\.\.3 .*found row index 4"):
        regions_for_rois(path, np.array([0]), np.array([0]), [3, 1])


# --------------------------------------------------------------------------------------------
# prepared matrices
# --------------------------------------------------------------------------------------------


def test_ingest_prepared_with_functional_types(tmp_path: Path) -> None:
    data_dir = tmp_path / "exp1-4_data" / "fish11" / "data"
    neural, tail = write_prepared(data_dir, 11, n_neurons=5, n_frames=8, n_tail=6)
    write_functional_types(data_dir / "functional_types_df.h5")
    ds = ingest_prepared(data_dir, "11", params(pixel_size_um=0.6, plane_spacing_um=10.0))
    check_ingested_contract(ds)
    np.testing.assert_array_equal(ds["F"].values, neural)
    np.testing.assert_array_equal(ds["tail"].values, tail)
    np.testing.assert_array_equal(ds["frame"].values, np.arange(8))
    np.testing.assert_array_equal(ds["tail_frame"].values, np.arange(6))  # last 2 frames dropped
    np.testing.assert_array_equal(ds["plane"].values, [0, 0, 0, 1, 1])
    np.testing.assert_array_equal(ds["roi"].values, [0, 1, 2, 0, 1])
    np.testing.assert_allclose(ds["x_um"].values, 0.6 * np.array([10, 11, 12, 30, 31]))
    np.testing.assert_allclose(ds["y_um"].values, 0.6 * np.array([20, 21, 22, 40, 41]))
    np.testing.assert_allclose(ds["z_um"].values, [0, 0, 0, 10, 10])
    np.testing.assert_allclose(ds["time_offset_s"].values, [0, 0, 0, 0.5 / 1.1, 0.5 / 1.1])
    assert list(ds["region"].values) == ["Pt", "", "Hb", "", "Pt"]
    assert ds.attrs["signal_kind"] == "reference" and ds.attrs["source_format"] == "prepared"
    assert ds.attrs["frame_rate_hz"] == 1.1  # data.frame_rate_hz null: the paper's rate
    assert "preprocessing mode 'raw'" in ds.attrs["normalisation"]
    counts = json.loads(ds.attrs["counts"])
    assert counts["n_trailing_frames_dropped"] == 2
    assert counts["position_source"] == "functional_types"
    assert ds.attrs["tail_coverage"] == 1.0  # T - 2 rows of tail is the whole expected range
    assert set(json.loads(ds.attrs["source_checksums"])) == {
        "fish11_neural_data_matched.npy",
        "fish11_tail_data_matched.npy",
        "functional_types_df.h5",
    }


def test_ingest_prepared_named_functional_types_file_in_parent(tmp_path: Path) -> None:
    data_dir = tmp_path / "fish12" / "data"
    write_prepared(data_dir, 12, n_neurons=5, n_frames=8, n_tail=8)
    write_functional_types(tmp_path / "fish12" / "regions_12.h5")
    ds = ingest_prepared(data_dir, "12", params(functional_types_file="regions_{fish}.h5"))
    assert list(ds["region"].values) == ["Pt", "", "Hb", "", "Pt"]


def test_ingest_prepared_positions_unknown_or_from_raw(tmp_path: Path) -> None:
    data_dir = tmp_path / "fish9" / "data"
    write_prepared(data_dir, 9, n_neurons=5, n_frames=8, n_tail=6)
    ds = ingest_prepared(data_dir, "9", params())
    np.testing.assert_array_equal(ds["plane"].values, [-1] * 5)
    np.testing.assert_array_equal(ds["roi"].values, [-1] * 5)
    assert np.isnan(ds["x_um"].values).all() and np.isnan(ds["time_offset_s"].values).all()
    assert np.isnan(ds["z_um"].values).all()
    assert list(ds["region"].values) == [""] * 5

    raw = write_paper_raw_fixture(tmp_path / "raw", fish=9, rois_per_plane=(3, 2))
    ds = ingest_prepared(data_dir, "9", params(pixel_size_um=0.5), raw_fish_dir=raw)
    np.testing.assert_array_equal(ds["plane"].values, [0, 0, 0, 1, 1])
    np.testing.assert_array_equal(ds["roi"].values, [0, 1, 2, 0, 1])
    np.testing.assert_allclose(ds["x_um"].values, 0.5 * np.array([20.5, 21.5, 22.5, 20.5, 21.5]))
    assert json.loads(ds.attrs["counts"])["position_source"] == "raw_stat"

    wrong = write_paper_raw_fixture(tmp_path / "raw2", fish=9, rois_per_plane=(3, 3))
    with pytest.raises(InputFileError, match=r"expected 5 ROIs over all planes.*found 6 ROIs"):
        ingest_prepared(data_dir, "9", params(), raw_fish_dir=wrong)


@pytest.mark.parametrize("n_tail", [5, 9])
def test_ingest_prepared_frame_mismatch_names_both_files(tmp_path: Path, n_tail: int) -> None:
    write_prepared(tmp_path, 10, n_neurons=3, n_frames=8, n_tail=n_tail)
    with pytest.raises(
        InputFileError,
        match=rf"fish10_tail_data_matched.npy: expected 6 to 8 rows \(the 8 frames of "
        rf"fish10_neural_data_matched.npy.*found {n_tail} rows",
    ):
        ingest_prepared(tmp_path, "10", params())


def test_ingest_prepared_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match=r"fish12_neural_data_matched.npy: expected an exist"):
        ingest_prepared(tmp_path, "12", params())
