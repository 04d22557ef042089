"""Classic decoders beside the language models.

Window models (torch, same contract as `LLMDecoder`: (batch, window, N) -> (batch, window, K)):
`RecurrentDecoder` (LSTM/GRU), `ReservoirDecoder` (echo-state network, only the readout
trains) and `TransformerDecoder` (small transformer encoder trained from scratch).
Frame-wise models (numpy, (T, N) -> (T, K)): `RidgeDecoder` and `MeanDecoder`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch
from torch import nn

from nlp4neuro.errors import InputFileError
from nlp4neuro.ridge import check_frame_pair, check_frames, fit_ridge


def causal_mask(window: int, device: torch.device) -> torch.Tensor:
    """(window, window) bool mask, True where attention is forbidden (frame t sees <= t)."""
    return torch.ones(window, window, dtype=torch.bool, device=device).triu(1)


def _check_window_input(x: torch.Tensor, n_neurons: int) -> None:
    if x.ndim != 3 or x.shape[-1] != n_neurons:
        raise ValueError(
            f"input: expected shape (batch, window, {n_neurons}), found {tuple(x.shape)}"
        )


class RecurrentDecoder(nn.Module):
    """LSTM or GRU over the frames of a window with a linear readout at every frame (causal).

    Args:
        n_neurons: N inputs per frame.
        n_outputs: K outputs per frame.
        cell: "lstm" or "gru".
        hidden_size: recurrent units per layer (the reference LSTM uses 256).
        num_layers: stacked recurrent layers.
        dropout: dropout between stacked layers (ignored for one layer).
    """

    def __init__(
        self,
        n_neurons: int,
        n_outputs: int,
        *,
        cell: str = "lstm",
        hidden_size: int = 256,
        num_layers: int = 1,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        recurrent = {"lstm": nn.LSTM, "gru": nn.GRU}.get(cell)
        if recurrent is None:
            raise ValueError(f"cell: expected 'lstm' or 'gru', found {cell!r}")
        self.n_neurons = n_neurons
        self.n_outputs = n_outputs
        self.family = "causal"
        self.rnn = recurrent(
            n_neurons,
            hidden_size,
            num_layers=num_layers,
            batch_first=True,
            dropout=dropout if num_layers > 1 else 0.0,
        )
        self.readout = nn.Linear(hidden_size, n_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, window, N) -> (batch, window, K); each window starts from a zero state."""
        _check_window_input(x, self.n_neurons)
        hidden, _ = self.rnn(x)
        return self.readout(hidden)


class ReservoirDecoder(nn.Module):
    """Echo-state network: fixed random leaky-tanh reservoir, trained linear readout.

    h_t = (1 - leak) h_{t-1} + leak tanh(W_in x_t + W h_{t-1}), h_0 = 0 at each window start;
    y_t = readout(h_t). W_in ~ U(-1, 1) * input_scaling / sqrt(N) so a z-scored frame gives
    unit-scale drive whatever the neuron count (the reference code's unscaled U(-0.5, 0.5)
    weights saturate tanh with ~10^4 neurons); W ~ N(0, 1) rescaled to `spectral_radius`.
    W_in and W are frozen parameters (saved with the model, excluded from training); the random
    draw uses torch's global generator, so seed it first (`build_decoder` does).

    Args:
        n_neurons, n_outputs: input and output widths.
        hidden_size: reservoir units (the reference uses 256).
        spectral_radius: largest |eigenvalue| of W.
        leak: leak rate in (0, 1].
        input_scaling: input gain (see above).
    """

    def __init__(
        self,
        n_neurons: int,
        n_outputs: int,
        *,
        hidden_size: int = 256,
        spectral_radius: float = 0.9,
        leak: float = 0.9,
        input_scaling: float = 1.0,
    ) -> None:
        super().__init__()
        self.n_neurons = n_neurons
        self.n_outputs = n_outputs
        self.family = "causal"
        self.leak = float(leak)
        w_in = (torch.rand(hidden_size, n_neurons) * 2.0 - 1.0) * input_scaling
        w_in /= math.sqrt(n_neurons)
        w = torch.randn(hidden_size, hidden_size)
        radius = torch.linalg.eigvals(w.double()).abs().max().float()
        w *= spectral_radius / radius
        self.w_in = nn.Parameter(w_in, requires_grad=False)
        self.w_rec = nn.Parameter(w, requires_grad=False)
        self.readout = nn.Linear(hidden_size, n_outputs)

    def states(self, x: torch.Tensor) -> torch.Tensor:
        """Reservoir states: (batch, window, N) -> (batch, window, hidden_size)."""
        _check_window_input(x, self.n_neurons)
        drive = x @ self.w_in.T  # all frames' input drive in one matmul
        h = drive.new_zeros(x.shape[0], self.w_rec.shape[0])
        states = []
        for t in range(x.shape[1]):  # windows are short (5-20 frames)
            h = (1.0 - self.leak) * h + self.leak * torch.tanh(drive[:, t] + h @ self.w_rec.T)
            states.append(h)
        return torch.stack(states, dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, window, N) -> (batch, window, K)."""
        return self.readout(self.states(x))


class TransformerDecoder(nn.Module):
    """Small transformer encoder trained from scratch (bidirectional within the window, or
    causal with `past_only`, set by `build.see_past_only` when decoding ahead).

    Frames are projected to d_model, a learned positional embedding is added, pre-norm
    encoder layers (feed-forward width 4 d_model) mix the window, a linear readout decodes
    every frame.

    Args:
        n_neurons, n_outputs: input and output widths.
        d_model: token width; n_heads must divide it.
        n_heads: attention heads.
        num_layers: encoder layers.
        dropout: dropout inside the encoder layers.
        max_window: longest window covered by the positional embedding.
    """

    def __init__(
        self,
        n_neurons: int,
        n_outputs: int,
        *,
        d_model: int = 256,
        n_heads: int = 4,
        num_layers: int = 1,
        dropout: float = 0.0,
        max_window: int = 64,
    ) -> None:
        super().__init__()
        self.n_neurons = n_neurons
        self.n_outputs = n_outputs
        self.family = "encoder"
        self.past_only = False
        self.input_proj = nn.Linear(n_neurons, d_model)
        self.position = nn.Parameter(torch.randn(max_window, d_model) * 0.02)
        layer = nn.TransformerEncoderLayer(
            d_model,
            n_heads,
            dim_feedforward=4 * d_model,
            dropout=dropout,
            batch_first=True,
            norm_first=True,
        )
        self.encoder = nn.TransformerEncoder(
            layer, num_layers, norm=nn.LayerNorm(d_model), enable_nested_tensor=False
        )
        self.readout = nn.Linear(d_model, n_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, window, N) -> (batch, window, K)."""
        _check_window_input(x, self.n_neurons)
        window = x.shape[1]
        if window > self.position.shape[0]:
            raise ValueError(
                f"window: expected at most max_window={self.position.shape[0]} frames, "
                f"found {window}"
            )
        tokens = self.input_proj(x) + self.position[:window]
        if not self.past_only:
            return self.readout(self.encoder(tokens))
        mask = causal_mask(window, x.device)
        return self.readout(self.encoder(tokens, mask=mask, is_causal=True))


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise InputFileError(path, "a saved decoder's JSON description", "no such file")
    return json.loads(path.read_text())


def _read_npz(path: Path, keys: tuple[str, ...]) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise InputFileError(path, "a saved decoder's .npz arrays", "no such file")
    with np.load(path) as data:
        missing = [k for k in keys if k not in data]
        if missing:
            raise InputFileError(path, f"arrays {list(keys)}", f"missing {missing}")
        return {k: data[k] for k in keys}


class RidgeDecoder:
    """Frame-wise ridge regression (sklearn), penalty chosen on the validation frames.

    Each alpha in `alphas` is fitted on the training frames and scored by validation RMSE
    (pooled over outputs); the best model (fitted on training frames only, like the torch
    models, whose validation frames are only used for selection) is kept. The fit is
    `nlp4neuro.ridge.fit_ridge`, which the circular-shift null (`nlp4neuro.null`) also uses.

    Attributes after `fit`: coef_ (K, N), intercept_ (K,), alpha_, val_rmse_ {alpha: RMSE}.
    """

    kind = "ridge"
    spec = None  # set to the ModelSpec by build_decoder

    def __init__(self, n_neurons: int, n_outputs: int, alphas: tuple[float, ...]) -> None:
        self.n_neurons = n_neurons
        self.n_outputs = n_outputs
        self.alphas = tuple(float(a) for a in alphas)
        self.coef_: np.ndarray | None = None
        self.intercept_: np.ndarray | None = None
        self.alpha_: float | None = None
        self.val_rmse_: dict[float, float] = {}

    @property
    def n_parameters(self) -> int:
        """Fitted weights: K * N coefficients + K intercepts."""
        return self.n_outputs * (self.n_neurons + 1)

    def fit(
        self, x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray
    ) -> RidgeDecoder:
        """Fit on (T_train, N) -> (T_train, K) frames, choose alpha on (T_val, N) -> (T_val, K)."""
        x_train, y_train = check_frame_pair(
            "train", x_train, y_train, self.n_neurons, self.n_outputs
        )
        x_val, y_val = check_frame_pair("val", x_val, y_val, self.n_neurons, self.n_outputs)
        fitted = fit_ridge(x_train, y_train, x_val, y_val, self.alphas)
        self.coef_, self.intercept_ = fitted.coef, fitted.intercept
        self.alpha_, self.val_rmse_ = fitted.alpha, fitted.val_rmse
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        """(T, N) frames -> (T, K) float64 predictions."""
        if self.coef_ is None or self.intercept_ is None:
            raise RuntimeError("RidgeDecoder.predict called before fit")
        x = check_frames("x", x, self.n_neurons)
        return x @ self.coef_.T + self.intercept_

    def save(self, out_dir: str | Path) -> None:
        """Write `ridge.npz` (coef, intercept) and `ridge.json` (alpha, validation scores)."""
        if self.coef_ is None or self.intercept_ is None:
            raise RuntimeError("RidgeDecoder.save called before fit")
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        np.savez(out_dir / "ridge.npz", coef=self.coef_, intercept=self.intercept_)
        meta = {
            "n_neurons": self.n_neurons,
            "n_outputs": self.n_outputs,
            "alphas": list(self.alphas),
            "alpha": self.alpha_,
            "val_rmse": [[a, r] for a, r in self.val_rmse_.items()],
        }
        (out_dir / "ridge.json").write_text(json.dumps(meta, indent=2))

    @classmethod
    def load(cls, out_dir: str | Path) -> RidgeDecoder:
        """Read a folder written by `save`."""
        out_dir = Path(out_dir)
        meta = _read_json(out_dir / "ridge.json")
        arrays = _read_npz(out_dir / "ridge.npz", ("coef", "intercept"))
        model = cls(meta["n_neurons"], meta["n_outputs"], tuple(meta["alphas"]))
        expected = (model.n_outputs, model.n_neurons)
        if arrays["coef"].shape != expected:
            raise InputFileError(
                out_dir / "ridge.npz", f"coef of shape {expected}", arrays["coef"].shape
            )
        model.coef_ = arrays["coef"]
        model.intercept_ = arrays["intercept"]
        model.alpha_ = meta["alpha"]
        model.val_rmse_ = {float(a): float(r) for a, r in meta["val_rmse"]}
        return model


class MeanDecoder:
    """Predicts the training mean of each output at every frame (the chance-level baseline)."""

    kind = "mean"
    spec = None  # set to the ModelSpec by build_decoder

    def __init__(self, n_neurons: int, n_outputs: int) -> None:
        self.n_neurons = n_neurons
        self.n_outputs = n_outputs
        self.mean_: np.ndarray | None = None

    @property
    def n_parameters(self) -> int:
        """K means."""
        return self.n_outputs

    def fit(
        self, x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray
    ) -> MeanDecoder:
        """Store the mean of y_train (T_train, K); x and validation frames are only checked."""
        _, y_train = check_frame_pair("train", x_train, y_train, self.n_neurons, self.n_outputs)
        check_frame_pair("val", x_val, y_val, self.n_neurons, self.n_outputs)
        self.mean_ = y_train.mean(axis=0)
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        """(T, N) frames -> (T, K) float64, every row the training mean."""
        if self.mean_ is None:
            raise RuntimeError("MeanDecoder.predict called before fit")
        x = check_frames("x", x, self.n_neurons)
        return np.tile(self.mean_, (x.shape[0], 1))

    def save(self, out_dir: str | Path) -> None:
        """Write `mean.npz` (mean) and `mean.json` (shapes)."""
        if self.mean_ is None:
            raise RuntimeError("MeanDecoder.save called before fit")
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        np.savez(out_dir / "mean.npz", mean=self.mean_)
        meta = {"n_neurons": self.n_neurons, "n_outputs": self.n_outputs}
        (out_dir / "mean.json").write_text(json.dumps(meta, indent=2))

    @classmethod
    def load(cls, out_dir: str | Path) -> MeanDecoder:
        """Read a folder written by `save`."""
        out_dir = Path(out_dir)
        meta = _read_json(out_dir / "mean.json")
        arrays = _read_npz(out_dir / "mean.npz", ("mean",))
        model = cls(meta["n_neurons"], meta["n_outputs"])
        if arrays["mean"].shape != (model.n_outputs,):
            raise InputFileError(
                out_dir / "mean.npz", f"mean of shape ({model.n_outputs},)", arrays["mean"].shape
            )
        model.mean_ = arrays["mean"]
        return model
