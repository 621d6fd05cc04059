"""The analyzer's glue for per-pixel signals (:class:`varprop.theory.spatial.
SpatialMoments`): recognizing them, the activation rule on them, and flagging where the
per-pixel theory is approximate (docs/theory.md, section 8)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .._analytic_signal import _Signal
from ..activations import Activation, get_activation
from ._spatial import PairGradient, SpatialGradient

__all__ = ["is_spatial", "check_spatial", "act_spatial", "pre_activation",
           "mark_approximate", "residual_spatial", "norm_spatial", "RoutedGradient",
           "residual_backward", "identity_path", "behind_skip", "mark_gradient_approximate"]

_LINEAR = get_activation("linear")


def is_spatial(x: Any) -> bool:
    """True for a per-pixel signal (the output of a convolution or pooling)."""
    if isinstance(x, _Signal):  # the common case, without the import below
        return False
    from ..theory.spatial import SpatialMoments
    return isinstance(x, SpatialMoments)


def check_spatial(x: Any, layer: Any, analyzer: Any) -> Any:
    """The per-pixel signal a spatial layer receives (the walk has checked the shapes, so
    a flat signal here is a bug, not bad input)."""
    if not is_spatial(x):
        raise TypeError(f"{type(layer).__name__}: the analyzer reached it with a flat "
                        f"signal; the network's walk should have refused this network")
    return x


def act_spatial(analyzer: Any, act: Activation, z: Any, ops: list) -> Any:
    """``phi`` at every pixel: the per-pixel Gaussian moments (and pixel-pair moments
    where a later layer needs them); appends the backward rule ``g * E[phi'(z_p)^2]``."""
    from ..theory import spatial as sp
    a, dphi2 = sp.act_forward(z, act, analyzer.track_cross)
    def pairs(m: Any) -> Any:  # the same rule on another sample's pairs
        return sp.act_forward(m, act, True, False)[0]

    a.bcross = sp.between_samples(z, pairs)
    a.icross = sp.between_samples(z, pairs, "icross")
    if not a.exact and z.exact:
        mark_approximate(analyzer)
    a._pre = (z, act)  # a max pool after the activation works on z (max phi = phi max)
    # a max pool behind a skip connection names this activation in the gradient it
    # sends back (RoutedGradient), its winner being correlated with phi' here
    a._token = token = object()
    ops.append((_act_backward, (np.asarray(dphi2, dtype=np.float64), token, z, act)))
    return a


class RoutedGradient(SpatialGradient):
    """A per-pixel gradient that came from a max pooling along the identity path of
    residual sums (docs/theory.md, section 8, "Max pooling behind a skip connection"):
    ``ident`` is the part of ``var`` that came along that path (the rest came through
    residual branches: independent of the pool's winner), and ``shares`` maps each
    activation of the path (its token) to what ``ident`` becomes through it,
    ``sum_o E[1{i wins o} prod phi'^2] Var[dL/dy_o]``, in place of the gradient
    independence rule ``E[phi'^2] ident``. Any other layer's rule returns a plain
    :class:`SpatialGradient` and so ends the path."""

    __slots__ = ("ident", "shares")

    def __init__(self, var: np.ndarray, ident: np.ndarray, shares: dict) -> None:
        super().__init__(var)
        self.ident = np.asarray(ident, dtype=np.float64)
        self.shares = shares


def _act_backward(analyzer: Any, state: tuple, g: Any) -> SpatialGradient:
    dphi2, token, z, act = state
    if isinstance(g, PairGradient) and z.cross is not None:
        # the pairs E[g_p g_q] <- E[phi'(z_p) phi'(z_q)] E[g_p g_q] (gradient
        # independence), for an overlapping max pool below (docs/theory.md, section 8)
        from ..theory.spatial_grad import dphi_pairs
        d = dphi_pairs(z, act, dphi2, need=g.pairs != 0)
        with np.errstate(invalid="ignore", over="ignore"):
            pairs = np.where((d == 0) | (g.pairs == 0), 0.0, d * g.pairs)
        return PairGradient(pairs, tuple(np.shape(dphi2)))
    if isinstance(g, RoutedGradient) and token in g.shares:
        shares = dict(g.shares)
        own = shares.pop(token)
        var = dphi2 * np.maximum(g.var - g.ident, 0.0) + own
        return RoutedGradient(var, own, shares) if shares else SpatialGradient(var)
    return SpatialGradient(g.total() * dphi2)


def residual_backward(g: SpatialGradient, through: SpatialGradient) -> SpatialGradient:
    """``dL/dx = dL/dy + (the branch's gradient)``: variances add (zero-mean weights);
    a :class:`RoutedGradient` keeps its identity-path part."""
    var = g.var + through.var
    if isinstance(g, RoutedGradient):
        return RoutedGradient(var, g.ident, g.shares)
    if isinstance(g, PairGradient) and isinstance(through, PairGradient):
        # the branch's gradient passed zero-mean weights: uncorrelated with g, pairs add
        return PairGradient(g.pairs + through.pairs, g.var.shape)
    return SpatialGradient(var)


#: The most activations a max pool's identity path is followed through (each residual
#: sum between them adds a window's taps to the integral's dimensions); below them the
#: signal is taken as Gaussian, as without the path (flagged anyway).
MAX_PATH_ACTS = 4


def identity_path(s: Any) -> tuple[Any, list[tuple]]:
    """``(base, steps)``: how ``s`` is built along the identity path from ``base``, a
    signal that is neither an activation's output nor a residual sum (a convolution's
    Gaussian output), by ``steps`` in forward order: ``("act", phi, token)`` or
    ``("add", branch)`` with ``branch`` the moments of ``alpha f`` (docs/theory.md,
    section 8, "Max pooling behind a skip connection")."""
    from ..theory.spatial import SpatialMoments
    steps: list[tuple] = []
    node, acts = s, 0
    while True:
        res, pre = getattr(node, "_res", None), getattr(node, "_pre", None)
        if res is not None:
            x, f, alpha = res
            cross = None if f.cross is None else alpha**2 * f.cross
            steps.append(("add", SpatialMoments(alpha * f.mean, alpha**2 * f.second, cross)))
            node = x
        elif pre is not None and acts < MAX_PATH_ACTS and hasattr(node, "_token"):
            steps.append(("act", pre[1], node._token))
            acts += 1
            node = pre[0]
        else:
            break
    steps.reverse()
    return node, steps


def behind_skip(steps: list[tuple]) -> bool:
    """True when a residual sum lies between an activation of the path and the pool:
    the pool's winner then depends on that activation's input, which gradient
    independence ignores."""
    seen_act = False
    for step in steps:
        seen_act = seen_act or step[0] == "act"
        if seen_act and step[0] == "add":
            return True
    return False


def mark_gradient_approximate(analyzer: Any, why: str, upto: int | None = None) -> None:
    """Flag the weighted layers met so far (or the first ``upto``, for a rule that
    decides in the backward pass), whose gradients come back through an approximate
    max-pool rule, for the per-pixel reasons; ``why`` ("skip", "overlap" or
    "overlap_qmc") selects the note the profile adds (:mod:`varprop._analytic_spatial`)."""
    flagged = getattr(analyzer, "spatial_backward_approximate", None)
    if flagged is None:
        flagged = analyzer.spatial_backward_approximate = {}
    n = len(analyzer.records) if upto is None else upto
    flagged.setdefault(why, set()).update(range(n))


def pre_activation(s: Any) -> tuple[Any, Activation]:
    """``(z, phi)`` with ``s = phi(z)`` for the output of an activation, else ``(s,
    linear)``."""
    pre = getattr(s, "_pre", None)
    return pre if pre is not None else (s, _LINEAR)


def mark_approximate(analyzer: Any, index: int | None = None) -> None:
    """Flag the theory from this weighted layer on (default: the last one met) as
    approximate for the per-pixel reasons docs/theory.md names."""
    if index is None:
        index = len(analyzer.records) - 1
    # before any weighted layer (a pool on the input): every weighted layer after it
    # inherits the approximation, so flag from the first one on rather than none
    analyzer.spatial_approximate.add(max(index, 0))


def residual_spatial(x: Any, f: Any, alpha: float) -> Any:
    """``x + alpha f(x)`` per pixel, the branch's output uncorrelated with ``x`` (it ends
    in zero-mean weights, as for dense layers: docs/theory.md, section 6)."""
    from ..theory.spatial import SpatialMoments
    mean = x.mean + alpha * f.mean
    second = x.second + alpha**2 * f.second + 2 * alpha * x.mean * f.mean
    cross = None
    if x.cross is not None and f.cross is not None:
        mx, mf = x.mean.ravel(), f.mean.ravel()
        cross = (x.cross + alpha**2 * f.cross
                 + alpha * (np.outer(mx, mf) + np.outer(mf, mx)))
    def summed(xp: Any, fp: Any) -> Any:  # pairs of another sample: the same sum
        if xp is None or fp is None:
            return None
        mx, mf = x.mean.ravel(), f.mean.ravel()
        return xp + alpha**2 * fp + alpha * (np.outer(mx, mf) + np.outer(mf, mx))

    out = SpatialMoments(mean, second, cross, gaussian=bool(x.gaussian and f.gaussian),
                         exact=bool(x.exact and f.exact), bcross=summed(x.bcross, f.bcross),
                         icross=summed(x.icross, f.icross))
    out._res = (x, f, alpha)  # a max pool after it follows the identity path back
    return out


def norm_spatial(x: Any, axis: int, eps: float, analyzer: Any) -> tuple[Any, float]:
    """BatchNorm (``axis`` 0: each channel over the batch and the pixels) or LayerNorm
    (each sample over pixels and channels) of a per-pixel signal, and the factor of the
    gradient variance; one scale for every pixel of a channel, so a pixel keeps its
    offset from the pooled mean (borders differ from the centre).

    BatchNorm subtracts each channel's own batch mean ``zbar``, which holds the channel's
    offset (its weights are shared by every sample: docs/theory.md, sections 6 and 8).
    With the between-sample pairs ``bcross`` carried, in the infinite-batch limit,
    ``E[zbar^2] = mean_{p,q} bcross``, ``E[x_p zbar] = mean_q bcross[p, q]``, and the
    divisor is the within-channel variance ``mean_p E[x_p^2] - E[zbar^2]``: exact in the
    mean field. Without them BatchNorm is flagged approximate. LayerNorm's per-sample
    statistics concentrate at many channels."""
    from ..theory.spatial import SpatialMoments
    mbar = float(np.mean(x.mean))
    if axis == 0 and x.bcross is not None:
        row = x.bcross.mean(axis=1)                   # E[x_p zbar]
        zz = float(row.mean())                        # E[zbar^2]
        row_map = row.reshape(x.mean.shape)
    else:
        row, zz, row_map = None, mbar * mbar, mbar * x.mean
    within = max(float(np.mean(x.second)) - zz, 0.0)
    scale = 1.0 / (within + eps)
    centre = mbar if axis == 1 or row is None else None
    mean = (x.mean - mbar) * np.sqrt(scale)
    second = np.maximum(x.second - 2 * row_map + zz, 0.0) * scale
    cross = bcross = None
    if row is None:
        m = x.mean.ravel()
        shift = mbar * (m[:, None] + m[None, :]) - mbar * mbar
    else:
        shift = row[:, None] + row[None, :] - zz
    if x.cross is not None:
        cross = (x.cross - shift) * scale
    if x.bcross is not None and row is not None:
        bcross = (x.bcross - shift) * scale
    # two correlated inputs, each normalized by its own statistics, which concentrate
    # at the same values: the same shift and scale
    icross = None if x.icross is None else (x.icross - shift) * scale
    # BatchNorm's gradient: each channel divides by its own scale, which spreads with
    # the channel's weights (E[1 / s_c^2] > 1 / E[s_c^2]); measured gradients run up to
    # ~10 % (a fan in of 9: ~40 %) above this rule, so it stays flagged (forward: exact)
    exact = bool(x.exact) and axis == 1
    if axis == 0:
        mark_approximate(analyzer)
    del centre
    return SpatialMoments(mean, second, cross, gaussian=bool(x.gaussian), exact=exact,
                          bcross=bcross, icross=icross), scale
