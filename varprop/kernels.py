"""Fused dense-layer kernels: the validated public face of ``varprop._kernels``.

``dense_forward`` computes ``z = x @ w + b`` and ``a = phi(z)`` in one pass: the matrix
product runs through BLAS on fixed tiles inside an OpenMP parallel region and the epilogue
(bias, activation, optional batch statistics) runs on each tile while it is in cache.
``dense_backward`` computes the gradients in three phases that keep every core busy.

Input rules (the same for every kernel):
    * arrays are float32 or float64, all of one dtype: mixed dtypes are a TypeError,
      never a silent upcast; integer, bool, float16 and complex arrays are a TypeError.
    * x is ``(batch, n_in)``, w ``(n_in, n_out)``, b ``(n_out,)``; dimensions must agree.
    * non-contiguous and Fortran-ordered arrays are accepted and copied to C order first
      (the copy costs one pass over the array; pass C-contiguous arrays to avoid it).
    * outputs are new C-contiguous arrays of the input dtype; statistics are float64.
    * results are bitwise identical for any thread count: the tile grid depends on the
      shapes only and reductions run in a fixed order.
    * NaN and inf propagate as IEEE arithmetic says.

The plain-numpy twins are in :mod:`varprop._reference`.

The compiled extension ``varprop._kernels`` is loaded on the first kernel call, not at
import: without it ``import varprop`` and the mean-field theory still work, and a kernel
call raises :class:`ExtensionMissingError` saying why the extension is missing.
"""

from __future__ import annotations

import importlib.machinery
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from ._blas import single_threaded_blas
from ._results import DenseForward, DenseGradients, LayerStats, pooled
from ._threads import resolve_n_threads
from ._validate import boolean
from .activations import Activation, get_activation

__all__ = ["dense_forward", "dense_backward", "activation_apply", "forward_tiles",
           "built_with_openmp", "extension_available", "ExtensionMissingError"]

# The tile grid is a function of the shapes alone, so results cannot depend on threads
# (docs/kernels.md, "Tile grid", has the measurements behind these numbers).
_MAX_TILES = 64  # enough independent tiles for 64 cores on large outputs
# Outputs per tile at least: each tile's GEMM re-packs its row panel of x and its column
# panel of w, a cost per flop of about 1/rows + 1/cols. Measured on one core (1024x4096
# x4096 float32 relu, CPU time over one bare sgemm): 256x2048 tiles 1.12, 256x256 1.22,
# 128x256 1.44, 128x128 1.59; so tiles stay at least 128x256 in area, and square.
_MIN_TILE_AREA = 128 * 256
_COL_ALIGN = 16  # tile widths are multiples of 16 elements (64-byte lines in float32)
_BACKWARD_BLOCK = 32768  # elements per block of the elementwise backward phase
_INT32_MAX = 2**31 - 1  # BLAS (LP64) takes 32-bit dimensions


class ExtensionMissingError(ImportError, RuntimeError):
    """The compiled extension ``varprop._kernels`` cannot be imported; the message says
    why (not built, a source tree without a build, or a build that fails to load) and
    how to build it. Both an ImportError and a RuntimeError."""


_extension_module: ModuleType | None = None


def _missing_message(exc: BaseException, module: str = "_kernels",
                     uses: str = "the kernels (dense_forward, dense_backward, activation_apply, "
                                 "and measure, compare and train, which call them)") -> str:
    """Why ``varprop.<module>`` did not import, and what to do about it."""
    package = Path(__file__).resolve().parent
    built = [p.name for p in package.glob(module + ".*") if p.suffix in (".so", ".pyd")]
    loadable = [n for n in built
                if any(n == module + s for s in importlib.machinery.EXTENSION_SUFFIXES)]
    head = (f"varprop's compiled extension varprop.{module} cannot be imported, so {uses} "
            "cannot run; the mean-field theory (varprop.analyze, varprop.theory) works "
            "without it. ")
    if loadable:
        return head + (f"{package / loadable[0]} exists but failed to load ({exc}): "
                       "rebuild it with `pip install -e .` in the source tree, or reinstall "
                       "with `pip install --force-reinstall varprop`.")
    if (package / f"{module}.pyx").exists():
        other = f" (found {', '.join(built)}, built for another Python)" if built else ""
        return head + (f"varprop was imported from the source tree {package.parent}, which "
                       f"holds no compiled extension for this Python{other}: build it with "
                       "`pip install -e .` (or `python setup.py build_ext --inplace`) in "
                       f"{package.parent}, or run from another directory to use an "
                       f"installed varprop. ({type(exc).__name__}: {exc})")
    return head + (f"It was not built ({type(exc).__name__}: {exc}): install varprop "
                   "with `pip install .` (or `pip install -e .` from a source checkout), "
                   "which needs a C compiler, Cython and numpy.")


def _extension() -> ModuleType:
    """The compiled module, imported on first use; ExtensionMissingError without it."""
    global _extension_module
    if _extension_module is None:
        try:
            from . import _kernels
        except ImportError as exc:
            raise ExtensionMissingError(_missing_message(exc)) from exc
        _extension_module = _kernels
    return _extension_module


def extension_available() -> bool:
    """True when the compiled kernels import (without them only the theory works)."""
    try:
        _extension()
    except ExtensionMissingError:
        return False
    return True


def built_with_openmp() -> bool:
    """True when the compiled kernels were built with OpenMP (ExtensionMissingError
    without the compiled extension)."""
    return bool(_extension().built_with_openmp())


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def forward_tiles(rows: int, cols: int) -> tuple[int, int]:
    """(tile_rows, tile_cols) of a (rows x cols) output, from the shape alone.

    The number of tiles is a power of two, ``rows * cols / _MIN_TILE_AREA`` rounded down
    and capped at ``_MAX_TILES`` (at least 1); among the ways to split it into row and
    column tiles the most nearly square tiles win (squares re-pack the least per flop:
    the packed panels grow as rows + cols, the work as rows * cols), ties going to fewer
    row tiles. Column widths are multiples of 16. A 256x1024 output gets 8 tiles of
    256x128, a 1024x4096 output 64 tiles of 256x256."""
    rows, cols = max(int(rows), 1), max(int(cols), 1)
    target = min(_MAX_TILES, max(1, rows * cols // _MIN_TILE_AREA))
    target = 1 << (target.bit_length() - 1)  # a power of two: even shares for 2^k threads
    best: tuple[float, int, int] | None = None
    splits = 1
    while splits <= target:
        tile_rows = _ceil_div(rows, min(splits, rows))
        width = _ceil_div(cols, target // splits)
        tile_cols = min(cols, _COL_ALIGN * _ceil_div(width, _COL_ALIGN))
        aspect = max(tile_rows / tile_cols, tile_cols / tile_rows)
        if best is None or aspect < best[0] - 1e-12:
            best = (aspect, tile_rows, tile_cols)
        splits *= 2
    assert best is not None
    return best[1], best[2]


#: A dW tile's row block of the batch has at least this many rows (a GEMM over fewer
#: spends more on packing than on products).
_MIN_INNER_ROWS = 4096


def weight_grad_blocks(batch: int, n_in: int, n_out: int) -> int:
    """How many row blocks of the batch a backward pass splits each dW tile into, from
    the shape alone: a power of two that brings the dW tiles up to the forward grid's
    count for a square output of the same work (at most :data:`_MAX_TILES`), with at
    least :data:`_MIN_INNER_ROWS` rows a block. 1 for the usual dense layer; a
    convolution's small ``taps x channels`` dW over ``batch x pixels`` rows gets several
    (docs/kernels.md, "The weight gradient")."""
    dw_rows, dw_cols = forward_tiles(n_in, n_out)
    tiles = _ceil_div(n_in, dw_rows) * _ceil_div(n_out, dw_cols)
    want = min(_MAX_TILES, max(1, batch * max(n_in, n_out) // _MIN_TILE_AREA)) // tiles
    blocks = max(1, min(want, batch // _MIN_INNER_ROWS))
    return 1 << (blocks.bit_length() - 1)


def _dtype_of(name: str, arr: Any) -> np.dtype:
    if not isinstance(arr, np.ndarray):
        raise TypeError(f"{name} must be a numpy array, got {type(arr).__name__}")
    if arr.dtype not in (np.float32, np.float64):
        raise TypeError(
            f"{name} must have dtype float32 or float64, got {arr.dtype} "
            f"(convert with {name}.astype(np.float32))"
        )
    return arr.dtype


def _check_ndim(name: str, arr: np.ndarray, ndim: int, what: str) -> None:
    if arr.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D {what}, got shape {arr.shape}")
    for size in arr.shape:
        if size > _INT32_MAX:
            raise ValueError(f"{name} has a dimension over 2**31 - 1: {arr.shape}")


def _same_dtype(arrays: dict[str, np.ndarray]) -> np.dtype:
    dtypes = {name: _dtype_of(name, a) for name, a in arrays.items()}
    first_name, first = next(iter(dtypes.items()))
    for name, dt in dtypes.items():
        if dt != first:
            raise TypeError(
                f"{name} has dtype {dt} but {first_name} has {first}: all arrays must "
                "share one dtype (float32 or float64); convert explicitly"
            )
    return first


def _c(arr: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(arr)


def _resolve_activation(activation: Any, params: dict[str, Any]) -> Activation:
    return get_activation(activation, **params)


def dense_forward(
    x: np.ndarray,
    w: np.ndarray,
    b: np.ndarray | None = None,
    activation: "str | Activation" = "relu",
    *,
    stats: bool = False,
    n_threads: int | None = None,
    **activation_params: Any,
) -> DenseForward:
    """Fused dense layer: ``z = x @ w + b``, ``a = phi(z)``, optional batch statistics.

    Args:
        x: inputs, shape ``(batch, n_in)``, float32 or float64.
        w: weights, shape ``(n_in, n_out)``, the dtype of x.
        b: bias, shape ``(n_out,)``, or None for no bias.
        activation: a name from :data:`varprop.activations.ACTIVATION_NAMES` or an
            :class:`~varprop.activations.Activation`.
        stats: also return per-unit and layer-pooled mean and variance of z and a over
            the batch (float64), accumulated on each tile inside the same pass.
        n_threads: OpenMP threads; None uses :func:`varprop.get_num_threads`.
        **activation_params: parameters of a named activation (``negative_slope=0.2``).

    Returns:
        :class:`DenseForward` with ``z``, ``a`` (new arrays of x's dtype) and ``stats``.

    Example:
        >>> x = np.ones((4, 3), np.float32); w = np.eye(3, 2, dtype=np.float32)
        >>> dense_forward(x, w, activation="tanh").a.shape
        (4, 2)
    """
    kernels = _extension()
    arrays = {"x": x, "w": w} if b is None else {"x": x, "w": w, "b": b}
    dtype = _same_dtype(arrays)
    _check_ndim("x", x, 2, "(batch, n_in)")
    _check_ndim("w", w, 2, "(n_in, n_out)")
    if x.shape[1] != w.shape[0]:
        raise ValueError(
            f"x has {x.shape[1]} features (shape {x.shape}) but w expects "
            f"{w.shape[0]} inputs (shape {w.shape}): x.shape[1] must equal w.shape[0]"
        )
    n_out = w.shape[1]
    if b is not None:
        _check_ndim("b", b, 1, "(n_out,)")
        if b.shape[0] != n_out:
            raise ValueError(f"b must have shape ({n_out},) to match w {w.shape}, got {b.shape}")
    if not isinstance(stats, (bool, np.bool_)):
        raise TypeError(f"stats must be True or False, got {stats!r}")
    act = _resolve_activation(activation, activation_params)
    threads = resolve_n_threads(n_threads)

    batch = x.shape[0]
    z = np.empty((batch, n_out), dtype)
    a = np.empty((batch, n_out), dtype)
    if batch == 0 or n_out == 0:
        return DenseForward(z, a, LayerStats.empty(n_out) if stats else None)

    tile_rows, tile_cols = forward_tiles(batch, n_out)
    n_row_tiles = _ceil_div(batch, tile_rows)
    moments = np.empty((6, n_row_tiles, n_out) if stats else (0, 0, 0), np.float64)
    bias = _c(b) if b is not None else np.empty(0, dtype)
    p0, p1 = act.kernel_params
    xc, wc = _c(x), _c(w)
    with single_threaded_blas():
        kernels.forward(xc, wc, bias, z, a, moments, act.kernel_id, p0, p1,
                         tile_rows, tile_cols, threads)
    layer_stats = _combine_moments(moments, batch, tile_rows) if stats else None
    return DenseForward(z, a, layer_stats)


def _combine_moments(moments: np.ndarray, batch: int, tile_rows: int) -> LayerStats:
    """Merge per-row-tile column moments (Chan et al.'s parallel formula) in tile order."""
    n_row_tiles = moments.shape[1]
    counts = np.full(n_row_tiles, float(tile_rows))
    counts[-1] = batch - tile_rows * (n_row_tiles - 1)
    counts = counts[:, None]

    def merge(shift, s1, s2):
        tile_mean = shift + s1 / counts
        tile_m2 = np.maximum(s2 - s1 * s1 / counts, 0.0)
        mean = np.sum(counts * tile_mean, axis=0) / batch
        m2 = np.sum(tile_m2 + counts * (tile_mean - mean) ** 2, axis=0)
        return mean, m2 / batch

    z_mean, z_var = merge(*moments[0:3])
    a_mean, a_var = merge(*moments[3:6])
    return LayerStats(batch, z_mean, z_var, a_mean, a_var, *pooled(z_mean, z_var),
                      *pooled(a_mean, a_var))


def dense_backward(
    x: np.ndarray,
    w: np.ndarray,
    z: np.ndarray,
    grad_a: np.ndarray,
    activation: "str | Activation" = "relu",
    *,
    n_threads: int | None = None,
    **activation_params: Any,
) -> DenseGradients:
    """Gradients of ``L = sum(grad_a * phi(z))`` with ``z = x @ w + b``.

    ``grad_z = grad_a * phi'(z)``; ``grad_x = grad_z @ w.T``; ``grad_w = x.T @ grad_z``;
    ``grad_b = grad_z.sum(axis=0)`` (summed in float64, returned in the input dtype).

    Args:
        x: the layer's inputs ``(batch, n_in)``.
        w: its weights ``(n_in, n_out)``.
        z: its pre-activations ``(batch, n_out)`` (``dense_forward(...).z``).
        grad_a: the gradient of the loss with respect to the activations, like z.
        activation, n_threads, **activation_params: as in :func:`dense_forward`.

    Returns:
        :class:`DenseGradients` with ``grad_x``, ``grad_w``, ``grad_b`` and ``grad_z``.
    """
    kernels = _extension()
    dtype = _same_dtype({"x": x, "w": w, "z": z, "grad_a": grad_a})
    _check_ndim("x", x, 2, "(batch, n_in)")
    _check_ndim("w", w, 2, "(n_in, n_out)")
    _check_ndim("z", z, 2, "(batch, n_out)")
    _check_ndim("grad_a", grad_a, 2, "(batch, n_out)")
    batch, n_in = x.shape
    if w.shape[0] != n_in:
        raise ValueError(
            f"x has {n_in} features (shape {x.shape}) but w expects {w.shape[0]} inputs "
            f"(shape {w.shape})"
        )
    n_out = w.shape[1]
    for name, arr in (("z", z), ("grad_a", grad_a)):
        if arr.shape != (batch, n_out):
            raise ValueError(f"{name} must have shape {(batch, n_out)} (batch, n_out), got {arr.shape}")
    act = _resolve_activation(activation, activation_params)
    threads = resolve_n_threads(n_threads)

    grad_x = np.zeros((batch, n_in), dtype)
    grad_w = np.zeros((n_in, n_out), dtype)
    if batch == 0 or n_out == 0:
        return DenseGradients(grad_x, grad_w, np.zeros(n_out, dtype), np.zeros((batch, n_out), dtype))
    if n_in == 0:  # nothing to multiply: only grad_z's column sums remain
        grad_z = grad_a * activation_apply(_c(z), act, derivative=True)
        return DenseGradients(grad_x, grad_w,
                              grad_z.sum(axis=0, dtype=np.float64).astype(dtype), grad_z)

    block_rows = max(1, min(batch, _BACKWARD_BLOCK // n_out))
    n_blocks = _ceil_div(batch, block_rows)
    dx_rows, dx_cols = forward_tiles(batch, n_in)
    dw_rows, dw_cols = forward_tiles(n_in, n_out)
    dw_blocks = weight_grad_blocks(batch, n_in, n_out)
    grad_z = np.empty((batch, n_out), dtype)
    partials = np.empty((n_blocks, n_out), np.float64)
    dw_partials = np.empty((dw_blocks, n_in, n_out), dtype) if dw_blocks > 1 else None
    p0, p1 = act.kernel_params
    with single_threaded_blas():
        kernels.backward(_c(x), _c(w), _c(z), _c(grad_a), grad_z, grad_x, grad_w,
                          partials, act.kernel_id, p0, p1, block_rows,
                          dx_rows, dx_cols, dw_rows, dw_cols, threads, dw_blocks,
                          dw_partials)
    grad_b = np.sum(partials, axis=0).astype(dtype)
    return DenseGradients(grad_x, grad_w, grad_b, grad_z)


def activation_apply(x: np.ndarray, activation: "str | Activation" = "relu", *,
                     derivative: bool = False, **activation_params: Any) -> np.ndarray:
    """phi(x) (or phi'(x)) elementwise with the kernels' vectorized C math.

    Args:
        x: a float32 or float64 array of any shape.
        activation, **activation_params: as in :func:`dense_forward`.
        derivative: return phi'(x) instead of phi(x).
    """
    kernels = _extension()
    _dtype_of("x", x)
    derivative = boolean("derivative", derivative)
    act = _resolve_activation(activation, activation_params)
    flat = np.ascontiguousarray(x).reshape(-1)
    out = np.empty_like(flat)
    p0, p1 = act.kernel_params
    kernels.activation_apply(flat, out, act.kernel_id, p0, p1, bool(derivative))
    return out.reshape(x.shape)
