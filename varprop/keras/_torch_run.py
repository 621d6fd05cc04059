"""One seed of :func:`varprop.keras.profile` on Keras's torch backend: the model's graph
run layer by layer on torch tensors, and ``dL/dz``, ``dL/dW`` by torch's autograd.

Imported only when the backend is torch (:func:`varprop.keras.profile.check_backend`),
so ``import varprop.keras`` does not import torch.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..adapters import measure as am
from ._measured import out_stats
from .init import _keras

__all__ = ["TorchRun"]


def _numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().to(torch.float64).cpu().numpy()


class TorchRun:
    """Runs a :class:`varprop.keras.profile._Plan` on standard-normal batches."""

    def __init__(self, plan: Any) -> None:
        self.plan = plan

    def _linear(self, op: Any, x: Any) -> Any:
        """``op`` (a Dense/Conv) on ``x`` with its activation switched off: ``z``."""
        saved = op.activation
        op.activation = _keras().activations.get("linear")
        try:
            return op(x)
        finally:
            op.activation = saved

    def run(self, x: np.ndarray, grad_rng: np.random.Generator, out: np.ndarray, maps: dict,
            tick: Any, extra: np.ndarray) -> None:
        """One seed: forward statistics, then backward, into ``out`` (one seed's
        ``(len(FIELDS), n_records)``), ``maps`` and ``extra`` (per measured-only layer,
        :data:`varprop.adapters.measure.MEASURED_FIELDS`)."""
        keras, plan = _keras(), self.plan
        n = len(plan.steps)
        kernels = list({id(node.op.kernel): node.op.kernel.value for node in plan.nodes}.values())
        flags = [(p, p.requires_grad) for p in kernels]
        zs: list[Any] = [None] * n
        acts: list[Any] = [None] * n
        aliases: list[Any] = [None] * extra.shape[1]  # each measured-only layer's input
        try:
            for p in kernels:  # a frozen layer's kernel too: its dL/dW is measured
                p.requires_grad_(True)
            with torch.enable_grad():
                tensors = {plan.graph.inputs[0]: keras.ops.convert_to_tensor(
                    x, dtype=plan.compute_dtype)}
                for node in plan.run_nodes:
                    ins = [tensors[k] for k in node.inputs]
                    i, k = plan.record_of.get(id(node)), plan.measured_of.get(id(node))
                    if k is not None:  # its own alias: the gradient through it alone
                        h = ins[0]
                        aliases[k] = h.view_as(h) if h.requires_grad else \
                            h.detach().requires_grad_(True)
                        y = node.op(aliases[k], training=False)
                        extra[4, k] = float(_numpy(h).var())
                    elif i is not None:
                        zs[i] = y = self._linear(node.op, ins[0])
                        act = plan.activation(node)
                        if act is not None:
                            y = acts[i] = act(y)
                    elif plan.is_norm(node):  # batch statistics, as the theory assumes
                        y = node.op(ins[0], training=True)
                    elif plan.is_dropout(node):  # dropout off (and identities)
                        y = ins[0]
                    elif len(ins) > 1 and isinstance(node.op, keras.layers.Layer):
                        y = node.op(ins)  # layers.Add takes a list
                    else:
                        y = node.op(*ins)
                    end = plan.measured_end.get(id(node))
                    if end is not None:  # a measured-only layer's output (after its pooling)
                        extra[:3, end] = out_stats(_numpy(y))
                    if id(node) in plan.act_node:
                        acts[plan.act_node[id(node)]] = y
                    tensors[node.out] = y
                for i in range(n):
                    z = _numpy(zs[i])
                    am.forward_stats(out[:, i], z, z if acts[i] is None else _numpy(acts[i]),
                                     maps, i)
                    if tick is not None:
                        tick(1)
                y = tensors[plan.result._output]
                g = torch.as_tensor(grad_rng.standard_normal(tuple(y.shape)), dtype=y.dtype,
                                    device=y.device)
                grads = torch.autograd.grad((y * g).sum(), zs + kernels + aliases,
                                            allow_unused=True)
        finally:
            for p, flag in flags:
                p.requires_grad_(flag)
        dw = {id(p): d for p, d in zip(kernels, grads[n:n + len(kernels)])}
        for k, d in enumerate(grads[n + len(kernels):]):
            extra[3, k] = np.nan if d is None else float(_numpy(d).var())
        rows = x.shape[0]
        for i, node in enumerate(plan.nodes):
            if grads[i] is not None:  # None: z does not reach the output (no gradient)
                am.grad_stats(out[:, i], _numpy(grads[i]), maps, i)
            d = dw.get(id(node.op.kernel.value))
            am.weight_grad_stat(out[:, i], None if d is None else _numpy(d), rows)
            if tick is not None:
                tick(1)
