"""A Keras model as a varprop :class:`~varprop.network.Network`: :func:`trace`.

Keras keeps the graph: a Sequential model is its layer list, a functional one a graph
of nodes from its inputs to its outputs. Both (nested models entered) are read as one
flat graph (:class:`~varprop.keras._graph.Graph`), then as a chain of layers with
residual adds: an ``Add`` of two tensors one of which is an ancestor of the other is a
:class:`~varprop.layers.Residual` around the path between them, a ``Rescaling`` at the
branch's end its ``alpha``. Each layer's config gives its varprop layer; each kernel's
law comes from its configured initializer, its values, or a named scheme
(:mod:`varprop.keras.init`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import layers as vl
from .._validate import one_of
from ..adapters.run import OwnRun, TraceFields, any_weighted
from ..network import Network
from ..torch import _law
from . import _measured
from ._graph import Graph, _Node
from .init import (_keras, activation_of, bias_law, input_shape, kernel_law, kernels_of,
                   layer_activation, layer_kind, roles, same_pads, to_numpy)

__all__ = ["trace", "TraceResult", "UnsupportedLayerError", "Graph"]


class UnsupportedLayerError(ValueError):
    """The model holds layers varprop has no theory for; ``unsupported`` names each
    (``"PReLU 'p_re_lu': ..."``). A ``ValueError``."""

    def __init__(self, unsupported: list[str]) -> None:
        self.unsupported = list(unsupported)
        super().__init__("trace: the model holds layer(s) varprop does not map: "
                         + "; ".join(self.unsupported)
                         + ". Mapped: Dense, Conv1D/2D, Activation and the activation layers "
                           "of varprop.activations, BatchNormalization, LayerNormalization, "
                           "GroupNormalization, residual Add, Flatten, max/average pooling, "
                           "GlobalAveragePooling1D/2D, Dropout (docs/keras.md)")


@dataclass
class TraceResult(TraceFields):
    """What :func:`trace` found (the fields of :class:`varprop.torch.TraceResult`).

    Attributes:
        network: the varprop network, channels last as Keras (``layout="keras"``).
        covered: the fraction of the model's trainable weights (by count) whose role the
            theory reads: kernels, biases, normalization affines at their identity.
        unsupported: always empty: an unsupported layer raises instead.
        laws: per weighted layer (forward order) the kernel's law and, with a bias,
            the bias's (:class:`varprop.torch.Law`; ``source`` "initializer", "init_",
            "matched", "moments", "constant", "identity" or "scheme").
        names: the layer name of each weighted layer, in ``analyze(network)``'s order.
        notes: what the theory assumes beyond the model.
        next_op: per weighted layer what reads its output: "norm", an activation name
            or "other"; ``graph``: the Keras model.
        measured: the measured-only layers (:class:`varprop.keras._measured.MeasuredLayer`).
    """

    # for profile: the flat graph, each weighted layer's node, the output, a softmax head
    _graph: "Graph | None" = field(default=None, repr=False)
    _nodes: dict[int, Any] = field(default_factory=dict, repr=False)
    _output: int = -1
    _head: Any = field(default=None, repr=False)

    def weights(self, dtype: Any = np.float64) -> list[tuple[np.ndarray, "np.ndarray | None"]]:
        """The model's own ``(kernel, bias)`` per weighted layer: Keras's layouts are
        varprop's (``(in, out)``, ``(*k, in // groups, out)``; channels-last flattening)."""
        out = []
        for layer in self.network.dense_layers():
            keras_layer = self._modules[id(layer)][1]
            w = np.asarray(to_numpy(kernels_of(keras_layer)[0][1]), dtype)
            b = keras_layer.bias if getattr(keras_layer, "use_bias", False) else None
            out.append((w, None if b is None else np.asarray(to_numpy(b), dtype)))
        return out

    def forward(self, x: Any, dtype: Any = np.float64) -> np.ndarray:
        """The traced network on ``x`` (channels last) with the model's own weights, on
        varprop's kernels: normalizations with batch statistics (``training=True``),
        dropout the identity, a softmax head left out (the logits)."""
        dt = np.dtype(dtype)
        h = np.ascontiguousarray(to_numpy(x).astype(dt))
        run = OwnRun(self.weights(dt), dt)
        for step in self.network.steps:
            h, _, _ = step.layer.forward(step, run, h, None, False, False)
        return h


# ---------------------------------------------------------------------- trace
def trace(model: Any, example_input: Any = None, *, init: Any = None, bias_init: Any = None,
          law: str = "init") -> TraceResult:
    """Read a Keras model as a varprop network (module doc; docs/keras.md).

    Args:
        model: a Sequential or functional ``keras.Model`` with one input and one output.
        example_input: one batch, channels last: ``(batch, features)``, ``(batch, L, C)``
            or ``(batch, H, W, C)`` (array or tensor). It fixes the shapes where the
            model leaves them open, and builds an unbuilt Sequential; None: the
            model's input shape.
        init: None reads each kernel's law per ``law``; a name, config or initializer
            gives every kernel that scheme at the layer's true fans.
        bias_init: a scheme for every bias; None: per ``law``, or zeros when ``init``
            is given (what :func:`varprop.keras.init_` applies).
        law: "init" (each kernel's configured initializer, Keras's fans, or the scheme
            :func:`varprop.keras.init_` drew it with) or "weights" (read from its
            values, as :func:`varprop.torch.trace` does).

    Returns:
        A :class:`TraceResult`.

    Raises:
        TypeError: ``model`` not a Keras model, or a subclassed one.
        ValueError: :class:`UnsupportedLayerError` naming every unsupported layer (a
            Bidirectional; an LSTM/GRU/SimpleRNN is kept as measured only); a graph that
            is not a chain with residual adds; shapes the input does not fix; a model
            without Dense/Conv layers.

    Example:
        >>> import os; os.environ.setdefault("KERAS_BACKEND", "torch")
        'torch'
        >>> import keras, varprop, varprop.keras
        >>> model = keras.Sequential([keras.Input((64,)),
        ...     keras.layers.Dense(64, activation="relu", kernel_initializer="he_normal"),
        ...     keras.layers.Dense(10)])
        >>> result = varprop.keras.trace(model)
        >>> [[law.label for law in laws] for laws in result.laws]
        [['he_normal', 'zeros'], ['glorot_uniform', 'zeros']]
        >>> round(varprop.analyze(result.network)[0].z_var, 6)     # 64 * 2 / 64
        2.0
    """
    keras = _keras()
    if not isinstance(model, keras.Model):
        raise TypeError(f"trace: model must be a keras.Model, got {type(model).__name__}")
    law = one_of("law", law, ("init", "weights"), owner="trace")
    shape = input_shape(model, example_input)
    return _Builder(model, init, bias_init, law).build(shape)


class _Builder:
    def __init__(self, model: Any, init: Any, bias_init: Any, law: str) -> None:
        self.model, self.init, self.bias_init, self.law = model, init, bias_init, law
        self.laws: list[list[_law.Law]] = []
        self.names: list[str] = []
        self.notes: list[str] = []
        self.modules: dict[int, tuple[str, Any]] = {}
        self.nodes: dict[int, _Node] = {}
        self.measured: list = []
        self.covered: dict[int, int] = {}
        self.head: "_Node | None" = None
        self.steps_of: "str | None" = None  # a measured-only layer handing on its steps

    def build(self, shape: tuple[int, ...]) -> TraceResult:
        graph = self.graph = Graph(self.model)
        bad = [f"{n.label}: {why}" for n in graph.nodes for kind, why in [layer_kind(n.op)]
               if kind == "unsupported"]
        if len(graph.inputs) != 1 or len(graph.outputs) != 1:
            bad.append(f"{len(graph.inputs)} input(s) and {len(graph.outputs)} output(s): "
                       "varprop follows one of each")
        if bad:
            raise UnsupportedLayerError(bad)
        out = graph.outputs[0]
        last = graph.producer.get(out)
        if last is not None:
            kind = layer_kind(last.op)[0]
            act = layer_activation(last.op) if kind == "act" else (
                activation_of(last.op.get_config().get("activation"))
                if kind in ("dense", "conv") else None)
            if act == "softmax":
                self.notes.append(f"{last.label}: a softmax head; the analysis ends at the "
                                  "logits before it")
                if kind == "act":
                    out = last.inputs[0]
                else:
                    self.head = last
        items = self._items(out, graph.inputs[0])
        width: Any = shape[0] if len(shape) == 1 else shape
        layers, _ = self._layers(items, width)
        if not any_weighted(layers):
            raise ValueError("trace: the model has no Dense or Conv layer varprop can analyze")
        net = Network(width, tuple(layers), name=f"{self.model.name} (traced from Keras)")
        params = {id(v): int(np.prod(v.shape)) for v in self.model.trainable_weights}
        total = sum(params.values())
        covered = sum(v for k, v in self.covered.items() if k in params)
        uncovered = [v.path for v in self.model.trainable_weights if id(v) not in self.covered]
        if uncovered:
            self.notes.append(f"weights the theory does not read: {', '.join(uncovered)}")
        next_op = {name: role for name, (role, _) in roles(graph).items()}
        return TraceResult(net, covered / total if total else 1.0, [], self.laws, self.names,
                           self.notes, next_op, self.model, self.modules, self.measured,
                           graph, self.nodes, out, self.head)

    def _items(self, key: int, stop: int) -> list:
        """The nodes from tensor ``stop`` to tensor ``key``, in forward order, and
        ``(alpha, branch items, add node)`` for each residual add."""
        g, items = self.graph, []
        while key != stop:
            node = g.producer.get(key)
            if node is None:
                raise ValueError("trace: the path back from a residual add reaches the input "
                                 "without meeting its skip: the graph is not a chain of "
                                 "layers with residual adds")
            kind = layer_kind(node.op)[0]
            if kind == "add":
                if len(node.inputs) != 2 or node.inputs[0] == node.inputs[1] or not (
                        g.is_ancestor(*node.inputs) or g.is_ancestor(*node.inputs[::-1])):
                    raise UnsupportedLayerError([
                        f"{node.label}: adds {len(node.inputs)} paths none of which is an "
                        "input of the other (a projection shortcut, parallel branches, x + x); "
                        "varprop maps residual adds x + alpha * f(x) whose skip is the identity"])
                skip, branch = node.inputs if g.is_ancestor(*node.inputs) else node.inputs[::-1]
                alpha = 1.0
                end = g.producer.get(branch)
                while end is not None and layer_kind(end.op)[0] == "scale" and \
                        len(g.consumers[branch]) == 1:
                    alpha *= self._scale(end)
                    branch = end.inputs[0]
                    end = g.producer.get(branch)
                items.append((alpha, self._items(branch, skip), node))
                key = skip
            elif kind == "scale":
                raise UnsupportedLayerError([f"{node.label}: a Rescaling outside a residual "
                                             "branch's end (rescale the data instead)"])
            elif len(node.inputs) != 1:
                raise UnsupportedLayerError([f"{node.label}: reads {len(node.inputs)} tensors"])
            else:
                items.append(node)
                key = node.inputs[0]
        items.reverse()
        return items

    def _scale(self, node: _Node) -> float:
        cfg = node.op.get_config()
        scale, offset = cfg.get("scale"), cfg.get("offset", 0.0)
        if not isinstance(scale, (int, float)) or offset not in (0, 0.0):
            raise UnsupportedLayerError([f"{node.label}: a Rescaling with offset {offset!r} or "
                                         f"a non-scalar scale {scale!r}"])
        return float(scale)

    def _layers(self, items: list, width: Any) -> tuple[list, Any]:
        out: list = []
        k = 0
        while k < len(items):
            item = items[k]
            k += 1
            if isinstance(item, tuple):
                alpha, sub, node = item
                branch, end = self._layers(sub, width)
                if end != width:
                    raise ValueError(f"trace: the residual branch ending at {node.label} maps "
                                     f"width {width} to {end}")
                if branch and isinstance(branch[-1], vl.Residual):
                    self.notes.append(f"{node.label}: a residual branch that ends in a residual "
                                      "block is correlated with its skip; the theory assumes not")
                out.append(vl.Residual(tuple(branch), alpha))
                continue
            pooled = self._pooled(item, items[k:])
            k += len(pooled)
            try:
                new = self._layer(item, width, pooled)
                for layer in new:
                    width = layer.output_width(width, item.label)
            except (TypeError, ValueError) as exc:
                if isinstance(exc, UnsupportedLayerError):
                    raise
                raise ValueError(f"trace: {item.label}: {exc}") from None
            out.extend(new)
        return out, width

    def _pooled(self, node: _Node, rest: list) -> tuple:
        """The nodes after a recurrent ``node`` with ``return_sequences=True`` that pool
        over its steps (through identities, up to a global pooling), to be measured with
        it. The theory would take the steps of its output as independent, while the
        steps of one sequence are correlated: an average over them would be
        under-predicted (docs/keras.md, "Measured-only layers")."""
        if layer_kind(node.op)[0] != "measured" or \
                not node.op.get_config().get("return_sequences"):
            return ()
        run: list = []
        prev = node
        for item in rest:
            kind = None if isinstance(item, tuple) else layer_kind(item.op)[0]
            if kind not in ("none", "pool", "gap") or len(self.graph.consumers[prev.out]) != 1:
                break
            run.append(item)
            prev = item
            if kind == "gap":
                break
        while run and layer_kind(run[-1].op)[0] == "none":
            run.pop()  # identities after the last pooling stay identities
        return tuple(run)

    def _layer(self, node: _Node, width: Any, pooled: tuple = ()) -> list:
        op, kind = node.op, layer_kind(node.op)[0]
        cfg = op.get_config()
        spatial = () if isinstance(width, int) else tuple(width[:-1])
        if kind in ("pool", "gap") and self.steps_of:
            self.notes.append(
                f"{node.label}: pools over the steps of {self.steps_of}'s output, which the "
                "theory takes as independent while the steps of one sequence are "
                "correlated (it under-predicts an average's variance): the theory of the "
                "layers from here on is approximate")
        if kind in ("gap", "flatten"):
            self.steps_of = None
        if kind in ("dense", "conv"):
            return self._weighted(node, width, cfg)
        if kind == "measured":
            m = _measured.measured_layer(node, width, len(self.names), pooled)
            self.measured.append(m)
            self.notes.append(f"{m.name}: measured only (no mean-field rule in a varprop "
                              "network); the theory is re-anchored on its measured output "
                              "and input gradient (varprop.keras.compare)")
            if pooled:
                self.notes.append(f"{m.name}: the pooling over the recurrent layer's steps is "
                                  "measured with it, since its steps are correlated and the "
                                  "theory would take them as independent")
            self.steps_of = m.name if isinstance(m.layer.out_width, tuple) else None
            return [m.layer]
        if kind == "act":
            act = layer_activation(op)
            if act == "softmax":
                raise UnsupportedLayerError([f"{node.label}: softmax only as the model's last "
                                             "layer (a classifier head: the analysis ends at "
                                             "the logits)"])
            return [vl.Act(act)]
        if kind == "norm":
            return [self._norm(node, width, cfg)]
        if kind == "pool":
            pool, strides = tuple(cfg["pool_size"]), tuple(cfg["strides"] or cfg["pool_size"])
            if len(pool) != len(spatial):
                raise ValueError(f"a {len(pool)}-D pooling of an input of shape {width}")
            pad: Any = 0
            if cfg["padding"] == "same":
                pad = tuple(same_pads(n, k, s) for n, k, s in zip(spatial, pool, strides))
                if "Average" in type(op).__name__ and _keras().backend.backend() == "torch" \
                        and any(a != b for a, b in pad):
                    raise UnsupportedLayerError([
                        f"{node.label}: padding='same' with uneven padding {pad}: Keras's torch "
                        "backend pads it by replicating the edge pixels, which the average "
                        "then counts; varprop maps zero-excluding padding only"])
            if "Max" in type(op).__name__:
                return [vl.MaxPool(pool, strides, pad, spatial_dims=len(pool))]
            return [vl.AvgPool(pool, strides, pad, spatial_dims=len(pool),
                               count_include_pad=False)]  # Keras excludes the padding
        if kind == "gap":
            return [vl.GlobalAvgPool()]
        if kind == "flatten":
            return [] if isinstance(width, int) else [vl.Flatten()]
        return []  # "none": the identity at analysis

    def _norm(self, node: _Node, width: Any, cfg: dict) -> Any:
        op, L = node.op, _keras().layers
        rank = 2 if isinstance(width, int) else len(width) + 1
        axes = sorted({int(a) % rank for a in np.atleast_1d(cfg["axis"])})
        gamma, beta = getattr(op, "gamma", None), getattr(op, "beta", None)
        for v, want in ((gamma, 1.0), (beta, 0.0)):
            if v is None:
                continue
            if np.all(to_numpy(v) == want):
                self.covered[id(v)] = int(np.prod(v.shape))
            else:
                self.notes.append(f"{node.label}: its affine is not the identity (gamma 1, "
                                  "beta 0) that the theory assumes")
        eps = float(cfg["epsilon"])
        if isinstance(op, L.LayerNormalization):
            if axes != list(range(1, rank)):
                raise UnsupportedLayerError([
                    f"{node.label}: normalizes over axes {axes}, part of a sample of rank "
                    f"{rank}; varprop's LayerNorm normalizes all of it (axis="
                    f"{list(range(1, rank))})"])
            return vl.LayerNorm(eps=eps)
        if axes != [rank - 1]:
            raise UnsupportedLayerError([f"{node.label}: axis {cfg['axis']} is not the channels "
                                         "(last) axis"])
        if isinstance(op, L.GroupNormalization):
            groups = int(cfg["groups"])
            channels = width if isinstance(width, int) else width[-1]
            return vl.GroupNorm(eps=eps, groups=channels if groups == -1 else groups)
        return vl.BatchNorm(eps=eps)

    def _weighted(self, node: _Node, width: Any, cfg: dict) -> list:
        op, name = node.op, node.op.name
        if name in self.names:
            self.notes.append(f"{node.label} is called more than once: the theory draws each "
                              "use's weights independently (weight sharing is not modelled)")
        act = activation_of(cfg.get("activation"))
        if act == "softmax":
            if node is not self.head:
                raise UnsupportedLayerError([f"{node.label}: softmax only as the model's last "
                                             "layer (a classifier head)"])
            act = None
        var = kernels_of(op)[0][1]
        w = np.asarray(to_numpy(var), np.float64)
        self.covered[id(var)] = w.size
        if isinstance(width, int) != (layer_kind(op)[0] == "dense"):
            what = ("a Dense on images: flatten or pool them first" if isinstance(width, tuple)
                    else "a convolution of flat features")
            raise UnsupportedLayerError([f"{node.label}: {what} (input shape {width})"])
        groups = int(cfg.get("groups", 1))
        laws = [kernel_law(name, op, w, self.law, self.init, groups)]
        fan_in = int(np.prod(w.shape[:-1]))
        bias = None
        if cfg.get("use_bias", True):
            b = np.asarray(to_numpy(op.bias), np.float64)
            laws.append(bias_law(name, op, b, self.law, self.init, self.bias_init, fan_in))
            bias = laws[-1].initializer
            self.covered[id(op.bias)] = b.size
        self.notes += [f"{name}.{item.param}: {n}" for item in laws for n in item.notes]
        if isinstance(width, int):
            layer: Any = vl.Dense(width, int(cfg["units"]), laws[0].initializer, bias)
        else:
            kernel, dil = tuple(cfg["kernel_size"]), tuple(cfg["dilation_rate"])
            pad = cfg["padding"]
            if pad == "causal":  # Conv1D: all of the padding before the sequence
                pad = tuple((d * (k - 1), 0) for k, d in zip(kernel, dil))
            layer = vl.Conv(width[-1], int(cfg["filters"]), kernel, laws[0].initializer, bias,
                            stride=tuple(cfg["strides"]), padding=pad, dilation=dil,
                            groups=groups, spatial_dims=len(kernel))
        self.laws.append(laws)
        self.names.append(name)
        self.modules[id(layer)] = (name, op)
        self.nodes[id(layer)] = node
        return [layer] + ([vl.Act(act)] if act is not None else [])

