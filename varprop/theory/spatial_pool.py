"""Pooling in the per-pixel theory (docs/theory.md, section 8).

Average pooling is linear: its output moments are averages of the input's pixel pairs.
Max pooling of correlated Gaussians is not Gaussian. For a window of two pre-activations
without an activation, Clark (1961) gives the moments of the maximum exactly. For a
nondecreasing activation, ``max_j phi(z_j) = phi(max_j z_j)``, and a window of up to
four taps is integrated deterministically by the winner: ``E[g(max)] = sum_i
int g(x) p_i(x) P(z_j < x for j != i | z_i = x) dx``, the outer integral by Gauss-Legendre
panels split at the activation's kink, the conditional probability a one-, two- or
three-variate normal CDF (the bivariate by Owen's T function, the trivariate by one more
smooth integral), so the integrands are smooth and the result is accurate to about
1e-9 (docs/theory.md). Other windows (non-monotone activations such as GELU and SiLU,
more than four taps) fall back to a tensor Gauss-Hermite rule of ``max_j phi(z_j)``,
whose kink limits the accuracy to about 2 % (:data:`MAX_POOL_NODES` nodes per variable).
Either way the output is not Gaussian and the layers after it are flagged approximate.
The same integrals give, per tap, ``E[1{tap wins} phi'(z_tap)^2]``, the gradient the
pool routes back (PyTorch's rule, the first maximal tap, matters only on ties of
probability zero, or where phi' = 0).
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any, Sequence

import numpy as np
from scipy.special import ndtr, ndtri, owens_t

from .gaussian import gaussian_moments
from .spatial import SpatialMoments, tap_sources

__all__ = ["avg_pool_forward", "avg_pool_backward", "global_avg_pool",
           "global_avg_pool_backward", "max_pool_forward", "max_pool_backward",
           "clark_max_moments", "MAX_POOL_NODES"]

#: Gauss-Hermite nodes per window variable of the max-pool rule.
MAX_POOL_NODES = 16


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


def clark_max_moments(m1: float, m2: float, v1: float, v2: float, cov: float
                      ) -> tuple[float, float]:
    """``(E[max], E[max^2])`` of two jointly Gaussian variables (Clark 1961, exact)."""
    a2 = max(v1 + v2 - 2.0 * cov, 0.0)
    if a2 == 0.0:  # X1 - X2 is the constant m1 - m2
        top = max(m1, m2)
        v = v1 if m1 >= m2 else v2
        return top, top * top + v
    a = math.sqrt(a2)
    alpha = (m1 - m2) / a
    pdf = math.exp(-0.5 * alpha * alpha) / math.sqrt(2 * math.pi)
    cdf, cdf_neg = float(ndtr(alpha)), float(ndtr(-alpha))
    e1 = m1 * cdf + m2 * cdf_neg + a * pdf
    e2 = (m1 * m1 + v1) * cdf + (m2 * m2 + v2) * cdf_neg + (m1 + m2) * a * pdf
    return e1, e2


@lru_cache(maxsize=8)
def _hermite(dims: int) -> tuple[np.ndarray, np.ndarray]:
    """Tensor Gauss-Hermite rule for a standard normal vector of ``dims`` entries."""
    x, w = np.polynomial.hermite_e.hermegauss(MAX_POOL_NODES)
    w = w / w.sum()
    grids = np.meshgrid(*([x] * dims), indexing="ij")
    weights = np.ones([MAX_POOL_NODES] * dims)
    for d in range(dims):
        weights = weights * w.reshape([-1 if i == d else 1 for i in range(dims)])
    return np.stack([g.ravel() for g in grids], axis=1), weights.ravel()


def _window(mu: np.ndarray, cov: np.ndarray, act: Any) -> tuple[float, float, np.ndarray]:
    """(E[max phi], E[max phi^2], per tap E[1{tap wins} phi'(z_tap)^2]) of one window:
    by the winner where the activation is nondecreasing and the window has at most
    four taps, else by the tensor rule (module doc)."""
    if mu.size <= 4 and _nondecreasing(act):
        return _window_by_winner(mu, cov, act)
    return _window_tensor(mu, cov, act)


@lru_cache(maxsize=64)
def _nondecreasing_cached(act: Any) -> bool:
    x = np.linspace(-30.0, 30.0, 6001)
    return bool(np.all(np.asarray(act.derivative(x), float) >= 0.0))


def _nondecreasing(act: Any) -> bool:
    """phi' >= 0 on a fine grid of [-30, 30] (relu, tanh, elu, ...; not gelu or silu)."""
    return _nondecreasing_cached(act)


_GL_X, _GL_W = np.polynomial.legendre.leggauss(48)


def _panels(lo: float, hi: float, cuts: Sequence[float], per: int = 4
            ) -> tuple[np.ndarray, np.ndarray]:
    """Gauss-Legendre nodes and weights on [lo, hi], split at ``cuts`` and in ``per``
    equal panels between them."""
    edges = sorted({lo, hi, *[c for c in cuts if lo < c < hi]})
    xs, ws = [], []
    for a, b in zip(edges[:-1], edges[1:]):
        for k in range(per):
            p0, p1 = a + (b - a) * k / per, a + (b - a) * (k + 1) / per
            xs.append((p1 - p0) / 2 * _GL_X + (p1 + p0) / 2)
            ws.append((p1 - p0) / 2 * _GL_W)
    return np.concatenate(xs), np.concatenate(ws)


def _bvn(h: np.ndarray, k: np.ndarray, rho: np.ndarray) -> np.ndarray:
    """P(X < h, Y < k) of a standard bivariate normal with correlation rho, by Owen's T
    function (Owen 1956): smooth in its arguments, deterministic."""
    h, k, rho = np.broadcast_arrays(np.asarray(h, float), np.asarray(k, float),
                                    np.asarray(rho, float))
    r = np.clip(rho, -1 + 1e-15, 1 - 1e-15)
    root = np.sqrt(1 - r * r)
    hh = np.where(h == 0, 1e-300, h)
    kk = np.where(k == 0, 1e-300, k)
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        ah = (kk - r * hh) / (hh * root)
        ak = (hh - r * kk) / (kk * root)
    beta = np.where((hh * kk < 0), 0.5, 0.0)
    out = 0.5 * (ndtr(hh) + ndtr(kk)) - owens_t(hh, ah) - owens_t(kk, ak) - beta
    return np.clip(out, 0.0, 1.0)


def _mvn_below(b: np.ndarray, corr: np.ndarray) -> np.ndarray:
    """P(Y_j < b_j for all j) of a standard normal vector with correlation ``corr``
    (1 to 3 variables), for each row of ``b``."""
    d = b.shape[-1]
    b = np.clip(b, -40.0, 40.0)
    if d == 1:
        return ndtr(b[..., 0])
    if d == 2:
        return _bvn(b[..., 0], b[..., 1], corr[0, 1])
    r12, r13, r23 = corr[0, 1], corr[0, 2], corr[1, 2]
    s2, s3 = math.sqrt(max(1 - r12 * r12, 1e-30)), math.sqrt(max(1 - r13 * r13, 1e-30))
    rho = (r23 - r12 * r13) / (s2 * s3)
    top = ndtr(b[..., 0])  # the first variable below b_0, as y = ndtri(u * Phi(b_0))
    u = (_GL_X + 1) / 2
    y = ndtri(np.clip(u[None, :] * top[..., None], 1e-300, 1.0))
    inner = _bvn((b[..., 1:2] - r12 * y) / s2, (b[..., 2:3] - r13 * y) / s3, rho)
    return top * (inner @ (_GL_W / 2))


def _window_by_winner(mu: np.ndarray, cov: np.ndarray, act: Any
                      ) -> tuple[float, float, np.ndarray]:
    k = mu.size
    e1 = e2 = 0.0
    routed = np.zeros(k)
    for i in range(k):
        sd = math.sqrt(max(cov[i, i], 0.0))
        others = [j for j in range(k) if j != i]
        if sd == 0.0:  # a constant tap: it wins where the others all fall below it
            x = np.array([mu[i]])
            w = np.array([1.0])
        else:
            cut = [(c - mu[i]) / sd for c in act.kinks]
            t, w = _panels(-12.0, 12.0, cut)
            x = mu[i] + sd * t
            w = w * np.exp(-0.5 * t * t) / math.sqrt(2 * math.pi)
        if others:
            c_io = cov[others, i]
            slope = c_io / cov[i, i] if sd > 0 else np.zeros(len(others))
            cond = cov[np.ix_(others, others)] - (np.outer(c_io, c_io) / cov[i, i]
                                                   if sd > 0 else 0.0)
            csd = np.sqrt(np.maximum(np.diag(cond), 1e-300))
            corr = cond / np.outer(csd, csd)
            mean = mu[others][None, :] + (x[:, None] - mu[i]) * slope[None, :]
            below = _mvn_below((x[:, None] - mean) / csd[None, :], corr)
        else:
            below = np.ones_like(x)
        phi = np.asarray(act(x), float)
        dphi2 = np.asarray(act.derivative(x), float) ** 2
        e1 += float(np.sum(w * below * phi))
        e2 += float(np.sum(w * below * phi * phi))
        routed[i] = float(np.sum(w * below * dphi2))
    return e1, e2, routed


def _window_tensor(mu: np.ndarray, cov: np.ndarray, act: Any
                   ) -> tuple[float, float, np.ndarray]:
    """The tensor Gauss-Hermite rule of ``max_j phi(z_j)`` (about 2 % accurate)."""
    k = mu.size
    nodes, weights = _hermite(k)
    vals, vecs = np.linalg.eigh((cov + cov.T) / 2)
    root = vecs * np.sqrt(np.maximum(vals, 0.0))  # cov = root root^T, singular allowed
    z = mu + nodes @ root.T
    phi = np.asarray(act(z), float)
    win = np.argmax(phi, axis=1)  # the first maximal tap, as PyTorch
    top = phi[np.arange(phi.shape[0]), win]
    dphi2 = np.asarray(act.derivative(z), float) ** 2
    routed = np.zeros(k)
    for j in range(k):
        routed[j] = float(np.sum(weights * (win == j) * dphi2[:, j]))
    return float(weights @ top), float(weights @ (top * top)), routed


def max_pool_forward(z: SpatialMoments, act: Any, pool: Sequence[int],
                     stride: Sequence[int], pads: Sequence[tuple[int, int]]
                     ) -> tuple[SpatialMoments, np.ndarray]:
    """Max pooling of ``phi(z)`` (``z`` the pre-activation, ``act`` the activation
    between them, linear if none). Returns the output moments and the routing factors
    ``(outputs, taps)``: ``E[1{tap wins} phi'(z)^2] / E[phi'(z)^2]`` (what the backward
    rule multiplies by, the activation's own E[phi'^2] following). The output's pixel
    pairs are the Gaussian approximation (the windows' average correlation), and the
    result is flagged approximate unless every window is Clark's exact two-variable case."""
    src, out = tap_sources(z.spatial, pool, stride, pads, (1,) * len(pool))
    p = math.prod(z.spatial)
    pairs, have_pairs = _pairs(z)
    mean_in = np.append(z.mean.ravel(), 0.0)
    d2 = np.asarray(gaussian_moments(act, z.var.ravel(), mean=z.mean.ravel()).e_dphi2, float)
    d2 = np.append(d2, 0.0)
    n_out = src.shape[1]
    e1, e2 = np.empty(n_out), np.empty(n_out)
    route = np.zeros((src.shape[0], n_out))
    exact = z.exact and z.gaussian and have_pairs
    cache: dict[bytes, tuple[float, float, np.ndarray]] = {}
    linear = getattr(act, "name", "") == "linear"
    for o in range(n_out):
        taps = src[:, o]
        keep = np.flatnonzero(taps < p)  # padded taps are -inf: never the maximum
        idx = taps[keep]
        mu = mean_in[idx]
        cov = pairs[np.ix_(idx, idx)] - np.outer(mu, mu)
        key = np.concatenate([mu, cov.ravel()]).round(14).tobytes()
        if key not in cache:
            if linear and idx.size == 2:
                a, b = clark_max_moments(mu[0], mu[1], cov[0, 0], cov[1, 1], cov[0, 1])
                cache[key] = (a, b, _window(mu, cov, act)[2])
            else:
                cache[key] = _window(mu, cov, act)
                exact = False
        a, b, routed = cache[key]
        e1[o], e2[o] = a, b
        with np.errstate(invalid="ignore", divide="ignore"):
            route[keep, o] = np.where(d2[idx] > 0, routed / np.where(d2[idx] > 0, d2[idx], 1),
                                      0.0)
    cross = None
    if z.cross is not None:  # the Gaussian approximation between windows
        sd_in = np.sqrt(np.maximum(np.diag(pairs)[:p] - mean_in[:p] ** 2, 0.0))
        with np.errstate(invalid="ignore", divide="ignore"):
            corr = (pairs[:p, :p] - np.outer(mean_in[:p], mean_in[:p])) / np.outer(sd_in, sd_in)
        corr = np.nan_to_num(corr)
        member = np.zeros((n_out, p))
        for tap in src:
            inside = tap < p
            member[np.arange(n_out)[inside], tap[inside]] += 1.0
        member /= np.maximum(member.sum(axis=1, keepdims=True), 1.0)
        rho = member @ corr @ member.T
        sd = np.sqrt(np.maximum(e2 - e1 * e1, 0.0))
        cross = np.outer(e1, e1) + rho * np.outer(sd, sd)
        np.fill_diagonal(cross, e2)
        exact = False
    return SpatialMoments(e1.reshape(out), e2.reshape(out), cross, gaussian=False,
                          exact=exact), route


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
