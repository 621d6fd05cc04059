"""Where the analyzer's theory is only approximate, and why: the kinds of
approximation that ``analyze`` lists in ``meta["approximations"]`` with their reasons,
which every report format prints (docs/theory.md)."""

from __future__ import annotations

from typing import Any, Sequence

from .network import BatchNorm, Layer, Residual
from .theory.finite_width import REASON as FINITE_WIDTH_REASON

__all__ = ["APPROXIMATION_REASONS", "approximations", "has_batch_norm"]


#: Why the theory of a layer is only approximate, by kind (analyze's
#: ``meta["approximations"]``; the reports print the reason).
APPROXIMATION_REASONS = {
    "gaussian": "units known not to be Gaussian (an identity layer with random biases or "
                "more outputs than inputs, or a residual sum of such units) are treated as "
                "Gaussian for want of their exact law",
    "unresolved": "along an identity or constant chain the gradient's expectation has a "
                  "feature narrower than the quadrature rule resolves (a steep transition "
                  "after many GELU-like layers, or a spike near an unstable fixed point of "
                  "the activation such as SELU's 0, where rare units carry most of the "
                  "mean): the theory's value is not reliable, and a measurement of a finite "
                  "batch may not converge to the mean either",
    "finite_width": FINITE_WIDTH_REASON,  # a template: {sigma}, {width}, ...
}


def approximations(gaussian: Sequence[int], unresolved: Sequence[int],
                   finite_width: Any = None) -> list[dict[str, Any]]:
    """``[{"kind", "layers", "reason"}, ...]`` for the kinds that occur
    (``finite_width``: a :class:`~varprop.theory.finite_width.Regime`, or None)."""
    out = []
    for kind, layers in (("gaussian", gaussian), ("unresolved", unresolved)):
        if layers:
            out.append({"kind": kind, "layers": list(layers),
                        "reason": APPROXIMATION_REASONS[kind]})
    if finite_width is not None and finite_width.layers:
        fields = finite_width.reason_fields()
        out.append({"kind": "finite_width", "layers": finite_width.layers,
                    "reason": APPROXIMATION_REASONS["finite_width"].format(**fields)})
    return out


def has_batch_norm(layers: Sequence[Layer]) -> bool:
    return any(isinstance(layer, BatchNorm)
               or (isinstance(layer, Residual) and has_batch_norm(layer.branch))
               for layer in layers)
