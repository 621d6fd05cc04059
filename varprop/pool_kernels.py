"""Pooling kernels, channels last: max and average pooling forward and backward, the
validated public face of ``varprop._conv``'s pooling loops, on the geometry of
:mod:`varprop.conv_kernels` (the same rules: float32 or float64, any memory order in,
new C-contiguous arrays out, bitwise identical for any ``n_threads``; twins in
:mod:`varprop._reference_conv`)."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ._threads import resolve_n_threads
from ._validate import boolean, shape_tuple
from .conv_kernels import _Geo, _array, _extension, _geo

__all__ = ["max_pool_forward", "max_pool_backward", "avg_pool_forward", "avg_pool_backward"]


def _pool_input(x: Any, pool_size: Any, stride: Any, padding: Any,
                n_threads: Any) -> tuple[np.ndarray, _Geo, int]:
    _extension()
    geo = _geo(_array("x", x, (3, 4)).shape, pool_size, stride, padding, None)
    return np.ascontiguousarray(x).reshape(geo.image), geo, resolve_n_threads(n_threads)


def max_pool_forward(x: np.ndarray, pool_size: Any, *, stride: Any = None,
                     padding: Any = 0, n_threads: int | None = None
                     ) -> tuple[np.ndarray, np.ndarray]:
    """``(y, argmax)``: the max of each window (padding counts as -inf) and the flat
    index (over the sample's spatial positions, row-major) of the input that gave it, per
    channel (int64): PyTorch's CPU rule, the first maximal input in the window's
    row-major order, a NaN taking the place of the maximum. ``pool_size``, ``stride``
    (default: ``pool_size``) and ``padding`` (at most half the window): an int or per
    dim; shapes ``(batch, *spatial, C)`` in, ``(batch, *out, C)`` out."""
    x4, geo, threads = _pool_input(x, pool_size, stride, padding, n_threads)
    y = np.empty((x.shape[0], *geo.out, x.shape[-1]), x.dtype)
    argmax = np.empty(y.shape, np.int64)
    shape4 = (x.shape[0], *geo.out_hw, x.shape[-1])
    _extension().max_pool_forward(x4, y.reshape(shape4), argmax.reshape(shape4),
                                  geo.geometry, threads)
    return y, argmax


def _grad_input(grad_y: Any, input_shape: Any) -> tuple[int, ...]:
    _array("grad_y", grad_y, (3, 4))
    shape = shape_tuple("input_shape", input_shape)
    if len(shape) != grad_y.ndim or shape[0] != grad_y.shape[0] \
            or shape[-1] != grad_y.shape[-1]:
        raise ValueError(f"input_shape {shape} must be (batch, *spatial, channels) with "
                         f"grad_y's rank, batch and channels (grad_y {grad_y.shape})")
    return shape


def max_pool_backward(grad_y: np.ndarray, argmax: np.ndarray, input_shape: Sequence[int],
                      n_threads: int | None = None) -> np.ndarray:
    """dL/dx of :func:`max_pool_forward`: each window's gradient goes to the input that
    was its maximum (``argmax``), summed in output order where windows overlap."""
    ext = _extension()
    shape = _grad_input(grad_y, input_shape)
    if not isinstance(argmax, np.ndarray) or argmax.dtype.kind not in "iu":
        raise TypeError(f"argmax must be an integer numpy array (max_pool_forward's), got "
                        f"{type(argmax).__name__} {getattr(argmax, 'dtype', '')}".rstrip())
    if argmax.shape != grad_y.shape:
        raise ValueError(f"argmax must have grad_y's shape {grad_y.shape}, got {argmax.shape}")
    threads = resolve_n_threads(n_threads)
    four = (lambda a: a.reshape(len(a), 1, *a.shape[1:])) if len(shape) == 3 else (lambda a: a)
    gx = np.empty(shape, grad_y.dtype)
    ext.max_pool_backward(four(np.ascontiguousarray(grad_y)),
                          four(np.ascontiguousarray(argmax, dtype=np.int64)), four(gx), threads)
    return gx


def avg_pool_forward(x: np.ndarray, pool_size: Any, *, stride: Any = None, padding: Any = 0,
                     count_include_pad: bool = True, n_threads: int | None = None
                     ) -> np.ndarray:
    """The mean of each window (``count_include_pad``: padded zeros count in the divisor,
    PyTorch's default; False: Keras's "same" pooling), summed in float64. Arguments as in
    :func:`max_pool_forward`."""
    include = boolean("count_include_pad", count_include_pad)
    x4, geo, threads = _pool_input(x, pool_size, stride, padding, n_threads)
    y = np.empty((x.shape[0], *geo.out, x.shape[-1]), x.dtype)
    _extension().avg_pool_forward(x4, y.reshape(x.shape[0], *geo.out_hw, x.shape[-1]),
                                  geo.geometry, include, threads)
    return y


def avg_pool_backward(grad_y: np.ndarray, input_shape: Sequence[int], pool_size: Any, *,
                      stride: Any = None, padding: Any = 0, count_include_pad: bool = True,
                      n_threads: int | None = None) -> np.ndarray:
    """dL/dx of :func:`avg_pool_forward` (the same pooling arguments): each input gets the
    sum, over the windows that hold it, of the window's gradient over its count."""
    ext = _extension()
    shape = _grad_input(grad_y, input_shape)
    include = boolean("count_include_pad", count_include_pad)
    geo = _geo(shape, pool_size, stride, padding, None)
    if grad_y.shape != (shape[0], *geo.out, shape[-1]):
        raise ValueError(f"grad_y must have shape {(shape[0], *geo.out, shape[-1])} (the "
                         f"pooling's output), got {grad_y.shape}")
    threads = resolve_n_threads(n_threads)
    gx = np.empty(geo.image, grad_y.dtype)
    gy4 = np.ascontiguousarray(grad_y).reshape(shape[0], *geo.out_hw, shape[-1])
    ext.avg_pool_backward(gy4, gx, geo.geometry, include, threads)
    return gx.reshape(shape)
