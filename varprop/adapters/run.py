"""What the framework adapters' traces share: :class:`TraceFields`, the fields of their
``TraceResult`` and its measured-only layers re-anchored on a measurement
(:func:`anchor`), and the run of a traced network with the model's own weights on
varprop's kernels (:class:`OwnRun`, what ``TraceResult.forward`` executes)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..activations import get_activation
from ..network import Network

__all__ = ["TraceFields", "OwnRun", "any_weighted", "anchor", "replace_measured"]


@dataclass
class TraceFields:
    """The fields of every adapter's ``TraceResult`` (``varprop.torch.TraceResult``,
    ``varprop.keras.TraceResult`` document them in their framework's terms): the
    ``network``, the share of parameters ``covered``, the ``unsupported`` ops, the
    ``laws`` and ``names`` of the weighted layers, ``notes``, ``next_op`` per weighted
    layer, the model's ``graph``, the layer -> (name, framework object) map
    ``_modules``, and the ``measured``-only layers (each with its ``layer``)."""

    network: Network
    covered: float
    unsupported: list[str]
    laws: list  # per weighted layer: [weight law, (bias law)] (varprop.torch._law.Law)
    names: list[str]
    notes: list[str] = field(default_factory=list)
    next_op: dict[str, str] = field(default_factory=dict, repr=False)
    graph: Any = field(default=None, repr=False)
    _modules: dict[int, tuple[str, Any]] = field(default_factory=dict, repr=False)
    measured: list = field(default_factory=list)

    def anchor(self, measured: Any) -> Any:
        """This trace with its measured-only layers re-anchored on a measurement: the
        adapter's ``profile`` (its ``meta["measured_only"]``) or its rows
        (:func:`anchor`)."""
        return anchor(self, measured)


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


def replace_measured(layers: tuple, new: dict) -> tuple:
    """``layers`` with each Measured layer ``m`` replaced by ``new[id(m)]`` (residual
    branches included)."""
    from ..layers import Residual
    from ..layers.measured import Measured
    out = []
    for layer in layers:
        if isinstance(layer, Residual):
            layer = dataclasses.replace(layer, branch=replace_measured(layer.branch, new))
        elif isinstance(layer, Measured):
            layer = new.get(id(layer), layer)
        out.append(layer)
    return tuple(out)


def anchor(result: Any, measured: Any) -> Any:
    """``result`` (an adapter's ``TraceResult``: ``network``, and ``measured``, whose
    items hold their :class:`~varprop.layers.measured.Measured` ``layer``) with each
    measured-only layer re-anchored on a measurement: a ``Profile`` of the adapter's
    ``profile`` (its ``meta["measured_only"]``) or a list of dicts with ``out_mean``,
    ``out_var``, ``bcross`` and ``grad_var``, one per measured-only layer."""
    rows = measured.meta["measured_only"] if hasattr(measured, "meta") else measured
    if len(rows) != len(result.measured):
        raise ValueError(f"anchor: {len(rows)} measured row(s) for {len(result.measured)} "
                         "measured-only layer(s)")
    new = {id(m.layer): m.layer.anchor(r["out_mean"], r["out_var"], r["bcross"],
                                       r["grad_var"]) for m, r in zip(result.measured, rows)}
    ops = [dataclasses.replace(m, layer=new[id(m.layer)]) for m in result.measured]
    network = dataclasses.replace(result.network,
                                  layers=replace_measured(result.network.layers, new))
    return dataclasses.replace(result, network=network, measured=ops)
