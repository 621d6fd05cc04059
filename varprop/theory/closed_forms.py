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

Each family is written once (:data:`FAMILIES`, named by the activation's record,
:attr:`varprop.activations.Activation.closed_form`) and evaluated on arrays here and on
Python floats by the scalar path of :mod:`.fast` (:func:`scalar_closed_form`).

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
from typing import Any, Callable

import numpy as np
from scipy import special

from ..activations import Activation

__all__ = ["ramp_moments", "exp_neg_moment", "closed_form", "scalar_closed_form",
           "scalar_evaluator", "FAMILIES"]

_SQRT2 = math.sqrt(2.0)
_PI, _TWO_PI = math.pi, 2.0 * math.pi
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


# ----------------------------------------------------------------------------- evaluators
# Each family below is written once, on an evaluator ``ops``: ``_ARRAYS`` runs it on flat
# float64 arrays at any mean (the vectorized path of .gaussian), ``_FLOATS`` on Python
# floats at mean 0, a = m / s = 0 (the scalar path of .fast, a few microseconds a call),
# where the building blocks are I_0 = Phi(0) = 1/2, I_1 = pdf(0), I_2 = 1/2 and
# E[e^(k x) 1{x < 0}] = erfcx(k s / sqrt 2) / 2, the same numbers _ARRAYS gets at a = 0.


class _Arrays:
    scalar = False
    sqrt, atan2, where = np.sqrt, np.arctan2, np.where
    ndtr, pdf, ramp = staticmethod(_ndtr), staticmethod(_pdf), staticmethod(ramp_moments)
    exp_neg = staticmethod(exp_neg_moment)

    @staticmethod
    def full(like: np.ndarray, value: float) -> np.ndarray:
        return np.full_like(like, value)

    @staticmethod
    def copy(x: np.ndarray) -> np.ndarray:
        return x.copy()

    @staticmethod
    def sqrt_2x(h: np.ndarray) -> np.ndarray:  # sqrt(2 h); 2 h overflows beyond h = 9e307
        return np.where(h < 8e307, np.sqrt(2.0 * np.minimum(h, 8e307)), _SQRT2 * np.sqrt(h))


class _Floats:
    scalar = True
    sqrt, atan2 = math.sqrt, math.atan2

    @staticmethod
    def where(cond: bool, x: float, y: float) -> float:
        return x if cond else y

    # the building blocks at a = 0 only (scalar_closed_form has returned None elsewhere)
    @staticmethod
    def ndtr(x: float) -> float:
        return 0.5

    @staticmethod
    def pdf(x: float) -> float:
        return _INV_SQRT_2PI

    @staticmethod
    def ramp(a: float) -> tuple[float, float, float]:
        return 0.5, _INV_SQRT_2PI, 0.5

    @staticmethod
    def exp_neg(a: float, s: float, k: float) -> float:
        return 0.5 * float(special.erfcx((a + k * s) / _SQRT2))

    @staticmethod
    def full(like: float, value: float) -> float:
        return value

    @staticmethod
    def copy(x: float) -> float:
        return x + 0.0  # -0.0 -> 0.0

    @staticmethod
    def sqrt_2x(h: float) -> float:
        return math.sqrt(2.0 * h) if h < 8e307 else _SQRT2 * math.sqrt(h)


# ----------------------------------------------------------------------------- families


def _linear(p, m, s, q, kinds, ops) -> Dict:
    out: Dict = {}
    for k in kinds:
        if k == "phi":
            out[k] = ops.copy(m)
        elif k == "phi2":
            out[k] = m * m + q
        elif k == "var":
            out[k] = ops.copy(q)
        else:  # phi' = 1, phi'' = 0
            out[k] = ops.full(m, 0.0 if k == "d2phi_phi" else 1.0)
    return out


def _leaky(p, m, s, q, kinds, ops) -> Dict:
    """relu / leaky_relu(sl): phi = sl x + (1 - sl) x_+ (He et al. 2015 for sl = 0)."""
    sl = p["negative_slope"]
    a = m / s
    i0, i1, i2 = ops.ramp(a)
    out: Dict = {}
    if "phi" in kinds:
        out["phi"] = sl * m + (1.0 - sl) * s * i1
    if "phi2" in kinds:
        out["phi2"] = _slope_part(sl, m, q, ops) + (1.0 - sl * sl) * q * i2
    if "dphi" in kinds:
        out["dphi"] = sl + (1.0 - sl) * i0
    if "dphi2" in kinds:
        out["dphi2"] = sl * sl + (1.0 - sl * sl) * i0
    if "d2phi_phi" in kinds:
        out["d2phi_phi"] = ops.full(m, 0.0)
    if "var" in kinds:
        # a < 0: Var[sl x + (1-sl) x_+]; a >= 0: Var[x + (1-sl) (-x)_+]; every term is
        # then a sum of positives or a small tail, never a difference of large numbers.
        j0, j1, j2 = ops.ramp(-a)
        b = 1.0 - sl
        neg = sl * sl + 2.0 * sl * b * (i2 - a * i1) + b * b * (i2 - i1 * i1)
        pos = 1.0 - 2.0 * b * (j2 + a * j1) + b * b * (j2 - j1 * j1)
        out["var"] = q * ops.where(a < 0, neg, pos)
    return out


def _slope_part(sl: float, m, q, ops):
    """``sl^2 (m^2 + q)`` (0 for relu, where m^2 may be inf), as ``(sl m)^2 + sl^2 q``
    where ``m^2`` overflows but the product need not."""
    if sl == 0.0:
        return ops.full(m, 0.0)
    part = sl * sl * (m * m + q)
    if ops.scalar:  # m = 0
        return part
    return np.where(np.isfinite(part), part, (sl * m) * (sl * m) + sl * sl * q)


def _elu(p, m, s, q, kinds, ops) -> Dict | None:
    """elu(alpha) and selu = SELU_SCALE * elu(SELU_ALPHA) (Clevert et al. 2015)."""
    alpha, lam = p["alpha"], p["scale"]
    if ops.scalar and m * m + q < _ELU_CLOSED_MIN_M2:
        return None
    a = m / s
    i0, i1, i2 = ops.ramp(a)
    e1 = ops.exp_neg(a, s, 1.0)
    out: Dict = {}
    if not kinds.isdisjoint(("phi", "var")):
        phi = lam * (s * i1 + alpha * (e1 - ops.ndtr(-a)))
        if "phi" in kinds:
            out["phi"] = phi
    if "dphi" in kinds:
        out["dphi"] = lam * (i0 + alpha * e1)
    if not kinds.isdisjoint(("phi2", "dphi2", "d2phi_phi", "var")):
        e2 = ops.exp_neg(a, s, 2.0)
        phi2 = lam * lam * (q * i2 + alpha * alpha * (e2 - 2.0 * e1 + ops.ndtr(-a)))
        if "phi2" in kinds:
            out["phi2"] = phi2
        if "dphi2" in kinds:
            out["dphi2"] = lam * lam * (i0 + alpha * alpha * e2)
        if "d2phi_phi" in kinds:
            out["d2phi_phi"] = lam * lam * alpha * alpha * (e2 - e1)
        if "var" in kinds:
            # E[phi^2] - E[phi]^2 cancels once |a| > 1 (x mostly on one branch): there
            # the quadrature of (phi - phi(m))^2 takes over
            # (inf - inf there: rows left to quadrature)
            out["var"] = ops.where(abs(a) <= 1.0, phi2 - phi * phi, math.nan)
    if not ops.scalar:
        bad = m * m + q < _ELU_CLOSED_MIN_M2
        if np.any(bad):
            for v in out.values():
                v[bad] = np.nan
    return out


def _gelu(p, m, s, q, kinds, ops) -> Dict:
    """gelu = x Phi(x) (Hendrycks & Gimpel 2016). Mean-aware E[phi], E[phi'] (Stein's
    lemma); E[phi^2], E[phi'^2] of docs/theory.md section 5 at mean 0 only."""
    v = 1.0 + q
    r = ops.sqrt(v)
    b = m / r
    out: Dict = {}
    if "phi" in kinds:
        out["phi"] = m * ops.ndtr(b) + q * ops.pdf(b) / r
    if "dphi" in kinds:
        out["dphi"] = ops.ndtr(b) + m * ops.pdf(b) / (r * v)
    if ops.scalar or (not kinds.isdisjoint(("phi2", "dphi2", "var")) and not np.any(m)):
        # written with ratios q / (1 + q) < 1 and q / (1 + 2q) < 1/2 so that nothing
        # overflows for any finite q (q^2 and (1 + 2q)^(3/2) would beyond 1e154), and
        # arcsin(q / (1 + q)) as arctan(q / sqrt(1 + 2q)): the same angle, but arcsin is
        # ill-conditioned next to 1 (an ulp of q / (1 + q) cost ~1e-8 relative at q = 1e15).
        # 1 + 2q itself overflows beyond q = 9e307: it is 2h, h = q + 1/2 (the same
        # floats, since doubling commutes with rounding), and sqrt(2h) = sqrt(2) sqrt(h)
        h = q + 0.5
        root = ops.sqrt_2x(h)
        ratio = q / v
        asin = ops.atan2(q, root)
        cross = ratio / (_PI * root)
        if ops.scalar or not kinds.isdisjoint(("phi2", "var")):  # q asin: inf beyond 1.1e308
            arc = ops.where(q < 1e308, q * asin / _TWO_PI, q * (asin / _TWO_PI))
            phi2 = 0.25 * q + q * cross + arc
            if "phi2" in kinds:
                out["phi2"] = phi2
            if "var" in kinds:  # E[phi]^2 = q^2 / (2 pi (1+q)) <= E[phi^2] / pi
                out["var"] = phi2 - q * ratio / _TWO_PI
        if "dphi2" in kinds:
            out["dphi2"] = (0.25 + asin / _TWO_PI + cross
                            + 0.5 * (q / h) / (_TWO_PI * root))
    return out


#: The families of closed forms, by the name an activation's record gives
#: (:attr:`varprop.activations.Activation.closed_form`).
FAMILIES: dict[str, Callable[..., Dict | None]] = {
    "linear": _linear, "leaky": _leaky, "elu": _elu, "gelu": _gelu}
# the families exact at any mean on the scalar path (the others at mean 0 only)
_ANY_MEAN = frozenset({"linear"})
_SCALAR_KINDS = frozenset({"phi", "phi2", "dphi2", "var"})


def closed_form(act: Activation, m: np.ndarray, s: np.ndarray, kinds: tuple[str, ...],
                q: np.ndarray | None = None) -> Dict:
    """Closed-form kinds for ``act`` (possibly none); NaN marks rows left to quadrature.

    ``q`` is the variance ``s^2`` when the caller has it exactly (``sqrt(q)^2 != q`` in
    float64, and He-initialized relu should map q to exactly q).
    """
    family = act.closed_form
    if family is None:
        return {}
    # (overflows to inf and inf - inf are expected: guarded, or rows left to quadrature)
    with np.errstate(over="ignore", invalid="ignore"):
        return FAMILIES[family](act.formula_params, m, s, s * s if q is None else q,
                                frozenset(kinds), _Arrays)


def scalar_closed_form(family: str, params: dict[str, float], m: float,
                       q: float) -> tuple[float, float, float, float] | None:
    """``(E[phi], E[phi^2], E[phi'^2], Var[phi])`` of ``phi(x)``, ``x ~ N(m, q)``, ``q > 0``,
    as Python floats, from the same family as :func:`closed_form` (its numbers at one
    point), or None where the vectorized path would not use it: ``m != 0`` (except for
    linear) or elu below ``m^2 + q = 0.04``.
    ``params`` are the activation's formula parameters."""
    return scalar_evaluator(family, params)(m, q)


def scalar_evaluator(family: str, params: dict[str, float]) -> Callable[[float, float], Any]:
    """:func:`scalar_closed_form` with the family and parameters bound (what
    :class:`~varprop.theory.fast.ScalarMoments` calls once per layer)."""
    fn, any_mean = FAMILIES[family], family in _ANY_MEAN
    kinds, ops, sqrt = _SCALAR_KINDS, _Floats, math.sqrt

    def evaluate(m: float, q: float) -> tuple[float, float, float, float] | None:
        if m != 0.0 and not any_mean:
            return None
        out = fn(params, m, sqrt(q), q, kinds, ops)
        return None if out is None else (out["phi"], out["phi2"], out["dphi2"], out["var"])

    return evaluate
