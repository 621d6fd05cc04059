"""Gaussian moments of an activation where the mean or the variance is infinite.

An exploding network overflows float64: its pre-activation variance (or mean) becomes
``inf``. The analyzer carries such values on (docs/theory.md, section 10) and needs
``(E[phi], E[phi^2], E[phi'^2], Var[phi])`` there, the limits of the finite moments.
Every registry activation has linear asymptotes ``phi(x) ~ a+ x`` (``x -> +inf``) and
``a- x`` (``x -> -inf``), or a bound ``phi(+-inf)`` where ``a+-`` is 0, so:

* ``q -> inf`` at a finite mean (``x = sqrt(q) Z``, half the mass on each side):
  ``E[phi'^2] -> (a-^2 + a+^2) / 2`` (relu 1/2, linear 1, leaky_relu (1 + s^2)/2,
  gelu, silu, softplus, elu 1/2, selu lambda^2/2; tanh, sigmoid, softsign 0, the
  ``chi_1 / sigma_w^2`` of Schoenholz et al. 2017 at ``q* = inf``);
  ``E[phi^2] -> inf`` unless both slopes are 0, when it is ``(phi(-inf)^2 +
  phi(inf)^2) / 2`` (tanh and softsign 1, sigmoid 1/2); ``E[phi] -> +inf`` where
  ``a+ > a-``, the mean itself for ``linear``, ``(phi(-inf) + phi(inf)) / 2`` for the
  bounded ones.
* ``|mean| -> inf`` (at any variance, an infinite one included: the two overflowed
  together and their ratio is lost, so the mean is taken to dominate): every moment is
  that of the point ``phi(+-inf)``, with ``E[phi'^2] = a+-^2`` and ``Var[phi] =
  a+-^2 q`` (phi is linear there).

The bounds and slopes are read from the activation itself at ``+-inf`` (the registry's
functions are exact there).
"""

from __future__ import annotations

import math

import numpy as np

from ..activations import Activation

__all__ = ["limit_moments", "asymptotes"]

_CACHE: dict[tuple, tuple[float, float, float, float]] = {}


def asymptotes(act: Activation) -> tuple[float, float, float, float]:
    """``(phi(-inf), phi(inf), phi'(-inf), phi'(inf))`` of a registry activation."""
    key = (act.name, tuple(sorted(act.params.items())))
    out = _CACHE.get(key)
    if out is None:
        x = np.array([-math.inf, math.inf])
        lo, hi = (float(v) for v in act(x))
        d_lo, d_hi = (float(v) for v in act.derivative(x))
        out = _CACHE[key] = (lo, hi, d_lo, d_hi)
    return out


def limit_moments(act: Activation, mean: float, var: float) -> tuple[float, float, float, float]:
    """``(e_phi, e_phi2, e_dphi2, var_phi)`` of ``phi(x)``, ``x ~ N(mean, var)``, where
    ``mean`` is +-inf or ``var`` is +inf (module doc); never NaN.

    Example:
        >>> from varprop.activations import get_activation
        >>> limit_moments(get_activation("relu"), 0.0, math.inf)
        (inf, inf, 0.5, inf)
    """
    lo, hi, d_lo, d_hi = asymptotes(act)
    if math.isinf(mean):  # a point at +-inf
        value, slope = (hi, d_hi) if mean > 0 else (lo, d_lo)
        spread = 0.0 if slope == 0.0 or var == 0.0 else slope * slope * var
        return value, value * value, slope * slope, spread
    if not math.isinf(var):
        raise ValueError(f"limit_moments: mean or var must be infinite, got {mean}, {var}")
    e_dphi2 = 0.5 * (d_lo * d_lo + d_hi * d_hi)
    if d_lo == 0.0 and d_hi == 0.0:  # bounded: half the mass at each bound
        half = 0.5 * (hi - lo)
        return 0.5 * (lo + hi), 0.5 * (lo * lo + hi * hi), 0.0, half * half
    if d_hi > d_lo:
        e_phi = math.inf
    elif d_hi < d_lo:
        e_phi = -math.inf
    else:  # the same slope on both sides (linear): phi(mean + s Z) averages to phi(mean)
        e_phi = float(act(np.array([mean]))[0])
    return e_phi, math.inf, e_dphi2, math.inf
