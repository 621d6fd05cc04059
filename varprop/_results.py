"""Result types of the dense kernels, shared by the compiled path and its numpy twin."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class LayerStats:
    """Batch statistics of one dense layer's pre-activation z and activation a.

    Per-unit arrays have length n_out and are float64; variances are the batch's own
    (population, ``ddof=0``). The pooled values treat all ``n_samples * n_out`` entries of
    the layer as one sample. With an empty batch ``n_samples`` is 0 and every statistic is
    NaN: there is nothing to estimate.
    """

    n_samples: int
    z_mean: np.ndarray
    z_var: np.ndarray
    a_mean: np.ndarray
    a_var: np.ndarray
    z_pooled_mean: float
    z_pooled_var: float
    a_pooled_mean: float
    a_pooled_var: float

    @classmethod
    def empty(cls, n_out: int) -> "LayerStats":
        nan = np.full(n_out, np.nan)
        return cls(0, nan, nan.copy(), nan.copy(), nan.copy(),
                   float("nan"), float("nan"), float("nan"), float("nan"))


@dataclass(frozen=True)
class DenseForward:
    """``z = x @ w + b`` and ``a = phi(z)``; ``stats`` is a :class:`LayerStats` or None."""

    z: np.ndarray
    a: np.ndarray
    stats: LayerStats | None = None


@dataclass(frozen=True)
class DenseGradients:
    """Gradients of ``sum(grad_a * phi(x @ w + b))`` with respect to x, w, b and z
    (``grad_z = grad_a * phi'(z)``, which the kernel forms anyway)."""

    grad_x: np.ndarray
    grad_w: np.ndarray
    grad_b: np.ndarray
    grad_z: np.ndarray


def pooled(mean: np.ndarray, var: np.ndarray) -> tuple[float, float]:
    """Mean and variance of all entries from equal-count per-column means and variances."""
    if mean.size == 0:
        return float("nan"), float("nan")
    grand = float(mean.mean())
    return grand, float(var.mean() + np.mean((mean - grand) ** 2))
