"""What the recurrent layer's rules share (:mod:`varprop.layers.recurrent`): the reads
the layers above hand back, the checks on the inputs and reads across steps, the pooled
values of a profile row, the flags kept for the profile, and the measured statistics
(docs/recurrent.md, section 8)."""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

from ._spatial import PairGradient, SpatialGradient

__all__ = ["input_state_pairs", "correlated_fresh", "reads_from", "scaled",
           "independent_reads", "pooled_over_steps", "keep_flags", "step_stats",
           "PooledStats"]


class PooledStats(NamedTuple):
    """What :meth:`SeedRun.record_forward` reads of a kernel's statistics."""

    z_pooled_mean: float
    z_pooled_var: float
    a_pooled_mean: float
    a_pooled_var: float
    z_mean: np.ndarray
    z_var: np.ndarray



def input_state_pairs(act: Any, field: dict[str, np.ndarray], z_pair: np.ndarray
                           ) -> np.ndarray:
    """``E[h_t h'_t]`` per step of two correlated inputs: the bivariate Gaussian of
    ``(z_t, z'_t)``, each with the step's mean and variance, and ``E[z_t z'_t] =
    z_pair[t]``."""
    from ..theory.gaussian import gaussian_cross_moments
    out = np.empty(len(z_pair))
    for t, (mean, var) in enumerate(zip(field["z_mean"], field["z_var"])):
        cov = min(z_pair[t] - mean * mean, var)
        out[t] = float(gaussian_cross_moments(act, var, var, q12=cov, mean=mean).e_phi_phi)
    return out


def correlated_fresh(s: Any, steps: int) -> bool:
    """True unless the input's pairs of steps are known to be the means' products only
    (independent fluctuations per step: white noise, or what zero-mean weights make of
    it, whose taps reading one input have independent weights)."""
    if s.cross is None:
        return steps > 1
    mu = np.asarray(s.mean, np.float64).reshape(steps)
    off = np.asarray(s.cross, np.float64) - np.outer(mu, mu)
    np.fill_diagonal(off, 0.0)
    top = float(np.max(np.abs(s.second))) if np.size(s.second) else 0.0
    return bool(np.any(np.abs(off) > 1e-12 * max(top, 1e-300)))


def reads_from(g: Any, steps: int) -> np.ndarray:
    """Var dL/dh_t per step from the layers above: a per-step map (every state handed
    on) or the last state's variance."""
    if isinstance(g, SpatialGradient):
        return np.asarray(g.total(), dtype=np.float64).reshape(steps)
    reads = np.zeros(steps)
    reads[-1] = float(g.total())
    return reads


def scaled(k: float, values: np.ndarray) -> np.ndarray:
    """``k * values`` with ``0 * inf = 0`` (nothing read is nothing sent back)."""
    with np.errstate(invalid="ignore", over="ignore"):
        return np.where((values == 0.0) | (k == 0.0), 0.0, k * values)


def independent_reads(g: Any) -> bool:
    """True when the reads' pairs of steps came back and are uncorrelated."""
    if not isinstance(g, PairGradient):
        return False
    off = g.pairs - np.diag(np.diag(g.pairs))
    return not np.any(off)


def pooled_over_steps(mean: np.ndarray, var: np.ndarray) -> tuple[float, float]:
    """``(mean, variance)`` over every step's entries, as the measurement pools them."""
    m = float(np.mean(mean))
    with np.errstate(over="ignore", invalid="ignore"):
        v = float(np.mean(var + mean * mean)) - m * m
    return m, max(v, 0.0) if math.isfinite(v) else v


def keep_flags(analyzer: Any, index: int, flags: dict[str, list[int]], regime: Any) -> None:
    """The steps where the recurrent theory is approximate, kept by layer for the
    profile's ``meta["approximations"]`` (:mod:`varprop._analytic_spatial`)."""
    found = getattr(analyzer, "recurrent_flags", None)
    if found is None:
        found = analyzer.recurrent_flags = {}
    found[index] = ({cause: steps for cause, steps in flags.items() if steps},
                    regime if regime is not None and regime.layers else None)


def step_stats(z: np.ndarray, h: np.ndarray) -> PooledStats:
    """Pooled and per-unit statistics of ``(T, B, H)`` pre-activations and states,
    accumulated in float64 (an overflowed entry makes the pooled variance inf or NaN,
    which the profile reports)."""
    from .._empirical_run import pooled_var
    units = z.shape[-1]
    flat = z.reshape(-1, units)
    return PooledStats(float(np.mean(z, dtype=np.float64)), pooled_var(z),
                        float(np.mean(h, dtype=np.float64)), pooled_var(h),
                        flat.mean(axis=0, dtype=np.float64),
                        flat.var(axis=0, dtype=np.float64))
