"""Plain-numpy twins of :mod:`varprop.conv_kernels` (no compiled code): direct sums
over the kernel taps in float64, for the tests to compare the kernels with. Same
signatures and shapes; the activation is applied with its numpy record."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ._results import LayerStats, pooled
from .activations import get_activation
from .conv_kernels import ConvForward, ConvGradients, conv_output_shape, resolve_padding

__all__ = ["conv_forward", "conv_backward", "max_pool_forward", "max_pool_backward",
           "avg_pool_forward", "avg_pool_backward"]


def _act(activation: Any, params: dict) -> Any:
    return activation if not isinstance(activation, str) else get_activation(activation, **params)


def _taps(x_shape, kernel, stride, padding, dilation):
    dims = len(kernel)
    s = (stride,) * dims if isinstance(stride, int) else tuple(stride)
    d = (dilation,) * dims if isinstance(dilation, int) else tuple(dilation)
    pads = resolve_padding(padding, x_shape[1:-1], kernel, s, d)
    out = conv_output_shape(x_shape[1:-1], kernel, s, pads, d)
    return s, d, pads, out


def _reads(xp, tap, s, d, out):
    """The padded input each output position reads at kernel tap ``tap``."""
    index = (slice(None),) + tuple(slice(t * di, t * di + o * si, si)
                                   for t, di, si, o in zip(tap, d, s, out)) + (slice(None),)
    return index


def conv_forward(x, w, b=None, activation="linear", *, stride=1, padding="valid",
                 dilation=1, groups=1, stats=False, n_threads=None, **params) -> ConvForward:
    act = _act(activation, params)
    kernel = w.shape[:-2]
    s, d, pads, out = _taps(x.shape, kernel, stride, padding, dilation)
    xp = np.pad(x.astype(np.float64), ((0, 0), *pads, (0, 0)))
    cg, og = x.shape[-1] // groups, w.shape[-1] // groups
    z = np.zeros((x.shape[0], *out, w.shape[-1]))
    for tap in np.ndindex(*kernel):
        patch = xp[_reads(xp, tap, s, d, out)]
        for g in range(groups):
            z[..., g * og:(g + 1) * og] += patch[..., g * cg:(g + 1) * cg] @ \
                w[tap][:, g * og:(g + 1) * og].astype(np.float64)
    if b is not None:
        z += b
    a = np.asarray(act(z), np.float64)
    st = None
    if stats:
        zz, aa = z.reshape(-1, z.shape[-1]), a.reshape(-1, a.shape[-1])
        zm, zv, am, av = zz.mean(0), zz.var(0), aa.mean(0), aa.var(0)
        st = LayerStats(zz.shape[0], zm, zv, am, av, *pooled(zm, zv), *pooled(am, av))
    return ConvForward(z.astype(x.dtype), a.astype(x.dtype), st)


def conv_backward(x, w, z, grad_a, activation="linear", *, stride=1, padding="valid",
                  dilation=1, groups=1, n_threads=None, **params) -> ConvGradients:
    act = _act(activation, params)
    kernel = w.shape[:-2]
    s, d, pads, out = _taps(x.shape, kernel, stride, padding, dilation)
    xp = np.pad(x.astype(np.float64), ((0, 0), *pads, (0, 0)))
    gz = grad_a.astype(np.float64) * np.asarray(act.derivative(z.astype(np.float64)))
    gxp = np.zeros_like(xp)
    gw = np.zeros(w.shape)
    cg, og = x.shape[-1] // groups, w.shape[-1] // groups
    for tap in np.ndindex(*kernel):
        index = _reads(xp, tap, s, d, out)
        patch = xp[index]
        for g in range(groups):
            gzg = gz[..., g * og:(g + 1) * og]
            wg = w[tap][:, g * og:(g + 1) * og].astype(np.float64)
            gxp[index][..., g * cg:(g + 1) * cg] += gzg @ wg.T
            gw[tap][:, g * og:(g + 1) * og] += \
                patch[..., g * cg:(g + 1) * cg].reshape(-1, cg).T @ gzg.reshape(-1, og)
    inner = (slice(None),) + tuple(slice(lo, n - hi) for (lo, hi), n
                                   in zip(pads, xp.shape[1:-1])) + (slice(None),)
    return ConvGradients(gxp[inner].astype(x.dtype), gw.astype(x.dtype),
                         gz.reshape(-1, gz.shape[-1]).sum(0).astype(x.dtype), gz.astype(x.dtype))


def _pool_taps(x_shape, pool_size, stride, padding):
    dims = len(x_shape) - 2
    k = (pool_size,) * dims if isinstance(pool_size, int) else tuple(pool_size)
    s = k if stride is None else ((stride,) * dims if isinstance(stride, int) else tuple(stride))
    pads = resolve_padding(padding, x_shape[1:-1], k, s, 1)
    return k, s, pads, conv_output_shape(x_shape[1:-1], k, s, pads, 1)


def max_pool_forward(x, pool_size, *, stride=None, padding=0, n_threads=None):
    """PyTorch's CPU rule: start at the window's first in-bounds position with -inf, then
    a later tap wins if it is > the max so far or NaN; padding (-inf) never wins."""
    k, s, pads, out = _pool_taps(x.shape, pool_size, stride, padding)
    xp = np.pad(x.astype(np.float64), ((0, 0), *pads, (0, 0)), constant_values=-np.inf)
    best = np.full((x.shape[0], *out, x.shape[-1]), -np.inf)
    grids = np.meshgrid(*[np.arange(o) for o in out], indexing="ij")
    first = 0
    for dim in range(len(k)):
        first = first * x.shape[1 + dim] + np.maximum(grids[dim] * s[dim] - pads[dim][0], 0)
    arg = np.broadcast_to(np.asarray(first)[None, ..., None], best.shape).astype(np.int64)
    for tap in np.ndindex(*k):  # row-major window order
        v = xp[_reads(xp, tap, s, (1,) * len(k), out)]
        flat = 0
        for dim in range(len(k)):
            flat = flat * x.shape[1 + dim] + (grids[dim] * s[dim] + tap[dim] - pads[dim][0])
        better = (v > best) | np.isnan(v)
        best = np.where(better, v, best)
        arg = np.where(better, np.asarray(flat)[None, ..., None], arg)
    return best.astype(x.dtype), arg


def max_pool_backward(grad_y, argmax, input_shape, n_threads=None):
    shape = tuple(input_shape)
    gx = np.zeros((shape[0], math.prod(shape[1:-1]), shape[-1]))
    for idx in np.ndindex(*grad_y.shape):
        gx[idx[0], argmax[idx], idx[-1]] += grad_y[idx]
    return gx.reshape(shape).astype(grad_y.dtype)


def avg_pool_forward(x, pool_size, *, stride=None, padding=0, count_include_pad=True,
                     n_threads=None):
    k, s, pads, out = _pool_taps(x.shape, pool_size, stride, padding)
    xp = np.pad(x.astype(np.float64), ((0, 0), *pads, (0, 0)))
    ones = np.pad(np.ones((1, *x.shape[1:-1], 1)), ((0, 0), *pads, (0, 0)))
    total = np.zeros((x.shape[0], *out, x.shape[-1]))
    count = np.zeros((1, *out, 1))
    for tap in np.ndindex(*k):
        total += xp[_reads(xp, tap, s, (1,) * len(k), out)]
        count += ones[_reads(ones, tap, s, (1,) * len(k), out)]
    if count_include_pad:
        count = np.full_like(count, math.prod(k))
    return (total / count).astype(x.dtype)


def avg_pool_backward(grad_y, input_shape, pool_size, *, stride=None, padding=0,
                      count_include_pad=True, n_threads=None):
    shape = tuple(input_shape)
    k, s, pads, out = _pool_taps(shape, pool_size, stride, padding)
    gxp = np.zeros((shape[0], *(n + lo + hi for n, (lo, hi) in zip(shape[1:-1], pads)),
                    shape[-1]))
    ones = np.pad(np.ones((1, *shape[1:-1], 1)), ((0, 0), *pads, (0, 0)))
    count = np.zeros((1, *out, 1))
    for tap in np.ndindex(*k):
        count += ones[_reads(ones, tap, s, (1,) * len(k), out)]
    if count_include_pad:
        count = np.full_like(count, math.prod(k))
    for tap in np.ndindex(*k):
        gxp[_reads(gxp, tap, s, (1,) * len(k), out)] += grad_y / count
    inner = (slice(None),) + tuple(slice(lo, n - hi) for (lo, hi), n
                                   in zip(pads, gxp.shape[1:-1])) + (slice(None),)
    return gxp[inner].astype(grad_y.dtype)
