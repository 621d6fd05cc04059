"""One unit of a layer's output as the analyzer sees it (:class:`_Signal`): its mean,
variance, correlations and, along identity or constant chains, its exact law
(docs/theory.md, sections 2 and 6)."""

from __future__ import annotations

import math
from typing import Any, Callable

from .theory.unit_law import UnitLaw

__all__ = ["_Signal"]


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
