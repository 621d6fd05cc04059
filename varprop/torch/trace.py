"""A PyTorch model as a varprop :class:`~varprop.network.Network`: :func:`trace`.

The model's forward is recorded with ``torch.fx`` (the tracer of :mod:`._ops`), its
shapes propagated on the example input, and the graph read as a chain of layers with
residual adds ``x + alpha * f(x)``: an add one of whose inputs is an ancestor of the
other is a :class:`~varprop.layers.Residual` around the path between them. Each
Linear/Conv weight's law is read from its own entries (:mod:`._law`) or given by name.
An op varprop has no theory for is kept as one measured-only op (:mod:`._measured`):
a :class:`~varprop.layers.measured.Measured` layer, re-anchored on measurement.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.fx as fx
from torch import nn

from .. import layers as vl
from ..activations import get_activation
from ..adapters.run import any_weighted
from ..layers.measured import Measured
from ..network import Network
from . import _law
from ._input_kind import check_input_kind, read_input
from ._measured import MeasuredOp, find_region
from ._profile_parts import keep_modes
from ._result import TraceResult, UnsupportedOpError
from ._ops import Op, classify, is_tensor, next_ops, torch_shape, trace_graph

__all__ = ["trace", "TraceResult", "UnsupportedOpError"]

_POOLS = (nn.modules.pooling._MaxPoolNd, nn.modules.pooling._AvgPoolNd,
          nn.modules.pooling._AdaptiveAvgPoolNd, nn.modules.pooling._AdaptiveMaxPoolNd)
_REDUCTIONS = {"mean", "sum", "amax", "amin", "max", "min", "logsumexp", "max_pool1d",
               "avg_pool1d", "adaptive_avg_pool1d", "adaptive_max_pool1d"}


def trace(model: nn.Module, example_input: torch.Tensor, *, init: Any = None,
          bias_init: Any = None, anchor: bool = True, input_kind: str = "auto"
          ) -> TraceResult:
    """Read ``model`` as a varprop network (module doc; docs/torch.md).

    Args:
        model: an ``nn.Module`` whose forward fx can trace (no data-dependent control
            flow) and that maps one tensor to one tensor.
        example_input: one batch, ``(batch, features)``, channels-first images
            ``(batch, C, L)`` / ``(batch, C, H, W)``, a sequence ``(batch, T, features)``
            (see ``input_kind``), or integer token
            indices ``(batch, T)`` / ``(batch,)`` read by an ``nn.Embedding``: it fixes
            the shapes (the model runs once on it in eval mode, without gradients; the
            model is left as it was).
        init: None reads each Linear/Conv weight's law from its entries; a name, config
            or initializer applies that scheme to every weight at the layer's fans.
        bias_init: None reads each bias's law from its entries when ``init`` is None,
            and takes zeros when ``init`` is given (what :func:`varprop.torch.init_`
            applies); else a scheme for every bias.
        anchor: re-anchor each measured-only op on one measurement of the model
            (:func:`varprop.torch.profile`, seed 0, the example's batch, at least 2 rows),
            so that ``varprop.analyze(result.network)`` runs; False leaves them
            un-anchored (``result.anchor(profile)`` does it later; ``compare`` does).
        input_kind: what a rank-3 float input is: "sequence" ``(batch, T, features)``,
            whose Linear and LayerNorm act on the last dim and whose tokens are rows to
            the theory; "image" ``(batch, C, L)`` channels first; "auto" (default)
            decides from the ops that first read the input, and raises asking for
            ``input_kind`` where they do not agree (docs/torch.md).

    Returns:
        A :class:`TraceResult`.

    Raises:
        TypeError: ``model`` not an ``nn.Module``, ``example_input`` not a tensor.
        ValueError: an input of an unmapped rank, or one the model does not run on; a
            bad ``input_kind``, or one that does not fit the input, or an ambiguous
            rank-3 input with ``input_kind="auto"``;
            :class:`UnsupportedOpError` (a ValueError) for several inputs or outputs; a
            model without Linear/Conv layers outside its measured-only ops.

    Example:
        >>> import torch, varprop, varprop.torch
        >>> model = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(),
        ...                             torch.nn.Linear(64, 10))
        >>> result = varprop.torch.trace(model, torch.randn(8, 64))
        >>> [law.label for law in result.laws[0]]
        ['torch_default', 'torch_default_bias(fan_in=64)']
        >>> round(varprop.analyze(result.network)[0].z_var, 6)   # E[x^2] / 3 + Var[b]
        0.338542
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"trace: model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(example_input, torch.Tensor) or example_input.is_complex() \
            or example_input.dtype == torch.bool:
        raise TypeError("trace: example_input must be a real torch.Tensor (floats, or "
                        f"integer token indices), got {type(example_input).__name__}"
                        + (f" of dtype {example_input.dtype}"
                           if isinstance(example_input, torch.Tensor) else ""))
    tokens = not example_input.is_floating_point()
    low, high = (1, 2) if tokens else (2, 4)
    if not low <= example_input.dim() <= high:
        raise ValueError(f"trace: example_input must be (batch, features), (batch, C, L), "
                         f"(batch, T, features), (batch, C, H, W), or integer tokens "
                         f"(batch, T) / (batch,); got shape {tuple(example_input.shape)} "
                         f"of dtype {example_input.dtype}")
    if tokens and not any(isinstance(m, nn.Embedding) for m in model.modules()):
        raise TypeError(f"trace: example_input of dtype {example_input.dtype} is read as "
                        "token indices, which need an nn.Embedding; give floats")
    input_kind = check_input_kind(input_kind, "trace")
    gm = trace_graph(model)
    from torch.fx.passes.shape_prop import ShapeProp
    first = next((p for p in model.parameters() if p.is_floating_point()), None)
    x = example_input
    if first is not None:
        x = x.to(first.device) if tokens else x.to(first.device, first.dtype)
    # every submodule's own mode is put back (keep_modes), not model.train(flag),
    # which would set them all to the top module's
    with keep_modes(model):
        model.eval()  # shapes only: no running statistics updated, no dropout drawn
        try:
            with torch.no_grad():
                ShapeProp(gm).propagate(x)
        except Exception as exc:  # fx wraps the model's own error in a RuntimeError
            raise ValueError(f"trace: the model does not run on example_input of shape "
                             f"{tuple(example_input.shape)}: {exc}") from exc
    result = _Builder(model, gm, init, bias_init, input_kind).build(example_input)
    if anchor and result.measured:
        from .profile import profile_traced
        rows = max(int(example_input.shape[0]), 2)
        with keep_modes(model):
            measured = profile_traced(model, result, tuple(example_input.shape), seeds=(0,),
                                      init=init, batch=rows)
        result = result.anchor(measured)
    return result


class _Builder:
    def __init__(self, model: nn.Module, gm: fx.GraphModule, init: Any, bias_init: Any,
                 input_kind: str = "auto"):
        self.model, self.gm, self.init, self.bias_init = model, gm, init, bias_init
        self.input_kind = input_kind
        self.laws: list[list[_law.Law]] = []
        self.names: list[str] = []
        self.notes: list[str] = []
        self.modules: dict[int, tuple[str, Any]] = {}
        self.covered: dict[int, int] = {}  # id(parameter) -> numel, read by the theory
        self.measured: list[MeasuredOp] = []
        self.sequence, self.tokens = False, 0
        self.steps_of: "str | None" = None  # a measured-only op handing on its steps

    # ------------------------------------------------------------------ the graph
    def build(self, x: torch.Tensor) -> TraceResult:
        nodes = list(self.gm.graph.nodes)
        index = {n: i for i, n in enumerate(nodes)}
        anc: dict[fx.Node, int] = {}  # ancestors as bit sets (nodes are topologically sorted)
        for n in nodes:
            bits = 0
            for i in n.all_input_nodes:
                bits |= anc[i] | (1 << index[i])
            anc[n] = bits
        output = nodes[-1]
        used = [n for n in nodes if anc[output] >> index[n] & 1 or n is output]
        inputs = [n for n in used if n.op == "placeholder"]
        self.sequence, self.tokens = read_input(x, self.gm, used, inputs, self.input_kind)
        self.ops = {n: classify(n, self.gm, self.sequence) for n in used}
        bad = []
        if self.ops[output].kind == "unsupported":
            bad.append(f"{self.ops[output].name}: {self.ops[output].reason}")
        if len(inputs) > 1:
            bad.append(f"{len(inputs)} inputs ({', '.join(n.name for n in inputs)}): varprop "
                       "follows one")
        if bad:
            raise UnsupportedOpError(bad)
        self._anc, self._index, self._nodes = anc, index, nodes
        self._input_bits = 1 << index[inputs[0]]
        items = self._items(self.ops[output].input, inputs[0])
        width = self._width(inputs[0])
        layers, _ = self._layers(items, width)
        if not any_weighted(layers):
            raise ValueError("trace: the model has no Linear, Conv or Embedding layer varprop "
                             "can analyze outside its measured-only ops")
        shape = tuple(x.shape[1:])
        # each BatchNorm's own mode: a model may hold one in eval while it trains
        if any(isinstance(m, nn.modules.batchnorm._BatchNorm) and not m.training
               for m in self.model.modules()):
            self.notes.append("BatchNorm layers in eval mode are analyzed (and measured) "
                              "with batch statistics (training mode), as at the start of "
                              "training")
        name = f"{type(self.model).__name__} (traced from PyTorch)"
        image = len(shape) > 1 and not self.sequence and not self.tokens
        net = Network(width, tuple(layers), name=name, layout="torch" if image else "keras")
        if self.measured:
            self.notes.append(
                f"measured only (no theory, no verdict): {'; '.join(map(str, self.measured))}. "
                "The theory is re-anchored on each one's measured output variance (forward) "
                "and on the measured gradient variance at its input (backward): theory for "
                f"everything else; theory covers {self._share():.0%} of the parameters")
        params = {id(p): p.numel() for p in self.model.parameters()}
        total = sum(params.values())
        covered = sum(v for k, v in self.covered.items() if k in params)
        uncovered = [n for n, p in self.model.named_parameters() if id(p) not in self.covered]
        if uncovered:
            self.notes.append(f"parameters the theory does not read: {', '.join(uncovered)}")
        return TraceResult(net, covered / total if total else 1.0,
                           [str(op) for op in self.measured], self.laws, self.names,
                           self.notes, next_ops(self.gm, self.model), self.gm, self.modules,
                           self.measured, self.sequence, self.tokens)

    def _share(self) -> float:
        total = sum(p.numel() for p in self.model.parameters())
        return sum(self.covered.values()) / total if total else 1.0

    def _width(self, node: fx.Node) -> Any:
        """The feature shape varprop gives ``node``'s value: the last dim of a sequence,
        the vocabulary of token indices, channels last for images."""
        if node.op == "placeholder" and self.tokens:
            return self.tokens
        shape = torch_shape(node)[1:]
        if self.sequence or len(shape) == 1:
            return shape[-1]
        return (*shape[1:], shape[0])

    def _constant(self, node: fx.Node) -> bool:
        """A value that does not depend on the model's input (a parameter, an arange)."""
        return node.op != "placeholder" and not self._anc[node] & self._input_bits

    def _live(self, node: fx.Node) -> bool:
        return node in self.ops

    def _bare(self, node: fx.Node) -> bool:
        """A node that starts no measured-only op: one with no theory itself."""
        op = self.ops.get(node)
        return op is None or op.kind in ("unsupported", "helper")

    def _reshape_ok(self, node: fx.Node, op: Op) -> bool:
        in_shape, out_shape = torch_shape(op.input), torch_shape(node)
        return out_shape == in_shape or out_shape == (in_shape[0], math.prod(in_shape[1:]))

    def _measured_item(self, node: fx.Node) -> tuple:
        """``("measured", start, region)`` for the op that ends at ``node``."""
        try:
            start, region = find_region(node, self._nodes, self._index, self._anc,
                                        self._constant, is_tensor, self._live, self._bare)
        except ValueError as exc:
            raise UnsupportedOpError([str(exc)]) from None
        return ("measured", start, region)

    def _cover_attr(self, target: str) -> None:
        try:
            p = self.gm.get_parameter(target)
        except AttributeError:  # a buffer: not a parameter
            return
        self.covered[id(p)] = p.numel()

    def _is_ancestor(self, a: fx.Node, b: fx.Node) -> bool:
        return bool(self._anc[b] >> self._index[a] & 1)

    def _items(self, node: fx.Node, stop: fx.Node) -> list:
        """The ops from ``stop``'s value to ``node``'s, in forward order: nodes, and
        ``(alpha, branch items, add node)`` for each residual add."""
        items: list = []
        while node is not stop:
            op = self.ops[node]
            related = op.kind == "add" and (
                self._is_ancestor(op.input, op.other)
                or (self._is_ancestor(op.other, op.input) and op.factor == 1.0))
            if op.kind in ("unsupported", "helper", "scale") or op.input is None \
                    or (op.kind == "add" and not related) \
                    or (op.kind == "reshape" and not self._reshape_ok(node, op)):
                if op.kind == "add":
                    op.reason = ("adds two paths neither of which is an input of the other "
                                 "(a projection shortcut, two branches, a tensor constant, "
                                 "or x + x)")
                elif op.kind == "scale":
                    op.reason = "a multiplication by a constant outside a residual branch's end"
                elif op.kind == "reshape":
                    op.reason = (f"a reshape from {torch_shape(op.input)} to "
                                 f"{torch_shape(node)} (varprop maps flattening)")
                item = self._measured_item(node)
                items.append(item)
                node = item[1]
            elif op.kind == "add":
                a, b, alpha = op.input, op.other, op.factor
                if self._is_ancestor(a, b):
                    skip, branch = a, b
                else:
                    skip, branch = b, a
                while self.ops[branch].kind == "scale" and len(branch.users) == 1:
                    scale = self.ops[branch]
                    alpha *= scale.factor  # x + alpha * f(x): alpha into the block
                    if scale.other is not None:  # a scalar parameter (ReZero, SkipInit)
                        self._cover_attr(str(scale.other.target))
                    branch = scale.input
                items.append((alpha, self._items(branch, skip), node))
                node = skip
            elif op.kind == "input":
                raise ValueError(f"trace: the path back from a residual add reaches the input "
                                 f"without meeting its skip ({stop.name!r}): the graph is not "
                                 "a chain of layers with residual adds")
            else:
                items.append(node)
                node = op.input
        items.reverse()
        return items

    # ------------------------------------------------------------------ the layers
    def _layers(self, items: list, width: Any) -> tuple[list, Any]:
        out: list = []
        for item in items:
            if isinstance(item, tuple) and item[0] == "measured":
                out.append(self._measured_layer(item[1], item[2], width))
                width = out[-1].out_width
                mixes = any(n.op == "call_module" and isinstance(
                    self.gm.get_submodule(str(n.target)), (nn.RNNBase, nn.MultiheadAttention))
                    for n in item[2])
                self.steps_of = out[-1].name if mixes and isinstance(width, tuple) else None
                continue
            if isinstance(item, tuple):
                alpha, sub, node = item
                branch, end = self._layers(sub, width)
                if end != width:
                    raise ValueError(f"trace: the residual branch ending at {node.name!r} "
                                     f"maps width {width} to {end}")
                if branch and isinstance(branch[-1], vl.Residual):
                    self.notes.append(f"{node.name}: a residual branch that ends in a residual "
                                      "block is correlated with its skip; the theory assumes not")
                out.append(vl.Residual(tuple(branch), alpha))
                continue
            op = self.ops[item]
            try:
                new = self._layer(op, item, width)
                for layer in new:
                    width = layer.output_width(width, op.name)
            except (TypeError, ValueError) as exc:
                if isinstance(exc, UnsupportedOpError):
                    raise
                raise ValueError(f"trace: {op.name}: {exc}") from None
            out.extend(new)
        return out, width

    def _measured_layer(self, start: fx.Node, region: list, width: Any) -> Measured:
        ops = [(n, self.ops.get(n) or classify(n, self.gm, self.sequence)) for n in region]
        main = [(n, op) for n, op in ops if op.kind == "unsupported" or op.reason] or \
            [(n, op) for n, op in ops if op.kind not in ("helper", "none")] or ops[:1]
        if all(op.kind == "helper" for _, op in main):
            main[0][1].reason = "a part of a tensor or a tuple (indexing, unpacking)"
        name = main[0][1].name + (f" (+ {len(region) - 1} more node"
                                  f"{'s' if len(region) > 2 else ''})" if len(region) > 1 else "")
        reasons = [f"{op.name}: {op.reason}" for _, op in main if op.reason][:4] or \
            ["no theory"]
        if len(main) == 1:
            reasons = [main[0][1].reason or "no theory"]
        module = main[0][1].module if len(main) == 1 else None
        if module is None and main[0][0].op == "call_module":
            module = self.gm.get_submodule(str(main[0][0].target))
        if width != self._width(start):
            raise ValueError(f"trace: measured-only op {name} starts at width "
                             f"{self._width(start)}, the chain is at {width}")
        layer = Measured(name, width, self._width(region[-1]))
        steps = torch_shape(start)[1] if len(torch_shape(start)) == 3 else 0
        last = len(torch_shape(region[-1])) == 2
        self.measured.append(MeasuredOp(name, reasons, start.name, region[-1].name,
                                        [n.name for n in region], len(self.names), module,
                                        layer, steps, last, any(map(self._pools, region))))
        return layer

    def _pools(self, node: fx.Node) -> bool:
        """Whether ``node`` reduces over a dim (a mean, sum or max, a pooling): in a
        measured-only op after a recurrent layer, over its steps."""
        if node.op == "call_module":
            return isinstance(self.gm.get_submodule(str(node.target)), _POOLS)
        return node.op in ("call_function", "call_method") and \
            getattr(node.target, "__name__", node.target) in _REDUCTIONS

    def _layer(self, op: Op, node: fx.Node, width: Any) -> list:
        kind, m = op.kind, op.module
        if kind in ("pool", "global_pool") and self.steps_of:  # docs/torch.md
            self.notes.append(f"{op.name}: pools over the steps of {self.steps_of}'s output, "
                              "which the theory takes as independent while the steps of one "
                              "sequence are correlated (it under-predicts an average's "
                              "variance): the theory of the layers from here on is approximate")
        if kind in ("global_pool", "reshape"):
            self.steps_of = None
        if kind == "weighted":
            return [self._weighted(str(node.target), m)]
        if kind == "act":
            params = dict(op.params)
            return [vl.Act(get_activation(params.pop("name"), **params))]
        if kind == "norm":
            return [self._norm(str(node.target), m)]
        if kind == "pool":
            p = op.params
            dims = len(torch_shape(node)) - 2
            if p["kind"] == "max":
                return [vl.MaxPool(p["pool_size"], p["stride"], p["padding"], spatial_dims=dims)]
            return [vl.AvgPool(p["pool_size"], p["stride"], p["padding"], spatial_dims=dims,
                               count_include_pad=bool(p["count_include_pad"]))]
        if kind == "global_pool":
            return [vl.GlobalAvgPool()]
        if kind == "reshape":
            return self._reshape(op, node, width)
        return []  # "none": identity at analysis

    def _reshape(self, op: Op, node: fx.Node, width: Any) -> list:
        in_shape, out_shape = torch_shape(op.input), torch_shape(node)
        if out_shape == in_shape:
            return []
        if isinstance(width, int):  # already flat (after a global pooling)
            return []
        layer = vl.Flatten()
        self.modules[id(layer)] = (op.name, in_shape[1:])  # (C, *spatial): torch's order
        return [layer]

    def _norm(self, name: str, m: nn.Module) -> Any:
        w, b = getattr(m, "weight", None), getattr(m, "bias", None)
        if w is not None and b is not None:
            if bool(torch.all(w == 1)) and bool(torch.all(b == 0)):
                self.covered.update({id(w): w.numel(), id(b): b.numel()})
            else:
                self.notes.append(f"{name}: its affine is not the identity (weight 1, bias 0) "
                                  "that the theory assumes")
        eps = float(m.eps)
        if isinstance(m, nn.GroupNorm):
            return vl.GroupNorm(eps=eps, groups=m.num_groups)
        if isinstance(m, nn.LayerNorm):
            return vl.LayerNorm(eps=eps)
        return vl.BatchNorm(eps=eps)

    def _embedding(self, name: str, m: nn.Embedding) -> Any:
        """An Embedding is a Dense layer without bias on one-hot token rows: its output
        variance is its weight variance (``V v E[x^2] = v``). Its law is always read from
        its entries (``init=`` names the Linear/Conv scheme, as ``init_``)."""
        w = m.weight.detach().cpu().double().numpy()
        law = _law.read_weight(name, w.T, 1)  # (D, V): fans (V, D) as a (out, in) weight
        law.initializer = _law.for_layer(law.initializer, "dense")
        if m.padding_idx is not None:
            self.notes.append(f"{name}: row padding_idx={m.padding_idx} is zero in the model; "
                              "the theory draws every row alike")
        self.covered[id(m.weight)] = m.weight.numel()
        layer = vl.Dense(m.num_embeddings, m.embedding_dim, law.initializer, None)
        self.laws.append([law])
        self.names.append(name)
        self.modules[id(layer)] = (name, m)
        return layer

    def _weighted(self, name: str, m: nn.Module) -> Any:
        if isinstance(m, nn.Embedding):
            return self._embedding(name, m)
        conv = not isinstance(m, nn.Linear)
        groups = m.groups if conv else 1
        if name in self.names or id(m.weight) in self.covered:
            self.notes.append(f"{name} is called more than once or shares its weight: the "
                              "theory draws each use's weights independently (weight "
                              "sharing is not modelled)")
        w = m.weight.detach().cpu().double().numpy()
        if self.init is None:
            law = _law.read_weight(name, w, groups)
            if not conv:
                law.initializer = _law.for_layer(law.initializer, "dense")
        else:
            law = _law.scheme_law(name, "weight", self.init, "torch" if conv else "dense", groups)
        laws = [law]
        self.covered[id(m.weight)] = m.weight.numel()
        bias = None
        if m.bias is not None:
            fan_in = _law.torch_fans(tuple(w.shape))[0]
            if self.bias_init is not None:
                blaw = _law.scheme_law(name, "bias", self.bias_init, "bias")
            elif self.init is None:
                blaw = _law.read_bias(name, m.bias.detach().cpu().double().numpy(), fan_in)
            else:
                blaw = _law.scheme_law(name, "bias", "zeros", "bias")
            laws.append(blaw)
            bias = blaw.initializer
            self.covered[id(m.bias)] = m.bias.numel()
        if conv:
            layer = vl.Conv(m.in_channels, m.out_channels, m.kernel_size, law.initializer,
                            bias, stride=m.stride, padding=m.padding, dilation=m.dilation,
                            groups=groups, spatial_dims=len(m.kernel_size), layout="torch")
        else:
            layer = vl.Dense(m.in_features, m.out_features, law.initializer, bias)
        self.laws.append(laws)
        self.names.append(name)
        self.modules[id(layer)] = (name, m)
        return layer

