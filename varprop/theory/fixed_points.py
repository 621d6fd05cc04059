"""The fixed points of the length map for many ``(sigma_w2, sigma_b2)`` at once: the
array form of :func:`varprop.theory.fixed_point` (a phase diagram asks for thousands).

The rules are those of the scalar solver, point by point (:func:`.meanfield._fixed_point`,
docs/theory.md section 2): from ``q0`` in the direction of ``T(q0) - q0``, the first
sign change of ``F(q) = T(q) - q`` on the same grid of doubling (halving) steps, with the
same rounding band, the same early answers (``inf`` once ``T(q)/q`` tends to a limit
above 1, ``0`` when ``T(0) = 0`` and ``T'(0) <= 1``) and the same ends. Two things make it
cheap: ``T(q) = sigma_w2 E[phi(sqrt(q) z)^2] + sigma_b2``, so the bracketing search needs
``E[phi^2]`` on the grid once for every point sharing ``q0``; and the roots inside the
brackets are found together, by regula falsi (Illinois) with a bisection whenever a step
fails to halve the bracket, to the tolerance Brent's method is given in the scalar
solver, so the two agree to ``tol``.
"""

from __future__ import annotations

import math

import numpy as np

from ..activations import Activation
from .gaussian import expect
from .meanfield import (_ASYMPTOTIC_Q, _F_NOISE, _GROWTH_MARGIN, _Q_MIN, Q_MAX,
                        _dphi2_at_zero, _tail_dphi2)

__all__ = ["fixed_points"]


def _second_moment(act: Activation, q: np.ndarray) -> np.ndarray:
    """``E[phi(sqrt(q) z)^2]`` for an array of q, each distinct value integrated once."""
    uq, inverse = np.unique(np.asarray(q, dtype=np.float64).ravel(), return_inverse=True)
    e = expect(act, ("phi2",), np.zeros_like(uq), np.sqrt(uq), uq)["phi2"]
    return e[inverse].reshape(np.shape(q))


def fixed_points(act: Activation, sw: np.ndarray, sb: np.ndarray, q0: float, tol: float,
                 max_iter: int = 500) -> np.ndarray:
    """``q*`` reached from ``q0`` for flat arrays ``sw``, ``sb`` (see the module doc)."""
    n = sw.size
    out = np.full(n, math.nan)
    t0 = sw * float(_second_moment(act, np.zeros(1))[0]) + sb
    start = np.full(n, float(q0))
    if q0 == 0.0:  # the limit from 0 is the limit from T(0)
        out[t0 == 0.0] = 0.0
        start = t0
    todo = np.isnan(out)
    for value in np.unique(start[todo]):  # one shared grid per starting point
        idx = np.flatnonzero(todo & (start == value))
        out[idx] = _from(act, sw[idx], sb[idx], t0[idx], float(value), tol, max_iter)
    return out


def _from(act: Activation, sw: np.ndarray, sb: np.ndarray, t0: np.ndarray, q0: float,
          tol: float, max_iter: int) -> np.ndarray:
    out = np.full(sw.size, math.nan)
    lo, hi = np.full(sw.size, math.nan), np.full(sw.size, math.nan)
    f0 = sw * float(_second_moment(act, np.array([q0]))[0]) + sb - q0
    still = np.abs(f0) <= _F_NOISE * q0
    out[still] = q0
    up = np.flatnonzero(~still & (f0 > 0))
    if up.size:  # increasing sequence: first root above q0 (or inf)
        grid = np.concatenate([q0 * 2.0 ** np.arange(1, 41),
                               q0 * 2.0 ** 40 * 1e4 ** np.arange(1, 60)])
        grid = grid[grid <= Q_MAX * 1e4]
        growth = sw[up] * _tail_dphi2(act)  # lim T(q) / q; > 1 means certain divergence
        a, b = np.full(up.size, q0), np.full(up.size, math.nan)
        open_ = np.ones(up.size, bool)
        for chunk in np.array_split(grid, max(1, grid.size // 8)):
            rows = np.flatnonzero(open_)
            if rows.size == 0:
                break
            f = (sw[up[rows], None] * _second_moment(act, chunk)[None, :]
                 + sb[up[rows], None] - chunk)
            hit = f <= -_F_NOISE * chunk
            found = hit.any(axis=1)
            first = np.argmax(hit, axis=1)
            rf = rows[found]
            b[rf] = chunk[first[found]]
            a[rf] = np.where(first[found] > 0, chunk[np.maximum(first[found] - 1, 0)], a[rf])
            open_[rf] = False
            rest = rows[~found]
            a[rest] = chunk[-1]
            if chunk[-1] >= _ASYMPTOTIC_Q:  # T(q)/q = growth + O(q^-1/2): no root beyond
                diverge = rest[growth[rest] > 1.0 + _GROWTH_MARGIN]
                out[up[diverge]] = math.inf
                open_[diverge] = False
        gone = open_ | (b > Q_MAX)
        out[up[gone & ~np.isinf(out[up])]] = math.inf
        keep = ~gone & np.isnan(out[up])
        lo[up[keep]], hi[up[keep]] = a[keep], b[keep]
    down = np.flatnonzero(~still & (f0 < 0))
    if down.size:  # decreasing sequence: last root below q0 (0 if T(0) = 0, none above)
        grid = np.concatenate([q0 * 2.0 ** -np.arange(1, 41),
                               q0 * 2.0 ** -40 * 256.0 ** -np.arange(1, 130)])
        grid = grid[grid >= _Q_MIN]
        flat = sw[down] * _dphi2_at_zero(act) <= 1.0  # T'(0) <= 1
        a, b = np.full(down.size, math.nan), np.full(down.size, q0)
        open_ = np.ones(down.size, bool)
        for chunk in np.array_split(grid, max(1, grid.size // 8)):
            rows = np.flatnonzero(open_)
            if rows.size == 0:
                break
            f = (sw[down[rows], None] * _second_moment(act, chunk)[None, :]
                 + sb[down[rows], None] - chunk)
            hit = f >= _F_NOISE * chunk
            found = hit.any(axis=1)
            first = np.argmax(hit, axis=1)
            rf = rows[found]
            a[rf] = chunk[first[found]]
            b[rf] = np.where(first[found] > 0, chunk[np.maximum(first[found] - 1, 0)], b[rf])
            open_[rf] = False
            rest = rows[~found]
            b[rest] = chunk[-1]
            if chunk[-1] < 1e-12 * q0:  # T(q) < q down to here, T(0) = 0, T'(0) <= 1
                zero = rest[(t0[down[rest]] == 0.0) & flat[rest]]
                out[down[zero]] = 0.0
                open_[zero] = False
        none = open_ & np.isnan(out[down])
        out[down[none & (t0[down] == 0.0)]] = 0.0
        a[none & (t0[down] != 0.0)] = 0.0
        keep = np.isnan(out[down])
        lo[down[keep]], hi[down[keep]] = a[keep], b[keep]
    rows = np.flatnonzero(np.isnan(out))
    if rows.size:
        out[rows] = _roots(act, sw[rows], sb[rows], lo[rows], hi[rows], tol, max_iter)
    return out


def _roots(act: Activation, sw: np.ndarray, sb: np.ndarray, lo: np.ndarray, hi: np.ndarray,
           tol: float, max_iter: int) -> np.ndarray:
    """Roots of F inside [lo, hi]; an end inside the rounding band (or no sign change) is
    the root to float64 precision, as in the scalar solver."""
    def F(q: np.ndarray, rows: np.ndarray) -> np.ndarray:
        return sw[rows] * _second_moment(act, q) + sb[rows] - q

    every = np.arange(sw.size)
    f_lo, f_hi = F(lo, every), F(hi, every)
    out = np.where(np.abs(f_lo) <= np.abs(f_hi), lo, hi)
    active = ~((f_lo == 0.0) | (f_hi == 0.0) | ((f_lo > 0) == (f_hi > 0)))
    xtol = np.maximum(tol * lo, 1e-300)
    rtol = max(tol, 4 * np.finfo(float).eps)
    a, b, fa, fb = lo.copy(), hi.copy(), f_lo, f_hi
    side = np.zeros(sw.size, int)  # Illinois: which end was kept last time (+-1)
    for it in range(max_iter):
        rows = np.flatnonzero(active)
        if rows.size == 0:
            break
        ar, br, far, fbr = a[rows], b[rows], fa[rows], fb[rows]
        width = br - ar
        x = br - fbr * width / (fbr - far)  # regula falsi
        slow = (it % 3 == 2) | ~((x > ar) & (x < br))  # every third step: a bisection
        x = np.where(slow, ar + 0.5 * width, x)
        fx = F(x, rows)
        left = (fx > 0) == (far > 0)  # the root is in [x, b]
        exact = fx == 0.0
        keep_b = left & ~exact
        # Illinois: halve the function value at the end kept twice in a row
        fb_new = np.where(keep_b & (side[rows] == 1), 0.5 * fbr, fbr)
        fa_new = np.where(~keep_b & (side[rows] == -1), 0.5 * far, far)
        a[rows] = np.where(keep_b, x, ar)
        fa[rows] = np.where(keep_b, fx, fa_new)
        b[rows] = np.where(keep_b, br, x)
        fb[rows] = np.where(keep_b, fb_new, fx)
        side[rows] = np.where(keep_b, 1, -1)
        out[rows] = x
        done = exact | (b[rows] - a[rows] <= xtol[rows] + rtol * np.abs(x))
        active[rows[done]] = False
    return out
