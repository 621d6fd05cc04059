"""Shared pieces of :mod:`varprop.initializers`.

The constants, the :class:`WeightMoments` record, the input checks that every
initializer runs, and the sampling primitives (normal, uniform, truncated normal)
that the schemes build on. Nothing here keeps global state: every draw takes a
:class:`numpy.random.Generator` made by :func:`as_generator`.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Union

import numpy as np
from scipy import special, stats

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
    "check_int",
    "check_bool",
    "check_choice",
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

SeedLike = Union[None, int, np.random.SeedSequence, np.random.BitGenerator, np.random.Generator]
"""What ``seed`` accepts: None (fresh OS entropy), an int, a SeedSequence, a
BitGenerator or a Generator (used as it is, so its state advances)."""

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
# input checks
# ---------------------------------------------------------------------------


def _type_name(value: object) -> str:
    return type(value).__name__


def as_generator(seed: SeedLike = None) -> np.random.Generator:
    """Normalize ``seed`` with :func:`numpy.random.default_rng`.

    A Generator is returned unaltered (its state advances as it draws); None, an
    int, a SeedSequence or a BitGenerator make a new PCG64-based Generator, so the
    same int gives the same arrays on every machine and thread count.

    Raises:
        TypeError: for anything else (bools, floats, strings, legacy RandomState).
    """
    if isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, (bool, np.bool_)) or not (
        seed is None
        or isinstance(seed, (numbers.Integral, np.random.SeedSequence, np.random.BitGenerator))
    ):
        raise TypeError(
            "seed must be None, an int, a numpy.random.SeedSequence, a BitGenerator or a "
            f"numpy.random.Generator; got {seed!r} ({_type_name(seed)})"
        )
    try:
        return np.random.default_rng(seed)
    except (ValueError, TypeError) as exc:  # e.g. a negative int
        raise ValueError(f"seed: {exc}; got {seed!r}") from None


def check_shape(shape: ShapeLike, argname: str = "shape") -> tuple[int, ...]:
    """Return ``shape`` as a tuple of Python ints, or raise naming the bad entry.

    Raises:
        TypeError: not an int or a sequence of ints (floats such as 3.0, bools and
            strings are refused: a shape is never guessed).
        ValueError: a negative dimension.
    """
    if type(shape) is tuple and all(type(d) is int and d >= 0 for d in shape):
        return shape  # fast path: already a tuple of non-negative Python ints
    if isinstance(shape, (numbers.Integral, np.integer)) and not isinstance(shape, (bool, np.bool_)):
        dims: Sequence[Any] = (shape,)
    elif isinstance(shape, np.ndarray) and shape.ndim == 1:
        dims = list(shape)
    elif isinstance(shape, Sequence) and not isinstance(shape, (str, bytes)):
        dims = shape
    else:
        raise TypeError(
            f"{argname} must be an int or a sequence of ints; got {shape!r} ({_type_name(shape)})"
        )
    out = []
    for i, d in enumerate(dims):
        if isinstance(d, (bool, np.bool_)) or not isinstance(d, (numbers.Integral, np.integer)):
            raise TypeError(
                f"{argname} must hold integers; got {d!r} ({_type_name(d)}) at position {i} of {shape!r}"
            )
        d = int(d)
        if d < 0:
            raise ValueError(f"{argname} must hold non-negative integers; got {d} at position {i} of {shape!r}")
        out.append(d)
    return tuple(out)


def check_dtype(dtype: Any) -> np.dtype:
    """Return ``dtype`` as a real floating numpy dtype, or raise TypeError.

    Integer, boolean and complex dtypes are refused: every initializer draws real
    floating-point weights.
    """
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"dtype must be a real floating dtype such as numpy.float32; got {dtype!r}") from None
    if not np.issubdtype(dt, np.floating):
        raise TypeError(
            f"dtype must be a real floating dtype (float16, float32, float64); got {dt.name}"
        )
    return dt


def check_real(
    argname: str,
    value: Any,
    *,
    positive: bool = False,
    nonnegative: bool = False,
    owner: str = "",
) -> float:
    """Return ``value`` as a finite float, optionally > 0 or >= 0.

    Raises:
        TypeError: not a real number (bools and strings included).
        ValueError: not finite, or the sign condition fails.
    """
    where = f"{owner}: " if owner else ""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Real, np.floating, np.integer)):
        raise TypeError(f"{where}{argname} must be a real number; got {value!r} ({_type_name(value)})")
    x = float(value)
    if not math.isfinite(x):
        raise ValueError(f"{where}{argname} must be finite; got {value!r}")
    if positive and not x > 0.0:
        raise ValueError(f"{where}{argname} must be > 0; got {value!r}")
    if nonnegative and not x >= 0.0:
        raise ValueError(f"{where}{argname} must be >= 0; got {value!r}")
    return x


def check_int(argname: str, value: Any, *, minimum: int | None = None, owner: str = "") -> int:
    """Return ``value`` as an int (bools refused), optionally >= ``minimum``."""
    where = f"{owner}: " if owner else ""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Integral, np.integer)):
        raise TypeError(f"{where}{argname} must be an int; got {value!r} ({_type_name(value)})")
    n = int(value)
    if minimum is not None and n < minimum:
        raise ValueError(f"{where}{argname} must be >= {minimum}; got {n}")
    return n


def check_bool(argname: str, value: Any, *, owner: str = "") -> bool:
    """Return ``value`` if it is a bool, else raise TypeError."""
    if not isinstance(value, (bool, np.bool_)):
        where = f"{owner}: " if owner else ""
        raise TypeError(f"{where}{argname} must be True or False; got {value!r} ({_type_name(value)})")
    return bool(value)


def check_choice(argname: str, value: Any, choices: Sequence[str], *, owner: str = "") -> str:
    """Return ``value`` if it is one of ``choices``, else raise ValueError listing them."""
    where = f"{owner}: " if owner else ""
    if not isinstance(value, str):
        raise TypeError(f"{where}{argname} must be a string, one of {tuple(choices)}; got {value!r}")
    if value not in choices:
        raise ValueError(f"{where}{argname} must be one of {tuple(choices)}; got {value!r}")
    return value


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
