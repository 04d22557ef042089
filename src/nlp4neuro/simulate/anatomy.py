"""Anatomy and populations: where each ROI sits, which region and role it has, how it is driven.

Direction-tuned pretectal and tectal neurons are driven by the stimulus; lateralised hindbrain
"driver" neurons fire with the bout vigour of their side (left hindbrain for left turns, both
sides for forward swims); cerebellar neurons carry a bilateral copy of the motor drive; most
neurons are unrelated to stimulus and behaviour. A few ROIs are not cells (neuropil blobs).

Coordinates: image rows (y) run rostral -> caudal, image columns (x) from the fish's left to its
right; planes are numbered from the top of the stack.
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import pandas as pd

from nlp4neuro.errors import ConfigError
from nlp4neuro.simulate.behaviour import BOUT_KINDS
from nlp4neuro.simulate.params import SimulationParams
from nlp4neuro.simulate.stimulus import MOVING_STIMULI, visual_tuning

logger = logging.getLogger(__name__)

ROLES = ("unrelated", "visual", "motor_driver", "motor_correlate", "not_cell")

# Region ellipses (centre and semi-axes as fractions of image height (y), width (x) and stack depth
# (z)). Plausible larval midbrain + hindbrain layout seen from above; ellipses do not overlap.
REGION_GEOMETRY: dict[str, tuple[float, float, float, float, float, float]] = {
    # name: (cy, cx, cz, ry, rx, rz)
    "Pt_left": (0.22, 0.40, 0.35, 0.07, 0.06, 0.9),
    "Pt_right": (0.22, 0.60, 0.35, 0.07, 0.06, 0.9),
    "tectum_left": (0.25, 0.22, 0.30, 0.14, 0.12, 1.0),
    "tectum_right": (0.25, 0.78, 0.30, 0.14, 0.12, 1.0),
    "cerebellum": (0.50, 0.50, 0.25, 0.06, 0.22, 0.9),
    "Hb_left": (0.72, 0.42, 0.60, 0.16, 0.07, 1.0),
    "Hb_right": (0.72, 0.58, 0.60, 0.16, 0.07, 1.0),
}
# The whole imaged brain; neurons inside it but outside every region above are "other".
BRAIN_GEOMETRY = (0.50, 0.50, 0.50, 0.48, 0.46, 1.2)
# Where each functional population lives (region: probability).
ROLE_REGIONS = {
    "visual": {"Pt_left": 0.35, "Pt_right": 0.35, "tectum_left": 0.15, "tectum_right": 0.15},
    "motor_driver": {"Hb_left": 0.5, "Hb_right": 0.5},
    "motor_correlate": {"cerebellum": 1.0},
}


@dataclasses.dataclass(frozen=True)
class Population:
    """Every ROI of one fish in suite2p order (planes in order, detection order inside).

    `roles` (n,) str from ROLES; `places` table with `plane` (int), `y_px`, `x_px` (float pixels),
    `region` (str); `roi` (n,) int64 index within its plane; `visual_w` (n, len(MOVING_STIMULI))
    and `motor_w` (n, len(BOUT_KINDS)) weights on the latent drives; `preferred` (n,) preferred
    direction in degrees (NaN if not visual); `tuning` (n,) str label.
    """

    roles: np.ndarray
    places: pd.DataFrame
    roi: np.ndarray
    visual_w: np.ndarray
    motor_w: np.ndarray
    preferred: np.ndarray
    tuning: np.ndarray

    @property
    def plane(self) -> np.ndarray:
        """Plane of each ROI, (n,) int64."""
        return self.places["plane"].to_numpy()

    @property
    def regions(self) -> np.ndarray:
        """Region of each ROI, (n,) str."""
        return self.places["region"].to_numpy(dtype=str)

    @property
    def is_cell(self) -> np.ndarray:
        """Whether each ROI is a cell, (n,) bool."""
        return self.roles != "not_cell"


def simulate_population(
    params: SimulationParams, rng_anatomy: np.random.Generator, rng_neural: np.random.Generator
) -> Population:
    """Roles and places of every ROI, put in suite2p order, and their weights on the drives."""
    p = params
    roles = assign_roles(p.n_neurons, p, rng_anatomy)
    places = place_neurons(roles, p, rng_anatomy)
    order = np.lexsort((rng_anatomy.random(p.n_neurons), places["plane"].to_numpy()))
    roles = roles[order]
    places = places.iloc[order].reset_index(drop=True)
    plane = places["plane"].to_numpy()
    roi = np.zeros(p.n_neurons, dtype=np.int64)
    for k in range(p.n_planes):
        roi[plane == k] = np.arange(int((plane == k).sum()))
    regions = places["region"].to_numpy(dtype=str)
    visual_w, motor_w, preferred, tuning = _weights(roles, regions, rng_neural)
    return Population(roles, places, roi, visual_w, motor_w, preferred, tuning)


def _plane_depth_fraction(n_planes: int) -> np.ndarray:
    """Depth of each plane as a fraction of the stack (0 = top plane, 1 = bottom)."""
    return np.full(1, 0.5) if n_planes == 1 else np.arange(n_planes) / (n_planes - 1)


def _cross_section(geometry: tuple[float, ...], depth: np.ndarray) -> np.ndarray:
    """Scale factor in [0, 1] of an ellipsoid's cross-section at each plane depth fraction."""
    _, _, cz, _, _, rz = geometry
    return np.sqrt(np.clip(1.0 - ((depth - cz) / rz) ** 2, 0.0, None))


def _sample_in_ellipse(
    geometry: tuple[float, ...], scale: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Uniform points (y, x fractions) in the ellipse cross-sections of the given scales."""
    cy, cx, _, ry, rx, _ = geometry
    radius = np.sqrt(rng.random(scale.size)) * scale
    angle = rng.uniform(0, 2 * np.pi, size=scale.size)
    return cy + ry * radius * np.sin(angle), cx + rx * radius * np.cos(angle)


def region_of(y_frac: np.ndarray, x_frac: np.ndarray, plane_depth: np.ndarray) -> np.ndarray:
    """Region name of each point (fractions of image height/width, plane depth fraction)."""
    names = np.full(y_frac.shape, "other", dtype=object)
    for name, geometry in REGION_GEOMETRY.items():
        cy, cx, _, ry, rx, _ = geometry
        scale = _cross_section(geometry, plane_depth)
        with np.errstate(divide="ignore", invalid="ignore"):
            inside = ((y_frac - cy) / ry) ** 2 + ((x_frac - cx) / rx) ** 2 < scale**2
        names[inside & (names == "other")] = name
    return names.astype(str)


def assign_roles(n_rois: int, params: SimulationParams, rng: np.random.Generator) -> np.ndarray:
    """Functional role of each ROI (ROLES), with counts rounded from the fractions, shuffled."""
    n_not_cell = round(params.fraction_not_cell * n_rois)
    n_cells = n_rois - n_not_cell
    n_related = round((1.0 - params.fraction_unrelated) * n_cells)
    n_visual = round(params.fraction_visual * n_related)
    n_driver = round(params.fraction_motor_driver * n_related)
    n_correlate = max(n_related - n_visual - n_driver, 0)
    roles = np.array(
        ["not_cell"] * n_not_cell
        + ["visual"] * n_visual
        + ["motor_driver"] * n_driver
        + ["motor_correlate"] * n_correlate
        + ["unrelated"] * (n_cells - n_visual - n_driver - n_correlate)
    )
    return rng.permutation(roles)


@dataclasses.dataclass
class _Placement:
    """Mutable plane index and (y, x) image fractions of every ROI while they are drawn."""

    plane: np.ndarray
    y_frac: np.ndarray
    x_frac: np.ndarray

    def draw(
        self,
        indices: np.ndarray,
        geometry: tuple[float, ...],
        depth: np.ndarray,
        rng: np.random.Generator,
    ) -> None:
        """Place `indices` uniformly in an ellipsoid, each plane weighted by its cross-section."""
        area = _cross_section(geometry, depth) ** 2
        if area.sum() <= 0:
            raise ConfigError("simulation.n_planes", "planes that cut every region", depth.size)
        planes = rng.choice(depth.size, size=indices.size, p=area / area.sum())
        y, x = _sample_in_ellipse(geometry, _cross_section(geometry, depth)[planes], rng)
        self.plane[indices], self.y_frac[indices], self.x_frac[indices] = planes, y, x


def place_neurons(
    roles: np.ndarray, params: SimulationParams, rng: np.random.Generator
) -> pd.DataFrame:
    """Plane, sub-pixel position and region of each ROI.

    Related cells are drawn uniformly inside their role's region ellipsoids (ROLE_REGIONS), the
    plane weighted by the ellipsoid's cross-section area there; unrelated cells and not-cells are
    drawn uniformly inside the whole brain ellipsoid and take the region they fall in. Returns a
    table in input order with `plane` (int), `y_px`, `x_px` (float pixels), `region` (str).
    """
    depth = _plane_depth_fraction(params.n_planes)
    n = roles.size
    placement = _Placement(np.zeros(n, dtype=np.int64), np.zeros(n), np.zeros(n))
    forced_region = np.full(n, "", dtype=object)
    for role, table in ROLE_REGIONS.items():
        members = np.flatnonzero(roles == role)
        names = list(table)
        chosen = rng.choice(len(names), size=members.size, p=np.array(list(table.values())))
        for k, name in enumerate(names):
            placement.draw(members[chosen == k], REGION_GEOMETRY[name], depth, rng)
            forced_region[members[chosen == k]] = name
    background = np.flatnonzero(~np.isin(roles, list(ROLE_REGIONS)))
    placement.draw(background, BRAIN_GEOMETRY, depth, rng)
    _fill_empty_planes(placement, background, depth, rng)
    region = region_of(placement.y_frac, placement.x_frac, depth[placement.plane]).astype(object)
    region[forced_region != ""] = forced_region[forced_region != ""]
    height, width = params.image_height_px, params.image_width_px
    y_px = np.clip(placement.y_frac * height, 0, height - 1)
    x_px = np.clip(placement.x_frac * width, 0, width - 1)
    return pd.DataFrame(
        {"plane": placement.plane, "y_px": y_px, "x_px": x_px, "region": region.astype(str)}
    )


def _fill_empty_planes(
    placement: _Placement, background: np.ndarray, depth: np.ndarray, rng: np.random.Generator
) -> None:
    """Move one background ROI into each plane left empty by chance (suite2p never writes one)."""
    n_planes = depth.size
    plane = placement.plane
    for k in np.flatnonzero(np.bincount(plane, minlength=n_planes) == 0):
        counts = np.bincount(plane, minlength=n_planes)
        donors = background[counts[plane[background]] > 1]
        if donors.size == 0:
            logger.warning("plane %d has no ROI: too few unrelated ROIs to fill it", k)
            continue
        moved = donors[:1]
        plane[moved] = k
        placement.y_frac[moved], placement.x_frac[moved] = _sample_in_ellipse(
            BRAIN_GEOMETRY, _cross_section(BRAIN_GEOMETRY, depth[[k]]), rng
        )


def roi_stat(y_px: float, x_px: float, radius_px: float, height: int, width: int) -> dict:
    """suite2p-like `stat` dict of a disk ROI centred at sub-pixel (y_px, x_px).

    Keys: `ypix`, `xpix` (int32 pixel coordinates), `lam` (float32 Gaussian weights, sum 1),
    `npix`, `med` ([y, x] ints: the pixel under the centre), `radius` (pixels).
    """
    reach = int(np.ceil(radius_px))
    cy, cx = round(y_px), round(x_px)
    dy, dx = np.mgrid[-reach : reach + 1, -reach : reach + 1]
    ypix, xpix = (cy + dy).ravel(), (cx + dx).ravel()
    dist2 = (ypix - y_px) ** 2 + (xpix - x_px) ** 2
    inside = (dist2 <= radius_px**2) & (ypix >= 0) & (ypix < height) & (xpix >= 0) & (xpix < width)
    inside[np.argmin(dist2)] = True  # never an empty ROI
    lam = np.exp(-dist2[inside] / (2 * (radius_px / 2) ** 2))
    return {
        "ypix": ypix[inside].astype(np.int32),
        "xpix": xpix[inside].astype(np.int32),
        "lam": (lam / lam.sum()).astype(np.float32),
        "npix": int(inside.sum()),
        "med": [cy, cx],
        "radius": float(radius_px),
    }


def iscell_table(is_cell: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """suite2p `iscell` (n, 2) float32: the flag and a classifier-like probability that agrees."""
    n = is_cell.size
    prob = np.where(is_cell, 0.5 + 0.5 * rng.beta(4.0, 2.0, n), 0.5 * rng.beta(2.0, 4.0, n))
    return np.stack([is_cell.astype(np.float32), prob.astype(np.float32)], axis=1)


def _weights(
    roles: np.ndarray, regions: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Visual weights (n, 3), motor weights (n, 3), preferred direction (deg, NaN) and tuning label.

    Pretectum: mostly tuned to ipsilateral-direction motion (left Pt -> leftward), some to forward;
    tectum: broader, weaker, any direction. Hindbrain drivers: strong weight on the ipsilateral
    turn, moderate on forward swims, little on the contralateral turn. Cerebellum: bilateral copy.
    """
    n = roles.size
    visual_w = np.zeros((n, len(MOVING_STIMULI)))
    motor_w = np.zeros((n, len(BOUT_KINDS)))
    preferred = np.full(n, np.nan)
    tuning = np.full(n, "none", dtype=object)
    _visual_weights(roles, regions, rng, visual_w, preferred, tuning)
    _motor_weights(roles, regions, rng, motor_w, tuning)
    return visual_w, motor_w, preferred, tuning.astype(str)


def _visual_weights(
    roles: np.ndarray,
    regions: np.ndarray,
    rng: np.random.Generator,
    visual_w: np.ndarray,
    preferred: np.ndarray,
    tuning: np.ndarray,
) -> None:
    """Fill the visual neurons' rows of `visual_w`, `preferred` and `tuning` in place."""
    n = roles.size
    visual = roles == "visual"
    is_pt = visual & np.char.startswith(regions.astype(str), "Pt")
    side = np.where(np.char.endswith(regions.astype(str), "left"), 1.0, -1.0)
    # Pt: 60 % around the ipsilateral lateral direction, 40 % around forward, 20 deg jitter.
    centre = np.where(rng.random(n) < 0.6, 90.0 * side, 0.0)
    pt_pref = centre + rng.normal(0.0, 20.0, size=n)
    tectum_pref = rng.uniform(-180.0, 180.0, size=n)
    preferred[visual] = np.where(is_pt, pt_pref, tectum_pref)[visual]
    sharpness = np.where(is_pt, rng.uniform(1.0, 4.0, size=n), rng.uniform(0.5, 1.5, size=n))
    gain = np.where(is_pt, rng.uniform(0.5, 1.5, size=n), rng.uniform(0.2, 0.7, size=n))
    curves = visual_tuning(np.nan_to_num(preferred), sharpness)
    visual_w[visual] = (gain[:, None] * curves)[visual]
    tuning[visual] = np.asarray(MOVING_STIMULI)[np.argmax(curves[visual], axis=1)]


def _motor_weights(
    roles: np.ndarray,
    regions: np.ndarray,
    rng: np.random.Generator,
    motor_w: np.ndarray,
    tuning: np.ndarray,
) -> None:
    """Fill the hindbrain drivers' and cerebellar neurons' rows of `motor_w` and `tuning`."""
    drivers = np.flatnonzero(roles == "motor_driver")
    left = np.char.endswith(regions[drivers].astype(str), "left")
    ipsi = rng.uniform(0.6, 1.4, size=drivers.size)
    contra = rng.uniform(0.0, 0.15, size=drivers.size)
    motor_w[drivers, 0] = np.where(left, ipsi, contra)
    motor_w[drivers, 1] = np.where(left, contra, ipsi)
    motor_w[drivers, 2] = rng.uniform(0.2, 0.8, size=drivers.size)
    tuning[drivers] = np.where(left, "left_turn", "right_turn")

    correlates = np.flatnonzero(roles == "motor_correlate")
    motor_w[correlates] = rng.uniform(0.2, 0.6, size=(correlates.size, 1))
    tuning[correlates] = "bout"
