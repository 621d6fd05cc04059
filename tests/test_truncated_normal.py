"""Truncated-normal moments and draws on every interval: narrow ones anywhere, far tails,
wide ones. The reference is computed here, independently of varprop and scipy: a
composite Gauss-Legendre rule for ``E[(X - a)^k]`` on [a, b] measured from the lower end
(varprop measures from the midpoint or, in the tails, in a rescaled variable), itself
checked against 80-digit mpmath where mpmath is installed."""

from __future__ import annotations

import math

import numpy as np
import pytest

import varprop.initializers as I
from varprop.initializers import _core

_X, _W = np.polynomial.legendre.leggauss(32)


def reference_moments(a: float, b: float) -> tuple[float, float]:
    """Mean and variance of N(0, 1) cut to [a, b]: S = X - a has density proportional
    to ``exp(-a s - s^2 / 2)`` on [0, b - a], integrated on panels across which the
    exponent changes by at most 1/4; positive terms only, variance about the mean. The
    density is cut where it is below e^-700 of its peak (|x| > 40, or 700 / a past a)."""
    if b <= 0:
        m, v = reference_moments(-b, -a)
        return -m, v
    if a > 0:
        b = min(b, a + min(700.0 / a, 40.0))
    else:
        a, b = max(a, -40.0), min(b, 40.0)
    panels = math.ceil(4 * (b - a) * max(abs(a), abs(b), 1.0))
    edges = np.linspace(0.0, b - a, panels + 1)
    mid, half = 0.5 * (edges[1:] + edges[:-1]), 0.5 * (edges[1:] - edges[:-1])
    s = (mid[:, None] + half[:, None] * _X).ravel()
    e = -(a * s + 0.5 * s * s)
    w = (half[:, None] * _W).ravel() * np.exp(e - e.max())
    w /= w.sum()
    es = float(w @ s)
    return a + es, float(w @ np.square(s - es))


def _ulp(x: float) -> float:
    return float(np.spacing(abs(x)))


def _close(got: tuple[float, float], ref: tuple[float, float], a: float, b: float) -> None:
    (m, v), (rm, rv) = got, ref
    assert v > 0 and v == pytest.approx(rv, rel=1e-11), (a, b, v, rv)
    assert abs(m - rm) <= 1e-11 * math.sqrt(rv) + 2 * _ulp(max(abs(a), abs(b))), (a, b, m, rm)
    assert a <= m <= b


NARROW = [(c, w) for c in np.linspace(-50.0, 50.0, 21).tolist() + [-4.99, -0.5, -1e-7, 0.0, 0.5, 4.99]
          for w in (1e-12, 1e-10, 1e-8, 1e-6, 1e-4, 1e-2)]


@pytest.mark.parametrize(("c", "w"), NARROW)
def test_narrow_intervals_anywhere(c: float, w: float) -> None:
    a, b = c - w / 2, c + w / 2
    got = _core.truncated_normal_moments(a, b)
    _close(got, reference_moments(a, b), a, b)
    if w <= 1e-6:  # the polynomial limit: nearly uniform, tilted by exp(-c t)
        h2 = (b - a) ** 2 / 12
        assert got[1] == pytest.approx(h2, rel=max(1e-9, 2 * (c * c + 1) * w * w))


@pytest.mark.parametrize(("a", "b"), [
    (-2.0, 2.0), (-1.0, 3.0), (-1.0, 1.0), (-3.0, 40.0), (-1e300, 1.0), (-0.5, 40.0), (0.0, 1.0),
    (1.0, 2.0), (2.5, 4.0), (4.0, 5.0), (4.5, 7.5), (-4.99, 30.0), (-100.0, -4.99), (0.3, 1e300),
    (5.0, 6.0), (15.0, 16.0), (40.0, 50.0), (-50.0, -40.0), (58.0, 1998.0), (7.0, 7.0 + 1e-9),
    (-0.9, 0.9), (-0.1, 2.0),
])
def test_tails_and_wide_intervals(a: float, b: float) -> None:
    _close(_core.truncated_normal_moments(a, b), reference_moments(a, b), a, b)


def test_the_reported_narrow_interval() -> None:
    # scipy's truncnorm gives a negative variance here (-6.5 times the true one)
    for init in (I.truncated_normal(stddev=1.0, lower=0.5, upper=0.50001),
                 I.trunc_normal(a=0.5, b=0.50001)):
        m = init.moments((3,))
        assert m.var == pytest.approx(1e-10 / 12, rel=1e-6)
        assert m.mean == pytest.approx(0.500005 * (1 - m.var), abs=1e-15)  # E[t] = -c Var[t]


@pytest.mark.parametrize("w", [1e-12, 1e-9, 1e-6, 1e-3, 2e-3])
@pytest.mark.parametrize("c", [-30.0, -2.5, -1e-4, 0.0, 0.5, 4.9])
def test_narrow_draws_match_the_moments(c: float, w: float) -> None:
    a, b = c - w / 2, c + w / 2
    n = 100_000
    x = _core.standard_truncated_normal(np.random.default_rng(5), (n,), a, b, np.dtype(np.float64))
    assert x.min() >= a and x.max() <= b
    m, v = _core.truncated_normal_moments(a, b)
    # the sample mean is a float near c: it cannot resolve less than an ulp of c
    assert abs(x.mean() - m) <= 5 * math.sqrt(v / n) + 2 * _ulp(c)
    # nearly uniform: the relative standard deviation of the sample variance is sqrt(0.8 / n)
    assert x.var() == pytest.approx(v, rel=5 * math.sqrt(0.8 / n) + 1e-3 * (w < 1e-11))


def test_narrow_draws_through_the_initializers() -> None:
    w = I.trunc_normal(mean=1.0, std=2.0, a=2.0, b=2.00002)((50_000,), seed=0, dtype=np.float64)
    m = I.trunc_normal(mean=1.0, std=2.0, a=2.0, b=2.00002).moments(())
    assert w.min() >= 2.0 and w.max() <= 2.00002
    assert abs(w.mean() - m.mean) <= 5 * math.sqrt(m.var / w.size)
    assert w.var() == pytest.approx(m.var, rel=0.02)
    w32 = I.truncated_normal(stddev=1.0, lower=0.5, upper=0.5001)((1000,), seed=0)
    assert w32.dtype == np.float32 and w32.min() >= np.float32(0.5) and w32.max() <= np.float32(0.5001)


def test_narrow_draws_reach_every_float() -> None:
    # 65 doubles from 0.5 to 0.5 + 64 ulp: the inverse CDF put its uniforms on ~22 levels
    # of Phi there; drawn as 0.5 + S every double turns up, ~1/64 of the time (the two
    # ends, which collect half a rounding cell each, 1/128)
    a = 0.5
    b = a + 64 * _ulp(a)
    x = _core.standard_truncated_normal(np.random.default_rng(0), (100_000,), a, b, np.dtype(np.float64))
    values, counts = np.unique(x, return_counts=True)
    assert values.size == 65 and min(counts[0], counts[-1]) > 600
    assert 1300 < counts[1:-1].min() and counts[1:-1].max() < 1850


@pytest.mark.parametrize(("a", "b"), [(30.0, 30.001), (-2.0, -1.999), (-4e-4, 5e-4)])
def test_narrow_draws_follow_the_truncated_law(a: float, b: float) -> None:
    from scipy import special, stats

    def cdf(x: np.ndarray) -> np.ndarray:  # in the lower tail, where ndtr keeps its digits
        if a >= 0:
            return (special.ndtr(-a) - special.ndtr(-x)) / (special.ndtr(-a) - special.ndtr(-b))
        return (special.ndtr(x) - special.ndtr(a)) / (special.ndtr(b) - special.ndtr(a))

    x = _core.standard_truncated_normal(np.random.default_rng(2), (20_000,), a, b, np.dtype(np.float64))
    assert stats.kstest(x, cdf).pvalue > 1e-3


@pytest.mark.parametrize(("a", "b"), [(0.5, 0.50001), (4.99 - 5e-13, 4.99 + 5e-13), (-30.0, -29.99),
                                      (-1e-7, 1e-7), (2.5, 4.0), (58.0, 1998.0), (-0.1, 2.0)])
def test_the_reference_against_mpmath(a: float, b: float) -> None:
    mpmath = pytest.importorskip("mpmath")
    with mpmath.workdps(80):  # the closed form cancels ~30 digits on the narrowest interval
        x, y = mpmath.mpf(a), mpmath.mpf(b)
        z = mpmath.ncdf(-x) - mpmath.ncdf(-y) if a > 0 else mpmath.ncdf(y) - mpmath.ncdf(x)
        px, py = mpmath.npdf(x), mpmath.npdf(y)
        mean = (px - py) / z
        var = 1 + (x * px - y * py) / z - mean**2
    _close(reference_moments(a, b), (float(mean), float(var)), a, b)
    _close(_core.truncated_normal_moments(a, b), (float(mean), float(var)), a, b)
