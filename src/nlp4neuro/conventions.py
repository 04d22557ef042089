"""Names and geometry that every stage shares, written once.

Tail segments are `theta_00`, `theta_01`, ... (radians, the paper's columns); a neuron's position
in micrometres is its pixel centroid times the pixel size, and its plane index times the plane
spacing.
"""

from __future__ import annotations

import numpy as np

SEGMENT_PREFIX = "theta_"


def segment_names(n_segments: int) -> list[str]:
    """`theta_00` .. `theta_{n-1}`: the names of the tail segment angles."""
    return [f"{SEGMENT_PREFIX}{k:02d}" for k in range(n_segments)]


def positions_um(
    x_px: np.ndarray,
    y_px: np.ndarray,
    plane: np.ndarray,
    pixel_size_um: float,
    plane_spacing_um: float,
) -> dict[str, np.ndarray]:
    """Micrometre coordinates `x_um`, `y_um`, `z_um` (float64) of neurons given in pixels/planes."""
    return {
        "x_um": np.asarray(x_px, dtype=np.float64) * pixel_size_um,
        "y_um": np.asarray(y_px, dtype=np.float64) * pixel_size_um,
        "z_um": np.asarray(plane, dtype=np.float64) * plane_spacing_um,
    }
