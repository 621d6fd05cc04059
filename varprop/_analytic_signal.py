"""One unit of a layer's output as the analyzer sees it (:class:`_Signal`), and the rules
of the layers that normalize it: BatchNorm over the batch, LayerNorm over the features
(docs/theory.md, section 6)."""

from __future__ import annotations

import math
from typing import Any, Callable

from .theory.unit_law import UnitLaw

__all__ = ["_Signal", "_layer_norm_forward", "_batch_norm_forward"]


class _Signal:
    """Moments of one unit of a layer's output (alike across units), and its law.

    ``gaussian``: the unit is exactly N(mean, var) (an input, the output of a layer of
    random weights, an affine map of those), so the closed forms apply. Otherwise
    ``law`` is its exact law as a function of one Gaussian (:class:`UnitLaw`), a thunk
    that makes it, or None when there is none (then the Gaussian approximation stands).
    """

    __slots__ = ("mean", "var", "second", "identical", "cross", "bcross", "gaussian", "_law")

    def __init__(self, mean: float, var: float, identical: bool = False,
                 cross: float = math.nan, second: float | None = None,
                 gaussian: bool = True, law: Any = None, bcross: float = math.nan) -> None:
        self.mean = mean
        self.var = var
        # E[x^2]: an activation's own E[phi^2], else Var + E^2
        self.second = var + mean * mean if second is None else second
        self.identical = identical  # every unit equals every other (symmetric init upstream)
        self.cross = cross  # E[x1 x2] for two inputs of the given correlation
        # E[x_b x_b'] of one unit for two independent samples b != b' of a batch, which
        # share the weights: tracked (not NaN) only when a BatchNorm needs it, since
        # the batch variance of a unit is second - bcross (docs/theory.md, BatchNorm)
        self.bcross = bcross
        self.gaussian = gaussian
        self._law = law

    def law(self) -> UnitLaw | None:
        """The exact law (made on first use), or None."""
        if self._law is None and self.gaussian:
            self._law = UnitLaw.gaussian(self.mean, self.var)
        elif self._law is not None and not isinstance(self._law, UnitLaw):
            self._law = self._law()
        return self._law

    def affine_law(self, scale: float, shift: float) -> Callable[[], UnitLaw | None]:
        """A thunk for the law of ``scale * unit + shift`` (same nodes as this one's)."""
        def law() -> UnitLaw | None:
            base = self.law()
            return None if base is None else base.affine(scale, shift)
        return law



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
