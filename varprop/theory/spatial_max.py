"""The maximum of one pooling window of correlated Gaussian pre-activations after an
activation (docs/theory.md, section 8).

:func:`window_max` returns, for ``z ~ N(mu, cov)`` (the window's taps in row-major
order) and ``M = max_j phi(z_j)``: ``E[M]``, ``E[M^2]``, per tap ``E[1{tap wins}
phi'(z_tap)^2]`` (what the pool routes back) and per tap the probability that it is
the argmax as PyTorch picks it (the first maximal tap in window order). Three rules:

* nondecreasing ``phi`` ("by the winner"): ``max_j phi(z_j) = phi(max_j z_j)`` and
  ``E[g(M)] = sum_i int g(phi(x)) p_i(x) P(z_j < x, j != i | z_i = x) dx``; the
  conditional probability is a normal CDF in one to three variables
  (:func:`~varprop.theory.spatial_gauss.mvn_below`), or a product of one-variable
  ones for independent taps, and the outer integral is composite Gauss-Legendre
  (24 nodes on panels of 1.5 standard deviations over +-12, split at the kinks and
  refined geometrically where the probability that a tap lies below the winner turns
  sharply, as for a tap of much smaller variance). Ties of
  probability > 0 occur only where ``phi`` is flat (relu below 0): there every tap
  shares the value and the first one wins.
* non-monotone ``phi`` with one minimum ``y*`` (gelu, gelu_tanh, silu, leaky_relu of
  negative slope; "by intervals"): ``phi(z_j) < phi(x)`` is the interval ``l(phi(x))
  < z_j < r(phi(x))`` between the two branches' roots (found by bisection), so the
  conditional probability is a rectangle probability, a signed sum of the CDFs above;
  the outer rule is also split at ``y*`` and refined geometrically toward where the
  left root leaves to ``-inf`` (gelu, silu: at 0, like ``-sqrt(2 log(1/|x|))``).
* both serve windows of up to four taps, or of independent taps (pixels whose pairs
  are not carried); other windows (3x3 with correlated taps) and activations take a
  deterministic quasi-Monte-Carlo rule: :data:`QMC_POINTS` points of the unscrambled
  Sobol sequence, shifted by half a cell, mapped to the window's law.

Accuracy, measured (tests/test_theory_spatial_pool.py): the quadratures within 1e-12 of
one-dimensional integrals of the i.i.d. case, within 1e-14 of a two-dimensional
integral of a correlated 2x2 window (one-factor covariance, unequal means and
variances), within 1e-12 of Clark's exact two-variable moments, and within the error
of 10^6 Monte-Carlo samples elsewhere; the quasi-Monte-Carlo rule about 2e-4 relative
on the moments and 1e-3 absolute on the shares (not exact: flagged).
"""

from __future__ import annotations

import math
from functools import lru_cache
from itertools import combinations
from typing import Any, Sequence

import numpy as np
from scipy.special import ndtr, ndtri
from scipy.stats import qmc

from .spatial_gauss import mvn_below

__all__ = ["clark_max_moments", "window_max", "QMC_POINTS", "max_rule"]

#: Points of the quasi-Monte-Carlo rule for windows the quadratures do not cover.
QMC_POINTS = 1 << 16
_GL_NODES = 24
_GL_X, _GL_W = np.polynomial.legendre.leggauss(_GL_NODES)
_SPAN = 12.0  # the outer integral covers +-12 standard deviations (mass beyond: 4e-33)
_WIDTH = 1.5  # its panels' width, in standard deviations of the winner
_LEAVE = 1e-3  # the finest panel next to where the left root leaves (in x)
_FAR = 1e6  # the bisection's search interval for the roots of phi(y) = t


def clark_max_moments(m1: float, m2: float, v1: float, v2: float, cov: float
                      ) -> tuple[float, float]:
    """``(E[max], E[max^2])`` of two jointly Gaussian variables (Clark 1961, exact):
    with ``a^2 = v1 + v2 - 2 cov`` and ``alpha = (m1 - m2) / a``, ``E[max] = m1
    Phi(alpha) + m2 Phi(-alpha) + a phi(alpha)``, ``E[max^2] = (m1^2 + v1) Phi(alpha)
    + (m2^2 + v2) Phi(-alpha) + (m1 + m2) a phi(alpha)``."""
    a2 = max(v1 + v2 - 2.0 * cov, 0.0)
    if a2 == 0.0:  # X1 - X2 is the constant m1 - m2
        top = max(m1, m2)
        v = v1 if m1 >= m2 else v2
        return top, top * top + v
    a = math.sqrt(a2)
    alpha = (m1 - m2) / a
    pdf = math.exp(-0.5 * alpha * alpha) / math.sqrt(2 * math.pi)
    cdf, cdf_neg = float(ndtr(alpha)), float(ndtr(-alpha))
    e1 = m1 * cdf + m2 * cdf_neg + a * pdf
    e2 = (m1 * m1 + v1) * cdf + (m2 * m2 + v2) * cdf_neg + (m1 + m2) * a * pdf
    return e1, e2


# ----------------------------------------------------------------------------- shape facts
@lru_cache(maxsize=64)
def _shape(act: Any) -> tuple[str, float, float, float]:
    """``(kind, y*, phi(y*), phi(-inf))``: kind "monotone" (phi' >= 0), "valley" (phi'
    <= 0 left of one minimum y* and >= 0 right of it), else "other"; judged on a grid
    of [-30, 30] step 0.005 and refined by golden-section search."""
    x = np.linspace(-30.0, 30.0, 12001)
    d = np.asarray(act.derivative(x), float)
    if np.all(d >= 0.0):
        return "monotone", math.nan, math.nan, math.nan
    i = int(np.argmin(np.asarray(act(x), float)))
    if not (0 < i < x.size - 1 and np.all(d[:i] <= 0.0) and np.all(d[i + 1:] >= 0.0)):
        return "other", math.nan, math.nan, math.nan
    lo, hi = x[i - 1], x[i + 1]
    g = (math.sqrt(5.0) - 1.0) / 2.0
    for _ in range(80):  # golden-section search for the minimum
        a, b = hi - g * (hi - lo), lo + g * (hi - lo)
        if float(act(np.array(a))) <= float(act(np.array(b))):
            hi = b
        else:
            lo = a
    y = 0.5 * (lo + hi)
    return "valley", y, float(act(np.array(y))), float(act(np.array(-_FAR)))


def max_rule(act: Any, taps: int, independent: bool = False) -> str:
    """The rule :func:`window_max` uses: "winner", "intervals" (up to four taps, or any
    number of independent ones) or "qmc"."""
    kind = _shape(act)[0]
    if taps <= 4 or independent:
        if kind == "monotone":
            return "winner"
        if kind == "valley":
            return "intervals"
    return "qmc"


def _root(act: Any, t: np.ndarray, lo: np.ndarray, hi: np.ndarray, rising: bool
          ) -> np.ndarray:
    """The y in [lo, hi] with phi(y) = t on a monotone branch (bisection, 200 steps)."""
    lo, hi = lo.astype(float).copy(), hi.astype(float).copy()
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        above = np.asarray(act(mid), float) > t
        up = above if rising else ~above  # the root lies below mid
        hi = np.where(up, mid, hi)
        lo = np.where(up, lo, mid)
    return 0.5 * (lo + hi)


def _sublevel(act: Any, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(l, r)`` with ``{y: phi(y) < phi(x)} = (l, r)`` for a valley-shaped phi
    (``-inf``/``+inf`` where a branch never reaches phi(x))."""
    _, y_min, _, _ = _shape(act)
    t = np.asarray(act(x), float)
    left = x <= y_min
    far_l, far_r = float(act(np.array(-_FAR))), float(act(np.array(_FAR)))
    other_r = _root(act, t, np.full(x.shape, y_min), np.full(x.shape, _FAR), True)
    other_l = _root(act, t, np.full(x.shape, -_FAR), np.full(x.shape, y_min), False)
    other_r = np.where(far_r < t, np.inf, other_r)
    other_l = np.where(far_l < t, -np.inf, other_l)
    return np.where(left, x, other_l), np.where(left, other_r, x)


# ----------------------------------------------------------------------------- quadrature
def _panels(cuts: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Gauss-Legendre nodes and weights (``_GL_NODES`` a panel) in the standardized
    variable on ``[-_SPAN, _SPAN]``: panels of width ``_WIDTH``, split further at
    ``cuts``."""
    grid = np.linspace(-_SPAN, _SPAN, int(round(2 * _SPAN / _WIDTH)) + 1)
    inside = [c for c in cuts if -_SPAN < c < _SPAN]
    edges = np.unique(np.concatenate([grid, np.asarray(inside, float)]))
    half, mid = np.diff(edges) / 2, (edges[1:] + edges[:-1]) / 2
    return (mid[:, None] + half[:, None] * _GL_X).ravel(), (half[:, None] * _GL_W).ravel()


def _sharp_cuts(x_star: np.ndarray, width: np.ndarray) -> list[float]:
    """Cuts that resolve a transition of ``width`` (standardized) at ``x_star``: at it
    and at ``+-width 2^k`` until the panels' own width takes over."""
    cuts: list[float] = []
    for c, w in zip(x_star, width):
        if not (np.isfinite(c) and np.isfinite(w)) or w >= _WIDTH or abs(c) > _SPAN + _WIDTH:
            continue
        w = max(w, 1e-12)
        cuts.append(float(c))
        while w < _WIDTH:
            cuts += [float(c - w), float(c + w)]
            w *= 2.0
    return cuts


def _rectangle(lo: np.ndarray, hi: np.ndarray, corr: np.ndarray) -> np.ndarray:
    """P(lo_j < Y_j < hi_j for all j), rows of (n, d), by inclusion-exclusion over the
    corners (a corner at ``-inf`` contributes nothing)."""
    d = lo.shape[1]
    total = mvn_below(hi, corr)
    for size in range(1, d + 1):
        for subset in combinations(range(d), size):
            corner = hi.copy()
            corner[:, subset] = lo[:, subset]
            live = np.all(np.isfinite(corner[:, subset]), axis=1)
            if np.any(live):
                total[live] += (-1) ** size * mvn_below(corner[live], corr)
    return np.clip(total, 0.0, 1.0)


def _by_quadrature(mu: np.ndarray, cov: np.ndarray, act: Any, rule: str
                   ) -> tuple[float, float, np.ndarray, np.ndarray]:
    """The winner or interval rule (module doc)."""
    k = mu.size
    kind, y_min, phi_min, phi_left = _shape(act)
    cuts_x = list(act.kinks)
    leaves = math.nan
    if rule == "intervals":
        cuts_x.append(y_min)
        if math.isfinite(phi_left) and phi_left > phi_min:  # the left root leaves here
            leaves = float(_root(act, np.array([phi_left]), np.array([y_min]),
                                 np.array([_FAR]), True)[0])
    e1 = e2 = flat = 0.0
    routed, wins = np.zeros(k), np.zeros(k)
    for i in range(k):
        sd = math.sqrt(max(cov[i, i], 0.0))
        others = [j for j in range(k) if j != i]
        if others:  # the others' law given z_i = x: mean mu_j + slope_j (x - mu_i)
            c_io = cov[others, i]
            slope = c_io / cov[i, i] if sd > 0 else np.zeros(len(others))
            cond = cov[np.ix_(others, others)] - (np.outer(c_io, c_io) / cov[i, i]
                                                   if sd > 0 else 0.0)
            csd = np.sqrt(np.maximum(np.diag(cond), 1e-300))
            corr = cond / np.outer(csd, csd)
        if sd == 0.0:  # a constant tap: it wins where the others all fall below it
            x, w = np.array([mu[i]]), np.array([1.0])
        else:
            cuts = [(c - mu[i]) / sd for c in cuts_x]
            # the left root runs off like -sqrt(2 log(1/|x - leaves|)): refine toward it
            cuts += _sharp_cuts(np.array([(leaves - mu[i]) / sd]), np.array([_LEAVE / sd]))
            if others:  # where z_j < x turns from unlikely to likely, and how sharply
                with np.errstate(divide="ignore", invalid="ignore"):
                    gap = 1.0 - slope
                    x_star = (mu[others] - slope * mu[i]) / gap
                    cuts += _sharp_cuts((x_star - mu[i]) / sd, csd / np.abs(gap) / sd)
            t, w = _panels(cuts)
            x = mu[i] + sd * t
            w = w * np.exp(-0.5 * t * t) / math.sqrt(2 * math.pi)
        if others:
            mean = mu[others][None, :] + (x[:, None] - mu[i]) * slope[None, :]
            # judged on the covariance's off-diagonal, not on corr == I: sqrt(v)^2 != v
            # in floating point sent independent 3x3 windows to the 3-variable CDF
            independent = not np.any(cond - np.diag(np.diag(cond)))
            if rule == "winner":
                b = (x[:, None] - mean) / csd[None, :]
                below = np.prod(ndtr(b), axis=1) if independent else mvn_below(b, corr)
            else:
                lo, hi = _sublevel(act, x)
                with np.errstate(invalid="ignore"):
                    lo, hi = (lo[:, None] - mean) / csd, (hi[:, None] - mean) / csd
                    below = np.prod(ndtr(hi) - ndtr(lo), axis=1) if independent else \
                        _rectangle(lo, hi, corr)
        else:
            below = np.ones_like(x)
        phi = np.asarray(act(x), float)
        dphi = np.asarray(act.derivative(x), float)
        mass = w * below
        e1 += float(mass @ phi)
        e2 += float(mass @ (phi * phi))
        routed[i] = float(mass @ (dphi * dphi))
        # ties: where phi is flat (phi' = 0 at the winner, relu below 0, nondecreasing
        # phi) every tap is below the winner on the flat part: all tie, the first wins
        tie = (dphi == 0.0) if rule == "winner" else np.zeros(x.shape, bool)
        wins[i] = float(mass[~tie].sum())
        flat += float(mass[tie].sum())
    wins[0] += flat
    return e1, e2, routed, wins


@lru_cache(maxsize=16)
def _sobol(d: int) -> np.ndarray:
    """The first :data:`QMC_POINTS` points of the unscrambled Sobol sequence in ``d``
    dimensions, shifted by half a cell, as standard normals."""
    pts = qmc.Sobol(d, scramble=False).random_base2(int(math.log2(QMC_POINTS)))
    z = ndtri((pts + 0.5 / QMC_POINTS) % 1.0)  # shifted off 0 (ndtri(0) = -inf)
    z.flags.writeable = False
    return z


def _by_qmc(mu: np.ndarray, cov: np.ndarray, act: Any
            ) -> tuple[float, float, np.ndarray, np.ndarray]:
    k = mu.size
    vals, vecs = np.linalg.eigh((cov + cov.T) / 2)
    root = vecs * np.sqrt(np.maximum(vals, 0.0))  # cov = root root^T, singular allowed
    z = mu + _sobol(k) @ root.T
    phi = np.asarray(act(z), float)
    win = np.argmax(phi, axis=1)  # the first maximal tap, as PyTorch
    top = phi[np.arange(phi.shape[0]), win]
    d2 = np.asarray(act.derivative(z), float) ** 2
    n = float(z.shape[0])
    routed = np.array([float(np.sum(d2[win == j, j])) for j in range(k)]) / n
    wins = np.bincount(win, minlength=k) / n
    return float(top.mean()), float((top * top).mean()), routed, wins


def window_max(mu: np.ndarray, cov: np.ndarray, act: Any
               ) -> tuple[float, float, np.ndarray, np.ndarray, bool]:
    """``(E[M], E[M^2], routed, wins, accurate)`` of ``M = max_j phi(z_j)``, ``z ~
    N(mu, cov)`` (module doc); ``accurate`` is False for the quasi-Monte-Carlo rule."""
    mu = np.asarray(mu, float)
    cov = np.asarray(cov, float)
    off = cov - np.diag(np.diag(cov))
    rule = max_rule(act, mu.size, independent=not np.any(off))
    if rule == "qmc":
        return (*_by_qmc(mu, cov, act), False)
    return (*_by_quadrature(mu, cov, act, rule), True)
