"""Shared names and geometry."""

import numpy as np

from nlp4neuro.conventions import positions_um, segment_names


def test_segment_names():
    assert segment_names(3) == ["theta_00", "theta_01", "theta_02"]
    assert segment_names(11)[-1] == "theta_10"


def test_positions_um_by_hand():
    got = positions_um(np.array([10, 0]), np.array([5, 2]), np.array([0, 3]), 0.6, 10.0)
    np.testing.assert_allclose(got["x_um"], [6.0, 0.0])
    np.testing.assert_allclose(got["y_um"], [3.0, 1.2])
    np.testing.assert_allclose(got["z_um"], [0.0, 30.0])
    assert all(v.dtype == np.float64 for v in got.values())
