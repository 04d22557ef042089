"""Training loop, resumable checkpoints and held-out predictions for every decoder kind.

One call of `train_and_predict` takes one fish's dataset (see docs/architecture.md, "Dataset
netCDF") and one decoder, and produces everything later stages need:

- a chronological train / val / test split with a gap between the parts, so that no sliding window
  straddles two splits and no val/test frame reaches the training loss or the input normaliser;
- for torch decoders (LLM decoders, LSTM, ...): AdamW on the trainable parameters, a per-step
  learning-rate schedule, MSE on every frame of every window, gradient clipping, seeded shuffling,
  validation loss every epoch, optional early stopping, and a checkpoint after every epoch from
  which a killed job resumes bit-for-bit;
- for classic decoders (ridge, mean): one closed-form fit on the training frames;
- `predictions.nc` (val and test frames; overlapping windows averaged per frame),
  `training_curve.csv`, the saved model, `normaliser.json` and `run.json`.

Inputs are the dataset's `dff` (time, neuron) and targets its `tail` (time, segment) in radians.
Windows are never materialised: `WindowSampler` keeps one (T, N) tensor and gathers a batch of
windows by index, so memory is O(T N + batch window N) instead of O(n_windows window N).
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import logging
import math
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import xarray as xr
from torch import nn

from nlp4neuro import dataset as ds_mod
from nlp4neuro.errors import ConfigError, InputFileError
from nlp4neuro.models import (
    ModelSpec,
    build_decoder,
    initialise_readout,
    load_decoder,
    save_decoder,
)
from nlp4neuro.provenance import atomic_output, json_default, versions, versions_json

logger = logging.getLogger(__name__)

READOUT_INITS = ("targets", "default")
CHECKPOINT_NAME = "checkpoint.pt"
CURVE_NAME = "training_curve.csv"
PREDICTIONS_NAME = "predictions.nc"
NORMALISER_NAME = "normaliser.json"
RUN_INFO_NAME = "run.json"
MODEL_DIR_NAME = "model"
CURVE_COLUMNS = ("epoch", "train_loss", "val_loss", "lr", "seconds", "best")

_SCHEDULES = ("constant", "cosine", "linear")
_NORMALISATIONS = ("zscore", "none")
_DEVICES = ("auto", "cpu", "cuda")


class TrainingInterrupted(RuntimeError):
    """Raised by the `stop_after_epoch` hook to simulate a job killed after a checkpoint."""


@dataclass(frozen=True)
class TrainingParams:
    """Optimisation, split and hardware settings of one training run.

    Attributes:
        epochs: maximum number of passes over the training windows.
        batch_size: windows per optimiser step.
        learning_rate: peak AdamW learning rate.
        weight_decay: AdamW decoupled weight decay.
        schedule: learning-rate schedule over all steps: "constant", "cosine" or "linear" decay.
        warmup_fraction: fraction of all steps spent in linear warm-up from 0 (0 = no warm-up).
        grad_clip_norm: max global L2 norm of the gradients; None = no clipping.
        early_stopping_patience: epochs without a val-loss improvement before stopping; the best
            epoch's weights are restored. 0 = off: all epochs run and the final weights are kept
            (the reference behaviour).
        min_delta: an epoch improves on the best only if its val loss is lower by more than this.
        train_fraction, val_fraction, test_fraction: chronological split of the frames.
        gap_frames: frames left out between train/val and val/test; None = the window length,
            so no window can overlap two splits' neighbourhoods (slow calcium dynamics otherwise
            leak information across the boundary).
        input_normalisation: "zscore" (per neuron, statistics from training frames only) or "none".
        device: "auto" (CUDA only if the job was given a GPU), "cpu" or "cuda".
        bf16: autocast the forward pass to bfloat16 on CUDA.
        bf16_cpu: with `bf16`, autocast on the CPU too (faster where the CPU has bf16 units,
            not bit-identical to fp32).
        num_threads: torch intra-op threads; None = leave torch's default.
        readout_init: "targets" starts the readout at the training targets' mean and scale
            (`nlp4neuro.models.initialise_readout`); "default" keeps PyTorch's initialisation
            (the reference code).
        neural_lag_frames: pair the tail at frame t with neural frame t + lag
            (`nlp4neuro.dataset.lag_neural`); 0 decodes concurrently (the reference).
    """

    epochs: int = 10
    batch_size: int = 32
    learning_rate: float = 1e-4
    weight_decay: float = 0.01
    schedule: str = "constant"
    warmup_fraction: float = 0.0
    grad_clip_norm: float | None = 1.0
    early_stopping_patience: int = 3
    min_delta: float = 0.0
    train_fraction: float = 0.7
    val_fraction: float = 0.1
    test_fraction: float = 0.2
    gap_frames: int | None = None
    input_normalisation: str = "zscore"
    device: str = "auto"
    bf16: bool = True
    bf16_cpu: bool = False
    readout_init: str = "targets"
    neural_lag_frames: int = 0
    num_threads: int | None = None

    def __post_init__(self) -> None:
        checks: list[tuple[str, bool, str]] = [
            ("epochs", _is_int(self.epochs) and self.epochs >= 1, "an integer >= 1"),
            ("batch_size", _is_int(self.batch_size) and self.batch_size >= 1, "an integer >= 1"),
            ("learning_rate", _is_real(self.learning_rate) and self.learning_rate > 0, "> 0"),
            ("weight_decay", _is_real(self.weight_decay) and self.weight_decay >= 0, ">= 0"),
            ("schedule", self.schedule in _SCHEDULES, f"one of {_SCHEDULES}"),
            (
                "warmup_fraction",
                _is_real(self.warmup_fraction) and 0 <= self.warmup_fraction < 1,
                "a number in [0, 1)",
            ),
            (
                "grad_clip_norm",
                self.grad_clip_norm is None
                or (_is_real(self.grad_clip_norm) and self.grad_clip_norm > 0),
                "a number > 0 or null",
            ),
            (
                "early_stopping_patience",
                _is_int(self.early_stopping_patience) and self.early_stopping_patience >= 0,
                "an integer >= 0 (0 = off)",
            ),
            ("min_delta", _is_real(self.min_delta) and self.min_delta >= 0, ">= 0"),
            (
                "gap_frames",
                self.gap_frames is None or (_is_int(self.gap_frames) and self.gap_frames >= 0),
                "an integer >= 0 or null",
            ),
            (
                "input_normalisation",
                self.input_normalisation in _NORMALISATIONS,
                f"one of {_NORMALISATIONS}",
            ),
            ("device", self.device in _DEVICES, f"one of {_DEVICES}"),
            ("bf16", isinstance(self.bf16, bool), "true or false"),
            ("bf16_cpu", isinstance(self.bf16_cpu, bool), "true or false"),
            ("readout_init", self.readout_init in READOUT_INITS, f"one of {READOUT_INITS}"),
            (
                "neural_lag_frames",
                isinstance(self.neural_lag_frames, int) and self.neural_lag_frames >= 0,
                "an integer >= 0",
            ),
            (
                "num_threads",
                self.num_threads is None or (_is_int(self.num_threads) and self.num_threads >= 1),
                "an integer >= 1 or null",
            ),
        ]
        for name in ("train_fraction", "val_fraction", "test_fraction"):
            value = getattr(self, name)
            checks.append((name, _is_real(value) and 0 < value < 1, "a number in (0, 1)"))
        for name, ok, expected in checks:
            if not ok:
                raise ConfigError(f"training.{name}", expected, getattr(self, name))
        total = self.train_fraction + self.val_fraction + self.test_fraction
        if not math.isclose(total, 1.0, abs_tol=1e-6):
            raise ConfigError(
                "training.train_fraction + val_fraction + test_fraction", "a sum of 1", total
            )

    def to_dict(self) -> dict[str, Any]:
        """All fields as a JSON-serialisable dict (stored in checkpoints and output attrs)."""
        return dataclasses.asdict(self)

    def resolved_gap(self, window_frames: int) -> int:
        """Gap between splits in frames: `gap_frames`, or the window length when it is None."""
        return window_frames if self.gap_frames is None else self.gap_frames


def _is_int(value: object) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def _is_real(value: object) -> bool:
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool)


# ----------------------------------------------------------------------------------------------
# Device, seeds, windows


def select_device(requested: str, gpus_available: int) -> torch.device:
    """Torch device for a run.

    Args:
        requested: "auto", "cpu" or "cuda" (config key `training.device`).
        gpus_available: GPUs granted to this job (Snakemake's `resources.gpu`; 0 when none).
            "auto" picks CUDA only when the job was granted a GPU AND torch can see one, so a job
            scheduled without a GPU never grabs a card that belongs to another job.

    Raises:
        ConfigError: unknown `requested`, or "cuda" on a machine where torch sees no GPU.
    """
    if requested not in _DEVICES:
        raise ConfigError("training.device", f"one of {_DEVICES}", requested)
    cuda_ok = torch.cuda.is_available()
    if requested == "cpu":
        return torch.device("cpu")
    if requested == "cuda":
        if not cuda_ok:
            raise ConfigError("training.device", "a machine where torch sees a CUDA GPU", "cuda")
        return torch.device("cuda")
    return torch.device("cuda" if cuda_ok and gpus_available > 0 else "cpu")


def set_seeds(seed: int, deterministic: bool = True) -> torch.Generator:
    """Seed Python, NumPy and torch (CPU and CUDA) and return the window-shuffling generator.

    The shuffling generator gets its own stream (derived from `seed` with NumPy's SeedSequence),
    so the order of training windows does not depend on how many random numbers the model's
    initialisation consumed.
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 - third-party code may draw from the legacy RNG
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    shuffle_seed = int(np.random.SeedSequence(seed).generate_state(1, dtype=np.uint64)[0])
    generator = torch.Generator()
    generator.manual_seed(shuffle_seed)
    return generator


class WindowSampler:
    """Gathers batches of sliding windows from one (T, N) input and one (T, K) target tensor.

    Only the two frame-level tensors are stored; a batch is built by advanced indexing with
    `starts[:, None] + arange(window)`, so at most one batch of windows exists at a time.

    Args:
        x: (T, N) float32 normalised inputs.
        y: (T, K) float32 targets (radians).
        window: window length in frames.
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, window: int) -> None:
        if x.ndim != 2 or y.ndim != 2 or x.shape[0] != y.shape[0]:
            raise ValueError(
                f"expected x (T, N) and y (T, K), found {tuple(x.shape)}, {tuple(y.shape)}"
            )
        self.x = x
        self.y = y
        self.window = int(window)
        self._offsets = torch.arange(self.window)

    def __len__(self) -> int:
        """Number of frames T."""
        return self.x.shape[0]

    def frame_index(self, starts: torch.Tensor | np.ndarray) -> torch.Tensor:
        """(B, window) frame indices of the windows starting at `starts` (B,)."""
        starts_t = torch.as_tensor(np.asarray(starts), dtype=torch.long)
        if starts_t.numel() and (
            int(starts_t.min()) < 0 or int(starts_t.max()) + self.window > len(self)
        ):
            raise IndexError(f"window starts out of range for {len(self)} frames")
        return starts_t[:, None] + self._offsets

    def batch(self, starts: torch.Tensor | np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs (B, window, N) and targets (B, window, K) of the windows at `starts` (B,)."""
        index = self.frame_index(starts).to(self.x.device)
        return self.x[index], self.y[index]

    def iter_batches(
        self, starts: torch.Tensor | np.ndarray, batch_size: int
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Yield (starts, x, y) batches over `starts` in the given order."""
        starts_t = torch.as_tensor(np.asarray(starts), dtype=torch.long)
        for begin in range(0, starts_t.numel(), batch_size):
            chunk = starts_t[begin : begin + batch_size]
            x, y = self.batch(chunk)
            yield chunk, x, y


def _autocast(device: torch.device, bf16: bool) -> torch.autocast:
    """bf16 autocast when asked for; callers decide with `use_bf16`."""
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=bf16)


def use_bf16(params: TrainingParams, device: torch.device) -> bool:
    """bf16 autocast on CUDA when `params.bf16`; on CPU only with `params.bf16_cpu` too.

    On CPUs with bf16 matrix units it roughly halves step time (docs/benchmarks.md) but changes
    the numerics, so the CPU path stays fp32 (and bit-reproducible) unless asked.
    """
    return params.bf16 and (device.type == "cuda" or params.bf16_cpu)


def predict_windows(
    model: nn.Module | Any,
    x: torch.Tensor,
    starts: np.ndarray | torch.Tensor,
    window: int,
    batch_size: int,
    device: torch.device | str = "cpu",
    bf16: bool = False,
) -> np.ndarray:
    """Decoder outputs for every window, without gradients.

    Args:
        model: a torch decoder (forward (B, window, N) -> (B, window, K)), or a classic decoder
            with `predict((frames, N)) -> (frames, K)`, applied frame by frame.
        x: (T, N) float32 normalised inputs (CPU tensor; batches are moved to `device`).
        starts: (n_windows,) first frame of each window.
        window: window length in frames.
        batch_size: windows per forward pass.
        device: where the model lives.
        bf16: autocast to bfloat16 (decide with `use_bf16`).

    Returns:
        (n_windows, window, K) float32 predictions (radians for tail decoders).
    """
    device = torch.device(device)
    offsets = torch.arange(window)
    starts_t = torch.as_tensor(np.asarray(starts), dtype=torch.long)
    outputs: list[np.ndarray] = []
    if not isinstance(model, nn.Module):
        for begin in range(0, starts_t.numel(), batch_size):
            index = starts_t[begin : begin + batch_size, None] + offsets
            frames = x[index].reshape(-1, x.shape[1]).numpy()
            pred = np.asarray(model.predict(frames), dtype=np.float32)
            outputs.append(pred.reshape(index.shape[0], window, -1))
        return np.concatenate(outputs) if outputs else np.zeros((0, window, 0), np.float32)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), _autocast(device, bf16):
            for begin in range(0, starts_t.numel(), batch_size):
                index = starts_t[begin : begin + batch_size, None] + offsets
                pred = model(x[index].to(device))
                outputs.append(pred.float().cpu().numpy())
    finally:
        model.train(was_training)
    if not outputs:
        return np.zeros((0, window, 0), np.float32)
    return np.concatenate(outputs).astype(np.float32, copy=False)


# ----------------------------------------------------------------------------------------------
# Checkpoints


def _trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """CPU copies of the trainable parameters and persistent buffers.

    Frozen weights (a LoRA or head-only backbone) are not stored: `model_factory` rebuilds them
    identically, and copying a multi-GB backbone every epoch would dominate the run time.
    Non-persistent buffers (rotary frequencies, masks) are derived from the config, not trained.
    """
    state = {
        name: p.detach().to("cpu", copy=True)
        for name, p in model.named_parameters()
        if p.requires_grad
    }
    persistent = set(model.state_dict(keep_vars=True))
    state.update(
        {
            f"buffer::{name}": b.detach().to("cpu", copy=True)
            for name, b in model.named_buffers()
            if name in persistent
        }
    )
    return state


def _load_trainable_state(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    params = dict(model.named_parameters())
    buffers = dict(model.named_buffers())
    with torch.no_grad():
        for key, value in state.items():
            if key.startswith("buffer::"):
                buffers[key.removeprefix("buffer::")].copy_(value)
            else:
                params[key].copy_(value)


def _rng_states(shuffle_gen: torch.Generator) -> dict[str, Any]:
    np_state = np.random.get_state()  # noqa: NPY002 - the legacy global RNG is what we restore
    return {
        "python": [list(x) if isinstance(x, tuple) else x for x in random.getstate()],
        "numpy": {
            "name": np_state[0],
            "key": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "shuffle": shuffle_gen.get_state(),
    }


def _restore_rng_states(states: dict[str, Any], shuffle_gen: torch.Generator) -> None:
    py = states["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    np_state = states["numpy"]
    np.random.set_state(  # noqa: NPY002
        (
            np_state["name"],
            np_state["key"].numpy().astype(np.uint32),
            np_state["pos"],
            np_state["has_gauss"],
            np_state["cached_gaussian"],
        )
    )
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    shuffle_gen.set_state(states["shuffle"])


def _canonical(obj: Any) -> Any:
    """JSON round trip, so configs compare equal regardless of tuple/list or key order."""
    return json.loads(json.dumps(obj, sort_keys=True, default=json_default))


def _dataset_fingerprint(dff: np.ndarray, tail: np.ndarray) -> dict[str, Any]:
    """SHA-256 of the input and target arrays plus their shapes (identifies the data a run saw)."""
    digest = hashlib.sha256()
    for array in (dff, tail):
        contiguous = np.ascontiguousarray(array)
        digest.update(str((contiguous.dtype.str, contiguous.shape)).encode())
        digest.update(memoryview(contiguous).cast("B"))
    return {
        "sha256": digest.hexdigest(),
        "dff_shape": list(dff.shape),
        "tail_shape": list(tail.shape),
    }


def _load_matching_checkpoint(path: Path, config: dict[str, Any]) -> dict[str, Any] | None:
    """The checkpoint at `path` if its recorded config equals `config`; otherwise None (logged)."""
    if not path.exists():
        return None
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a damaged file must not block a fresh start
        logger.warning("ignoring checkpoint %s: cannot be read (%s)", path, error)
        return None
    recorded = json.loads(checkpoint.get("config_json", "null"))
    if recorded != config:
        differing = sorted(
            key
            for key in set(config) | set(recorded or {})
            if (recorded or {}).get(key) != config.get(key)
        )
        logger.warning(
            "ignoring checkpoint %s: it was written for a different run (differs in %s)",
            path,
            ", ".join(differing) or "format",
        )
        return None
    return checkpoint


def _save_checkpoint(path: Path, checkpoint: dict[str, Any]) -> None:
    with atomic_output(path) as tmp:
        torch.save(checkpoint, tmp)


# ----------------------------------------------------------------------------------------------
# Outputs


def _write_curve(path: Path, rows: list[dict[str, Any]]) -> None:
    with atomic_output(path) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=CURVE_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)


def _write_json(path: Path, obj: Any) -> None:
    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=json_default) + "\n")


def _coord(dataset: xr.Dataset, name: str, default: np.ndarray) -> np.ndarray:
    return np.asarray(dataset[name].values) if name in dataset.coords else default


def _predictions_dataset(
    dataset: xr.Dataset,
    parts: list[tuple[str, np.ndarray, np.ndarray]],
    tail: np.ndarray,
    attrs: dict[str, Any],
) -> xr.Dataset:
    """Predictions netCDF layout (docs/architecture.md) from (split, frames, predicted) parts."""
    n_frames = tail.shape[0]
    frames = np.concatenate([p[1] for p in parts]).astype(np.int64)
    predicted = np.concatenate([p[2] for p in parts]).astype(np.float32)
    split = np.concatenate([np.full(p[1].shape[0], p[0], dtype=object) for p in parts])
    time_s = _coord(dataset, "time", np.arange(n_frames, dtype=np.float64))[frames]
    frame = _coord(dataset, "frame", np.arange(n_frames, dtype=np.int64))[frames]
    stimulus = _coord(dataset, "stimulus", np.full(n_frames, "", dtype=object))[frames]
    segments = _coord(
        dataset, "segment", np.array([f"theta_{k:02d}" for k in range(tail.shape[1])])
    )
    out = xr.Dataset(
        data_vars={
            "predicted": (("time", "segment"), predicted, {"units": "rad"}),
            "true": (("time", "segment"), tail[frames].astype(np.float32), {"units": "rad"}),
        },
        coords={
            "time": ("time", time_s.astype(np.float64), {"units": "s"}),
            "frame": ("time", frame.astype(np.int64)),
            "split": ("time", split.astype(str).astype(object)),
            "stimulus": ("time", stimulus.astype(str).astype(object)),
            "segment": ("segment", segments.astype(str).astype(object)),
        },
        attrs=attrs,
    )
    return out


def _mse(pred: np.ndarray, true: np.ndarray) -> float:
    return float(np.mean((pred.astype(np.float64) - true.astype(np.float64)) ** 2))


def _window_targets(y: torch.Tensor, starts: np.ndarray, window: int) -> np.ndarray:
    index = torch.as_tensor(starts, dtype=torch.long)[:, None] + torch.arange(window)
    return y[index].numpy()


def _normalise(dff: np.ndarray, normaliser: Any) -> np.ndarray:
    """(T, N) float32 C-contiguous, writable array of `normaliser.apply(dff)` (torch shares it)."""
    return np.require(normaliser.apply(dff), dtype=np.float32, requirements=["C", "W"])


# ----------------------------------------------------------------------------------------------
# Main entry point


def train_and_predict(
    dataset: xr.Dataset,
    model_factory: Callable[[], Any],
    *,
    spec_dict: dict[str, Any],
    window_frames: int,
    params: TrainingParams,
    seed: int,
    out_dir: Path,
    checkpoint_dir: Path,
    save_fn: Callable[[Any, Path], None] | None = None,
    device: torch.device | None = None,
    progress_every: int = 50,
    stop_after_epoch: int | None = None,
) -> dict[str, Any]:
    """Train one decoder on one fish and write its held-out predictions.

    Args:
        dataset: one fish's dataset (docs/architecture.md "Dataset netCDF"): `dff` (time, neuron)
            inputs and `tail` (time, segment) targets in radians.
        model_factory: builds a fresh decoder; called once, after seeding. Torch decoders map
            (batch, window, N) -> (batch, window, K); classic decoders have
            `fit(x_train, y_train, x_val, y_val)` and `predict(x (frames, N)) -> (frames, K)`.
        spec_dict: the model specification (recorded in outputs; `name` and `kind` become the
            `model` and `kind` attrs of predictions.nc).
        window_frames: sliding-window length in frames (stride 1).
        params: optimisation, split and device settings.
        seed: seeds initialisation, shuffling and dropout.
        out_dir: receives predictions.nc, training_curve.csv, model/, normaliser.json, run.json.
        checkpoint_dir: receives checkpoint.pt after every epoch; a matching one is resumed.
        save_fn: saves the final decoder to a folder; default `nlp4neuro.models.save_decoder`.
        device: torch device; default `select_device(params.device, torch.cuda.device_count())`.
        progress_every: log training progress every this many optimiser steps.
        stop_after_epoch: test hook: raise `TrainingInterrupted` right after this epoch's
            checkpoint is written, as if the job had been killed.

    Returns:
        Summary dict: best_epoch, used_epoch, best_val_loss, val_rmse, test_rmse, epochs_run,
        stopped_early, resumed_from_epoch, seconds, windows_per_s, trainable_params, device, ...

    Raises:
        InputFileError: the dataset lacks `dff`/`tail` or their time axes disagree.
        ConfigError: a window does not fit into a split.
    """
    started = time.perf_counter()
    out_dir = Path(out_dir)
    checkpoint_dir = Path(checkpoint_dir)
    window = int(window_frames)
    if window < 1:
        raise ConfigError("window_frames", "an integer >= 1", window_frames)
    # Pair the tail of frame t with neural frame t + lag (calcium lags behaviour).
    dataset = ds_mod.lag_neural(dataset, params.neural_lag_frames)
    dff, tail = _dataset_arrays(dataset)
    n_frames, n_neurons = dff.shape
    n_outputs = tail.shape[1]
    fingerprint = _dataset_fingerprint(dff, tail)

    # 1. Splits and input normalisation: statistics from training frames only.
    gap = params.resolved_gap(window)
    splits = ds_mod.chronological_split(
        n_frames, params.train_fraction, params.val_fraction, params.test_fraction, gap
    )
    ds_mod.check_window_fits(splits, window)
    normaliser = ds_mod.fit_input_normaliser(dff, splits["train"], params.input_normalisation)
    x_np = _normalise(dff, normaliser)
    x = torch.from_numpy(x_np)
    y = torch.from_numpy(np.ascontiguousarray(tail, dtype=np.float32))
    sampler = WindowSampler(x, y, window)
    starts = {name: np.asarray(ds_mod.window_starts(splits[name], window)) for name in splits}
    logger.info(
        "fish %s: %d frames x %d neurons -> %d outputs; window %d, gap %d; windows train/val/test"
        " %d/%d/%d",
        dataset.attrs.get("fish", "?"),
        n_frames,
        n_neurons,
        n_outputs,
        window,
        gap,
        *(len(starts[s]) for s in ("train", "val", "test")),
    )

    if params.num_threads is not None:
        torch.set_num_threads(params.num_threads)
    if device is None:
        device = select_device(params.device, torch.cuda.device_count())
    device = torch.device(device)
    if device.type == "cuda":
        # Keep the recording on the GPU (152 MB for a paper-scale fish) so batches are gathered
        # there instead of copied from pageable host memory every step; TF32 matmuls for the
        # fp32 parts. The CPU path is unchanged.
        sampler = WindowSampler(x.to(device), y.to(device), window)
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    shuffle_gen = set_seeds(seed)
    model = model_factory()
    out_dir.mkdir(parents=True, exist_ok=True)

    if isinstance(model, nn.Module):
        if params.readout_init == "targets":
            train_tail = tail[splits["train"]]
            initialise_readout(model, train_tail.mean(axis=0), train_tail.std(axis=0) + 1e-6)
        config = _canonical(
            {
                "spec": spec_dict,
                "params": params.to_dict(),
                "seed": seed,
                "window_frames": window,
                "dataset": fingerprint,
            }
        )
        fit = _train_torch(
            model,
            sampler,
            starts,
            params=params,
            device=device,
            shuffle_gen=shuffle_gen,
            config=config,
            out_dir=out_dir,
            checkpoint_path=checkpoint_dir / CHECKPOINT_NAME,
            progress_every=progress_every,
            stop_after_epoch=stop_after_epoch,
        )
        bf16 = use_bf16(params, device)
    else:
        fit = _fit_classic(model, x_np, tail, splits, out_dir)
        bf16 = False

    # 4. Held-out predictions: stride-1 windows, overlapping windows averaged per frame.
    parts: list[tuple[str, np.ndarray, np.ndarray]] = []
    for name in ("val", "test"):
        window_preds = predict_windows(
            model, x, starts[name], window, params.batch_size, device, bf16=bf16
        )
        frames, averaged = ds_mod.average_window_predictions(
            starts[name], window, window_preds, n_frames
        )
        parts.append((name, np.asarray(frames), np.asarray(averaged)))
    params_json = json.dumps(params.to_dict(), sort_keys=True)
    attrs = {
        "model": str(spec_dict.get("name", "")),
        "kind": str(spec_dict.get("kind", "")),
        "fish": dataset.attrs.get("fish", ""),
        "seed": int(seed),
        "window_frames": window,
        "params": params_json,
        "spec": json.dumps(spec_dict, sort_keys=True, default=json_default),
        "versions": versions_json(),
    }
    predictions = _predictions_dataset(dataset, parts, tail, attrs)
    ds_mod.write_netcdf(predictions, out_dir / PREDICTIONS_NAME)

    # 5. Final model, normaliser and run description.
    if save_fn is None:
        from nlp4neuro.models import save_decoder as save_fn
    with atomic_output(out_dir / MODEL_DIR_NAME) as tmp:
        tmp.mkdir()
        save_fn(model, tmp)
    _write_json(out_dir / NORMALISER_NAME, normaliser.to_dict())
    test_mask = predictions["split"].values == "test"
    val_mask = ~test_mask
    pred_arr, true_arr = predictions["predicted"].values, predictions["true"].values
    summary = {
        **fit,
        "val_rmse": math.sqrt(_mse(pred_arr[val_mask], true_arr[val_mask])),
        "test_rmse": math.sqrt(_mse(pred_arr[test_mask], true_arr[test_mask])),
        "seconds": time.perf_counter() - started,
        "device": str(device),
        "n_neurons": n_neurons,
        "n_outputs": n_outputs,
    }
    run_info = {
        "spec": spec_dict,
        "params": params.to_dict(),
        "seed": int(seed),
        "window_frames": window,
        "gap_frames": gap,
        "splits": {
            name: {"start": int(s.start), "stop": int(s.stop), "n_windows": len(starts[name])}
            for name, s in splits.items()
        },
        "n_frames": n_frames,
        "n_neurons": n_neurons,
        "n_outputs": n_outputs,
        "segments": [str(s) for s in predictions["segment"].values],
        "fish": dataset.attrs.get("fish", ""),
        "dataset": fingerprint,
        "summary": summary,
        "versions": versions(),
    }
    _write_json(out_dir / RUN_INFO_NAME, run_info)
    logger.info(
        "done in %.1f s: val RMSE %.4f, test RMSE %.4f rad (epoch %s weights)",
        summary["seconds"],
        summary["val_rmse"],
        summary["test_rmse"],
        summary.get("used_epoch"),
    )
    return summary


def _dataset_arrays(dataset: xr.Dataset) -> tuple[np.ndarray, np.ndarray]:
    """`dff` (T, N) and `tail` (T, K) as float32 arrays, checked against the dataset contract."""
    source = dataset.encoding.get("source", "<dataset>")
    for name, dims in (("dff", ("time", "neuron")), ("tail", ("time", "segment"))):
        if name not in dataset.data_vars:
            raise InputFileError(source, f"data variable '{name}' {dims}", "none")
        if dataset[name].dims != dims:
            raise InputFileError(source, f"'{name}' with dims {dims}", dataset[name].dims)
    dff = np.asarray(dataset["dff"].values, dtype=np.float32)
    tail = np.asarray(dataset["tail"].values, dtype=np.float32)
    return dff, tail


def _count_trainable(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _make_scheduler(
    optimizer: torch.optim.Optimizer, params: TrainingParams, total_steps: int
) -> torch.optim.lr_scheduler.LRScheduler:
    """Per-step schedule from transformers (the same curves Hugging Face's Trainer uses)."""
    from transformers import get_scheduler

    warmup = round(params.warmup_fraction * total_steps)
    name = params.schedule
    if name == "constant" and warmup > 0:
        name = "constant_with_warmup"
    if name == "constant":
        return get_scheduler(name, optimizer)
    return get_scheduler(name, optimizer, num_warmup_steps=warmup, num_training_steps=total_steps)


def _train_torch(
    model: nn.Module,
    sampler: WindowSampler,
    starts: dict[str, np.ndarray],
    *,
    params: TrainingParams,
    device: torch.device,
    shuffle_gen: torch.Generator,
    config: dict[str, Any],
    out_dir: Path,
    checkpoint_path: Path,
    progress_every: int,
    stop_after_epoch: int | None,
) -> dict[str, Any]:
    """Steps 2-3 for torch decoders: train with checkpoints; leaves the selected weights loaded."""
    # Quantised backbones must be built on their device and cannot be moved; move only if needed.
    if any(p.device.type != device.type for p in model.parameters()):
        model.to(device)
    trainable = [p for p in model.parameters() if p.requires_grad]
    if not trainable:
        raise ConfigError("model", "a decoder with trainable parameters", "none")
    n_trainable = _count_trainable(model)
    optimizer = torch.optim.AdamW(
        trainable, lr=params.learning_rate, weight_decay=params.weight_decay
    )
    train_starts = torch.as_tensor(starts["train"], dtype=torch.long)
    n_train = train_starts.numel()
    steps_per_epoch = math.ceil(n_train / params.batch_size)
    scheduler = _make_scheduler(optimizer, params, params.epochs * steps_per_epoch)
    val_true = _window_targets(sampler.y, starts["val"], sampler.window)
    loss_fn = nn.MSELoss()
    logger.info(
        "training %d trainable parameters on %s for up to %d epochs x %d steps",
        n_trainable,
        device,
        params.epochs,
        steps_per_epoch,
    )

    state: dict[str, Any] = {
        "epoch": 0,
        "best_val_loss": math.inf,
        "best_epoch": 0,
        "best_state": None,
        "bad_epochs": 0,
        "stopped": False,
        "curve": [],
        "train_seconds": 0.0,
        "train_windows": 0,
    }
    resumed_from = 0
    checkpoint = _load_matching_checkpoint(checkpoint_path, config)
    if checkpoint is not None:
        _load_trainable_state(model, checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        scheduler.load_state_dict(checkpoint["scheduler"])
        _restore_rng_states(checkpoint["rng"], shuffle_gen)
        state = checkpoint["state"]
        resumed_from = int(state["epoch"])
        logger.info("resuming from checkpoint %s after epoch %d", checkpoint_path, resumed_from)

    model.train()
    step = resumed_from * steps_per_epoch
    for epoch in range(state["epoch"] + 1, params.epochs + 1):
        if state["stopped"]:
            break
        epoch_start = time.perf_counter()
        order = train_starts[torch.randperm(n_train, generator=shuffle_gen)]
        loss_sum = 0.0
        lr = optimizer.param_groups[0]["lr"]
        for batch_starts, xb, yb in sampler.iter_batches(order, params.batch_size):
            xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
            lr = optimizer.param_groups[0]["lr"]
            with _autocast(device, use_bf16(params, device)):
                pred = model(xb)
            loss = loss_fn(pred.float(), yb)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if params.grad_clip_norm is not None:
                torch.nn.utils.clip_grad_norm_(trainable, params.grad_clip_norm)
            optimizer.step()
            scheduler.step()
            step += 1
            loss_sum += loss.item() * batch_starts.numel()
            if progress_every > 0 and step % progress_every == 0:
                elapsed = time.perf_counter() - epoch_start
                done = step - (epoch - 1) * steps_per_epoch
                logger.info(
                    "epoch %d step %d/%d loss %.5f (%.1f windows/s)",
                    epoch,
                    done,
                    steps_per_epoch,
                    loss.item(),
                    done * params.batch_size / max(elapsed, 1e-9),
                )
        train_seconds = time.perf_counter() - epoch_start
        state["train_seconds"] += train_seconds
        state["train_windows"] += n_train
        train_loss = loss_sum / n_train
        val_pred = predict_windows(
            model,
            sampler.x,
            starts["val"],
            sampler.window,
            params.batch_size,
            device,
            bf16=use_bf16(params, device),
        )
        val_loss = _mse(val_pred, val_true)
        improved = val_loss < state["best_val_loss"] - params.min_delta
        if improved:
            state.update(best_val_loss=val_loss, best_epoch=epoch, bad_epochs=0)
            if params.early_stopping_patience > 0:
                state["best_state"] = _trainable_state(model)
        else:
            state["bad_epochs"] += 1
        patience = params.early_stopping_patience
        if patience > 0 and state["bad_epochs"] >= patience:
            state["stopped"] = True
        state["epoch"] = epoch
        state["curve"].append(
            {
                "epoch": epoch,
                "train_loss": train_loss,
                "val_loss": val_loss,
                "lr": lr,
                "seconds": time.perf_counter() - epoch_start,
                "best": improved,
            }
        )
        logger.info(
            "epoch %d/%d: train loss %.5f, val loss %.5f%s, %.1f s (%.1f windows/s)",
            epoch,
            params.epochs,
            train_loss,
            val_loss,
            " (best)" if improved else "",
            train_seconds,
            n_train / max(train_seconds, 1e-9),
        )
        _write_curve(out_dir / CURVE_NAME, state["curve"])
        _save_checkpoint(
            checkpoint_path,
            {
                "config_json": json.dumps(config, sort_keys=True),
                "model": _trainable_state(model),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "rng": _rng_states(shuffle_gen),
                "state": state,
            },
        )
        if stop_after_epoch is not None and epoch == stop_after_epoch:
            raise TrainingInterrupted(f"stopped after epoch {epoch} by request")
        if state["stopped"]:
            logger.info(
                "early stopping after epoch %d: no val-loss improvement for %d epochs",
                epoch,
                patience,
            )
            break

    # A resumed, already finished run still needs its curve file.
    _write_curve(out_dir / CURVE_NAME, state["curve"])
    used_epoch = state["epoch"]
    if params.early_stopping_patience > 0 and state["best_state"] is not None:
        _load_trainable_state(model, state["best_state"])
        used_epoch = state["best_epoch"]
        logger.info("restored the weights of epoch %d (best val loss)", used_epoch)
    model.eval()
    return {
        "decoder_type": "torch",
        "best_epoch": state["best_epoch"],
        "used_epoch": used_epoch,
        "best_val_loss": state["best_val_loss"],
        "epochs_run": state["epoch"],
        "stopped_early": state["stopped"],
        "resumed_from_epoch": resumed_from,
        "train_seconds": state["train_seconds"],
        "windows_per_s": state["train_windows"] / max(state["train_seconds"], 1e-9),
        "trainable_params": n_trainable,
        "total_params": sum(p.numel() for p in model.parameters()),
    }


def _fit_classic(
    model: Any,
    x: np.ndarray,
    tail: np.ndarray,
    splits: dict[str, slice],
    out_dir: Path,
) -> dict[str, Any]:
    """Step 2 for classic decoders: one fit on training frames; hyperparameters chosen on val."""
    fit_start = time.perf_counter()
    train, val = splits["train"], splits["val"]
    model.fit(x[train], tail[train], x[val], tail[val])
    seconds = time.perf_counter() - fit_start
    train_loss = _mse(np.asarray(model.predict(x[train])), tail[train])
    val_loss = _mse(np.asarray(model.predict(x[val])), tail[val])
    curve = [
        {
            "epoch": 0,
            "train_loss": train_loss,
            "val_loss": val_loss,
            "lr": float("nan"),
            "seconds": seconds,
            "best": True,
        }
    ]
    _write_curve(out_dir / CURVE_NAME, curve)
    logger.info(
        "fitted %s in %.2f s: train loss %.5f, val loss %.5f",
        type(model).__name__,
        seconds,
        train_loss,
        val_loss,
    )
    n_frames = train.stop - train.start
    return {
        "decoder_type": "classic",
        "best_epoch": 0,
        "used_epoch": 0,
        "best_val_loss": val_loss,
        "epochs_run": 0,
        "stopped_early": False,
        "resumed_from_epoch": 0,
        "train_seconds": seconds,
        "windows_per_s": float("nan"),
        "frames_per_s": n_frames / max(seconds, 1e-9),
        "trainable_params": int(getattr(model, "n_parameters", 0)),
        "total_params": int(getattr(model, "n_parameters", 0)),
    }


def load_trained(run_dir: Path, load_fn: Callable[[Path], Any]) -> tuple[Any, Any, dict]:
    """Load a finished run for later stages (saliency, deletion curves).

    Args:
        run_dir: a `train_and_predict` out_dir.
        load_fn: reads the decoder from `run_dir/model` (e.g. `nlp4neuro.models.load_decoder`).

    Returns:
        (model, normaliser, run_info): the decoder in eval mode if it is a torch module, the
        `InputNormaliser` fitted on the training frames, and the parsed run.json.

    Raises:
        InputFileError: run.json, normaliser.json or model/ is missing.
    """
    run_dir = Path(run_dir)
    for name in (RUN_INFO_NAME, NORMALISER_NAME, MODEL_DIR_NAME):
        if not (run_dir / name).exists():
            raise InputFileError(run_dir / name, "an output of train_and_predict", "no such file")
    run_info = json.loads((run_dir / RUN_INFO_NAME).read_text())
    normaliser_dict = json.loads((run_dir / NORMALISER_NAME).read_text())
    normaliser = ds_mod.InputNormaliser.from_dict(normaliser_dict)
    model = load_fn(run_dir / MODEL_DIR_NAME)
    if isinstance(model, nn.Module):
        model.eval()
    return model, normaliser, run_info


def train_decoder(
    dataset: xr.Dataset,
    spec: ModelSpec,
    *,
    window_frames: int,
    params: TrainingParams,
    seed: int,
    out_dir: Path,
    checkpoint_dir: Path,
    backbone_dir: Path | None,
    gpus_available: int = 0,
) -> dict[str, Any]:
    """Train one configured model (`nlp4neuro.models.ModelSpec`) on one fish and save it.

    Wires `train_and_predict` to the model builders: the decoder is built (and rebuilt on
    resume) from `spec` with `seed`, saved with `save_decoder`, and the checkpoint folder is
    removed once every output is written, since it is only needed to resume a killed job.
    Returns the summary of `train_and_predict`.
    """
    if params.num_threads:
        torch.set_num_threads(params.num_threads)
    device = select_device(params.device, gpus_available)
    n_neurons = int(dataset.sizes["neuron"])
    n_outputs = int(dataset.sizes["segment"])

    def model_factory() -> Any:
        return build_decoder(
            spec, n_neurons, n_outputs, backbone_dir=backbone_dir, seed=seed, device=str(device)
        )

    def save_fn(model: Any, path: Path) -> None:
        save_decoder(model, path, backbone_dir=backbone_dir)

    summary = train_and_predict(
        dataset,
        model_factory,
        spec_dict=spec.to_dict(),
        window_frames=window_frames,
        params=params,
        seed=seed,
        out_dir=Path(out_dir),
        checkpoint_dir=Path(checkpoint_dir),
        save_fn=save_fn,
        device=device,
    )
    checkpoint = Path(checkpoint_dir) / CHECKPOINT_NAME
    if checkpoint.exists():
        checkpoint.unlink()
    return summary


def load_trained_decoder(
    run_dir: Path, spec: ModelSpec, *, backbone_dir: Path | None, device: str = "cpu"
) -> tuple[Any, Any, dict]:
    """`load_trained` for a run written by `train_decoder` (same spec and backbone)."""

    def load_fn(model_dir: Path) -> Any:
        info = json.loads((Path(run_dir) / RUN_INFO_NAME).read_text())
        return load_decoder(
            spec,
            int(info["n_neurons"]),
            int(info["n_outputs"]),
            backbone_dir=backbone_dir,
            out_dir=model_dir,
            device=device,
        )

    return load_trained(Path(run_dir), load_fn)
