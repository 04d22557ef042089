"""Training loop, resumable checkpoints and held-out predictions for every decoder kind.

One call of `train_and_predict` takes one fish's dataset, its `DecodingProblem` (lag, splits,
window starts and input normaliser, decided once by `nlp4neuro.problem.build_problem`) and one
decoder, and produces everything later stages need:

- for torch decoders (LLM decoders, LSTM, ...): AdamW on the trainable parameters, a per-step
  learning-rate schedule, MSE on every frame of every window, gradient clipping, seeded shuffling,
  validation loss every epoch, optional early stopping, and a checkpoint after every epoch from
  which a killed job resumes bit-for-bit;
- for classic decoders (ridge, mean): one closed-form fit on the training frames;
- `predictions.nc` (val and test frames; overlapping windows averaged per frame),
  `training_curve.csv`, the saved model, `problem.json` and `run.json`.

Every device runs the same code: the recording lives on the job's device as two tensors,
`WindowSampler` gathers batches of windows from them by index (windows are never materialised:
memory is O(T N + batch window N)), and every tensor that becomes numpy goes through
`nlp4neuro.device.to_numpy`.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import math
import random
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import xarray as xr
from torch import nn

from nlp4neuro import metrics
from nlp4neuro.config import build
from nlp4neuro.dataset import write_netcdf
from nlp4neuro.device import (
    ComputeParams,
    autocast,
    configure,
    device_report,
    resolve_precision,
    select_device,
    to_device,
    to_numpy,
)
from nlp4neuro.errors import ConfigError, InputFileError
from nlp4neuro.models import (
    ModelSpec,
    build_decoder,
    initialise_readout,
    load_decoder,
    save_decoder,
    see_past_only,
)
from nlp4neuro.models.lean import store_frozen
from nlp4neuro.problem import (
    PROBLEM_NAME,
    DecodingParams,
    DecodingProblem,
    average_window_predictions,
    build_problem,
    load_problem,
)
from nlp4neuro.provenance import atomic_output, json_default, versions, versions_json, write_json

logger = logging.getLogger(__name__)

CHECKPOINT_NAME = "checkpoint.pt"
CURVE_NAME = "training_curve.csv"
PREDICTIONS_NAME = "predictions.nc"
RUN_INFO_NAME = "run.json"
MODEL_DIR_NAME = "model"
CURVE_COLUMNS = ("epoch", "train_loss", "val_loss", "lr", "seconds", "best")


class TrainingInterrupted(RuntimeError):
    """Raised by the `stop_after_epoch` hook to simulate a job killed after a checkpoint."""


@dataclass(frozen=True)
class TrainingParams:
    """Optimisation settings of one run: the config's ``training`` section (with the model's own
    overrides on top); the schema documents each key and holds the defaults.

    Attributes:
        epochs, batch_size: passes over the training windows; windows per optimiser step.
        learning_rate, weight_decay: AdamW peak learning rate and decoupled weight decay.
        adam_epsilon: AdamW's epsilon.
        schedule, warmup_fraction: learning-rate curve over all steps after a linear warm-up
            over this fraction of them.
        grad_clip_norm: max global L2 norm of the gradients; None = no clipping.
        early_stopping_patience, min_delta: stop after this many epochs without a val-loss
            decrease of more than `min_delta` and restore the best epoch's weights; 0 = off.
        readout_init: "targets" starts the readout at the training targets' mean and scale
            (`nlp4neuro.models.initialise_readout`); "default" keeps PyTorch's initialisation.
    """

    epochs: int
    batch_size: int
    learning_rate: float
    weight_decay: float
    adam_epsilon: float
    schedule: str
    warmup_fraction: float
    grad_clip_norm: float | None
    early_stopping_patience: int
    min_delta: float
    readout_init: str

    @classmethod
    def from_config(cls, training: Mapping[str, Any]) -> TrainingParams:
        """From the validated ``training`` section (plus a model's overrides)."""
        return build(cls, training, "training")

    def to_dict(self) -> dict[str, Any]:
        """All fields as a JSON-serialisable dict (stored in checkpoints and output attrs)."""
        return dataclasses.asdict(self)


# ----------------------------------------------------------------------------------------------
# Seeds, windows, prediction


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

    Only the two frame-level tensors are stored (on any device); a batch is built by advanced
    indexing with `starts[:, None] + arange(window)`, so at most one batch of windows exists.

    Args:
        x: (T, N) float32 normalised inputs.
        y: (T, K) float32 targets (radians), on the same device as `x`.
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
        """(B, window) CPU frame indices of the windows starting at `starts` (B,)."""
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

    def targets(self, starts: np.ndarray) -> np.ndarray:
        """(B, window, K) float32 numpy targets of the windows at `starts` (B,)."""
        return to_numpy(self.batch(starts)[1])

    def iter_batches(
        self, starts: torch.Tensor | np.ndarray, batch_size: int
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Yield (starts, x, y) batches over `starts` in the given order."""
        starts_t = torch.as_tensor(np.asarray(starts), dtype=torch.long)
        for begin in range(0, starts_t.numel(), batch_size):
            chunk = starts_t[begin : begin + batch_size]
            x, y = self.batch(chunk)
            yield chunk, x, y


def predict_windows(
    model: nn.Module | Any,
    x: torch.Tensor,
    starts: np.ndarray | torch.Tensor,
    window: int,
    batch_size: int,
    precision: str = "fp32",
) -> np.ndarray:
    """Decoder outputs for every window, without gradients, on the device `x` lives on.

    Args:
        model: a torch decoder on `x`'s device (forward (B, window, N) -> (B, window, K)), or a
            classic decoder with `predict((frames, N)) -> (frames, K)`, applied frame by frame.
        x: (T, N) float32 normalised inputs (`nlp4neuro.device.to_device`).
        starts: (n_windows,) first frame of each window.
        window: window length in frames.
        batch_size: windows per forward pass.
        precision: "bf16" autocasts to bfloat16 (`nlp4neuro.device.resolve_precision`).

    Returns:
        (n_windows, window, K) float32 predictions (radians for tail decoders).
    """
    sampler = WindowSampler(x, x[:, :0], window)  # no targets: an empty (T, 0) view
    outputs: list[np.ndarray] = []
    is_torch = isinstance(model, nn.Module)
    was_training = is_torch and model.training
    if is_torch:
        model.eval()
    try:
        with torch.no_grad(), autocast(x.device, precision if is_torch else "fp32"):
            for _, xb, _ in sampler.iter_batches(starts, batch_size):
                if is_torch:
                    outputs.append(to_numpy(model(xb).float()))
                else:
                    frames = to_numpy(xb).reshape(-1, xb.shape[-1])
                    pred = np.asarray(model.predict(frames), dtype=np.float32)
                    outputs.append(pred.reshape(xb.shape[0], window, -1))
    finally:
        if is_torch:
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
# One run's settings


@dataclass(frozen=True)
class _Job:
    """The settings of one `train_and_predict` call, passed as one object to its steps."""

    spec_dict: dict[str, Any]
    params: TrainingParams
    compute: ComputeParams
    seed: int
    out_dir: Path
    checkpoint_dir: Path
    save_fn: Callable[[Any, Path], None]
    progress_every: int
    stop_after_epoch: int | None
    device: torch.device
    precision: str

    def identity(self, problem: DecodingProblem) -> dict[str, Any]:
        """Everything that decides the run's numbers; a checkpoint of another run is ignored."""
        return _canonical(
            {
                "spec": self.spec_dict,
                "training": self.params.to_dict(),
                "compute": self.compute.to_dict(),
                "precision": self.precision,
                "seed": self.seed,
                "window_frames": problem.window_frames,
                "decoding": problem.params.to_dict(),
                "dataset": problem.dataset,
            }
        )


# ----------------------------------------------------------------------------------------------
# Torch decoders: optimisation, one epoch, bookkeeping


@dataclass
class Optimisation:
    """What one torch run steps: the trainable parameters, AdamW and its per-step schedule."""

    trainable: list[nn.Parameter]
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    steps_per_epoch: int

    def state_dict(self) -> dict[str, Any]:
        return {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])


def make_optimisation(model: nn.Module, params: TrainingParams, n_train: int) -> Optimisation:
    """AdamW over the trainable parameters and a per-step schedule from transformers (the same
    curves Hugging Face's Trainer uses)."""
    from transformers import get_scheduler

    trainable = [p for p in model.parameters() if p.requires_grad]
    if not trainable:
        raise ConfigError("model", "a decoder with trainable parameters", "none")
    # One fused kernel per step instead of a loop of elementwise passes (and their temporaries).
    optimizer = torch.optim.AdamW(
        trainable,
        lr=params.learning_rate,
        weight_decay=params.weight_decay,
        eps=params.adam_epsilon,
        fused=True,
    )
    steps_per_epoch = math.ceil(n_train / params.batch_size)
    total_steps = params.epochs * steps_per_epoch
    warmup = round(params.warmup_fraction * total_steps)
    name = params.schedule
    if name == "constant" and warmup > 0:
        name = "constant_with_warmup"
    if name == "constant":
        scheduler = get_scheduler(name, optimizer)
    else:
        scheduler = get_scheduler(
            name, optimizer, num_warmup_steps=warmup, num_training_steps=total_steps
        )
    return Optimisation(trainable, optimizer, scheduler, steps_per_epoch)


def forward_loss(
    model: nn.Module, xb: torch.Tensor, yb: torch.Tensor, precision: str
) -> torch.Tensor:
    """The training loss of one batch: the decoder under the precision's autocast, MSE in fp32
    over every frame of every window."""
    with autocast(xb.device, precision):
        pred = model(xb)
    return nn.functional.mse_loss(pred.float(), yb)


def backward(loss: torch.Tensor, opt: Optimisation) -> None:
    """Clear the old gradients (set to None: no zeroing pass) and backpropagate `loss`."""
    opt.optimizer.zero_grad(set_to_none=True)
    loss.backward()


def update(opt: Optimisation, grad_clip_norm: float | None) -> None:
    """Clip the global gradient norm (None: no clipping), step AdamW and the schedule."""
    if grad_clip_norm is not None:
        # foreach: one norm kernel over all gradients (per-tensor norms were 2 % of a step)
        torch.nn.utils.clip_grad_norm_(opt.trainable, grad_clip_norm, foreach=True)
    opt.optimizer.step()
    opt.scheduler.step()


def _start_or_resume(
    model: nn.Module,
    opt: Optimisation,
    shuffle_gen: torch.Generator,
    path: Path,
    identity: dict[str, Any],
) -> dict[str, Any]:
    """The loop's bookkeeping (saved in every checkpoint): fresh, or restored together with the
    weights, optimiser, schedule and RNG streams from a checkpoint of this very run."""
    checkpoint = _load_matching_checkpoint(path, identity)
    if checkpoint is None:
        return {
            "epoch": 0,
            "best_val_loss": math.inf,
            "best_epoch": 0,
            "best_state": None,
            "bad_epochs": 0,
            "stopped": False,
            "curve": [],
            "train_seconds": 0.0,
            "train_windows": 0,
            "resumed_from": 0,
        }
    _load_trainable_state(model, checkpoint["model"])
    opt.load_state_dict(checkpoint)
    _restore_rng_states(checkpoint["rng"], shuffle_gen)
    state = checkpoint["state"]
    state["resumed_from"] = int(state["epoch"])
    logger.info("resuming from checkpoint %s after epoch %d", path, state["epoch"])
    return state


def _train_epoch(
    model: nn.Module,
    sampler: WindowSampler,
    order: torch.Tensor,
    opt: Optimisation,
    job: _Job,
    epoch: int,
) -> tuple[float, float]:
    """One pass over the training windows in `order`; returns (mean train loss, last lr)."""
    epoch_start = time.perf_counter()
    loss_sum = 0.0
    lr = opt.optimizer.param_groups[0]["lr"]
    batches = sampler.iter_batches(order, job.params.batch_size)
    for done, (batch_starts, xb, yb) in enumerate(batches, start=1):
        lr = opt.optimizer.param_groups[0]["lr"]
        loss = forward_loss(model, xb, yb, job.precision)
        backward(loss, opt)
        update(opt, job.params.grad_clip_norm)
        loss_sum += loss.item() * batch_starts.numel()
        step = (epoch - 1) * opt.steps_per_epoch + done
        if job.progress_every > 0 and step % job.progress_every == 0:
            rate = done * job.params.batch_size / max(time.perf_counter() - epoch_start, 1e-9)
            logger.info(
                "epoch %d step %d/%d loss %.5f (%.1f windows/s)",
                epoch,
                done,
                opt.steps_per_epoch,
                loss.item(),
                rate,
            )
    return loss_sum / order.numel(), lr


def _run_epoch(
    model: nn.Module,
    sampler: WindowSampler,
    problem: DecodingProblem,
    opt: Optimisation,
    job: _Job,
    state: dict[str, Any],
    shuffle_gen: torch.Generator,
    val_true: np.ndarray,
) -> None:
    """Train one shuffled epoch, score the val windows and record the epoch in `state`."""
    epoch = state["epoch"] + 1
    epoch_start = time.perf_counter()
    train_starts = torch.as_tensor(problem.starts["train"], dtype=torch.long)
    order = train_starts[torch.randperm(train_starts.numel(), generator=shuffle_gen)]
    train_loss, lr = _train_epoch(model, sampler, order, opt, job, epoch)
    train_seconds = time.perf_counter() - epoch_start
    state["train_seconds"] += train_seconds
    state["train_windows"] += train_starts.numel()
    val_pred = predict_windows(
        model,
        sampler.x,
        problem.starts["val"],
        problem.window_frames,
        job.params.batch_size,
        job.precision,
    )
    val_loss = metrics.mse(val_pred, val_true)
    improved = val_loss < state["best_val_loss"] - job.params.min_delta
    if improved:
        state.update(best_val_loss=val_loss, best_epoch=epoch, bad_epochs=0)
        if job.params.early_stopping_patience > 0:
            state["best_state"] = _trainable_state(model)
    else:
        state["bad_epochs"] += 1
    patience = job.params.early_stopping_patience
    state["stopped"] = patience > 0 and state["bad_epochs"] >= patience
    state["epoch"] = epoch
    seconds = time.perf_counter() - epoch_start
    state["curve"].append(
        {
            "epoch": epoch,
            "train_loss": train_loss,
            "val_loss": val_loss,
            "lr": lr,
            "seconds": seconds,
            "best": improved,
        }
    )
    logger.info(
        "epoch %d/%d: train loss %.5f, val loss %.5f%s, %.1f s (%.1f windows/s)",
        epoch,
        job.params.epochs,
        train_loss,
        val_loss,
        " (best)" if improved else "",
        train_seconds,
        train_starts.numel() / max(train_seconds, 1e-9),
    )


def _finish_torch(model: nn.Module, state: dict[str, Any], params: TrainingParams) -> dict:
    """Restore the best epoch's weights when early stopping is on; the fit's summary."""
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
        "resumed_from_epoch": state["resumed_from"],
        "train_seconds": state["train_seconds"],
        "windows_per_s": state["train_windows"] / max(state["train_seconds"], 1e-9),
        "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "total_params": sum(p.numel() for p in model.parameters()),
    }


def _fit_torch(
    model: nn.Module,
    sampler: WindowSampler,
    problem: DecodingProblem,
    job: _Job,
    shuffle_gen: torch.Generator,
) -> dict[str, Any]:
    """Train a torch decoder with a checkpoint per epoch; leaves the selected weights loaded."""
    if job.params.readout_init == "targets":
        train_tail = to_numpy(sampler.y[problem.splits["train"]])
        initialise_readout(model, train_tail.mean(axis=0), train_tail.std(axis=0) + 1e-6)
    # Quantised backbones must be built on their device and cannot be moved; move only if needed.
    if any(p.device.type != job.device.type for p in model.parameters()):
        model.to(job.device)
    opt = make_optimisation(model, job.params, len(problem.starts["train"]))
    checkpoint_path = job.checkpoint_dir / CHECKPOINT_NAME
    identity = job.identity(problem)
    state = _start_or_resume(model, opt, shuffle_gen, checkpoint_path, identity)
    n_trainable = sum(p.numel() for p in opt.trainable)
    logger.info(
        "training %d trainable parameters on %s for up to %d epochs x %d steps",
        n_trainable,
        job.device,
        job.params.epochs,
        opt.steps_per_epoch,
    )
    val_true = sampler.targets(problem.starts["val"])
    model.train()
    while state["epoch"] < job.params.epochs and not state["stopped"]:
        _run_epoch(model, sampler, problem, opt, job, state, shuffle_gen, val_true)
        _write_curve(job.out_dir / CURVE_NAME, state["curve"])
        checkpoint = {
            "config_json": json.dumps(identity, sort_keys=True),
            "model": _trainable_state(model),
            **opt.state_dict(),
            "rng": _rng_states(shuffle_gen),
            "state": state,
        }
        _save_checkpoint(checkpoint_path, checkpoint)
        if job.stop_after_epoch is not None and state["epoch"] == job.stop_after_epoch:
            raise TrainingInterrupted(f"stopped after epoch {state['epoch']} by request")
        if state["stopped"]:
            logger.info(
                "early stopping after epoch %d: no val-loss improvement for %d epochs",
                state["epoch"],
                job.params.early_stopping_patience,
            )
    # A resumed, already finished run still needs its curve file.
    _write_curve(job.out_dir / CURVE_NAME, state["curve"])
    return _finish_torch(model, state, job.params)


def _fit_classic(
    model: Any, x: np.ndarray, y: np.ndarray, splits: dict[str, np.ndarray], out_dir: Path
) -> dict[str, Any]:
    """Classic decoders: one fit on the training frames, hyperparameters chosen on val."""
    fit_start = time.perf_counter()
    train, val = splits["train"], splits["val"]
    model.fit(x[train], y[train], x[val], y[val])
    seconds = time.perf_counter() - fit_start
    train_loss = metrics.mse(np.asarray(model.predict(x[train])), y[train])
    val_loss = metrics.mse(np.asarray(model.predict(x[val])), y[val])
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
    n_parameters = int(getattr(model, "n_parameters", 0))
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
        "frames_per_s": train.size / max(seconds, 1e-9),
        "trainable_params": n_parameters,
        "total_params": n_parameters,
    }


# ----------------------------------------------------------------------------------------------
# Outputs


def _write_curve(path: Path, rows: list[dict[str, Any]]) -> None:
    with atomic_output(path) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=CURVE_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)


def _held_out_predictions(
    model: Any,
    sampler: WindowSampler,
    problem: DecodingProblem,
    lagged: xr.Dataset,
    job: _Job,
    attrs: dict[str, Any],
) -> xr.Dataset:
    """Predictions netCDF (docs/architecture.md) of the val and test frames: stride-1 windows,
    overlapping windows averaged per frame; coords are those of the lagged dataset's frames."""
    frames, predicted, split = [], [], []
    for name in ("val", "test"):
        window_preds = predict_windows(
            model,
            sampler.x,
            problem.starts[name],
            problem.window_frames,
            job.params.batch_size,
            job.precision,
        )
        covered, averaged = average_window_predictions(
            problem.starts[name], problem.window_frames, window_preds, problem.n_frames
        )
        frames.append(covered)
        predicted.append(averaged)
        split.append(np.full(covered.shape[0], name, dtype=object))
    # In time order: with K folds the validation block may follow the test block.
    order = np.argsort(np.concatenate(frames), kind="stable")
    held_out = lagged.isel(time=np.concatenate(frames)[order])
    split = [np.concatenate(split)[order]]
    rad = {"units": "rad"}
    return xr.Dataset(
        data_vars={
            "predicted": (("time", "segment"), np.concatenate(predicted)[order], rad),
            "true": (("time", "segment"), held_out["tail"].values.astype(np.float32), rad),
        },
        coords={
            "time": ("time", held_out["time"].values.astype(np.float64), {"units": "s"}),
            "frame": ("time", held_out["frame"].values.astype(np.int64)),
            "split": ("time", np.concatenate(split).astype(str).astype(object)),
            "stimulus": ("time", held_out["stimulus"].values.astype(str).astype(object)),
            "segment": ("segment", lagged["segment"].values.astype(str).astype(object)),
        },
        attrs=attrs,
    )


def _prediction_attrs(
    job: _Job, problem: DecodingProblem, fish: Any, frame_rate_hz: float
) -> dict[str, Any]:
    """Global attributes of predictions.nc: who made it with which settings."""
    return {
        "model": str(job.spec_dict["name"]),
        "kind": str(job.spec_dict["kind"]),
        "fish": fish,
        "seed": int(job.seed),
        "window_frames": problem.window_frames,
        "frame_rate_hz": frame_rate_hz,
        "fold": problem.fold,
        "folds": problem.params.folds,
        "horizon": problem.horizon,
        "params": json.dumps(job.params.to_dict(), sort_keys=True),
        "decoding": json.dumps(problem.params.to_dict(), sort_keys=True),
        "spec": json.dumps(job.spec_dict, sort_keys=True, default=json_default),
        "versions": versions_json(),
    }


# ----------------------------------------------------------------------------------------------
# Main entry point


def train_and_predict(
    dataset: xr.Dataset,
    problem: DecodingProblem,
    model_factory: Callable[[torch.device], Any],
    *,
    spec_dict: dict[str, Any],
    params: TrainingParams,
    compute: ComputeParams,
    seed: int,
    out_dir: Path,
    checkpoint_dir: Path,
    save_fn: Callable[[Any, Path], None],
    progress_every: int = 50,
    stop_after_epoch: int | None = None,
) -> dict[str, Any]:
    """Train one decoder on one fish's decoding problem and write its held-out predictions.

    Args:
        dataset: the fish's dataset (docs/architecture.md) that `problem` was built from.
        problem: lag, splits, window starts and normaliser (`nlp4neuro.problem.build_problem`).
        model_factory: builds a fresh decoder on the given device, once, after seeding. Torch
            decoders map (batch, window, N) -> (batch, window, K); classic decoders have
            `fit(x_train, y_train, x_val, y_val)` and `predict(x (frames, N)) -> (frames, K)`.
        spec_dict: the model specification (`name` and `kind` become predictions.nc attrs).
        params, compute, seed: optimisation; device, precision (`run_precision`,
            `prepare_precision`) and threads; initialisation, shuffling and dropout.
        out_dir: receives predictions.nc, training_curve.csv, model/, problem.json, run.json.
        checkpoint_dir: receives checkpoint.pt after every epoch; a matching one is resumed.
        save_fn: saves the final decoder into a folder.
        progress_every: log training progress every this many optimiser steps.
        stop_after_epoch: test hook: raise `TrainingInterrupted` after this epoch's checkpoint.

    Returns:
        The summary in run.json (best_epoch, val_rmse, test_rmse in rad, ...) plus seconds.
    """
    started = time.perf_counter()
    device = select_device(compute.device)
    job = _Job(
        spec_dict,
        params,
        compute,
        seed,
        Path(out_dir),
        Path(checkpoint_dir),
        save_fn,
        progress_every,
        stop_after_epoch,
        device,
        run_precision(spec_dict, compute.precision, device),
    )
    x, y, sampler = _recording(problem, dataset, job)
    shuffle_gen = set_seeds(seed)
    model = prepare_precision(for_problem(model_factory(device), problem), job.precision)
    job.out_dir.mkdir(parents=True, exist_ok=True)
    if isinstance(model, nn.Module):
        fit = _fit_torch(model, sampler, problem, job, shuffle_gen)
    else:
        fit = _fit_classic(model, x, y, problem.splits, job.out_dir)
    return _done(_write_outputs(dataset, problem, model, sampler, job, fit), started)


def _done(summary: dict[str, Any], started: float) -> dict[str, Any]:
    """The run's summary with its wall time, logged."""
    summary["seconds"] = time.perf_counter() - started
    logger.info(
        "done in %.1f s: val RMSE %.4f, test RMSE %.4f rad (epoch %s weights)",
        *(summary[k] for k in ("seconds", "val_rmse", "test_rmse", "used_epoch")),
    )
    return summary


def run_precision(spec_dict: Mapping[str, Any], requested: str, device: torch.device) -> str:
    """The precision a run of this model computes in on `device` (`compute.precision` resolved
    by `nlp4neuro.device.resolve_precision`; an LLM's fine-tuning mode decides "auto")."""
    finetune = spec_dict.get("finetune") if spec_dict.get("kind") == "llm" else None
    return resolve_precision(requested, device, finetune)


def for_problem(model: Any, problem: DecodingProblem) -> Any:
    """`model` restricted to past frames when the problem's run decodes ahead
    (`DecodingParams.past_only`, `models.see_past_only`), else unchanged."""
    return see_past_only(model) if problem.params.past_only else model


def prepare_precision(model: Any, precision: str) -> Any:
    """A built decoder made ready for `precision`: in bf16 its frozen weight matrices are
    stored in bf16 (`store_frozen`) and trainable weights stay fp32; otherwise unchanged."""
    if isinstance(model, nn.Module) and precision == "bf16":
        converted = store_frozen(model, torch.bfloat16)
        logger.info("bf16 compute; %d frozen weights stored in bf16", converted)
    return model


def _recording(
    problem: DecodingProblem, dataset: xr.Dataset, job: _Job
) -> tuple[np.ndarray, np.ndarray, WindowSampler]:
    """Configure the job's device; the recording's inputs and targets, and their sampler on it."""
    configure(job.compute, job.device)
    x, y = problem.recording(dataset)
    device = job.device
    sampler = WindowSampler(to_device(x, device), to_device(y, device), problem.window_frames)
    _log_problem(problem, dataset)
    return x, y, sampler


def _log_problem(problem: DecodingProblem, dataset: xr.Dataset) -> None:
    logger.info(
        "fish %s: %d frames x %d neurons -> %d outputs; fold %d of %d, window %d, gap %d, "
        "lag %d, horizon %d%s; windows train/val/test %d/%d/%d",
        dataset.attrs["fish"],
        problem.n_frames,
        problem.n_neurons,
        problem.n_outputs,
        problem.fold + 1,
        problem.params.folds,
        problem.window_frames,
        problem.gap_frames,
        problem.params.neural_lag_frames,
        problem.horizon,
        " (past frames only)" if problem.params.past_only else "",
        *(len(problem.starts[s]) for s in ("train", "val", "test")),
    )


def _write_outputs(
    dataset: xr.Dataset,
    problem: DecodingProblem,
    model: Any,
    sampler: WindowSampler,
    job: _Job,
    fit: dict[str, Any],
) -> dict[str, Any]:
    """predictions.nc, model/, problem.json and run.json of a fitted decoder; its summary."""
    fish = dataset.attrs["fish"]
    rate = float(dataset.attrs.get("frame_rate_hz", np.nan))
    attrs = _prediction_attrs(job, problem, fish, rate)
    precision = job.precision if isinstance(model, nn.Module) else "fp32"
    predictions = _held_out_predictions(
        model, sampler, problem, problem.lagged(dataset), job, attrs
    )
    write_netcdf(predictions, job.out_dir / PREDICTIONS_NAME)
    with atomic_output(job.out_dir / MODEL_DIR_NAME) as tmp:
        tmp.mkdir()
        job.save_fn(model, tmp)
    problem.save(job.out_dir / PROBLEM_NAME)
    split = predictions["split"].values
    pred, true = predictions["predicted"].values, predictions["true"].values
    summary = {**fit, "device": str(job.device), "precision": precision}
    for name in ("val", "test"):
        summary[f"{name}_rmse"] = metrics.rmse_pooled(true[split == name], pred[split == name])
    report = device_report(job.device)
    logger.info("device: %s", json.dumps(report))
    run_info = {
        "spec": job.spec_dict,
        "training": job.params.to_dict(),
        "compute": job.compute.to_dict(),
        "seed": int(job.seed),
        "fish": fish,
        "fold": problem.fold,
        "horizon": problem.horizon,
        "problem": PROBLEM_NAME,
        "summary": summary,
        "device": report,
        "versions": versions(),
    }
    write_json(job.out_dir / RUN_INFO_NAME, run_info)
    return summary


# ----------------------------------------------------------------------------------------------
# Configured models: train one, load one


def train_decoder(
    dataset: xr.Dataset,
    spec: ModelSpec,
    *,
    window_frames: int,
    fold: int,
    horizon: int,
    decoding: DecodingParams,
    training: TrainingParams,
    compute: ComputeParams,
    seed: int,
    out_dir: Path,
    checkpoint_dir: Path,
    backbone_dir: Path | None,
) -> dict[str, Any]:
    """Train one configured model (`nlp4neuro.models.ModelSpec`) on one fish and fold, save it.

    Builds the decoding problem of `fold` (of decoding.folds) and `horizon`, wires
    `train_and_predict` to the model builders (the decoder is built on the job's device from
    `spec` with `seed`, saved with `save_decoder`) and removes the checkpoint once every output
    is written (it only serves to resume a killed job).
    Returns the summary of `train_and_predict`.
    """
    problem = build_problem(dataset, window_frames, decoding, fold, horizon)

    def model_factory(device: torch.device) -> Any:
        return build_decoder(
            spec,
            problem.n_neurons,
            problem.n_outputs,
            backbone_dir=backbone_dir,
            seed=seed,
            device=str(device),
        )

    def save_fn(model: Any, path: Path) -> None:
        save_decoder(model, path, backbone_dir=backbone_dir)

    summary = train_and_predict(
        dataset,
        problem,
        model_factory,
        spec_dict=spec.to_dict(),
        params=training,
        compute=compute,
        seed=seed,
        out_dir=Path(out_dir),
        checkpoint_dir=Path(checkpoint_dir),
        save_fn=save_fn,
    )
    checkpoint = Path(checkpoint_dir) / CHECKPOINT_NAME
    if checkpoint.exists():
        checkpoint.unlink()
    return summary


def load_trained(
    run_dir: Path, load_fn: Callable[[Path, DecodingProblem], Any]
) -> tuple[Any, DecodingProblem, dict[str, Any]]:
    """Load a finished run for later stages (saliency, deletion curves).

    Args:
        run_dir: a `train_and_predict` out_dir.
        load_fn: reads the decoder from `run_dir/model` given the run's problem (its n_neurons
            and n_outputs), e.g. around `nlp4neuro.models.load_decoder`.

    Returns:
        (model, problem, run_info): the decoder in eval mode if it is a torch module, the run's
        `DecodingProblem` (problem.json) and the parsed run.json.

    Raises:
        InputFileError: run.json, problem.json or model/ is missing, or problem.json is invalid.
    """
    run_dir = Path(run_dir)
    for name in (RUN_INFO_NAME, PROBLEM_NAME, MODEL_DIR_NAME):
        if not (run_dir / name).exists():
            raise InputFileError(run_dir / name, "an output of train_and_predict", "no such file")
    run_info = json.loads((run_dir / RUN_INFO_NAME).read_text())
    problem = load_problem(run_dir / PROBLEM_NAME)
    model = for_problem(load_fn(run_dir / MODEL_DIR_NAME, problem), problem)
    if isinstance(model, nn.Module):
        model.eval()
    return model, problem, run_info


def load_trained_decoder(
    run_dir: Path, spec: ModelSpec, *, backbone_dir: Path | None, device: torch.device | str
) -> tuple[Any, DecodingProblem, dict[str, Any]]:
    """`load_trained` for a run written by `train_decoder` (same spec and backbone)."""

    def load_fn(model_dir: Path, problem: DecodingProblem) -> Any:
        return load_decoder(
            spec,
            problem.n_neurons,
            problem.n_outputs,
            backbone_dir=backbone_dir,
            out_dir=model_dir,
            device=str(device),
        )

    return load_trained(Path(run_dir), load_fn)
