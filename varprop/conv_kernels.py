"""Convolution and pooling on the fused kernels, channels last (Keras's layout).

A convolution is a dense layer on the image's patches: ``im2col`` lays every output
pixel's receptive field out as one row, and the fused dense kernel
(:func:`varprop.kernels.dense_forward`) does the GEMM, the bias, the activation and the
per-column (= per-channel) batch statistics in one pass. The backward pass is the fused
dense backward on the same rows, then ``col2im`` adds each tap's gradient back into
the image, tap after tap in a fixed order. Every step is either the dense kernels
(bitwise independent of the thread count) or a single-threaded numpy operation, so the
results are bitwise identical for any ``n_threads``. The batch is cut into chunks
whose patch rows stay under :data:`CHUNK_BYTES`; the cut depends on the shapes only.

Shapes: 1-D ``x (batch, length, C_in)``, 2-D ``x (batch, H, W, C_in)``; weights
``(*kernel, C_in // groups, C_out)``; bias ``(C_out,)`` or None.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ._results import LayerStats, pooled
from ._validate import integer, positive_int

__all__ = ["resolve_padding", "conv_output_shape", "conv_forward", "conv_backward",
           "ConvForward", "ConvGradients", "max_pool_forward", "max_pool_backward",
           "avg_pool_forward", "avg_pool_backward", "CHUNK_BYTES"]

#: Patch rows of one chunk stay under this many bytes.
CHUNK_BYTES = 64 * 2**20

Pads = tuple[tuple[int, int], ...]


# ----------------------------------------------------------------------------- geometry
def _per_dim(name: str, value: Any, n: int) -> tuple[int, ...]:
    if isinstance(value, (list, tuple)):
        if len(value) != n:
            raise ValueError(f"{name} needs {n} entries (one per spatial dim), got {value!r}")
        return tuple(positive_int(name, v) for v in value)
    return (positive_int(name, value),) * n


def resolve_padding(padding: Any, spatial: Sequence[int], kernel: Any, stride: Any = 1,
                    dilation: Any = 1) -> Pads:
    """Per spatial dim ``(before, after)`` zero padding: "valid" (none), "same"
    (TensorFlow's rule: ``total = max((ceil(n / s) - 1) s + (k - 1) d + 1 - n, 0)``,
    ``before = total // 2``; PyTorch's ``padding="same"`` for stride 1), an int, per-dim
    ints or per-dim ``(before, after)`` pairs."""
    n = len(spatial)
    k, s, d = _per_dim("kernel", kernel, n), _per_dim("stride", stride, n), \
        _per_dim("dilation", dilation, n)
    if isinstance(padding, str):
        mode = padding.lower()
        if mode == "valid":
            return ((0, 0),) * n
        if mode != "same":
            raise ValueError(f"padding must be 'valid', 'same', an int or per-dim pairs, "
                             f"got {padding!r}")
        out = []
        for size, ki, si, di in zip(spatial, k, s, d):
            total = max((math.ceil(size / si) - 1) * si + (ki - 1) * di + 1 - size, 0)
            out.append((total // 2, total - total // 2))
        return tuple(out)
    if isinstance(padding, (list, tuple)):
        if len(padding) != n:
            raise ValueError(f"padding needs {n} entries (one per spatial dim), got {padding!r}")
        out = []
        for p in padding:
            if isinstance(p, (list, tuple)):
                if len(p) != 2:
                    raise ValueError(f"padding pairs are (before, after), got {p!r}")
                out.append((integer("padding", p[0], minimum=0),
                            integer("padding", p[1], minimum=0)))
            else:
                v = integer("padding", p, minimum=0)
                out.append((v, v))
        return tuple(out)
    v = integer("padding", padding, minimum=0)
    return ((v, v),) * n


def conv_output_shape(spatial: Sequence[int], kernel: Any, stride: Any = 1,
                      padding: Any = "valid", dilation: Any = 1) -> tuple[int, ...]:
    """The output's spatial dims; a ValueError naming ``kernel`` when the (dilated)
    kernel does not fit in the padded input."""
    n = len(spatial)
    k, s, d = _per_dim("kernel", kernel, n), _per_dim("stride", stride, n), \
        _per_dim("dilation", dilation, n)
    pads = resolve_padding(padding, spatial, k, s, d)
    out = []
    for size, ki, si, di, (lo, hi) in zip(spatial, k, s, d, pads):
        span = (ki - 1) * di + 1
        if span > size + lo + hi:
            raise ValueError(f"kernel of size {ki} (dilation {di}: spans {span}) is larger "
                             f"than the padded input ({size} + {lo} + {hi})")
        out.append((size + lo + hi - span) // si + 1)
    return tuple(out)


# ----------------------------------------------------------------------------- checks
def _array(name: str, arr: Any, ndims: tuple[int, ...]) -> np.ndarray:
    if not isinstance(arr, np.ndarray):
        raise TypeError(f"{name} must be a numpy array, got {type(arr).__name__}")
    if arr.dtype not in (np.float32, np.float64):
        raise TypeError(f"{name} must be float32 or float64, got {arr.dtype}")
    if arr.ndim not in ndims:
        raise ValueError(f"{name} must have {' or '.join(map(str, ndims))} dims, got shape "
                         f"{arr.shape}")
    return arr


def _check_conv(x: np.ndarray, w: np.ndarray, b: Any, groups: Any) -> tuple[int, ...]:
    _array("x", x, (3, 4))
    _array("w", w, (x.ndim,))
    if w.dtype != x.dtype or (b is not None and getattr(b, "dtype", None) != x.dtype):
        raise TypeError(f"x, w and b must share one dtype, got {x.dtype}, {w.dtype}"
                        f"{'' if b is None else ', ' + str(getattr(b, 'dtype', type(b)))}")
    groups = positive_int("groups", groups)
    c_in, c_out = x.shape[-1], w.shape[-1]
    if c_in % groups or c_out % groups:
        raise ValueError(f"groups ({groups}) must divide the input channels ({c_in}) and the "
                         f"output channels ({c_out})")
    if w.shape[-2] * groups != c_in:
        raise ValueError(f"w has {w.shape[-2]} input channels per group (shape {w.shape}) but "
                         f"x has {c_in} channels in {groups} group(s)")
    if b is not None:
        _array("b", b, (1,))
        if b.shape != (c_out,):
            raise ValueError(f"b must have shape ({c_out},), got {b.shape}")
    return w.shape[:-2]


# ----------------------------------------------------------------------------- im2col
def _patches(xp: np.ndarray, kernel: tuple[int, ...], stride: tuple[int, ...],
             dilation: tuple[int, ...], out: tuple[int, ...]) -> np.ndarray:
    """A strided view ``(batch, *out, *kernel, C)`` of the padded input's patches."""
    dims = len(kernel)
    span = tuple((k - 1) * d + 1 for k, d in zip(kernel, dilation))
    view = sliding_window_view(xp, span, axis=tuple(range(1, dims + 1)),
                               writeable=xp.flags.writeable)
    # view: (batch, *positions, C, *span) -> the outputs' positions, the kernel's taps
    index = (slice(None),) + tuple(slice(0, o * s, s) for o, s in zip(out, stride)) \
        + (slice(None),) + tuple(slice(None, None, d) for d in dilation)
    view = view[index]
    return np.moveaxis(view, 1 + dims, -1)  # (batch, *out, *kernel, C)


def _chunk(batch: int, rows_per_sample: int, row_bytes: int) -> int:
    """Samples per chunk (shapes only): patch rows under CHUNK_BYTES, at least one."""
    return max(1, min(batch, CHUNK_BYTES // max(rows_per_sample * row_bytes, 1)))


@dataclass(frozen=True)
class ConvForward:
    """``z = conv(x, w) + b`` and ``a = phi(z)`` (``(batch, *out, C_out)``); ``stats``
    per output channel over the batch and the pixels, or None."""

    z: np.ndarray
    a: np.ndarray
    stats: LayerStats | None


@dataclass(frozen=True)
class ConvGradients:
    """dL/dx, dL/dw (summed over the batch), dL/db and dL/dz."""

    grad_x: np.ndarray
    grad_w: np.ndarray
    grad_b: np.ndarray
    grad_z: np.ndarray


def _geometry(x: np.ndarray, kernel: tuple[int, ...], stride: Any, padding: Any,
              dilation: Any) -> tuple[tuple[int, ...], tuple[int, ...], Pads, tuple[int, ...]]:
    dims = len(kernel)
    spatial = x.shape[1:-1]
    s, d = _per_dim("stride", stride, dims), _per_dim("dilation", dilation, dims)
    pads = resolve_padding(padding, spatial, kernel, s, d)
    out = conv_output_shape(spatial, kernel, s, pads, d)
    return s, d, pads, out


def conv_forward(x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None,
                 activation: Any = "linear", *, stride: Any = 1, padding: Any = "valid",
                 dilation: Any = 1, groups: int = 1, stats: bool = False,
                 n_threads: int | None = None, **activation_params: Any) -> ConvForward:
    """Fused convolution: ``z = conv(x, w) + b``, ``a = phi(z)``, optional per-channel
    statistics over batch and pixels (see the module doc for shapes)."""
    from .kernels import _resolve_activation, dense_forward
    kernel = _check_conv(x, w, b, groups)
    act = _resolve_activation(activation, activation_params)
    s, d, pads, out = _geometry(x, kernel, stride, padding, dilation)
    batch, c_out = x.shape[0], w.shape[-1]
    cg, og = x.shape[-1] // groups, c_out // groups
    z = np.empty((batch, *out, c_out), x.dtype)
    a = np.empty_like(z)
    taps = math.prod(kernel) * cg
    per = _chunk(batch, math.prod(out), taps * x.itemsize)
    xp = np.pad(x, ((0, 0), *pads, (0, 0)))
    parts: list[list[LayerStats]] = [[] for _ in range(groups)]
    for lo in range(0, batch, per):
        hi = min(batch, lo + per)
        patches = _patches(xp[lo:hi], kernel, s, d, out)
        for g in range(groups):
            cols = np.ascontiguousarray(patches[..., g * cg:(g + 1) * cg]).reshape(-1, taps)
            wg = np.ascontiguousarray(w[..., g * og:(g + 1) * og]).reshape(taps, og)
            bg = None if b is None else np.ascontiguousarray(b[g * og:(g + 1) * og])
            r = dense_forward(cols, wg, bg, act, stats=stats, n_threads=n_threads)
            z[lo:hi, ..., g * og:(g + 1) * og] = r.z.reshape(hi - lo, *out, og)
            a[lo:hi, ..., g * og:(g + 1) * og] = r.a.reshape(hi - lo, *out, og)
            if stats:
                parts[g].append(r.stats)
    return ConvForward(z, a, _merge_stats(parts) if stats else None)


def _merge_stats(parts: list[list[LayerStats]]) -> LayerStats:
    """Per-chunk statistics of each group merged in chunk order (Chan et al.'s
    parallel formula), the groups' channels side by side."""
    def merge(chunks: list[LayerStats], field: str) -> tuple[np.ndarray, np.ndarray]:
        n = sum(c.n_samples for c in chunks)
        mean = sum(c.n_samples * getattr(c, field + "_mean") for c in chunks) / n
        m2 = sum(c.n_samples * (getattr(c, field + "_var")
                                + (getattr(c, field + "_mean") - mean) ** 2) for c in chunks)
        return mean, m2 / n

    z = [merge(p, "z") for p in parts]
    a = [merge(p, "a") for p in parts]
    z_mean, z_var = (np.concatenate([m[i] for m in z]) for i in (0, 1))
    a_mean, a_var = (np.concatenate([m[i] for m in a]) for i in (0, 1))
    n = sum(c.n_samples for c in parts[0])
    return LayerStats(n, z_mean, z_var, a_mean, a_var, *pooled(z_mean, z_var),
                      *pooled(a_mean, a_var))


def conv_backward(x: np.ndarray, w: np.ndarray, z: np.ndarray, grad_a: np.ndarray,
                  activation: Any = "linear", *, stride: Any = 1, padding: Any = "valid",
                  dilation: Any = 1, groups: int = 1, n_threads: int | None = None,
                  **activation_params: Any) -> ConvGradients:
    """Gradients of ``sum(grad_a * phi(conv(x, w) + b))``: dL/dx, dL/dw (summed over the
    batch), dL/db and dL/dz."""
    from .kernels import _resolve_activation, dense_backward
    kernel = _check_conv(x, w, None, groups)
    act = _resolve_activation(activation, activation_params)
    s, d, pads, out = _geometry(x, kernel, stride, padding, dilation)
    batch, c_out = x.shape[0], w.shape[-1]
    for name, arr in (("z", z), ("grad_a", grad_a)):
        _array(name, arr, (x.ndim,))
        if arr.shape != (batch, *out, c_out) or arr.dtype != x.dtype:
            raise ValueError(f"{name} must have shape {(batch, *out, c_out)} and dtype "
                             f"{x.dtype}, got {arr.shape} {arr.dtype}")
    cg, og = x.shape[-1] // groups, c_out // groups
    taps = math.prod(kernel) * cg
    per = _chunk(batch, math.prod(out), taps * x.itemsize)
    xp = np.pad(x, ((0, 0), *pads, (0, 0)))
    gxp = np.zeros(xp.shape, np.float64 if x.dtype == np.float64 else np.float32)
    grad_w = np.zeros(w.shape, x.dtype)
    grad_b = np.zeros(c_out, x.dtype)
    grad_z = np.empty_like(z)
    for lo in range(0, batch, per):
        hi = min(batch, lo + per)
        patches = _patches(xp[lo:hi], kernel, s, d, out)
        gpatch = _patches(gxp[lo:hi], kernel, s, d, out)  # a view: col2im writes through
        for g in range(groups):
            sl = slice(g * og, (g + 1) * og)
            cols = np.ascontiguousarray(patches[..., g * cg:(g + 1) * cg]).reshape(-1, taps)
            wg = np.ascontiguousarray(w[..., sl]).reshape(taps, og)
            zg = np.ascontiguousarray(z[lo:hi, ..., sl]).reshape(-1, og)
            gag = np.ascontiguousarray(grad_a[lo:hi, ..., sl]).reshape(-1, og)
            r = dense_backward(cols, wg, zg, gag, act, n_threads=n_threads)
            grad_w[..., sl] += r.grad_w.reshape(*kernel, cg, og)
            grad_b[sl] += r.grad_b
            grad_z[lo:hi, ..., sl] = r.grad_z.reshape(hi - lo, *out, og)
            _col2im(gpatch[..., g * cg:(g + 1) * cg],
                    r.grad_x.reshape(hi - lo, *out, *kernel, cg), kernel)
    inner = (slice(None),) + tuple(slice(lo_, xp.shape[i + 1] - hi_)
                                   for i, (lo_, hi_) in enumerate(pads)) + (slice(None),)
    return ConvGradients(np.ascontiguousarray(gxp[inner], dtype=x.dtype), grad_w, grad_b,
                         grad_z)


def _col2im(target: np.ndarray, cols: np.ndarray, kernel: tuple[int, ...]) -> None:
    """Add each tap's patch gradient into the (padded) image through the strided view
    ``target`` ``(batch, *out, *kernel, C)``, one tap at a time in a fixed order (the
    taps of one tap index never overlap, so each add is a plain strided add)."""
    dims = len(kernel)
    for tap in np.ndindex(*kernel):
        index = (slice(None),) * (1 + dims) + tap + (slice(None),)
        target[index] += cols[index]


# ----------------------------------------------------------------------------- pooling
def _pool_geometry(x: np.ndarray, pool_size: Any, stride: Any, padding: Any
                   ) -> tuple[tuple[int, ...], tuple[int, ...], Pads, tuple[int, ...]]:
    _array("x", x, (3, 4))
    dims = x.ndim - 2
    k = _per_dim("pool_size", pool_size, dims)
    s = k if stride is None else _per_dim("stride", stride, dims)
    pads = resolve_padding(padding, x.shape[1:-1], k, s, 1)
    for (lo, hi), ki in zip(pads, k):
        if lo > ki // 2 or hi > ki // 2:
            raise ValueError(f"padding must be at most half the pool size ({ki}), got "
                             f"({lo}, {hi}) (as PyTorch requires)")
    out = conv_output_shape(x.shape[1:-1], k, s, pads, 1)
    return k, s, pads, out


def max_pool_forward(x: np.ndarray, pool_size: Any, *, stride: Any = None,
                     padding: Any = 0, n_threads: int | None = None
                     ) -> tuple[np.ndarray, np.ndarray]:
    """``(y, argmax)``: the max of each window (padding counts as -inf) and the flat
    index (over the sample's spatial positions) of the input that gave it: the first
    maximal one in row-major window order, as PyTorch breaks ties."""
    k, s, pads, out = _pool_geometry(x, pool_size, stride, padding)
    xp = np.pad(x, ((0, 0), *pads, (0, 0)), constant_values=-np.inf)
    win = _patches(xp, k, s, (1,) * len(k), out)  # (batch, *out, *k, C)
    flat = np.moveaxis(win.reshape(*win.shape[:1 + len(k)], -1, win.shape[-1]), -2, -1)
    first = np.argmax(flat, axis=-1)  # the first maximum (a NaN counts as the maximum)
    y = np.take_along_axis(flat, first[..., None], axis=-1)[..., 0]
    # the winner's position in the unpadded input
    taps = np.unravel_index(first, k)
    index = np.zeros(first.shape, np.int64)
    for dim, (tap, st, (lo, _)) in enumerate(zip(taps, s, pads)):
        grid = np.arange(out[dim]).reshape((1,) + tuple(-1 if i == dim else 1
                                                        for i in range(len(k))) + (1,))
        pos = grid * st + tap - lo
        index = index * x.shape[1 + dim] + pos
    return np.ascontiguousarray(y, x.dtype), index


def max_pool_backward(grad_y: np.ndarray, argmax: np.ndarray, input_shape: Sequence[int],
                      n_threads: int | None = None) -> np.ndarray:
    """dL/dx: each window's gradient to the input that was its maximum (accumulated in
    a fixed order where windows overlap)."""
    _array("grad_y", grad_y, (3, 4))
    shape = tuple(input_shape)
    if argmax.shape != grad_y.shape or len(shape) != grad_y.ndim:
        raise ValueError(f"argmax {argmax.shape} and grad_y {grad_y.shape} must match, and "
                         f"input_shape {shape} have their rank")
    batch, c = shape[0], shape[-1]
    pixels = math.prod(shape[1:-1])
    gx = np.zeros((batch, pixels, c), grad_y.dtype)
    b_idx = np.arange(batch).reshape((-1,) + (1,) * (grad_y.ndim - 1))
    c_idx = np.arange(c).reshape((1,) * (grad_y.ndim - 1) + (-1,))
    np.add.at(gx, (np.broadcast_to(b_idx, argmax.shape), argmax,
                   np.broadcast_to(c_idx, argmax.shape)), grad_y)
    return gx.reshape(shape)


def _counts(shape: tuple[int, ...], k: tuple[int, ...], s: tuple[int, ...], pads: Pads,
            out: tuple[int, ...], include_pad: bool) -> np.ndarray:
    """Entries each window averages over, ``(*out, 1)``."""
    if include_pad:
        return np.full(out + (1,), float(math.prod(k)))
    ones = np.pad(np.ones((1, *shape[1:-1], 1)), ((0, 0), *pads, (0, 0)))
    return _patches(ones, k, s, (1,) * len(k), out).sum(
        axis=tuple(range(1 + len(k), 1 + 2 * len(k))))[0]


def avg_pool_forward(x: np.ndarray, pool_size: Any, *, stride: Any = None, padding: Any = 0,
                     count_include_pad: bool = True, n_threads: int | None = None
                     ) -> np.ndarray:
    """The mean of each window (``count_include_pad``: padded zeros count, PyTorch's
    default)."""
    k, s, pads, out = _pool_geometry(x, pool_size, stride, padding)
    xp = np.pad(x, ((0, 0), *pads, (0, 0)))
    win = _patches(xp, k, s, (1,) * len(k), out)
    total = np.zeros((x.shape[0], *out, x.shape[-1]), np.float64)
    for tap in np.ndindex(*k):  # a fixed order of additions
        total += win[(slice(None),) * (1 + len(k)) + tap + (slice(None),)]
    return (total / _counts(x.shape, k, s, pads, out, count_include_pad)).astype(x.dtype)


def avg_pool_backward(grad_y: np.ndarray, input_shape: Sequence[int], pool_size: Any, *,
                      stride: Any = None, padding: Any = 0, count_include_pad: bool = True,
                      n_threads: int | None = None) -> np.ndarray:
    """dL/dx of :func:`avg_pool_forward`: each window's gradient shared by its inputs."""
    _array("grad_y", grad_y, (3, 4))
    shape = tuple(input_shape)
    probe = np.empty((1, *shape[1:]), grad_y.dtype)
    k, s, pads, out = _pool_geometry(probe, pool_size, stride, padding)
    if grad_y.shape != (shape[0], *out, shape[-1]):
        raise ValueError(f"grad_y must have shape {(shape[0], *out, shape[-1])}, got "
                         f"{grad_y.shape}")
    share = grad_y.astype(np.float64) / _counts(shape, k, s, pads, out, count_include_pad)
    gxp = np.zeros((shape[0], *(n + lo + hi for n, (lo, hi) in zip(shape[1:-1], pads)),
                    shape[-1]))
    target = _patches(gxp, k, s, (1,) * len(k), out)
    for tap in np.ndindex(*k):
        target[(slice(None),) * (1 + len(k)) + tap + (slice(None),)] += share
    inner = (slice(None),) + tuple(slice(lo, gxp.shape[i + 1] - hi)
                                   for i, (lo, hi) in enumerate(pads)) + (slice(None),)
    return np.ascontiguousarray(gxp[inner], dtype=grad_y.dtype)
