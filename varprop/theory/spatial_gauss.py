"""Gaussian integrals of the per-pixel theory (docs/theory.md, section 8).

* :func:`bvn` and :func:`mvn_below`: the normal CDF of one to three correlated
  standard variables, deterministic (Owen's T function for two, Owen 1956; Plackett's
  identity, one smooth Gauss-Legendre integral, for three), smooth in their arguments
  so that an outer quadrature over them converges fast.
* :func:`pair_cross`: ``E[phi(u_p) phi(u_q)]`` of a bivariate Gaussian pair with
  *unequal* means, as two pixels of a map have (section 4's cross moment carries one
  common mean). Piecewise-linear activations in closed form (the truncated bivariate
  normal moments, Rosenbaum 1961, J. R. Stat. Soc. B 23; at mean 0 the arc-cosine
  kernel of Cho and Saul 2009), the others as section 4's nested integral: the outer
  variable on the composite Gauss-Legendre rule of section 5, the inner one a 1-D
  Gaussian expectation (closed form or quadrature) of its conditional law.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy.special import ndtr, owens_t

from . import quadrature
from .gaussian import cross_expect, expect

__all__ = ["bvn", "mvn_below", "pair_cross", "PLACKETT_NODES"]

#: Gauss-Legendre nodes of the Plackett integral of :func:`mvn_below` (three variables).
PLACKETT_NODES = 24
_PL_X, _PL_W = np.polynomial.legendre.leggauss(PLACKETT_NODES)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


def bvn(h: Any, k: Any, rho: Any) -> np.ndarray:
    """P(X < h, Y < k) of a standard bivariate normal with correlation ``rho`` (Owen
    1956: ``Phi(h)/2 + Phi(k)/2 - T(h, a_h) - T(k, a_k) - beta``)."""
    h, k, rho = np.broadcast_arrays(np.asarray(h, float), np.asarray(k, float),
                                    np.asarray(rho, float))
    r = np.clip(rho, -1 + 1e-15, 1 - 1e-15)
    root = np.sqrt((1 - r) * (1 + r))
    hh = np.where(h == 0, 1e-300, h)
    kk = np.where(k == 0, 1e-300, k)
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        ah = (kk - r * hh) / (hh * root)
        ak = (hh - r * kk) / (kk * root)
    beta = np.where(hh * kk < 0, 0.5, 0.0)
    out = 0.5 * (ndtr(hh) + ndtr(kk)) - owens_t(hh, ah) - owens_t(kk, ak) - beta
    return np.clip(out, 0.0, 1.0)


def _pdf2(a: np.ndarray, b: np.ndarray, r: np.ndarray) -> np.ndarray:
    """The standard bivariate normal density at (a, b), correlation r (|r| < 1)."""
    d = (1.0 - r) * (1.0 + r)
    return np.exp(-(a * a - 2.0 * r * a * b + b * b) / (2.0 * d)) / (2.0 * math.pi * np.sqrt(d))


def mvn_below(b: np.ndarray, corr: np.ndarray) -> np.ndarray:
    """P(Y_j < b_j for all j) of a standard normal vector with correlation ``corr``
    (1 to 3 variables), for each row of ``b`` (shape (..., d)).

    Three variables by Plackett's identity (Plackett 1954, Biometrika 41; the form of
    Genz 2004, Statistics and Computing 14): with the largest correlation ``r23`` held
    and ``r12, r13`` scaled by ``t`` from 0 to 1,

        P = Phi(b1) Phi2(b2, b3; r23) + int_0^1 [r12 d/dr12 + r13 d/dr13] Phi3 dt,
        d Phi3 / d r12 = phi2(b1, b2; r12) Phi((b3 - E[Y3 | b1, b2]) / sd(Y3 | Y1, Y2)),

    a smooth integrand in ``t`` on :data:`PLACKETT_NODES` Gauss-Legendre nodes (12, 20
    and 32 nodes agree to 1e-13 for correlations up to 0.95; scipy's randomized Genz
    algorithm agrees within its own scatter, 1e-10)."""
    d = b.shape[-1]
    corr = np.asarray(corr)
    # Beyond three variables the identity below would silently drop the others (the class
    # of the 3x3 max-pool defect, docs/theory.md section 8): refuse instead.
    if not 1 <= d <= 3 or corr.shape != (d, d):
        raise ValueError(f"mvn_below: b must have 1 to 3 variables in its last axis and corr "
                         f"must be ({d}, {d}); got b {b.shape}, corr {corr.shape}")
    b = np.clip(b, -40.0, 40.0)
    if d == 1:
        return ndtr(b[..., 0])
    if d == 2:
        return bvn(b[..., 0], b[..., 1], corr[0, 1])
    r = [corr[0, 1], corr[0, 2], corr[1, 2]]
    j, k = [(0, 1), (0, 2), (1, 2)][int(np.argmax(np.abs(r)))]
    order = [3 - j - k, j, k]
    c = corr[np.ix_(order, order)]
    r12, r13, r23 = float(c[0, 1]), float(c[0, 2]), float(np.clip(c[1, 2], -1.0, 1.0))
    b1, b2, b3 = (b[..., o:o + 1] for o in order)
    base = ndtr(b1[..., 0]) * bvn(b2[..., 0], b3[..., 0], r23)
    t = (_PL_X + 1.0) / 2.0
    s12, s13 = t * r12, t * r13
    det = np.maximum(1.0 - s12 * s12 - s13 * s13 - r23 * r23 + 2.0 * s12 * s13 * r23, 1e-300)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        m3 = ((s13 - s12 * r23) * b1 + (r23 - s12 * s13) * b2) / (1.0 - s12 * s12)
        f12 = _pdf2(b1, b2, s12) * ndtr((b3 - m3) / np.sqrt(det / (1.0 - s12 * s12)))
        m2 = ((s12 - s13 * r23) * b1 + (r23 - s13 * s12) * b3) / (1.0 - s13 * s13)
        f13 = _pdf2(b1, b3, s13) * ndtr((b2 - m2) / np.sqrt(det / (1.0 - s13 * s13)))
    return np.clip(base + (r12 * f12 + r13 * f13) @ (_PL_W / 2.0), 0.0, 1.0)


def _pdf(x: np.ndarray) -> np.ndarray:
    return _INV_SQRT_2PI * np.exp(-0.5 * x * x)


def _ramp_pair(m1: np.ndarray, m2: np.ndarray, s1: np.ndarray, s2: np.ndarray,
               rho: np.ndarray) -> np.ndarray:
    """E[relu(X) relu(Y)], X ~ N(m1, s1^2), Y ~ N(m2, s2^2), correlation rho, |rho| < 1,
    s > 0 (Rosenbaum 1961). With U, V standard, a = -m1/s1, b = -m2/s2, r = sqrt(1 -
    rho^2), A = Phi((rho a - b)/r), B = Phi((rho b - a)/r), P = P(U > a, V > b):
    E[U 1] = phi(a) A + rho phi(b) B, E[UV 1] = rho P + rho a phi(a) A + rho b phi(b) B
    + r phi(a) phi((b - rho a)/r)."""
    h, k = m1 / s1, m2 / s2
    a, b = -h, -k
    r = np.sqrt((1 - rho) * (1 + rho))
    p = bvn(h, k, rho)
    big_a, big_b = ndtr((rho * a - b) / r), ndtr((rho * b - a) / r)
    fa, fb = _pdf(a), _pdf(b)
    eu = fa * big_a + rho * fb * big_b
    ev = fb * big_b + rho * fa * big_a
    euv = rho * p + rho * a * fa * big_a + rho * b * fb * big_b + r * fa * _pdf((b - rho * a) / r)
    return m1 * m2 * p + m1 * s2 * ev + m2 * s1 * eu + s1 * s2 * euv


def _piecewise_pair(act: Any, m1, m2, s1, s2, rho) -> np.ndarray:
    """phi = a x + c relu(x) (slopes a = phi'(0-), a + c = phi'(0+)): E[phi(X) phi(Y)]
    from E[XY], E[X relu(Y)] = m1 E[relu(Y)] + rho s1 s2 P(Y > 0) (Stein's lemma) and
    :func:`_ramp_pair`."""
    left, right = act.slopes
    c = right - left
    k1, k2 = m1 / s1, m2 / s2
    cov = rho * s1 * s2
    exy = cov + m1 * m2
    ey_plus = m2 * ndtr(k2) + s2 * _pdf(k2)
    ex_plus = m1 * ndtr(k1) + s1 * _pdf(k1)
    x_yplus = m1 * ey_plus + cov * ndtr(k2)
    xplus_y = m2 * ex_plus + cov * ndtr(k1)
    out = left * left * exy + left * c * (x_yplus + xplus_y)
    if c != 0.0:
        out = out + c * c * _ramp_pair(m1, m2, s1, s2, rho)
    return out


def _nested_pair(act: Any, m1: np.ndarray, m2: np.ndarray, s1: np.ndarray,
                 s2: np.ndarray, c: np.ndarray) -> np.ndarray:
    """E_z1[phi(m1 + s1 z1) g(m2 + c s2 z1)], g(mu) = E[phi(N(mu, s2^2 (1 - c^2)))]:
    section 4's nested integral (gaussian._nested) with a mean for each variable. The
    outer rule is refined at the outer kink and where the inner conditional mean
    crosses 0, as there."""
    sd = s2 * np.sqrt((1.0 - c) * (1.0 + c))
    slope = c * s2
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        tc = np.where(slope != 0.0, -m2 / np.where(slope != 0.0, slope, 1.0), np.inf)
        width = np.maximum(np.minimum(sd, quadrature.X_WIDTH), 1e-8 * quadrature.X_WIDTH)
        d_min = np.where(slope != 0.0, width / np.abs(slope), np.inf)
    tc = np.where(m2 == 0.0, 0.0, tc)

    def integrand(x: np.ndarray, t: np.ndarray, rows: np.ndarray) -> list[np.ndarray]:
        mu = m2[rows, None] + slope[rows, None] * t
        sd_rows = np.broadcast_to(sd[rows, None], mu.shape)
        g = expect(act, ("phi",), mu.ravel(), sd_rows.ravel())["phi"].reshape(mu.shape)
        return [act(x) * g]

    with np.errstate(over="ignore", invalid="ignore"):
        return quadrature.integrate(integrand, m1, s1, 1, extra_centres=[(tc, d_min)])[0]


def pair_cross(act: Any, m1: Any, m2: Any, v1: Any, v2: Any, cov: Any) -> np.ndarray:
    """``E[phi(X) phi(Y)]`` for jointly Gaussian ``(X, Y)`` with means ``m1, m2``,
    variances ``v1, v2`` and covariance ``cov`` (flat arrays of one length).

    Uncorrelated pairs (``cov = 0``: pixels beyond each other's receptive field) and
    pairs with a point mass are independent: ``E[phi(X)] E[phi(Y)]``. The others are
    computed once per distinct ``(m1, m2, s1, s2, c)`` (rounded to 6e-14 relative: a
    map's interior repeats them): piecewise-linear activations in closed form
    (:func:`_piecewise_pair`), pairs of one common mean by section 4's
    :func:`~varprop.theory.gaussian.cross_expect`, the rest by :func:`_nested_pair`."""
    m1, m2, v1, v2, cov = (np.asarray(a, float).ravel() for a in (m1, m2, v1, v2, cov))
    s1, s2 = np.sqrt(v1), np.sqrt(v2)
    with np.errstate(divide="ignore", invalid="ignore"):
        c = np.clip(np.where(s1 * s2 > 0, cov / np.where(s1 * s2 > 0, s1 * s2, 1.0), 0.0),
                    -1.0, 1.0)
    out = np.empty(m1.size)
    indep = (s1 == 0.0) | (s2 == 0.0) | (c == 0.0)
    if np.any(indep):
        e1 = expect(act, ("phi",), m1[indep], s1[indep])["phi"]
        e2 = expect(act, ("phi",), m2[indep], s2[indep])["phi"]
        out[indep] = e1 * e2
    rest = np.flatnonzero(~indep)
    if rest.size:
        key = _round_bits(np.stack([m1[rest], m2[rest], s1[rest], s2[rest], c[rest]], axis=1))
        _, first, inverse = np.unique(key, axis=0, return_index=True, return_inverse=True)
        pick = rest[first]  # one representative (unrounded) per distinct key
        out[rest] = _correlated(act, m1[pick], m2[pick], s1[pick], s2[pick],
                                c[pick])[inverse.ravel()]
    return out


def _round_bits(x: np.ndarray, bits: int = 44) -> np.ndarray:
    """``x`` with its mantissa rounded to ``bits`` bits (relative 6e-14): the key under
    which pairs of equal statistics are computed once."""
    mant, expo = np.frexp(x)
    return np.ldexp(np.round(mant * 2.0**bits), expo - bits)


def _correlated(act: Any, m1, m2, s1, s2, c) -> np.ndarray:
    """:func:`pair_cross` for correlated pairs without a point mass."""
    out = np.empty(m1.size)
    todo = np.ones(m1.size, bool)
    if act.piecewise_linear:
        closed = np.abs(c) < 1.0 - 1e-9  # r = sqrt(1 - c^2) > 4e-5
        if np.any(closed):
            with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
                out[closed] = _piecewise_pair(act, m1[closed], m2[closed], s1[closed],
                                              s2[closed], c[closed])
        todo &= ~closed
    same = todo & (m1 == m2)
    if np.any(same):
        out[same] = cross_expect(act, s1[same], s2[same], c[same], m1[same])[0]
    rest = todo & ~same
    if np.any(rest):
        out[rest] = _nested_pair(act, m1[rest], m2[rest], s1[rest], s2[rest], c[rest])
    return out
