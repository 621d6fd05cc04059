"""The gradient's pixel pairs: ``G[p, q] = E[dL/du_p dL/du_q]`` for two pixels of one
channel and one sample, carried backward from the readout to an overlapping max pooling,
whose rule needs the covariance of the gradients of two windows that share a tap
(docs/theory.md, section 8, "Overlapping windows").

Under gradient independence (zero-mean weights, drawn independently for the backward
pass) each rule is the pixel-pair version of the per-pixel rule of :mod:`.spatial`:

* a dense readout after a Flatten: every (pixel, channel) has its own row of weights,
  so ``G`` is diagonal;
* a global average pool: every pixel of a channel receives the same ``dL/dy / P``, so
  ``G[p, q] = Var[dL/dy] / P^2`` for every pair;
* an activation: ``G[p, q] <- E[phi'(z_p) phi'(z_q)] G[p, q]``, the expectation over the
  bivariate Gaussian of ``(z_p, z_q)`` from the forward pixel pairs (:func:`dphi_pairs`);
* a convolution: the same tap and channel meet the same weight in two outputs, so
  ``G_in = (v + m^2) C_out sum_k S_k G_out S_k^T`` with ``S_k[i, o] = 1`` where tap
  ``k`` of output ``o`` reads pixel ``i`` (:func:`conv_backward_pairs`);
* an average pooling (linear): ``G_in = A^T G_out A``.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
from scipy.special import ndtr

from .spatial import SpatialMoments, tap_sources
from .spatial_gauss import bvn

__all__ = ["conv_backward_pairs", "dphi_pairs", "global_avg_pool_backward_pairs",
           "avg_pool_backward_pairs"]


def conv_backward_pairs(g_out: np.ndarray, *, w_mean: float, w_var: float,
                        out_channels: int, kernel: Sequence[int], stride: Sequence[int],
                        padding_pairs: Sequence[tuple[int, int]], dilation: Sequence[int],
                        in_spatial: Sequence[int]) -> np.ndarray:
    """``(P_in, P_in)`` gradient pairs before a convolution from the ``(P_out, P_out)``
    pairs after it: ``(v + m^2) C_out sum_k S_k G S_k^T`` (module doc; the factor is the
    per-pixel rule's, whose diagonal this reproduces)."""
    src, _ = tap_sources(in_spatial, kernel, stride, padding_pairs, dilation)
    p = math.prod(in_spatial)
    g = np.asarray(g_out, dtype=np.float64)
    acc = np.zeros((p + 1, p + 1))
    for tap in src:
        # one tap reads distinct pixels for distinct outputs; only the padding index p
        # repeats, and its row and column are dropped
        acc[np.ix_(tap, tap)] += g
    factor = (w_var + w_mean * w_mean) * out_channels
    return factor * acc[:p, :p]


def global_avg_pool_backward_pairs(g: float, spatial: Sequence[int]) -> np.ndarray:
    """Every pixel of a channel gets ``dL/dy / P``: all pairs ``Var[dL/dy] / P^2``."""
    p = math.prod(spatial)
    return np.full((p, p), g / (p * p))


def avg_pool_backward_pairs(g_out: np.ndarray, pool: Sequence[int], stride: Sequence[int],
                            pads: Sequence[tuple[int, int]], include_pad: bool,
                            spatial: Sequence[int]) -> np.ndarray:
    """``A^T G A`` with ``A`` the ``(outputs, P)`` window averages of
    :func:`~varprop.theory.spatial_pool.avg_pool_forward` (padding dropped)."""
    from .spatial_pool import _averager
    src, _ = tap_sources(spatial, pool, stride, pads, (1,) * len(pool))
    p = math.prod(spatial)
    a = _averager(src, p, include_pad)[:, :p]
    return a.T @ np.asarray(g_out, float) @ a


def _piecewise(act: Any, m1: np.ndarray, m2: np.ndarray, s1: np.ndarray, s2: np.ndarray,
               rho: np.ndarray) -> np.ndarray:
    """``phi' = a + c 1{x > 0}`` (slopes a left, a + c right of 0):
    ``a^2 + a c (P(X > 0) + P(Y > 0)) + c^2 P(X > 0, Y > 0)``, the orthant probability
    by Owen's T (:func:`~varprop.theory.spatial_gauss.bvn`); a constant unit (s = 0)
    takes the kernels' derivative at its value (relu'(0) = 0)."""
    left, right = act.slopes
    c = right - left
    with np.errstate(divide="ignore", invalid="ignore"):
        h1 = np.where(s1 > 0, m1 / np.where(s1 > 0, s1, 1.0), np.where(m1 > 0, np.inf, -np.inf))
        h2 = np.where(s2 > 0, m2 / np.where(s2 > 0, s2, 1.0), np.where(m2 > 0, np.inf, -np.inf))
    p1, p2 = ndtr(h1), ndtr(h2)
    both = np.where((s1 > 0) & (s2 > 0), bvn(np.clip(h1, -40, 40), np.clip(h2, -40, 40), rho),
                    p1 * p2)
    return left * left + left * c * (p1 + p2) + c * c * both


def _nested(act: Any, m1: np.ndarray, m2: np.ndarray, s1: np.ndarray, s2: np.ndarray,
            c: np.ndarray) -> np.ndarray:
    """``E_X[phi'(X) h(X)]``, ``h(x) = E[phi'(Y) | X = x]`` a one-dimensional Gaussian
    expectation (closed form or quadrature) of the conditional law: section 4's nested
    integral with ``phi'`` for ``phi``, the outer rule refined at the kink and where the
    conditional mean crosses 0, as for the forward pairs
    (:func:`varprop.theory.spatial_gauss.pair_cross`)."""
    from . import quadrature
    from .gaussian import expect
    sd = s2 * np.sqrt((1.0 - c) * (1.0 + c))
    slope = c * s2 / s1
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        tc = np.where(slope != 0.0, (m1 * slope - m2) / np.where(slope != 0, slope, 1.0)
                      / s1 - m1 / s1, np.inf)
        width = np.maximum(np.minimum(sd, quadrature.X_WIDTH), 1e-8 * quadrature.X_WIDTH)
        d_min = np.where(slope != 0.0, width / np.abs(slope * s1), np.inf)

    def integrand(x: np.ndarray, t: np.ndarray, rows: np.ndarray) -> list[np.ndarray]:
        mu = m2[rows, None] + slope[rows, None] * (x - m1[rows, None])
        sd_rows = np.broadcast_to(sd[rows, None], mu.shape)
        h = expect(act, ("dphi",), mu.ravel(), sd_rows.ravel())["dphi"].reshape(mu.shape)
        return [np.asarray(act.derivative(x), float) * h]

    with np.errstate(over="ignore", invalid="ignore"):
        return quadrature.integrate(integrand, m1, s1, 1, extra_centres=[(tc, d_min)])[0]


def dphi_pairs(z: SpatialMoments, act: Any, dphi2: np.ndarray,
               need: np.ndarray | None = None) -> np.ndarray:
    """``(P, P)`` matrix of ``E[phi'(z_p) phi'(z_q)]`` over the bivariate Gaussian of each
    pixel pair (``z.cross`` carried), with ``dphi2`` (``E[phi'^2]``) on the diagonal.
    ``need`` (``(P, P)`` bool): the pairs wanted (the others are left 0). Piecewise-linear
    activations in closed form, others by a nested integral (tanh, elu, selu, gelu, silu,
    softplus, sigmoid: within 1e-14 of two-dimensional adaptive integration), each
    distinct pair (rounded to 1e-13: a map's interior repeats them) once."""
    if z.cross is None:
        raise ValueError("z: the pixel pairs (z.cross) are needed for the gradient pairs")
    m = z.mean.ravel()
    q = z.var.ravel()
    p = m.size
    out = np.zeros((p, p))
    iu = np.triu_indices(p, k=1)
    if need is not None:
        keep = need[iu] | need.T[iu]
        iu = (iu[0][keep], iu[1][keep])
    if iu[0].size:
        s = np.sqrt(q)
        cov = z.cross[iu] - m[iu[0]] * m[iu[1]]
        den = s[iu[0]] * s[iu[1]]
        with np.errstate(divide="ignore", invalid="ignore"):
            rho = np.clip(np.where(den > 0, cov / np.where(den > 0, den, 1.0), 0.0), -1, 1)
        stats = np.stack([m[iu[0]], m[iu[1]], s[iu[0]], s[iu[1]], rho], axis=1)
        _, first, inverse = np.unique(np.round(stats, 13), axis=0, return_index=True,
                                      return_inverse=True)
        m1, m2, s1, s2, r = stats[first].T
        if act.piecewise_linear:
            vals = _piecewise(act, m1, m2, s1, s2, r)
        else:
            vals = np.empty(m1.size)
            indep = (s1 == 0) | (s2 == 0) | (r == 0)  # a point mass, or no correlation
            if np.any(indep):
                from .gaussian import expect
                d1 = expect(act, ("dphi",), m1[indep], s1[indep])["dphi"]
                vals[indep] = d1 * expect(act, ("dphi",), m2[indep], s2[indep])["dphi"]
            if np.any(~indep):
                vals[~indep] = _nested(act, *(v[~indep] for v in (m1, m2, s1, s2, r)))
        pair = vals[inverse.ravel()]
        out[iu] = pair
        out[(iu[1], iu[0])] = pair
    out[np.diag_indices(p)] = np.asarray(dphi2, float).ravel()
    return out
