"""A Keras model's graph as one flat graph of layers (:class:`Graph`), what
:func:`varprop.keras.trace` reads: a Sequential model is its layer list, a functional
one a graph of nodes from its inputs to its outputs, nested models inlined."""

from __future__ import annotations

import itertools
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from .init import _keras, layer_kind

__all__ = ["Graph"]


@dataclass
class _Node:
    op: Any                  # a Keras layer or operation
    inputs: tuple[int, ...]  # keys of the tensors it reads
    out: int                 # key of the tensor it writes

    @property
    def label(self) -> str:
        return f"{type(self.op).__name__} {self.op.name!r}"


class Graph:
    """A Sequential or functional model (nested models inlined) as one flat graph of
    :class:`_Node` in topological order, tensors numbered in that order."""

    def __init__(self, model: Any) -> None:
        keras = _keras()
        if not isinstance(model, keras.Sequential) and getattr(model, "_nodes_by_depth", None) \
                is None:
            raise TypeError(f"trace: a {type(model).__name__} without a graph (a subclassed "
                            "model): varprop reads Sequential and functional models")
        self.nodes: list[_Node] = []
        self._keys = itertools.count()
        n_in = 1 if isinstance(model, keras.Sequential) else len(model.inputs)
        self.inputs = [next(self._keys) for _ in range(n_in)]
        self.outputs = self._flatten(model, self.inputs)
        self.producer = {n.out: n for n in self.nodes}
        self.consumers: dict[int, list[_Node]] = defaultdict(list)
        anc = {k: 0 for k in self.inputs}  # ancestors as bit sets of tensor keys
        for n in self.nodes:
            anc[n.out] = 0
            for k in n.inputs:
                self.consumers[k].append(n)
                anc[n.out] |= anc[k] | (1 << k)
        self._anc = anc

    def is_ancestor(self, a: int, b: int) -> bool:
        return bool(self._anc[b] >> a & 1)

    def _flatten(self, model: Any, inputs: list[int]) -> list[int]:
        keras = _keras()
        if isinstance(model, keras.Sequential):
            key = inputs[0]
            for layer in model.layers:
                if isinstance(layer, keras.Model):
                    key = self._flatten(layer, [key])[0]
                elif not isinstance(layer, keras.layers.InputLayer):
                    self.nodes.append(_Node(layer, (key,), next(self._keys)))
                    key = self.nodes[-1].out
            return [key]
        keys = {id(t): k for t, k in zip(model.inputs, inputs)}
        for node in _topological(model):
            op = node.operation
            if isinstance(op, keras.layers.InputLayer):
                continue
            ins = [keys[id(t)] for t in node.input_tensors]
            if isinstance(op, keras.Model):
                outs = self._flatten(op, ins)
            else:
                self.nodes.append(_Node(op, tuple(ins), next(self._keys)))
                outs = [self.nodes[-1].out] * len(node.output_tensors)
            keys.update({id(t): k for t, k in zip(node.output_tensors, outs)})
        return [keys[id(t)] for t in model.outputs]

    def follow(self, key: int) -> "_Node | None":
        """The one layer that reads tensor ``key`` through dropout and identities (None:
        none, or several)."""
        while len(self.consumers[key]) == 1:
            user = self.consumers[key][0]
            if layer_kind(user.op)[0] != "none":
                return user
            key = user.out
        return None


def _topological(model: Any) -> list[Any]:
    """The Keras nodes of a functional model that its outputs depend on, inputs first."""
    def parent(t: Any) -> Any:
        op, index, _ = t._keras_history
        return op._inbound_nodes[index]

    order, seen = [], set()
    stack = [(parent(t), False) for t in reversed(model.outputs)]
    while stack:
        node, expanded = stack.pop()
        if id(node) in seen:
            continue
        if expanded:
            seen.add(id(node))
            order.append(node)
            continue
        stack.append((node, True))
        stack.extend((parent(t), False) for t in reversed(node.input_tensors)
                     if id(parent(t)) not in seen)
    return order


