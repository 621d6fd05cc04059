"""Measured-only ops of a traced model (docs/torch.md, "Measured-only ops"): where each
one starts and ends in the ``torch.fx`` graph, the re-anchored network, and the gated
theory put beside a recurrent layer.

An op varprop has no theory for (an attention block, an LSTM, a concatenation, a
projection shortcut) becomes one *region* of the graph: the nodes between a start
tensor ``c`` (the nearest tensor every path into the op passes through) and the op's
output tensor, closed (their inputs come from the region, from ``c``, from parameters
or from constants that do not depend on the model's input) and private (only the
region's last node is read outside it). The region is one
:class:`~varprop.layers.measured.Measured` layer of the network: measured at its output
(forward) and at ``c`` (the gradient that flows back through the region), and the
theory re-anchored there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import torch.fx as fx
from torch import nn

from ..layers.measured import Measured
from ..recurrent.spec import SimpleRNN

__all__ = ["MeasuredOp", "find_region", "recurrent_beside"]


@dataclass
class MeasuredOp:
    """One measured-only op of a trace.

    Attributes:
        name: what it is, e.g. ``"MultiheadAttention at 'layers.0.self_attn' (+ getitem)"``.
        reasons: why each of its nodes has no theory.
        start, end: the fx node names of its input tensor and its output tensor.
        nodes: the fx node names it holds (``end`` included).
        after: the number of Linear/Conv records before it (its row sits before record
            ``after`` in tables).
        module: the one ``nn.Module`` it calls, when it is one module call (an LSTM or
            a MultiheadAttention), else None.
        steps: for a recurrent layer, the sequence length; ``last``: whether the op
            ends at its last step's state (``out[:, -1]``, ``h_n``) rather than all steps;
            ``pooled``: whether it ends at a mean, sum or pooling over its steps.
    """

    name: str
    reasons: list[str]
    start: str
    end: str
    nodes: list[str]
    after: int
    module: "nn.Module | None" = field(default=None, repr=False)
    layer: "Measured | None" = field(default=None, repr=False)
    steps: int = 0
    last: bool = True
    pooled: bool = False

    def __str__(self) -> str:
        return f"{self.name}: {'; '.join(self.reasons)}"


def find_region(end: fx.Node, nodes: list[fx.Node], index: dict, anc: dict,
                constant: Callable[[fx.Node], bool], is_tensor: Callable[[Any], bool],
                live: Callable[[fx.Node], bool], bare: Callable[[fx.Node], bool]
                ) -> tuple[fx.Node, list[fx.Node]]:
    """``(start, region)`` of the measured-only op that ends at ``end`` (module doc): the
    latest tensor ancestor ``c`` whose region is closed and private (among the ``live``
    nodes, those the model's output reads). A ``c`` that is itself ``bare`` (an op with
    no theory, or a part of a tuple) joins the region: an LSTM and the ``[0][:, -1]``
    that reads its last state are one op. Raises ValueError where no ``c`` is (an op
    fed by two of the model's inputs)."""
    e = index[end]
    for k in range(e - 1, -1, -1):
        c = nodes[k]
        if not (anc[end] >> k & 1) or not is_tensor(c) or c.op == "get_attr" \
                or constant(c) or bare(c):
            continue
        region = [n for n in nodes[k + 1:e] if anc[end] >> index[n] & 1
                  and anc[n] >> k & 1] + [end]
        inside = set(region)
        closed = all(i is c or i in inside or i.op == "get_attr" or constant(i)
                     for n in region for i in n.all_input_nodes)
        private = all(u in inside for n in region[:-1] for u in n.users if live(u))
        if closed and private:
            return c, region
    raise ValueError(f"trace: no single tensor feeds the op ending at node {end.name!r}")


def recurrent_beside(op: MeasuredOp, in_var: float) -> "dict[str, Any] | None":
    """varprop's recurrent theory beside a one-layer, one-direction ``nn.RNN`` (Elman
    mean field, docs/recurrent.md), ``nn.LSTM`` or ``nn.GRU`` (gated mean field,
    docs/gated.md) op, with each weight's law read from its entries as ``trace`` reads
    a Linear's (:func:`varprop.torch._law.read_weight`: a recurrent matrix that is a
    multiple of the identity is read as the identity, whose exact law differs from a
    Gaussian's of the same moments) and Gaussian inputs of the measured
    variance ``in_var``: :func:`varprop.recurrent.beside.theory_beside`'s dict, else None.
    None too for an op that pools over its steps (``op.pooled``): the variance of their
    mean needs the correlation between steps, which the mean field does not give; beside
    it, a per-step variance would read as a prediction of the pooled output it is not."""
    m = op.module
    if op.pooled or not isinstance(m, (nn.RNN, nn.LSTM, nn.GRU)) or m.num_layers != 1 \
            or m.bidirectional \
            or getattr(m, "proj_size", 0) or op.steps < 1 or not in_var > 0:
        return None
    from ..recurrent.beside import theory_beside
    from ..recurrent.gated import GRU, LSTM
    from ._law import for_layer, read_bias, read_weight

    # each tensor's law as the trace reads a Linear's (docs/torch.md): a scheme it fits,
    # a constant, gain * eye, or its sample moments with a mean within noise of 0 read as 0
    w_ih = read_weight(op.name, m.weight_ih_l0.detach().numpy()).initializer
    w_hh = read_weight(op.name, m.weight_hh_l0.detach().numpy()).initializer
    biases = None
    if m.bias:  # the moments of bias_ih and bias_hh, each as its law gives them
        b = [read_bias(op.name, t.detach().numpy(), m.hidden_size).initializer
             .moments(tuple(t.shape)) for t in (m.bias_ih_l0, m.bias_hh_l0)]
    if isinstance(m, nn.RNN):  # varprop's SimpleRNN is in Keras's layout: z = x @ W
        if m.bias:  # z = x W_ih' + b_ih + h W_hh' + b_hh: one bias, their sum
            biases = _law_of(b[0].mean + b[1].mean, b[0].var + b[1].var)
        spec: Any = SimpleRNN(m.input_size, m.hidden_size, m.nonlinearity,
                              for_layer(w_ih, "dense"), for_layer(w_hh, "dense"), biases)
    else:
        if m.bias:  # both biases are drawn with one law in the torch layout: their mean law
            biases = _law_of((b[0].mean + b[1].mean) / 2, (b[0].var + b[1].var) / 2)
        kind = LSTM if isinstance(m, nn.LSTM) else GRU
        extra = {"unit_forget_bias": False} if kind is LSTM else {}
        spec = kind(m.input_size, m.hidden_size, w_ih, w_hh, biases, "torch", **extra)
    return theory_beside(spec, op.steps, in_var, last=op.last,
                         source="weights' laws read from the module")


def _law_of(mean: float, var: float) -> dict[str, Any]:
    """A Gaussian of the given moments, or the constant when ``var`` is 0 (zeroed
    biases: a Gaussian of standard deviation 0 is not a law the registry accepts)."""
    if var > 0.0:
        return {"name": "random_normal", "mean": mean, "stddev": math.sqrt(var)}
    return {"name": "constant", "value": mean}
