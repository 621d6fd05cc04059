"""Mean-field signal propagation: length and correlation maps, their fixed points and depth
scales.

For a deep fully connected network with i.i.d. zero-mean weights of variance
``sigma_w2 / n`` and biases of variance ``sigma_b2`` (docs/theory.md sections 2-4):

* length map (Poole et al. 2016, arXiv 1606.05340):
  ``q' = T(q) = sigma_w2 E[phi(sqrt(q) z)^2] + sigma_b2``;
* gradient factor per layer: ``chi_1 = sigma_w2 E[phi'(sqrt(q*) z)^2]``;
* correlation map (Schoenholz et al. 2017, arXiv 1611.01232):
  ``c' = (sigma_w2 E[phi(u1) phi(u2)] + sigma_b2) / T(q)``, ``u`` of variance q and
  correlation c;
* depth scales: ``1/xi_q = -log(T'(q*))`` with
  ``T'(q*) = chi_1 + sigma_w2 E[phi'' phi]`` and
  ``1/xi_c = -log(sigma_w2 E[phi'(u1*) phi'(u2*)])`` at the stable correlation ``c*``;
* the edge of chaos and the Jacobian's mean squared singular value live in
  :mod:`.criticality`.

The maps are increasing in q (respectively c) for every registry activation (checked in
tests/test_meanfield.py), so iterating a map from a starting point converges monotonically
to the first fixed point in the direction it moves. The fixed points here are computed as
exactly that point, by bracketing and Brent's method rather than by iterating, so that
they do not slow down near criticality, where plain iteration converges only
algebraically.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np
from scipy import optimize

from ..activations import Activation, get_activation
from .gaussian import C_SLACK, as_real_array, cross_expect, expect, first_bad

__all__ = ["q_map", "fixed_point", "chi1", "c_map", "correlation_fixed_point",
           "depth_scales", "DepthScales"]

#: Fixed points of the length map beyond this are reported as ``inf`` (diverging q).
Q_MAX = 1e200
_Q_MIN = 1e-300
# |T(q) - q| below _F_NOISE * q is float64 rounding of T(q), not a sign (relu with
# sigma_w2 = 2: T(q) = q + sigma_b2 rounds to q once q >> sigma_b2 / eps).
_F_NOISE = 64 * np.finfo(np.float64).eps
# Beyond this q, T(q)/q is within O(q^-1/2) of its limit sigma_w2 (phi'(-inf)^2 +
# phi'(inf)^2)/2 for every registry activation; a limit above 1 + margin then proves
# divergence without scanning to Q_MAX.
_ASYMPTOTIC_Q = 1e12
_GROWTH_MARGIN = 1e-3
# |c_map(c) - c| below this is rounding (c_map(1) = 1 is computed, not exact).
_G_NOISE = 64 * np.finfo(np.float64).eps


class DepthScales(NamedTuple):
    """``(xi_q, xi_c)``: the depths over which q and c approach their fixed points."""

    xi_q: float
    xi_c: float


def _scalar(value: Any, name: str, *, nonnegative: bool = True) -> float:
    arr = as_real_array(value, name, nonnegative=nonnegative)
    if arr.ndim != 0:
        raise TypeError(f"{name} must be a scalar, got an array of shape {arr.shape}")
    return float(arr)


def _weights(sigma_w2: Any, sigma_b2: Any) -> tuple[float, float]:
    return _scalar(sigma_w2, "sigma_w2"), _scalar(sigma_b2, "sigma_b2")


def _tail_dphi2(act: Activation) -> float:
    """``lim_{q->inf} E[phi'(sqrt(q) z)^2] = (phi'(-inf)^2 + phi'(inf)^2) / 2``."""
    d = act.derivative(np.array([-1e100, 1e100]))  # slopes there are their limits
    return float(0.5 * (d[0] ** 2 + d[1] ** 2))


def _dphi2_at_zero(act: Activation) -> float:
    """``E[phi'(sqrt(q) z)^2]`` as ``q -> 0+``: the slope ``T'(0) / sigma_w2``."""
    return float(expect(act, ("dphi2",), np.zeros(1), np.zeros(1))["dphi2"][0])


def _length(act: Activation, q: np.ndarray, sw: float, sb: float) -> np.ndarray:
    qf = np.asarray(q, dtype=np.float64).ravel()
    e = expect(act, ("phi2",), np.zeros_like(qf), np.sqrt(qf), qf)["phi2"]
    return (sw * e + sb).reshape(np.shape(q))


# ----------------------------------------------------------------------------- length map


def q_map(activation: "str | Activation", q: Any, sigma_w2: float, sigma_b2: float,
          **activation_params: Any) -> Any:
    """One step of the length map ``q' = sigma_w2 E[phi(sqrt(q) z)^2] + sigma_b2``.

    Vectorized over ``q`` (array-like, >= 0); returns an array of its shape (a float for
    a scalar). Example: ``q_map("relu", 1.0, 2.0, 0.0) == 1.0`` (He et al. 2015).
    """
    act = get_activation(activation, **activation_params)
    sw, sb = _weights(sigma_w2, sigma_b2)
    out = _length(act, as_real_array(q, "q", nonnegative=True), sw, sb)
    return out[()] if out.ndim == 0 else out


def fixed_point(activation: "str | Activation", sigma_w2: Any, sigma_b2: Any, *,
                q0: float = 1.0, tol: float = 1e-12, max_iter: int = 500,
                **activation_params: Any) -> Any:
    """The fixed point ``q*`` the length map reaches from ``q0``: ``lim T^l(q0)``.

    Because ``T`` is increasing, that limit is the first root of ``T(q) = q`` met going
    from ``q0`` in the direction of ``T(q0) - q0``. It is bracketed by doubling (or
    halving) q and then located by Brent's method to relative tolerance ``tol``.

    ``sigma_w2`` and ``sigma_b2`` may be arrays (a grid of the plane, as for a phase
    diagram): the result is then an array of their broadcast shape, each point found the
    same way (the brackets share the Gaussian moments of one grid of q, the roots are
    polished together by safeguarded regula falsi to the same tolerance).

    Documented answers:

    * ``T(q0) = q0`` returns ``q0``: e.g. relu with ``sigma_w2 = 2, sigma_b2 = 0``, where
      every q is a fixed point (He initialization preserves any input scale).
    * diverging length map (no fixed point up to :data:`Q_MAX`, e.g. relu with
      ``sigma_w2 > 2``, or ``= 2`` with ``sigma_b2 > 0``): ``inf``.
    * ``q* = 0`` (e.g. tanh with ``sigma_b2 = 0, sigma_w2 <= 1``): ``0.0`` exactly.

    Args:
        activation: name or Activation; ``**activation_params`` for a name.
        sigma_w2: ``n Var[W]`` (>= 0). sigma_b2: ``Var[b]`` (>= 0). Scalars or arrays.
        q0: the starting second moment (>= 0), e.g. the input's.
        tol: relative tolerance on q*.
        max_iter: iteration cap of Brent's method.

    Example:
        >>> round(fixed_point("relu", 1.0, 1.0), 12)    # sigma_b2 / (1 - sigma_w2 / 2)
        2.0
    """
    act = get_activation(activation, **activation_params)
    q0 = _scalar(q0, "q0")
    tol = _scalar(tol, "tol")
    if np.ndim(sigma_w2) == 0 and np.ndim(sigma_b2) == 0:
        sw, sb = _weights(sigma_w2, sigma_b2)
        return _fixed_point(act, sw, sb, q0, tol, int(max_iter))
    sw = as_real_array(sigma_w2, "sigma_w2", nonnegative=True)
    sb = as_real_array(sigma_b2, "sigma_b2", nonnegative=True)
    shape = np.broadcast_shapes(sw.shape, sb.shape)
    swf, sbf = (np.broadcast_to(v, shape).ravel() for v in (sw, sb))
    from .fixed_points import fixed_points  # (it builds on this module)

    return fixed_points(act, swf, sbf, q0, tol, int(max_iter)).reshape(shape)


def _fixed_point(act: Activation, sw: float, sb: float, q0: float, tol: float,
                 max_iter: int) -> float:
    def T(q: float) -> float:
        return float(_length(act, np.asarray(q, dtype=np.float64), sw, sb))

    def F(q: np.ndarray) -> np.ndarray:
        return _length(act, q, sw, sb) - q

    def noise(q: np.ndarray) -> np.ndarray:  # |F| below this is rounding, not a sign
        return _F_NOISE * q

    t0 = T(0.0)
    if q0 == 0.0:
        if t0 == 0.0:
            return 0.0
        q0 = t0  # the limit from 0 is the limit from T(0)
    f0 = T(q0) - q0
    if abs(f0) <= noise(q0):
        return q0
    if f0 > 0:  # increasing sequence: first root above q0 (or inf)
        growth = sw * _tail_dphi2(act)  # lim T(q) / q; > 1 means certain divergence
        grid = np.concatenate([q0 * 2.0 ** np.arange(1, 41),
                               q0 * 2.0 ** 40 * 1e4 ** np.arange(1, 60)])
        grid = grid[grid <= Q_MAX * 1e4]
        lo = q0
        for chunk in np.array_split(grid, max(1, grid.size // 8)):
            f = F(chunk)
            hit = np.flatnonzero(f <= -noise(chunk))
            if hit.size:
                hi = float(chunk[hit[0]])
                lo = float(chunk[hit[0] - 1]) if hit[0] > 0 else lo
                break
            lo = float(chunk[-1])
            if lo >= _ASYMPTOTIC_Q and growth > 1.0 + _GROWTH_MARGIN:
                return math.inf  # T(q)/q = growth + O(q^-1/2): no root beyond
        else:
            return math.inf
        if hi > Q_MAX:
            return math.inf
    else:  # decreasing sequence: last root below q0 (0 if T(0) = 0 and none above)
        grid = np.concatenate([q0 * 2.0 ** -np.arange(1, 41),
                               q0 * 2.0 ** -40 * 256.0 ** -np.arange(1, 130)])
        grid = grid[grid >= _Q_MIN]
        hi = q0
        lo = None
        for chunk in np.array_split(grid, max(1, grid.size // 8)):
            f = F(chunk)
            hit = np.flatnonzero(f >= noise(chunk))
            if hit.size:
                lo = float(chunk[hit[0]])
                hi = float(chunk[hit[0] - 1]) if hit[0] > 0 else hi
                break
            hi = float(chunk[-1])
            if t0 == 0.0 and hi < 1e-12 * q0 and sw * _dphi2_at_zero(act) <= 1.0:
                # T(q) < q down to here, T(0) = 0 and T'(0) <= 1: no root in (0, hi)
                return 0.0
        if lo is None:
            if t0 == 0.0:
                return 0.0
            lo = 0.0
    f_lo, f_hi = float(F(np.asarray(lo))), float(F(np.asarray(hi)))
    if f_lo == 0.0 or f_hi == 0.0 or (f_lo > 0) == (f_hi > 0):
        # an end inside the rounding band: it is a root to float64 precision
        return lo if abs(f_lo) <= abs(f_hi) else hi
    root = optimize.brentq(lambda q: float(F(np.asarray(q))), lo, hi,
                           xtol=max(tol * lo, 1e-300), rtol=max(tol, 4 * np.finfo(float).eps),
                           maxiter=max_iter)
    return float(root)


def chi1(activation: "str | Activation", sigma_w2: float, sigma_b2: float,
         q: Any = None, *, q0: float = 1.0, **activation_params: Any) -> Any:
    """``chi_1 = sigma_w2 E[phi'(sqrt(q) z)^2]``: the factor by which the back-propagated
    gradient variance grows per layer (docs/theory.md section 3).

    With ``q=None`` it is taken at the fixed point ``q* = fixed_point(..., q0=q0)``; when
    that diverges (``q* = inf``), at the limit ``sigma_w2 (phi'(-inf)^2 + phi'(inf)^2) / 2``
    (e.g. ``sigma_w2 / 2`` for relu, 0 for tanh). A given ``q`` may be an array (result of
    its shape).

    Example: ``chi1("relu", 2.0, 0.0) == 1.0``; ``chi1("tanh", 1.0, 0.0) == 1.0`` (q* = 0).
    """
    act = get_activation(activation, **activation_params)
    sw, sb = _weights(sigma_w2, sigma_b2)
    if q is None:
        qs = _fixed_point(act, sw, sb, _scalar(q0, "q0"), 1e-12, 500)
        if math.isinf(qs):
            return sw * _tail_dphi2(act)
        q = qs
    qa = as_real_array(q, "q", nonnegative=True)
    s = np.sqrt(qa).ravel()
    out = (sw * expect(act, ("dphi2",), np.zeros_like(s), s)["dphi2"]).reshape(qa.shape)
    return float(out) if out.ndim == 0 else out


# ----------------------------------------------------------------------------- correlation


def c_map(activation: "str | Activation", c: Any, q: float, sigma_w2: float,
          sigma_b2: float, **activation_params: Any) -> Any:
    """One step of the correlation map for two inputs of equal second moment ``q``.

    ``c' = (sigma_w2 E[phi(u1) phi(u2)] + sigma_b2) / (sigma_w2 E[phi(u1)^2] + sigma_b2)``
    with ``u1, u2`` of variance ``q`` and correlation ``c`` (Schoenholz et al. 2017); the
    denominator is the next layer's length ``T(q)``, so ``c_map(1) = 1``. Vectorized over
    ``c`` (in [-1, 1]). At ``q = 0`` with ``T(0) = 0`` it is the limit ``q -> 0+``, set by
    the one-sided slopes of phi at 0 (the identity map for smooth phi).
    """
    act = get_activation(activation, **activation_params)
    sw, sb = _weights(sigma_w2, sigma_b2)
    q = _scalar(q, "q")
    ca = as_real_array(c, "c")
    bad = np.abs(ca) > 1.0 + C_SLACK
    if np.any(bad):
        raise ValueError(f"c must be a correlation in [-1, 1], got {first_bad(ca, bad)}")
    out = _c_map(act, np.clip(ca, -1.0, 1.0).ravel(), q, sw, sb).reshape(ca.shape)
    return out[()] if out.ndim == 0 else out


def _c_map(act: Activation, c: np.ndarray, q: float, sw: float, sb: float) -> np.ndarray:
    s = np.full(c.shape, math.sqrt(q))
    m = np.zeros_like(c)
    length = float(_length(act, np.asarray(q), sw, sb))
    if length == 0.0:
        # q -> 0+: phi ~ a x_+ - b x_- near 0, the map of that piecewise-linear unit
        a, b = act.derivative(np.array([1e-300, -1e-300]))
        theta = np.arctan2(np.sqrt((1 - c) * (1 + c)), c)
        k_pos = (np.sin(theta) + (math.pi - theta) * c) / (2 * math.pi)
        k_neg = (np.sin(theta) - theta * c) / (2 * math.pi)
        denom = 0.5 * (a * a + b * b)
        if denom == 0.0:
            return c.copy()
        return ((a * a + b * b) * k_pos - 2 * a * b * k_neg) / denom
    pp, _ = cross_expect(act, s, s, c, m)
    return (sw * pp + sb) / length


def correlation_fixed_point(activation: "str | Activation", sigma_w2: float, sigma_b2: float,
                            *, q: float | None = None, c0: float = 0.0, q0: float = 1.0,
                            tol: float = 1e-12, **activation_params: Any) -> float:
    """The correlation ``c*`` the correlation map reaches from ``c0`` at length ``q``.

    ``q`` defaults to the length fixed point ``q*`` reached from ``q0`` (``nan`` is
    returned when that diverges). ``c = 1`` is always a fixed point, stable iff ``chi_1 <= 1``
    (ordered phase); in the chaotic phase (``chi_1 > 1``) the map from ``c0 < 1``
    settles at a ``c* < 1``. Found like :func:`fixed_point`: the first root of
    ``c_map(c) = c`` from ``c0`` in the direction of motion, then Brent's method.
    """
    act = get_activation(activation, **activation_params)
    sw, sb = _weights(sigma_w2, sigma_b2)
    c0 = _scalar(c0, "c0", nonnegative=False)
    if abs(c0) > 1:
        raise ValueError(f"c0 must be a correlation in [-1, 1], got {c0!r}")
    if q is None:
        q = _fixed_point(act, sw, sb, _scalar(q0, "q0"), 1e-12, 500)
        if math.isinf(q):
            return math.nan
    else:
        q = _scalar(q, "q")
    return _c_fixed_point(act, q, sw, sb, c0, _scalar(tol, "tol"))


def _c_fixed_point(act: Activation, q: float, sw: float, sb: float, c0: float,
                   tol: float) -> float:
    def G(c: np.ndarray) -> np.ndarray:
        return _c_map(act, np.atleast_1d(c), q, sw, sb) - c

    g0 = float(G(np.array([c0]))[0])
    if abs(g0) <= _G_NOISE or c0 == 1.0:
        return c0
    end = 1.0 if g0 > 0 else -1.0
    # 16 even steps toward the end, then geometric steps into the last one
    grid = np.concatenate([c0 + (end - c0) * np.arange(1, 16) / 16,
                           end - (end - c0) / 16 * 2.0 ** -np.arange(1, 48)])
    prev = c0
    for chunk in np.array_split(grid, 8):
        g = G(chunk)
        hit = np.flatnonzero(g <= -_G_NOISE if end > 0 else g >= _G_NOISE)
        if hit.size:
            b = float(chunk[hit[0]])
            a = float(chunk[hit[0] - 1]) if hit[0] > 0 else prev
            ga, gb = float(G(np.array([a]))[0]), float(G(np.array([b]))[0])
            if (ga > 0) == (gb > 0):  # an end inside the rounding band is the root
                return a if abs(ga) <= abs(gb) else b
            return float(optimize.brentq(lambda c: float(G(np.array([c]))[0]), min(a, b),
                                         max(a, b), xtol=1e-15, rtol=max(tol, 1e-15)))
        prev = float(chunk[-1])
    return end


def depth_scales(activation: "str | Activation", sigma_w2: float, sigma_b2: float, *,
                 q0: float = 1.0, **activation_params: Any) -> DepthScales:
    """``(xi_q, xi_c)``: the depth scales of Schoenholz et al. 2017 (docs/theory.md section 4).

    ``xi_q = -1 / log(chi_1 + sigma_w2 E[phi''(sqrt(q*) z) phi(sqrt(q*) z)])`` (the slope
    of the length map at q*), ``xi_c = -1 / log(sigma_w2 E[phi'(u1*) phi'(u2*)])`` at the
    stable correlation c* (ordered phase, ``chi_1 <= 1``: ``c* = 1`` and
    ``xi_c = -1 / log chi_1``). Either is ``inf`` where its slope is 1 (``xi_c`` at the
    edge of chaos) and 0 where it is 0. Both are ``nan`` when the length map diverges
    (``fixed_point`` is ``inf``): the signal never settles, so there is no scale.
    Networks are trainable up to depths of about ``6 xi_c``. ``q*`` is the fixed point
    reached from ``q0``.
    """
    act = get_activation(activation, **activation_params)
    sw, sb = _weights(sigma_w2, sigma_b2)
    qs = _fixed_point(act, sw, sb, _scalar(q0, "q0"), 1e-12, 500)
    if math.isinf(qs):
        return DepthScales(math.nan, math.nan)
    e = expect(act, ("dphi2", "d2phi_phi"), np.zeros(1), np.array([math.sqrt(qs)]))
    ch1 = sw * float(e["dphi2"][0])
    slope_q = ch1 + sw * float(e["d2phi_phi"][0])
    if ch1 <= 1.0:
        chi_c = ch1
    else:
        cs = _c_fixed_point(act, qs, sw, sb, 0.0, 1e-12)
        s = np.array([math.sqrt(qs)])
        _, dd = cross_expect(act, s, s, np.array([cs]), np.zeros(1))
        chi_c = sw * float(dd[0])
    return DepthScales(depth_scale(slope_q), depth_scale(chi_c))


def depth_scale(slope: Any) -> Any:
    """``-1 / log(slope)`` (Schoenholz et al. 2017), elementwise: inf where the slope is
    >= 1, 0 where it is <= 0, NaN for NaN."""
    s = np.asarray(slope, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        xi = np.where(s >= 1.0, math.inf, np.where(s <= 0.0, 0.0, -1.0 / np.log(s)))
    return float(xi) if xi.ndim == 0 else xi
