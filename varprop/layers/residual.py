"""The residual block ``y = x + alpha * f(x)`` around a branch of layers: array forward
and backward, and the mean-field rule (docs/theory.md, section 6)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .._analytic_parts import _Gradient
from .._analytic_signal import _Signal
from .._validate import finite_real
from ._spatial import SpatialGradient
from .base import Layer, Step

__all__ = ["Residual"]


@dataclass(frozen=True)
class Residual(Layer):
    """``x + alpha * f(x)``: ``branch`` (a sequence of layers) must map a width to the
    same width; ``alpha`` is a finite real number."""

    branch: tuple[Layer, ...]
    alpha: float = 1.0

    has_branch = True

    def __post_init__(self) -> None:
        branch = self.branch
        if isinstance(branch, Layer) or not isinstance(branch, (list, tuple)):
            raise TypeError(f"Residual: branch must be a sequence of layers, got "
                            f"{type(branch).__name__} {branch!r}")
        object.__setattr__(self, "branch", tuple(branch))
        object.__setattr__(self, "alpha", finite_real("alpha", self.alpha, owner="Residual"))

    def forward(self, step: Step, run: Any, x: np.ndarray, x2: np.ndarray | None,
                keep: bool, record: bool) -> tuple[np.ndarray, np.ndarray | None, Any]:
        h, h2 = x, x2
        caches: list[Any] | None = [] if keep else None
        for sub in step.branch:
            h, h2, cache = sub.layer.forward(sub, run, h, h2, keep, record)
            if caches is not None:
                caches.append(cache)
        alpha = run.dtype.type(self.alpha)
        y = x + alpha * h
        y2 = None if x2 is None else x2 + alpha * h2
        return y, y2, caches

    def backward(self, step: Step, run: Any, cache: Any, grad: np.ndarray) -> np.ndarray:
        g = run.dtype.type(self.alpha) * grad
        for sub, sub_cache in zip(reversed(step.branch), reversed(cache)):
            g = sub.layer.backward(sub, run, sub_cache, g)
        return grad + g

    def cache_bytes(self, step: Step, width: int, batch: int, itemsize: int
                    ) -> tuple[int, int]:
        total = 0
        for sub in step.branch:
            size, width = sub.layer.cache_bytes(sub, width, batch, itemsize)
            total += size
        from ._spatial import numel
        return total + batch * numel(width) * itemsize, width

    def analytic(self, step: Step, analyzer: Any, x: _Signal, ops: list) -> _Signal:
        alpha = self.alpha
        f, branch_ops = analyzer.forward(step.branch, x)
        a2 = alpha**2
        from ._spatial_rules import is_spatial, residual_spatial
        if is_spatial(x):
            ops.append((_backward_rule, (alpha, branch_ops)))
            return residual_spatial(x, f, alpha)
        # the branch ends in zero-mean weights: its output is uncorrelated with x
        # (NaN cross moments stay NaN: not tracked)
        ops.append((_backward_rule, (alpha, branch_ops)))
        return _Signal(x.mean + alpha * f.mean, x.var + a2 * f.var,
                       x.identical and f.identical, x.cross + a2 * f.cross,
                       gaussian=x.gaussian and f.gaussian, bcross=x.bcross + a2 * f.bcross)


def _backward_rule(analyzer: Any, state: tuple, g: _Gradient) -> _Gradient:
    # y = x + alpha f(x): the branch's output gradient is alpha dL/dy, so alpha^2 enters
    # once, at the top of the branch (docs/theory.md, residual)
    alpha, branch_ops = state
    g = g.reduced()
    through = analyzer.backward(branch_ops, g.scaled(alpha**2, g.identical)).reduced()
    if isinstance(g, SpatialGradient):  # keeps a max pool's identity-path part
        from ._spatial_rules import residual_backward
        return residual_backward(g, through)
    return _Gradient(g.var + through.var, g.identical and through.identical)
