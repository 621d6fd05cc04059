"""Shared pieces of :mod:`varprop.initializers`.

The constants, the :class:`WeightMoments` record, the shape and dtype checks that
every draw runs, and the sampling primitives (normal, uniform, truncated normal)
that the schemes build on. Nothing here keeps global state: every draw takes a
:class:`numpy.random.Generator` made by :func:`as_generator` (which, like ``SeedLike``
and every argument check, lives in :mod:`varprop._validate`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Union

import numpy as np
from scipy import special, stats

from .._validate import SeedLike, as_generator, finite_real, float_dtype, shape_tuple

__all__ = [
    "TRUNCATED_NORMAL_STD_FACTOR",
    "STRUCTURES",
    "WeightMoments",
    "SeedLike",
    "ShapeLike",
    "as_generator",
    "check_shape",
    "check_dtype",
    "check_real",
    "standard_normal",
    "uniform",
    "standard_truncated_normal",
    "truncated_normal_moments",
]

TRUNCATED_NORMAL_STD_FACTOR: float = 0.87962566103423978
"""Standard deviation of N(0, 1) truncated to [-2, 2].

Keras and JAX divide the standard deviation of their truncated-normal
variance-scaling draws by this number so that the variance after truncation is
exactly ``scale / n``. Its square, 0.7737413035499232, is the variance of the
truncated standard normal: ``1 - 4 phi(2) / (Phi(2) - Phi(-2))``.
"""

STRUCTURES: tuple[str, ...] = ("iid", "orthogonal", "identity", "constant", "sparse", "dirac")
"""Values of :attr:`WeightMoments.structure`, what the analyzer needs to know:

* ``"iid"``: independent, identically distributed entries (mean-field theory applies);
* ``"orthogonal"``: rows or columns exactly orthonormal up to the gain (norms preserved);
* ``"identity"``: the deterministic matrix ``gain * eye``;
* ``"constant"``: every entry equal (every unit of a layer computes the same function);
* ``"sparse"``: independent Gaussian entries with an exact number of zeros per unit;
* ``"dirac"``: the deterministic identity-preserving convolution kernel.
"""

ShapeLike = Union[int, Sequence[int]]
"""A shape: one non-negative int or a sequence of them."""


@dataclass(frozen=True)
class WeightMoments:
    """Analytic per-entry moments of the weights an initializer draws for one shape.

    Attributes:
        mean: E[W_ij], the expected value of one entry (for deterministic
            matrices such as the identity, the mean over the entries).
        var: Var[W_ij] (for deterministic matrices, the variance over the entries;
            for orthogonal draws E[W_ij^2] = gain^2 / max(rows, cols)).
        symmetric: True when every unit of a layer computes the same function
            (zeros, ones, constant): gradients cannot break the symmetry.
        structure: one of :data:`STRUCTURES`.

    Unpacking gives ``(mean, var)``: ``mean, var = init.moments(shape)``.
    """

    mean: float
    var: float
    symmetric: bool = False
    structure: str = "iid"

    def __post_init__(self) -> None:
        object.__setattr__(self, "mean", float(self.mean))
        object.__setattr__(self, "var", float(self.var))
        if not self.var >= 0.0:
            raise ValueError(f"WeightMoments: var must be >= 0; got {self.var!r}")
        if self.structure not in STRUCTURES:
            raise ValueError(
                f"WeightMoments: structure must be one of {STRUCTURES}; got {self.structure!r}"
            )

    @property
    def second_moment(self) -> float:
        """E[W_ij^2] = var + mean^2, what feeds the forward recursion of the analyzer."""
        return self.var + self.mean**2

    @property
    def std(self) -> float:
        """Standard deviation sqrt(var)."""
        return math.sqrt(self.var)

    def __iter__(self) -> Iterator[float]:
        yield self.mean
        yield self.var


# ---------------------------------------------------------------------------
# input checks: varprop._validate; the names base.py and gains.py import
# ---------------------------------------------------------------------------

check_real = finite_real


def check_shape(shape: ShapeLike, argname: str = "shape") -> tuple[int, ...]:
    """``shape`` as a tuple of non-negative Python ints (:func:`varprop._validate.shape_tuple`)."""
    return shape_tuple(argname, shape)


def check_dtype(dtype: Any) -> np.dtype:
    """``dtype`` as a real floating numpy dtype (:func:`varprop._validate.float_dtype`)."""
    return float_dtype("dtype", dtype)


# ---------------------------------------------------------------------------
# sampling primitives
# ---------------------------------------------------------------------------


def _draw_dtype(dtype: np.dtype) -> np.dtype:
    """The dtype numpy's Generator draws in: float32 for float16/float32, else float64."""
    return np.dtype(np.float32) if dtype.itemsize <= 4 else np.dtype(np.float64)


def _finish(x: np.ndarray, dtype: np.dtype) -> np.ndarray:
    return x if x.dtype == dtype else x.astype(dtype)


def standard_normal(rng: np.random.Generator, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """N(0, 1) draws of ``shape``; float32 and float16 use numpy's float32 ziggurat."""
    return _finish(rng.standard_normal(shape, dtype=_draw_dtype(dtype)), dtype)


def uniform(
    rng: np.random.Generator, shape: tuple[int, ...], low: float, high: float, dtype: np.dtype
) -> np.ndarray:
    """U[low, high) draws of ``shape`` (one draw of [0, 1) then one fused scale-and-shift)."""
    u = rng.random(shape, dtype=_draw_dtype(dtype))
    u *= u.dtype.type(high - low)
    if low != 0.0:
        u += u.dtype.type(low)
    return _finish(u, dtype)


def _truncated_icdf(u: np.ndarray, lower: float, upper: float) -> np.ndarray:
    """Inverse CDF of N(0, 1) truncated to [lower, upper] at the uniforms ``u``.

    Works in the lower tail (where ``ndtr`` keeps full relative precision): an
    interval in the upper tail is mirrored first.
    """
    if lower >= 0.0:  # mirror: X on [lower, upper]  <=>  -X on [-upper, -lower]
        return -_truncated_icdf(u, -upper, -lower)
    p_lo, p_hi = special.ndtr(lower), special.ndtr(upper)
    x = special.ndtri(p_lo + u * (p_hi - p_lo))
    return np.clip(x, lower, upper)


_CHUNK = 1 << 18
"""Elements per block of the truncated-normal fix-up pass (1 MiB of float32: stays in cache)."""


def standard_truncated_normal(
    rng: np.random.Generator,
    shape: tuple[int, ...],
    lower: float,
    upper: float,
    dtype: np.dtype,
    scale: float = 1.0,
    shift: float = 0.0,
) -> np.ndarray:
    """``shift + scale * X``, X ~ N(0, 1) conditioned on ``lower <= X <= upper``, exactly.

    No rejection loop. When the interval holds at least half of the normal mass
    (the usual +-2 case: 95.4 %), draw N(0, 1) and keep the entries inside; give
    each entry outside one fresh N(0, 1) draw, kept if inside; and fill the few
    still outside (0.2 % at +-2) by the inverse CDF of the truncated law. Every entry
    is thus either a normal draw conditioned on landing inside or an exact
    inverse-CDF draw, independently of the others: the result is exactly the
    truncated law, with a fixed number of vectorized stages. The fix-up runs over
    fixed blocks of :data:`_CHUNK` elements (cache-resident; the block boundaries
    depend only on the size, so a seed gives the same array everywhere), scaling
    each block while it is hot. Narrow or far-tail intervals (mass < 1/2) use the
    inverse CDF for every entry.
    """
    if lower < 0:
        mass = float(special.ndtr(upper) - special.ndtr(lower))
    else:
        mass = float(special.ndtr(-lower) - special.ndtr(-upper))
    wdt = _draw_dtype(dtype)
    if mass < 0.5:
        x = _truncated_icdf(rng.random(shape), lower, upper) * scale + shift
        return _finish(x.astype(wdt, copy=False), dtype)
    x = rng.standard_normal(shape, dtype=wdt)
    flat = x.reshape(-1)
    symmetric = lower == -upper
    hi, lo = wdt.type(upper), wdt.type(lower)
    buf = np.empty(min(_CHUNK, flat.size), dtype=wdt)
    mask = np.empty(buf.size, dtype=bool)
    mask2 = np.empty(buf.size if not symmetric else 0, dtype=bool)
    s_, t_ = wdt.type(scale), wdt.type(shift)
    for start in range(0, flat.size, _CHUNK):
        block = flat[start:start + _CHUNK]
        k = block.size
        if symmetric:
            np.greater(np.abs(block, out=buf[:k]), hi, out=mask[:k])
        else:
            np.logical_or(np.less(block, lo, out=mask[:k]), np.greater(block, hi, out=mask2[:k]), out=mask[:k])
        bad = np.flatnonzero(mask[:k])
        if bad.size:
            # Second stage: fresh normals for the outside entries (inside with the same
            # probability), and the inverse CDF (slower: ndtri) for the few left outside.
            fresh = rng.standard_normal(bad.size, dtype=wdt)
            out = np.flatnonzero((fresh < lo) | (fresh > hi))
            if out.size:
                fresh[out] = _truncated_icdf(rng.random(out.size), lower, upper)
            block[bad] = fresh
        if scale != 1.0:
            block *= s_
        if shift != 0.0:
            block += t_
    return _finish(x, dtype)


@lru_cache(maxsize=256)
def truncated_normal_moments(lower: float, upper: float) -> tuple[float, float]:
    """Mean and variance of N(0, 1) truncated to [lower, upper] (scipy's truncnorm).

    With Z = Phi(b) - Phi(a): mean = (phi(a) - phi(b)) / Z and
    var = 1 + (a phi(a) - b phi(b)) / Z - mean^2. At (-2, 2) the variance is
    ``TRUNCATED_NORMAL_STD_FACTOR ** 2`` to the last bit.
    """
    mean, var = stats.truncnorm.stats(lower, upper, moments="mv")
    return float(mean), float(var)
