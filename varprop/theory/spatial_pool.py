"""Pooling in the per-pixel theory (docs/theory.md, section 8).

Average pooling is linear: its output's moments are averages of the input's pixel pairs,
``E[y y'] = A E[x x'] A^T``, and global average pooling is the average over all of them.
Max pooling of correlated Gaussians is not Gaussian: each window's maximum after the
activation is integrated by :func:`~varprop.theory.spatial_max.window_max` (Clark 1961
for two taps without an activation; up to four taps, or independent ones, by
deterministic quadratures accurate to 1e-10; larger correlated windows by a
quasi-Monte-Carlo rule, about 1e-3). The same
integrals give the share of a window's gradient each tap receives. Backward (gradient
independence), a pixel's gradient variance sums over the windows that hold it. A max
pooling behind a skip connection integrates its window's joint law along the identity
path instead (:func:`max_pool_chain_forward`, :mod:`.spatial_chain`; docs/theory.md,
section 8, "Max pooling behind a skip connection").
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from .gaussian import gaussian_moments
from .spatial import SpatialMoments, tap_sources
from .spatial_max import QMC_POINTS, clark_max_moments, window_max

__all__ = ["max_pool_input_pairs", "avg_pool_forward", "avg_pool_backward", "global_avg_pool",
           "global_avg_pool_backward", "max_pool_forward", "max_pool_backward",
           "max_pool_chain_forward", "max_pool_chain_backward", "clark_max_moments",
           "QMC_POINTS"]


def _pairs(s: SpatialMoments) -> tuple[np.ndarray, bool]:
    """E[x_p x_q] with a zero row and column for the padding; exact when carried, else
    independent pixels (the diagonal and the means' products): not exact."""
    p = math.prod(s.spatial)
    out = np.zeros((p + 1, p + 1))
    if s.cross is not None:
        out[:p, :p] = s.cross
        return out, True
    m = s.mean.ravel()
    out[:p, :p] = np.outer(m, m)
    out[np.arange(p), np.arange(p)] = s.second.ravel()
    return out, False


def _averager(src: np.ndarray, p: int, include_pad: bool) -> np.ndarray:
    """The ``(outputs, P + 1)`` matrix that averages each window."""
    k, n_out = src.shape
    a = np.zeros((n_out, p + 1))
    inside = (src < p).sum(axis=0)
    count = np.full(n_out, float(k)) if include_pad else inside.astype(float)
    for tap in src:
        np.add.at(a, (np.arange(n_out), tap), 1.0 / count)
    a[:, p] = 0.0
    return a


def avg_pool_forward(s: SpatialMoments, pool: Sequence[int], stride: Sequence[int],
                     pads: Sequence[tuple[int, int]], include_pad: bool) -> SpatialMoments:
    """Average pooling: linear in the pixels, so ``E[y y'] = A E[x x'] A^T``."""
    src, out = tap_sources(s.spatial, pool, stride, pads, (1,) * len(pool))
    p = math.prod(s.spatial)
    a = _averager(src, p, include_pad)
    pairs, exact = _pairs(s)
    mean = a @ np.append(s.mean.ravel(), 0.0)
    cross = a @ pairs @ a.T
    return SpatialMoments(mean.reshape(out), np.diag(cross).reshape(out).copy(),
                          cross if s.cross is not None else None, gaussian=s.gaussian,
                          exact=s.exact and exact)


def avg_pool_backward(g: np.ndarray, pool: Sequence[int], stride: Sequence[int],
                      pads: Sequence[tuple[int, int]], include_pad: bool,
                      spatial: Sequence[int]) -> np.ndarray:
    """Var[dL/dx_i] = sum over the windows o holding i of Var[dL/dy_o] / count_o^2."""
    src, _ = tap_sources(spatial, pool, stride, pads, (1,) * len(pool))
    p = math.prod(spatial)
    a = _averager(src, p, include_pad)
    return ((a * a).T @ np.asarray(g, float).ravel())[:p].reshape(tuple(spatial))


def global_avg_pool(s: SpatialMoments) -> tuple[float, float]:
    """``(mean, variance)`` of a channel's mean over all pixels."""
    pairs, _ = _pairs(s)
    p = math.prod(s.spatial)
    mean = float(np.mean(s.mean))
    second = float(pairs[:p, :p].sum()) / (p * p)
    return mean, max(second - mean * mean, 0.0)


def global_avg_pool_backward(g: float, spatial: Sequence[int]) -> np.ndarray:
    """dL/dx_p = dL/dy / P at every pixel: Var = g / P^2."""
    p = math.prod(spatial)
    return np.full(tuple(spatial), g / (p * p))


def _members(src: np.ndarray, p: int) -> np.ndarray:
    """``(outputs, P)``: each window's pixels, weighted to sum to 1."""
    n_out = src.shape[1]
    member = np.zeros((n_out, p + 1))
    for tap in src:
        np.add.at(member, (np.arange(n_out), tap), 1.0)
    member = member[:, :p]
    return member / np.maximum(member.sum(axis=1, keepdims=True), 1.0)


def max_pool_forward(z: SpatialMoments, act: Any, pool: Sequence[int],
                     stride: Sequence[int], pads: Sequence[tuple[int, int]], *,
                     wins: bool = False) -> tuple:
    """Max pooling of ``a = phi(z)`` (``z`` the pre-activation, ``act`` the activation
    between them, linear if none; padding is ``-inf``, never the maximum).

    Returns ``(y, route)`` and, with ``wins=True``, ``(y, route, win)``:

    * ``y``: the output's moments, per window by :func:`~varprop.theory.spatial_max.
      window_max` from the window's means and covariances (``z.cross``); gaussian=False;
    * ``route`` ``(taps, outputs)``: ``E[1{tap wins} phi'(z_tap)^2] / E[phi'(z_tap)^2]``,
      what :func:`max_pool_backward` multiplies by before the activation's rule
      multiplies by ``E[phi'^2]``. Not ``P(tap wins)``: winning and ``phi'`` are
      correlated (tanh's slope is smallest where it wins);
    * ``win`` ``(taps, outputs)``: ``P(tap is the argmax)`` as PyTorch picks it (the
      first maximal tap in window order: after relu a window whose z are all < 0 sends
      its gradient to its first tap). Padded taps: 0.

    ``y.exact`` is False where a window's covariance was not known (``z.cross`` None:
    independent pixels assumed), where the quasi-Monte-Carlo rule served, and whenever
    pixel pairs are returned: those between two windows are the Gaussian approximation
    (each window's maximum taken as Gaussian, correlated as the windows' pixels are on
    average). The per-pixel moments of windows of up to four taps are accurate to 1e-10.
    """
    src, out = tap_sources(z.spatial, pool, stride, pads, (1,) * len(pool))
    p = math.prod(z.spatial)
    pairs, have_pairs = _pairs(z)
    mean_in = np.append(z.mean.ravel(), 0.0)
    d2 = np.asarray(gaussian_moments(act, z.var.ravel(), mean=z.mean.ravel()).e_dphi2, float)
    d2 = np.append(d2, 0.0)
    n_out = src.shape[1]
    e1, e2 = np.empty(n_out), np.empty(n_out)
    route = np.zeros((src.shape[0], n_out))
    win = np.zeros((src.shape[0], n_out))
    exact = z.exact and z.gaussian and have_pairs
    cache: dict[bytes, tuple] = {}
    linear = getattr(act, "name", "") == "linear"
    for o in range(n_out):
        taps = src[:, o]
        keep = np.flatnonzero(taps < p)  # padded taps are -inf: never the maximum
        idx = taps[keep]
        mu = mean_in[idx]
        cov = pairs[np.ix_(idx, idx)] - np.outer(mu, mu)
        key = np.concatenate([mu, cov.ravel()]).round(14).tobytes()
        if key not in cache:
            res = window_max(mu, cov, act)
            if linear and idx.size == 2:  # Clark's closed form (the rules agree to 1e-9)
                res = (*clark_max_moments(mu[0], mu[1], cov[0, 0], cov[1, 1], cov[0, 1]),
                       *res[2:])
            cache[key] = res
        a, b, routed, won, accurate = cache[key]
        exact = exact and accurate
        e1[o], e2[o] = a, b
        win[keep, o] = won
        with np.errstate(invalid="ignore", divide="ignore"):
            route[keep, o] = np.where(d2[idx] > 0, routed / np.where(d2[idx] > 0, d2[idx], 1),
                                      0.0)
    cross = None
    if z.cross is not None:  # the Gaussian approximation between windows
        cross = _between_windows(pairs, mean_in, src, p, e1, e2)
        exact = False
    y = SpatialMoments(e1.reshape(out), e2.reshape(out), cross, gaussian=False, exact=exact)
    return (y, route, win) if wins else (y, route)


def max_pool_input_pairs(z: SpatialMoments, act: Any, pool: Sequence[int],
                         stride: Sequence[int], pads: Sequence[tuple[int, int]],
                         window_means: np.ndarray) -> np.ndarray | None:
    """``E[M_o M'_o']`` of two correlated inputs' window maxima (``M = max phi(z)`` over
    window ``o`` of one input, ``M'`` over window ``o'`` of the other), ``(outputs,
    outputs)``: the correlation map through a max pooling. The two windows' ``2k``
    pre-activations are jointly Gaussian with the same-sample pairs ``z.cross`` within
    each and the two inputs' pairs ``z.icross`` between them; the expectation is the
    quasi-Monte-Carlo rule of single windows
    (:data:`~varprop.theory.spatial_max.QMC_POINTS` Sobol points, about 2e-4), once per
    distinct pair of window statistics; two windows whose inputs are uncorrelated (far
    apart, beyond the receptive fields) are independent, ``E[M] E[M']`` from
    ``window_means`` (the pool's own per-window ``E[M]``). None when either kind of pairs
    is not carried."""
    from .spatial_max import _sobol
    if z.cross is None or z.icross is None:
        return None
    src, out = tap_sources(z.spatial, pool, stride, pads, (1,) * len(pool))
    p = math.prod(z.spatial)
    mean = z.mean.ravel()
    same = z.cross - np.outer(mean, mean)
    other = z.icross - np.outer(mean, mean)
    n_out = src.shape[1]
    windows = [src[:, o][src[:, o] < p] for o in range(n_out)]  # padding: never the max
    result = np.empty((n_out, n_out))
    cache: dict[bytes, float] = {}
    for o in range(n_out):
        for o2 in range(o, n_out):
            a, b = windows[o], windows[o2]
            between = other[np.ix_(a, b)]
            if not np.any(between):
                result[o, o2] = result[o2, o] = window_means[o] * window_means[o2]
                continue
            mu = np.concatenate([mean[a], mean[b]])
            cov = np.block([[same[np.ix_(a, a)], between],
                            [other[np.ix_(b, a)], same[np.ix_(b, b)]]])
            key = np.concatenate([[a.size], mu, cov.ravel()]).round(14).tobytes()
            if key not in cache:
                vals, vecs = np.linalg.eigh((cov + cov.T) / 2)
                root = vecs * np.sqrt(np.maximum(vals, 0.0))  # singular allowed (c = 1)
                pts = mu + _sobol(mu.size) @ root.T
                with np.errstate(over="ignore", invalid="ignore"):
                    phi = np.asarray(act(pts), float)
                cache[key] = float(np.mean(phi[:, :a.size].max(axis=1)
                                           * phi[:, a.size:].max(axis=1)))
            result[o, o2] = result[o2, o] = cache[key]
    return result


def _between_windows(pairs: np.ndarray, mean_in: np.ndarray, src: np.ndarray, p: int,
                     e1: np.ndarray, e2: np.ndarray) -> np.ndarray:
    """The output's pixel pairs in the Gaussian approximation: two windows' maxima
    correlated as their pixels are on average."""
    sd_in = np.sqrt(np.maximum(np.diag(pairs)[:p] - mean_in[:p] ** 2, 0.0))
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = (pairs[:p, :p] - np.outer(mean_in[:p], mean_in[:p])) / np.outer(sd_in, sd_in)
    member = _members(src, p)
    rho = member @ np.nan_to_num(corr) @ member.T
    sd = np.sqrt(np.maximum(e2 - e1 * e1, 0.0))
    cross = np.outer(e1, e1) + rho * np.outer(sd, sd)
    np.fill_diagonal(cross, e2)
    return cross


def _window_cov(s: SpatialMoments) -> tuple[np.ndarray, np.ndarray]:
    """``(mean (P,), covariance)`` of a map: ``(P, P)``, or the ``(P,)`` variances when
    its pixel pairs are not carried (large images: no P x P matrix is formed)."""
    m = s.mean.ravel()
    if s.cross is not None:
        return m, s.cross - np.outer(m, m)
    return m, s.var.ravel()


def max_pool_chain_forward(s: SpatialMoments, base: SpatialMoments, steps: Sequence[tuple],
                           pool: Sequence[int], stride: Sequence[int],
                           pads: Sequence[tuple[int, int]]) -> tuple:
    """Max pooling of ``s``, built from the Gaussian ``base`` along the identity path by
    ``steps`` (forward order: ``("act", phi)`` or ``("add", branch)`` with ``branch`` the
    moments of ``alpha f``, independent of the rest): the joint law of each window by
    :func:`~varprop.theory.spatial_chain.chain_window_max` (docs/theory.md, section 8,
    "Max pooling behind a skip connection").

    Returns ``(y, win, routed)``: ``y`` the output's moments (exact=False: a
    quasi-Monte-Carlo rule; pairs between windows in the Gaussian approximation),
    ``win (taps, outputs)`` the argmax probabilities and ``routed (acts, taps,
    outputs)`` the shares ``E[1{tap wins} prod phi'^2]`` for each activation of the
    chain (forward order). Padded taps: 0."""
    from .spatial_chain import (add_cov, chain_steps_window, chain_window_max, merge_sums,
                                window_key, window_of)
    src, out = tap_sources(s.spatial, pool, stride, pads, (1,) * len(pool))
    p = math.prod(s.spatial)
    b_mean, b_cov = _window_cov(base)
    full = merge_sums([(step[0], step[1]) if step[0] == "act"
                       else ("add", *_window_cov(step[1])) for step in steps])
    while full and full[0][0] == "add":  # a sum of Gaussians below the first activation
        b_mean, b_cov = b_mean + full[0][1], add_cov(b_cov, full[0][2])
        full = full[1:]
    n_acts = sum(1 for step in full if step[0] == "act")
    n_out = src.shape[1]
    e1, e2 = np.empty(n_out), np.empty(n_out)
    win = np.zeros((src.shape[0], n_out))
    routed = np.zeros((n_acts, src.shape[0], n_out))
    cache: dict[bytes, tuple] = {}
    for o in range(n_out):
        keep = np.flatnonzero(src[:, o] < p)  # padded taps are -inf: never the maximum
        idx = src[keep, o]
        mu, cov = b_mean[idx], window_of(b_cov, idx)
        local = chain_steps_window(full, idx)
        key = window_key(mu, cov, local)
        if key not in cache:
            cache[key] = chain_window_max(mu, cov, local)
        e1[o], e2[o], won, share = cache[key]
        win[keep, o] = won
        routed[:, keep, o] = share
    pairs, _ = _pairs(s)
    mean_in = np.append(s.mean.ravel(), 0.0)
    cross = None if s.cross is None else _between_windows(pairs, mean_in, src, p, e1, e2)
    y = SpatialMoments(e1.reshape(out), e2.reshape(out), cross, gaussian=False, exact=False)
    return y, win, routed


def max_pool_chain_backward(g: np.ndarray, win: np.ndarray, routed: np.ndarray,
                            pool: Sequence[int], stride: Sequence[int],
                            pads: Sequence[tuple[int, int]], spatial: Sequence[int]
                            ) -> tuple[np.ndarray, np.ndarray]:
    """``(Var[dL/dx_i], shares)`` for :func:`max_pool_chain_forward`: the pool input's
    gradient variance ``sum_o P(i wins o) Var[dL/dy_o]`` and, per activation ``a`` of
    the chain, ``sum_o E[1{i wins o} prod_{b >= a} phi_b'^2] Var[dL/dy_o]``: the part of
    ``a``'s input gradient variance that comes along the identity path (docs/theory.md,
    section 8)."""
    var = max_pool_backward(g, win, pool, stride, pads, spatial)
    shares = np.stack([max_pool_backward(g, r, pool, stride, pads, spatial)
                       for r in routed]) if len(routed) else np.zeros((0, *spatial))
    return var, shares


def max_pool_backward(g: np.ndarray, route: np.ndarray, pool: Sequence[int],
                      stride: Sequence[int], pads: Sequence[tuple[int, int]],
                      spatial: Sequence[int]) -> np.ndarray:
    """Var[dL/da_i] for the pool's input from Var[dL/dy_o]: each window's gradient to its
    winner (independent windows), weighted by the routing factors."""
    src, _ = tap_sources(spatial, pool, stride, pads, (1,) * len(pool))
    p = math.prod(spatial)
    gv = np.asarray(g, float).ravel()
    acc = np.zeros(p + 1)
    for t, tap in enumerate(src):
        acc += np.bincount(tap, weights=gv * route[t], minlength=p + 1)
    return acc[:p].reshape(tuple(spatial))
