"""Plain-numpy twins of :mod:`varprop.rnn_kernels` (no compiled code): a Python loop over
the steps with numpy matmuls, in float64, returned in the input dtype. Same signatures
and result types; the activation is applied with its numpy record. For the tests to
compare the kernels with, and as a readable statement of what they compute."""

from __future__ import annotations

from typing import Any

import numpy as np

from .activations import Activation, get_activation
from .rnn_kernels import RNNForward, RNNGradients

__all__ = ["rnn_forward", "rnn_backward"]


def _f64(a: Any) -> np.ndarray:
    return np.asarray(a, np.float64)


def rnn_forward(x: np.ndarray, w_x: np.ndarray, w_h: np.ndarray, b: np.ndarray | None = None,
                h0: np.ndarray | None = None, activation: "str | Activation" = "tanh", *,
                n_threads: int | None = None) -> RNNForward:
    """``z_t = x_t W_x + b + h_{t-1} W_h``, ``h_t = phi(z_t)``, ``h_{-1} = h0`` (zeros if
    None); ``n_threads`` is accepted and ignored."""
    act = get_activation(activation)
    steps, batch, _ = x.shape
    hidden = w_h.shape[0]
    prev = np.zeros((batch, hidden)) if h0 is None else _f64(h0)
    bias = np.zeros(hidden) if b is None else _f64(b)
    z = np.zeros((steps, batch, hidden))
    h = np.zeros((steps, batch, hidden))
    for t in range(steps):
        z[t] = _f64(x[t]) @ _f64(w_x) + bias + prev @ _f64(w_h)
        h[t] = act(z[t])
        prev = h[t]
    return RNNForward(z.astype(x.dtype), h.astype(x.dtype))


def rnn_backward(x: np.ndarray, w_x: np.ndarray, w_h: np.ndarray, z: np.ndarray,
                 h: np.ndarray, grad_h: np.ndarray, h0: np.ndarray | None = None,
                 activation: "str | Activation" = "tanh", *,
                 n_threads: int | None = None) -> RNNGradients:
    """Backward through time: ``dz_t = (grad_h_t + dz_{t+1} W_h^T) phi'(z_t)`` from the
    last step down, then the gradients of the inputs and the weights."""
    act = get_activation(activation)
    steps, batch, n_in = x.shape
    hidden = w_h.shape[0]
    wx, wh = _f64(w_x), _f64(w_h)
    prev0 = np.zeros((batch, hidden)) if h0 is None else _f64(h0)
    grad_z = np.zeros((steps, batch, hidden))
    grad_x = np.zeros((steps, batch, n_in))
    grad_w_x = np.zeros((n_in, hidden))
    grad_w_h = np.zeros((hidden, hidden))
    grad_b = np.zeros(hidden)
    carried = np.zeros((batch, hidden))  # dz_{t+1} W_h^T: the gradient through h_t
    for t in range(steps - 1, -1, -1):
        dz = (_f64(grad_h[t]) + carried) * act.derivative(_f64(z[t]))
        grad_z[t] = dz
        prev = prev0 if t == 0 else _f64(h[t - 1])
        grad_x[t] = dz @ wx.T
        grad_w_x += _f64(x[t]).T @ dz
        grad_w_h += prev.T @ dz
        grad_b += dz.sum(axis=0)
        carried = dz @ wh.T
    dtype = x.dtype
    return RNNGradients(grad_x.astype(dtype), carried.astype(dtype), grad_w_x.astype(dtype),
                        grad_w_h.astype(dtype), grad_b.astype(dtype), grad_z.astype(dtype))
