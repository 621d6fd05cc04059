"""Plain-numpy twins of every kernel: the oracle of the tests and a readable fallback.

Each function takes the same arguments and returns the same result type as its twin in
:mod:`varprop.kernels`; the activation is evaluated in float64 and rounded once to the
input dtype, as the C kernels do.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._results import DenseForward, DenseGradients, LayerStats, pooled
from .activations import Activation, get_activation

__all__ = ["dense_forward", "dense_backward", "activation_apply"]


def activation_apply(x: np.ndarray, activation: "str | Activation" = "relu", *,
                     derivative: bool = False, **activation_params: Any) -> np.ndarray:
    """phi(x) or phi'(x), computed in float64 and returned in x's dtype."""
    act = get_activation(activation, **activation_params)
    x64 = np.asarray(x, np.float64)
    out = act.derivative(x64) if derivative else act(x64)
    return out.astype(x.dtype)


def batch_stats(z: np.ndarray, a: np.ndarray) -> LayerStats:
    """Per-unit and pooled batch mean/variance (ddof=0) of z and a, in float64."""
    n_out = z.shape[1]
    if z.shape[0] == 0:
        return LayerStats.empty(n_out)
    z64, a64 = z.astype(np.float64), a.astype(np.float64)
    z_mean, z_var = z64.mean(axis=0), z64.var(axis=0)
    a_mean, a_var = a64.mean(axis=0), a64.var(axis=0)
    return LayerStats(z.shape[0], z_mean, z_var, a_mean, a_var, *pooled(z_mean, z_var),
                      *pooled(a_mean, a_var))


def dense_forward(x, w, b=None, activation="relu", *, stats=False, n_threads=None,
                  **activation_params) -> DenseForward:
    """``z = x @ w + b``, ``a = phi(z)`` in numpy (``n_threads`` is accepted and ignored)."""
    z = x @ w
    if b is not None:
        z = z + b
    a = activation_apply(z, activation, **activation_params)
    return DenseForward(z, a, batch_stats(z, a) if stats else None)


def dense_backward(x, w, z, grad_a, activation="relu", *, n_threads=None,
                   **activation_params) -> DenseGradients:
    """Gradients of ``sum(grad_a * phi(z))`` in numpy."""
    grad_z = grad_a * activation_apply(z, activation, derivative=True, **activation_params)
    grad_b = grad_z.sum(axis=0, dtype=np.float64).astype(x.dtype)
    return DenseGradients(grad_z @ w.T, x.T @ grad_z, grad_b, grad_z)
