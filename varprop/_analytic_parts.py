"""Pieces of :mod:`varprop.analytic` that know no layer types: the per-call cache of
initializer and activation moments, the gradient of one unit, and the arithmetic that
keeps an overflowed (``inf``) or underflowed (``0``) recursion free of NaN.

An exploding network overflows float64 and a vanishing one underflows to 0; both are
answers, and the analyzer carries them on (docs/theory.md, section 10): an overflowed
variance is ``+inf``, and a product of a zero factor (zero weights, a saturated unit,
a variance that underflowed) with an infinite one is 0, never NaN (:func:`mul0`).
"""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

from .activations import Activation
from .theory import gaussian_moments
from .theory.fast import scalar_moments
from .theory.limits import limit_moments
from .theory.unit_law import _ldexp

__all__ = ["Moments", "mul0"]

#: (e_phi, e_phi2, e_dphi2, var_phi) of phi(x), x ~ N(mean, var), as Python floats.
Moments = Callable[[float, float], tuple[float, float, float, float]]

# Per-node derivative factors are rescaled by a power of two into the variance once their
# largest leaves [2^-500, 2^500] (exact, and far from float64's range).
_FACTOR_RANGE = 2.0 ** 500


def mul0(a: float, b: float) -> float:
    """``a * b`` with ``0 * inf = 0``: a zero factor (zero weights, a unit that passes
    no gradient, a variance that underflowed) wins over an overflowed one."""
    return 0.0 if a == 0.0 or b == 0.0 else a * b


class _Gradient:
    """Variance of dL/dz of one unit: ``var``, times ``E[factor]`` when ``factor`` holds
    per-node derivative factors of an identity or symmetric chain (see
    :class:`~varprop.theory.unit_law.UnitLaw`), whose factors are functions of one
    Gaussian and so are not independent. The factors are kept near 1 by powers of two
    moved into ``var`` (:meth:`factored`), so a long chain of slopes cannot overflow."""

    __slots__ = ("var", "identical", "factor", "law")

    def __init__(self, var: float, identical: bool = False, factor: np.ndarray | None = None,
                 law: Any = None) -> None:
        self.var = var
        self.identical = identical
        self.factor = factor
        self.law = law

    @staticmethod
    def factored(var: float, identical: bool, factor: np.ndarray, law: Any) -> "_Gradient":
        """A gradient with per-node factors, their scale moved into ``var`` when it
        leaves ``[2^-500, 2^500]``; all-zero factors (or a zero ``var``) are 0."""
        top = float(factor.max())
        if top == 0.0 or var == 0.0:
            return _Gradient(0.0, identical)
        if not 1.0 / _FACTOR_RANGE <= top <= _FACTOR_RANGE:
            e = math.frexp(top)[1]
            factor = np.ldexp(factor, -e)
            var = _ldexp(var, e)
        return _Gradient(var, identical, factor, law)

    def total(self) -> float:
        if self.factor is None:
            return self.var
        return mul0(self.var, self.law.expect(self.factor))

    def scaled(self, k: float, identical: bool) -> "_Gradient":
        return _Gradient(mul0(k, self.var), identical, self.factor, self.law)

    def reduced(self) -> "_Gradient":
        """The same variance with the per-node factors averaged out."""
        return self if self.factor is None else _Gradient(self.total(), self.identical)


class _Context:
    """What one ``analyze`` call looks up repeatedly: the moments of each initializer for
    each shape (a deep MLP asks for the same ``(init, shape)`` at every layer) and the
    Gaussian-moment evaluator of each activation.

    Keys are object ids (the network holds its initializers and activations for the whole
    call, so an id cannot be reused while the cache lives); on a miss, an object equal to
    the last one seen (same class, same attributes: initializers and activations are
    plain configurations) shares its entry. ``mlp(..., "he_normal")`` builds one
    initializer object per layer, all equal.
    """

    def __init__(self, fast: bool = True) -> None:
        self.fast = fast
        self._init: dict[tuple[int, tuple[int, ...]], Any] = {}
        self._last_init: dict[tuple[type, tuple[int, ...]], tuple[Any, Any]] = {}
        self._act: dict[int, Moments] = {}
        self._last_act: tuple[Any, Moments] | None = None

    def init_moments(self, init: Any, shape: tuple[int, ...]) -> Any:
        key = (id(init), shape)
        m = self._init.get(key)
        if m is None:
            last = self._last_init.get((type(init), shape))
            if last is not None and vars(last[0]) == vars(init):
                m = last[1]
            else:
                m = init.moments(shape)
                self._last_init[(type(init), shape)] = (init, m)
            self._init[key] = m
        return m

    def bias(self, layer: Any) -> tuple[float, float, bool]:
        """(mean, var, symmetric) of the layer's bias (no bias: zeros)."""
        if layer.bias_init is None:
            return 0.0, 0.0, True
        b = self.init_moments(layer.bias_init, (layer.n_out,))
        return b.mean, b.var, b.var == 0.0

    def moments(self, act: Activation) -> Moments:
        fn = self._act.get(id(act))
        if fn is None:
            last = self._last_act
            if last is not None and last[0] == act:
                fn = last[1]
            else:
                fn = scalar_moments(act) if self.fast else _reference(act)
                self._last_act = (act, fn)
            self._act[id(act)] = fn
        return fn


def _reference(act: Activation) -> Moments:
    """The vectorized public path, one call per point (the oracle of the fast path);
    an infinite mean or variance takes the limits, as the fast path does."""
    def moments(mean: float, var: float) -> tuple[float, float, float, float]:
        if math.isinf(var) or math.isinf(mean):
            return limit_moments(act, mean, var)
        g = gaussian_moments(act, var, mean=mean)
        return float(g.e_phi), float(g.e_phi2), float(g.e_dphi2), float(g.var_phi)
    return moments
