"""Series of the Gaussian moments at mean 0 for small and large variances, used by
:class:`~varprop.theory.fast.ScalarMoments` where the quadrature would be slow or lose
digits (accuracy as stated in :mod:`.fast`)."""

from __future__ import annotations

import math

import numpy as np

from ..activations import Activation
from . import quadrature

__all__ = ["S_EXPAND"]

_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


class _SmallSeries:
    """Small-variance series of ``E[phi^2]`` and ``E[phi'^2]`` at mean 0 for the odd
    activations whose Taylor series is known in closed form (``E[phi] = 0``,
    ``Var[phi] = E[phi^2]``):

    * tanh, from ``y' = 1 - y^2``: ``E[tanh(x)^2] = sum_k t_k (2k - 1)!! q^k`` with
      ``tanh^2 = sum_k t_k x^2k``, likewise ``tanh'^2 = (1 - tanh^2)^2``;
    * softsign, ``x / (1 + |x|)``: ``phi^2 = sum_k (-1)^k (k + 1) |x|^(k+2)`` and
      ``phi'^2 = (1 + |x|)^-4 = sum_k (-1)^k C(k + 3, 3) |x|^k``, with
      ``E|x|^m = s^m E|Z|^m``, ``E|Z|^m = (m - 1) E|Z|^(m-2)``.

    Both are asymptotic series (the Gaussian moments grow factorially); ``TERMS`` terms
    are used up to the variable ``limit`` where the last term is below 2^-60 of the sum
    and still decreasing, found once by scanning (q <= 1.6e-2 for tanh, s <= 3.5e-2 for
    softsign).
    """

    TERMS = 24

    def __init__(self, name: str) -> None:
        from fractions import Fraction

        K = self.TERMS
        if name == "tanh":  # in q
            n = 2 * K + 2
            y = [Fraction(0)] * (n + 1)
            y[1] = Fraction(1)
            for m in range(1, n):
                y[m + 1] = -sum(y[i] * y[m - i] for i in range(m + 1)) / (m + 1)
            y2 = [sum(y[i] * y[m - i] for i in range(m + 1)) for m in range(n + 1)]
            d = [(1 if m == 0 else 0) - y2[m] for m in range(n + 1)]
            d2 = [sum(d[i] * d[m - i] for i in range(m + 1)) for m in range(n + 1)]
            dfact = [1]  # (2k - 1)!!
            for k in range(1, K + 1):
                dfact.append(dfact[-1] * (2 * k - 1))
            self.phi2 = [float(y2[2 * k] * dfact[k]) for k in range(K + 1)]
            self.dphi2 = [float(d2[2 * k] * dfact[k]) for k in range(K + 1)]
            self.in_q = True
        else:  # softsign, in s
            mu = [1.0, math.sqrt(2.0 / math.pi)]  # E|Z|^m = (m - 1) E|Z|^(m-2)
            for m in range(2, K + 3):
                mu.append((m - 1) * mu[m - 2])
            self.phi2 = [0.0, 0.0] + [(-1) ** k * (k + 1) * mu[k + 2] for k in range(K - 1)]
            self.dphi2 = [(-1) ** k * math.comb(k + 3, 3) * mu[k] for k in range(K + 1)]
            self.in_q = False
        self.limit = 0.0
        for v in np.logspace(-8, 0, 161):
            if not self._converged(float(v)):
                break
            self.limit = float(v)

    def _converged(self, v: float) -> bool:
        for coef in (self.phi2, self.dphi2):
            terms = [c * v**k for k, c in enumerate(coef)]
            total = abs(sum(terms))
            if not (abs(terms[-1]) <= 2.0**-60 * total and abs(terms[-1]) <= abs(terms[-2])):
                return False
        return True

    @staticmethod
    def _horner(coef: list[float], v: float) -> float:
        acc = 0.0
        for c in reversed(coef):
            acc = acc * v + c
        return acc

    def __call__(self, q: float, s: float) -> tuple[float, float, float, float] | None:
        v = q if self.in_q else s
        if v > self.limit:
            return None
        e_phi2 = self._horner(self.phi2, v)
        return 0.0, e_phi2, self._horner(self.dphi2, v), e_phi2


#: Standard deviation beyond which :class:`_Expansion` replaces the quadrature: its
#: first neglected term is ``G_6 / (48 s^6)`` relative to the decaying part, below 1e-16
#: of the moment for every registry activation at s = 1000 (tests/test_properties.py).
S_EXPAND = 1000.0


class _Expansion:
    """Large-variance expansion of the Gaussian moments of an activation with linear
    asymptotes: for ``x = s Z`` and a kind ``f`` (phi, phi^2, phi'^2, phi - c,
    (phi - c)^2) write ``f = P + g``, ``P`` the polynomial of the asymptotes on each
    half-line and ``g`` the remainder, which decays exponentially. Then

        E[P(s Z)] = (P2+ + P2-) s^2 / 2 + (P1+ - P1-) s / sqrt(2 pi) + (P0+ + P0-) / 2,
        E[g(s Z)] = (1 / (s sqrt(2 pi))) sum_j (-1)^j G_2j / (2^j j! s^2j),
        G_m = int g(x) x^m dx,

    the second from expanding the density ``exp(-x^2 / 2 s^2)`` where g lives (|x| < X).
    The G are integrated once per activation (composite Gauss-Legendre, panels of 1/2 on
    ``[-X, X]``, an edge at the kink 0); three terms are exact to double precision for
    ``s >= S_EXPAND``.
    """

    def __init__(self, act: Activation, asym: tuple, centre: float) -> None:
        ap, bp, am, bm, x_asym = asym
        c = centre
        # (x^2, x, 1) coefficients on x > 0 and on x < 0 of each kind's asymptote
        kinds = [((0.0, ap, bp), (0.0, am, bm)),  # phi
                 ((ap * ap, 2 * ap * bp, bp * bp), (am * am, 2 * am * bm, bm * bm)),  # phi^2
                 ((0.0, 0.0, ap * ap), (0.0, 0.0, am * am))]  # phi'^2
        if c != 0.0:
            kinds += [((0.0, ap, bp - c), (0.0, am, bm - c)),  # phi - c
                      ((ap * ap, 2 * ap * (bp - c), (bp - c) ** 2),
                       (am * am, 2 * am * (bm - c), (bm - c) ** 2))]  # (phi - c)^2
        self.poly = [((p[0] + m[0]) / 2.0, (p[1] - m[1]) * _INV_SQRT_2PI, (p[2] + m[2]) / 2.0)
                     for p, m in kinds]
        edges = np.arange(-x_asym, x_asym + 0.25, 0.5)
        lo, hi = edges[:-1, None], edges[1:, None]
        xi, wi = np.polynomial.legendre.leggauss(quadrature.NODES)
        x = (0.5 * (lo + hi) + 0.5 * (hi - lo) * xi).ravel()
        w = np.broadcast_to(0.5 * (hi - lo) * wi, (lo.size, xi.size)).ravel()
        phi, dphi = act(x), act.derivative(x)
        values = [phi, phi * phi, dphi * dphi, phi - c, (phi - c) ** 2][:len(kinds)]
        pos = x > 0
        self.g = []
        for (p, m), f in zip(kinds, values):
            poly = np.where(pos, (p[0] * x + p[1]) * x + p[2], (m[0] * x + m[1]) * x + m[2])
            r = (f - poly) * w
            x2 = x * x
            self.g.append((float(r.sum()), -float((r * x2).sum()) / 2.0,
                           float((r * x2 * x2).sum()) / 8.0))

    def __call__(self, q: float, s: float) -> list[float]:
        inv = _INV_SQRT_2PI / s
        u = 1.0 / q
        out = []
        for (p2, p1, p0), (g0, g2, g4) in zip(self.poly, self.g):
            out.append(p2 * q + p1 * s + p0 + inv * (g0 + u * (g2 + u * g4)))
        return out
