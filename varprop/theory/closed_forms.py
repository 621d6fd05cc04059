"""Closed-form Gaussian expectations (docs/theory.md section 5, extended to a non-zero mean).

All functions take flat float64 arrays ``m`` (mean), ``s > 0`` (standard deviation) and
``q = s^2`` of ``x ~ N(m, q)`` and return a dict ``kind -> array`` for the kinds they know:

========== =====================
kind       expectation
========== =====================
phi        E[phi(x)]
phi2       E[phi(x)^2]
dphi       E[phi'(x)]
dphi2      E[phi'(x)^2]
d2phi_phi  E[phi''(x) phi(x)]
var        Var[phi(x)]
========== =====================

Kinds a family does not return, and rows it marks ill-conditioned with NaN, are left to
the quadrature of :mod:`varprop.theory.quadrature`.

The building blocks, with ``a = m / s`` and ``Z ~ N(0, 1)``:

* ``I_n(a) = E[(Z + a)_+^n]`` (so ``E[x_+^n] = s^n I_n(a)``): ``I_0 = Phi(a)``,
  ``I_1 = phi(a) + a Phi(a)``, ``I_2 = (1 + a^2) Phi(a) + a phi(a)``. For ``a < -1.5`` these
  cancel (``I_2 ~ 2 phi(a) / |a|^3``), so there they come from the repeated integrals of
  erfc, ``I_n(a) = 2^(n/2) n! / 2 * i^n erfc(-a / sqrt 2)``, whose ratios are a continued
  fraction (backward recurrence of ``2 (n+1) i^(n+1) = i^(n-1) - 2 x i^n``; Abramowitz &
  Stegun 7.2.5).
* ``E[e^(k x) 1{x < 0}] = e^(k m + k^2 s^2 / 2) Phi(-a - k s)``, written as
  ``e^(-a^2/2) erfcx((a + k s) / sqrt 2) / 2`` when ``a + k s >= 0`` so that nothing
  overflows (docs/theory.md's erfcx advice, generalized to a mean).
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
from scipy import special

from ..activations import SELU_ALPHA, SELU_SCALE, Activation

__all__ = ["ramp_moments", "exp_neg_moment", "closed_form"]

_SQRT2 = math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
# Below this a, I_1 and I_2 come from the continued fraction (the direct I_2 loses a
# factor 9 to cancellation at a = -1.5, 20 at -2, ~a^4 / 2 beyond).
_RAMP_CF_BELOW = -1.5
# Terms of the backward recurrence: measured against mpmath, 200 terms reach 5e-16 at
# a = -1.5 (100 terms: 1e-11) and the convergence only improves as a decreases.
_RAMP_CF_TERMS = 200
# ELU's negative part E[(e^x - 1)^2 1{x<0}] cancels like 1 / (m^2 + s^2) near x = 0: below
# this second moment the quadrature (which has no cancellation) takes over.
_ELU_CLOSED_MIN_M2 = 0.04

Dict = dict[str, np.ndarray]


def _gauss_exp(a: np.ndarray) -> np.ndarray:
    """``exp(-a^2 / 2)`` to full relative precision even for |a| ~ 38.

    ``a * a`` is rounded, an absolute error of ``eps a^2`` in the exponent (1e-13 at
    a = 35); with ``a = hi + lo``, hi of 26 bits, ``hi^2`` is exact. Beyond |a| = 39 it
    is 0: a is clipped at 50 first, so that ``a * 2^20`` cannot overflow.
    """
    a = np.clip(a, -50.0, 50.0)
    hi = np.round(a * 2.0**20) * 2.0**-20
    lo = a - hi
    return np.exp(-0.5 * hi * hi) * np.exp(-0.5 * lo * (2.0 * hi + lo))


def _pdf(x: np.ndarray) -> np.ndarray:
    return _INV_SQRT_2PI * _gauss_exp(x)


def _ndtr(x: np.ndarray) -> np.ndarray:
    """Phi(x), relatively accurate in the lower tail (scipy's ndtr loses ~eps x^2 there)."""
    x = np.asarray(x, dtype=np.float64)
    low = x < -3.0
    return np.where(low, 0.5 * _gauss_exp(x) * special.erfcx(-np.minimum(x, 0.0) / _SQRT2),
                    special.ndtr(x))


def ramp_moments(a: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(I_0, I_1, I_2)`` with ``I_n(a) = E[(Z + a)_+^n]``, accurate for every a."""
    a = np.asarray(a, dtype=np.float64)
    i0 = _ndtr(a)
    pdf = _pdf(a)
    i1 = pdf + a * i0
    i2 = (1.0 + a * a) * i0 + a * pdf
    tail = a < _RAMP_CF_BELOW
    if np.any(tail):
        x = -a[tail] / _SQRT2
        r = np.zeros_like(x)
        r1 = r2 = r
        for n in range(_RAMP_CF_TERMS, 0, -1):  # r_n = i^n erfc / i^(n-1) erfc
            r = 1.0 / (2.0 * x + 2.0 * (n + 1) * r)
            if n == 2:
                r2 = r
        r1 = r
        erfc = _gauss_exp(a[tail]) * special.erfcx(x)
        j1 = r1 * erfc
        i1[tail] = j1 / _SQRT2
        i2[tail] = 2.0 * r2 * j1
        i0[tail] = 0.5 * erfc
    return i0, i1, i2


def exp_neg_moment(a: np.ndarray, s: np.ndarray, k: float) -> np.ndarray:
    """``E[e^(k x) 1{x < 0}]`` for ``x = s (a + Z)``, ``k > 0``, without overflow."""
    u = a + k * s
    out = np.empty_like(u)
    pos = u >= 0
    up, ap = u[pos], a[pos]
    out[pos] = 0.5 * _gauss_exp(ap) * special.erfcx(up / _SQRT2)
    un, an, sn = u[~pos], a[~pos], s[~pos]
    out[~pos] = np.exp(k * sn * (an + 0.5 * k * sn)) * _ndtr(-un)
    return out


# ----------------------------------------------------------------------------- families


def _linear(act: Activation, m, s, q, kinds) -> Dict:
    one = np.ones_like(m)
    table = {"phi": lambda: m.copy(), "phi2": lambda: m * m + q, "dphi": lambda: one,
             "dphi2": lambda: one, "d2phi_phi": lambda: np.zeros_like(m),
             "var": lambda: q.copy()}
    return {k: table[k]() for k in kinds}


def _leaky(act: Activation, m, s, q, kinds) -> Dict:
    """relu / leaky_relu(sl): phi = sl x + (1 - sl) x_+ (He et al. 2015 for sl = 0)."""
    sl = act.params.get("negative_slope", 0.0)
    a = m / s
    i0, i1, i2 = ramp_moments(a)
    out: Dict = {}
    if "phi" in kinds:
        out["phi"] = sl * m + (1.0 - sl) * s * i1
    if "phi2" in kinds:
        out["phi2"] = _slope_part(sl, m, q) + (1.0 - sl * sl) * q * i2
    if "dphi" in kinds:
        out["dphi"] = sl + (1.0 - sl) * i0
    if "dphi2" in kinds:
        out["dphi2"] = sl * sl + (1.0 - sl * sl) * i0
    if "d2phi_phi" in kinds:
        out["d2phi_phi"] = np.zeros_like(m)
    if "var" in kinds:
        # a < 0: Var[sl x + (1-sl) x_+]; a >= 0: Var[x + (1-sl) (-x)_+]; every term is
        # then a sum of positives or a small tail, never a difference of large numbers.
        j0, j1, j2 = ramp_moments(-a)
        b = 1.0 - sl
        neg = sl * sl + 2.0 * sl * b * (i2 - a * i1) + b * b * (i2 - i1 * i1)
        pos = 1.0 - 2.0 * b * (j2 + a * j1) + b * b * (j2 - j1 * j1)
        out["var"] = q * np.where(a < 0, neg, pos)
    return out


def _slope_part(sl: float, m: np.ndarray, q: np.ndarray) -> np.ndarray:
    """``sl^2 (m^2 + q)`` (0 for relu, where m^2 may be inf), as ``(sl m)^2 + sl^2 q``
    where ``m^2`` overflows but the product need not."""
    if sl == 0.0:
        return np.zeros_like(m)
    with np.errstate(over="ignore"):
        part = sl * sl * (m * m + q)
        return np.where(np.isfinite(part), part, (sl * m) * (sl * m) + sl * sl * q)


def _elu(act: Activation, m, s, q, kinds) -> Dict:
    """elu(alpha) and selu = SELU_SCALE * elu(SELU_ALPHA) (Clevert et al. 2015)."""
    if act.name == "selu":
        alpha, lam = SELU_ALPHA, SELU_SCALE
    else:
        alpha, lam = act.params["alpha"], 1.0
    a = m / s
    i0, i1, i2 = ramp_moments(a)
    e1 = exp_neg_moment(a, s, 1.0)
    out: Dict = {}
    if "phi" in kinds or "var" in kinds:
        phi = lam * (s * i1 + alpha * (e1 - _ndtr(-a)))
        if "phi" in kinds:
            out["phi"] = phi
    if "dphi" in kinds:
        out["dphi"] = lam * (i0 + alpha * e1)
    if {"phi2", "dphi2", "d2phi_phi", "var"} & set(kinds):
        e2 = exp_neg_moment(a, s, 2.0)
        phi2 = lam * lam * (q * i2 + alpha * alpha * (e2 - 2.0 * e1 + _ndtr(-a)))
        if "phi2" in kinds:
            out["phi2"] = phi2
        if "dphi2" in kinds:
            out["dphi2"] = lam * lam * (i0 + alpha * alpha * e2)
        if "d2phi_phi" in kinds:
            out["d2phi_phi"] = lam * lam * alpha * alpha * (e2 - e1)
        if "var" in kinds:
            # E[phi^2] - E[phi]^2 cancels once |a| > 1 (x mostly on one branch): there
            # the quadrature of (phi - phi(m))^2 takes over
            with np.errstate(invalid="ignore"):  # inf - inf there: rows left to quadrature
                out["var"] = np.where(np.abs(a) <= 1.0, phi2 - phi * phi, np.nan)
    bad = m * m + q < _ELU_CLOSED_MIN_M2
    if np.any(bad):
        for v in out.values():
            v[bad] = np.nan
    return out


def _gelu(act: Activation, m, s, q, kinds) -> Dict:
    """gelu = x Phi(x) (Hendrycks & Gimpel 2016). Mean-aware E[phi], E[phi'] (Stein's
    lemma); E[phi^2], E[phi'^2] of docs/theory.md section 5 at mean 0 only."""
    v = 1.0 + q
    r = np.sqrt(v)
    b = m / r
    out: Dict = {}
    if "phi" in kinds:
        out["phi"] = m * _ndtr(b) + q * _pdf(b) / r
    if "dphi" in kinds:
        out["dphi"] = _ndtr(b) + m * _pdf(b) / (r * v)
    centred = not np.any(m)
    if centred and {"phi2", "dphi2", "var"} & set(kinds):
        # written with ratios q / (1 + q) < 1 and q / (1 + 2q) < 1/2 so that nothing
        # overflows for any finite q (q^2 and (1 + 2q)^(3/2) would beyond 1e154), and
        # arcsin(q / (1 + q)) as arctan(q / sqrt(1 + 2q)): the same angle, but arcsin is
        # ill-conditioned next to 1 (an ulp of q / (1 + q) cost ~1e-8 relative at q = 1e15).
        # 1 + 2q itself overflows beyond q = 9e307: it is 2h, h = q + 1/2 (the same
        # floats, since doubling commutes with rounding), and sqrt(2h) = sqrt(2) sqrt(h)
        h = q + 0.5
        root = np.where(h < 8e307, np.sqrt(2.0 * np.minimum(h, 8e307)), _SQRT2 * np.sqrt(h))
        ratio = q / v
        asin = np.arctan2(q, root)
        cross = ratio / (math.pi * root)
        if "phi2" in kinds or "var" in kinds:
            with np.errstate(over="ignore"):  # q asin overflows beyond q = 1.1e308
                arc = np.where(q < 1e308, q * asin / (2.0 * math.pi), q * (asin / (2.0 * math.pi)))
            phi2 = 0.25 * q + q * cross + arc
            if "phi2" in kinds:
                out["phi2"] = phi2
            if "var" in kinds:  # E[phi]^2 = q^2 / (2 pi (1+q)) <= E[phi^2] / pi
                out["var"] = phi2 - q * ratio / (2.0 * math.pi)
        if "dphi2" in kinds:
            out["dphi2"] = (0.25 + asin / (2.0 * math.pi) + cross
                            + 0.5 * (q / h) / (2.0 * math.pi * root))
    return out


_FAMILIES: dict[str, Callable[..., Dict]] = {
    "linear": _linear,
    "relu": _leaky,
    "leaky_relu": _leaky,
    "elu": _elu,
    "selu": _elu,
    "gelu": _gelu,
}


def closed_form(act: Activation, m: np.ndarray, s: np.ndarray, kinds: tuple[str, ...],
                q: np.ndarray | None = None) -> Dict:
    """Closed-form kinds for ``act`` (possibly none); NaN marks rows left to quadrature.

    ``q`` is the variance ``s^2`` when the caller has it exactly (``sqrt(q)^2 != q`` in
    float64, and He-initialized relu should map q to exactly q).
    """
    family = _FAMILIES.get(act.name)
    if family is None:
        return {}
    return family(act, m, s, s * s if q is None else q, kinds)
