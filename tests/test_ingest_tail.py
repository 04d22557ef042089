"""Tests for nlp4neuro.ingest.tail: tail table, per-frame tail, stimulus epochs, neuron labels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fixtures_ingest import tail_frame

from nlp4neuro.conventions import segment_names
from nlp4neuro.errors import InputFileError
from nlp4neuro.ingest.tail import (
    angle_columns,
    read_neuron_labels,
    read_stimulus_per_frame,
    read_stimulus_table,
    read_tail_per_frame,
    read_tail_table,
    stimulus_per_frame,
    tail_per_frame,
)


def _raises(match: str, fn, *args, **kw) -> InputFileError:
    with pytest.raises(InputFileError, match=match) as info:
        fn(*args, **kw)
    return info.value


# --------------------------------------------------------------------------------------------
# tail table
# --------------------------------------------------------------------------------------------


def test_tail_per_frame_means_gaps_and_trailing(tmp_path: Path) -> None:
    # 8 imaging frames; frame 2 has no sample (gap), frames 6 and 7 have none (trailing).
    frames = [0, 0, 0, 1, 1, 3, 4, 4, 4, 4, 5]
    theta0 = [0.0, 0.3, 0.6, 1.0, 2.0, -1.0, 0.1, 0.2, 0.3, 0.4, 0.5]
    path = tmp_path / "tail_df.h5"
    tail_frame(frames, theta0).to_hdf(path, key="tail")
    tail = read_tail_table(path)
    assert angle_columns(tail, path) == segment_names(6)
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
    per_frame = read_tail_per_frame(path, 8)
    np.testing.assert_array_equal(per_frame.frames, got_frames)
    np.testing.assert_array_equal(per_frame.angles, angles)
    assert per_frame.source == path and list(per_frame.segments) == segment_names(6)


def test_tail_nan_samples_dropped_and_counted(tmp_path: Path) -> None:
    df = tail_frame([0, 0, 1, 1], [1.0, 3.0, 5.0, 7.0])
    df.loc[1, "theta_03"] = np.nan
    path = tmp_path / "tail.csv"
    df.to_csv(path, index=False)
    tail = read_tail_table(path)
    assert len(tail) == 3 and tail.attrs["n_samples_nan_dropped"] == 1
    _, angles, counts = tail_per_frame(tail, 2, source=path)
    np.testing.assert_allclose(angles[:, 0], [1.0, 6.0])
    assert counts["n_samples_nan_dropped"] == 1


def test_tail_tsv_with_shuffled_segment_columns(tmp_path: Path) -> None:
    df = tail_frame([0, 1], [0.0, 1.0], n_seg=3)[["frame", "theta_02", "theta_00", "theta_01"]]
    path = tmp_path / "tail.tsv"
    df.to_csv(path, sep="\t", index=False)
    tail = read_tail_table(path)
    assert angle_columns(tail, path) == ["theta_00", "theta_01", "theta_02"]
    assert "t" not in tail and tail["frame"].dtype == np.int64


def test_tail_frames_beyond_imaging(tmp_path: Path) -> None:
    path = tmp_path / "tail_df.h5"
    tail_frame([0, 1, 9], [0.0, 0.0, 0.0]).to_hdf(path, key="tail")
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
    tail_frame([0], [0.0]).to_hdf(path, key="behaviour")
    _raises(r"expected HDF5 key 'tail', found keys \['behaviour'\]", read_tail_table, path)


def test_tail_not_hdf5(tmp_path: Path) -> None:
    path = tmp_path / "tail_df.h5"
    path.write_bytes(b"garbage")
    _raises(r"tail_df\.h5: expected a readable tail table", read_tail_table, path)


def test_tail_missing_columns(tmp_path: Path) -> None:
    path = tmp_path / "tail_df.h5"
    tail_frame([0], [0.0]).drop(columns=["frame"]).to_hdf(path, key="tail")
    _raises(r"found missing \['frame'\]", read_tail_table, path)
    pd.DataFrame({"frame": [0], "angle": [0.1]}).to_hdf(path, key="tail")
    err = _raises(
        r"found missing \['theta_00\.\.'\]; has \['frame', 'angle'\]", read_tail_table, path
    )
    assert "theta_00, theta_01" in err.expected


@pytest.mark.parametrize(
    ("columns", "found"),
    [
        (["theta_0", "theta_1"], r"angle columns \['theta_0', 'theta_1'\]"),  # not zero-padded
        (["theta_00", "theta_02"], r"angle columns \['theta_00', 'theta_02'\]"),  # a gap
        (["theta_01", "theta_02"], r"angle columns \['theta_01', 'theta_02'\]"),  # no base
    ],
)
def test_tail_angle_columns_with_unexpected_names(tmp_path: Path, columns, found) -> None:
    path = tmp_path / "tail.csv"
    table = pd.DataFrame({name: [0.1, 0.2] for name in columns})
    table["frame"] = [0, 1]
    table.to_csv(path, index=False)
    err = _raises(
        rf"tail\.csv: expected tail angle columns \['theta_00', 'theta_01'\].*found {found}",
        read_tail_table,
        path,
    )
    assert err.path == path and "all columns" in err.found


def test_tail_non_integer_frames(tmp_path: Path) -> None:
    path = tmp_path / "tail.csv"
    df = tail_frame([0, 1, 2], [0.0, 0.0, 0.0])
    df["frame"] = [0.0, 1.5, 2.0]
    df.to_csv(path, index=False)
    _raises(
        r"expected integer frame indices, found 1 non-integer .*1\.5 at row 1",
        read_tail_table,
        path,
    )


def test_tail_negative_frames(tmp_path: Path) -> None:
    path = tmp_path / "tail_df.h5"
    tail_frame([0, -3], [0.0, 0.0]).to_hdf(path, key="tail")
    _raises(r"expected non-negative frame indices, found frame -3 at row 1", read_tail_table, path)


def test_tail_inf_angle_names_segment_and_row(tmp_path: Path) -> None:
    path = tmp_path / "tail.csv"
    df = tail_frame([0, 1], [0.0, 0.0])
    df.loc[1, "theta_02"] = np.inf
    df.to_csv(path, index=False)
    _raises(r"found inf in theta_02 row 1", read_tail_table, path)


def test_tail_float_whole_frames_accepted(tmp_path: Path) -> None:
    # The prepared *_tail_data_full.npy stores frames as float64; whole numbers are fine.
    path = tmp_path / "tail_df.h5"
    df = tail_frame([0, 1], [0.0, 0.0])
    df["frame"] = df["frame"].astype(float)
    df.to_hdf(path, key="tail")
    assert read_tail_table(path)["frame"].tolist() == [0, 1]


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
    # frame k at k / 2 Hz: frames 0, 1 (0.0 s, 0.5 s) are "left", 4..7 (2.0 .. 3.5 s) "right"
    per_frame, files = read_stimulus_per_frame(path, 9, 2.0)
    assert per_frame.tolist() == ["left", "left", "", "", "right", "right", "right", "right", ""]
    assert files == [path]


def test_stimulus_missing_file_is_none(tmp_path: Path) -> None:
    assert read_stimulus_table(tmp_path / "stimulus.tsv") is None
    per_frame, files = read_stimulus_per_frame(tmp_path / "stimulus.tsv", 3, 1.0)
    assert per_frame.tolist() == ["", "", ""] and files == []
    assert read_stimulus_per_frame(None, 2, 1.0)[0].tolist() == ["", ""]


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


# --------------------------------------------------------------------------------------------
# neuron labels
# --------------------------------------------------------------------------------------------


def test_neuron_labels_join_and_bad_rows(tmp_path: Path) -> None:
    path = tmp_path / "neuron_labels.tsv"
    path.write_text("plane\troi\tregion\n1\t0\t Hb \n0\t2\t\n")
    region, counts = read_neuron_labels(path, np.array([0, 0, 1]), np.array([0, 2, 0]))
    assert region.tolist() == ["", "", "Hb"]
    assert counts == {"n_label_rows": 2, "n_neurons_labelled": 1, "n_label_rows_unmatched": 0}
    path.write_text("plane\troi\tregion\n0\t1\tHb\n0\t-1\tPt\n")
    _raises(
        r"non-negative integers in column 'roi', found -1 at row 1",
        read_neuron_labels,
        path,
        np.array([0]),
        np.array([0]),
    )
    path.write_text("plane\troi\tregion\n0\t1\tHb\n0\t1\tPt\n")
    _raises(
        r"one row per \(plane, roi\), found duplicate plane 0, roi 1",
        read_neuron_labels,
        path,
        np.array([0]),
        np.array([0]),
    )
