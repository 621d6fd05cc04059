"""Max pooling behind a residual sum: the window's joint law along the identity path
(docs/theory.md, section 8, "Max pooling behind a skip connection").

The backward rule of :mod:`.spatial_pool` takes the winner of a window as independent of
the activations' derivatives below the pool, except for an activation right before it.
A skip connection breaks that: in ``y = relu(z) + r`` (``r = alpha f(x)``, a residual
branch) the tap that wins ``max y`` is most often one whose own ``z > 0``, and its
gradient reaches ``z`` unchanged through the identity, so ``E[1{i wins} relu'(z_i)^2]``
is close to ``P(i wins)``, not ``P(i wins) E[relu'^2] = P(i wins) / 2``. Measured, the
first layer's gradient variance sat 40-50 % above that rule (Glorot; 15-25 % He) at
every width (tests/test_maxpool_gradient.py).

Along the identity path a pool's input is built from a Gaussian *base* (a convolution's
output) by a chain of steps, in forward order: activations ``u <- phi(u)`` and residual
sums ``u <- u + r`` with ``r`` the branch's output, Gaussian and independent of ``u`` in
the mean field (a sum over many channels of zero-mean weights, docs/theory.md, section
6). :func:`chain_window_max` integrates one window over that joint law, in ``k (1 +
#sums)`` dimensions, with the deterministic quasi-Monte-Carlo rule of
:mod:`.spatial_max` (within 2e-3 on the shares: flagged approximate). It returns, besides
``E[M]`` and ``E[M^2]`` of ``M = max_j y_j``, for each activation ``a`` of the chain and
each tap ``i``: ``E[1{i wins} prod_{b >= a} phi_b'(u_{b,i})^2]``, the product over the
chain's activations from ``a`` up to the pool, which is what the gradient variance of
``a``'s input at tap ``i`` gets from that window along the identity path.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .spatial_max import _sobol

__all__ = ["chain_window_max", "merge_sums", "chain_steps_window", "window_key", "add_cov",
           "window_of"]


def _root(cov: np.ndarray) -> np.ndarray:
    """``R`` with ``R R^T = cov`` (symmetric, singular allowed)."""
    vals, vecs = np.linalg.eigh((cov + cov.T) / 2)
    return vecs * np.sqrt(np.maximum(vals, 0.0))


def _mix(normals: np.ndarray, cov: np.ndarray) -> np.ndarray:
    """Rows of ``normals`` mapped to N(0, cov) (einsum: a BLAS call on these thin
    matrices was ten times slower)."""
    return np.einsum("nj,ij->ni", normals, _root(cov))


def add_cov(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The sum of two independent maps' covariances, each ``(P, P)`` or the ``(P,)``
    variances alone (pixel pairs not carried)."""
    if a.ndim == b.ndim:
        return a + b
    full, diag = (a, b) if a.ndim == 2 else (b, a)
    out = full.copy()
    out[np.diag_indices_from(out)] += diag
    return out


def window_of(cov: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """A window's ``(k, k)`` covariance from a map's ``(P, P)`` or ``(P,)`` one."""
    return cov[np.ix_(idx, idx)] if cov.ndim == 2 else np.diag(cov[idx])


def merge_sums(steps: Sequence[tuple]) -> list[tuple]:
    """Consecutive residual sums merged into one (independent Gaussians add: means and
    covariances add), which saves dimensions of the integral."""
    out: list[tuple] = []
    for step in steps:
        if step[0] == "add" and out and out[-1][0] == "add":
            out[-1] = ("add", out[-1][1] + step[1], add_cov(out[-1][2], step[2]))
        else:
            out.append(step)
    return out


def chain_window_max(mu: np.ndarray, cov: np.ndarray, steps: Sequence[tuple]
                     ) -> tuple[float, float, np.ndarray, np.ndarray]:
    """One window of ``k`` taps: the base ``u ~ N(mu, cov)``, then ``steps`` in forward
    order, each ``("act", phi)`` or ``("add", mean, cov)`` (a Gaussian independent of
    everything before it); ``y`` the last ``u``.

    Returns ``(E[M], E[M^2], wins, routed)``: ``wins[i]`` the probability that tap ``i``
    is the argmax as PyTorch picks it (the first maximal tap: after a relu last, all
    taps may tie at 0) and ``routed[a, i] = E[1{i wins} prod_{b >= a} phi_b'^2]`` for the
    chain's activations ``a`` in forward order. Quasi-Monte-Carlo (module doc)."""
    mu = np.asarray(mu, float)
    k = mu.size
    sums = [s for s in steps if s[0] == "add"]
    z = _sobol(k * (1 + len(sums)))
    u = mu + _mix(z[:, :k], np.asarray(cov, float))
    col = k
    d2: list[np.ndarray] = []
    for step in steps:
        if step[0] == "add":
            u = u + np.asarray(step[1], float) + _mix(z[:, col:col + k],
                                                      np.asarray(step[2], float))
            col += k
        else:
            act = step[1]
            d2.append(np.asarray(act.derivative(u), float) ** 2)
            u = np.asarray(act(u), float)
    n = u.shape[0]
    rows = np.arange(n)
    win = np.argmax(u, axis=1)  # the first maximal tap, as PyTorch
    top = u[rows, win]
    routed = np.empty((len(d2), k))
    weight = np.ones(n)
    for a in range(len(d2) - 1, -1, -1):  # the product from activation a up to the pool
        weight = weight * d2[a][rows, win]
        routed[a] = np.bincount(win, weights=weight, minlength=k) / n
    wins = np.bincount(win, minlength=k) / n
    return float(top.mean()), float((top * top).mean()), wins, routed


def chain_steps_window(steps: Sequence[tuple], idx: np.ndarray) -> list[tuple]:
    """The chain's steps restricted to a window's pixels ``idx`` (each sum's mean and
    covariance over the full map: ``(P,)`` and ``(P, P)`` or ``(P,)``)."""
    out = []
    for step in steps:
        if step[0] == "add":
            out.append(("add", step[1][idx], window_of(step[2], idx)))
        else:
            out.append(step)
    return out


def window_key(mu: np.ndarray, cov: np.ndarray, steps: Sequence[tuple]) -> bytes:
    """A cache key for windows of equal statistics (a map's interior repeats them)."""
    parts = [mu, cov.ravel()]
    for step in steps:
        if step[0] == "add":
            parts += [step[1], step[2].ravel()]
        else:
            parts.append(np.array([id(step[1])], float))
    return np.concatenate(parts).round(14).tobytes()
