"""Convolution kernels, channels last (Keras's layout): the validated public face of
``varprop._conv`` (its pooling loops: :mod:`varprop.pool_kernels`), and the geometry
both share.

A convolution is a dense layer on the image's patches. The forward pass runs the fused
dense epilogue of :func:`varprop.dense_forward` on the patch rows, tile by tile in one
OpenMP loop: each thread lays its tile's receptive fields out as rows (im2col, into a
small buffer of its own), multiplies them by the weights (BLAS) and applies the bias,
the activation and the per-channel statistics while the tile is in cache; no patch matrix
is stored whole. The backward pass cuts the batch into chunks whose patch rows stay under
:data:`CHUNK_BYTES`, runs the fused dense backward (the kernel behind
:func:`varprop.dense_backward`) on each chunk's patch rows, then ``col2im`` gathers each
input's gradient from the taps that read it, in a fixed order. A 1x1 kernel with stride
1 and no padding uses the image's rows as they are.

Rules: float32 or float64, one dtype for all arrays (TypeError otherwise); arrays of any
memory order (copied to C order where needed); outputs are new C-contiguous arrays;
statistics are float64. Results are bitwise identical for any ``n_threads``: tiles and
chunks depend on the shapes only, every output element is written by one thread, and
per-tile statistics and per-chunk gradients are merged in a fixed order.

Shapes: 1-D ``x (batch, length, C_in)``, 2-D ``x (batch, H, W, C_in)``; weights
``(*kernel, C_in // groups, C_out)`` (Keras's HWIO); bias ``(C_out,)`` or None; outputs
``(batch, *out_spatial, C_out)``. The plain-numpy twins are in
:mod:`varprop._reference_conv`. Without the compiled extension the geometry helpers
(:func:`resolve_padding`, :func:`conv_output_shape`) work and every kernel raises
:class:`varprop.kernels.ExtensionMissingError`.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Sequence

import numpy as np

from ._blas import single_threaded_blas
from ._results import LayerStats, pooled
from ._threads import resolve_n_threads
from ._validate import boolean, integer, positive_int, shape_tuple
from .kernels import (_BACKWARD_BLOCK, ExtensionMissingError, _ceil_div, _dtype_of,
                      _missing_message, _resolve_activation, _same_dtype, forward_tiles,
                      weight_grad_blocks)
from .kernels import _extension as _dense_extension

__all__ = ["resolve_padding", "conv_output_shape", "conv_forward", "conv_backward",
           "ConvForward", "ConvGradients", "max_pool_forward", "max_pool_backward",
           "avg_pool_forward", "avg_pool_backward", "CHUNK_BYTES"]

#: The backward pass cuts the batch into chunks whose patch rows stay under this many
#: bytes (at least one sample per chunk): two such buffers (patches, their gradient) stay
#: in cache between im2col, the GEMMs and col2im (measured: 4 MiB chunks run 1.7x faster
#: than 64 MiB ones on 28x28x16 -> 32 and 2x on 56x56x64 -> 64, batch 64 and 32).
CHUNK_BYTES = 4 * 2**20

#: The patch rows of one tile of the fused forward stay under this many bytes (a
#: thread's scratch buffer, kept in its cache).
TILE_BYTES = 256 * 2**10

Pads = tuple[tuple[int, int], ...]
_scratch = threading.local()
_GEOMETRIES: dict[Any, Any] = {}
_conv_module: ModuleType | None = None


def _extension() -> ModuleType:
    """``varprop._conv``, imported on first use; ExtensionMissingError without it."""
    global _conv_module
    if _conv_module is None:
        try:
            from . import _conv
        except ImportError as exc:
            raise ExtensionMissingError(_missing_message(
                exc, "_conv", "the convolution and pooling kernels (conv_forward, "
                "conv_backward, max_pool_*, avg_pool_*)")) from exc
        _conv_module = _conv
    return _conv_module


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
    spatial = shape_tuple("spatial", spatial)
    n = len(spatial)
    k, s, d = _per_dim("kernel", kernel, n), _per_dim("stride", stride, n), \
        _per_dim("dilation", dilation, n)
    if isinstance(padding, str):
        if padding.lower() not in ("valid", "same"):
            raise ValueError(f"padding must be 'valid', 'same', an int or per-dim pairs, "
                             f"got {padding!r}")
        totals = [0] * n if padding.lower() == "valid" else [
            max((math.ceil(size / si) - 1) * si + (ki - 1) * di + 1 - size, 0)
            for size, ki, si, di in zip(spatial, k, s, d)]
        return tuple((t // 2, t - t // 2) for t in totals)
    if not isinstance(padding, (list, tuple)):
        padding = (padding,) * n
    elif len(padding) != n:
        raise ValueError(f"padding needs {n} entries (one per spatial dim), got {padding!r}")
    out = []
    for p in padding:
        if isinstance(p, (list, tuple)) and len(p) != 2:
            raise ValueError(f"padding pairs are (before, after), got {p!r}")
        pair = p if isinstance(p, (list, tuple)) else (p, p)
        out.append(tuple(integer("padding", v, minimum=0) for v in pair))
    return tuple(out)


def conv_output_shape(spatial: Sequence[int], kernel: Any, stride: Any = 1,
                      padding: Any = "valid", dilation: Any = 1) -> tuple[int, ...]:
    """The output's spatial dims; a ValueError naming ``kernel`` when the (dilated)
    kernel does not fit in the padded input."""
    spatial = shape_tuple("spatial", spatial)
    n = len(spatial)
    k, s, d = _per_dim("kernel", kernel, n), _per_dim("stride", stride, n), \
        _per_dim("dilation", dilation, n)
    return _out_shape(spatial, k, s, resolve_padding(padding, spatial, k, s, d), d, "kernel")


def _out_shape(spatial: tuple[int, ...], k: tuple[int, ...], s: tuple[int, ...], pads: Pads,
               d: tuple[int, ...], name: str) -> tuple[int, ...]:
    out = []
    for size, ki, si, di, (lo, hi) in zip(spatial, k, s, d, pads):
        span = (ki - 1) * di + 1
        if span > size + lo + hi:
            raise ValueError(f"{name} of size {ki} (dilation {di}: spans {span}) is larger "
                             f"than the padded input ({size} + {lo} + {hi})")
        out.append((size + lo + hi - span) // si + 1)
    return tuple(out)


@dataclass(frozen=True)
class _Geo:
    """One convolution or pooling in 2-D form (a 1-D signal is an image of height 1)."""

    image: tuple[int, int, int, int]  # (batch, H, W, C) of the input
    out: tuple[int, ...]  # the output's spatial dims as the caller sees them
    out_hw: tuple[int, int]
    geometry: tuple[int, ...]  # (k_h, k_w, s_h, s_w, d_h, d_w, pad_h, pad_w) for _conv
    trivial: bool  # a 1x1 kernel, stride 1, no padding: x's rows are the patch rows

    @property
    def pixels(self) -> int:
        return self.out_hw[0] * self.out_hw[1]


def _geo(shape: tuple[int, ...], kernel: Any, stride: Any, padding: Any,
         dilation: Any) -> _Geo:
    """The geometry of a convolution (dilation not None) or a pooling (None), cached by
    the arguments' repr (which tells 1, 1.0 and True apart; errors are not cached)."""
    key = repr((shape, kernel, stride, padding, dilation))
    geo = _GEOMETRIES.get(key)
    if geo is None:
        geo = _make_geo(shape, kernel, stride, padding, dilation)
        if len(_GEOMETRIES) >= 1024:
            _GEOMETRIES.clear()
        _GEOMETRIES[key] = geo
    return geo


def _make_geo(shape: tuple[int, ...], kernel: Any, stride: Any, padding: Any,
              dilation: Any) -> _Geo:
    dims, name = len(shape) - 2, "kernel" if dilation is not None else "pool_size"
    k = _per_dim(name, kernel, dims)
    s = k if stride is None else _per_dim("stride", stride, dims)
    d = (1,) * dims if dilation is None else _per_dim("dilation", dilation, dims)
    pads = resolve_padding(padding, shape[1:-1], k, s, d)
    if dilation is None:  # pooling
        for (lo, hi), ki in zip(pads, k):
            if lo > ki // 2 or hi > ki // 2:
                raise ValueError(f"padding must be at most half the pool size ({ki}), got "
                                 f"({lo}, {hi}) (as PyTorch requires)")
    out = _out_shape(shape[1:-1], k, s, pads, d, name)
    if dims == 1:
        k, s, d, pads, out_hw = (1, *k), (1, *s), (1, *d), ((0, 0), *pads), (1, *out)
        image = (shape[0], 1, shape[1], shape[2])
    else:
        out_hw, image = out, tuple(shape)
    trivial = k == (1, 1) and s == (1, 1) and pads == ((0, 0), (0, 0))
    return _Geo(image, out, tuple(out_hw), (*k, *s, *d, pads[0][0], pads[1][0]), trivial)


# ----------------------------------------------------------------------------- checks
def _array(name: str, arr: Any, ndims: tuple[int, ...]) -> np.ndarray:
    _dtype_of(name, arr)
    if arr.ndim not in ndims:
        raise ValueError(f"{name} must have {' or '.join(map(str, ndims))} dims, got shape "
                         f"{arr.shape}")
    return arr


def _check_conv(x: Any, w: Any, b: Any, groups: Any) -> int:
    _array("x", x, (3, 4))
    _array("w", w, (x.ndim,))
    _same_dtype({"x": x, "w": w} if b is None else {"x": x, "w": w, "b": b})
    groups = positive_int("groups", groups)
    c_in, c_out = x.shape[-1], w.shape[-1]
    if c_in == 0 or c_out == 0:
        raise ValueError(f"x and w need at least one channel, got x {x.shape}, w {w.shape}")
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
    return groups


@dataclass(frozen=True)
class ConvForward:
    """z = conv(x, w) + b, a = phi(z) ``(batch, *out, C_out)``; stats (or None)."""

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


def _tile_rows(rows: int, taps: int, itemsize: int) -> int:
    """Patch rows per tile of the fused forward (shapes only): a multiple of 16 whose
    patch rows fit in TILE_BYTES, at most 512, and small enough for 8 tiles."""
    fit = TILE_BYTES // (taps * itemsize) // 16 * 16
    spread = -(-rows // 128) * 16  # ceil(rows / 8), rounded up to 16
    return max(16, min(fit, spread, 512))


def _workspace(key: str, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
    """A scratch array of this Python thread, kept between calls (on a small layer,
    fresh pages cost more than the convolution); never shared between threads."""
    nbytes = math.prod(shape) * np.dtype(dtype).itemsize
    buf = getattr(_scratch, key, None)
    if buf is None or buf.nbytes < nbytes:
        buf = np.empty(nbytes, np.uint8)
        setattr(_scratch, key, buf)
    return buf[:nbytes].view(dtype).reshape(shape)


def _columns(x4: np.ndarray, geo: _Geo, c0: int, cg: int, buf: np.ndarray,
             threads: int) -> np.ndarray:
    """The patch rows of the images x4 (batch, H, W, C), channels [c0, c0 + cg)."""
    if geo.trivial and cg == x4.shape[-1]:
        return x4.reshape(-1, cg)
    _extension().im2col(x4, buf[:len(x4) * geo.pixels], geo.geometry, *geo.out_hw, c0, cg,
                        threads)
    return buf[:len(x4) * geo.pixels]


def _setup(x: np.ndarray, w: np.ndarray, groups: int, stride: Any, padding: Any,
           dilation: Any) -> tuple[_Geo, np.ndarray, list[np.ndarray], int, int, int]:
    """(geometry, x as C-ordered 2-D images, each group's (taps, C_out / groups)
    weights, channels per group in and out, samples per chunk)."""
    geo = _geo(x.shape, w.shape[:-2], stride, padding, dilation)
    kernel_w = tuple(w.shape[:-2])
    cg, og = x.shape[-1] // groups, w.shape[-1] // groups
    taps = math.prod(kernel_w) * cg
    w2 = np.ascontiguousarray(w).reshape(taps, w.shape[-1])
    wg = [w2 if groups == 1 else np.ascontiguousarray(w2[:, g * og:(g + 1) * og])
          for g in range(groups)]
    x4 = np.ascontiguousarray(x).reshape(geo.image)
    # samples per chunk of the backward pass (shapes only): patch rows under CHUNK_BYTES
    per = max(1, min(x.shape[0], CHUNK_BYTES // max(geo.pixels * taps * x.itemsize, 1)))
    if per * geo.pixels > 2**31 - 1 or taps > 2**31 - 1:
        raise ValueError(f"x {x.shape}, w {w.shape}: a sample's patches pass 2**31 - 1 rows")
    return geo, x4, wg, cg, og, per


def _merge(moments: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, ...]:
    """Per-tile column moments (shift, sum, sum of squares of z, then a) merged in tile
    order (Chan et al.'s parallel formula): z mean, z var, a mean, a var."""
    counts = counts.astype(np.float64)[:, None]
    total = counts.sum()
    out = []
    for shift, s1, s2 in (moments[0:3], moments[3:6]):
        tile_mean = shift + s1 / counts
        tile_m2 = np.maximum(s2 - s1 * s1 / counts, 0.0)
        mean = np.sum(counts * tile_mean, axis=0) / total
        out += [mean, np.sum(tile_m2 + counts * (tile_mean - mean) ** 2, axis=0) / total]
    return tuple(out)


def conv_forward(x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None,
                 activation: Any = "linear", *, stride: Any = 1, padding: Any = "valid",
                 dilation: Any = 1, groups: int = 1, stats: bool = False,
                 n_threads: int | None = None, **activation_params: Any) -> ConvForward:
    """Fused convolution: ``z = conv(x, w) + b``, ``a = phi(z)`` and, with ``stats``,
    per-channel mean and variance of z and a over the batch and the pixels (pooled over
    all ``batch * pixels * C_out`` entries too). Shapes and rules: the module doc;
    ``activation`` and ``**activation_params`` as in :func:`varprop.dense_forward`."""
    ext = _extension()
    groups = _check_conv(x, w, b, groups)
    stats = boolean("stats", stats)
    act = _resolve_activation(activation, activation_params)
    threads = resolve_n_threads(n_threads)
    geo, x4, wg, cg, og, _ = _setup(x, w, groups, stride, padding, dilation)
    batch, c_out, taps = x.shape[0], w.shape[-1], wg[0].shape[0]
    z = np.empty((batch, *geo.out, c_out), x.dtype)
    a = np.empty_like(z)
    rows = batch * geo.pixels
    if rows == 0:
        return ConvForward(z, a, LayerStats.empty(c_out) if stats else None)
    tile = _tile_rows(rows, taps, x.itemsize)
    n_tiles = -(-rows // tile)
    threads = min(threads, n_tiles)
    buf = _workspace("forward", x.dtype, (threads, 0 if geo.trivial else tile * taps))
    counts = np.minimum(tile, rows - tile * np.arange(n_tiles))
    p0, p1 = act.kernel_params
    parts = []
    with single_threaded_blas():
        for g in range(groups):
            bias = np.empty(0, x.dtype) if b is None else \
                np.ascontiguousarray(b[g * og:(g + 1) * og])
            moments = np.empty((6, n_tiles, og) if stats else (0, 0, 0), np.float64)
            ext.conv_forward(x4, wg[g], bias, z.reshape(rows, c_out), a.reshape(rows, c_out),
                             moments, buf, geo.geometry, *geo.out_hw, g * cg, g * og,
                             act.kernel_id, p0, p1, tile, threads)
            parts.append(_merge(moments, counts) if stats else None)
    if not stats:
        return ConvForward(z, a, None)
    z_mean, z_var, a_mean, a_var = (np.concatenate([m[i] for m in parts]) for i in range(4))
    return ConvForward(z, a, LayerStats(rows, z_mean, z_var, a_mean, a_var,
                                        *pooled(z_mean, z_var), *pooled(a_mean, a_var)))


def conv_backward(x: np.ndarray, w: np.ndarray, z: np.ndarray, grad_a: np.ndarray,
                  activation: Any = "linear", *, stride: Any = 1, padding: Any = "valid",
                  dilation: Any = 1, groups: int = 1, n_threads: int | None = None,
                  **activation_params: Any) -> ConvGradients:
    """Gradients of ``L = sum(grad_a * phi(conv(x, w) + b))``: dL/dx, dL/dw (summed over
    the batch), dL/db and dL/dz = grad_a * phi'(z). ``z`` is the forward pass's
    pre-activation; the other arguments as in :func:`conv_forward`."""
    dense_ext, conv_ext = _dense_extension(), _extension()
    groups = _check_conv(x, w, None, groups)
    act = _resolve_activation(activation, activation_params)
    threads = resolve_n_threads(n_threads)
    geo, x4, wg, cg, og, per = _setup(x, w, groups, stride, padding, dilation)
    batch, c_out, pix = x.shape[0], w.shape[-1], geo.pixels
    for name, arr in (("z", z), ("grad_a", grad_a)):
        _array(name, arr, (x.ndim,))
        if arr.shape != (batch, *geo.out, c_out):
            raise ValueError(f"{name} must have shape {(batch, *geo.out, c_out)} (the "
                             f"convolution's output), got {arr.shape}")
    _same_dtype({"x": x, "w": w, "z": z, "grad_a": grad_a})
    taps = wg[0].shape[0]
    grad_x, grad_z = np.empty(geo.image, x.dtype), np.empty(z.shape, x.dtype)
    if z.size == 0:
        return ConvGradients(np.zeros(x.shape, x.dtype), np.zeros(w.shape, x.dtype),
                             np.zeros(c_out, x.dtype), grad_z)
    z2 = np.ascontiguousarray(z).reshape(-1, c_out)
    ga2 = np.ascontiguousarray(grad_a).reshape(-1, c_out)
    gz2 = grad_z.reshape(-1, c_out)
    direct = geo.trivial and groups == 1  # x's rows are the patches, grad_x their gradient
    shape = (0, 0) if direct else (per * pix, taps)
    buf, gbuf = _workspace("cols", x.dtype, shape), _workspace("gcols", x.dtype, shape)
    gw, partials = [np.zeros((taps, og)) for _ in wg], [[] for _ in wg]
    p0, p1 = act.kernel_params
    with single_threaded_blas():
        for lo in range(0, batch, per):
            hi = min(batch, lo + per)
            rows = (hi - lo) * pix
            block_rows = max(1, min(rows, _BACKWARD_BLOCK // og))
            dx_rows, dx_cols = forward_tiles(rows, taps)
            dw_rows, dw_cols = forward_tiles(taps, og)
            dw_blocks = weight_grad_blocks(rows, taps, og)
            dw_part = _workspace("dwparts", x.dtype, (dw_blocks, taps, og)) \
                if dw_blocks > 1 else None
            for g in range(groups):
                cols = _columns(x4[lo:hi], geo, g * cg, cg, buf, threads)
                sl, r = slice(g * og, (g + 1) * og), slice(lo * pix, hi * pix)
                if groups == 1:
                    zg, gag, gzg = z2[r], ga2[r], gz2[r]
                else:
                    zg, gag = np.ascontiguousarray(z2[r, sl]), np.ascontiguousarray(ga2[r, sl])
                    gzg = np.empty((rows, og), x.dtype)
                gcols = grad_x[lo:hi].reshape(rows, taps) if direct else gbuf[:rows]
                gw_chunk = np.empty((taps, og), x.dtype)
                part = np.empty((_ceil_div(rows, block_rows), og), np.float64)
                dense_ext.backward(cols, wg[g], zg, gag, gzg, gcols, gw_chunk, part,
                                   act.kernel_id, p0, p1, block_rows, dx_rows, dx_cols,
                                   dw_rows, dw_cols, threads, dw_blocks, dw_part)
                if not direct:
                    conv_ext.col2im(gcols, grad_x[lo:hi], geo.geometry, *geo.out_hw,
                                    g * cg, cg, threads)
                if groups > 1:
                    gz2[r, sl] = gzg
                gw[g] += gw_chunk
                partials[g].append(part)
    grad_w = np.concatenate(gw, axis=1).astype(x.dtype).reshape(w.shape)
    grad_b = np.concatenate([np.sum(np.concatenate(p), axis=0) for p in partials])
    return ConvGradients(grad_x.reshape(x.shape), grad_w, grad_b.astype(x.dtype), grad_z)


#: The pooling kernels live in :mod:`varprop.pool_kernels`; these names stay importable
#: from here, where they were first published.
_POOLING = ("max_pool_forward", "max_pool_backward", "avg_pool_forward", "avg_pool_backward")


def __getattr__(name: str) -> Any:
    if name in _POOLING:
        from . import pool_kernels
        return getattr(pool_kernels, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
