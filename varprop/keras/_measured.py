"""Measured-only layers of a traced Keras model: a recurrent layer (``LSTM``, ``GRU``,
``SimpleRNN``) that a varprop :class:`~varprop.network.Network` has no mean-field rule
for is kept in the network as a :class:`~varprop.layers.measured.Measured` layer, named
in the trace's notes, never dropped (docs/keras.md, "Measured-only layers").

:func:`varprop.keras.profile` measures each one in the model itself: forward, the
pooled mean and variance of its output and ``bcross`` (the mean over units of the
squared per-unit mean, the between-sample second moment a later BatchNorm needs);
backward, the variance of the gradient that flows into it (through an alias of its
input that only it reads, so not a residual skip's). ``TraceResult.anchor``
(:func:`varprop.adapters.run.anchor`) then re-anchors the theory there: the layers after
it start from its measured output, the layers before it from its measured input gradient
(the definitions of :mod:`varprop.layers.measured`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..layers.measured import Measured

__all__ = ["RECURRENT_MEASURED", "MeasuredLayer", "measured_layer", "out_stats",
           "recurrent_beside"]

#: The Keras layers kept as measured only (with ``return_state=False``: one output).
RECURRENT_MEASURED = ("LSTM", "GRU", "SimpleRNN")


@dataclass
class MeasuredLayer:
    """One measured-only layer of a trace: its Keras ``node``, the varprop ``layer``
    standing for it, and ``after``, the number of weighted records before it.
    ``pooled``: the nodes after ``node`` that pool over its steps (a
    ``GlobalAveragePooling1D`` of ``return_sequences=True``), measured with it: the op
    ends at ``end``, the last of them (``node`` itself when there are none)."""

    name: str
    node: Any
    layer: Measured
    after: int
    pooled: tuple = ()

    @property
    def end(self) -> Any:
        """The node whose output is measured (forward)."""
        return self.pooled[-1] if self.pooled else self.node


def measured_layer(node: Any, width: Any, after: int, pooled: tuple = ()) -> MeasuredLayer:
    """The :class:`MeasuredLayer` of a recurrent ``node`` reading features of ``width``
    (``(steps, features)``), with the ``pooled`` nodes that follow it (identities and
    poolings over its steps) measured as part of it."""
    shape: tuple = (None, *np.atleast_1d(width).tolist())
    for n in (node, *pooled):
        shape = tuple(n.op.compute_output_shape(shape))
    shape = shape[1:]
    out: Any = int(shape[0]) if len(shape) == 1 else tuple(int(d) for d in shape)
    name = f"{type(node.op).__name__} {node.op.name!r}" + "".join(
        f" (+ {type(n.op).__name__} {n.op.name!r})" for n in pooled
        if "Pooling" in type(n.op).__name__)
    return MeasuredLayer(name, node, Measured(name, width, out), after, tuple(pooled))


def out_stats(y: np.ndarray) -> tuple[float, float, float]:
    """``(mean, variance, bcross)`` of a measured-only layer's output ``(batch, ...,
    units)``: pooled over everything, and the mean over units (and steps) of the squared
    mean over the batch."""
    y = np.asarray(y, np.float64)
    per_unit = y.reshape(y.shape[0], -1)  # batch x (steps * units)
    return float(y.mean()), float(y.var()), float((per_unit.mean(0) ** 2).mean())


def recurrent_beside(m: MeasuredLayer, in_var: float) -> "dict[str, Any] | None":
    """varprop's recurrent theory beside a Keras ``SimpleRNN`` (Elman mean field,
    docs/recurrent.md; any registry activation), ``LSTM`` or ``GRU`` (``reset_after=True``;
    gated mean field, docs/gated.md; their default tanh/sigmoid activations), read from
    its configured initializers in Keras's layout (``unit_forget_bias`` included), on
    Gaussian inputs of the measured variance ``in_var``:
    :func:`varprop.recurrent.beside.theory_beside`'s dict, else None; None too when the
    op pools over its steps."""
    from ..activations import get_activation
    from ..recurrent.beside import theory_beside
    from ..recurrent.gated import GRU, LSTM
    from ..recurrent.spec import SimpleRNN
    from .init import from_keras
    op, kind = m.node.op, type(m.node.op).__name__
    cfg = op.get_config()
    steps = m.layer.in_width[0] if isinstance(m.layer.in_width, tuple) else 0
    # pooled over the steps: the variance of their mean needs the correlation between
    # steps, which the mean field does not give (docs/keras.md)
    if m.pooled or kind not in ("SimpleRNN", "LSTM", "GRU") or not steps or not in_var > 0 \
            or cfg.get("go_backwards"):
        return None
    if kind != "SimpleRNN" and (
            cfg.get("activation") != "tanh" or cfg.get("recurrent_activation") != "sigmoid"
            or (kind == "GRU" and not cfg.get("reset_after", True))):
        return None
    inits = [from_keras(cfg.get(key))[0] for key in ("kernel_initializer",
                                                      "recurrent_initializer")]
    bias = from_keras(cfg.get("bias_initializer"))[0] if cfg.get("use_bias", True) else None
    if any(i is None for i in inits) or (cfg.get("use_bias", True) and bias is None):
        return None  # a custom initializer: no law to read
    inputs, units = int(m.layer.in_width[-1]), int(cfg["units"])
    if kind == "SimpleRNN":
        try:
            act = get_activation(cfg.get("activation"))
        except (TypeError, ValueError):
            return None  # an activation outside varprop's registry
        spec: Any = SimpleRNN(inputs, units, act, inits[0], inits[1], bias)
    else:
        extra = {"unit_forget_bias": bool(cfg.get("unit_forget_bias")) and bias is not None} \
            if kind == "LSTM" else {}
        spec = (LSTM if kind == "LSTM" else GRU)(inputs, units, inits[0], inits[1], bias,
                                                 "keras", **extra)
    return theory_beside(spec, int(steps), in_var, last=not cfg.get("return_sequences"),
                         source="laws from the layer's configured initializers")
