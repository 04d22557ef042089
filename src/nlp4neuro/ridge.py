"""Frame-wise ridge regression with the penalty chosen on validation frames (no torch).

`fit_ridge` is the one ridge fit of the package: `nlp4neuro.models.RidgeDecoder` (the ridge
baseline) and `nlp4neuro.null` (its circular-shift null distribution) both call it, so the null
is fitted exactly like the model it is a null for. Each penalty in `alphas` is fitted with
scikit-learn's `Ridge` on the training frames and scored by validation RMSE pooled over outputs;
the best fit (on training frames only; validation frames only select) is kept, the first of
equal RMSEs winning.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.linear_model import Ridge

logger = logging.getLogger(__name__)


def check_frames(name: str, array: np.ndarray, width: int | None) -> np.ndarray:
    """`array` as float64 (frames, width), or ValueError naming `name`, expected and found."""
    array = np.asarray(array, dtype=np.float64)
    if array.ndim != 2 or (width is not None and array.shape[1] != width):
        want = f"(frames, {width})" if width is not None else "(frames, columns)"
        raise ValueError(f"{name}: expected a 2-D array of shape {want}, found {array.shape}")
    if array.shape[0] == 0:
        raise ValueError(f"{name}: expected at least one frame, found 0")
    if not np.isfinite(array).all():
        raise ValueError(f"{name}: expected finite values, found NaN or inf")
    return array


def check_frame_pair(
    name: str, x: np.ndarray, y: np.ndarray, n_in: int | None, n_out: int | None
) -> tuple[np.ndarray, np.ndarray]:
    """Inputs `x_<name>` (T, n_in) and targets `y_<name>` (T, n_out) of one split, as float64."""
    x = check_frames(f"x_{name}", x, n_in)
    y = check_frames(f"y_{name}", y, n_out)
    if x.shape[0] != y.shape[0]:
        raise ValueError(
            f"x_{name}, y_{name}: expected the same number of frames, "
            f"found {x.shape[0]} and {y.shape[0]}"
        )
    return x, y


@dataclass(frozen=True, eq=False)
class RidgeFit:
    """A fitted ridge: y = x @ coef.T + intercept.

    Attributes:
        coef: (K, N) float64 weights.
        intercept: (K,) float64 offsets (units of y).
        alpha: the chosen penalty.
        val_rmse: {alpha: validation RMSE pooled over outputs} for every penalty tried.
    """

    coef: np.ndarray
    intercept: np.ndarray
    alpha: float
    val_rmse: dict[float, float]

    def predict(self, x: np.ndarray) -> np.ndarray:
        """(T, N) float64 frames -> (T, K) float64 predictions."""
        return x @ self.coef.T + self.intercept


def fit_ridge(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    alphas: Sequence[float],
) -> RidgeFit:
    """Fit (T_train, N) -> (T_train, K) once per penalty, keep the lowest validation RMSE.

    Args:
        x_train, y_train, x_val, y_val: checked float64 frames (`check_frame_pair`).
        alphas: penalties to try, in order (at least one).
    """
    if len(alphas) == 0:
        raise ValueError("alphas: expected at least one ridge penalty, found none")
    n_outputs = y_train.shape[1]
    best = None
    val_rmse: dict[float, float] = {}
    for alpha in alphas:
        model = Ridge(alpha=alpha).fit(x_train, y_train)
        # coef_ is (N,) for a single output: keep predictions (T, K) like the targets
        pred = model.predict(x_val).reshape(len(x_val), -1)
        rmse = float(np.sqrt(np.mean((pred - y_val) ** 2)))
        val_rmse[alpha] = rmse
        logger.info("ridge alpha %g: validation RMSE %.5f", alpha, rmse)
        if best is None or rmse < best[0]:
            best = (rmse, alpha, model)
    assert best is not None
    _, alpha, model = best
    logger.info("ridge: chose alpha %g", alpha)
    return RidgeFit(
        coef=np.asarray(model.coef_, dtype=np.float64).reshape(n_outputs, -1),
        intercept=np.asarray(model.intercept_, dtype=np.float64).reshape(n_outputs),
        alpha=alpha,
        val_rmse=val_rmse,
    )
