"""Criticality in the mean field: the edge of chaos (``chi_1 = 1`` at the fixed point of
the length map) and the mean squared singular value of the input-output Jacobian,
``chi_1 ** depth`` (Pennington et al. 2017, arXiv 1711.04735; docs/theory.md, section 4).
Built on the maps and fixed points of :mod:`.meanfield`.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np
from scipy import optimize

from ..activations import Activation, get_activation
from .gaussian import expect
from .meanfield import _fixed_point, _scalar, _tail_dphi2, _weights, chi1

__all__ = ["edge_of_chaos", "NoEdgeOfChaosError", "jacobian_msv"]

# Points searched for a finite-q* bracket inside a doubling step of edge_of_chaos.
_EDGE_GRID = 17


class NoEdgeOfChaosError(ValueError):
    """No ``sigma_w2`` gives ``chi_1 = 1`` at a finite fixed point ``q*``."""


def edge_of_chaos(activation: "str | Activation", sigma_b2: float = 0.0, *, q0: float = 1.0,
                  **activation_params: Any) -> float:
    """The weight variance ``sigma_w2`` at which ``chi_1 = 1`` at the fixed point q*.

    ``chi_1(sigma_w2)`` (at the q* reached from ``q0``) is bracketed by doubling/halving
    ``sigma_w2`` from 1, the bracket narrowed on a grid to ends with finite q* (where q*
    diverges chi_1 is only a limit), and the crossing located by Brent's method. For
    ``sigma_b2 = 0`` and a smooth phi with ``phi(0) = 0`` the edge is ``1 / phi'(0)^2``
    with ``q* = 0`` (tanh: 1). Schoenholz et al. 2017 (fig. 1): tanh with
    ``sigma_b2 = 0.05`` has its edge at ``sigma_w2 = 1.76095...``.

    Example:
        >>> round(edge_of_chaos("tanh", 0.05), 6)
        1.760955

    Raises:
        NoEdgeOfChaosError (a ValueError): no finite-``q*`` edge exists. For linear,
        relu and leaky_relu(s), ``chi_1 = sigma_w2 (1 + s^2) / 2`` does not depend on q:
        with ``sigma_b2 = 0`` the edge is ``2 / (1 + s^2)`` (He initialization, every q a
        fixed point); with ``sigma_b2 > 0`` the only candidate ``2 / (1 + s^2)`` makes the
        length map ``q -> q + sigma_b2``, which has no fixed point (q grows linearly in
        depth), so there is no edge of chaos. Likewise when ``chi_1`` jumps across 1
        because q* jumps (e.g. from 0 to inf), or never reaches 1.
    """
    act = get_activation(activation, **activation_params)
    sb = _scalar(sigma_b2, "sigma_b2")
    q0 = _scalar(q0, "q0")
    if act.piecewise_linear:  # chi_1 = sigma_w2 (phi'(0-)^2 + phi'(0+)^2) / 2 for every q
        edge = 1.0 / _tail_dphi2(act)
        if sb == 0.0:
            return edge
        raise NoEdgeOfChaosError(
            f"{act.name} has no edge of chaos with sigma_b2 = {sb!r} > 0: chi_1 = "
            f"sigma_w2 * {1 / edge:g} does not depend on q and equals 1 only at sigma_w2 = "
            f"{edge:g}, where the length map q -> q + sigma_b2 has no fixed point (q* = inf, "
            "q grows linearly with depth). Use sigma_b2 = 0 for the critical "
            f"initialization sigma_w2 = {edge:g}.")

    @functools.lru_cache(maxsize=None)
    def state(sw: float) -> tuple[float, bool]:  # (chi_1, q* finite)
        qs = _fixed_point(act, sw, sb, q0, 1e-13, 500)
        if math.isinf(qs):
            return sw * _tail_dphi2(act), False
        e = expect(act, ("dphi2",), np.zeros(1), np.array([math.sqrt(qs)]))["dphi2"][0]
        return sw * float(e), True

    def below(sw: float) -> bool:  # a valid lower end: finite q*, chi_1 < 1
        c, finite = state(sw)
        return finite and c < 1.0

    def above(sw: float) -> bool:  # a valid upper end: finite q*, chi_1 > 1
        c, finite = state(sw)
        return finite and c > 1.0

    if state(1.0) == (1.0, True):
        return 1.0
    # Walk from 1 by doubling (halving) until chi_1 is past 1; an end where q* diverges is
    # no bracket (its chi_1 is a limit), so look inside for one with finite q*.
    up = state(1.0)[0] < 1.0
    lo = hi = 1.0
    for _ in range(60):
        lo, hi = (hi, 2.0 * hi) if up else (0.5 * lo, lo)
        if (state(hi)[0] >= 1.0) if up else (state(lo)[0] < 1.0):
            break
    else:
        raise NoEdgeOfChaosError(
            f"{act.name} with sigma_b2 = {sb!r}: chi_1 at the fixed point does not cross 1 "
            f"for sigma_w2 in [2^-60, 2^60]")
    grid = lo * (hi / lo) ** np.linspace(0.0, 1.0, _EDGE_GRID)
    lows = [w for w in grid if below(w)]
    highs = [w for w in grid if above(w) and (not lows or w > lows[0])]
    if not lows or not highs:
        raise NoEdgeOfChaosError(
            f"{act.name} with sigma_b2 = {sb!r} has no edge of chaos with a finite fixed "
            f"point: between sigma_w2 = {lo:.4g} and {hi:.4g} chi_1 reaches 1 only where "
            f"the length map diverges (q* = inf), i.e. never at a finite q*.")
    hi = highs[0]
    lo = max(w for w in lows if w < hi)
    root = optimize.brentq(lambda sw: state(sw)[0] - 1.0, lo, hi, xtol=1e-300, rtol=1e-14)
    c_root, finite = state(root)
    if not finite or abs(c_root - 1.0) > 1e-6:
        raise NoEdgeOfChaosError(
            f"{act.name} with sigma_b2 = {sb!r} has no edge of chaos with a finite fixed "
            f"point: chi_1 jumps from {state(lo)[0]:.4g} to {state(hi)[0]:.4g} near sigma_w2 "
            f"= {root:.10g} because the fixed point q* reached from q0 = {q0:g} jumps "
            "there.")
    return float(root)


def jacobian_msv(activation: "str | Activation", sigma_w2: float, sigma_b2: float,
                 depth: int, *, q0: float | None = None, **activation_params: Any) -> float:
    """Mean squared singular value of the input-output Jacobian of ``depth`` layers.

    ``E[tr(J J^T)] / n = prod_l sigma_w2 E[phi'(sqrt(q_l) z)^2]`` (Pennington et al. 2017,
    arXiv 1711.04735). With ``q0=None`` every layer sits at the fixed point:
    ``chi_1 ** depth``. With ``q0`` the first layer's pre-activations have second moment
    ``q0`` and ``q_{l+1} = T(q_l)`` (a network not started at its fixed point).
    """
    act = get_activation(activation, **activation_params)
    sw, sb = _weights(sigma_w2, sigma_b2)
    if isinstance(depth, (bool, np.bool_)) or not isinstance(depth, (int, np.integer)):
        raise TypeError(f"depth must be an integer, got {type(depth).__name__}")
    if depth < 0:
        raise ValueError(f"depth must be >= 0, got {depth}")
    if q0 is None:
        return float(chi1(act, sw, sb)) ** int(depth)
    q = _scalar(q0, "q0")
    log_total = 0.0
    for _ in range(int(depth)):
        e = expect(act, ("phi2", "dphi2"), np.zeros(1), np.array([math.sqrt(q)]))
        factor = sw * float(e["dphi2"][0])
        if factor == 0.0:
            return 0.0
        log_total += math.log(factor)
        q = sw * float(e["phi2"][0]) + sb
        if not math.isfinite(q):
            raise ValueError(f"the length map overflows float64 before depth {depth} "
                             f"(q0 = {q0!r}, sigma_w2 = {sw!r})")
    return math.exp(log_total)
