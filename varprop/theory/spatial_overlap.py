"""Overlapping max-pool windows: the gradient's cross term (docs/theory.md, section 8,
"Overlapping windows").

With a stride below the pool size a pixel ``i`` lies in several windows and receives the
sum of the gradients of the windows it wins, ``dL/dz_i = phi'(z_i) sum_{o holding i}
1{i wins o} g_o`` (``g_o = dL/dM_o``). Under gradient independence the ``g`` are
independent of the pool's input, so

    E[(dL/dz_i)^2] = sum_o E[1{i wins o} phi'(z_i)^2] E[g_o^2]
                     + sum_{o != o'} E[1{i wins o} 1{i wins o'} phi'(z_i)^2] E[g_o g_o'].

The first sum is the per-window rule of :mod:`.spatial_pool`. The second needs the
gradient's pixel pairs ``E[g_o g_o']`` at the pool's output (carried back from the
readout, :mod:`.spatial_grad`) and, per pair of windows that share pixels, the joint law
of the union of their taps: :func:`joint_wins` integrates it with the deterministic
quasi-Monte-Carlo rule of :mod:`.spatial_max` (2^16 shifted Sobol points; the union has
up to 17 taps for 3x3 windows of stride 2). Measured before this rule: the first layer's
gradient variance 2.3x the per-window rule behind a 2x2 stride-1 pool and 1.6x behind a
3x3 stride-2 pool when a global average pool reads the network out (its gradient is the
same at every pixel of a channel), and no gap with a Flatten -> Dense readout (diagonal
pairs: the cross term vanishes).
"""

from __future__ import annotations

import math
from itertools import combinations
from typing import Any, Sequence

import numpy as np

from .spatial import SpatialMoments, tap_sources
from .spatial_chain import _mix
from .spatial_max import _sobol

__all__ = ["window_pairs", "joint_wins", "overlap_cross"]


def window_pairs(src: np.ndarray, p: int) -> list[tuple[int, int]]:
    """The pairs ``o < o'`` of windows (columns of ``src``, padding index ``p``) that
    share a pixel."""
    holders: list[list[int]] = [[] for _ in range(p)]
    for o in range(src.shape[1]):
        for pix in src[:, o]:
            if pix < p:
                holders[pix].append(o)
    pairs = {pair for held in holders for pair in combinations(sorted(set(held)), 2)}
    return sorted(pairs)


def joint_wins(mu: np.ndarray, cov: np.ndarray, first: Sequence[int],
               second: Sequence[int], act: Any) -> np.ndarray:
    """For ``z ~ N(mu, cov)`` over the union of two windows' taps and ``first``,
    ``second`` each window's taps (indices into the union, in window order): per tap ``i``
    ``E[1{i wins first} 1{i wins second} phi'(z_i)^2]``, the winner of a window the first
    maximal ``phi(z)`` (PyTorch's tie rule). Zero outside the shared taps.
    Quasi-Monte-Carlo (module doc)."""
    mu = np.asarray(mu, float)
    n = mu.size
    first, second = np.asarray(first, np.int64), np.asarray(second, np.int64)
    z = mu + _mix(_sobol(n), np.asarray(cov, float))
    phi = np.asarray(act(z), float)
    w1 = first[np.argmax(phi[:, first], axis=1)]
    w2 = second[np.argmax(phi[:, second], axis=1)]
    both = w1 == w2
    win = w1[both]
    d2 = np.asarray(act.derivative(z[both, win]), float) ** 2
    return np.bincount(win, weights=d2, minlength=n) / z.shape[0]


def overlap_cross(g_pairs: np.ndarray, z: SpatialMoments, act: Any, pool: Sequence[int],
                  stride: Sequence[int], pads: Sequence[tuple[int, int]]) -> np.ndarray:
    """The cross term of the module doc at every pixel of the pool's input, ``sum_{o !=
    o'} E[1{i wins o} 1{i wins o'} phi'(z_i)^2] E[g_o g_o']``: a contribution to
    ``Var[dL/dz_i]`` (before the activation's derivative is divided out). ``g_pairs``:
    the ``(outputs, outputs)`` gradient pairs at the pool's output; ``z``: the
    pre-activation with its pixel pairs. Windows of equal statistics (a map's interior)
    are integrated once."""
    if z.cross is None:
        raise ValueError("z: the pixel pairs (z.cross) are needed for overlapping windows")
    src, _ = tap_sources(z.spatial, pool, stride, pads, (1,) * len(pool))
    p = math.prod(z.spatial)
    g_pairs = np.asarray(g_pairs, float)
    if g_pairs.shape != (src.shape[1], src.shape[1]):
        raise ValueError(f"g_pairs: expected shape {(src.shape[1],) * 2}, got "
                         f"{g_pairs.shape}")
    mean = z.mean.ravel()
    cov = z.cross - np.outer(mean, mean)
    out = np.zeros(p)
    cache: dict[bytes, np.ndarray] = {}
    for o, o2 in window_pairs(src, p):
        g = g_pairs[o, o2] + g_pairs[o2, o]  # both orders of the pair
        if g == 0.0:
            continue
        a = [int(t) for t in src[:, o] if t < p]
        b = [int(t) for t in src[:, o2] if t < p]
        union = a + [t for t in b if t not in a]
        second = [union.index(t) for t in b]
        mu, c = mean[union], cov[np.ix_(union, union)]
        key = np.concatenate([mu, c.ravel(), [len(a)], second]).round(13).tobytes()
        if key not in cache:
            cache[key] = joint_wins(mu, c, range(len(a)), second, act)
        out[union] += cache[key] * g
    return out.reshape(z.spatial)
