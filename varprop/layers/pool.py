"""Pooling and flattening of channels-last spatial input: :class:`MaxPool`,
:class:`AvgPool`, :class:`GlobalAvgPool` and :class:`Flatten`, each with its array
forward and backward on the kernels and its per-pixel mean-field rule (docs/theory.md, section 8).

Max pooling of correlated Gaussians is not Gaussian: its moments come from an exact law
for two inputs (Clark 1961) and a deterministic quadrature for larger windows; the
profile flags the layers after it where a later rule needs more than it carries. Behind
a skip connection (a residual sum between an activation and the pool) the winner is
correlated with that activation's derivative, and the window's joint law along the
identity path is integrated instead (docs/theory.md, section 8, "Max pooling behind a
skip connection"). Where windows overlap (stride below the pool size) a tap gets the
gradients of every window it wins, and their covariance, carried back from the readout
as the gradient's pixel pairs (:class:`~varprop.layers._spatial.PairGradient`), adds a
cross term (docs/theory.md, section 8, "Overlapping windows").
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._validate import boolean
from ..theory.spatial import between_samples
from ._spatial import (PairGradient, SpatialGradient, flat_signal, numel, spatial_of,
                       uniform_spatial)
from .base import Layer, Step
from .conv import _padding, _tuple

__all__ = ["MaxPool", "AvgPool", "GlobalAvgPool", "Flatten"]


@dataclass(frozen=True)
class _Pool(Layer):
    pool_size: Any = 2
    stride: Any = None
    padding: Any = 0
    spatial_dims: int | None = None

    def __post_init__(self) -> None:
        owner = type(self).__name__
        dims = self.spatial_dims
        if dims is None:
            dims = len(self.pool_size) if isinstance(self.pool_size, (list, tuple)) else 2
        if dims not in (1, 2) or isinstance(dims, bool):
            raise ValueError(f"{owner}: spatial_dims must be 1 or 2, got {dims!r}")
        object.__setattr__(self, "spatial_dims", dims)
        pool = _tuple("pool_size", self.pool_size, dims, owner)
        object.__setattr__(self, "pool_size", pool)
        stride = pool if self.stride is None else _tuple("stride", self.stride, dims, owner)
        object.__setattr__(self, "stride", stride)
        pad = _padding(self.padding, dims, owner)
        if isinstance(pad, str):
            raise ValueError(f"{owner}: padding must be an int, per-dim ints or per-dim "
                             f"(before, after) pairs, got {pad!r}")
        object.__setattr__(self, "padding", pad)

    def pads(self, spatial: tuple[int, ...]) -> tuple[tuple[int, int], ...]:
        from ..conv_kernels import resolve_padding
        return resolve_padding(self.padding, spatial, self.pool_size, self.stride, 1)

    def output_width(self, width: Any, position: str) -> tuple[int, ...]:
        owner = type(self).__name__
        spatial, channels = spatial_of(width, owner, position, self.spatial_dims)
        from ..conv_kernels import conv_output_shape
        try:
            out = conv_output_shape(spatial, self.pool_size, self.stride, self.padding, 1)
        except ValueError as exc:
            raise ValueError(f"{position}: {owner}: {exc}") from None
        return (*out, channels)

    def cache_bytes(self, step: Step, width: Any, batch: int, itemsize: int
                    ) -> tuple[int, Any]:
        out = self.output_width(width, "cache")
        return batch * (numel(width) + numel(out)) * 8, out


@dataclass(frozen=True)
class MaxPool(_Pool):
    """Max pooling (PyTorch's tie rule: the first maximal input of a window, in row-major
    order, takes the gradient; padding counts as -inf). ``stride`` defaults to
    ``pool_size``."""

    def forward(self, step: Step, run: Any, x: np.ndarray, x2: np.ndarray | None,
                keep: bool, record: bool) -> tuple[np.ndarray, np.ndarray | None, Any]:
        from ..pool_kernels import max_pool_forward
        kw = {"stride": self.stride, "padding": self.pads(x.shape[1:-1]),
              "n_threads": run.n_threads}
        y, arg = max_pool_forward(x, self.pool_size, **kw)
        y2 = None if x2 is None else max_pool_forward(x2, self.pool_size, **kw)[0]
        return y, y2, ((arg, x.shape) if keep else None)

    def backward(self, step: Step, run: Any, cache: Any, grad: np.ndarray) -> np.ndarray:
        from ..pool_kernels import max_pool_backward
        arg, shape = cache
        return max_pool_backward(grad, arg, shape, n_threads=run.n_threads)

    def analytic(self, step: Step, analyzer: Any, x: Any, ops: list) -> Any:
        from ..theory import spatial_pool as sp
        from ._spatial_rules import check_spatial, mark_approximate, pre_activation
        from ._spatial_rules import behind_skip, identity_path, mark_gradient_approximate
        s = check_spatial(x, self, analyzer)
        spatial = tuple(np.shape(s.mean))
        pads = self.pads(spatial)
        overlap = any(st < k for st, k in zip(self.stride, self.pool_size))
        base, path = identity_path(s)
        if overlap and behind_skip(path):
            # a tap in two windows gets both gradients, whose covariance (nonzero: e.g.
            # a global average pool above makes them alike) the joint-law rule of the
            # identity path does not carry (docs/theory.md, section 8, "Overlapping
            # windows")
            mark_gradient_approximate(analyzer, "overlap")
        if behind_skip(path):
            # the winner depends on activations below a residual sum, whose gradient
            # comes back unchanged through the identity: integrate the joint law
            # (docs/theory.md, section 8, "Max pooling behind a skip connection")
            out, win, routed = sp.max_pool_chain_forward(
                s, base, [step[:2] for step in path], self.pool_size, self.stride, pads)
            mark_approximate(analyzer)
            mark_gradient_approximate(analyzer, "skip")
            tokens = [step[2] for step in path if step[0] == "act"]
            ops.append((_max_path_backward, (win, routed, tokens, self.pool_size,
                                             self.stride, pads, spatial)))
            return out
        z, act = pre_activation(s)
        out, argmax_p = sp.max_pool_forward(z, act, self.pool_size, self.stride, pads)
        out.icross = sp.max_pool_input_pairs(z, act, self.pool_size, self.stride, pads,
                                             out.mean.ravel())
        if not out.exact:
            mark_approximate(analyzer)
        joint = None
        if overlap:
            # a tap in two windows gets both gradients, whose covariance (nonzero: e.g.
            # a global average pool above makes them alike) the layers above carry back
            # as the gradient's pixel pairs (docs/theory.md, section 8, "Overlapping
            # windows"); the backward rule adds the cross term, or flags
            joint = (z, act, len(analyzer.records))
            if getattr(analyzer, "track_cross", False) and z.cross is not None:
                analyzer.grad_pairs = True
        ops.append((_max_backward, (argmax_p, self.pool_size, self.stride, pads, spatial,
                                    joint)))
        return out


def _max_backward(analyzer: Any, state: tuple, g: Any) -> SpatialGradient:
    from ..theory import spatial_pool as sp
    from ._spatial_rules import mark_gradient_approximate
    argmax_p, pool, stride, pads, spatial, joint = state
    var = sp.max_pool_backward(g.total(), argmax_p, pool, stride, pads, spatial)
    if joint is None:
        return SpatialGradient(var)
    z, act, upto = joint
    if not isinstance(g, PairGradient) or z.cross is None:
        # the gradients' covariance did not come back (a layer above without a
        # pixel-pair rule, or pixel pairs not carried): the cross term is missing
        mark_gradient_approximate(analyzer, "overlap", upto)
        return SpatialGradient(var)
    from ..theory.gaussian import gaussian_moments
    from ..theory.spatial_overlap import overlap_cross
    cross = overlap_cross(g.pairs, z, act, pool, stride, pads)
    # the activation's rule below multiplies by E[phi'^2]: divide it out here, as the
    # per-window routing factors do
    d2 = np.asarray(gaussian_moments(act, z.var, mean=z.mean).e_dphi2, float)
    with np.errstate(invalid="ignore", divide="ignore"):
        var = var + np.where(d2 > 0, cross / np.where(d2 > 0, d2, 1.0), 0.0)
    mark_gradient_approximate(analyzer, "overlap_qmc", upto)
    return SpatialGradient(var)


def _max_path_backward(analyzer: Any, state: tuple, g: Any) -> SpatialGradient:
    from ..theory import spatial_pool as sp
    from ._spatial_rules import RoutedGradient
    win, routed, tokens, pool, stride, pads, spatial = state
    var, shares = sp.max_pool_chain_backward(g.total(), win, routed, pool, stride, pads,
                                             spatial)
    return RoutedGradient(var, var, dict(zip(tokens, shares)))


@dataclass(frozen=True)
class AvgPool(_Pool):
    """Average pooling; ``count_include_pad`` as PyTorch's (True: padded zeros count in
    the mean; Keras's "same" pooling excludes them). ``stride`` defaults to
    ``pool_size``."""

    count_include_pad: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "count_include_pad",
                           boolean("count_include_pad", self.count_include_pad))

    def _kw(self, spatial: tuple[int, ...], run: Any) -> dict[str, Any]:
        return {"stride": self.stride, "padding": self.pads(spatial),
                "count_include_pad": self.count_include_pad, "n_threads": run.n_threads}

    def forward(self, step: Step, run: Any, x: np.ndarray, x2: np.ndarray | None,
                keep: bool, record: bool) -> tuple[np.ndarray, np.ndarray | None, Any]:
        from ..pool_kernels import avg_pool_forward
        kw = self._kw(x.shape[1:-1], run)
        y = avg_pool_forward(x, self.pool_size, **kw)
        y2 = None if x2 is None else avg_pool_forward(x2, self.pool_size, **kw)
        return y, y2, (x.shape if keep else None)

    def backward(self, step: Step, run: Any, cache: Any, grad: np.ndarray) -> np.ndarray:
        from ..pool_kernels import avg_pool_backward
        return avg_pool_backward(grad, cache, self.pool_size, **self._kw(cache[1:-1], run))

    def analytic(self, step: Step, analyzer: Any, x: Any, ops: list) -> Any:
        from ..theory import spatial_pool as sp
        from ._spatial_rules import check_spatial, mark_approximate
        s = check_spatial(x, self, analyzer)
        spatial = tuple(np.shape(s.mean))
        pads = self.pads(spatial)
        def rule(m: Any) -> Any:
            return sp.avg_pool_forward(m, self.pool_size, self.stride, pads,
                                       self.count_include_pad)

        out = rule(s)
        out.icross = between_samples(s, rule, "icross")
        if not out.exact:
            mark_approximate(analyzer)
        ops.append((_avg_backward, (self.pool_size, self.stride, pads,
                                    self.count_include_pad, spatial)))
        return out


def _avg_backward(analyzer: Any, state: tuple, g: Any) -> SpatialGradient:
    from ..theory import spatial_pool as sp
    pool, stride, pads, include, spatial = state
    if isinstance(g, PairGradient):  # linear: the pairs go back as A^T G A
        from ..theory.spatial_grad import avg_pool_backward_pairs
        return PairGradient(avg_pool_backward_pairs(g.pairs, pool, stride, pads, include,
                                                    spatial), tuple(spatial))
    return SpatialGradient(sp.avg_pool_backward(g.total(), pool, stride, pads, include,
                                                spatial))


@dataclass(frozen=True)
class GlobalAvgPool(Layer):
    """The mean over all pixels of each channel: ``(batch, *spatial, C) -> (batch, C)``."""

    def output_width(self, width: Any, position: str) -> int:
        return spatial_of(width, "GlobalAvgPool", position)[1]

    def forward(self, step: Step, run: Any, x: np.ndarray, x2: np.ndarray | None,
                keep: bool, record: bool) -> tuple[np.ndarray, np.ndarray | None, Any]:
        axes = tuple(range(1, x.ndim - 1))
        # float64 accumulation, one pass per sample: the same bits for any thread count
        y = x.mean(axis=axes, dtype=np.float64).astype(x.dtype)
        y2 = None if x2 is None else x2.mean(axis=axes, dtype=np.float64).astype(x.dtype)
        return y, y2, (x.shape if keep else None)

    def backward(self, step: Step, run: Any, cache: Any, grad: np.ndarray) -> np.ndarray:
        shape = cache
        pixels = math.prod(shape[1:-1])
        g = grad / grad.dtype.type(pixels)
        return np.ascontiguousarray(np.broadcast_to(
            g.reshape((shape[0],) + (1,) * (len(shape) - 2) + (shape[-1],)), shape))

    def analytic(self, step: Step, analyzer: Any, x: Any, ops: list) -> Any:
        from ..theory import spatial_pool as sp
        from .._analytic_signal import _Signal
        from ._spatial_rules import check_spatial, mark_approximate
        s = check_spatial(x, self, analyzer)
        mean, var = sp.global_avg_pool(s)
        if s.cross is None or not s.exact:
            mark_approximate(analyzer)
        ops.append((_global_backward, tuple(np.shape(s.mean))))
        # two correlated inputs' channel means: the average of all their pixel pairs
        cross = math.nan if s.icross is None else float(np.mean(s.icross))
        # an average of many pixels of one channel: Gaussian only if they are
        return _Signal(float(mean), float(var), False, cross, gaussian=bool(s.gaussian))


def _global_backward(analyzer: Any, spatial: tuple, g: Any) -> SpatialGradient:
    from ..theory import spatial_pool as sp
    if getattr(analyzer, "grad_pairs", False):
        # every pixel of a channel gets the same dL/dy / P: all pairs alike
        from ..theory.spatial_grad import global_avg_pool_backward_pairs
        return PairGradient(global_avg_pool_backward_pairs(float(g.total()), spatial),
                            tuple(spatial))
    return SpatialGradient(sp.global_avg_pool_backward(float(g.total()), spatial))


@dataclass(frozen=True)
class Flatten(Layer):
    """``(batch, *spatial, C) -> (batch, prod(spatial) * C)`` in C order (Keras's
    channels-last flattening), for Dense layers after convolutions."""

    def output_width(self, width: Any, position: str) -> int:
        return numel(width)

    def forward(self, step: Step, run: Any, x: np.ndarray, x2: np.ndarray | None,
                keep: bool, record: bool) -> tuple[np.ndarray, np.ndarray | None, Any]:
        flat = x.reshape(x.shape[0], -1)
        return flat, (None if x2 is None else x2.reshape(x2.shape[0], -1)), \
            (x.shape if keep else None)

    def backward(self, step: Step, run: Any, cache: Any, grad: np.ndarray) -> np.ndarray:
        return grad.reshape(cache)

    def cache_bytes(self, step: Step, width: Any, batch: int, itemsize: int
                    ) -> tuple[int, Any]:
        return 0, numel(width)

    def analytic(self, step: Step, analyzer: Any, x: Any, ops: list) -> Any:
        from ._spatial_rules import is_spatial
        if not is_spatial(x):
            return x
        spatial = tuple(np.shape(x.mean))
        ops.append((_flatten_backward, spatial))
        return flat_signal(x)


def _flatten_backward(analyzer: Any, spatial: tuple, g: Any) -> SpatialGradient:
    return uniform_spatial(g, spatial, pairs=getattr(analyzer, "grad_pairs", False))
