"""A traced network run with the model's own weights on varprop's kernels: what
``TraceResult.forward`` of the framework adapters executes."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..activations import get_activation

__all__ = ["OwnRun", "any_weighted"]


class OwnRun:
    """The run object the layers' array code talks to (as
    :class:`varprop._empirical_run.SeedRun`), handing out the model's own parameters.

    Args:
        weights: one ``(W, b)`` per weighted layer in varprop's layout, forward order.
        dtype: the arrays' dtype.
    """

    def __init__(self, weights: list, dtype: np.dtype) -> None:
        self._weights, self.dtype, self.n_threads = weights, dtype, None
        self.linear = get_activation("linear")

    def parameters(self, layer: Any, index: int) -> tuple[np.ndarray, Any]:
        """Layer ``index``'s own ``(W, b)``."""
        return self._weights[index]

    def __getattr__(self, name: str) -> Any:  # record_* and gradients: nothing to keep
        if name.startswith("record") or name == "gradients":
            return lambda *args, **kwargs: None
        raise AttributeError(name)


def any_weighted(layers: Any) -> bool:
    """Whether ``layers`` (residual branches entered) hold a weighted layer."""
    from ..layers import Residual
    return any(layer.weighted or (isinstance(layer, Residual) and any_weighted(layer.branch))
               for layer in layers)
