"""A lean scalar path to the Gaussian moments that the analytic recursion asks for per layer.

:func:`~varprop.theory.gaussian_moments` is vectorized and general: each call validates,
broadcasts, groups rows by refinement depth and builds dictionaries, 100-400 us whatever
the size. :func:`varprop.analyze` needs one ``(mean, var)`` point per layer, in sequence
(layer l + 1 depends on layer l), so that overhead is paid per layer: about 1 s for a
1000-layer MLP. :class:`ScalarMoments` computes the same four numbers
``(e_phi, e_phi2, e_dphi2, var_phi)`` for one point in a few microseconds:

* closed forms (docs/theory.md section 5): the families of :mod:`.closed_forms` themselves,
  evaluated on Python floats (:func:`~.closed_forms.scalar_closed_form`): linear at any
  mean; relu, leaky_relu, gelu at mean 0; elu and selu at mean 0 where the vectorized
  path uses them (``q >= 0.04``);
* everything else at mean 0 (tanh, sigmoid, softplus, silu, softsign, gelu_tanh, elu and
  selu below ``q = 0.04``), by the variance ``q = s^2``:

  - small (tanh ``q <= 1.6e-2``, softsign ``s <= 3.5e-2``): the power series of
    :class:`_SmallSeries` (a deep tanh or softsign net at Glorot's scale spends most
    layers there, ``q ~ 1/l``);
  - moderate: the same folded composite Gauss-Legendre rule as :mod:`.quadrature` (the
    nodes and weights of its refinement depth), the activation evaluated by its numpy
    twin (the registry's own value and derivative, as in :mod:`.gaussian`; no compiled
    code), except that the panels on which ``phi`` equals its linear asymptote to below
    ``1e-20`` relative (``|x| >= X``, the record's
    :attr:`~varprop.activations.Activation.asymptote`) are replaced by the exact
    integral of the asymptote against the Gaussian: those panels number ``log2(s)``, so
    the cost no longer grows with the variance (at most 8 panels instead of up to 250);
  - large (``s >= 1000``): the expansion of :class:`_Expansion`, exact to double
    precision there (an exploding silu or gelu_tanh net reaches ``q = 1e147``);

* any other point (non-zero mean outside the closed forms, ``var = 0``) falls back to
  :func:`~varprop.theory.gaussian_moments` itself;
* an infinite variance or mean (a recursion that overflowed float64) gives the limits of
  :func:`~varprop.theory.limits.limit_moments` (docs/theory.md, section 10);
* the last result is memoized on the exact ``(mean, var)``: a recursion at its fixed
  point (He-ReLU, SELU, LeCun-softplus after 50 layers) asks for the same point again.

Accuracy: within ``1e-12`` relative of :func:`~varprop.theory.gaussian_moments` for every
registry activation (tests/test_properties.py sweeps q from 1e-6 to 1e300 at mean 0; the
measured worst case is 1e-15 for the series and the expansion, a few 1e-16 elsewhere
where the reference is itself accurate), itself within 1e-12 of mpmath.

The tail integrals, for ``x = s t``, ``t`` in ``[t0, T_MAX]`` and ``phi(x) ~ a+ x + b+``
(``x -> +inf``), ``phi(x) ~ a- x + b-`` (``x -> -inf``): the folded integrand
``f(s t) + f(-s t)`` of ``f = phi, phi^2, phi'^2`` is a polynomial in ``s t`` of degree
at most 2, and ``int t^k phi(t) dt`` over ``[t0, T]`` is ``Q(t0) - Q(T)`` (k = 0),
``pdf(t0) - pdf(T)`` (k = 1), ``t0 pdf(t0) - T pdf(T) + M_0`` (k = 2), ``Q`` the upper tail.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..activations import Activation, get_activation
from . import quadrature
from .closed_forms import scalar_evaluator
from .limits import limit_moments
from .series import S_EXPAND, _Expansion, _SmallSeries

__all__ = ["ScalarMoments", "scalar_moments"]

_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_SQRT2 = math.sqrt(2.0)


def _level(s: float) -> int:
    """quadrature._row_levels for one standard deviation (folded rule's depth)."""
    d_min = quadrature.X_WIDTH / s
    d_min = min(max(d_min, 1e-320), quadrature.GAUSS_WIDTH)
    return min(int(math.ceil(math.log2(quadrature.GAUSS_WIDTH / d_min))),
               quadrature._MAX_LEVELS)


def _upper_tail(t: float) -> float:
    return 0.5 * math.erfc(t / _SQRT2)


def _pdf(t: float) -> float:
    return _INV_SQRT_2PI * math.exp(-0.5 * t * t)


def _lower_edge(level: int, p: int) -> float:
    """Lower edge of panel p of the folded rule of depth ``level`` (quadrature's
    breakpoints: 0, then ``GAUSS_WIDTH 2^-k`` for k = level .. 0, then the grid point
    ``2 GAUSS_WIDTH``)."""
    if p == 0:
        return 0.0
    if p <= level + 1:
        return math.ldexp(quadrature.GAUSS_WIDTH, p - 1 - level)
    return 2.0 * quadrature.GAUSS_WIDTH


def _cut(level: int, tx: float) -> int | None:
    """The first panel whose lower edge is >= tx (None if there is none)."""
    n_panels = level + 3
    if tx > _lower_edge(level, n_panels - 1):
        return None
    if tx > quadrature.GAUSS_WIDTH:
        return n_panels - 1
    p = max(1, 1 + level + math.ceil(math.log2(tx / quadrature.GAUSS_WIDTH)))
    while p > 1 and _lower_edge(level, p - 1) >= tx:  # guard against log2 rounding
        p -= 1
    while _lower_edge(level, p) < tx:
        p += 1
    return p


def _level_interval(level: int) -> tuple[float, float]:
    """The standard deviations s with ``_level(s) == level``: (lo, hi]."""
    unit = quadrature.X_WIDTH / quadrature.GAUSS_WIDTH
    lo = 0.0 if level == 0 else math.ldexp(unit, level - 1)
    return lo, math.ldexp(unit, level)


class _Rule:
    """The folded rule of one depth, cut after ``cut`` panels, unfolded to +-t, for the
    standard deviations ``lo < s <= hi`` (where ``_level`` and ``_cut`` give it)."""

    __slots__ = ("t2", "w2", "tail", "lo", "hi", "rows", "coef")

    def __init__(self, level: int, cut: int | None, lo: float, hi: float, rows: int,
                 coefs: tuple | None) -> None:
        if cut is None:
            t, w, _ = quadrature.folded_panels(level)
        else:  # the first panels only: the same nodes as the full rule's, built alone
            edges = np.array([[_lower_edge(level, p) for p in range(cut + 1)]])
            t, w = quadrature._nodes(edges)
            t, w = t[0], w[0]
        self.t2 = np.concatenate([t, -t])
        self.w2 = np.concatenate([w, w])
        self.lo, self.hi, self.rows = lo, hi, rows
        self.tail = cut is not None
        self.coef: tuple = ()
        if self.tail:
            t0, big = _lower_edge(level, cut), quadrature.T_MAX
            m0 = _upper_tail(t0) - _upper_tail(big)
            m1 = _pdf(t0) - _pdf(big)
            m2 = t0 * _pdf(t0) - big * _pdf(big) + m0
            # tail of kind k = a_k q + b_k s + c_k (folded asymptote polynomials)
            self.coef = tuple((c2 * m2, c1 * m1, c0 * m0) for c2, c1, c0 in coefs)


class ScalarMoments:
    """``(e_phi, e_phi2, e_dphi2, var_phi)`` of ``phi(x)``, ``x ~ N(mean, var)``, one point
    at a time, as :func:`~varprop.theory.gaussian_moments` computes them (module doc).

    Example:
        >>> ScalarMoments("relu")(0.0, 2.0)[1]      # E[relu(x)^2] = q / 2
        1.0
    """

    def __init__(self, activation: "str | Activation", **activation_params: Any) -> None:
        act = get_activation(activation, **activation_params)
        self.act = act
        self.name = act.name
        # the last point: a recursion at its fixed point asks for it again
        self._memo: tuple[float, float, Any] = (math.nan, math.nan, None)
        self._rules: dict[tuple[int, int | None], _Rule] = {}
        asym = act.asymptote
        self._asym = asym
        self._centre = float(act(np.zeros(1))[0])  # phi(0): var is E[(phi - c)^2] - ...
        self._fixed_mean = act.centred_mean  # E[phi] at mean 0 fixed by a symmetry
        c = self._centre
        self._rows = 4 if c == 0.0 else 6
        self._last_rule: _Rule | None = None
        self._tails: tuple | None = None
        if asym is not None:
            ap, bp, am, bm, x_asym = asym
            self._x_asym = x_asym
            # folded asymptote polynomials f(s t) + f(-s t): coefficients of (s t)^2, s t, 1
            tails = [(0.0, ap - am, bp + bm),  # phi
                     (ap * ap + am * am, 2.0 * (ap * bp - am * bm), bp * bp + bm * bm),  # phi^2
                     (0.0, 0.0, ap * ap + am * am)]  # phi'^2
            if c != 0.0:
                tails += [(0.0, ap - am, bp + bm - 2.0 * c),  # phi - c
                          (ap * ap + am * am, 2.0 * (ap * (bp - c) - am * (bm - c)),
                           (bp - c) ** 2 + (bm - c) ** 2)]  # (phi - c)^2
            self._tails = tuple(tails)
        else:
            self._x_asym = math.inf
        self._expansion: _Expansion | None = None  # built on first use
        self._series = None if act.series is None else _SmallSeries(act.series)
        # the family of .closed_forms that the vectorized path uses too, or None
        self._closed = (None if act.closed_form is None
                        else scalar_evaluator(act.closed_form, act.formula_params))

    # ------------------------------------------------------------------ entry points
    def __call__(self, mean: float, var: float) -> tuple[float, float, float, float]:
        """``(e_phi, e_phi2, e_dphi2, var_phi)`` as Python floats; ``mean`` and
        ``var >= 0`` not NaN (the caller's contract: not validated here). An infinite
        ``var`` or ``mean`` (an overflowed recursion) gives the limits of
        :func:`~varprop.theory.limits.limit_moments`."""
        memo = self._memo
        if memo[0] == mean and memo[1] == var:
            return memo[2]
        res = None
        if var == math.inf or mean - mean != 0.0:  # overflowed: the limits (+-inf mean)
            res = limit_moments(self.act, mean, var)
        elif var > 0.0:
            if self._closed is not None:
                res = self._closed(mean, var)
            if res is None and mean == 0.0:
                res = self._folded(var)
        if res is None:
            res = self._fallback(mean, var)
        self._memo = (mean, var, res)
        return res

    def _fallback(self, mean: float, var: float) -> tuple[float, float, float, float]:
        from .gaussian import gaussian_moments

        with np.errstate(over="ignore"):  # a moment beyond float64 is inf: an answer
            g = gaussian_moments(self.act, var, mean=mean)
        return float(g.e_phi), float(g.e_phi2), float(g.e_dphi2), float(g.var_phi)

    # ------------------------------------------------------------------ quadrature
    def _rule(self, s: float) -> _Rule:
        """The folded rule of depth ``_level(s)``, cut where the asymptote takes over."""
        rule = self._last_rule
        if rule is not None and rule.lo < s <= rule.hi:
            return rule
        level = _level(s)
        lo, hi = _level_interval(level)
        x = self._x_asym
        cut = None
        if s * quadrature.T_MAX > x:
            lo = max(lo, x / quadrature.T_MAX)
            cut = _cut(level, x / s)
            if cut is None:  # x / s beyond the last panel's lower edge
                hi = min(hi, x / _lower_edge(level, level + 2))
            else:  # lower edge of panel cut - 1 < x / s <= lower edge of panel cut
                lo = max(lo, x / _lower_edge(level, cut) * (1 - 1e-15))
                if cut > 1:
                    hi = min(hi, x / _lower_edge(level, cut - 1) * (1 - 1e-15))
        else:
            hi = min(hi, x / quadrature.T_MAX)
        key = (level, cut)
        rule = self._rules.get(key)
        if rule is None or not rule.lo < s <= rule.hi:
            rule = self._rules[key] = _Rule(level, cut, lo, hi, self._rows, self._tails)
        self._last_rule = rule
        return rule

    def _expand(self, q: float, s: float) -> tuple[float, float, float, float]:
        exp = self._expansion
        if exp is None:
            exp = self._expansion = _Expansion(self.act, self._asym, self._centre)
        vals = exp(q, s)
        e_phi, e_phi2, e_dphi2 = vals[0], vals[1], vals[2]
        e_dev, e_dev2 = (vals[3], vals[4]) if len(vals) == 5 else (e_phi, e_phi2)
        return self._result(e_phi, e_phi2, e_dphi2, e_dev, e_dev2)

    def _result(self, e_phi: float, e_phi2: float, e_dphi2: float, e_dev: float,
                e_dev2: float) -> tuple[float, float, float, float]:
        """(e_phi, e_phi2, e_dphi2, var) from the moments of phi - c (var >= 0), with the
        exact mean where symmetry fixes it (0 for odd activations, 1/2 for sigmoid)."""
        var = e_dev2 - e_dev * e_dev
        if var < 0.0:
            var = 0.0
        if self._fixed_mean is not None:
            e_phi = self._fixed_mean
        return e_phi, e_phi2, e_dphi2, var

    def _folded(self, q: float) -> tuple[float, float, float, float]:
        """The folded rule at mean 0: rows phi, phi' (, phi - c) and their squares are
        summed against the weights in one matrix-vector product."""
        s = math.sqrt(q)
        if s >= S_EXPAND and self._asym is not None:
            return self._expand(q, s)
        if self._series is not None:
            res = self._series(q, s)
            if res is not None:
                return res
        rule = self._rule(s)
        x = rule.t2 * s
        b = np.empty((rule.rows, x.size))
        b[0] = self.act(x)  # the numpy twin of the C kernels (no compiled code)
        b[1] = self.act.derivative(x)
        if rule.rows == 4:  # phi(0) = 0: phi - c is phi
            np.multiply(b[:2], b[:2], out=b[2:])
            e_phi, _, e_phi2, e_dphi2 = (b @ rule.w2).tolist()
            if rule.tail:
                t_phi, t_phi2, t_dphi2 = rule.coef
                e_phi += t_phi[0] * q + t_phi[1] * s + t_phi[2]
                e_phi2 += t_phi2[0] * q + t_phi2[1] * s + t_phi2[2]
                e_dphi2 += t_dphi2[0] * q + t_dphi2[1] * s + t_dphi2[2]
            e_dev, e_dev2 = e_phi, e_phi2
        else:
            np.subtract(b[0], self._centre, out=b[2])
            np.multiply(b[:3], b[:3], out=b[3:])
            e_phi, _, e_dev, e_phi2, e_dphi2, e_dev2 = (b @ rule.w2).tolist()
            if rule.tail:
                t_phi, t_phi2, t_dphi2, t_dev, t_dev2 = rule.coef
                e_phi += t_phi[0] * q + t_phi[1] * s + t_phi[2]
                e_phi2 += t_phi2[0] * q + t_phi2[1] * s + t_phi2[2]
                e_dphi2 += t_dphi2[0] * q + t_dphi2[1] * s + t_dphi2[2]
                e_dev += t_dev[0] * q + t_dev[1] * s + t_dev[2]
                e_dev2 += t_dev2[0] * q + t_dev2[1] * s + t_dev2[2]
        return self._result(e_phi, e_phi2, e_dphi2, e_dev, e_dev2)


_CACHE: dict[Any, ScalarMoments] = {}


def scalar_moments(act: Activation) -> ScalarMoments:
    """The (shared, cached) :class:`ScalarMoments` of an activation."""
    key = (act.name, tuple(sorted(act.params.items())))
    sm = _CACHE.get(key)
    if sm is None:
        if len(_CACHE) > 256:
            _CACHE.clear()
        sm = _CACHE[key] = ScalarMoments(act)
    return sm
