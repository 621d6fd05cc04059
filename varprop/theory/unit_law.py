"""The exact law of one unit that is a deterministic function of one Gaussian variable.

Mean-field theory treats every pre-activation as Gaussian. That holds after a dense layer
with random weights (a sum of many independent terms), but not after an identity (or
``eye``) layer, nor after a constant one fed by identical units: there a unit passes on a
single unit of the layer below, so after ``relu`` the next pre-activation is
half-normal-like, not Gaussian, and pushing a Gaussian through ``relu`` again is wrong
(``relu(relu(x)) = relu(x)``: the variance stays, while the Gaussian recursion halves it
every layer).

Along such a chain the unit stays an exact function ``f(t)`` of the one standard normal
``t`` that fed it (the network input, or the Gaussian output of the last random layer):
``f`` is the composition of the chain's elementwise steps (activations, affine maps of
identity layers and normalizations). :class:`UnitLaw` keeps that composition and its
values at the nodes of the composite Gauss-Legendre rule of :mod:`.quadrature`, so an
expectation is a weighted sum. The rule must have every kink of ``f`` (and every jump of
its derivative factors) on a panel edge for Gauss-Legendre to converge fast: the first
at ``t = -mean / std``; a later kinked activation whose input changes sign inside a panel
(a bias shifts it) adds its root as a breakpoint, and the composition is evaluated anew
on the refined rule. Every law of one chain lives on the latest, finest rule when the
backward pass multiplies their derivative factors per node (:meth:`UnitLaw.on_rule_of`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .quadrature import T_MAX, X_WIDTH, _breakpoints, _nodes

__all__ = ["UnitLaw"]

# A root is searched by cutting its bracket into _SPLIT parts per step: 9 steps take a
# bracket inside one panel (width < 2 T_MAX) below 1e-15.
_SPLIT = 64
_SEARCH_STEPS = 10


class _Rule:
    """Nodes ``t`` and normalized weights ``w`` of the rule with breakpoints ``kinks``."""

    __slots__ = ("t", "w", "kinks", "s")

    def __init__(self, s: float, kinks: tuple[float, ...]) -> None:
        self.s, self.kinks = s, kinks
        d_min = np.array([X_WIDTH / s])
        centres = [(np.array([k]), d_min) for k in kinks]
        t, w = _nodes(_breakpoints(-T_MAX, T_MAX, centres, 1))
        self.t, self.w = t[0], w[0] / w[0].sum()


def _apply(op: Any, v: np.ndarray) -> np.ndarray:
    if isinstance(op, tuple):  # (scale, shift)
        return op[0] * v + op[1]
    return op(v)


class UnitLaw:
    """``f(t)``, t ~ N(0, 1), as ``mean + std t`` followed by ``ops``, with its values
    ``v`` at the nodes of ``rule`` (weights ``w``, summing to 1)."""

    __slots__ = ("mean", "std", "ops", "rule", "v")

    def __init__(self, mean: float, std: float, ops: tuple, rule: _Rule | None) -> None:
        self.mean, self.std, self.ops = mean, std, ops
        if rule is None:  # a point mass (std 0)
            self.rule, self.v = None, self._evaluate(np.zeros(1))
        else:
            self.rule, self.v = rule, self._evaluate(rule.t)

    @property
    def w(self) -> np.ndarray:
        return np.ones(1) if self.rule is None else self.rule.w

    @classmethod
    def gaussian(cls, mean: float, var: float) -> "UnitLaw":
        """N(mean, var), on the composite rule with the kink ``x = 0`` on a panel edge."""
        if not var > 0.0:
            return cls(float(mean), 0.0, (), None)
        s = math.sqrt(var)
        tc = 0.0 if mean == 0.0 else max(-T_MAX, min(T_MAX, -mean / s))
        return cls(float(mean), s, (), _Rule(s, (tc,)))

    def _evaluate(self, t: np.ndarray) -> np.ndarray:
        """The composition at the standard-normal points ``t``."""
        v = self.mean + self.std * t
        with np.errstate(over="ignore", invalid="ignore"):
            for op in self.ops:
                v = _apply(op, v)
        return v

    def _derived(self, ops: tuple, rule: _Rule | None, v: np.ndarray) -> "UnitLaw":
        """A law of the same source with ``ops`` whose values on ``rule`` are ``v``."""
        law = UnitLaw.__new__(UnitLaw)
        law.mean, law.std, law.ops, law.rule, law.v = self.mean, self.std, ops, rule, v
        return law

    def affine(self, scale: float, shift: float) -> "UnitLaw":
        return self._derived(self.ops + ((scale, shift),), self.rule, scale * self.v + shift)

    def map(self, act: Any) -> "UnitLaw":
        """The law of ``act(unit)``; the rule gains a breakpoint where a kinked ``act``'s
        input changes sign inside a panel."""
        rule = self.rule
        if rule is not None and act.kinked:
            roots = self._sign_changes()
            if roots:
                rule = _Rule(rule.s, tuple(sorted(set(rule.kinks) | set(roots))))
        base = self.v if rule is self.rule else self._evaluate(rule.t)
        with np.errstate(over="ignore", invalid="ignore"):
            return self._derived(self.ops + (act,), rule, act(base))

    def _sign_changes(self) -> list[float]:
        """Roots of this unit inside a panel of the rule (between two of its nodes)."""
        t, v = self.rule.t, self.v
        pos = v > 0.0
        edges = np.asarray(self.rule.kinks)
        roots = []
        for k in np.flatnonzero(pos[1:] != pos[:-1]):
            lo, hi = float(t[k]), float(t[k + 1])
            if np.any((edges > lo) & (edges < hi)):
                continue  # the jump sits at a breakpoint between these nodes already
            # f(lo) and f(hi) lie on either side of 0: cut the bracket into _SPLIT parts
            # and keep the one where the sign changes, until it is an ulp wide
            f_lo = bool(pos[k])
            for _ in range(_SEARCH_STEPS):
                grid = np.linspace(lo, hi, _SPLIT + 1)
                side = (self._evaluate(grid) > 0.0) != f_lo
                j = int(np.argmax(side))  # first point past the sign change (side[-1] holds)
                lo, hi = float(grid[max(j - 1, 0)]), float(grid[j])
                if hi - lo <= 4e-16 * max(1.0, abs(hi)):
                    break
            roots.append(0.5 * (lo + hi))
        return roots

    def on_rule_of(self, other: "UnitLaw") -> "UnitLaw":
        """This law's values on ``other``'s rule (same source, a prefix of its chain)."""
        if other.rule is self.rule:
            return self
        return self._derived(self.ops, other.rule, self._evaluate(other.rule.t))

    def same_source(self, other: "UnitLaw") -> bool:
        n = len(self.ops)
        return (self.mean == other.mean and self.std == other.std and self.rule is not None
                and other.rule is not None and other.ops[:n] == self.ops)

    def dphi2(self, act: Any) -> np.ndarray:
        """``act'(unit)^2`` per node (a factor of the backward pass)."""
        with np.errstate(over="ignore", invalid="ignore"):
            d = act.derivative(self.v)
        return d * d

    def expect(self, values: np.ndarray) -> float:
        """E[values] for per-node values."""
        return float(values @ self.w)

    def moments(self) -> tuple[float, float, float]:
        """(mean, variance, second moment) of the unit."""
        mean = self.expect(self.v)
        with np.errstate(over="ignore", invalid="ignore"):
            var = self.expect((self.v - mean) ** 2)  # centred: no cancellation
            second = self.expect(self.v * self.v)
        return mean, var, second
