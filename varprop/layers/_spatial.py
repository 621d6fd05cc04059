"""What the spatial layers (convolution, pooling, flatten) share: feature shapes, the
per-pixel gradient the analyzer carries back through them, and the conversions between
a per-pixel signal and the one-unit signal of dense layers.

A *feature shape* is what one sample of a layer's output looks like: an int ``n`` for
the ``(batch, n)`` arrays of dense layers, or a tuple ``(*spatial, channels)`` for the
channels-last ``(batch, *spatial, channels)`` arrays of convolutions (1 or 2 spatial
dims, as Keras lays them out).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .._analytic_signal import _Signal

__all__ = ["numel", "spatial_of", "SpatialGradient", "PairGradient", "flat_signal",
           "uniform_spatial", "through_conv"]


def numel(shape: "int | tuple[int, ...]") -> int:
    """Entries of one sample of a feature shape."""
    return shape if isinstance(shape, int) else math.prod(shape)


def spatial_of(shape: "int | tuple[int, ...]", owner: str, position: str,
               ndim: int | None = None) -> tuple[tuple[int, ...], int]:
    """``(spatial dims, channels)`` of a spatial feature shape, or a ValueError naming
    the layer position when the incoming shape is flat or of the wrong rank."""
    if isinstance(shape, int) or len(shape) < 2:
        raise ValueError(f"{position}: {owner} needs a (*spatial, channels) input (1 or 2 "
                         f"spatial dims, channels last); it receives {shape!r}"
                         + (" (a flat width: a Dense layer's output)"
                            if isinstance(shape, int) else ""))
    if ndim is not None and len(shape) - 1 != ndim:
        raise ValueError(f"{position}: {owner} is {ndim}-D but receives {len(shape) - 1}-D "
                         f"input of shape {shape!r}")
    return tuple(shape[:-1]), shape[-1]


class SpatialGradient:
    """Variance of dL/d(unit) at each pixel (a map over the spatial dims; channels are
    alike), flowing back through spatial layers. It quacks like
    :class:`~varprop._analytic_parts._Gradient` where the analyzer looks (``factor`` is
    None: no exact per-node chains through convolutions)."""

    __slots__ = ("var",)
    factor = None
    identical = False

    def __init__(self, var: np.ndarray) -> None:
        self.var = np.asarray(var, dtype=np.float64)

    def total(self) -> np.ndarray:
        return self.var

    def reduced(self) -> "SpatialGradient":
        return self

    def scaled(self, k: Any, identical: bool = False) -> "SpatialGradient":
        return SpatialGradient(_mul0(k, self.var))

    def pooled(self) -> float:
        """The gradient variance a measurement pools over pixels (and channels)."""
        return float(np.mean(self.var))


class PairGradient(SpatialGradient):
    """A per-pixel gradient that also carries its pixel pairs ``pairs[p, q] = E[dL/du_p
    dL/du_q]`` (one channel, one sample; ``var`` is their diagonal), from the readout back
    to an overlapping max pooling, whose rule needs the covariance of two windows'
    gradients (docs/theory.md, section 8, "Overlapping windows"). Carried only when such
    a pool is met; a rule that does not know the pairs returns a plain
    :class:`SpatialGradient`, and the pool then flags the layers before it."""

    __slots__ = ("pairs",)

    def __init__(self, pairs: np.ndarray, spatial: tuple[int, ...]) -> None:
        pairs = np.asarray(pairs, dtype=np.float64)
        super().__init__(np.diag(pairs).reshape(spatial).copy())
        self.pairs = pairs

    def scaled(self, k: Any, identical: bool = False) -> SpatialGradient:
        # one factor for every pixel (a residual branch's alpha^2, a norm's scale) scales
        # the pairs alike; a per-pixel factor ends them
        if np.ndim(k) == 0:
            return PairGradient(_mul0(k, self.pairs), self.var.shape)
        return SpatialGradient(_mul0(k, self.var))


def through_conv(g: Any, g_in: np.ndarray, geometry: dict) -> SpatialGradient:
    """A convolution's input gradient ``g_in`` (per pixel), with its pixel pairs when
    ``g`` carries them (:func:`varprop.theory.spatial_grad.conv_backward_pairs`, the
    keyword arguments ``geometry`` of :func:`varprop.theory.spatial.conv_backward`)."""
    if not isinstance(g, PairGradient):
        return SpatialGradient(g_in)
    from ..theory.spatial_grad import conv_backward_pairs
    return PairGradient(conv_backward_pairs(g.pairs, **geometry),
                        tuple(geometry["in_spatial"]))


def _mul0(k: Any, arr: np.ndarray) -> np.ndarray:
    """``k * arr`` with ``0 * inf = 0`` (docs/theory.md, section 10)."""
    with np.errstate(invalid="ignore", over="ignore"):
        out = np.multiply(k, arr)
    zero = (np.asarray(k) == 0) | (arr == 0)
    return np.where(zero, 0.0, out)


def flat_signal(s: Any) -> _Signal:
    """The one-unit signal of a flattened per-pixel signal: a dense layer sums over all
    pixels and channels, and with zero-mean weights only the average ``E[x^2]`` enters
    (exact); the unit's mean is the pixels' average mean. The pixels' means differ (zero
    padding), so the flattened units are not alike: where a dense layer's rule needs
    more than E[x^2] (non-centred weights) this is the units' average."""
    mean = float(np.mean(s.mean))
    second = float(np.mean(s.second))
    # two correlated inputs: a dense layer sums each flattened unit with its own weight
    cross = math.nan if s.icross is None else float(np.mean(np.diag(s.icross)))
    return _Signal(mean, max(second - mean * mean, 0.0), False, cross, second=second,
                   gaussian=bool(s.gaussian) and bool(np.all(s.mean == mean))
                   and bool(np.all(s.second == second)))


def uniform_spatial(g: Any, spatial: tuple[int, ...], pairs: bool = False
                    ) -> SpatialGradient:
    """A dense layer's one-unit gradient variance, as a map over the flattened pixels;
    with ``pairs``, as a :class:`PairGradient` whose pairs are diagonal (each flattened
    unit has its own zero-mean weights in the dense layer: docs/theory.md, section 8)."""
    if isinstance(g, PairGradient):
        return PairGradient(g.pairs, spatial)
    total = g.total() if not isinstance(g, SpatialGradient) else g.var
    var = (np.full(spatial, float(total)) if np.ndim(total) == 0
           else np.asarray(total, dtype=np.float64).reshape(spatial))
    if pairs and not isinstance(g, SpatialGradient):  # a per-pixel one: pairs unknown
        return PairGradient(np.diag(var.ravel()), spatial)
    return SpatialGradient(var)
