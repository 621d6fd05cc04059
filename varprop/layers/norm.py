"""Normalization layers in training mode (batch statistics, no affine): BatchNorm over
the batch and LayerNorm over the features. Array forward and backward in float64, and
the mean-field rules (docs/theory.md, section 6)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._analytic_parts import _Gradient
from .._analytic_signal import _Signal
from .._validate import finite_real
from .base import Layer, Step

__all__ = ["BatchNorm", "LayerNorm", "GroupNorm"]


@dataclass(frozen=True)
class _Norm(Layer):
    eps: float = 1e-5

    #: the axis of the statistics of a (batch, features) array
    axis = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "eps", finite_real("eps", self.eps, non_negative=True,
                                                    owner=type(self).__name__))

    def _flat(self, x: np.ndarray) -> np.ndarray:
        """The ``(rows, features)`` view the statistics run over: BatchNorm normalizes each
        channel over the batch and the pixels, LayerNorm each sample over everything."""
        if x.ndim == 2:
            return x
        return x.reshape(-1, x.shape[-1]) if self.axis == 0 else x.reshape(x.shape[0], -1)

    def forward(self, step: Step, run: Any, x: np.ndarray, x2: np.ndarray | None,
                keep: bool, record: bool) -> tuple[np.ndarray, np.ndarray | None, Any]:
        y, inv = _normalize(self._flat(x), self.axis, self.eps)
        y2 = None if x2 is None else \
            _normalize(self._flat(x2), self.axis, self.eps)[0].reshape(x2.shape)
        return y.reshape(x.shape), y2, ((y, inv) if keep else None)

    def backward(self, step: Step, run: Any, cache: Any, grad: np.ndarray) -> np.ndarray:
        y, inv = cache
        return _normalize_backward(self._flat(grad), y, inv, self.axis).reshape(grad.shape)

    def analytic(self, step: Step, analyzer: Any, x: _Signal, ops: list) -> _Signal:
        from ._spatial_rules import is_spatial, norm_spatial
        if is_spatial(x):
            out, factor = norm_spatial(x, self.axis, self.eps, analyzer)
            ops.append((_scale_spatial, factor))
            return out
        x, factor = self._rule(x, analyzer.batch)
        ops.append((_scale_gradient, factor))
        return x

    def _rule(self, x: _Signal, batch: int | None) -> tuple[_Signal, float]:
        raise NotImplementedError


def _scale_gradient(analyzer: Any, factor: float, g: _Gradient) -> _Gradient:
    return g.scaled(factor, g.identical)


def _scale_spatial(analyzer: Any, factor: float, g: Any) -> Any:
    return g.scaled(factor)


@dataclass(frozen=True)
class BatchNorm(_Norm):
    """Batch normalization in training mode: each unit to mean 0, variance 1 over the batch."""

    axis = 0

    def _rule(self, x: _Signal, batch: int | None) -> tuple[_Signal, float]:
        return _batch_norm_forward(x, self.eps, batch)


@dataclass(frozen=True)
class LayerNorm(_Norm):
    """Layer normalization: each sample's features to mean 0, variance 1."""

    axis = 1

    def _rule(self, x: _Signal, batch: int | None) -> tuple[_Signal, float]:
        return _layer_norm_forward(x, self.eps)


def _normalize(x: np.ndarray, axis: int, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """Training-mode normalization without affine: (y in x's dtype, 1/std in float64)."""
    x64 = x.astype(np.float64)
    centred = x64 - x64.mean(axis=axis, keepdims=True)
    inv = 1.0 / np.sqrt(np.mean(centred * centred, axis=axis, keepdims=True) + eps)
    return (centred * inv).astype(x.dtype), inv


def _normalize_backward(grad: np.ndarray, y: np.ndarray, inv: np.ndarray, axis: int) -> np.ndarray:
    """dL/dx of y = (x - mean) / sqrt(var + eps) (statistics over ``axis``)."""
    g, y64 = grad.astype(np.float64), y.astype(np.float64)
    dx = inv * (g - g.mean(axis=axis, keepdims=True)
                - y64 * np.mean(g * y64, axis=axis, keepdims=True))
    return dx.astype(grad.dtype)


def _layer_norm_forward(x: _Signal, eps: float) -> tuple[_Signal, float]:
    """Each sample's features to mean 0, variance 1: with units independent and alike,
    the features of a sample scatter by the unit variance, so per unit this is the
    affine map ``(x - mean) / sqrt(var + eps)``. Returns the output and the factor of
    the gradient variance, ``1 / (var + eps)`` (docs/theory.md, normalization)."""
    scale = 1.0 / (x.var + eps)
    if math.isinf(x.var):  # an overflowed unit: normalized, whatever its scale
        return _Signal(0.0, 1.0, x.identical), 0.0
    mean2 = x.mean * x.mean

    def pair(x_cross: float) -> float:
        return (x_cross - mean2) * scale  # NaN stays NaN: not tracked

    return _Signal(0.0, x.var * scale, x.identical, pair(x.cross), gaussian=x.gaussian,
                   law=x.affine_law(math.sqrt(scale), -x.mean * math.sqrt(scale)),
                   bcross=pair(x.bcross)), scale


def _batch_norm_forward(x: _Signal, eps: float, batch: int | None) -> tuple[_Signal, float]:
    """Each unit to mean 0, variance 1 over the batch (training mode).

    A unit of a layer of random weights carries an offset of its own that every sample
    of the batch shares (its weights and bias are the same for all): the covariance of
    two samples, ``bcross - mean^2``, is the variance of those offsets across units.
    Batch statistics remove the offset, so the variance a unit is divided by is its
    within-batch part ``second - bcross``, not its total variance. After a ReLU the
    offsets hold 1/pi of the second moment, which is why BatchNorm networks' gradients
    grow by pi / (pi - 1) per block at initialization (Yang et al. 2019,
    arXiv 1902.08129; docs/theory.md, BatchNorm).

    Returns the output and the factor of the gradient variance. (A non-Gaussian unit
    with offsets leaves a unit with no exact law: the next activation then flags its
    layer as the Gaussian approximation.) The factor is ``1 / (within + eps)``, times
    ``(B - 2) / (B - 3)`` for a finite ``batch`` B: the mean of ``1 / s^2`` for the sample variance of a
    Gaussian batch exceeds ``1 / E[s^2]`` by ``(B - 1) / (B - 3)``, and the Jacobian
    projects one more direction (the normalized output) out of a gradient already
    centred over the batch, keeping ``(B - 2) / (B - 1)`` of it (docs/theory.md)."""
    mean2 = x.mean * x.mean
    if math.isinf(x.second) or math.isinf(mean2):  # overflowed: normalized all the same
        return _Signal(0.0, 1.0, x.identical, bcross=0.0), 0.0
    bcross = mean2 if math.isnan(x.bcross) else x.bcross
    within = max(x.second - bcross, 0.0)
    scale = 1.0 / (within + eps)
    offsets = bcross - mean2 > 1e-12 * max(x.second, 1e-300)
    cross = (x.cross - bcross) * scale  # NaN stays NaN: not tracked
    if batch is None:
        factor = scale
    elif batch == 3:  # E[1 / s^2] of a chi-square with 2 degrees of freedom diverges
        factor = math.inf
    else:  # batch 2: the projection leaves nothing (y = +-1 exactly)
        factor = scale * (batch - 2) / (batch - 3)
    if not offsets:  # (x - mean) / sqrt(var + eps): an affine map of the unit
        law = x.affine_law(math.sqrt(scale), -x.mean * math.sqrt(scale))
    else:  # a Gaussian unit minus its own (Gaussian) offset: Gaussian; else no exact law
        law = None
    # the offsets are gone: two samples no longer share anything, bcross = 0 (the
    # -1 / (B - 1) correlation a finite batch leaves is part of the factor above)
    return (_Signal(0.0, within * scale, x.identical, cross, gaussian=x.gaussian, law=law,
                    bcross=0.0), factor)


@dataclass(frozen=True)
class GroupNorm(_Norm):
    """Group normalization (Wu and He 2018), training statistics, no affine: each sample's
    channels in ``groups`` groups of ``C / groups``, each group normalized over its
    channels and all pixels. ``groups=1`` is LayerNorm; ``groups=C`` is instance norm.
    Channels of a mean-field layer are alike, so its rule is LayerNorm's."""

    groups: int = 1

    axis = 1

    def __post_init__(self) -> None:
        super().__post_init__()
        from .._validate import positive_int
        object.__setattr__(self, "groups", positive_int("groups", self.groups,
                                                        owner="GroupNorm"))

    def output_width(self, width: Any, position: str) -> Any:
        channels = width if isinstance(width, int) else width[-1]
        if channels % self.groups:
            raise ValueError(f"{position}: GroupNorm: groups ({self.groups}) must divide "
                             f"the channels ({channels})")
        return width

    def _grouped(self, x: np.ndarray) -> np.ndarray:
        b, c = x.shape[0], x.shape[-1]
        pixels = x.size // (b * c)
        g = self.groups
        return (x.reshape(b, pixels, g, c // g).transpose(0, 2, 1, 3)
                .reshape(b * g, pixels * (c // g)))

    def _ungrouped(self, y: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        b, c = shape[0], shape[-1]
        pixels = math.prod(shape) // (b * c)
        g = self.groups
        return (y.reshape(b, g, pixels, c // g).transpose(0, 2, 1, 3).reshape(shape))

    def forward(self, step: Step, run: Any, x: np.ndarray, x2: np.ndarray | None,
                keep: bool, record: bool) -> tuple[np.ndarray, np.ndarray | None, Any]:
        y, inv = _normalize(self._grouped(x), 1, self.eps)
        y2 = None if x2 is None else \
            self._ungrouped(_normalize(self._grouped(x2), 1, self.eps)[0], x2.shape)
        return np.ascontiguousarray(self._ungrouped(y, x.shape)), y2, \
            ((y, inv) if keep else None)

    def backward(self, step: Step, run: Any, cache: Any, grad: np.ndarray) -> np.ndarray:
        y, inv = cache
        dx = _normalize_backward(self._grouped(grad), y, inv, 1)
        return np.ascontiguousarray(self._ungrouped(dx, grad.shape))

    def _rule(self, x: _Signal, batch: int | None) -> tuple[_Signal, float]:
        return _layer_norm_forward(x, self.eps)
