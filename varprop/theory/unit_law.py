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

Cost. The composition is a linked list (each law points at the step before it), so a
step costs the work on the nodes only, whatever the depth, and the chain is replayed
only when a rule is refined. A point mass (std 0, or an affine map of scale 0, e.g.
zero weights) keeps no composition at all: its law is its value.

Range (docs/theory.md, section 10). A chain of constant weights multiplies its unit by
the width at every layer and overflows float64 after a few dozen layers. A node whose
value is beyond ``2^1000`` is therefore held as a mantissa and a binary exponent
(``v 2^k``), and an activation maps it by its linear asymptote there (``phi(x) = a x``
or its bound), so signs, the ratio of the two tails and the derivative factors stay
exact; moments beyond float64 come out as +-inf. An infinite source (a Gaussian whose
variance overflowed) has the exponent :data:`_INF_EXP`, which no finite scale brings back.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .limits import asymptotes
from .quadrature import T_MAX, X_WIDTH, _breakpoints, _nodes

__all__ = ["UnitLaw"]

# A root is searched by cutting its bracket into _SPLIT parts per step: 9 steps take a
# bracket inside one panel (width < 2 T_MAX) below 1e-15.
_SPLIT = 64
_SEARCH_STEPS = 10
# The finest panel resolves the activation's own scale (|x| ~ X_WIDTH) up to this std:
# beyond it that region holds a share 1/s < 1e-17 of the mass, below double precision,
# and N(0, 1e300) would otherwise take 500 levels of panels (16,000 nodes).
_S_RESOLVED = 1e17
# Node values are plain floats below 2^_PLAIN_EXP; beyond, a mantissa and an exponent.
_PLAIN_EXP = 1000
_PLAIN = 2.0 ** _PLAIN_EXP
# The exponent of an infinite node: more than any chain of finite scales can remove.
_INF_EXP = 1 << 40
# A plain value times a scale below this, plus a plain shift, cannot overflow.
_SAFE_SCALE = 2.0 ** 20
# The weight of a point mass (read-only: shared).
_ONE = np.ones(1)
_ONE.flags.writeable = False
# Moments square the node values: beyond this magnitude they are scaled first.
_SQUARE_SAFE = 2.0 ** 500


class _Rule:
    """Nodes ``t`` and normalized weights ``w`` of the rule with breakpoints ``kinks``."""

    __slots__ = ("t", "w", "kinks", "s", "edges")

    def __init__(self, s: float, kinks: tuple[float, ...]) -> None:
        self.s, self.kinks = s, kinks
        self.edges = np.sort(np.asarray(kinks, dtype=float))
        d_min = np.array([X_WIDTH / min(s, _S_RESOLVED)])
        centres = [(np.array([k]), d_min) for k in kinks]
        t, w = _nodes(_breakpoints(-T_MAX, T_MAX, centres, 1))
        self.t, self.w = t[0], w[0] / w[0].sum()


class _Link:
    """One step of a composition and the steps before it (``parent``, None at the source)."""

    __slots__ = ("parent", "op", "length")

    def __init__(self, parent: "_Link | None", op: Any) -> None:
        self.parent, self.op = parent, op
        self.length = 1 if parent is None else parent.length + 1


# ----------------------------------------------------------------------------- values
# Values are (v, k): plain floats v with k None, or v 2^k per node (k an int64 array,
# 0 where the node is plain, > _PLAIN_EXP with |v| in [1/2, 1) where it is not).


def _ldexp(x: float, e: int) -> float:
    """``x 2^e`` for a float, saturating to +-inf."""
    try:
        return math.ldexp(x, e)
    except OverflowError:
        return math.copysign(math.inf, x)


def _frexp(x: float) -> tuple[float, int]:
    """``math.frexp``, with +-inf as a mantissa of 1/2 and the exponent of infinity."""
    return (math.copysign(0.5, x), _INF_EXP) if math.isinf(x) else math.frexp(x)


def _normalize(m: np.ndarray, e: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """The values ``m 2^e`` (m finite), plain where float64 holds them."""
    f, x = np.frexp(m)
    e = e + x
    huge = e > _PLAIN_EXP
    if huge.any():
        huge &= f != 0.0  # (a zero is plain whatever its exponent)
    if not huge.any():
        return np.ldexp(f, e), None
    keep = e * huge
    return np.ldexp(f, e - keep), keep  # huge nodes keep their mantissa f (f 2^0)


def _affine(v: np.ndarray, k: np.ndarray | None, scale: float,
            shift: float) -> tuple[np.ndarray, np.ndarray | None]:
    """``scale * value + shift``; equal to the plain float result wherever that is below
    ``2^1000`` (powers of two commute with rounding)."""
    if k is None:
        if abs(scale) < _SAFE_SCALE and abs(shift) < _PLAIN:  # |w| < 2^1021: no overflow
            w = scale * v + shift
        else:
            with np.errstate(over="ignore", invalid="ignore"):
                w = scale * v + shift
        if np.abs(w).max() < _PLAIN:
            return w, None
        k = np.zeros(v.shape, np.int64)
    sm, se = _frexp(scale)
    hm, he = _frexp(shift)
    vm, ve = np.frexp(v)
    e = k + ve + se  # value: sm vm 2^e + hm 2^he, summed at the larger exponent
    if hm == 0.0:
        return _normalize(sm * vm, e)
    top = np.maximum(e, he)
    return _normalize(np.ldexp(sm * vm, e - top) + np.ldexp(hm, he - top), top)


def _plain(v: np.ndarray, k: np.ndarray | None) -> np.ndarray:
    """The values as floats (+-inf beyond float64)."""
    if k is None:
        return v
    with np.errstate(over="ignore"):
        return np.ldexp(v, k)


def _map(act: Any, v: np.ndarray, k: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
    """``act(value)``: beyond 2^1000 every registry activation is its linear asymptote
    ``a x`` (the constant term is below an ulp) or its bound ``act(+-inf)``. (The
    registry's activations take +-inf without a warning.)"""
    if k is None:
        y = act(v)
        if np.abs(y).max() < _PLAIN:
            return y, None
        return _normalize(y, np.zeros(v.shape, np.int64))
    big = k > 0
    y = act(np.where(big, np.copysign(np.inf, v), v))
    grows = big & np.isinf(y)
    _, _, slope_lo, slope_hi = asymptotes(act)
    m = np.where(grows, np.where(v > 0.0, slope_hi, slope_lo) * v, np.where(grows, 0.0, y))
    return _normalize(m, np.where(grows, k, 0))


# Memos of an activation at a plain point mass (a chain of zero weights meets act(0) at
# every layer): (act, value) -> values, and -> act'(value)^2 (read-only arrays).
_POINT_MAPS: dict[tuple[Any, float], tuple[np.ndarray, np.ndarray | None]] = {}
_POINT_D2: dict[tuple[Any, float], np.ndarray] = {}
_POINT_MEMO = 256


def _point_map(act: Any, v: np.ndarray,
               k: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
    if k is not None:
        return _map(act, v, k)
    key = (act, float(v[0]))
    out = _POINT_MAPS.get(key)
    if out is None:
        if len(_POINT_MAPS) > _POINT_MEMO:
            _POINT_MAPS.clear()
        out = _POINT_MAPS[key] = _map(act, v, k)
        out[0].flags.writeable = False
    return out


def _point_d2(act: Any, x: float) -> np.ndarray:
    key = (act, x)
    d = _POINT_D2.get(key)
    if d is None:
        if len(_POINT_D2) > _POINT_MEMO:
            _POINT_D2.clear()
        d = act.derivative(np.array([x]))
        d *= d
        d.flags.writeable = False
        _POINT_D2[key] = d
    return d


def _scalar(v: np.ndarray, k: np.ndarray | None) -> float:
    return float(_plain(v, k)[0])


# The last factors of dphi2, shared by a law whose factors are equal (read-only).
_LAST_D2: list[np.ndarray | None] = [None]


class UnitLaw:
    """``f(t)``, t ~ N(0, 1), as ``mean + std t`` followed by the steps of ``link``, with
    its values ``v`` (times ``2^k``, see the module doc) at the nodes of ``rule``
    (weights ``w``, summing to 1); ``rule`` None is a point mass."""

    __slots__ = ("mean", "std", "link", "rule", "v", "k", "_d2")

    def __init__(self, mean: float, std: float, link: _Link | None, rule: _Rule | None,
                 v: np.ndarray | None, k: np.ndarray | None = None) -> None:
        self.mean, self.std, self.link, self.rule, self.v, self.k = mean, std, link, rule, v, k
        self._d2: tuple[Any, np.ndarray] | None = None  # (act, act'(unit)^2), see dphi2

    @property
    def w(self) -> np.ndarray:
        return _ONE if self.rule is None else self.rule.w

    def _values(self) -> tuple[np.ndarray, np.ndarray | None]:
        """(v, k), evaluated anew if :meth:`dphi2` was told to forget them."""
        if self.v is None:
            self.v, self.k = self._evaluate(self.rule.t)
        return self.v, self.k

    @property
    def ops(self) -> tuple:
        """The steps of the composition, first to last (a copy: O(length))."""
        out, link = [], self.link
        while link is not None:
            out.append(link.op)
            link = link.parent
        return tuple(reversed(out))

    @property
    def length(self) -> int:
        """The number of steps after the source (not ``__len__``: a law is never falsy)."""
        return 0 if self.link is None else self.link.length

    @classmethod
    def gaussian(cls, mean: float, var: float) -> "UnitLaw":
        """N(mean, var), on the composite rule with the kink ``x = 0`` on a panel edge.
        An infinite mean is a point mass there (it dominates any variance); an infinite
        variance with a finite mean puts every node at +-inf (docs/theory.md, 10)."""
        mean = float(mean)
        if math.isinf(mean):
            return cls._point(np.array([math.copysign(0.5, mean)]), np.array([_INF_EXP]))
        if not var > 0.0:
            return cls._point(np.array([mean]), None)
        if math.isinf(var):  # the nodes' signs are all that is left: a rule of scale 1
            rule = _Rule(1.0, (0.0,))
            return cls(mean, math.inf, None, rule, *cls._source(mean, math.inf, rule.t))
        s = math.sqrt(var)
        tc = 0.0 if mean == 0.0 else max(-T_MAX, min(T_MAX, -mean / s))
        rule = _Rule(s, (tc,))
        return cls(mean, s, None, rule, *cls._source(mean, s, rule.t))

    @classmethod
    def _point(cls, v: np.ndarray, k: np.ndarray | None) -> "UnitLaw":
        """A point mass at ``v 2^k`` (one node): no composition to keep."""
        if k is not None or not abs(v[0]) < _PLAIN:
            v, k = _normalize(v, np.zeros(1, np.int64) if k is None else k)
        return cls(_scalar(v, k), 0.0, None, None, v, k)

    @staticmethod
    def _source(mean: float, std: float, t: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        if math.isinf(std):
            return _normalize(0.5 * np.sign(t), np.full(t.shape, _INF_EXP, np.int64))
        return _affine(t, None, std, mean)

    def _evaluate(self, t: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """The composition at the standard-normal points ``t`` (a replay of the chain)."""
        if self.rule is None:  # a point mass: its one value everywhere
            return (np.full(t.shape, self.v[0]),
                    None if self.k is None else np.full(t.shape, self.k[0]))
        steps, link = [], self.link
        while link is not None:
            steps.append(link.op)
            link = link.parent
        v, k = self._source(self.mean, self.std, t)
        for op in reversed(steps):
            v, k = _affine(v, k, *op) if isinstance(op, tuple) else _map(op, v, k)
        return v, k

    def _derived(self, link: _Link | None, rule: _Rule | None, v: np.ndarray,
                 k: np.ndarray | None) -> "UnitLaw":
        """A law of the same source with the steps ``link``, values ``v`` on ``rule``."""
        return UnitLaw(self.mean, self.std, link, rule, v, k)

    def affine(self, scale: float, shift: float) -> "UnitLaw":
        if scale == 0.0:  # a point mass at shift, whatever the unit was
            return UnitLaw._point(np.array([float(shift)]), None)
        if self.rule is None:
            return UnitLaw._point(*_affine(self.v, self.k, scale, shift))
        v, k = _affine(*self._values(), scale, shift)
        return self._derived(_Link(self.link, (scale, shift)), self.rule, v, k)

    def map(self, act: Any) -> "UnitLaw":
        """The law of ``act(unit)``; the rule gains a breakpoint where a kinked ``act``'s
        input changes sign inside a panel."""
        if self.rule is None:
            return UnitLaw._point(*_point_map(act, self.v, self.k))
        self._values()
        rule = self.rule
        if act.kinked:
            roots = self._sign_changes()
            if roots:
                rule = _Rule(rule.s, tuple(sorted(set(rule.kinks) | set(roots))))
        v, k = (self.v, self.k) if rule is self.rule else self._evaluate(rule.t)
        return self._derived(_Link(self.link, act), rule, *_map(act, v, k))

    def _sign_changes(self) -> list[float]:
        """Roots of this unit inside a panel of the rule (between two of its nodes)."""
        t = self.rule.t
        pos = self.v > 0.0  # a mantissa has the sign of its value
        changes = np.flatnonzero(pos[1:] != pos[:-1])
        if not changes.size:
            return []
        # a jump with a breakpoint strictly between its two nodes sits on a panel edge
        edges = self.rule.edges
        inside = (np.searchsorted(edges, t[changes + 1], "left")
                  > np.searchsorted(edges, t[changes], "right"))
        roots = []
        for j in changes[~inside]:
            lo, hi = float(t[j]), float(t[j + 1])
            # f(lo) and f(hi) lie on either side of 0: cut the bracket into _SPLIT parts
            # and keep the one where the sign changes, until it is an ulp wide
            f_lo = bool(pos[j])
            for _ in range(_SEARCH_STEPS):
                grid = np.linspace(lo, hi, _SPLIT + 1)
                side = (self._evaluate(grid)[0] > 0.0) != f_lo
                i = int(np.argmax(side))  # first point past the sign change (side[-1] holds)
                lo, hi = float(grid[max(i - 1, 0)]), float(grid[i])
                if hi - lo <= 4e-16 * max(1.0, abs(hi)):
                    break
            roots.append(0.5 * (lo + hi))
        return roots

    def on_rule_of(self, other: "UnitLaw") -> "UnitLaw":
        """This law's values on ``other``'s rule (same source, a prefix of its chain)."""
        if other.rule is self.rule:
            return self
        return self._derived(self.link, other.rule, *self._evaluate(other.rule.t))

    def same_source(self, other: "UnitLaw") -> bool:
        """Whether ``other`` continues this law's chain (its composition extends this
        one's), in ``O(other.length - self.length)``."""
        if (self.rule is None or other.rule is None or self.mean != other.mean
                or self.std != other.std):
            return False
        steps = other.length - self.length
        if steps < 0:
            return False
        link = other.link
        for _ in range(steps):
            link = link.parent
        return link is self.link

    def dphi2(self, act: Any, forget: bool = False) -> np.ndarray:
        """``act'(unit)^2`` per node (a factor of the backward pass), read-only.

        ``forget``: the law's own values are not needed again (the backward pass of an
        activation reads only these factors), so only the factors are kept: a deep chain
        then holds one array per layer, and none where the factors repeat those of the
        layer before (a relu chain: the same 0/1 pattern at every layer)."""
        cached = self._d2
        if cached is not None and cached[0] is act:
            return cached[1]
        if self.rule is None and self.k is None:  # a point mass: its one factor
            return _point_d2(act, float(self.v[0]))
        d = act.derivative(_plain(*self._values()))
        d *= d
        last = _LAST_D2[0]
        if last is not None and last.shape == d.shape and np.array_equal(last, d):
            d = last
        else:
            d.flags.writeable = False
            _LAST_D2[0] = d
        self._d2 = (act, d)
        if forget and self.rule is not None:
            self.v = self.k = None
        return d

    def expect(self, values: np.ndarray) -> float:
        """E[values] for per-node values."""
        return float(values @ self.w)

    def moments(self) -> tuple[float, float, float]:
        """(mean, variance, second moment) of the unit (+-inf beyond float64)."""
        v, k = self._values()
        if self.rule is None:  # a point mass
            x = _scalar(v, k)
            return x, 0.0, x * x
        if k is None and not np.max(np.abs(v)) > _SQUARE_SAFE:
            mean = self.expect(v)
            var = self.expect((v - mean) ** 2)  # centred: no cancellation
            return mean, var, self.expect(v * v)
        # scaled by the largest node's power of two, so that nothing overflows before
        # the weights apply
        f, e = np.frexp(v)
        if k is not None:
            e = e + k
        top = int(np.max(np.where(f != 0.0, e, np.iinfo(np.int64).min)))
        s = np.ldexp(f, e - top)
        mean = self.expect(s)
        var = self.expect((s - mean) ** 2)
        second = self.expect(s * s)
        return _ldexp(mean, top), _ldexp(var, 2 * top), _ldexp(second, 2 * top)
