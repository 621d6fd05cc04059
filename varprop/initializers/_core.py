"""Shared pieces of :mod:`varprop.initializers`.

The constants, the :class:`WeightMoments` record, and the sampling primitives (normal, uniform, truncated normal)
that the schemes build on. Nothing here keeps global state: every draw takes a
:class:`numpy.random.Generator` made by :func:`as_generator` (which, like ``SeedLike``
and every argument check, lives in :mod:`varprop._validate`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Union

import numpy as np
from scipy import special, stats

from .._validate import SeedLike, as_generator

__all__ = [
    "TRUNCATED_NORMAL_STD_FACTOR",
    "STRUCTURES",
    "WeightMoments",
    "SeedLike",
    "ShapeLike",
    "as_generator",
    "square",
    "square_times",
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

NORMAL_REACH: float = 64.0
"""Standard deviations that bound a normal draw in practice: P(|Z| > 64) ~ 1e-891."""

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
        """E[W_ij^2] = var + mean^2, what feeds the forward recursion of the analyzer
        (``inf`` when it overflows a float)."""
        return self.var + square(self.mean)

    @property
    def std(self) -> float:
        """Standard deviation sqrt(var)."""
        return math.sqrt(self.var)

    def __iter__(self) -> Iterator[float]:
        yield self.mean
        yield self.var


def square(x: float) -> float:
    """``x ** 2`` of a Python float, ``inf`` where it overflows (``x ** 2`` raises
    OverflowError there; ``**`` rather than ``x * x`` keeps the historical bits)."""
    try:
        return x**2
    except OverflowError:
        return math.inf


def square_times(x: float, c: float = 1.0) -> float:
    """``x ** 2 * c`` (``c >= 0``), ``inf`` only where the result itself overflows: where
    ``x ** 2`` alone does, as ``(x sqrt(c)) ** 2``."""
    if c == 0.0:
        return 0.0
    v = square(x) * c
    return v if v != math.inf else square(x * math.sqrt(c))


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
    """U[low, high) draws of ``shape`` (one draw of [0, 1) then one fused scale-and-shift).

    When the width ``high - low`` overflows the draw dtype (e.g. ``(-1e308, 1e308)``, or
    ``(-3e38, 3e38)`` in float32) the halves are scaled instead, ``2 (low/2 + u (high/2 -
    low/2))``, which stays finite (doubling is exact); narrower ranges keep the one
    scale-and-shift, bit for bit. Bounds outside the dtype's range are the caller's to
    refuse (:meth:`Initializer.__call__` does).
    """
    u = rng.random(shape, dtype=_draw_dtype(dtype))
    t = u.dtype.type
    width = high - low
    if width <= float(np.finfo(u.dtype).max):
        u *= t(width)
        if low != 0.0:
            u += t(low)
    else:
        u *= t(high / 2.0 - low / 2.0)
        u += t(low / 2.0)
        u *= t(2.0)
    return _finish(u, dtype)


def _truncated_icdf(u: np.ndarray, lower: float, upper: float) -> np.ndarray:
    """Inverse CDF of N(0, 1) truncated to [lower, upper] at the uniforms ``u``.

    Works in the lower tail (where ``ndtr`` keeps full relative precision): an
    interval in the upper tail is mirrored first. Far in the tail (``Phi(upper) <``
    :data:`_LOG_TAIL`, i.e. ``upper < -35.9``) ``ndtr`` underflows (``Phi(-40)`` is
    ``4e-350``, below the smallest float), so there the inverse runs on logarithms:
    ``log p = log Phi(upper) + log(r + u (1 - r))`` with ``r = Phi(lower) / Phi(upper)``,
    inverted by ``ndtri_exp``. Nearer intervals keep ``ndtri`` (same bits as ever).
    """
    if lower >= 0.0:  # mirror: X on [lower, upper]  <=>  -X on [-upper, -lower]
        return -_truncated_icdf(u, -upper, -lower)
    p_hi = special.ndtr(upper)
    if p_hi >= _LOG_TAIL:
        p_lo = special.ndtr(lower)
        x = special.ndtri(p_lo + u * (p_hi - p_lo))
    else:
        log_hi = special.log_ndtr(upper)
        r = math.exp(special.log_ndtr(lower) - log_hi)  # P(X < lower | X < upper), in [0, 1)
        with np.errstate(divide="ignore"):  # u = 0 with r = 0: log 0 = -inf, clipped to lower
            x = special.ndtri_exp(log_hi + np.log(r + u * (1.0 - r)))
    return np.clip(x, lower, upper)


_LOG_TAIL = 1e-280
"""Below this ``Phi(upper)`` the truncated inverse CDF works on logarithms: ``ndtr`` nears
the subnormal range (2.2e-308) and then underflows to 0."""


def _narrow_draw(rng: np.random.Generator, shape: tuple[int, ...], lower: float,
                 upper: float) -> np.ndarray:
    """N(0, 1) conditioned on a narrow [lower, upper] (width <= :data:`_NARROW`), in float64.

    The inverse CDF cannot resolve such an interval: ``Phi(upper) - Phi(lower)`` cancels
    and its uniforms fall on a few thousand levels of ``p`` (at [0.5, 0.5 + 1e-13], ~300),
    and ``ndtri`` rounds to ulps of x, a bias of the sample mean that a large sample
    shows. Instead X = r + S, r the end nearest 0 (an interval at or below 0 is
    mirrored): S has density proportional to ``exp(-r s - s^2 / 2)`` on [0, w], drawn as
    the truncated exponential ``-log1p(u expm1(-r w)) / r`` (uniform when r is ~0) and
    kept with probability ``exp(-s^2 / 2) >= exp(-w^2 / 2)``; the few refused (fewer
    than 5e-7 of the entries) take inverse-CDF draws. X is exactly the truncated law and
    S keeps full relative precision, so only the final ``r + S`` rounds.
    """
    if upper <= 0.0:
        return -_narrow_draw(rng, shape, -upper, -lower)
    r, w = lower, upper - lower
    u = rng.random(shape)
    s = u * w if abs(r) < 1e-150 else -np.log1p(u * math.expm1(-r * w)) / r
    refused = np.flatnonzero(rng.random(shape) >= np.exp(-0.5 * s * s))
    x = np.clip(r + np.clip(s, 0.0, w), lower, upper)
    if refused.size:
        x.reshape(-1)[refused] = _truncated_icdf(rng.random(refused.size), lower, upper)
    return x


_NARROW = 1e-3
"""Intervals at most this wide are drawn by :func:`_narrow_draw`."""

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
    each block while it is hot. Far-tail and other intervals of mass < 1/2 use the
    inverse CDF for every entry, intervals narrower than :data:`_NARROW`
    :func:`_narrow_draw`.
    """
    if lower < 0:
        mass = float(special.ndtr(upper) - special.ndtr(lower))
    else:
        mass = float(special.ndtr(-lower) - special.ndtr(-upper))
    wdt = _draw_dtype(dtype)
    if upper - lower <= _NARROW:
        x = _narrow_draw(rng, shape, lower, upper) * scale + shift
        return _finish(x.astype(wdt, copy=False), dtype)
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
    """Mean and variance of N(0, 1) truncated to [lower, upper], to ~1e-13 relative.

    Where the interval holds [-1, 1], scipy's truncnorm: with Z = Phi(b) - Phi(a),
    mean = (phi(a) - phi(b)) / Z and var = 1 + (a phi(a) - b phi(b)) / Z - mean^2, whose
    terms are all of order 1 there (at (-2, 2) the variance is
    ``TRUNCATED_NORMAL_STD_FACTOR ** 2`` to the last bit). Elsewhere those terms cancel:
    Z by the difference of two CDFs, var by terms of order ``max(a^2, b^2)`` against a
    variance that can be as small as ``(b - a)^2 / 12`` (at [0.5, 0.50001] scipy's
    variance is -6.5 times the true one; at [4, 5] it is 6e-13 off). There the moments
    are integrated: wholly in one tail beyond :data:`_TAIL_MOMENTS` (e.g. [40, 50]) by
    :func:`_tail_moments`, otherwise by :func:`_centred_moments`.
    """
    if lower >= _TAIL_MOMENTS:
        return _tail_moments(lower, upper)
    if upper <= -_TAIL_MOMENTS:
        mean, var = _tail_moments(-upper, -lower)
        return -mean, var
    if lower <= -1.0 and upper >= 1.0:
        with np.errstate(over="ignore"):  # a**2 of a bound like -1e300: its phi is 0 anyway
            mean, var = stats.truncnorm.stats(lower, upper, moments="mv")
        return float(mean), float(var)
    return _centred_moments(lower, upper)


_GL_NODES, _GL_WEIGHTS = np.polynomial.legendre.leggauss(20)
_REACH = 40.0
"""Beyond this |x| the normal density is below e^-800 of its value at |x| = 5: an interval
that reaches inside +-5 is cut here without changing a digit of its moments."""


def _centred_moments(a: float, b: float) -> tuple[float, float]:
    """Mean and variance of N(0, 1) cut to [a, b] (reaching inside +-5) as ``c + T``, c
    the midpoint, T of density proportional to ``exp(-c t - t^2 / 2)`` on [a - c, b - c]:
    composite 20-point Gauss-Legendre, panels short enough that the exponent changes by
    at most 1.5 across each (the rule is then exact to rounding), weights scaled by their
    largest, and the variance from the deviations about the mean (two passes). Every
    term is positive and of the size of the result: no cancellation, at any width."""
    lo, hi = max(a, -_REACH), min(b, _REACH)
    c = 0.5 * (lo + hi)
    panels = max(1, math.ceil((hi - lo) * max(1.0, abs(lo), abs(hi))))
    edges = np.linspace(lo - c, hi - c, panels + 1)  # lo - c, hi - c: exact differences
    mid, half = 0.5 * (edges[1:] + edges[:-1]), 0.5 * (edges[1:] - edges[:-1])
    t = (mid[:, None] + half[:, None] * _GL_NODES).ravel()
    exponent = -(c * t + 0.5 * t * t)
    w = (half[:, None] * _GL_WEIGHTS).ravel() * np.exp(exponent - exponent.max())
    w /= w.sum()
    mean_t = float(w @ t)
    return c + mean_t, float(w @ np.square(t - mean_t))


_TAIL_MOMENTS = 5.0
"""From this distance to 0 (whole interval on one side) the truncated moments are integrated."""


def _tail_moments(a: float, b: float) -> tuple[float, float]:
    """Mean and variance of N(0, 1) cut to [a, b], 0 < a < b, as ``a + S / a`` with S of
    density proportional to ``exp(-s - s^2 / (2 a^2))`` on [0, a (b - a)]: moments of order 1,
    no cancellation (relative error ~1e-14). S beyond 80 carries < e^-80 of the mass."""
    from scipy import integrate

    top = min(a * (b - a), 80.0)

    def moment(k: int) -> float:
        return integrate.quad(lambda s: s**k * math.exp(-s - s * s / (2.0 * a * a)), 0.0, top,
                              epsabs=0.0, epsrel=1e-13, limit=200)[0]

    m0, m1, m2 = moment(0), moment(1), moment(2)
    es = m1 / m0
    return a + es / a, (m2 / m0 - es * es) / (a * a)
