"""Hermite expansions of a function of one Gaussian, and ``E[phi(X) phi(Y)]`` for many
jointly Gaussian pairs by Mehler's formula (docs/recurrent.md, section 2, "Pairs of
steps"; the phase diagram's dual kernel, docs/theory.md section 4).

With ``X = m1 + s1 a`` and ``Y = m2 + s2 b``, ``(a, b)`` standard with correlation
``c``, and the orthonormal Hermite polynomials ``h_k = He_k / sqrt(k!)``,

    E[phi(X) phi(Y)] = sum_k c^k beta_k(1) beta_k(2),    beta_k = E[phi(m + s a) h_k(a)]

(Mehler 1866; O'Donnell, *Analysis of Boolean Functions*, section 11.2; Daniely et al.
2016 call ``sum_k beta_k^2 c^k`` the dual activation). The coefficients are
one-dimensional integrals per marginal, so ``T`` marginals give all ``T^2`` pairs for
the cost of ``T`` integrals and a sum.

:class:`HermiteBasis` computes them as composite 8-point Gauss-Legendre sums over
``a`` in ``[-14, 14]`` (panels of 0.1, edges at 0) of ``phi`` against the normalized
Hermite *functions* from their stable three-term recursion (the polynomials themselves
overflow long before order 1000).

Truncated after ``K`` terms the error of a pair is at most ``sqrt(tail_1 tail_2)`` for
any ``|c| <= 1``, by Cauchy-Schwarz, where ``tail = E[phi^2] - sum_k<K beta_k^2``
(Parseval), measured against the library's own accurate ``E[phi^2]``. A kink of ``phi``
inside a panel (a mean moves it off 0) makes the sums less accurate: a second basis on
panels of 0.2 estimates the coefficients' error ``d = |beta - beta_coarse|``, and the
bound of a pair becomes ``sqrt(tail_1 tail_2) + d_1 |beta_2| + d_2 |beta_1| + d_1 d_2``.
:func:`mehler_pairs` leaves a pair whose bound is not small to the caller's exact rule.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any, Callable

import numpy as np

__all__ = ["HermiteBasis", "hermite_basis", "Coefficients", "hermite_coefficients",
           "mehler_pairs", "TERMS", "TOLERANCE"]

#: Terms of the pair expansion kept.
TERMS = 256
#: A pair is accepted when its error bound is below this share of
#: sqrt(E[phi(X)^2] E[phi(Y)^2]).
TOLERANCE = 1e-5
_HALF_WIDTH = 14.0  # the integrals cover +-14 standard deviations (mass beyond: 2e-44)


class HermiteBasis:
    """The orthonormal Hermite expansion of ``f(m + s a)``, ``a`` standard normal, up to
    order ``order`` (module doc): :meth:`coefficients` gives ``beta_k = E[f(m + s a)
    h_k(a)]``, ``k = 0 .. order``."""

    def __init__(self, order: int, panel: float = 0.1, half_width: float = _HALF_WIDTH
                 ) -> None:
        x, w = np.polynomial.legendre.leggauss(8)
        n_panels = 2 * int(round(half_width / panel))
        edges = np.linspace(-half_width, half_width, n_panels + 1)
        mid, half = 0.5 * (edges[1:] + edges[:-1]), 0.5 * (edges[1:] - edges[:-1])
        self.z = (mid[:, None] + half[:, None] * x[None, :]).ravel()
        weights = (half[:, None] * w[None, :]).ravel()
        # rows: the normalized Hermite functions h_k(z) sqrt(pdf(z)), k = 0..order, by
        # their stable recursion; times sqrt(pdf(z)) and the weights they integrate
        sq = np.sqrt(np.exp(-0.5 * self.z ** 2) / math.sqrt(2 * math.pi))
        basis = np.empty((order + 1, self.z.size))
        basis[0] = sq
        basis[1] = self.z * sq
        for k in range(1, order):
            basis[k + 1] = (self.z * basis[k] - math.sqrt(k) * basis[k - 1]) / math.sqrt(k + 1)
        self.basis = basis * (weights * sq)[None, :]

    def coefficients(self, fn: Callable[[np.ndarray], Any], mean: Any, sd: Any,
                     chunk: int = 256) -> np.ndarray:
        """``beta`` of ``fn(mean + sd a)`` per marginal (flat ``mean``, ``sd``
        broadcast): shape ``(n, order + 1)``."""
        mean, sd = np.broadcast_arrays(np.asarray(mean, float).ravel(),
                                       np.asarray(sd, float).ravel())
        out = np.empty((mean.size, self.basis.shape[0]))
        for i in range(0, mean.size, chunk):
            x = mean[i:i + chunk, None] + sd[i:i + chunk, None] * self.z[None, :]
            with np.errstate(over="ignore", invalid="ignore"):
                vals = np.asarray(fn(x), float)
            out[i:i + chunk] = vals @ self.basis.T
        return out


@lru_cache(maxsize=4)
def hermite_basis(order: int, panel: float = 0.1) -> HermiteBasis:
    """A shared :class:`HermiteBasis` (building one costs ``order`` passes)."""
    return HermiteBasis(order, panel)


class Coefficients:
    """The expansion of each marginal ``N(mean, var)`` (flat arrays, ``second`` its
    ``E[phi^2]`` from the library's one-dimensional rules): ``beta (n, TERMS)``, the
    running sums of ``beta^2`` (Parseval's tail at any order) and of the squared
    difference from the coarse rule (the coefficients' estimated error), all cut after
    the terms every marginal needs for a tail within half the tolerance (a smooth phi
    needs a few dozen; the pair sums cost one pass per term)."""

    def __init__(self, act: Any, mean: Any, var: Any, second: Any) -> None:
        mean, var, second = (np.asarray(v, float).ravel() for v in (mean, var, second))
        sd = np.sqrt(var)
        self.beta = hermite_basis(TERMS - 1, 0.2).coefficients(act.value, mean, sd)
        coarse = hermite_basis(TERMS - 1, 0.4).coefficients(act.value, mean, sd)
        with np.errstate(over="ignore", invalid="ignore"):
            self.energy = np.cumsum(self.beta * self.beta, axis=1)
            self.diff = np.cumsum((self.beta - coarse) ** 2, axis=1)
            enough = second[:, None] - self.energy <= 0.5 * TOLERANCE * np.abs(second)[:, None]
        needed = np.where(enough.any(axis=1), enough.argmax(axis=1) + 1, TERMS)
        keep = int(needed.max()) if needed.size else 1
        self.beta, self.energy, self.diff = (a[:, :keep].copy() for a in
                                             (self.beta, self.energy, self.diff))
        self.second = second

    def tail(self, terms: int) -> np.ndarray:
        """Parseval's tail after ``terms`` terms (inf where the sums overshot
        ``second``: the rule did not resolve phi)."""
        with np.errstate(over="ignore", invalid="ignore"):
            tail = self.second - self.energy[..., terms - 1]
        bad = ~np.isfinite(tail) | (tail < -TOLERANCE * np.abs(self.second))
        return np.where(bad, np.inf, np.maximum(tail, 0.0))

    def error(self, terms: int) -> np.ndarray:
        """The estimated error norm of the first ``terms`` coefficients."""
        return np.sqrt(self.diff[..., terms - 1])

    def take(self, index: Any) -> "Coefficients":
        out = object.__new__(Coefficients)
        out.beta, out.energy = self.beta[index], self.energy[index]
        out.diff, out.second = self.diff[index], self.second[index]
        return out


def hermite_coefficients(act: Any, mean: Any, var: Any, second: Any) -> Coefficients:
    """:class:`Coefficients` of each marginal ``N(mean, var)`` whose ``E[phi^2]`` is
    ``second``."""
    return Coefficients(act, mean, var, second)


def mehler_pairs(one: Coefficients, two: Coefficients, corr: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray]:
    """``(E[phi(X) phi(Y)], accepted)`` of pairs (the marginals ``one`` and ``two``,
    row by row, and their correlations ``corr`` in [-1, 1]); ``accepted`` is False
    where the error bound (module doc) passes :data:`TOLERANCE` times
    ``sqrt(E[phi(X)^2] E[phi(Y)^2])`` (those values are not to be used)."""
    c = np.clip(np.asarray(corr, float), -1.0, 1.0)
    # the terms both kept (Cauchy-Schwarz bounds the rest with both tails from there)
    terms = min(one.beta.shape[-1], two.beta.shape[-1])
    value = np.zeros(c.shape)
    power = np.ones(c.shape)
    for k in range(terms):
        value += power * one.beta[..., k] * two.beta[..., k]
        power = power * c
    tail1, tail2 = one.tail(terms), two.tail(terms)
    err1, err2 = one.error(terms), two.error(terms)
    with np.errstate(invalid="ignore", over="ignore"):
        norm1, norm2 = np.sqrt(np.abs(one.second)), np.sqrt(np.abs(two.second))
        bound = np.sqrt(tail1 * tail2) + err1 * norm2 + err2 * norm1 + err1 * err2
        accepted = np.isfinite(bound) & (bound <= TOLERANCE * np.maximum(norm1 * norm2,
                                                                           1e-300))
    return value, accepted
