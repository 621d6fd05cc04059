"""Structured schemes: orthogonal, identity, Dirac, delta-orthogonal and sparse.

Their entries are not independent (orthogonal), not random (identity, Dirac), or
have an exact count of zeros per unit (sparse); :meth:`moments` says which through
:attr:`WeightMoments.structure`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import scipy.linalg

from .._blas import single_threaded_blas
from .._validate import finite_real
from ._core import NORMAL_REACH, WeightMoments, _draw_dtype, square, square_times
from .base import Initializer
from .fans import FanOptions

__all__ = ["Orthogonal", "Identity", "Dirac", "DeltaOrthogonal", "Sparse", "haar_orthonormal"]


_TINY_QR = 1 << 18
"""QR problems with m * n^2 >= _TINY_QR (64 x 64 and up) run on one BLAS thread. The
bits of a multithreaded LAPACK QR depend on the BLAS thread count (measured: a 512 x 512
orthogonal draw differs between 1 and 2 OpenBLAS threads), and the same seed must give
the same array whatever the thread count; one thread costs 1.2x at 512 x 512 and 1.7x
at 4096 x 4096 against two (still 0.7x numpy's own np.linalg.qr). On a busy machine a
multithreaded BLAS's spinning threads can also make a 1 ms QR take a second. Below,
BLAS stays serial by itself and switching its thread count would cost more than the QR."""


def _qr(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Economic QR of the Fortran-ordered ``a`` (overwritten), on one BLAS thread.

    The limit is varprop's process-wide :func:`varprop._blas.single_threaded_blas`
    (shared with the kernels): a large BLAS call made by another Python thread at
    that moment also runs on one thread.
    """
    m, n = a.shape
    if m * n * n < _TINY_QR:
        return scipy.linalg.qr(a, mode="economic", overwrite_a=True, check_finite=False)
    with single_threaded_blas():
        return scipy.linalg.qr(a, mode="economic", overwrite_a=True, check_finite=False)


def haar_orthonormal(
    rng: np.random.Generator, rows: int, cols: int, dtype: np.dtype, scale: float = 1.0
) -> np.ndarray:
    """``scale`` times a Haar-distributed ``(rows, cols)`` matrix with orthonormal columns or rows.

    Columns are orthonormal when ``rows >= cols``, rows otherwise.

    QR of a standard normal ``(max, min)`` matrix with the sign fix
    ``Q <- Q diag(sign(diag(R)))`` (Mezzadri 2007, arXiv math-ph/0609050): without
    it QR's sign convention biases the distribution. A zero diagonal entry (measure
    zero) counts as positive. LAPACK ``geqrf``/``orgqr`` run in float32 for float16
    and float32, else float64.
    """
    m, n = max(rows, cols), min(rows, cols)
    wdt = _draw_dtype(dtype)
    a = rng.standard_normal((n, m), dtype=wdt).T  # Fortran-ordered (m, n): QR works in place
    q, r = _qr(a)
    q *= np.where(np.diagonal(r) < 0, wdt.type(-scale), wdt.type(scale))
    return q if rows >= cols else q.T


def _single_axis(argname: str, axes: tuple[int, ...], owner: str, shape: tuple[int, ...]) -> int:
    if len(axes) != 1:
        raise ValueError(f"{owner}: {argname} must name exactly one axis of shape {shape}; got {axes}")
    return axes[0]


class Orthogonal(Initializer):
    """A (semi-)orthogonal matrix times ``gain`` (Saxe et al. 2013, arXiv 1312.6120).

    The output axis is set apart and the other axes are flattened into one:
    ``M = W`` viewed as ``(prod(other axes), shape[out_axis])``; ``M`` has
    orthonormal columns when it is tall and orthonormal rows when it is wide
    (``M^T M = gain^2 I`` or ``M M^T = gain^2 I``), drawn from the Haar measure
    (QR with the sign fix, :func:`haar_orthonormal`). The out axis comes from the
    layout:

    * ``keras`` / ``jax``: the last axis, ``(k..., in, out)`` -> ``(k... * in, out)``
      (Keras ``Orthogonal``; JAX ``orthogonal(column_axis=-1)``);
    * ``torch``: axis 0, ``(out, in, k...)`` -> ``out`` against ``in * k...``
      (PyTorch ``orthogonal_`` flattens to ``(out, in * k...)``, the transpose);
    * an explicit ``out_axis`` (one int) is JAX's ``column_axis``.

    Per entry, exactly:

    .. math:: E[W] = 0, \\qquad E[W^2] = \\frac{\\text{gain}^2}{\\max(\\text{rows}, \\text{cols})}

    (the sum of squares is ``gain^2 min(rows, cols)`` for every draw).

    Reproducibility: the Gaussian matrix is bit-for-bit the same for a seed; the QR
    runs in LAPACK, so the result agrees across machines, BLAS builds and thread
    counts to rounding (~1e-16 relative in float64), not necessarily bit for bit.

    Args:
        gain: the multiplier, > 0 (JAX calls it ``scale``).
    """

    name = "orthogonal"
    uses_fan_options = True

    def __init__(self, gain: float = 1.0, **fan_options: Any) -> None:
        super().__init__(**fan_options)
        self.gain = finite_real("gain", gain, positive=True, owner=self.name)

    def _params(self) -> dict[str, Any]:
        return {"gain": self.gain}

    def _check(self, shape: tuple[int, ...], opts: FanOptions) -> None:
        if len(shape) < 2:
            raise ValueError(f"{self.name}: shape must have rank >= 2; got {shape} of rank {len(shape)}")

    def _matrix_dims(self, shape: tuple[int, ...], opts: FanOptions) -> tuple[int, int, int]:
        axis = _single_axis("out_axis", opts.out_axes(shape), self.name, shape)
        cols = shape[axis]
        return axis, math.prod(shape) // cols if cols else 0, cols

    def _draw(
        self, shape: tuple[int, ...], rng: np.random.Generator, dtype: np.dtype, opts: FanOptions
    ) -> np.ndarray:
        axis, rows, cols = self._matrix_dims(shape, opts)
        q = haar_orthonormal(rng, rows, cols, dtype, self.gain)
        rest = tuple(d for i, d in enumerate(shape) if i != axis)
        return np.moveaxis(q.reshape(rest + (cols,)), -1, axis)

    def _moments(self, shape: tuple[int, ...], opts: FanOptions) -> WeightMoments:
        _, rows, cols = self._matrix_dims(shape, opts)
        if max(rows, cols) == 0:
            raise ValueError(f"{self.name}: shape {shape} has no entries; its moments are undefined")
        n = max(rows, cols)
        var = square(self.gain) / n
        if var == math.inf:  # gain^2 overflowed, gain^2 / n may not
            var = square_times(self.gain, 1.0 / n)
        return WeightMoments(0.0, var, structure="orthogonal")

    def _magnitude(self, shape: tuple[int, ...], opts: FanOptions) -> tuple[float, str]:
        return self.gain, f"gain={self.gain!r}"  # |entries of an orthonormal matrix| <= 1


class Identity(Initializer):
    """``gain`` times the identity matrix (Keras ``Identity``; PyTorch ``eye_``, gain 1).

    For a 2-D shape ``(r, c)``: ones on the main diagonal of ``eye(r, c)``; it reads
    the same in the keras ``(in, out)`` and torch ``(out, in)`` layouts (input i
    feeds output i). Deterministic: the moments are those of the ``r c`` entries,
    with ``k = min(r, c)``:

    .. math:: \\text{mean} = \\frac{\\text{gain}\\,k}{rc}, \\qquad
              \\text{var} = \\frac{\\text{gain}^2 k}{rc} - \\text{mean}^2

    Use :class:`Dirac` for convolution kernels.

    Args:
        gain: the diagonal value, > 0.
    """

    name = "identity"

    def __init__(self, gain: float = 1.0, **fan_options: Any) -> None:
        super().__init__(**fan_options)
        self.gain = finite_real("gain", gain, positive=True, owner=self.name)

    def _params(self) -> dict[str, Any]:
        return {"gain": self.gain}

    def _check(self, shape: tuple[int, ...], opts: FanOptions) -> None:
        if len(shape) != 2:
            raise ValueError(
                f"{self.name}: shape must be 2-D (a dense weight); got {shape} of rank {len(shape)}. "
                "For 3-D to 5-D convolution kernels use dirac"
            )

    def _draw(
        self, shape: tuple[int, ...], rng: np.random.Generator, dtype: np.dtype, opts: FanOptions
    ) -> np.ndarray:
        return self.gain * np.eye(*shape, dtype=dtype)

    def _moments(self, shape: tuple[int, ...], opts: FanOptions) -> WeightMoments:
        size = shape[0] * shape[1]
        if size == 0:
            raise ValueError(f"{self.name}: shape {shape} has no entries; its moments are undefined")
        p = min(shape) / size
        mean = self.gain * p
        var = square(self.gain) * p - square(mean)
        if not math.isfinite(var):  # gain^2 overflowed: var = gain^2 p (1 - p)
            var = square_times(self.gain, p * (1.0 - p))
        return WeightMoments(mean, var, structure="identity")

    def _magnitude(self, shape: tuple[int, ...], opts: FanOptions) -> tuple[float, str]:
        return self.gain, f"gain={self.gain!r}"


def _conv_axes(owner: str, shape: tuple[int, ...], opts: FanOptions) -> tuple[int, int, tuple[int, ...]]:
    """(in axis, out axis, spatial axes) of a 3-D to 5-D kernel."""
    if not 3 <= len(shape) <= 5:
        raise ValueError(
            f"{owner}: shape must be a 3-D to 5-D convolution kernel; got {shape} of rank {len(shape)}"
            + (". For 2-D shapes use identity" if len(shape) == 2 else "")
        )
    in_axes, out_axes, _ = opts.axes(shape)
    ia = _single_axis("in_axis", in_axes, owner, shape)
    oa = _single_axis("out_axis", out_axes, owner, shape)
    return ia, oa, tuple(i for i in range(len(shape)) if i not in (ia, oa))


class Dirac(Initializer):
    """The Dirac delta kernel: a convolution that copies its input (PyTorch ``dirac_``).

    For each group ``g`` and channel ``d < min(out/groups, in)``, the entry
    ``[out = g * out/groups + d, in = d]`` at the spatial centre ``k // 2`` is 1, all
    other entries 0. The layout gives the axes: torch ``(out, in/groups, k...)``
    (PyTorch's own), keras/jax ``(k..., in/groups, out)``, or explicit
    ``in_axis``/``out_axis``. The centre is ``k // 2`` as in PyTorch (for even
    ``k``, one past JAX's :class:`DeltaOrthogonal` centre ``(k - 1) // 2``).
    Deterministic; with ``c = groups * min(out/groups, in)`` ones among ``N`` entries:

    .. math:: \\text{mean} = c / N, \\qquad \\text{var} = c / N - (c / N)^2

    Args:
        groups: the convolution's groups (>= 1, dividing the out channels).
    """

    name = "dirac"
    uses_fan_options = True

    def __init__(self, groups: int = 1, **fan_options: Any) -> None:
        # The convolution's groups are the fan option of the same name (one value).
        super().__init__(groups=groups, **fan_options)

    @property
    def groups(self) -> int:
        """The convolution's groups."""
        return self.fan_options.groups

    def _check(self, shape: tuple[int, ...], opts: FanOptions) -> None:
        _, oa, _ = _conv_axes(self.name, shape, opts)
        if shape[oa] % opts.groups:
            raise ValueError(
                f"{self.name}: groups={opts.groups} must divide the {shape[oa]} output channels of shape {shape}"
            )

    def _count(self, shape: tuple[int, ...], opts: FanOptions) -> tuple[int, int, int, int, tuple[int, ...]]:
        ia, oa, spatial = _conv_axes(self.name, shape, opts)
        per_group = shape[oa] // opts.groups
        return ia, oa, per_group, min(per_group, shape[ia]), spatial

    def _draw(
        self, shape: tuple[int, ...], rng: np.random.Generator, dtype: np.dtype, opts: FanOptions
    ) -> np.ndarray:
        ia, oa, per_group, k, spatial = self._count(shape, opts)
        w = np.zeros(shape, dtype=dtype)
        d = np.arange(k)
        index: list[Any] = [0] * len(shape)
        index[oa] = (np.arange(opts.groups)[:, None] * per_group + d).ravel()
        index[ia] = np.tile(d, opts.groups)
        for s in spatial:
            index[s] = shape[s] // 2
        w[tuple(index)] = 1
        return w

    def _moments(self, shape: tuple[int, ...], opts: FanOptions) -> WeightMoments:
        *_, k, _ = self._count(shape, opts)
        size = math.prod(shape)
        if size == 0:
            raise ValueError(f"{self.name}: shape {shape} has no entries; its moments are undefined")
        p = opts.groups * k / size
        return WeightMoments(p, p - p * p, structure="dirac")

    def _magnitude(self, shape: tuple[int, ...], opts: FanOptions) -> tuple[float, str]:
        return 1.0, ""


class DeltaOrthogonal(Initializer):
    """Delta-orthogonal convolution kernel (Xiao et al. 2018, arXiv 1806.05393; JAX ``delta_orthogonal``).

    Zero everywhere except the spatial centre ``(k - 1) // 2`` (JAX's), which holds
    ``gain`` times an ``(in, out)`` matrix with orthonormal rows, so the convolution
    is an isometry up to ``gain`` (dynamical isometry for CNNs). Requires
    ``in <= out`` (as JAX). With ``K`` the product of the spatial sizes, per entry:

    .. math:: E[W] = 0, \\qquad E[W^2] = \\frac{\\text{gain}^2}{K\\,\\text{out}}

    so ``fan_in * E[W^2] = gain^2 in / out``: the map preserves the squared norm of
    its input up to ``gain^2``, spread over ``out >= in`` channels. Axes from the
    layout as in :class:`Dirac`.

    Args:
        gain: the multiplier, > 0 (JAX calls it ``scale``).
    """

    name = "delta_orthogonal"
    uses_fan_options = True

    def __init__(self, gain: float = 1.0, **fan_options: Any) -> None:
        super().__init__(**fan_options)
        self.gain = finite_real("gain", gain, positive=True, owner=self.name)

    def _params(self) -> dict[str, Any]:
        return {"gain": self.gain}

    def _check(self, shape: tuple[int, ...], opts: FanOptions) -> None:
        ia, oa, _ = _conv_axes(self.name, shape, opts)
        if shape[ia] > shape[oa]:
            raise ValueError(
                f"{self.name}: needs in channels <= out channels for an isometry; shape {shape} has "
                f"{shape[ia]} in (axis {ia}) and {shape[oa]} out (axis {oa})"
            )

    def _draw(
        self, shape: tuple[int, ...], rng: np.random.Generator, dtype: np.dtype, opts: FanOptions
    ) -> np.ndarray:
        ia, oa, spatial = _conv_axes(self.name, shape, opts)
        m = haar_orthonormal(rng, shape[ia], shape[oa], dtype, self.gain)
        w = np.zeros(shape, dtype=dtype)
        index: list[Any] = [slice(None)] * len(shape)
        for s in spatial:
            index[s] = (shape[s] - 1) // 2
        w[tuple(index)] = m if ia < oa else m.T
        return w

    def _moments(self, shape: tuple[int, ...], opts: FanOptions) -> WeightMoments:
        ia, oa, spatial = _conv_axes(self.name, shape, opts)
        denom = math.prod(shape[s] for s in spatial) * shape[oa]
        if denom == 0:
            raise ValueError(f"{self.name}: shape {shape} has no entries; its moments are undefined")
        var = square(self.gain) / denom
        if var == math.inf:
            var = square_times(self.gain, 1.0 / denom)
        return WeightMoments(0.0, var, structure="orthogonal")

    def _magnitude(self, shape: tuple[int, ...], opts: FanOptions) -> tuple[float, str]:
        return self.gain, f"gain={self.gain!r}"


class Sparse(Initializer):
    """Sparse normal weights (Martens 2010, "Deep learning via Hessian-free optimization"; PyTorch ``sparse_``).

    Entries N(0, std^2), then for every input unit exactly
    ``n_zero = ceil(sparsity * n_out)`` of its ``n_out`` outgoing weights set to 0,
    chosen uniformly at random. In PyTorch's ``(out, in)`` layout that is
    ``ceil(sparsity * rows)`` zeros per column, as ``sparse_`` does (including its
    floating-point ``math.ceil(sparsity * rows)``); in varprop's ``(in, out)``
    layout the same count per row. The zero pattern comes from ``seed`` (PyTorch
    draws it from the global generator). With ``p = n_zero / n_out``, exactly:

    .. math:: E[W] = 0, \\qquad Var[W] = (1 - p)\\,\\text{std}^2

    Args:
        sparsity: the fraction of zeros per unit, in [0, 1).
        std: the standard deviation of the non-zero entries, > 0 (default 0.01).
    """

    name = "sparse"
    uses_fan_options = True

    def __init__(self, sparsity: float, std: float = 0.01, **fan_options: Any) -> None:
        super().__init__(**fan_options)
        self.sparsity = finite_real("sparsity", sparsity, owner=self.name)
        if not 0.0 <= self.sparsity < 1.0:
            raise ValueError(f"{self.name}: sparsity must be in [0, 1); got {sparsity!r}")
        self.std = finite_real("std", std, positive=True, owner=self.name)

    def _params(self) -> dict[str, Any]:
        return {"sparsity": self.sparsity, "std": self.std}

    def _check(self, shape: tuple[int, ...], opts: FanOptions) -> None:
        if len(shape) != 2:
            raise ValueError(f"{self.name}: shape must be 2-D; got {shape} of rank {len(shape)}")

    def _out_axis(self, shape: tuple[int, ...], opts: FanOptions) -> int:
        return _single_axis("out_axis", opts.out_axes(shape), self.name, shape)

    def n_zero(self, n_out: int) -> int:
        """Zeros per input unit among its ``n_out`` weights: ``ceil(sparsity * n_out)`` (PyTorch's rule)."""
        return int(math.ceil(self.sparsity * n_out))

    def _draw(
        self, shape: tuple[int, ...], rng: np.random.Generator, dtype: np.dtype, opts: FanOptions
    ) -> np.ndarray:
        oa = self._out_axis(shape, opts)
        w = rng.standard_normal(shape, dtype=_draw_dtype(dtype))
        w *= w.dtype.type(self.std)
        view = w if oa == 0 else w.T  # out axis first: one column per input unit
        mask = np.zeros(view.shape, dtype=bool)
        mask[: self.n_zero(view.shape[0])] = True
        rng.permuted(mask, axis=0, out=mask)
        view[mask] = 0
        return w

    def _moments(self, shape: tuple[int, ...], opts: FanOptions) -> WeightMoments:
        n_out = shape[self._out_axis(shape, opts)]
        if n_out == 0:
            raise ValueError(f"{self.name}: shape {shape} has no entries; its moments are undefined")
        p = self.n_zero(n_out) / n_out
        return WeightMoments(0.0, square_times(self.std, 1.0 - p), structure="sparse")

    def _magnitude(self, shape: tuple[int, ...], opts: FanOptions) -> tuple[float, str]:
        return NORMAL_REACH * self.std, f"std={self.std!r}"
