"""A measured-only op: a part of a traced model that varprop has no theory for (an
attention block, a recurrent layer, a concatenation), kept in the network so that
nothing is dropped, and *re-anchored* on measurement (docs/torch.md, "Measured-only ops").

The analytic rule does not predict the op's output. It hands on the moments measured at
the op's output (``mean``, ``var``, and ``bcross``, the between-sample second moment a
later BatchNorm needs), and, backward, the gradient variance measured at the op's input
(``grad_var``). Theory before and after the op is then the mean field of the layers
theory covers, started afresh from those measured values. An op without its measured
values (the fields NaN) cannot be analyzed: the analytic rule raises a ValueError naming
it (:func:`varprop.torch.trace` anchors every op it keeps). The op has no array code:
measure the model itself (:func:`varprop.torch.profile`).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._analytic_parts import _Gradient
from .._analytic_signal import _Signal
from .base import Layer, Step

__all__ = ["Measured"]


@dataclass(frozen=True)
class Measured(Layer):
    """A measured-only op (module doc).

    Args:
        name: what the op is (a module path or a node name), for reports.
        in_width, out_width: the feature shapes it reads and hands on (an int, or
            ``(*spatial, channels)``).
        mean, var, bcross: moments of one output unit, measured (NaN: not anchored).
        grad_var: variance of dL/d(input) that flows back through the op, measured.
    """

    name: str
    in_width: Any
    out_width: Any
    mean: float = math.nan
    var: float = math.nan
    bcross: float = math.nan
    grad_var: float = math.nan

    def __post_init__(self) -> None:
        if not isinstance(self.name, str):
            raise TypeError(f"Measured: name must be a str, got {type(self.name).__name__}")
        for f in ("mean", "var", "bcross", "grad_var"):
            object.__setattr__(self, f, float(getattr(self, f)))

    @property
    def anchored(self) -> bool:
        """Whether measured moments stand in for the op (forward and backward)."""
        return math.isfinite(self.var) and math.isfinite(self.grad_var)

    def anchor(self, mean: float, var: float, bcross: float, grad_var: float) -> "Measured":
        """This op with measured moments."""
        return dataclasses.replace(self, mean=mean, var=var, bcross=bcross, grad_var=grad_var)

    def output_width(self, width: Any, position: str) -> Any:
        if width != self.in_width:
            raise ValueError(f"{position}: measured-only op {self.name!r} reads shape "
                             f"{self.in_width!r} but receives {width!r}")
        return self.out_width

    def analytic(self, step: Step, analyzer: Any, x: Any, ops: list) -> Any:
        if not self.anchored:
            raise ValueError(f"measured-only op {self.name!r} has no measured moments to "
                             "re-anchor the theory on: anchor it with "
                             "TraceResult.anchor(profile) (docs/torch.md)")
        ops.append((_backward, self))
        if isinstance(self.out_width, tuple):
            from ..theory.spatial import SpatialMoments
            spatial = self.out_width[:-1]
            p = math.prod(spatial)
            second = self.var + self.mean * self.mean
            # pixels taken independent of each other; the measured per-unit offsets of a
            # sample-shared op stand for the between-sample moments
            cross = np.full((p, p), self.mean * self.mean)
            np.fill_diagonal(cross, second)
            return SpatialMoments(np.full(spatial, self.mean), np.full(spatial, second),
                                  cross if getattr(analyzer, "track_cross", False) else None,
                                  gaussian=False, exact=False,
                                  bcross=np.full((p, p), self.bcross))
        return _Signal(self.mean, self.var, False, math.nan, gaussian=False,
                       bcross=self.bcross)

    def forward(self, step: Step, run: Any, x: Any, x2: Any, keep: bool,
                record: bool) -> tuple[Any, Any, Any]:
        raise ValueError(f"{self.name} is measured only: varprop has no array code for it; "
                         "measure the PyTorch model itself (varprop.torch.profile)")

    backward = forward  # type: ignore[assignment]


def _backward(analyzer: Any, layer: Measured, g: Any) -> Any:
    if isinstance(layer.in_width, tuple):
        from ._spatial import SpatialGradient
        return SpatialGradient(np.full(layer.in_width[:-1], layer.grad_var))
    return _Gradient(layer.grad_var, False)
