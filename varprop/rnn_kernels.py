"""Simple (Elman) recurrent layer on fused kernels: the validated public face of
``varprop._rnn``.

``h_t = phi(x_t W_x + h_{t-1} W_h + b)`` for ``t = 0 .. T-1``, with ``h_{-1} = h0``
(zeros when None). :func:`rnn_forward` computes the input projection of every step as
one GEMM over the ``T * B`` rows (tiled over the OpenMP threads), then runs the whole
time loop in C: per batch tile, one BLAS call ``z_t += h_{t-1} W_h`` and the dense
kernels' activation epilogue ``h_t = phi(z_t)`` per step, on the same thread from the
first step to the last (rows of the batch never interact, so no step waits for another
thread, and ``W_h`` stays in that core's cache). :func:`rnn_backward` runs backward
through time the same way, ``dz_t = (grad_h_t + dz_{t+1} W_h^T) * phi'(z_t)`` from
``t = T-1`` down to 0, then forms the weight and input gradients as whole-sequence GEMMs.

Rules (those of :mod:`varprop.kernels`): float32 or float64, one dtype for all arrays
(TypeError otherwise, never a silent upcast); arrays of any memory order (copied to C
order where needed); outputs are new C-contiguous arrays of the input dtype; NaN and inf
propagate as IEEE arithmetic says. Results are bitwise identical for any ``n_threads``:
the tile grids depend on the shapes only, every output element is written by one task,
and the bias gradient's per-block partial sums (float64) are added in block order.

Layout (time-major): ``x (T, B, F)``, ``h0 (B, H)``, ``W_x (F, H)``, ``W_h (H, H)``,
``b (H,)``; ``z`` and ``h`` ``(T, B, H)``. The plain-numpy twins are in
:mod:`varprop._reference_rnn`. Without the compiled extension this module imports and
every kernel raises :class:`varprop.kernels.ExtensionMissingError`.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from ._blas import single_threaded_blas
from ._threads import resolve_n_threads
from .activations import Activation
from .kernels import (_BACKWARD_BLOCK, ExtensionMissingError, _ceil_div, _dtype_of,
                      _missing_message, _resolve_activation, _same_dtype, forward_tiles)

__all__ = ["rnn_forward", "rnn_backward", "RNNForward", "RNNGradients", "batch_tile",
           "built_with_openmp"]

_INT32_MAX = 2**31 - 1  # BLAS (LP64) takes 32-bit dimensions
#: The recurrence cuts the batch into tiles of at most this many rows: one step of a tile
#: is a (rows x H) x (H x H) GEMM, and below ~16 rows BLAS spends more on packing W_h
#: than on the product, above it a tile is work one core could share.
_BATCH_TILE = 16
#: Tiles of fewer rows than this are not worth a thread of their own.
_MIN_BATCH_TILE = 8
_TARGET_TILES = 8  # batch tiles wanted: up to 8 cores busy in the recurrence

_rnn_module: ModuleType | None = None


def _extension() -> ModuleType:
    """``varprop._rnn``, imported on first use; ExtensionMissingError without it."""
    global _rnn_module
    if _rnn_module is None:
        try:
            from . import _rnn
        except ImportError as exc:
            raise ExtensionMissingError(_missing_message(
                exc, "_rnn", "the recurrent kernels (rnn_forward, rnn_backward)")) from exc
        _rnn_module = _rnn
    return _rnn_module


def built_with_openmp() -> bool:
    """True when the recurrent loops were built with OpenMP (ExtensionMissingError
    without the compiled extension)."""
    return bool(_extension().built_with_openmp())


@dataclass(frozen=True)
class RNNForward:
    """Pre-activations ``z`` and states ``h`` of every step, ``(T, B, H)``."""

    z: np.ndarray
    h: np.ndarray


@dataclass(frozen=True)
class RNNGradients:
    """Gradients of ``L`` given ``grad_h = dL/dh_t``: with respect to x ``(T, B, F)``, h0
    ``(B, H)``, W_x ``(F, H)``, W_h ``(H, H)``, b ``(H,)`` and each step's
    pre-activation, ``grad_z = dL/dz_t`` ``(T, B, H)`` (per-step gradient variance)."""

    grad_x: np.ndarray
    grad_h0: np.ndarray
    grad_w_x: np.ndarray
    grad_w_h: np.ndarray
    grad_b: np.ndarray
    grad_z: np.ndarray


def batch_tile(batch: int) -> int:
    """Rows per batch tile of the recurrence (a function of the batch alone): about
    batch / 8 rows, between 8 and 16, never more than the batch."""
    return min(batch, max(_MIN_BATCH_TILE, min(_BATCH_TILE, _ceil_div(batch, _TARGET_TILES))))


def _array(name: str, arr: Any, ndim: int, what: str) -> np.ndarray:
    """A float32/float64 array of rank ``ndim`` with BLAS-sized dimensions >= 1."""
    _dtype_of(name, arr)
    if arr.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D {what}, got shape {arr.shape}")
    if min(arr.shape) < 1:
        raise ValueError(f"{name} must have every dimension >= 1 {what}, got shape "
                         f"{arr.shape}")
    if max(arr.shape) > _INT32_MAX:
        raise ValueError(f"{name} has a dimension over 2**31 - 1: {arr.shape}")
    return arr


def _weights(x: Any, w_x: Any, w_h: Any) -> tuple[int, int, int, int]:
    """(T, B, F, H) from x, W_x and W_h, checked against each other."""
    steps, batch, n_in = _array("x", x, 3, "(T, B, F)").shape
    if steps * batch > _INT32_MAX:
        raise ValueError(f"x has T B = {steps * batch} rows (shape {x.shape}): at most "
                         "2**31 - 1")
    hidden = _array("w_h", w_h, 2, "(H, H)").shape[0]
    if w_h.shape != (hidden, hidden):
        raise ValueError(f"w_h must be square (H, H), got shape {w_h.shape}")
    if _array("w_x", w_x, 2, "(F, H)").shape != (n_in, hidden):
        raise ValueError(f"w_x must have shape (F, H) = {(n_in, hidden)} (x has F = {n_in} "
                         f"features, w_h has H = {hidden} units), got {w_x.shape}")
    return steps, batch, n_in, hidden


def _initial_state(h0: Any, batch: int, hidden: int, dtype: np.dtype) -> np.ndarray:
    """h0 in C order, or an empty (0, H) array standing for zeros."""
    if h0 is None:
        return np.empty((0, hidden), dtype)
    if _array("h0", h0, 2, "(B, H)").shape != (batch, hidden):
        raise ValueError(f"h0 must have shape (B, H) = {(batch, hidden)}, got {h0.shape}")
    return np.ascontiguousarray(h0)


def _sequence(name: str, arr: Any, shape: tuple[int, ...]) -> np.ndarray:
    """A (T, B, H) argument of rnn_backward in C order."""
    if _array(name, arr, 3, "(T, B, H)").shape != shape:
        raise ValueError(f"{name} must have shape (T, B, H) = {shape}, got {arr.shape}")
    return np.ascontiguousarray(arr)


def rnn_forward(
    x: np.ndarray,
    w_x: np.ndarray,
    w_h: np.ndarray,
    b: np.ndarray | None = None,
    h0: np.ndarray | None = None,
    activation: "str | Activation" = "tanh",
    *,
    n_threads: int | None = None,
) -> RNNForward:
    """Forward pass of a simple RNN: ``z_t = x_t W_x + b + h_{t-1} W_h``, ``h_t = phi(z_t)``.

    Args:
        x: inputs, ``(T, B, F)``, time-major, float32 or float64 (T, B, F >= 1).
        w_x: input weights ``(F, H)``, x's dtype.
        w_h: recurrent weights ``(H, H)``.
        b: bias ``(H,)``, or None for no bias.
        h0: initial state ``(B, H)``, or None for zeros.
        activation: a name from :data:`varprop.activations.ACTIVATION_NAMES` (``tanh``,
            ``relu``, ``linear`` alias ``identity``, ``sigmoid``, ...) or an
            :class:`~varprop.activations.Activation`.
        n_threads: OpenMP threads; None uses :func:`varprop.get_num_threads`.

    Returns:
        :class:`RNNForward` with ``z`` and ``h``, new ``(T, B, H)`` arrays of x's dtype.

    Example:
        >>> x = np.ones((5, 2, 3)); w_x = np.full((3, 4), 0.1); w_h = np.eye(4) * 0.5
        >>> rnn_forward(x, w_x, w_h).h.shape
        (5, 2, 4)
    """
    ext = _extension()
    arrays = {"x": x, "w_x": w_x, "w_h": w_h}
    arrays.update({k: v for k, v in (("b", b), ("h0", h0)) if v is not None})
    dtype = _same_dtype(arrays)
    steps, batch, n_in, hidden = _weights(x, w_x, w_h)
    if b is not None and _array("b", b, 1, "(H,)").shape != (hidden,):
        raise ValueError(f"b must have shape (H,) = ({hidden},), got {b.shape}")
    state = _initial_state(h0, batch, hidden, dtype)
    act = _resolve_activation(activation, {})
    threads = resolve_n_threads(n_threads)

    z = np.empty((steps, batch, hidden), dtype)
    h = np.empty((steps, batch, hidden), dtype)
    bias = np.empty(0, dtype) if b is None else np.ascontiguousarray(b)
    tiles = (batch_tile(batch), *forward_tiles(steps * batch, hidden))
    p0, p1 = act.kernel_params
    with single_threaded_blas():
        ext.forward(np.ascontiguousarray(x), np.ascontiguousarray(w_x),
                    np.ascontiguousarray(w_h), bias, state, z, h, act.kernel_id, p0, p1,
                    tiles, threads)
    return RNNForward(z, h)


def rnn_backward(
    x: np.ndarray,
    w_x: np.ndarray,
    w_h: np.ndarray,
    z: np.ndarray,
    h: np.ndarray,
    grad_h: np.ndarray,
    h0: np.ndarray | None = None,
    activation: "str | Activation" = "tanh",
    *,
    n_threads: int | None = None,
) -> RNNGradients:
    """Backward through time of :func:`rnn_forward`.

    ``dz_t = (grad_h_t + dz_{t+1} W_h^T) * phi'(z_t)`` from ``t = T-1`` down to 0 (no
    ``dz_T`` term at the last step); then ``grad_x = dZ W_x^T``, ``grad_w_x = X^T dZ``,
    ``grad_w_h = sum_t h_{t-1}^T dz_t`` (``h_{-1} = h0``), ``grad_b = sum dZ`` (summed in
    float64, returned in the input dtype) and ``grad_h0 = dz_0 W_h^T``.

    Args:
        x, w_x, w_h, h0, activation, n_threads: as given to :func:`rnn_forward`.
        z, h: its outputs, ``(T, B, H)``.
        grad_h: ``dL/dh_t`` from outside the recurrence, ``(T, B, H)`` (zeros at steps
            without a loss).

    Returns:
        :class:`RNNGradients` (new arrays of x's dtype).
    """
    ext = _extension()
    arrays = {"x": x, "w_x": w_x, "w_h": w_h, "z": z, "h": h, "grad_h": grad_h}
    if h0 is not None:
        arrays["h0"] = h0
    dtype = _same_dtype(arrays)
    steps, batch, n_in, hidden = _weights(x, w_x, w_h)
    shape = (steps, batch, hidden)
    zc, hc, gc = (_sequence(n, a, shape) for n, a in (("z", z), ("h", h), ("grad_h", grad_h)))
    state = _initial_state(h0, batch, hidden, dtype)
    act = _resolve_activation(activation, {})
    threads = resolve_n_threads(n_threads)

    rows = steps * batch
    block = max(1, min(rows, _BACKWARD_BLOCK // hidden))
    grad_z = np.empty(shape, dtype)
    grad_x = np.empty((steps, batch, n_in), dtype)
    grad_h0 = np.empty((batch, hidden), dtype)
    grad_w_x = np.empty((n_in, hidden), dtype)
    grad_w_h = np.empty((hidden, hidden), dtype)
    partials = np.empty((_ceil_div(rows, block), hidden), np.float64)
    tiles = (batch_tile(batch), *forward_tiles(rows, n_in), *forward_tiles(n_in, hidden),
             *forward_tiles(hidden, hidden), block)
    p0, p1 = act.kernel_params
    with single_threaded_blas():
        ext.backward(np.ascontiguousarray(x), np.ascontiguousarray(w_x),
                     np.ascontiguousarray(w_h), zc, hc, gc, state, grad_z, grad_x, grad_h0,
                     grad_w_x, grad_w_h, partials, act.kernel_id, p0, p1, tiles, threads)
    grad_b = np.sum(partials, axis=0).astype(dtype)  # blocks in order: thread-independent
    return RNNGradients(grad_x, grad_h0, grad_w_x, grad_w_h, grad_b, grad_z)
