"""Fluorescence preprocessing: neuropil correction, baseline F0, dF/F and reference normalisation.

Every function works on (n_neurons, n_frames) arrays and operates along the time axis (axis 1),
vectorised over neurons, in float32 where that loses nothing that matters (accumulations such as
means and standard deviations are done in float64). A paper-scale fish (14k neurons x 2.8k frames)
takes seconds.

Three conventions are supported (`PreprocessingParams.mode`; the allowed values and every default
are in the config schema's ``preprocessing`` section):

- ``"dff"``: neuropil correction F - r * Fneu when a neuropil trace exists, a slow baseline F0
  (suite2p-style maximin or a running percentile), then dF/F = (F - F0) / F0 with F0 guarded
  from below.
- ``"reference"``: the NLP4Neuro paper's convention: raw suite2p F (no neuropil subtraction, no
  dF/F), then each time frame's population vector is standardised and min-max scaled to [0, 1].
- ``"raw"``: F after neuropil correction (if any), otherwise untouched.

Neurons whose trace is constant (all-zero ROIs included) or not finite are dropped and counted
first, in every mode, so they cannot produce divisions by zero further on.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr
from numpy.lib.stride_tricks import sliding_window_view
from scipy import ndimage

from nlp4neuro import config
from nlp4neuro.errors import ConfigError
from nlp4neuro.provenance import json_default

logger = logging.getLogger(__name__)

# Working-memory budget (bytes) for the temporary window arrays of `baseline_percentile`; the
# neurons are processed in chunks that fit it. Not a scientific parameter.
_PERCENTILE_CHUNK_BYTES = 64 * 1024**2


def _as_traces(x: np.ndarray, name: str) -> np.ndarray:
    """`x` as a float32 (n_neurons, n_frames) array, or ValueError naming `name`."""
    arr = np.asarray(x)
    if arr.ndim != 2:
        raise ValueError(
            f"{name}: expected a 2-D (n_neurons, n_frames) array, found shape {arr.shape}"
        )
    return arr.astype(np.float32, copy=False)


def _window_frames(window_s: float, frame_rate_hz: float, name: str) -> int:
    """Odd window length in frames, at least 1, closest to `window_s` seconds."""
    if not frame_rate_hz > 0:
        raise ValueError(f"frame_rate_hz: expected a positive rate in Hz, found {frame_rate_hz!r}")
    if not window_s > 0:
        raise ValueError(f"{name}: expected a positive duration in seconds, found {window_s!r}")
    frames = max(1, round(window_s * frame_rate_hz))
    # An odd window is centred exactly on its frame; the filters then need no half-frame shift.
    return frames if frames % 2 == 1 else frames + 1


def neuropil_correct(F: np.ndarray, Fneu: np.ndarray, coefficient: float) -> np.ndarray:
    """Subtract scaled neuropil: F - coefficient * Fneu.

    Args:
        F: (n_neurons, n_frames) ROI fluorescence (arbitrary units).
        Fneu: (n_neurons, n_frames) neuropil fluorescence of the same ROIs.
        coefficient: neuropil contamination ratio r (suite2p's default is 0.7); 0 returns F.

    Returns:
        (n_neurons, n_frames) float32 corrected fluorescence.

    Raises:
        ValueError: shapes differ or the coefficient is negative.
    """
    F = _as_traces(F, "F")
    Fneu = _as_traces(Fneu, "Fneu")
    if F.shape != Fneu.shape:
        raise ValueError(f"Fneu: expected the shape of F {F.shape}, found {Fneu.shape}")
    if not coefficient >= 0:
        raise ValueError(f"coefficient: expected a non-negative ratio, found {coefficient!r}")
    return (F - np.float32(coefficient) * Fneu).astype(np.float32, copy=False)


def baseline_maximin(
    F: np.ndarray, frame_rate_hz: float, sigma_s: float, window_s: float
) -> np.ndarray:
    """Slow baseline F0 by suite2p's "maximin" filter.

    The trace is smoothed with a Gaussian (sigma = `sigma_s` * rate frames; 0 skips smoothing),
    then a running minimum and a running maximum over a centred window of `window_s` seconds
    (rounded to the nearest odd number of frames) are applied. The minimum follows the floor of
    the trace under calcium transients shorter than the window; the maximum undoes the
    minimum's downward bias on slow drifts (on a linear ramp, min-then-max returns the ramp).

    Edges: every filter uses ``mode="nearest"`` (the first/last frame is repeated), so near the
    ends of the recording the windows are one-sided. On a trace that rises until the last frame
    the baseline of the final half-window is flat at the last interior value (an underestimate
    by at most half a window of the rise); suite2p uses reflection, which behaves the same way
    for the minimum filter.

    Args:
        F: (n_neurons, n_frames) fluorescence.
        frame_rate_hz: imaging (volume) rate in Hz.
        sigma_s: Gaussian smoothing sigma in seconds (>= 0).
        window_s: min/max window length in seconds (> 0).

    Returns:
        (n_neurons, n_frames) float32 baseline F0.
    """
    F = _as_traces(F, "F")
    window = _window_frames(window_s, frame_rate_hz, "window_s")
    if not sigma_s >= 0:
        raise ValueError(f"sigma_s: expected a non-negative duration in seconds, found {sigma_s!r}")
    sigma_frames = sigma_s * frame_rate_hz
    smooth = (
        ndimage.gaussian_filter1d(F, sigma_frames, axis=1, mode="nearest")
        if sigma_frames > 0
        else F
    )
    low = ndimage.minimum_filter1d(smooth, window, axis=1, mode="nearest")
    return ndimage.maximum_filter1d(low, window, axis=1, mode="nearest")


def default_percentile_step(window_frames: int) -> int:
    """Spacing in frames of the exact percentile evaluations in `baseline_percentile`.

    One evaluation per 1/8 of the window (8 frames for a 60 s window at 1.1 Hz): a running
    percentile over w frames changes on the window's timescale, so linear interpolation between
    points w/8 apart follows it closely (an abrupt step in the baseline is spread over w/8 frames
    instead of landing on one frame), at 1/8 of the cost of evaluating every frame. The
    percentile evaluations dominate the cost (about 4 s for 14k neurons x 2.8k frames on 2 CPU
    cores at this default, 8x more at step 1).
    """
    return max(1, window_frames // 8)


def baseline_percentile(
    F: np.ndarray,
    frame_rate_hz: float,
    window_s: float,
    percentile: float,
    step_frames: int | None = None,
) -> np.ndarray:
    """Slow baseline F0 as a running low percentile over a centred window.

    The window is `window_s` seconds rounded to the nearest odd number of frames w, centred on each
    frame; the ends are padded by repeating the first/last frame ("nearest"), as in
    `baseline_maximin`. For speed the exact percentile (numpy's linear interpolation between
    order statistics) is evaluated only at every `step_frames`-th frame (and always at the last
    frame) and linearly interpolated in between; ``step_frames=1`` gives the exact running
    percentile at every frame (what ``scipy.ndimage.percentile_filter`` computes, minus its
    rounding of the rank to a whole order statistic). The default step,
    `default_percentile_step`, is 1/8 of the window.

    Args:
        F: (n_neurons, n_frames) fluorescence.
        frame_rate_hz: imaging (volume) rate in Hz.
        window_s: window length in seconds (> 0).
        percentile: percentile in [0, 100] (8 is a common low-percentile baseline).
        step_frames: spacing of exact evaluations in frames (>= 1), None for the default.

    Returns:
        (n_neurons, n_frames) float32 baseline F0.
    """
    F = _as_traces(F, "F")
    window = _window_frames(window_s, frame_rate_hz, "window_s")
    if not 0 <= percentile <= 100:
        raise ValueError(f"percentile: expected a value in [0, 100], found {percentile!r}")
    step = default_percentile_step(window) if step_frames is None else int(step_frames)
    if step < 1:
        raise ValueError(f"step_frames: expected an integer >= 1, found {step_frames!r}")
    n_neurons, n_frames = F.shape
    half = window // 2
    centres = np.arange(0, n_frames, step)
    if centres[-1] != n_frames - 1:
        centres = np.append(centres, n_frames - 1)

    at_centres = np.empty((n_neurons, centres.size), dtype=np.float32)
    chunk = max(1, _PERCENTILE_CHUNK_BYTES // (4 * centres.size * window))
    for begin in range(0, n_neurons, chunk):
        block = np.pad(F[begin : begin + chunk], ((0, 0), (half, half)), mode="edge")
        # Window of padded frames [c, c + w) is centred on original frame c.
        windows = sliding_window_view(block, window, axis=1)[:, centres, :]
        at_centres[begin : begin + chunk] = np.percentile(windows, percentile, axis=-1)

    if centres.size == n_frames:  # every frame evaluated exactly
        return at_centres
    # Linear interpolation between neighbouring centres, the same weights for every neuron.
    frames = np.arange(n_frames)
    right = np.clip(np.searchsorted(centres, frames, side="left"), 1, centres.size - 1)
    left = right - 1
    weight = ((frames - centres[left]) / (centres[right] - centres[left])).astype(np.float32)
    return at_centres[:, left] * (1 - weight) + at_centres[:, right] * weight


def f0_floor(F0: np.ndarray, fraction: float) -> np.ndarray:
    """Per-neuron lower bound for F0 used by `delta_f_over_f`.

    The floor is `fraction` times the neuron's own median baseline: dF/F is a change relative to
    the neuron's typical resting fluorescence, so F0 dipping far below that level (noise, motion,
    over-subtracted neuropil) must not inflate dF/F. A neuron whose median baseline is not
    positive (e.g. a dim ROI after neuropil subtraction) has no meaningful own scale; it gets
    `fraction` times the median of the positive per-neuron median baselines (the population's
    typical resting level), which bounds its dF/F instead of letting it explode or flip sign.

    Args:
        F0: (n_neurons, n_frames) baseline.
        fraction: floor as a fraction of the median baseline, in (0, 1].

    Returns:
        (n_neurons,) float32 floors, all positive.

    Raises:
        ValueError: `fraction` out of range, or no neuron has a positive median baseline.
    """
    return _floors_from_medians(np.median(_as_traces(F0, "F0"), axis=1), fraction)


def _floors_from_medians(medians: np.ndarray, fraction: float) -> np.ndarray:
    """`f0_floor` given the (n_neurons,) median baselines."""
    if not 0 < fraction <= 1:
        raise ValueError(f"f0_floor_fraction: expected a value in (0, 1], found {fraction!r}")
    positive = medians > 0
    if not positive.any():
        raise ValueError(
            "F0: expected at least one neuron with a positive median baseline for dF/F, found "
            f"none of {medians.size} (is the neuropil coefficient too large? mode 'raw' or "
            "'reference' avoids dF/F)"
        )
    population = np.median(medians[positive])
    return (fraction * np.where(positive, medians, population)).astype(np.float32)


def delta_f_over_f(F: np.ndarray, F0: np.ndarray, f0_floor_fraction: float) -> np.ndarray:
    """dF/F = (F - F0) / max(F0, floor), with the per-neuron floor of `f0_floor`.

    Args:
        F: (n_neurons, n_frames) fluorescence.
        F0: (n_neurons, n_frames) baseline of `F`.
        f0_floor_fraction: see `f0_floor`.

    Returns:
        (n_neurons, n_frames) float32 dF/F (dimensionless).
    """
    F = _as_traces(F, "F")
    F0 = _as_traces(F0, "F0")
    if F.shape != F0.shape:
        raise ValueError(f"F0: expected the shape of F {F.shape}, found {F0.shape}")
    return _dff(F, F0, f0_floor(F0, f0_floor_fraction))


def _dff(F: np.ndarray, F0: np.ndarray, floors: np.ndarray) -> np.ndarray:
    """(F - F0) / max(F0, floors[:, None]) in float32."""
    dff = F - F0
    dff /= np.maximum(F0, floors[:, None])
    return dff


def reference_normalise(X: np.ndarray) -> np.ndarray:
    """The NLP4Neuro paper's normalisation: per time frame, across neurons.

    Each frame's population vector is standardised (mean 0, standard deviation 1 across neurons,
    ddof 0) and then min-max scaled to [0, 1]. Min-max scaling is invariant to the preceding
    affine standardisation, so the result equals min-max scaling each frame of `X`; the two
    steps are kept to mirror the reference. Frames with no spread across neurons (all values
    equal) have no defined scaling: they become 0 everywhere (the standardised value) and are
    logged.

    Args:
        X: (n_neurons, n_frames) signal (the reference uses raw suite2p F).

    Returns:
        (n_neurons, n_frames) float32 values in [0, 1].
    """
    X = _as_traces(X, "X")
    # Statistics accumulate in float64; the (n_neurons, n_frames) arithmetic stays float32.
    mean = X.mean(axis=0, dtype=np.float64).astype(np.float32)
    std = X.std(axis=0, dtype=np.float64).astype(np.float32)
    flat = ~(std > 0)
    z = (X - mean) / np.where(flat, np.float32(1), std)
    low = z.min(axis=0)
    span = z.max(axis=0) - low
    flat |= ~(span > 0)
    z -= low
    z /= np.where(flat, np.float32(1), span)
    z[:, flat] = 0
    if flat.any():
        logger.warning(
            "reference_normalise: %d frame(s) with no spread across neurons set to 0",
            int(flat.sum()),
        )
    return z


def drop_flat_neurons(F: np.ndarray, atol: float) -> tuple[np.ndarray, dict[str, int]]:
    """Find neurons that carry no signal: constant traces (all-zero included) or non-finite values.

    A trace is flat when its standard deviation over time (computed in float64) is <= `atol`
    (in the units of F). Suite2p emits all-zero rows for ROIs it could not extract; a constant
    row would make dF/F, z-scoring and the reference normalisation divide by zero.

    Args:
        F: (n_neurons, n_frames) fluorescence.
        atol: largest standard deviation still counted as flat (>= 0).

    Returns:
        keep_mask: (n_neurons,) bool, True for neurons to keep.
        counts: {"n_neurons", "n_kept", "n_all_zero", "n_constant" (non-zero constant),
        "n_non_finite"}; the three drop reasons are disjoint.
    """
    F = _as_traces(F, "F")
    if not atol >= 0:
        raise ValueError(f"atol: expected a non-negative tolerance, found {atol!r}")
    finite = np.isfinite(F).all(axis=1)
    std = np.empty(F.shape[0])
    # Chunks keep the float64 temporaries small for paper-scale fish.
    for begin in range(0, F.shape[0], 2048):
        std[begin : begin + 2048] = F[begin : begin + 2048].std(axis=1, dtype=np.float64)
    flat = finite & ~(std > atol)
    all_zero = flat & ~np.any(F, axis=1)
    keep = finite & ~flat
    counts = {
        "n_neurons": int(F.shape[0]),
        "n_kept": int(keep.sum()),
        "n_all_zero": int(all_zero.sum()),
        "n_constant": int((flat & ~all_zero).sum()),
        "n_non_finite": int((~finite).sum()),
    }
    return keep, counts


@dataclass(frozen=True)
class PreprocessingParams:
    """Every parameter of `preprocess`, built from the validated ``preprocessing`` config section.

    The schema (``config.schema.yaml``) holds each field's default, allowed values and range and
    checks them when the config is validated; build with `from_config`.

    Attributes:
        mode: "dff" (neuropil -> baseline -> dF/F), "reference" (raw F, per-frame
            standardise + min-max, the paper's convention) or "raw" (F after neuropil, if any).
        neuropil_coefficient: r in F - r * Fneu; used only when Fneu exists and mode is not
            "reference"; 0 disables.
        baseline_method: "maximin" (suite2p) or "percentile" (running percentile).
        baseline_window_s: baseline window in seconds (both methods).
        baseline_sigma_s: Gaussian smoothing sigma in seconds before maximin (0 = none).
        baseline_percentile: percentile of the running-percentile baseline.
        baseline_step_frames: spacing of exact evaluations of the running percentile (None =
            1/8 of the window, see `baseline_percentile`).
        f0_floor_fraction: F0 floor as a fraction of the neuron's median F0 (see `f0_floor`).
        flat_atol: standard deviation (units of F) at or below which a neuron counts as flat.
    """

    mode: str
    neuropil_coefficient: float
    baseline_method: str
    baseline_window_s: float
    baseline_sigma_s: float
    baseline_percentile: float
    baseline_step_frames: int | None
    f0_floor_fraction: float
    flat_atol: float

    @classmethod
    def from_config(cls, section: Mapping[str, Any]) -> PreprocessingParams:
        """From the validated ``preprocessing`` section (`nlp4neuro.config.section`)."""
        return config.build(cls, section, "preprocessing")

    def to_dict(self) -> dict[str, Any]:
        """All parameters as a JSON-safe dict (for provenance attributes)."""
        return dataclasses.asdict(self)


def preprocess(
    F: np.ndarray,
    Fneu: np.ndarray | None,
    frame_rate_hz: float,
    params: PreprocessingParams,
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Turn raw suite2p fluorescence into the decoder's neural signal.

    Steps: drop flat / non-finite neurons (judged on raw F); then by `params.mode`:
    "dff": neuropil correction (if `Fneu` is given and the coefficient > 0) -> baseline
    (maximin or percentile) -> dF/F with the F0 floor; "reference": raw F (neuropil ignored)
    -> `reference_normalise`; "raw": F after neuropil correction (if any).

    Args:
        F: (n_neurons, n_frames) raw fluorescence, planes concatenated.
        Fneu: (n_neurons, n_frames) neuropil fluorescence, or None when the data have none.
        frame_rate_hz: imaging (volume) rate in Hz.
        params: preprocessing parameters.

    Returns:
        signal: (n_kept, n_frames) float32, rows = kept neurons in their original order.
        keep_mask: (n_neurons,) bool, True for the kept neurons (index the neuron metadata).
        info: counts from `drop_flat_neurons`, "neuropil_applied" (bool), "n_f0_clipped"
            (neuron-frame samples whose F0 was raised to the floor, dF/F mode) and
            "n_f0_nonpositive_median" (neurons floored at the population level, dF/F mode).
    """
    F, Fneu = _checked_inputs(F, Fneu, frame_rate_hz)
    keep, info = _neurons_with_signal(F, params)
    if params.mode == "reference":  # the paper's convention: raw F, neuropil ignored
        return reference_normalise(F[keep]), keep, info
    signal = _neuropil_corrected(F, Fneu, keep, params, info)
    if params.mode == "raw":
        return signal, keep, info
    if params.mode == "dff":
        return _dff_of(signal, frame_rate_hz, params, info), keep, info
    raise _not_allowed("mode", params.mode)


def _checked_inputs(
    F: np.ndarray, Fneu: np.ndarray | None, frame_rate_hz: float
) -> tuple[np.ndarray, np.ndarray | None]:
    """F and Fneu as float32 (n_neurons, n_frames) arrays of one shape; a positive rate."""
    F = _as_traces(F, "F")
    if Fneu is not None:
        Fneu = _as_traces(Fneu, "Fneu")
        if Fneu.shape != F.shape:
            raise ValueError(f"Fneu: expected the shape of F {F.shape}, found {Fneu.shape}")
    if not frame_rate_hz > 0:
        raise ValueError(f"frame_rate_hz: expected a positive rate in Hz, found {frame_rate_hz!r}")
    return F, Fneu


def _neurons_with_signal(
    F: np.ndarray, params: PreprocessingParams
) -> tuple[np.ndarray, dict[str, Any]]:
    """(n_neurons,) keep mask and the info dict started with the drop counts; logs them."""
    keep, counts = drop_flat_neurons(F, atol=params.flat_atol)
    logger.info(
        "preprocess (%s): %d of %d neurons kept; dropped %d all-zero, %d constant, %d non-finite",
        params.mode, counts["n_kept"], counts["n_neurons"], counts["n_all_zero"],
        counts["n_constant"], counts["n_non_finite"],
    )  # fmt: skip
    if counts["n_kept"] == 0:
        raise ValueError(
            f"F: expected at least one neuron with a varying trace, found none of "
            f"{counts['n_neurons']}"
        )
    return keep, {**counts, "mode": params.mode, "neuropil_applied": False}


def _neuropil_corrected(
    F: np.ndarray,
    Fneu: np.ndarray | None,
    keep: np.ndarray,
    params: PreprocessingParams,
    info: dict[str, Any],
) -> np.ndarray:
    """(n_kept, n_frames) F - r * Fneu of the kept neurons, or their F where there is no Fneu/r."""
    # Boolean indexing copies, so later in-place steps never touch the caller's array.
    if Fneu is None or params.neuropil_coefficient == 0:
        return F[keep]
    info["neuropil_applied"] = True
    logger.info("neuropil correction with r = %g", params.neuropil_coefficient)
    return neuropil_correct(F[keep], Fneu[keep], params.neuropil_coefficient)


def _dff_of(
    signal: np.ndarray, frame_rate_hz: float, params: PreprocessingParams, info: dict[str, Any]
) -> np.ndarray:
    """(n_kept, n_frames) dF/F of `signal` with the per-neuron F0 floor.

    Adds "n_f0_clipped" and "n_f0_nonpositive_median" to `info`.
    """
    F0 = _baseline(signal, frame_rate_hz, params)
    medians = np.median(F0, axis=1)
    floors = _floors_from_medians(medians, params.f0_floor_fraction)
    info["n_f0_clipped"] = int((F0 < floors[:, None]).sum())
    info["n_f0_nonpositive_median"] = int((medians <= 0).sum())
    logger.info(
        "dF/F with %s baseline: F0 floored in %d of %d samples; %d neuron(s) with a "
        "non-positive median baseline", params.baseline_method, info["n_f0_clipped"], F0.size,
        info["n_f0_nonpositive_median"],
    )  # fmt: skip
    return _dff(signal, F0, floors)


def _baseline(F: np.ndarray, frame_rate_hz: float, params: PreprocessingParams) -> np.ndarray:
    """(n_neurons, n_frames) F0 by `params.baseline_method`."""
    if params.baseline_method == "maximin":
        return baseline_maximin(
            F, frame_rate_hz, sigma_s=params.baseline_sigma_s, window_s=params.baseline_window_s
        )
    if params.baseline_method == "percentile":
        return baseline_percentile(
            F, frame_rate_hz, window_s=params.baseline_window_s,
            percentile=params.baseline_percentile, step_frames=params.baseline_step_frames,
        )  # fmt: skip
    raise _not_allowed("baseline_method", params.baseline_method)


def _not_allowed(key: str, value: Any) -> ConfigError:
    """ConfigError for a preprocessing value outside the schema's list (params not validated)."""
    return ConfigError(
        f"preprocessing.{key}", f"one of {config.allowed_values('preprocessing', key)}", value
    )


def preprocess_ingested(ingested: xr.Dataset, params: PreprocessingParams) -> xr.Dataset:
    """`preprocess` applied to an ingested fish (see `nlp4neuro.ingest`).

    Returns a Dataset with ``signal`` (neuron, frame) float32 for the kept neurons only; the
    ``neuron`` coordinate holds their indices in the ingested dataset, so that the neuron
    metadata can be selected with it. attrs: ``signal_kind`` (= params.mode),
    ``preprocessing`` (JSON of params) and ``preprocessing_info`` (JSON of drop counts etc.).
    """
    F = ingested["F"].values
    Fneu = ingested["Fneu"].values if "Fneu" in ingested else None
    signal, keep, info = preprocess(F, Fneu, float(ingested.attrs["frame_rate_hz"]), params)
    return xr.Dataset(
        {"signal": (("neuron", "frame"), signal)},
        coords={
            "neuron": ingested["neuron"].values[keep],
            "frame": ingested["frame"].values,
        },
        attrs={
            "fish": ingested.attrs["fish"],
            "signal_kind": params.mode,
            "preprocessing": json.dumps(params.to_dict(), sort_keys=True),
            "preprocessing_info": json.dumps(info, sort_keys=True, default=json_default),
        },
    )
