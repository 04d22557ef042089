"""From spikes to recorded fluorescence: indicator, dF/F, neuropil and noise.

Spikes are filtered by a GCaMP6s-like double-exponential kernel at the tail sampling step and
sampled at each plane's own acquisition time within the volume. Because the latent time courses
are few, neuronal activity is a weighted sum of a handful of filtered latents, which keeps a
paper-scale fish (10,000 neurons, 2,800 frames) within seconds and about 1-2 GB. Fluorescence is
F = F0 (1 + dF/F) x photobleaching x slow drift, plus neuropil contamination r * Fneu from a local
neuropil trace, plus shot noise whose variance grows with intensity.
"""

from __future__ import annotations

import numpy as np
from scipy import signal, sparse, spatial

from nlp4neuro.errors import ConfigError
from nlp4neuro.simulate.params import SimulationParams

# --------------------------------------------------------------------------------------------------
# Indicator
# --------------------------------------------------------------------------------------------------


def kernel_peak(rise_s: float, decay_s: float) -> tuple[float, float]:
    """Time (s) and height of the maximum of exp(-t/decay) - exp(-t/rise).

    t_peak = rise * decay / (decay - rise) * ln(decay / rise).
    """
    if not 0 < rise_s < decay_s:
        raise ConfigError("simulation.calcium_rise_s", f"in (0, decay_s={decay_s})", rise_s)
    t_peak = rise_s * decay_s / (decay_s - rise_s) * np.log(decay_s / rise_s)
    return float(t_peak), float(np.exp(-t_peak / decay_s) - np.exp(-t_peak / rise_s))


def calcium_kernel(
    dt_s: float, rise_s: float, decay_s: float, duration_s: float | None = None
) -> np.ndarray:
    """Indicator response to one spike sampled every dt_s, normalised to a peak of 1.

    h(t) = (exp(-t/decay) - exp(-t/rise)) / peak, t = 0, dt, 2 dt, ... up to duration_s
    (None: 10 decay constants). Shape (n_steps,), dimensionless (multiply by dF/F per spike).
    """
    if dt_s <= 0:
        raise ConfigError("simulation.dt_s", "a time step > 0 s", dt_s)
    _, peak = kernel_peak(rise_s, decay_s)
    duration_s = 10.0 * decay_s if duration_s is None else duration_s
    t = np.arange(int(np.floor(duration_s / dt_s)) + 1) * dt_s
    return (np.exp(-t / decay_s) - np.exp(-t / rise_s)) / peak


def convolve_calcium(
    events: np.ndarray, dt_s: float, rise_s: float, decay_s: float, axis: int = -1
) -> np.ndarray:
    """Causal convolution of spike counts per time step with `calcium_kernel` (untruncated).

    Equal to sum_n h[n] events[t - n] with h = calcium_kernel(dt_s, rise_s, decay_s); computed
    exactly as the difference of two first-order recursions (scipy.signal.lfilter), so its cost
    does not grow with the kernel length. `events` may have any shape; time runs along `axis`.
    Returns float64 of the same shape (calcium in units of single-spike peaks).
    """
    _, peak = kernel_peak(rise_s, decay_s)
    decay_factor = np.exp(-dt_s / decay_s)
    rise_factor = np.exp(-dt_s / rise_s)
    events = np.asarray(events, dtype=float)
    slow = signal.lfilter([1.0], [1.0, -decay_factor], events, axis=axis)
    fast = signal.lfilter([1.0], [1.0, -rise_factor], events, axis=axis)
    return (slow - fast) / peak


def saturate(dff: np.ndarray, dff_saturation: float) -> np.ndarray:
    """Indicator saturation: dff / (1 + dff / dff_saturation); halves the response at saturation."""
    return dff / (1.0 + np.maximum(dff, 0.0) / dff_saturation)


def _smooth_noise(
    n_rows: int, n_steps: int, sigma_steps: float, rng: np.random.Generator
) -> np.ndarray:
    """Gaussian-smoothed white noise with unit variance, shape (n_rows, n_steps).

    The noise is drawn 4 sigma beyond both ends and cropped, so every sample is a full filter
    window of independent noise and the variance is exactly sum w^2 of the weights, even when the
    recording is shorter than the timescale (then each row is a nearly constant offset).
    """
    pad = int(4.0 * sigma_steps + 0.5)  # Gaussian truncated at 4 sigma
    offsets = np.arange(-pad, pad + 1)
    weights = np.exp(-0.5 * (offsets / sigma_steps) ** 2)
    weights /= weights.sum()
    noise = rng.standard_normal((n_rows, n_steps + 2 * pad)).astype(np.float32)
    # FFT convolution: long timescales make direct filtering cost n_steps x 8 sigma per row.
    smooth = signal.fftconvolve(noise, weights[None, :].astype(np.float32), mode="valid", axes=1)
    return smooth / np.float32(np.sqrt(np.sum(weights**2)))


# --------------------------------------------------------------------------------------------------
# Noiseless dF/F
# --------------------------------------------------------------------------------------------------


def latent_calcium(visual: np.ndarray, motor: np.ndarray, params: SimulationParams) -> np.ndarray:
    """Calcium of a unit-weight neuron per latent drive, (n_visual + n_motor, n_fine), tail grid.

    `visual` and `motor` are the drives on the tail time grid; they are turned into spikes per
    tail step at `visual_firing_rate_hz` and `bout_firing_rate_hz` and filtered by the indicator.
    """
    p = params
    dt = 1.0 / p.tail_rate_hz
    events = np.concatenate(
        [visual * p.visual_firing_rate_hz * dt, motor * p.bout_firing_rate_hz * dt]
    )
    return convolve_calcium(events, dt, p.calcium_rise_s, p.calcium_decay_s)


def noiseless_dff(
    latents: np.ndarray,
    t_fine: np.ndarray,
    weights: np.ndarray,
    plane: np.ndarray,
    is_cell: np.ndarray,
    params: SimulationParams,
    rng: np.random.Generator,
) -> np.ndarray:
    """Noiseless dF/F of every ROI, (n_rois, n_frames) float32; 0 for not-cells.

    Driven calcium (`weights` (n_rois, n_latents) @ `latents` sampled at each plane's acquisition
    times) plus spontaneous burst events, saturated, plus a weak brain-wide fluctuation.
    """
    p = params
    n, n_frames = p.n_neurons, p.n_frames
    spikes_equiv = _driven_calcium(latents, t_fine, weights, plane, p)
    spikes_equiv += _spontaneous_calcium(n, p, rng)
    global_trace = _smooth_noise(1, n_frames, p.global_timescale_s * p.frame_rate_hz, rng)
    global_load = p.global_fluctuation_dff * rng.uniform(0.0, 2.0, size=(n, 1))
    dff = saturate(p.dff_per_spike * spikes_equiv, p.dff_saturation) + global_load * global_trace
    dff = dff.astype(np.float32)
    dff[~is_cell] = 0.0
    return dff


def _driven_calcium(
    latents: np.ndarray,
    t_fine: np.ndarray,
    weights: np.ndarray,
    plane: np.ndarray,
    params: SimulationParams,
) -> np.ndarray:
    """Weighted latent calcium per ROI, (n_rois, n_frames) float32, at its plane's sample times."""
    p = params
    n_frames = p.n_frames
    calcium = np.zeros((p.n_neurons, n_frames), dtype=np.float32)
    for k in range(p.n_planes):
        members = plane == k
        t_plane = np.arange(n_frames) / p.frame_rate_hz + k / (p.n_planes * p.frame_rate_hz)
        sampled = np.stack([np.interp(t_plane, t_fine, trace) for trace in latents])
        calcium[members] = weights[members] @ sampled
    return calcium


def _spontaneous_calcium(
    n_rois: int, params: SimulationParams, rng: np.random.Generator
) -> np.ndarray:
    """Calcium of spontaneous burst events, (n_rois, n_frames) float32, at frame resolution.

    Events per frame ~ Poisson(spontaneous_event_rate_hz / frame_rate_hz); spikes of a frame with
    c events ~ Gamma(c, spontaneous_event_spikes) (0 when c is 0).
    """
    p = params
    counts = rng.poisson(p.spontaneous_event_rate_hz / p.frame_rate_hz, size=(n_rois, p.n_frames))
    spikes = rng.gamma(counts.astype(float), p.spontaneous_event_spikes)
    return convolve_calcium(
        spikes, 1.0 / p.frame_rate_hz, p.calcium_rise_s, p.calcium_decay_s
    ).astype(np.float32)


def neuropil_dff(
    yx_um: np.ndarray,
    plane: np.ndarray,
    is_cell: np.ndarray,
    dff: np.ndarray,
    params: SimulationParams,
) -> np.ndarray:
    """Neuropil dF/F of every ROI, (n_rois, n_frames) float32: a blurred, diluted local mean.

    `yx_um` (n_rois, 2) positions in micrometres; only cells of the same plane contribute.
    """
    out = np.zeros_like(dff)
    for k in range(params.n_planes):
        members = np.flatnonzero(plane == k)
        out[members] = params.neuropil_dff_gain * _local_neuropil(
            yx_um[members], is_cell[members], dff[members], params.neuropil_radius_um
        )
    return out


def _local_neuropil(
    positions_um: np.ndarray, is_cell: np.ndarray, dff: np.ndarray, radius_um: float
) -> np.ndarray:
    """Gaussian-weighted mean dF/F of the other cells within 3 radii, per ROI, (n_rois, T) float32.

    `positions_um` (n_rois, 2) for one plane; ROIs with no cell nearby get 0.
    """
    n = positions_um.shape[0]
    cells = np.flatnonzero(is_cell)
    out = np.zeros((n, dff.shape[1]), dtype=np.float32)
    if cells.size == 0:
        return out
    pairs = spatial.cKDTree(positions_um).sparse_distance_matrix(
        spatial.cKDTree(positions_um[cells]), 3.0 * radius_um, output_type="ndarray"
    )
    rows, cols, dist = pairs["i"], pairs["j"], pairs["v"]
    not_self = rows != cells[cols]
    rows, cols, dist = rows[not_self], cols[not_self], dist[not_self]
    weights = sparse.csr_matrix(
        (np.exp(-(dist**2) / (2 * radius_um**2)), (rows, cols)), shape=(n, cells.size)
    )
    total = np.asarray(weights.sum(axis=1)).ravel()
    local = weights @ dff[cells]
    has = total > 0
    out[has] = local[has] / total[has, None]
    return out


# --------------------------------------------------------------------------------------------------
# Fluorescence
# --------------------------------------------------------------------------------------------------


def clean_fluorescence(
    dff: np.ndarray,
    neuropil: np.ndarray,
    plane: np.ndarray,
    is_cell: np.ndarray,
    params: SimulationParams,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Noiseless F and Fneu (a.u., (n_rois, n_frames) float32) and each ROI's true r, (n_rois,).

    F = F0 (1 + dF/F) x slow + r x Fneu, Fneu = Fneu0 (1 + neuropil dF/F) x slow, where slow is
    photobleaching times drift (`_slow_modulation`) and r ~ N(neuropil_coefficient, sd) >= 0.
    """
    p = params
    n = p.n_neurons
    f0 = p.baseline_f * np.exp(p.baseline_log_sd * rng.standard_normal((n, 1)))
    f0[~is_cell] *= 0.5  # neuropil blobs are dimmer than nuclei
    fneu0 = p.neuropil_f * np.exp(0.2 * rng.standard_normal((n, 1)))
    slow = _slow_modulation(plane, p, rng)
    r = np.clip(
        p.neuropil_coefficient + p.neuropil_coefficient_sd * rng.standard_normal(n), 0.0, None
    )
    f_cell = (f0 * (1.0 + dff) * slow).astype(np.float32)
    fneu_clean = (fneu0 * (1.0 + neuropil) * slow).astype(np.float32)
    del slow
    f_clean = f_cell + r[:, None].astype(np.float32) * fneu_clean
    return f_clean, fneu_clean, r


def _slow_modulation(
    plane: np.ndarray, params: SimulationParams, rng: np.random.Generator
) -> np.ndarray:
    """Photobleaching x slow multiplicative drift per ROI, (n_rois, n_frames) float32.

    Each ROI loses bleach_fraction x U(0.5, 1.5) (at most 0.95) of its fluorescence with a time
    constant of bleach_time_s x U(0.7, 1.3), sampled at its plane's acquisition times.
    """
    p = params
    n, n_frames = p.n_neurons, p.n_frames
    t_frames = (np.arange(n_frames)[None, :] + plane[:, None] / p.n_planes) / p.frame_rate_hz
    bleach_amount = np.clip(p.bleach_fraction * rng.uniform(0.5, 1.5, (n, 1)), 0.0, 0.95)
    bleach_tau = p.bleach_time_s * rng.uniform(0.7, 1.3, (n, 1))
    bleach = (1.0 - bleach_amount + bleach_amount * np.exp(-t_frames / bleach_tau)).astype(
        np.float32
    )
    drift = 1.0 + p.drift_amplitude * _smooth_noise(
        n, n_frames, p.drift_timescale_s * p.frame_rate_hz, rng
    )
    return bleach * drift


def add_noise(
    f_clean: np.ndarray, fneu_clean: np.ndarray, params: SimulationParams, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Recorded F and Fneu (float32): shot noise (variance shot_noise_gain x intensity) and read
    noise on F; shot noise on Fneu reduced by averaging over `neuropil_pixels` pixels."""
    p = params
    f_noisy = f_clean + (
        np.sqrt(p.shot_noise_gain * np.clip(f_clean, 0.0, None))
        * rng.standard_normal(f_clean.shape, dtype=np.float32)
        + p.read_noise_sd * rng.standard_normal(f_clean.shape, dtype=np.float32)
    )
    fneu_noisy = fneu_clean + np.sqrt(
        p.shot_noise_gain * np.clip(fneu_clean, 0.0, None) / p.neuropil_pixels
    ) * rng.standard_normal(fneu_clean.shape, dtype=np.float32)
    return f_noisy, fneu_noisy
