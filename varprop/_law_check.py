"""Is the quadrature rule of an exact unit law fine enough for its gradient?

Along an identity or constant chain the analyzer integrates the product of the
activations' squared derivatives, a function of the one Gaussian that fed the chain, on
the composite Gauss-Legendre rule of :class:`~varprop.theory.unit_law.UnitLaw`
(docs/theory.md, section 2). Two things defeat a fixed rule as the chain deepens:

* a steep transition inside a panel: after 30 GELU layers the product drops from ~1 to
  ~0 over a short stretch of the input (units above it keep their value, units below
  collapse to 0), and 16 nodes on a panel misplace it (20 % off);
* a spike at a breakpoint: near an unstable fixed point of the activation the product
  grows without bound (SELU at 0-, where |phi'| = 1.76: an input within 1.76^-L of 0
  gains 1.76^2 a layer for L layers), so the expectation is dominated by inputs closer
  to the breakpoint than any node, and by units so rare that a measured batch does not
  contain them.

:func:`gradient_resolution` replays the chain once, on the rule with every panel halved
and on probes ever closer to each breakpoint, and says whether either changes the
answer: the analyzer then flags the layers of that chain as approximate rather than
print a number it cannot vouch for.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .theory import quadrature

__all__ = ["gradient_resolution", "RESOLUTION_RTOL", "SPIKE_SHARE"]

#: Halving every panel may change the expectation by at most this (relative).
RESOLUTION_RTOL = 1e-3
#: A shell around a breakpoint holding this share of the expectation is a spike the
#: nodes do not see.
SPIKE_SHARE = 1e-2
#: Probes at distances 2^-1 ... 2^-_PROBES (in units of the source's standard deviation)
#: from each breakpoint: past float64's resolution of t near 1 at 2^-52.
_PROBES = 60


def _replay(law: Any, t: np.ndarray, start: int) -> np.ndarray:
    """The product of ``act'(v)^2`` over the activation steps from step ``start`` on,
    at the source points ``t`` (plain floats: overflow gives inf, which the caller
    treats as unresolvable)."""
    v = law.mean + law.std * t
    prod = np.ones_like(t)
    with np.errstate(all="ignore"):
        for i, op in enumerate(law.ops):
            if isinstance(op, tuple):  # (scale, shift)
                v = op[0] * v + op[1]
                continue
            if i >= start:
                d = op.derivative(v)
                prod *= d * d
            v = op(v)
    return prod


def _panels(t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Edges (lo, hi) of the rule's panels, recovered from their Gauss-Legendre nodes."""
    nodes = t.reshape(-1, quadrature.NODES)
    xi = quadrature._XI
    half = (nodes[:, -1] - nodes[:, 0]) / (xi[-1] - xi[0])
    mid = nodes[:, 0] - half * xi[0]
    return mid - half, mid + half


def gradient_resolution(law: Any, start: int) -> tuple[float, float]:
    """(relative change on halving the panels, largest share of a probe shell) of
    ``E[prod of act'(v)^2 over the steps from start]`` under ``law`` (a
    :class:`~varprop.theory.unit_law.UnitLaw` with a rule). Either is inf when the
    expectation cannot be formed (it overflows, or it is 0 on the rule but not off it)."""
    rule = law.rule
    if rule is None or rule.t.size % quadrature.NODES:
        return 0.0, 0.0
    lo, hi = _panels(rule.t)
    edges = np.unique(np.concatenate([lo, hi, 0.5 * (lo + hi)]))
    t2, w2 = quadrature._nodes(edges[None, :])
    t2, w2 = t2[0], w2[0] / w2[0].sum()
    # shells [d/2, d] on either side of each breakpoint, d = 2^-j: mass ~ pdf * d / 2,
    # counted closer to the breakpoint than half the nearest node, where no node looks
    # (a bounded integrand adds at most pdf * d there: a spike adds far more)
    probes = []  # (points: the nearest node, then the probes; their distances d)
    for kink in np.asarray(rule.kinks, dtype=float):
        for side in (-1.0, 1.0):
            away = side * (rule.t - kink)
            near = float(np.min(away[away > 0], initial=np.inf))
            d = 2.0 ** -np.arange(1, _PROBES + 1)
            d = d[d <= near / 2]
            if d.size:
                probes.append((np.concatenate([[kink + side * near], kink + side * d]), d))
    # one replay of the chain for every point (its cost is the chain's length)
    points = np.concatenate([rule.t, t2] + [p for p, _ in probes])
    values = _replay(law, points, start)
    n1, n2 = rule.t.size, t2.size
    base = float(values[:n1] @ rule.w)
    fine = float(values[n1:n1 + n2] @ w2)
    if not (math.isfinite(base) and math.isfinite(fine)):
        return math.inf, math.inf
    if fine == 0.0:
        return (0.0 if base == 0.0 else math.inf), 0.0
    change = abs(fine - base) / abs(fine)
    share, at = 0.0, n1 + n2
    for p, d in probes:
        at_node, at_probes = values[at], values[at + 1:at + p.size]
        at += p.size
        t = p[1:]
        pdf = np.exp(-0.5 * t * t) / math.sqrt(2 * math.pi)
        with np.errstate(all="ignore"):
            # what the rule's polynomial cannot know: the excess over the value at the
            # nearest node (a smooth, bounded integrand has next to none)
            missed = float(np.sum(np.maximum(at_probes - at_node, 0.0) * pdf * d / 2))
        if not math.isfinite(missed):
            return change, math.inf
        share = max(share, missed / abs(fine))
    return change, share


def unresolved(law: Any, start: int) -> bool:
    """True when the rule misses part of the expectation (see the module doc)."""
    change, share = gradient_resolution(law, start)
    return change > RESOLUTION_RTOL or share > SPIKE_SHARE
