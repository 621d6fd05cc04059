"""``E[phi(X) phi(Y)]`` for many jointly Gaussian pairs that share their marginals, by
Mehler's expansion (docs/recurrent.md, section 2, "Pairs of steps").

With ``X = m1 + s1 a`` and ``Y = m2 + s2 b``, ``(a, b)`` standard with correlation
``c``, and the orthonormal Hermite polynomials ``h_k = He_k / sqrt(k!)``,

    E[phi(X) phi(Y)] = sum_k c^k beta_k(1) beta_k(2),    beta_k = E[phi(m + s a) h_k(a)]

(Mehler 1866; O'Donnell, *Analysis of Boolean Functions*, section 11.2). The
coefficients are one-dimensional integrals per marginal, so ``T`` marginals give all
``T^2`` pairs for the cost of ``T`` integrals and a sum. Truncated after ``K`` terms the
error of a pair is at most ``sqrt(tail_1 tail_2)`` for any ``|c| <= 1``, by
Cauchy-Schwarz, where ``tail = E[phi^2] - sum_k<K beta_k^2`` (Parseval), measured
against the library's own accurate ``E[phi^2]``. The coefficients themselves come from
a Gauss-Hermite rule, which aliases what it does not resolve (a wide variance through
a saturating activation) into them: a second, coarser rule estimates that error
``d = |beta - beta_coarse|``, as a Gauss-Kronrod pair does, and the bound of a pair
becomes ``sqrt(tail_1 tail_2) + d_1 |beta_2| + d_2 |beta_1| + d_1 d_2``. A pair whose
bound is not small is left to the caller's exact rule.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["hermite_coefficients", "mehler_pairs", "TERMS", "NODES", "TOLERANCE"]

#: Terms of the expansion kept.
TERMS = 128
#: Gauss-Hermite nodes of the one-dimensional integrals (exact for polynomials of
#: degree below 2 NODES: the coefficients of a polynomial phi are exact), and of the
#: coarser rule that estimates their error.
NODES = 240
COARSE_NODES = 180
#: A pair is accepted when its truncation bound is below this share of
#: sqrt(E[phi(X)^2] E[phi(Y)^2]).
TOLERANCE = 1e-5

_RULES: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}


def _rule(nodes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gauss-Hermite nodes and weights (probabilists', weights summing to 1), and the
    orthonormal Hermite polynomials at the nodes ``(TERMS, nodes)``."""
    if nodes not in _RULES:
        a, w = np.polynomial.hermite_e.hermegauss(nodes)
        h = np.empty((TERMS, nodes))
        h[0] = 1.0
        h[1] = a
        for k in range(1, TERMS - 1):  # h_(k+1) = (a h_k - sqrt(k) h_(k-1)) / sqrt(k+1)
            h[k + 1] = (a * h[k] - math.sqrt(k) * h[k - 1]) / math.sqrt(k + 1)
        _RULES[nodes] = (a, w / w.sum(), h)
    return _RULES[nodes]


def _coefficients(act: Any, mean: np.ndarray, sd: np.ndarray, nodes: int) -> np.ndarray:
    a, w, h = _rule(nodes)
    x = mean[:, None] + sd[:, None] * a[None, :]
    with np.errstate(over="ignore", invalid="ignore"):
        f = np.asarray(act.value(x), float)
    return (f * w[None, :]) @ h.T


class Coefficients:
    """The expansion of each marginal ``N(mean, var)`` (flat arrays, ``second`` its
    ``E[phi^2]`` from the library's one-dimensional rules): ``beta (n, TERMS)``,
    ``tail`` (Parseval's, inf where the rule overshot ``second``), ``error`` (the
    coefficients' estimated error norm) and ``second``."""

    def __init__(self, act: Any, mean: Any, var: Any, second: Any) -> None:
        mean, var, second = (np.asarray(v, float).ravel() for v in (mean, var, second))
        sd = np.sqrt(var)
        self.beta = _coefficients(act, mean, sd, NODES)
        coarse = _coefficients(act, mean, sd, COARSE_NODES)
        with np.errstate(over="ignore", invalid="ignore"):
            self.error = np.sqrt(np.sum((self.beta - coarse) ** 2, axis=1))
            tail = second - np.sum(self.beta * self.beta, axis=1)
        bad = ~np.isfinite(tail) | (tail < -TOLERANCE * np.abs(second)) \
            | ~np.isfinite(self.error)
        self.tail = np.where(bad, np.inf, np.maximum(tail, 0.0))
        self.second = second

    def take(self, index: Any) -> "Coefficients":
        out = object.__new__(Coefficients)
        out.beta, out.tail = self.beta[index], self.tail[index]
        out.error, out.second = self.error[index], self.second[index]
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
    powers = c[..., None] ** np.arange(TERMS)
    value = np.sum(powers * one.beta * two.beta, axis=-1)
    with np.errstate(invalid="ignore", over="ignore"):
        norm1, norm2 = np.sqrt(np.abs(one.second)), np.sqrt(np.abs(two.second))
        bound = np.sqrt(one.tail * two.tail) + one.error * norm2 + two.error * norm1 \
            + one.error * two.error
        accepted = np.isfinite(bound) & (bound <= TOLERANCE * np.maximum(norm1 * norm2,
                                                                           1e-300))
    return value, accepted
