"""The model's forward with its measured-only ops measured (docs/torch.md,
"Measured-only ops"): :class:`GraphRunner` runs the traced ``torch.fx`` graph node by
node. Its modules are the model's own objects, so the forward hooks of
:mod:`varprop.torch.profile` fire as they do when the model itself runs. At each
measured-only op it reads:

* forward, the op's output: pooled mean and variance over the batch and every unit
  (and token or pixel), and ``bcross``, the mean over units of the squared per-unit
  mean (the between-sample second moment a later BatchNorm needs);
* backward, the gradient that flows into the op: the op reads its input through an
  alias (``view_as``) of its own, so a tensor hook on the alias sees the gradient
  through the op alone, not the one a residual skip adds to the same tensor.

``torch.fx`` records a functional dropout's ``training`` flag as the constant it was
when traced; the runner makes every dropout the identity, as ``model.eval()`` does.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.fx as fx

from ..adapters.measure import MEASURED_FIELDS

__all__ = ["GraphRunner", "MEASURED_FIELDS", "unit_rows"]

#: The row of each of MEASURED_FIELDS (measured at each measured-only op) in the array.
_ROW = {name: i for i, name in enumerate(MEASURED_FIELDS)}
_DROPOUTS = {"dropout", "dropout1d", "dropout2d", "alpha_dropout", "feature_alpha_dropout"}


def unit_rows(t: torch.Tensor, sequence: bool) -> torch.Tensor:
    """``t`` as ``(units, samples)``: the last dim is the unit of a sequence (its tokens
    are rows), dim 1 of channels-first images or flat features."""
    t = t.double()
    if t.dim() == 1:
        return t.reshape(1, -1)
    if sequence:
        return t.reshape(-1, t.shape[-1]).transpose(0, 1)
    return t.transpose(0, 1).reshape(t.shape[1], -1)


class GraphRunner(fx.Interpreter):
    """Runs ``gm`` and fills ``out[:, k]`` (rows :data:`MEASURED_FIELDS`) for each
    measured-only op ``k`` of ``ops`` (:class:`~varprop.torch._measured.MeasuredOp`)."""

    def __init__(self, gm: fx.GraphModule, ops: list, sequence: bool, out: np.ndarray) -> None:
        super().__init__(gm)
        self.sequence, self.out = sequence, out
        names = {n.name: n for n in gm.graph.nodes}
        self.start = {k: names[op.start] for k, op in enumerate(ops)}
        self.end = {names[op.end]: k for k, op in enumerate(ops)}
        self.member = {names[m]: k for k, op in enumerate(ops) for m in op.nodes}
        self.aliases: dict[int, torch.Tensor] = {}

    def run_node(self, n: fx.Node) -> Any:
        if n.op in ("call_function", "call_method") and \
                getattr(n.target, "__name__", n.target) in _DROPOUTS:
            return self.env[n.args[0]] if n.args else n.kwargs["input"]
        k = self.member.get(n)
        if k is None:
            return super().run_node(n)
        start = self.start[k]
        value = self.env.get(start)  # None: freed after its last use, aliased before
        if k not in self.aliases:
            alias = value.view_as(value)
            self.aliases[k] = alias
            with torch.no_grad():
                self.out[_ROW["in_var"], k] = float(value.detach().double().var(unbiased=False))
            if alias.requires_grad:
                alias.register_hook(lambda g, k=k: self._grad(k, g))
        self.env[start] = self.aliases[k]
        try:
            result = super().run_node(n)
        finally:
            if value is None:
                del self.env[start]
            else:
                self.env[start] = value
        if self.end.get(n) == k:
            self._forward(k, result)
        return result

    def _forward(self, k: int, y: torch.Tensor) -> None:
        with torch.no_grad():
            rows = unit_rows(y.detach(), self.sequence)
            self.out[_ROW["out_mean"], k] = float(rows.mean())
            self.out[_ROW["out_var"], k] = float(rows.var(unbiased=False))
            self.out[_ROW["bcross"], k] = float((rows.mean(1) ** 2).mean())

    def _grad(self, k: int, g: torch.Tensor) -> None:
        self.out[_ROW["grad_var"], k] = float(g.detach().double().var(unbiased=False))
