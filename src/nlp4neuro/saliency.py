"""Which neurons drive a trained decoder: captum attributions, ablations and comparators.

Every torch decoder maps a window of normalised neural activity to tail angles,
``forward(x: (batch, window, n_neurons) float32) -> (batch, window, n_outputs)`` (radians).
The quantity explained for one window is the SUM over the window's frames of one output:

- per angle: target ``theta_0k`` = sum_t y[t, k] (one target per tail segment);
- summed tail: target ``summed`` = sum_t sum_k y[t, k] (the reference's "summed outputs").

Attributions (`attribute`) are computed with captum's IntegratedGradients, Saliency or
InputXGradient on a wrapper module that performs this reduction, window batch by window batch so
that a paper-scale fish (12,499 neurons) fits in memory. The reference computed |gradient x input|
only; Integrated Gradients is the default here because it satisfies completeness (the
attributions of a window sum to F(x) - F(baseline)), which `attribute` checks and reports.

Baselines: inputs are z-scored per neuron with TRAINING statistics
(`nlp4neuro.dataset.fit_input_normaliser`), so an all-zero normalised input is every neuron at
its training mean. "zeros" and "training_mean" therefore coincide for z-scored inputs;
"training_mean" with an explicit `baseline_values` vector is for inputs that are not z-scored
(reference mode: per-frame population normalisation), where the training mean is not 0. The
same convention (masked = set to the baseline, by default 0 = training mean) is used by
`region_ablation` and `deletion_curve`.

Validation tools: `region_ablation` (captum FeatureAblation with one feature group per region),
`deletion_curve` (RMSE when the top-k vs k random neurons are masked: the reference found
removing the top 50 no worse than 50 random ones) and `correlation_motor_map` (the classic
|Pearson r| with the tail). Scores comparing maps (`map_similarity`, `ground_truth_auc` against
the planted drivers of simulated fish) live in `nlp4neuro.metrics`.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import torch
import xarray as xr
from captum.attr import FeatureAblation, InputXGradient, IntegratedGradients, Saliency
from torch import nn

from nlp4neuro.config import build
from nlp4neuro.conventions import segment_names as default_segment_names
from nlp4neuro.errors import ConfigError
from nlp4neuro.metrics import SUMMED, rmse_pooled
from nlp4neuro.problem import average_window_predictions, segment_starts
from nlp4neuro.provenance import versions_json

logger = logging.getLogger(__name__)

__all__ = [
    "SUMMED",
    "UNLABELLED",
    "SaliencyParams",
    "attribute",
    "correlation_motor_map",
    "deletion_curve",
    "ig_convergence",
    "region_ablation",
    "saliency_starts",
    "window_attributions",
]

UNLABELLED = "unlabelled"
"""Region name used in tables for neurons whose region label is the empty string."""

_NEURON_COORDS = ("neuron", "plane", "roi", "x_um", "y_um", "z_um", "region")


@dataclass(frozen=True)
class SaliencyParams:
    """How attributions are computed: config section ``saliency`` (defaults in the schema).

    Build it with `SaliencyParams.from_config(config["saliency"])` from a validated section
    (e.g. ``nlp4neuro.config.section("saliency", n_steps=8)``); the allowed values of `method`,
    `baseline`, `ig_method` and `target` are the schema's.

    Attributes:
        method: "integrated_gradients" (completeness holds), "saliency" (plain gradient) or
            "input_x_gradient" (gradient x input, the reference's choice).
        baseline: "zeros" (all-zero normalised input = training mean for z-scored inputs) or
            "training_mean" (a per-neuron vector passed as `baseline_values`; needed only for
            inputs that are not z-scored). Used by Integrated Gradients only: Saliency and
            InputXGradient have no baseline.
        n_steps: Integrated Gradients integration steps to start with (see `attribute`).
        ig_tolerance: largest relative completeness error of a converged IG map.
        max_n_steps: cap on the IG steps; n_steps doubles up to it while the error is too big.
        ig_method: captum's integral approximation ("gausslegendre", "riemann_trapezoid", ...).
        internal_batch_size: IG examples (steps x windows) per forward pass; bounds memory.
        batch_windows: windows attributed together (the IG batch is n_steps x batch_windows).
        target: "summed" (only the summed tail) or "each" (every angle and the summed tail).
        absolute: keep |attribution| in the per-frame map (True) or the signed value (False).
            The global per-neuron `importance` is always a mean of |attribution|.
        splits: dataset splits whose windows are attributed (see `saliency_starts`).
        window_stride: frames between window starts; None = the window length
            (non-overlapping windows, bounding the cost at one attribution per frame).
        max_windows: keep at most this many windows, evenly spaced over the selected ones.
        keep_frames: store the per-frame map of the summed target (time, neuron). For fish 9's
            test split that is 610 x 12,499 float32 = 30 MB; per-frame maps of every angle
            (7x that) are not kept.
    """

    method: str
    baseline: str
    n_steps: int
    ig_tolerance: float
    max_n_steps: int
    ig_method: str
    internal_batch_size: int | None
    batch_windows: int
    target: str
    absolute: bool
    splits: tuple[str, ...]
    window_stride: int | None
    max_windows: int | None
    keep_frames: bool

    def __post_init__(self) -> None:
        # YAML gives lists; a frozen dataclass must hold hashable tuples.
        object.__setattr__(self, "splits", tuple(self.splits))
        if self.max_n_steps < self.n_steps:
            raise ConfigError(
                "saliency.max_n_steps",
                f"at least saliency.n_steps ({self.n_steps})",
                self.max_n_steps,
            )

    @classmethod
    def from_config(cls, saliency: Mapping[str, Any]) -> SaliencyParams:
        """From the validated ``saliency`` section; keys that are not fields are ignored."""
        return build(cls, saliency, "saliency")


def _positive_int(value: Any) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool) and value >= 1


# ----------------------------------------------------------------------------------------------
# Inputs


def saliency_starts(
    segments: Mapping[str, tuple[slice, ...]], window: int, params: SaliencyParams
) -> np.ndarray:
    """Window starts to attribute: windows inside each segment of the splits `params.splits`.

    Args:
        segments: {split: tuple of slices}, `nlp4neuro.problem.DecodingProblem.segments`.
        window: window length in frames.
        params: uses `splits`, `window_stride` (None = `window`) and `max_windows`.

    Returns:
        (n_windows,) int64 sorted starts. With `max_windows`, an evenly spaced subset (first
        and last window kept), so the selection spans the whole recording deterministically.
    """
    missing = [name for name in params.splits if name not in segments]
    if missing:
        raise ConfigError("saliency.splits", f"split names among {sorted(segments)}", missing)
    stride = params.window_stride or window
    starts = np.concatenate(
        [segment_starts(segments[name], window, stride) for name in params.splits]
    ).astype(np.int64)
    starts = np.unique(starts)
    if starts.size == 0:
        raise ConfigError(
            "saliency.splits", f"splits long enough for {window}-frame windows", params.splits
        )
    if params.max_windows is not None and starts.size > params.max_windows:
        keep = np.unique(np.round(np.linspace(0, starts.size - 1, params.max_windows)))
        starts = starts[keep.astype(np.int64)]
    return starts


def _as_tensor(x: Any) -> torch.Tensor:
    """(T, N) float32 CPU tensor from a tensor, numpy array or DataArray."""
    if isinstance(x, xr.DataArray):
        x = x.transpose("time", "neuron").values if set(x.dims) == {"time", "neuron"} else x.values
    tensor = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x)
    tensor = tensor.detach().to("cpu", torch.float32)
    if tensor.ndim != 2:
        raise ValueError(f"x: expected shape (T, n_neurons), found {tuple(tensor.shape)}")
    if not torch.isfinite(tensor).all():
        raise ValueError("x: expected finite values, found NaN or inf")
    return tensor


def _check_starts(starts: Any, window: int, n_frames: int) -> np.ndarray:
    starts = np.asarray(starts, dtype=np.int64).ravel()
    if not _positive_int(window):
        raise ValueError(f"window: expected an integer >= 1, found {window!r}")
    if starts.size == 0:
        raise ValueError("starts: expected at least one window start, found none")
    if starts.min() < 0 or starts.max() + window > n_frames:
        raise ValueError(
            f"starts: expected windows inside [0, {n_frames}) frames, found starts in "
            f"[{starts.min()}, {starts.max()}] with window {window}"
        )
    return starts


def _baseline_vector(
    baseline_values: Any, n_neurons: int, *, required: bool = False
) -> torch.Tensor | None:
    """(n_neurons,) float32 baseline, or None meaning zeros."""
    if baseline_values is None:
        if required:
            raise ConfigError(
                "saliency.baseline",
                "'zeros', or 'training_mean' together with a per-neuron baseline_values vector",
                "training_mean without baseline_values",
            )
        return None
    vector = torch.as_tensor(np.asarray(baseline_values, dtype=np.float32))
    if vector.shape != (n_neurons,):
        raise ValueError(
            f"baseline_values: expected shape ({n_neurons},), found {tuple(vector.shape)}"
        )
    return vector


def _params_baseline(
    params: SaliencyParams, baseline_values: Any, n_neurons: int
) -> torch.Tensor | None:
    """The (n_neurons,) baseline `params.baseline` asks for, or None meaning zeros."""
    training_mean = params.baseline == "training_mean"
    return _baseline_vector(
        baseline_values if training_mean else None, n_neurons, required=training_mean
    )


def _baseline_batch(baseline: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
    """(1, window, N) baseline input for a batch `like` of shape (B, window, N), on its device."""
    if baseline is None:
        return torch.zeros_like(like[:1])
    return baseline.to(like.device).expand(1, like.shape[1], like.shape[2]).contiguous()


def _tail(y_true: Any, n_frames: int, dtype: type) -> np.ndarray:
    """(T, K) true tail angles (radians) as `dtype`, checked against the T input frames."""
    y = np.asarray(y_true, dtype=dtype)
    if y.ndim != 2 or y.shape[0] != n_frames:
        raise ValueError(f"y_true: expected shape ({n_frames}, K), found {y.shape}")
    return y


def _windows(x: torch.Tensor, starts: np.ndarray, window: int) -> torch.Tensor:
    index = torch.as_tensor(starts, dtype=torch.long)[:, None] + torch.arange(window)
    return x[index]


def _no_cudnn(device: torch.device) -> contextlib.AbstractContextManager:
    # cuDNN RNNs refuse backward in eval mode; attributions need eval mode (no dropout).
    if device.type == "cuda":
        return torch.backends.cudnn.flags(enabled=False)
    return contextlib.nullcontext()


@contextlib.contextmanager
def _evaluating(model: nn.Module) -> Iterator[None]:
    """Eval mode (no dropout) inside the block; the model's own mode is restored afterwards."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def _captum_method(name: str, wrapper: nn.Module) -> Any:
    return {
        "integrated_gradients": IntegratedGradients,
        "saliency": Saliency,
        "input_x_gradient": InputXGradient,
    }[name](wrapper)


def _attribute_batch(
    method: Any, xb: torch.Tensor, base: torch.Tensor, target: int, params: SaliencyParams
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Signed (B, window, N) float32 CPU attributions of one target, and IG's deltas (B,)."""
    if isinstance(method, IntegratedGradients):
        attr, delta = method.attribute(
            xb,
            baselines=base,
            target=target,
            n_steps=params.n_steps,
            method=params.ig_method,
            internal_batch_size=params.internal_batch_size,
            return_convergence_delta=True,
        )
        return attr.detach().float().cpu(), delta.detach().double().cpu()
    # gradient methods need an input that requires grad (captum would set it and warn)
    xb = xb.detach().requires_grad_()
    if isinstance(method, Saliency):
        return method.attribute(xb, target=target, abs=False).detach().float().cpu(), None
    return method.attribute(xb, target=target).detach().float().cpu(), None


class _WindowTargets(nn.Module):
    """(batch, window, N) -> (batch, K + 1): per-angle sums over frames, then the summed tail."""

    def __init__(self, model: nn.Module, per_frame_mean: bool = False) -> None:
        super().__init__()
        self.model = model
        self.per_frame_mean = per_frame_mean

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(x).float()
        if out.ndim != 3 or out.shape[:2] != x.shape[:2]:
            raise ValueError(
                f"model output: expected (batch, window, n_outputs) = ({x.shape[0]}, "
                f"{x.shape[1]}, K), found {tuple(out.shape)}"
            )
        per_angle = out.mean(dim=1) if self.per_frame_mean else out.sum(dim=1)
        return torch.cat([per_angle, per_angle.sum(dim=1, keepdim=True)], dim=1)


def _targets(
    wrapper: _WindowTargets,
    first_window: torch.Tensor,
    segment_names: Sequence[str] | None,
    mode: str,
) -> dict[str, int]:
    """{target name: output index of `wrapper`}: the K angles then summed, or summed only.

    `first_window` (1, window, N) is run once to count the K outputs; `segment_names` default
    to theta_00..theta_{K-1}; `mode` is ``SaliencyParams.target``.
    """
    with torch.no_grad():
        n_outputs = wrapper(first_window).shape[1] - 1
    names = list(segment_names) if segment_names is not None else default_segment_names(n_outputs)
    if len(names) != n_outputs:
        raise ValueError(f"segment_names: expected {n_outputs} names, found {len(names)}")
    if mode == "each":
        return dict(zip([*names, SUMMED], range(n_outputs + 1), strict=True))
    return {SUMMED: n_outputs}


def _neuron_coords(source: Any, n_neurons: int) -> dict[str, Any]:
    """Neuron coordinates (plane, x_um, ...) of a Dataset/DataArray, checked against N."""
    if source is None:
        return {"neuron": np.arange(n_neurons, dtype=np.int64)}
    coords = {}
    for name in _NEURON_COORDS:
        if name in source.coords and source[name].dims == ("neuron",):
            values = source[name].values
            if values.shape != (n_neurons,):
                raise ValueError(
                    f"neuron_coords[{name!r}]: expected {n_neurons} neurons, found {values.shape}"
                )
            coords[name] = ("neuron", values)
    coords.setdefault("neuron", np.arange(n_neurons, dtype=np.int64))
    return coords


def _time_coords(source: Any, frame_index: np.ndarray, n_frames: int) -> dict[str, Any]:
    coords: dict[str, Any] = {"frame_index": ("time", frame_index)}
    if source is None:
        return coords
    for name in ("time", "frame", "stimulus", "split"):
        if name in source.coords and source[name].dims == ("time",):
            values = source[name].values
            if values.shape == (n_frames,):
                coords[name] = ("time", values[frame_index])
    return coords


# ----------------------------------------------------------------------------------------------
# Attributions


class _Frames(NamedTuple):
    """Which frames the windows cover and how much each weighs in the global importance."""

    index: np.ndarray  # (n_covered,) int64 covered positions along the time axis, sorted
    position: np.ndarray  # (T,) int64 row of each frame in the per-frame map; -1 if uncovered
    weight: np.ndarray  # (T,) float64 1 / (windows covering the frame); 0 if uncovered


def _frame_weights(starts: np.ndarray, window: int, n_frames: int) -> _Frames:
    """Every covered frame weighs 1 in total, whatever the number of windows covering it."""
    coverage = np.bincount((starts[:, None] + np.arange(window)).ravel(), minlength=n_frames)
    index = np.flatnonzero(coverage)
    position = np.full(n_frames, -1, dtype=np.int64)
    position[index] = np.arange(index.size)
    weight = np.zeros(n_frames, dtype=np.float64)
    weight[index] = 1.0 / coverage[index]
    return _Frames(index, position, weight)


class _Windows(NamedTuple):
    """The windows of one `attribute` call."""

    x: torch.Tensor  # (T, N) float32 CPU inputs
    starts: np.ndarray  # (n_windows,) int64 first frame of each window
    window: int  # frames per window
    baseline: torch.Tensor | None  # (N,) value of a neuron at baseline; None = zeros
    device: torch.device  # where the model lives


class _Batch(NamedTuple):
    """One batch of windows on the model's device."""

    x: torch.Tensor  # (B, window, N) inputs
    base: torch.Tensor  # (1, window, N) baseline input
    weight: torch.Tensor  # (B, window) float64 frame weights (see `_Frames`)
    rows: np.ndarray  # (B,) per-frame-map row of each window's first frame


@dataclass
class _Sums:
    """Running sums of one `attribute` call over its window batches."""

    importance: np.ndarray  # (n_targets, N) float64 frame-weighted |attribution|
    frames: np.ndarray | None  # (n_covered, N) float32 per-frame map of the summed target
    delta: np.ndarray  # (n_targets,) float64 |IG convergence delta| over windows
    change: np.ndarray  # (n_targets,) float64 |F(x) - F(baseline)| over windows

    @classmethod
    def zeros(cls, n_targets: int, n_neurons: int, n_covered: int, keep_frames: bool) -> _Sums:
        frames = np.zeros((n_covered, n_neurons), np.float32) if keep_frames else None
        return cls(
            np.zeros((n_targets, n_neurons)), frames, np.zeros(n_targets), np.zeros(n_targets)
        )


def attribute(
    model: nn.Module,
    x: Any,
    starts: Any,
    window: int,
    params: SaliencyParams,
    device: str | torch.device = "cpu",
    *,
    neuron_coords: xr.Dataset | xr.DataArray | None = None,
    baseline_values: np.ndarray | None = None,
    segment_names: Sequence[str] | None = None,
) -> xr.Dataset:
    """Attribute each window's summed output(s) to the input neurons.

    Args:
        model: torch decoder, forward (batch, window, N) -> (batch, window, K).
        x: (T, N) float32 normalised inputs (numpy, tensor, or a DataArray (time, neuron) whose
            coords are used when `neuron_coords` is None).
        starts: (n_windows,) first frame of each window (positions along T).
        window: window length in frames.
        params: method, baseline, targets, batching (see `SaliencyParams`).
        device: where the model lives; windows are moved there batch by batch.
        neuron_coords: dataset (e.g. the fish's netCDF) whose neuron coords (plane, roi, x_um,
            y_um, z_um, region) and time coords (time, frame, stimulus, split) are copied.
        baseline_values: (N,) baseline for ``params.baseline == "training_mean"``.
        segment_names: names of the K outputs; default theta_00..theta_{K-1}.

    Returns:
        xr.Dataset, attributions in output units (rad summed over a window's frames) per neuron:
        - ``importance`` (target, neuron) float32: mean over covered frames of |attribution|
          (each window's |attribution| is averaged over the windows covering a frame first, so
          every frame weighs equally). Targets are the K angles and ``summed`` for
          ``target="each"``, only ``summed`` otherwise.
        - ``frame_importance`` (time, neuron) float32, summed target only (if `keep_frames`):
          attribution of each covered frame (|.| if `absolute`, else signed), averaged over the
          windows covering the frame; coord ``frame_index`` = position along x's time axis.
        - Integrated Gradients only: ``convergence_delta`` (target), the mean over windows of
          |sum of attributions - (F(x) - F(baseline))|, ``output_change`` (target), the mean
          |F(x) - F(baseline)|, and attr ``convergence_delta_relative`` (their ratio, all targets).
          `n_steps` doubles until that ratio is <= `ig_tolerance` or `max_n_steps` is reached;
          attrs n_steps_used, ig_tolerance, max_n_steps and ig_steps_tried (JSON [[steps,
          ratio], ...]) record the search, `ig_convergence` reads them.
        - attrs: method, baseline, window_frames, n_windows, params (JSON), versions (JSON).
    """
    device = torch.device(device)
    source = x if neuron_coords is None and isinstance(x, xr.DataArray) else neuron_coords
    x_t = _as_tensor(x)
    n_frames, n_neurons = x_t.shape
    starts = _check_starts(starts, window, n_frames)
    baseline = _params_baseline(params, baseline_values, n_neurons)
    frames = _frame_weights(starts, window, n_frames)
    with _evaluating(model):
        wrapper = _WindowTargets(model).to(device)
        first = _windows(x_t, starts[:1], window).to(device)
        targets = _targets(wrapper, first, segment_names, params.target)
        windows = _Windows(x_t, starts, window, baseline, device)
        sums, tried = _converged_sums(wrapper, windows, frames, targets, params)
    coords = {"target": list(targets), **_neuron_coords(source, n_neurons)}
    if params.keep_frames:
        coords.update(_time_coords(source, frames.index, n_frames))
    return _importance_dataset(sums, coords, frames, params, (window, starts.size), tried)


def _relative_delta(sums: _Sums) -> float:
    """IG's completeness error over all windows and targets relative to the output change;
    NaN when the output never changes from the baseline (the ratio is undefined)."""
    total_change = sums.change.sum()
    return float(sums.delta.sum() / total_change) if total_change > 0 else float("nan")


def _converged_sums(
    wrapper: _WindowTargets,
    windows: _Windows,
    frames: _Frames,
    targets: Mapping[str, int],
    params: SaliencyParams,
) -> tuple[_Sums, list[tuple[int, float]]]:
    """Attribute every window; for IG, again with doubled steps while the completeness error
    exceeds `params.ig_tolerance`, up to `params.max_n_steps`.

    Returns the sums of the last pass and the (n_steps, relative error) of every IG pass (empty
    for the gradient methods, which have no completeness check). An undefined error (no output
    change) stops the search: more steps cannot define it.
    """
    n_steps, tried = params.n_steps, []
    while True:
        sums = _Sums.zeros(len(targets), windows.x.shape[1], frames.index.size, params.keep_frames)
        _attribute_all(wrapper, windows, frames, targets, replace(params, n_steps=n_steps), sums)
        if params.method != "integrated_gradients":
            return sums, tried
        relative = _relative_delta(sums)
        tried.append((n_steps, relative))
        if not relative > params.ig_tolerance or n_steps >= params.max_n_steps:
            return sums, tried
        logger.info(
            "integrated gradients: completeness error %.3g > tolerance %.3g at %d steps; "
            "retrying with %d",
            relative,
            params.ig_tolerance,
            n_steps,
            min(2 * n_steps, params.max_n_steps),
        )
        n_steps = min(2 * n_steps, params.max_n_steps)


def _search_attrs(tried: Sequence[tuple[int, float]], params: SaliencyParams) -> dict[str, Any]:
    """Attrs recording IG's step search (netCDF-safe: numbers and a JSON string)."""
    return {
        "n_steps_used": int(tried[-1][0]),
        "ig_tolerance": float(params.ig_tolerance),
        "max_n_steps": int(params.max_n_steps),
        "ig_steps_tried": json.dumps([[int(n), float(d)] for n, d in tried]),
    }


def ig_convergence(importance: xr.Dataset) -> dict[str, Any]:
    """Did an `attribute` map pass Integrated Gradients' completeness check, and if not, why.

    Returns:
        {"converged": True/False, or None for methods without a completeness check (saliency,
        input_x_gradient) and for an undefined error (the output never left the baseline);
        "excluded_reason": why the map must not be scored (None unless converged is False);
        "note": why converged is None (None otherwise);
        "convergence_delta_relative", "ig_tolerance", "n_steps_used" and "steps_tried"
        ([[steps, relative error], ...]) where IG ran, else None}.
    """
    attrs = importance.attrs
    if "ig_steps_tried" not in attrs:
        return {
            **dict.fromkeys(("converged", "excluded_reason", "convergence_delta_relative",
                             "ig_tolerance", "n_steps_used", "steps_tried")),
            "note": f"no completeness check: method {attrs.get('method')}",
        }  # fmt: skip
    delta, tolerance = float(attrs["convergence_delta_relative"]), float(attrs["ig_tolerance"])
    converged = bool(delta <= tolerance) if np.isfinite(delta) else None
    reason = note = None
    if converged is False:
        reason = (
            f"completeness error {delta:.3g} > tolerance {tolerance:.3g} at the cap of "
            f"{int(attrs['max_n_steps'])} steps"
        )
    elif converged is None:
        note = "completeness error undefined: the output equals the baseline's in every window"
    return {
        "converged": converged,
        "excluded_reason": reason,
        "note": note,
        "convergence_delta_relative": delta,
        "ig_tolerance": tolerance,
        "n_steps_used": int(attrs["n_steps_used"]),
        "steps_tried": json.loads(attrs["ig_steps_tried"]),
    }


def _attribute_all(
    wrapper: _WindowTargets,
    windows: _Windows,
    frames: _Frames,
    targets: Mapping[str, int],
    params: SaliencyParams,
    sums: _Sums,
) -> None:
    """Attribute every window into `sums`, `params.batch_windows` at a time; log progress."""
    x_t, starts, window, baseline, device = windows
    method = _captum_method(params.method, wrapper)
    n_batches = -(-starts.size // params.batch_windows)
    log_every = max(1, n_batches // 10)
    logger.info(
        "attributing %d windows of %d frames x %d neurons (%s, %d target(s), %d batch(es))",
        starts.size,
        window,
        x_t.shape[1],
        params.method,
        len(targets),
        n_batches,
    )
    with _no_cudnn(device):
        for b in range(n_batches):
            batch_starts = starts[b * params.batch_windows : (b + 1) * params.batch_windows]
            xb = _windows(x_t, batch_starts, window).to(device)
            w = torch.as_tensor(
                frames.weight[batch_starts[:, None] + np.arange(window)], dtype=torch.float64
            )
            batch = _Batch(xb, _baseline_batch(baseline, xb), w, frames.position[batch_starts])
            _attribute_batch_into(sums, method, wrapper, batch, targets, params)
            if (b + 1) % log_every == 0 or b + 1 == n_batches:
                logger.info("saliency: %d/%d batches", b + 1, n_batches)


def _attribute_batch_into(
    sums: _Sums,
    method: Any,
    wrapper: _WindowTargets,
    batch: _Batch,
    targets: Mapping[str, int],
    params: SaliencyParams,
) -> None:
    """Add one batch's attributions of every target to `sums`."""
    xb, base, w, rows = batch
    window = xb.shape[1]
    for j, (name, target) in enumerate(targets.items()):
        attr, delta = _attribute_batch(method, xb, base, target, params)
        if delta is not None:
            with torch.no_grad():
                change = wrapper(xb)[:, target] - wrapper(base)[:, target]
            sums.delta[j] += delta.abs().sum().item()
            sums.change[j] += change.abs().sum().item()
        attr = attr.to(torch.float64)
        sums.importance[j] += (attr.abs() * w[..., None]).sum(dim=(0, 1)).numpy()
        if sums.frames is not None and name == SUMMED:
            values = attr.abs() if params.absolute else attr
            values = (values * w[..., None]).numpy().astype(np.float32)
            for i, row in enumerate(rows):
                sums.frames[row : row + window] += values[i]


def _importance_dataset(
    sums: _Sums,
    coords: dict[str, Any],
    frames: _Frames,
    params: SaliencyParams,
    shape: tuple[int, int],
    tried: Sequence[tuple[int, float]],
) -> xr.Dataset:
    """`attribute`'s dataset from its sums; `coords` are the target, neuron and time coords,
    `shape` (window frames, windows), `tried` the IG step search (`_converged_sums`)."""
    window, n_windows = shape
    importance = (sums.importance / frames.index.size).astype(np.float32)
    data_vars: dict[str, Any] = {"importance": (("target", "neuron"), importance)}
    attrs: dict[str, Any] = {
        "method": params.method,
        "baseline": params.baseline,
        "window_frames": int(window),
        "n_windows": int(n_windows),
        "n_frames_covered": int(frames.index.size),
        "params": json.dumps(asdict(params), sort_keys=True),
        "units": "output units (rad summed over the window's frames) attributed per neuron",
        "versions": versions_json(),
    }
    if sums.frames is not None:
        data_vars["frame_importance"] = (("time", "neuron"), sums.frames)
    if params.method == "integrated_gradients":
        data_vars["convergence_delta"] = ("target", (sums.delta / n_windows).astype(np.float32))
        data_vars["output_change"] = ("target", (sums.change / n_windows).astype(np.float32))
        relative = _relative_delta(sums)
        attrs["convergence_delta_relative"] = relative
        logger.info(
            "integrated gradients: mean |delta| / mean |F(x) - F(baseline)| = %.3g", relative
        )
        attrs.update(_search_attrs(tried, params))
    return xr.Dataset(data_vars, coords=coords, attrs=attrs)


def window_attributions(
    model: nn.Module,
    windows: Any,
    params: SaliencyParams,
    device: str | torch.device = "cpu",
    *,
    baseline_values: np.ndarray | None = None,
    segment_names: Sequence[str] | None = None,
) -> dict[str, np.ndarray]:
    """Signed attributions of a few windows, every frame kept (for inspection and tests).

    Args:
        model: torch decoder, forward (batch, window, N) -> (batch, window, K).
        windows: (B, window, N) normalised inputs.
        params: method, baseline and target mode (`batch_windows` is ignored: one batch).
        device: where the model lives.
        baseline_values: (N,) baseline for ``params.baseline == "training_mean"``.
        segment_names: names of the K outputs; default theta_00..theta_{K-1}.

    Returns:
        {target name: (B, window, N) float32 signed attribution} for the targets of
        `params.target` (the K angles then "summed", or "summed" only).
    """
    device = torch.device(device)
    xb = torch.as_tensor(np.asarray(windows, dtype=np.float32)).to(device)
    if xb.ndim != 3:
        raise ValueError(f"windows: expected shape (B, window, N), found {tuple(xb.shape)}")
    base = _baseline_batch(_params_baseline(params, baseline_values, xb.shape[2]), xb)
    with _evaluating(model):
        wrapper = _WindowTargets(model).to(device)
        targets = _targets(wrapper, xb[:1], segment_names, params.target)
        method = _captum_method(params.method, wrapper)
        with _no_cudnn(device):
            return {
                name: _attribute_batch(method, xb, base, index, params)[0].numpy()
                for name, index in targets.items()
            }


# ----------------------------------------------------------------------------------------------
# Ablations


def _region_codes(region_labels: Any, n_neurons: int) -> tuple[np.ndarray, np.ndarray]:
    labels = np.asarray(region_labels).astype(str)
    if labels.shape != (n_neurons,):
        raise ValueError(f"region_labels: expected shape ({n_neurons},), found {labels.shape}")
    labels = np.where(labels == "", UNLABELLED, labels)
    names, codes = np.unique(labels, return_inverse=True)
    return names, codes.astype(np.int64)


class _AblationOutputs(nn.Module):
    """(batch, window, N), y (batch, window, K) -> (batch, 2): [mean summed tail, MSE]."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        out = self.model(x).float()
        summed = out.sum(dim=2).mean(dim=1)
        mse = ((out - y) ** 2).mean(dim=(1, 2))
        return torch.stack([summed, mse], dim=1)


def region_ablation(
    model: nn.Module,
    x: Any,
    starts: Any,
    window: int,
    region_labels: Any,
    device: str | torch.device = "cpu",
    *,
    y_true: Any = None,
    baseline_values: np.ndarray | None = None,
    batch_windows: int = 8,
) -> pd.DataFrame:
    """Ablate all neurons of one region together (captum FeatureAblation) and measure the damage.

    Each region's neurons are set to the baseline (0 = training mean for z-scored inputs, or
    `baseline_values`) on every frame of the window; all other neurons keep their values.
    Neurons with an empty region label form one group named "unlabelled".

    Args:
        model: torch decoder (batch, window, N) -> (batch, window, K).
        x: (T, N) normalised inputs.
        starts: (n_windows,) window starts.
        window: window length in frames.
        region_labels: (N,) region name per neuron.
        device: where the model lives.
        y_true: (T, K) true tail angles (radians); without it only output changes are reported.
        baseline_values: (N,) value of an ablated neuron; None = 0.
        batch_windows: windows per FeatureAblation call.

    Returns:
        One row per region, sorted by damage (delta_mse if y_true else output change):
        region, n_neurons, mean_abs_output_change (rad: |change| of the summed tail angle
        averaged over a window's frames, mean over windows), mean_output_change (signed), and
        with y_true: baseline_mse, ablated_mse, delta_mse (rad^2), baseline_rmse, ablated_rmse,
        delta_rmse (rad). MSE is pooled over windows, frames and angles.
    """
    device = torch.device(device)
    x_t = _as_tensor(x)
    n_frames, n_neurons = x_t.shape
    starts = _check_starts(starts, window, n_frames)
    names, codes = _region_codes(region_labels, n_neurons)
    baseline = _baseline_vector(baseline_values, n_neurons)
    y_t = None if y_true is None else torch.as_tensor(_tail(y_true, n_frames, np.float32))
    with _evaluating(model):
        sums = _ablate(
            _AblationOutputs(model).to(device),
            _Windows(x_t, starts, window, baseline, device),
            y_t,
            codes,
            batch_windows,
        )
    return _ablation_table(names, codes, sums, starts.size, with_mse=y_t is not None)


def _ablate(
    wrapper: _AblationOutputs,
    windows: _Windows,
    y_t: torch.Tensor | None,
    codes: np.ndarray,
    batch_windows: int,
) -> dict[str, Any]:
    """Sums over windows of captum FeatureAblation, one feature group per region code.

    Returns {"change_abs", "change_signed", "mse_drop"}: (n_regions,) float64 sums of |output
    change|, output change and MSE decrease when the region is ablated; "mse_base": the
    unablated MSE summed over windows (0 without `y_t`).
    """
    x_t, starts, window, baseline, device = windows
    n_regions, n_neurons = int(codes.max()) + 1, x_t.shape[1]
    representative = np.array([np.flatnonzero(codes == r)[0] for r in range(n_regions)])
    mask = torch.as_tensor(codes).expand(1, window, n_neurons).to(device)
    base = 0.0 if baseline is None else baseline.to(device).expand(1, window, n_neurons)
    ablation = FeatureAblation(wrapper)
    targets = (0, 1) if y_t is not None else (0,)
    sums = {name: np.zeros(n_regions) for name in ("change_abs", "change_signed", "mse_drop")}
    sums["mse_base"] = 0.0
    for begin in range(0, starts.size, batch_windows):
        batch_starts = starts[begin : begin + batch_windows]
        xb = _windows(x_t, batch_starts, window).to(device)
        yb = (
            _windows(y_t, batch_starts, window).to(device)
            if y_t is not None
            else torch.zeros(xb.shape[0], window, 1, device=device)
        )
        for target in targets:
            # FeatureAblation attribution = F(x) - F(x with the group ablated), per window.
            attr = ablation.attribute(
                xb, baselines=base, target=target, additional_forward_args=(yb,), feature_mask=mask
            )
            per_region = attr[:, 0, representative].detach().double().cpu().numpy()
            if target == 0:
                sums["change_abs"] += np.abs(per_region).sum(axis=0)
                sums["change_signed"] += -per_region.sum(axis=0)
            else:
                sums["mse_drop"] += per_region.sum(axis=0)
        if y_t is not None:
            with torch.no_grad():
                sums["mse_base"] += wrapper(xb, yb)[:, 1].double().sum().item()
    return sums


def _ablation_table(
    names: np.ndarray, codes: np.ndarray, sums: Mapping[str, Any], n_windows: int, with_mse: bool
) -> pd.DataFrame:
    """`region_ablation`'s table from `_ablate`'s sums, sorted by damage."""
    table = pd.DataFrame(
        {
            "region": names,
            "n_neurons": np.bincount(codes, minlength=names.size),
            "mean_abs_output_change": sums["change_abs"] / n_windows,
            "mean_output_change": sums["change_signed"] / n_windows,
        }
    )
    if not with_mse:
        return table.sort_values("mean_abs_output_change", ascending=False, ignore_index=True)
    baseline_mse = sums["mse_base"] / n_windows
    ablated = baseline_mse - sums["mse_drop"] / n_windows
    table["baseline_mse"] = baseline_mse
    table["ablated_mse"] = ablated
    table["delta_mse"] = ablated - baseline_mse
    table["baseline_rmse"] = np.sqrt(baseline_mse)
    table["ablated_rmse"] = np.sqrt(np.maximum(ablated, 0.0))
    table["delta_rmse"] = table["ablated_rmse"] - table["baseline_rmse"]
    return table.sort_values("delta_mse", ascending=False, ignore_index=True)


def _masked_rmse(
    model: nn.Module,
    windows: _Windows,
    y: np.ndarray,
    masked: np.ndarray,
    batch_windows: int,
) -> float:
    """Pooled RMSE (rad) of frame-averaged predictions with `masked` neurons at the baseline.

    `y` (T, K) true tail angles; overlapping windows' predictions are averaged per frame first.
    """
    x_t, starts, window, baseline, device = windows
    masked_t = torch.as_tensor(masked, dtype=torch.long)
    outputs = []
    with torch.no_grad():
        for begin in range(0, starts.size, batch_windows):
            xb = _windows(x_t, starts[begin : begin + batch_windows], window)
            if masked_t.numel():
                xb[..., masked_t] = 0.0 if baseline is None else baseline[masked_t]
            outputs.append(model(xb.to(device)).float().cpu().numpy())
    frame_index, averaged = average_window_predictions(
        starts, window, np.concatenate(outputs), x_t.shape[0]
    )
    return rmse_pooled(y[frame_index], averaged)


def deletion_curve(
    model: nn.Module,
    x: Any,
    y_true: Any,
    starts: Any,
    window: int,
    ranking: Any,
    ks: Sequence[int],
    n_random: int,
    seed: int,
    device: str | torch.device = "cpu",
    *,
    baseline_values: np.ndarray | None = None,
    batch_windows: int = 16,
) -> pd.DataFrame:
    """Decoding RMSE when the k most important neurons vs k random neurons are masked.

    Masked neurons are set to the baseline (0 = training mean for z-scored inputs) on every
    frame at inference; the model is not retrained. Random sets are drawn uniformly from all N
    neurons (top neurons included), `n_random` times per k with one seeded generator, so the
    curve is reproducible. If attribution found the neurons the decoder relies on, the top-k
    curve rises above the random band.

    Args:
        model, x, y_true: torch decoder, (T, N) normalised inputs, (T, K) tail angles (rad).
        starts: (n_windows,) window starts (predictions of overlapping windows are averaged
            per frame before scoring, as in training's test scoring).
        window: window length in frames.
        ranking: neuron indices, most important first (e.g. argsort of -importance); at least
            max(ks) long.
        ks: numbers of neurons to mask (0 gives the unmasked RMSE).
        n_random, seed: random sets per k; seed of the numpy Generator drawing them.
        device: where the model lives.
        baseline_values: (N,) value of a masked neuron; None = 0.
        batch_windows: windows per forward pass.

    Returns:
        One row per (condition, k): k, condition ("top" or "random"), rmse_mean, rmse_sd
        (sample sd over random repeats; 0 for "top"), n_repeats. RMSE in radians, pooled over
        covered frames and angles.
    """
    x_t = _as_tensor(x)
    n_frames, n_neurons = x_t.shape
    starts = _check_starts(starts, window, n_frames)
    y = _tail(y_true, n_frames, np.float64)
    ranking, ks = _check_deletion(ranking, ks, n_random, n_neurons)
    baseline = _baseline_vector(baseline_values, n_neurons)
    windows = _Windows(x_t, starts, window, baseline, torch.device(device))
    rng = np.random.default_rng(seed)
    rows = []
    with _evaluating(model):
        for k in ks:
            masks = [ranking[:k]]  # then n_random random sets, drawn in order
            masks += [rng.choice(n_neurons, size=k, replace=False) for _ in range(n_random)]
            rmse = [_masked_rmse(model, windows, y, m, batch_windows) for m in masks]
            rows.extend(_deletion_rows(k, rmse[0], rmse[1:]))
    return pd.DataFrame(rows, columns=["k", "condition", "rmse_mean", "rmse_sd", "n_repeats"])


def _check_deletion(
    ranking: Any, ks: Sequence[int], n_random: int, n_neurons: int
) -> tuple[np.ndarray, list[int]]:
    """`deletion_curve`'s ranking (int64 neuron indices) and ks, checked against N neurons."""
    ranking = np.asarray(ranking, dtype=np.int64).ravel()
    ks = [int(k) for k in ks]
    if not ks or min(ks) < 0 or max(ks) > min(ranking.size, n_neurons):
        raise ValueError(f"ks: expected values in [0, {min(ranking.size, n_neurons)}], found {ks}")
    if ranking.size and (ranking.min() < 0 or ranking.max() >= n_neurons):
        raise ValueError(f"ranking: expected neuron indices in [0, {n_neurons}), found others")
    if np.unique(ranking).size != ranking.size:
        raise ValueError("ranking: expected distinct neuron indices, found repeats")
    if n_random < 1:
        raise ValueError(f"n_random: expected >= 1, found {n_random}")
    return ranking, ks


def _deletion_rows(k: int, top: float, random: Sequence[float]) -> list[dict[str, Any]]:
    """The "top" and "random" rows of one k (RMSE in radians; sample sd over random sets)."""
    n_random = len(random)
    rows = [
        {"k": k, "condition": "top", "rmse_mean": top, "rmse_sd": 0.0, "n_repeats": 1},
        {
            "k": k,
            "condition": "random",
            "rmse_mean": float(np.mean(random)),
            "rmse_sd": float(np.std(random, ddof=1)) if n_random > 1 else 0.0,
            "n_repeats": n_random,
        },
    ]
    logger.info(
        "deletion k=%d: top %.4g rad, random %.4g +- %.2g rad",
        k,
        top,
        rows[1]["rmse_mean"],
        rows[1]["rmse_sd"],
    )
    return rows


# ----------------------------------------------------------------------------------------------
# Comparators


def correlation_motor_map(dff: Any, tail: Any) -> np.ndarray:
    """|Pearson r| of each neuron with the summed tail angle: the classic motor-correlation map.

    Args:
        dff: (T, N) neural signal (any normalisation: r is scale-free).
        tail: (T, K) tail angles (summed over K) or (T,) an already summed trace.

    Returns:
        (N,) float64 |r| in [0, 1]; 0 for neurons (or a tail) without variance.
    """
    dff = np.asarray(dff, dtype=np.float64)
    tail = np.asarray(tail, dtype=np.float64)
    if tail.ndim == 2:
        tail = tail.sum(axis=1)
    if dff.ndim != 2 or tail.shape != (dff.shape[0],):
        raise ValueError(
            f"dff, tail: expected (T, N) and (T,) or (T, K), found {dff.shape} and {tail.shape}"
        )
    if not (np.isfinite(dff).all() and np.isfinite(tail).all()):
        raise ValueError("dff, tail: expected finite values, found NaN or inf")
    dc = dff - dff.mean(axis=0)
    tc = tail - tail.mean()
    denominator = np.sqrt((dc**2).sum(axis=0) * (tc**2).sum())
    numerator = np.abs(tc @ dc)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.where(denominator > 0, numerator / np.where(denominator > 0, denominator, 1), 0.0)
    return np.clip(r, 0.0, 1.0)
