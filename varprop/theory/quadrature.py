"""Composite Gauss-Legendre rules for one-dimensional Gaussian expectations.

Every expectation in :mod:`varprop.theory` that has no closed form is

.. math::  E[f(x)] = \\int f(m + s t)\\, \\varphi(t)\\, dt, \\qquad x \\sim N(m, s^2),

computed in the standardized variable ``t`` on ``|t| <= T_MAX`` (the Gaussian mass beyond
10 standard deviations is ``1.5e-23``). The interval is cut into panels, each with a
``NODES``-point Gauss-Legendre rule, at the union of two sets of breakpoints:

* a Gaussian grid ``-T_MAX, -T_MAX + GAUSS_WIDTH, ..., T_MAX`` that resolves the density;
* around the *centre* ``t_c = -m / s`` (the activation's kink or transition, ``x = 0``)
  the points ``t_c +- GAUSS_WIDTH 2^-k``, k = 0, 1, ... down to a finest width
  ``X_WIDTH / s``: one ``X_WIDTH``-wide panel in ``x`` on each side of the centre, then
  panels that double in width until the Gaussian grid takes over. A kink therefore always
  sits on a panel edge, and where the activation varies on its own scale (``|x| ~ 1``,
  i.e. ``|t| ~ 1/s`` for a large variance) the panels are that narrow.

This is docs/theory.md section 5's rule (panels of width ``min(2/sqrt(q), 2)`` split at 0)
with the narrow panels only where the activation varies: ``q = 1e3`` at mean 0 takes
160 nodes (each evaluated at +-t) instead of ~2,500 (5,000 unfolded). The constants were set from measured
error against mpmath at 30 digits over q in [1e-3, 1e3] and means in {0, -2, 0.5, 3}:
with 16 nodes, GAUSS_WIDTH = 10/3 and X_WIDTH = 1 every registry activation is within
2e-14 (1e-13 where float64 itself cancels, Var[tanh] at mean 3); X_WIDTH = 4 or 12 nodes
would have lost 2-5 digits (tests/test_gaussian.py keeps the 1e-12 contract).

With mean 0 the rule is folded onto ``[0, T_MAX]`` (``f(s t) + f(-s t)``), which halves the
work and makes odd parts cancel exactly; rows are grouped by refinement depth, and the
folded rule of each depth is computed once and cached. Otherwise rows of a block share a
common panel count (breakpoints outside the range collapse onto its ends), so an array of
variances is one vectorized evaluation, done in blocks of ``BLOCK`` nodes.
"""

from __future__ import annotations

import functools
import math
from typing import Callable, Sequence

import numpy as np
from numpy.polynomial.legendre import leggauss

__all__ = ["NODES", "T_MAX", "GAUSS_WIDTH", "X_WIDTH", "integrate"]

#: Gauss-Legendre nodes per panel.
NODES = 16
#: Half-width of the integration interval in standard deviations.
T_MAX = 10.0
#: Panel width (in standard deviations) of the grid that resolves the Gaussian density
#: (docs/theory.md's 2 gives the same accuracy, measured: below 1e-14 either way).
GAUSS_WIDTH = 10.0 / 3.0
#: Width, in units of the activation's argument x, of the finest panel at a centre.
X_WIDTH = 1.0
#: Upper bound on the number of nodes evaluated at once (memory / cache blocking).
BLOCK = 1 << 17
# Cap on the geometric levels (2^-1100 is below the smallest float64): never binding for
# finite s, only a guard against a runaway loop.
_MAX_LEVELS = 1100

_XI, _WI = leggauss(NODES)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)

Integrand = Callable[[np.ndarray, np.ndarray, np.ndarray], Sequence[np.ndarray]]


def _levels(d_min: np.ndarray) -> int:
    """Halvings of GAUSS_WIDTH needed to reach at most ``min(d_min)`` (0 if none)."""
    finest = float(np.min(d_min)) if d_min.size else math.inf
    if finest >= GAUSS_WIDTH:
        return 0
    return min(_MAX_LEVELS, int(math.ceil(math.log2(GAUSS_WIDTH / finest))))


def _breakpoints(lo: float, hi: float, centres: Sequence[tuple[np.ndarray, np.ndarray]],
                 n: int) -> np.ndarray:
    """Sorted panel edges, shape (n, nb), all in [lo, hi]."""
    grid = np.arange(lo, hi + 0.5 * GAUSS_WIDTH, GAUSS_WIDTH)
    grid[-1] = hi
    parts = [np.broadcast_to(grid, (n, grid.size))]
    for tc, d_min in centres:
        d = GAUSS_WIDTH * np.exp2(-np.arange(_levels(d_min) + 1, dtype=np.float64))
        tc = tc[:, None]
        parts += [tc, tc - d, tc + d]
    edges = np.clip(np.concatenate(parts, axis=1), lo, hi)
    edges.sort(axis=1)
    return edges


def _nodes(edges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nodes t and weights w * phi(t), each (n, P * NODES), zero-width panels dropped
    where every row has one (rows keep a common length)."""
    half = 0.5 * (edges[:, 1:] - edges[:, :-1])
    mid = 0.5 * (edges[:, 1:] + edges[:, :-1])
    used = np.any(half > 0.0, axis=0)
    if not np.all(used):
        half, mid = half[:, used], mid[:, used]
    t = mid[:, :, None] + half[:, :, None] * _XI
    w = (half[:, :, None] * _WI) * (_INV_SQRT_2PI * np.exp(-0.5 * t * t))
    n = edges.shape[0]
    return t.reshape(n, -1), w.reshape(n, -1)


def integrate(integrand: Integrand, m: np.ndarray, s: np.ndarray, n_out: int, *,
              extra_centres: Sequence[tuple[np.ndarray, np.ndarray]] = (),
              x_width: float | None = None) -> np.ndarray:
    """``E[f_k(m + s Z)]`` for each of the ``n_out`` integrands, Z ~ N(0, 1).

    Args:
        integrand: called as ``integrand(x, t, rows)`` with ``x = m + s t`` of shape
            (n_rows, M), ``t`` of that shape or (M,), and the integer indices of the rows
            (to index per-row parameters); returns ``n_out`` arrays of x's shape (or
            broadcastable to it).
        m, s: 1-d float64 arrays of the same length; ``s > 0``.
        n_out: the number of integrands.
        extra_centres: further ``(t_c, d_min)`` pairs (arrays like ``m``) around which
            panels are refined, in standardized units.
        x_width: finest panel width in x at the activation's centre x = 0
            (default :data:`X_WIDTH`).

    Returns:
        array of shape (n_out, len(m)).
    """
    n = m.size
    out = np.empty((n_out, n))
    if n == 0:
        return out
    with np.errstate(over="ignore"):  # a centre at +-inf is outside the range: fine
        tc_all = np.where(m == 0.0, 0.0, -m / s)
    x_width = X_WIDTH if x_width is None else x_width
    centres_all = [(tc_all, x_width / s)] + list(extra_centres)
    # Group rows by what their panels need (foldable or not, refinement depth) so that
    # no row pays for another's refinement. Nested (2-d) integrals, whose rows carry
    # two centres, are only sorted by total depth and blocked.
    levels = [_row_levels(d) for _, d in centres_all]
    if n == 1:
        groups = [np.zeros(1, dtype=np.intp)]
    elif extra_centres:
        groups = [np.argsort(sum(levels), kind="stable")]
    else:
        key = levels[0] + (_MAX_LEVELS + 1) * (m != 0.0)
        order = np.argsort(key, kind="stable")
        groups = np.split(order, np.flatnonzero(np.diff(key[order])) + 1)
    for group in groups:
        fold = not extra_centres and not np.any(m[group])
        if fold:  # centred rows: one cached rule per refinement depth
            t, w = _folded_rule(int(levels[0][group[0]]))
            rows_per_block = max(1, BLOCK // (2 * t.size))
            for start in range(0, group.size, rows_per_block):
                rows = group[start:start + rows_per_block]
                st = s[rows, None] * t
                vals_p = integrand(st, t, rows)
                vals_m = integrand(-st, -t, rows)
                for k in range(n_out):
                    out[k, rows] = (vals_p[k] + vals_m[k]) @ w
            continue
        probe = _breakpoints(-T_MAX, T_MAX, [(c[group[:1]], d[group]) for c, d in centres_all],
                             1)
        rows_per_block = max(1, BLOCK // (probe.shape[1] * NODES))
        for start in range(0, group.size, rows_per_block):
            rows = group[start:start + rows_per_block]
            centres = [(c[rows], d[rows]) for c, d in centres_all]
            t, w = _nodes(_breakpoints(-T_MAX, T_MAX, centres, rows.size))
            vals = integrand(m[rows, None] + s[rows, None] * t, t, rows)
            for k in range(n_out):
                out[k, rows] = np.einsum("ij,ij->i", vals[k], w)
    return out


@functools.lru_cache(maxsize=None)
def _folded_rule(levels: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights on [0, T_MAX] for a centre at 0 refined ``levels`` times."""
    d_min = np.full(1, GAUSS_WIDTH * 2.0**-levels)
    t, w = _nodes(_breakpoints(0.0, T_MAX, [(np.zeros(1), d_min)], 1))
    t, w = t[0], w[0]
    t.flags.writeable = False
    w.flags.writeable = False
    return t, w


@functools.lru_cache(maxsize=None)
def folded_panels(levels: int) -> tuple[np.ndarray, np.ndarray, tuple[float, ...]]:
    """:func:`_folded_rule` ``(t, w)`` and the lower edge of each of its panels (nodes
    ``NODES * p`` to ``NODES * (p + 1) - 1`` lie in panel p), for cutting the rule."""
    t, w = _folded_rule(levels)
    d_min = np.full(1, GAUSS_WIDTH * 2.0**-levels)
    edges = _breakpoints(0.0, T_MAX, [(np.zeros(1), d_min)], 1)[0]
    lower = tuple(float(e) for e, h in zip(edges[:-1], np.diff(edges)) if h > 0.0)
    assert len(lower) * NODES == t.size
    return t, w, lower


def _row_levels(d_min: np.ndarray) -> np.ndarray:
    """Per-row halvings of GAUSS_WIDTH needed to reach d_min (see :func:`_levels`);
    ``d_min`` is positive, possibly inf (no refinement)."""
    ratio = GAUSS_WIDTH / np.clip(d_min, 1e-320, GAUSS_WIDTH)  # in [1, 2e320]: log2 >= 0
    return np.minimum(np.ceil(np.log2(ratio)), _MAX_LEVELS).astype(np.int64)
