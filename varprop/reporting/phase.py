"""The mean-field phase diagram of an activation over (sigma_w2, sigma_b2).

For each point of a grid this computes the fixed point ``q*`` of the length map, the
gradient factor ``chi_1`` there, and the correlation depth scale ``xi_c`` (Schoenholz et
al. 2017, arXiv 1611.01232): ``6 xi_c`` is about the deepest trainable network. The edge
of chaos ``chi_1 = 1`` comes from :func:`varprop.theory.edge_of_chaos` point by point.

:func:`varprop.theory.depth_scales` answers one point at a time, and in the chaotic phase
of tanh or sigmoid that costs ~0.1 s (nested adaptive quadrature inside a root search):
a 41 x 31 grid would take minutes. The grid is computed vectorized instead, with the same
definitions:

* ``q*`` (from ``q0 = 1``) is :func:`varprop.theory.fixed_point` itself, given the whole
  grid of ``(sigma_w2, sigma_b2)`` at once, and ``chi_1 = sigma_w2 E[phi'(sqrt(q*) z)^2]``
  comes from :func:`varprop.theory.gaussian_moments`;
* ordered phase (``chi_1 <= 1``): ``xi_c = -1 / log chi_1``;
* chaotic phase: ``c*`` (first root of the correlation map from ``c0 = 0``) and
  ``chi_c = sigma_w2 E[phi'(u1) phi'(u2)]`` at ``c*`` from Mehler's series (the dual
  activation, :class:`_DualKernel`), or from
  :func:`~varprop.theory.gaussian_cross_moments` for units whose derivative jumps
  (relu-likes, selu), then ``xi_c = -1 / log chi_c``.

tests/test_report.py checks the grid against :func:`~varprop.theory.depth_scales` point
by point (the slope ``exp(-1/xi_c)`` to 1e-6).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
from ..activations import Activation, get_activation
from ..theory import (NoEdgeOfChaosError, edge_of_chaos, fixed_point, gaussian_cross_moments,
                      gaussian_moments)
from ..theory.meanfield import depth_scale
from .._json import json_number

__all__ = ["PhaseDiagram", "phase_diagram", "default_sigma_w2_range", "PHASE_SCHEMA_VERSION",
           "MAX_RESOLUTION", "estimate_phase_bytes"]

PHASE_SCHEMA_VERSION = 1


@dataclass
class PhaseDiagram:
    """The grid (``xi_c[i, j]`` at ``sigma_b2[i]``, ``sigma_w2[j]``) and the edge."""

    activation: str
    sigma_w2: np.ndarray
    sigma_b2: np.ndarray
    q_star: np.ndarray
    chi1: np.ndarray
    xi_c: np.ndarray
    edge_sigma_b2: np.ndarray
    edge_sigma_w2: np.ndarray  # NaN where there is no edge of chaos
    edge_q_star: np.ndarray
    notes: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    created: str = ""
    command: str = ""
    version: str = ""

    @property
    def trainable_depth(self) -> np.ndarray:
        """``6 xi_c``: inf at the edge of chaos, NaN where ``q*`` diverges."""
        return 6.0 * self.xi_c

    def to_dict(self) -> dict[str, Any]:
        def grid(a: np.ndarray) -> list[list[Any]]:
            return [[json_number(v) for v in row] for row in a]

        return {
            "schema": "varprop-phase",
            "schema_version": PHASE_SCHEMA_VERSION,
            "varprop_version": self.version,
            "created": self.created,
            "command": self.command,
            "activation": self.activation,
            "sigma_w2": [float(v) for v in self.sigma_w2],
            "sigma_b2": [float(v) for v in self.sigma_b2],
            "q_star": grid(self.q_star),
            "chi1": grid(self.chi1),
            "xi_c": grid(self.xi_c),
            "trainable_depth": grid(self.trainable_depth),
            "edge": [{"sigma_b2": float(b), "sigma_w2": json_number(w), "q_star": json_number(q)}
                     for b, w, q in zip(self.edge_sigma_b2, self.edge_sigma_w2, self.edge_q_star)],
            "notes": list(self.notes),
            "timings": {k: json_number(v) for k, v in self.timings.items()},
        }


def default_sigma_w2_range(activation: "str | Activation", sigma_b2_max: float) -> tuple[float, float]:
    """``(0, max(4, 2 x the largest edge of chaos for sigma_b2 in {0, max}))``."""
    act = get_activation(activation)
    edges = []
    for sb in (0.0, sigma_b2_max):
        try:
            edges.append(edge_of_chaos(act, sb))
        except NoEdgeOfChaosError:
            pass
    top = max([4.0, *(2.0 * e for e in edges if math.isfinite(e))])
    return 0.0, float(top)


class _DualKernel:
    """The dual activation of ``f`` (Daniely et al. 2016, arXiv 1602.05897): for u1, u2 of
    variance q and correlation c, Mehler's formula gives

        E[f(u1) f(u2)] = sum_k alpha_k^2 c^k,   alpha_k = E[f(sqrt(q) Z) He_k(Z)] / sqrt(k!)

    so once the Hermite coefficients of ``f(sqrt(q) .)`` are known, the correlation map
    and ``chi_c`` are power series in c, cheap to evaluate and to solve. The coefficients
    are :class:`~varprop.theory.hermite_pairs.HermiteBasis`'s (composite Gauss-Legendre
    over +-14 standard deviations, panels of 0.1 with edges at 0, where the registry's
    kinks sit, resolving features of f as narrow as 1/sqrt(q) ~ 0.1). Truncation at
    ``K = 1000`` leaves ``sum_{k>K} alpha_k^2 c^k``, below 1e-8 of the total for the
    c* < 1 of the chaotic phase (tests compare with :func:`~varprop.theory.depth_scales`).
    """

    def __init__(self, order: int = 1000) -> None:
        from ..theory.hermite_pairs import hermite_basis
        self.basis = hermite_basis(order)

    def spectrum(self, fn: Callable[[np.ndarray], np.ndarray], s: np.ndarray) -> np.ndarray:
        """``alpha_k^2`` for each standard deviation in ``s``: shape (len(s), K+1)."""
        return self.basis.coefficients(fn, 0.0, s) ** 2


def _series(coef2: np.ndarray, c: np.ndarray) -> np.ndarray:
    """sum_k coef2[:, k] c^k (Horner), row by row."""
    out = np.zeros(coef2.shape[0])
    for k in range(coef2.shape[1] - 1, -1, -1):
        out = out * c + coef2[:, k]
    return out


def _chaotic_chi_c(act: Activation, q: np.ndarray, sw: np.ndarray, sb: np.ndarray,
                   length: np.ndarray) -> np.ndarray:
    """chi_c at the stable correlation c* < 1 reached from c0 = 0 (chaotic phase)."""
    dual = _DualKernel()
    s = np.sqrt(q)
    a2 = dual.spectrum(act, s)
    b2 = None if _derivative_jumps(act) else dual.spectrum(act.derivative, s)

    def G(c: np.ndarray, rows: np.ndarray) -> np.ndarray:
        return (sw[rows] * _series(a2[rows], c) + sb[rows]) / length[rows] - c

    n = q.size
    cstar = np.zeros(n)
    idx = np.flatnonzero(G(np.zeros(n), np.arange(n)) > 1e-14)
    lo, hi = np.zeros(idx.size), np.ones(idx.size)
    found = np.zeros(idx.size, bool)
    # the first sign change of G on a grid that crowds towards 1, then bisection
    for cv in np.concatenate([np.arange(1, 16) / 16, 1 - 2.0 ** -np.arange(5, 40)]):
        todo = np.flatnonzero(~found)
        if todo.size == 0:
            break
        hit = G(np.full(todo.size, cv), idx[todo]) <= 0
        hi[todo[hit]] = cv
        found[todo[hit]] = True
        lo[todo[~hit]] = cv
    for _ in range(50):
        mid = 0.5 * (lo + hi)
        up = G(mid, idx) > 0
        lo, hi = np.where(up, mid, lo), np.where(up, hi, mid)
    cstar[idx] = np.where(found, 0.5 * (lo + hi), 1.0)
    jumps = _derivative_jumps(act)
    # Rows to finish on the exact correlation map: every row of a unit whose phi' jumps
    # at 0 (relu-likes, selu: the Hermite coefficients of phi' decay like k^-3/4, so the
    # truncated series misplaces c* near 1), and, for smooth units, the rows whose
    # truncation tail is not negligible (c* close to 1, near the edge of chaos).
    rows = np.flatnonzero(np.ones(n, bool) if jumps else _tail_matters(a2, b2, cstar))
    chi_c = np.empty(n) if jumps else sw * _series(b2, cstar)
    if rows.size:
        chi_c[rows] = _exact_chi_c(act, q[rows], sw[rows], sb[rows], length[rows], cstar[rows])
    return chi_c


#: The relative size of the series' truncated tail above which a row is finished on the
#: exact correlation map (the series is kept, for speed, where its tail is below this).
_TAIL_TOL = 1e-10


def _tail_matters(a2: np.ndarray, b2: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Rows whose truncated Mehler tail ``sum_{k>K} coef_k c^k`` may exceed
    :data:`_TAIL_TOL` of the sum, for phi's or phi''s coefficients. The coefficients of
    the registry's smooth units decrease beyond K, so the tail is at most
    ``coef_K c^(K+1) / (1 - c)``."""
    K = a2.shape[1] - 1
    with np.errstate(divide="ignore", invalid="ignore", over="ignore", under="ignore"):
        geo = np.where(c < 1.0, c ** (K + 1) / (1.0 - c), np.inf)
        worst = np.zeros(c.shape)
        for coef in (a2, b2):
            total = _series(coef, c)
            worst = np.maximum(worst, np.where(total > 0, coef[:, -1] * geo / total, np.inf))
    return ~(worst <= _TAIL_TOL)


def _exact_chi_c(act: Activation, q: np.ndarray, sw: np.ndarray, sb: np.ndarray,
                 length: np.ndarray, cstar: np.ndarray) -> np.ndarray:
    """chi_c from Newton on the exact correlation map, started at the series' c*:
    c_map'(c) = sigma_w2 q E[phi' phi'] / T(q) (Price's theorem), which at q = q* is
    chi_c itself, so one call gives both the step and the answer."""
    cstar = cstar.copy()
    # Newton converges quadratically inside the chaotic phase but only linearly at its
    # edge (chi_c -> 1, a double root at c = 1), so rows iterate until their step is
    # below 1e-13 (at most 60 steps), not a fixed count.
    todo = np.arange(cstar.size)
    for _ in range(60):
        if todo.size == 0:
            break
        c, qt, swt = cstar[todo], q[todo], sw[todo]
        cm = gaussian_cross_moments(act, qt, qt, np.clip(c, -1.0, 1.0))
        chi_c = swt * np.asarray(cm.e_dphi_dphi, dtype=float) * qt / length[todo]
        resid = (swt * np.asarray(cm.e_phi_phi, dtype=float) + sb[todo]) / length[todo] - c
        with np.errstate(divide="ignore", invalid="ignore"):
            step = np.where(chi_c != 1.0, resid / (chi_c - 1.0), 0.0)
        step = np.where(np.isfinite(step) & (c > 0), step, 0.0)
        cstar[todo] = np.clip(c - step, 0.0, 1.0 - 1e-15)
        todo = todo[np.abs(step) > 1e-13]
    cm = gaussian_cross_moments(act, q, q, cstar)
    return sw * np.asarray(cm.e_dphi_dphi, dtype=float)


def _derivative_jumps(act: Activation) -> bool:
    d = act.derivative(np.array([-1e-9, 1e-9]))
    return bool(abs(d[1] - d[0]) > 1e-6)


def phase_diagram(activation: "str | Activation", *,
                  sigma_w2: tuple[float, float] | None = None,
                  sigma_b2: tuple[float, float] = (0.0, 1.0),
                  resolution: tuple[int, int] = (61, 41), edge_points: int = 13,
                  progress: Callable[[float, str], None] | None = None) -> PhaseDiagram:
    """The phase diagram of ``activation`` (see the module doc).

    Args:
        sigma_w2: (low, high) of the weight variance ``n Var[W]``; default
            :func:`default_sigma_w2_range`.
        sigma_b2: (low, high) of the bias variance.
        resolution: grid points along (sigma_w2, sigma_b2).
        edge_points: sigma_b2 values where the edge of chaos is solved for exactly.
    """
    import time

    t0 = time.perf_counter()
    act = get_activation(activation)
    if sigma_w2 is None:
        sigma_w2 = default_sigma_w2_range(act, sigma_b2[1])
    nw, nb = resolution
    sw_axis = np.linspace(sigma_w2[0], sigma_w2[1], nw)
    sb_axis = np.linspace(sigma_b2[0], sigma_b2[1], nb)
    SW, SB = np.meshgrid(sw_axis, sb_axis)
    sw, sb = SW.ravel(), SB.ravel()
    if progress:
        progress(0.05, "length map")
    q = np.asarray(fixed_point(act, sw, sb), dtype=float)  # the theory's solver, q0 = 1
    finite = np.isfinite(q)
    moments = gaussian_moments(act, q[finite])
    e_phi2 = np.full(q.shape, math.nan)
    e_phi2[finite] = moments.e_phi2
    chi1 = np.full(q.shape, math.nan)
    chi1[finite] = sw[finite] * moments.e_dphi2
    slope = chi1.copy()
    chaotic = finite & (chi1 > 1.0)
    if progress:
        progress(0.25, "correlation map")
    if chaotic.any():
        qc = q[chaotic]
        length = sw[chaotic] * e_phi2[chaotic] + sb[chaotic]  # T(q*) = q* up to tol
        slope[chaotic] = _chaotic_chi_c(act, qc, sw[chaotic], sb[chaotic], length)
    xi = depth_scale(slope)
    t_grid = time.perf_counter() - t0
    if progress:
        progress(0.6, "edge of chaos")
    # crowded towards sigma_b2 = 0, where the edge bends fastest
    t = np.linspace(0.0, 1.0, max(edge_points, 1)) ** 2 if edge_points > 1 else np.zeros(1)
    eb = sigma_b2[0] + (sigma_b2[1] - sigma_b2[0]) * t
    ew, eq = np.full(eb.size, math.nan), np.full(eb.size, math.nan)
    notes: list[str] = []
    for i, b in enumerate(eb):
        try:
            ew[i] = edge_of_chaos(act, float(b))
            eq[i] = fixed_point(act, ew[i], float(b))
        except NoEdgeOfChaosError as exc:
            if not notes or i == 1:
                notes.append(f"sigma_b2 = {b:g}: {exc}")
        if progress:
            progress(0.6 + 0.4 * (i + 1) / eb.size, "edge of chaos")
    if np.any(~finite):
        notes.append("grey: the length map diverges (q* = inf), so there is no fixed point "
                     "and no depth scale")
    shape = (nb, nw)
    return PhaseDiagram(act.name, sw_axis, sb_axis, q.reshape(shape), chi1.reshape(shape),
                        xi.reshape(shape), eb, ew, eq, notes,
                        {"grid_s": t_grid, "total_s": time.perf_counter() - t0})


#: The largest grid size along either axis ``varprop phase --resolution`` accepts (a
#: 1000 x 1000 grid already needs ~20 GB and the better part of an hour).
MAX_RESOLUTION = 1000

#: Bytes per grid point at the peak: the squared Hermite spectra of phi and phi'
#: (2 x 1001 float64 per chaotic point) and the grid's own arrays (measured ~14 KB).
_BYTES_PER_POINT = 2 * 1001 * 8 + 4096
_BASE_BYTES = 64 * 2**20


def estimate_phase_bytes(resolution: tuple[int, int]) -> float:
    """About how much memory :func:`phase_diagram` needs for ``resolution`` (worst
    case: every grid point in the chaotic phase), as a float."""
    nw, nb = resolution
    return _BASE_BYTES + float(nw) * float(nb) * _BYTES_PER_POINT
