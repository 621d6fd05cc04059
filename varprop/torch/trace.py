"""A PyTorch model as a varprop :class:`~varprop.network.Network`: :func:`trace`.

The model's forward is recorded with ``torch.fx`` (the tracer of :mod:`._ops`), its
shapes propagated on the example input, and the graph read as a chain of layers with
residual adds ``x + alpha * f(x)``: an add one of whose inputs is an ancestor of the
other is a :class:`~varprop.layers.Residual` around the path between them. Each
Linear/Conv weight's law is read from its own entries (:mod:`._law`) or given by name.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.fx as fx
from torch import nn

from .. import layers as vl
from ..activations import get_activation
from ..network import Network
from . import _law
from ._ops import Op, Tracer, classify, next_ops, torch_shape

__all__ = ["trace", "TraceResult", "UnsupportedOpError"]


class UnsupportedOpError(ValueError):
    """The model holds ops that varprop has no theory for; ``unsupported`` names them
    (a ``ValueError``)."""

    def __init__(self, unsupported: list[str]) -> None:
        self.unsupported = list(unsupported)
        super().__init__("trace: the model holds op(s) varprop does not map: "
                         + "; ".join(self.unsupported)
                         + ". Mapped: Linear, Conv1d/2d, the activations of "
                           "varprop.activations, BatchNorm1d/2d, LayerNorm, GroupNorm, "
                           "residual adds x + alpha * f(x), Flatten, max/avg pooling, "
                           "global average pooling, Dropout (docs/torch.md)")


@dataclass
class TraceResult:
    """What :func:`trace` found.

    Attributes:
        network: the varprop :class:`~varprop.network.Network` (``layout="torch"`` for
            channels-first image inputs): ``varprop.analyze(result.network)``.
        covered: the fraction of the model's parameters (by count) whose role the theory
            reads: Linear/Conv weights and biases, and normalization affines at their
            identity initialization; an affine that is not the identity, or a parameter
            the forward never reads, is not covered (``notes`` says which).
        unsupported: ops kept as measured-only. Empty in this version: an unsupported
            op raises :class:`UnsupportedOpError` (a ValueError naming it) instead.
        laws: per weighted layer (forward order) its weight law and, if it has a bias,
            the bias law (:class:`~varprop.torch._law.Law`: which scheme, and whether
            matched, read from the moments or given).
        names: the module name of each weighted layer, in the order of
            ``analyze(network)``'s records.
        notes: what the theory assumes beyond the model (eval mode, affines).
        next_op: per Linear/Conv module what reads its output ("norm", an activation
            name or "other").
        graph: the ``torch.fx.GraphModule``.
    """

    network: Network
    covered: float
    unsupported: list[str]
    laws: list[list[_law.Law]]
    names: list[str]
    notes: list[str] = field(default_factory=list)
    next_op: dict[str, str] = field(default_factory=dict, repr=False)
    graph: Any = field(default=None, repr=False)
    _modules: dict[int, tuple[str, Any]] = field(default_factory=dict, repr=False)

    def weights(self, dtype: Any = np.float64) -> list[tuple[np.ndarray, "np.ndarray | None"]]:
        """The model's own parameters as varprop holds them, one ``(W, b)`` per weighted
        layer: a Linear's ``W`` transposed to ``(n_in, n_out)`` (its rows permuted from
        PyTorch's channels-first flattening to varprop's channels-last one after a
        Flatten of images), a Conv's kernel as ``(*kernel, in // groups, out)``."""
        out: list[tuple[np.ndarray, "np.ndarray | None"]] = []
        self._collect(self.network.layers, None, out, np.dtype(dtype))
        return out

    def _collect(self, layers: Any, pending: Any, out: list, dt: np.dtype) -> Any:
        for layer in layers:
            if isinstance(layer, vl.Residual):
                if pending is not None:
                    raise ValueError("weights: a residual block on flattened images: the "
                                     "feature order cannot be carried through it")
                self._collect(layer.branch, None, out, dt)
            elif isinstance(layer, vl.Flatten):
                pending = self._modules[id(layer)][1]
            elif layer.weighted:
                module = self._modules[id(layer)][1]
                w = module.weight.detach().cpu().double().numpy()
                if isinstance(layer, vl.Conv):
                    w = np.moveaxis(w, (0, 1), (-1, -2))  # (out, in, *k) -> (*k, in, out)
                elif pending is not None:  # rows of a (C, *spatial) flattening, C-order
                    c, rest = pending[0], math.prod(pending[1:])
                    w = w.reshape(w.shape[0], c, rest).transpose(2, 1, 0).reshape(-1, w.shape[0])
                else:
                    w = w.T
                pending = None
                b = None if module.bias is None else module.bias.detach().cpu().double().numpy()
                out.append((np.ascontiguousarray(w, dt),
                            None if b is None else np.ascontiguousarray(b, dt)))
        return pending

    def forward(self, x: Any, dtype: Any = np.float64) -> np.ndarray:
        """The traced network run on ``x`` (a tensor or array in the model's layout) with
        the model's own parameters, on varprop's kernels: normalizations use batch
        statistics (training mode), dropout is the identity. Output in the model's
        layout."""
        dt = np.dtype(dtype)
        arr = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
        arr = arr.astype(dt)
        if self.network.spatial:
            arr = np.moveaxis(arr, 1, -1)
        run = _OwnRun(self.weights(dt), dt)
        h = np.ascontiguousarray(arr)
        for step in self.network.steps:
            h, _, _ = step.layer.forward(step, run, h, None, False, False)
        return np.moveaxis(h, -1, 1) if h.ndim > 2 else h


class _OwnRun:
    """The run object the layers' array code talks to (as
    :class:`varprop._empirical_run.SeedRun`), handing out the model's own parameters."""

    def __init__(self, weights: list, dtype: np.dtype) -> None:
        self._weights, self.dtype, self.n_threads = weights, dtype, None
        self.linear = get_activation("linear")

    def parameters(self, layer: Any, index: int) -> tuple[np.ndarray, Any]:
        return self._weights[index]

    def __getattr__(self, name: str) -> Any:  # record_* and gradients: nothing to keep
        if name.startswith("record") or name == "gradients":
            return lambda *args, **kwargs: None
        raise AttributeError(name)


def trace(model: nn.Module, example_input: torch.Tensor, *, init: Any = None,
          bias_init: Any = None) -> TraceResult:
    """Read ``model`` as a varprop network (module doc; docs/torch.md).

    Args:
        model: an ``nn.Module`` whose forward fx can trace (no data-dependent control
            flow) and that maps one tensor to one tensor.
        example_input: one batch, ``(batch, features)`` or channels-first images
            ``(batch, C, L)`` / ``(batch, C, H, W)``: it fixes the shapes (the model runs
            once on it in eval mode, without gradients; the model is left as it was).
        init: None reads each Linear/Conv weight's law from its entries; a name, config
            or initializer applies that scheme to every weight at the layer's fans.
        bias_init: None reads each bias's law from its entries when ``init`` is None,
            and takes zeros when ``init`` is given (what :func:`varprop.torch.init_`
            applies); else a scheme for every bias.

    Returns:
        A :class:`TraceResult`.

    Raises:
        TypeError: ``model`` not an ``nn.Module``, ``example_input`` not a floating
            tensor.
        ValueError: an input of an unmapped rank, or one the model does not run on;
            :class:`UnsupportedOpError` (a ValueError) naming every unsupported op; a
            graph that is not a chain with residual adds (naming the node); a model
            without Linear/Conv layers.

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
    if not isinstance(example_input, torch.Tensor) or not example_input.is_floating_point():
        raise TypeError("trace: example_input must be a floating-point torch.Tensor, got "
                        f"{type(example_input).__name__}"
                        + (f" of dtype {example_input.dtype}"
                           if isinstance(example_input, torch.Tensor) else ""))
    if not 2 <= example_input.dim() <= 4:
        raise ValueError(f"trace: example_input must be (batch, features), (batch, C, L) or "
                         f"(batch, C, H, W), got shape {tuple(example_input.shape)}")
    gm = fx.GraphModule(model, Tracer().trace(model))
    from torch.fx.passes.shape_prop import ShapeProp
    first = next((p for p in model.parameters() if p.is_floating_point()), None)
    x = example_input if first is None else example_input.to(first.device, first.dtype)
    was_training = model.training
    model.eval()  # shapes only: no running statistics updated, no dropout drawn
    try:
        with torch.no_grad():
            ShapeProp(gm).propagate(x)
    except Exception as exc:  # fx wraps the model's own error in a RuntimeError
        raise ValueError(f"trace: the model does not run on example_input of shape "
                         f"{tuple(example_input.shape)}: {exc}") from exc
    finally:
        model.train(was_training)
    builder = _Builder(model, gm, init, bias_init)
    return builder.build(example_input)


class _Builder:
    def __init__(self, model: nn.Module, gm: fx.GraphModule, init: Any, bias_init: Any):
        self.model, self.gm, self.init, self.bias_init = model, gm, init, bias_init
        self.laws: list[list[_law.Law]] = []
        self.names: list[str] = []
        self.notes: list[str] = []
        self.modules: dict[int, tuple[str, Any]] = {}
        self.covered: dict[int, int] = {}  # id(parameter) -> numel, read by the theory

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
        self.ops = {n: classify(n, self.gm) for n in used}
        bad = [f"{op.name}: {op.reason}" for op in self.ops.values() if op.kind == "unsupported"]
        inputs = [n for n in used if self.ops[n].kind == "input"]
        if len(inputs) > 1:
            bad.append(f"{len(inputs)} inputs ({', '.join(n.name for n in inputs)}): varprop "
                       "follows one")
        if bad:
            raise UnsupportedOpError(bad)
        self._anc, self._index = anc, index
        items = self._items(self.ops[output].input, inputs[0])
        shape = tuple(x.shape[1:])
        width: Any = shape[0] if len(shape) == 1 else (*shape[1:], shape[0])
        layers, _ = self._layers(items, width)
        if not any(layer.weighted for layer in _flat(layers)):
            raise ValueError("trace: the model has no Linear or Conv layer varprop can analyze")
        if any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in self.model.modules()) \
                and not self.model.training:
            self.notes.append("the model is in eval mode: its BatchNorm layers are analyzed "
                              "with batch statistics (training mode), as at the start of "
                              "training")
        name = f"{type(self.model).__name__} (traced from PyTorch)"
        net = Network(width, tuple(layers), name=name,
                      layout="torch" if len(shape) > 1 else "keras")
        params = {id(p): p.numel() for p in self.model.parameters()}
        total = sum(params.values())
        covered = sum(v for k, v in self.covered.items() if k in params)
        uncovered = [n for n, p in self.model.named_parameters() if id(p) not in self.covered]
        if uncovered:
            self.notes.append(f"parameters the theory does not read: {', '.join(uncovered)}")
        return TraceResult(net, covered / total if total else 1.0, [], self.laws, self.names,
                           self.notes, next_ops(self.gm, self.model), self.gm, self.modules)

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
            if op.kind == "add":
                a, b, alpha = op.input, op.other, op.factor
                if self._is_ancestor(a, b):
                    skip, branch = a, b
                elif self._is_ancestor(b, a) and alpha == 1.0:
                    skip, branch = b, a
                else:
                    raise UnsupportedOpError([
                        f"{op.name}: adds two paths neither of which is an input of the "
                        "other (a projection shortcut, two branches, a tensor constant, or "
                        "x + x); varprop maps residual adds x + alpha * f(x) whose skip is "
                        "the identity"])
                while self.ops[branch].kind == "scale" and len(branch.users) == 1:
                    scale = self.ops[branch]
                    alpha *= scale.factor  # x + alpha * f(x): alpha into the block
                    if scale.other is not None:  # a scalar parameter (ReZero, SkipInit)
                        self._cover_attr(str(scale.other.target))
                    branch = scale.input
                items.append((alpha, self._items(branch, skip), node))
                node = skip
            elif op.kind == "scale":
                raise UnsupportedOpError([f"{op.name}: a multiplication by a constant outside "
                                          "a residual branch's end"])
            elif op.kind == "input":
                raise ValueError(f"trace: the path back from a residual add reaches the input "
                                 f"without meeting its skip ({stop.name!r}): the graph is not "
                                 "a chain of layers with residual adds")
            elif op.input is None:
                raise UnsupportedOpError([f"{op.name}: not a layer on the path from the "
                                          "input to the output"])
            else:
                items.append(node)
                node = op.input
        items.reverse()
        return items

    # ------------------------------------------------------------------ the layers
    def _layers(self, items: list, width: Any) -> tuple[list, Any]:
        out: list = []
        for item in items:
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

    def _layer(self, op: Op, node: fx.Node, width: Any) -> list:
        kind, m = op.kind, op.module
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
        if out_shape != (in_shape[0], math.prod(in_shape[1:])):
            raise UnsupportedOpError([f"{op.name}: a reshape from {in_shape} to {out_shape} "
                                      "(varprop maps flattening to (batch, features))"])
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

    def _weighted(self, name: str, m: nn.Module) -> Any:
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


def _flat(layers: Any) -> Any:
    for layer in layers:
        yield layer
        if isinstance(layer, vl.Residual):
            yield from _flat(layer.branch)
