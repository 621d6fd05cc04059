"""What each node of a ``torch.fx`` graph becomes in varprop: the tracer that stops at
the layers varprop maps, and the classification of every node (a layer, a residual add,
a scale, a reshape, a no-op, or an unsupported op with the reason).

``torch.fx`` (https://pytorch.org/docs/stable/fx.html) records a module's forward as a
graph of ``call_module``, ``call_function`` and ``call_method`` nodes. The tracer here
enters containers (``nn.Sequential``, ``nn.ModuleList``, ``nn.ModuleDict``) and user
modules, and stops at every other ``torch.nn`` module, so that a layer varprop does not
know shows up as one node that can be named, not as the functions it calls.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Iterator
from unittest import mock

import torch
import torch.fx as fx
from torch import nn

__all__ = ["Tracer", "Op", "classify", "trace_graph", "ENTERED", "is_tensor", "torch_shape",
           "WEIGHTED", "NORMS", "activation_of_module", "symbolic_graph", "next_ops"]

#: The weighted layers varprop maps (their own forward, not a subclass's).
WEIGHTED = (nn.Linear, nn.Conv1d, nn.Conv2d)
NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.LayerNorm, nn.GroupNorm)
_POOLS = (nn.MaxPool1d, nn.MaxPool2d, nn.AvgPool1d, nn.AvgPool2d, nn.AdaptiveAvgPool1d,
          nn.AdaptiveAvgPool2d)
_NO_OPS = (nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.AlphaDropout,
           nn.FeatureAlphaDropout)
_ACT_MODULES = (nn.ReLU, nn.LeakyReLU, nn.Tanh, nn.Sigmoid, nn.GELU, nn.SiLU, nn.ELU,
                nn.SELU, nn.Softplus, nn.Softsign)
_MAPPED = WEIGHTED + NORMS + _POOLS + _NO_OPS + _ACT_MODULES + (nn.Flatten, nn.Embedding)
_CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)
#: torch.nn modules the tracer enters, so that their residual adds, norms and Linear
#: layers are seen (their attention stays one measured-only node)
ENTERED = (nn.TransformerEncoderLayer, nn.TransformerEncoder)

# function and method names (fx records torch.relu, F.relu and x.relu() alike by name)
_ACT_FUNCS = {"relu": "relu", "relu_": "relu", "tanh": "tanh", "tanh_": "tanh",
              "sigmoid": "sigmoid", "sigmoid_": "sigmoid", "selu": "selu", "silu": "silu",
              "softsign": "softsign", "leaky_relu": "leaky_relu", "elu": "elu",
              "gelu": "gelu", "softplus": "softplus"}
_DROPOUT_FUNCS = {"dropout", "dropout1d", "dropout2d", "alpha_dropout",
                  "feature_alpha_dropout", "contiguous"}
_RESHAPES = {"flatten", "view", "reshape", "squeeze"}
_HELPERS = {"size", "dim", "getattr", "getitem", "numel"}
_ADDS = {"add", "add_", "iadd"}
_MULS = {"mul", "mul_", "imul"}
_DIVS = {"truediv", "div", "div_", "itruediv"}
_FUNC_MODULES = ("torch", "_operator", "operator", "builtins")


def _mapped(module: nn.Module) -> bool:
    """A module varprop maps: one of the types above with that type's own forward (a
    subclass that overrides forward is traced into instead)."""
    for base in _MAPPED:
        if isinstance(module, base):
            return type(module).forward is base.forward
    return False


class Tracer(fx.Tracer):
    """Enters containers and user modules; stops at the layers varprop maps and at every
    other ``torch.nn`` module (which is then named as unsupported)."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        if isinstance(m, _CONTAINERS + ENTERED):
            return False
        if _mapped(m):
            return True
        return type(m).__module__.startswith("torch.nn")


@contextlib.contextmanager
def _python_path() -> Iterator[None]:
    """The transformer layers' Python path while fx records them. Their forward first
    asks whether the fused fast path may run; with it disabled
    (``torch.backends.mha.set_fastpath_enabled(False)``) the checks stop before any that
    reads a traced tensor. ``nn.TransformerEncoder`` then reads ``src.is_nested`` for a
    sequence length it uses only with a mask: for a traced tensor it is None here."""
    from torch.nn.modules import transformer as tm
    original = tm._get_seq_len

    def seq_len(src: Any, batch_first: bool) -> Any:
        return None if isinstance(src, fx.Proxy) else original(src, batch_first)

    before = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with mock.patch.object(tm, "_get_seq_len", seq_len):
            yield
    finally:
        torch.backends.mha.set_fastpath_enabled(before)


def trace_graph(model: nn.Module) -> fx.GraphModule:
    """The model's graph under :class:`Tracer` (transformer layers on their Python path);
    fx's own error where it cannot trace (data-dependent control flow)."""
    with _python_path():
        return fx.GraphModule(model, Tracer().trace(model))


def symbolic_graph(model: nn.Module) -> "fx.GraphModule | None":
    """The model's graph under :class:`Tracer`, or None where fx cannot trace it
    (data-dependent control flow)."""
    try:
        return trace_graph(model)
    except Exception:  # fx raises many kinds (TraceError, TypeError, ...): no graph
        return None


def is_tensor(node: Any) -> bool:
    """A node whose value (after shape propagation) is one tensor."""
    from torch.fx.passes.shape_prop import TensorMetadata
    return isinstance(node, fx.Node) and isinstance(node.meta.get("tensor_meta"), TensorMetadata)


def torch_shape(node: fx.Node) -> tuple[int, ...]:
    return tuple(int(s) for s in node.meta["tensor_meta"].shape)


@dataclass
class Op:
    """What one node is. ``kind``: "input", "output", "weighted", "act", "norm", "pool",
    "global_pool", "reshape", "none" (identity at analysis), "add" (``a + alpha_b * b``),
    "scale" (``input * factor``), "helper" (shape arithmetic) or "unsupported"
    (``reason`` says why). ``input`` is the tensor the op reads."""

    kind: str
    name: str
    input: "fx.Node | None" = None
    module: "nn.Module | None" = None
    params: "dict[str, Any] | None" = None
    reason: str = ""
    other: "fx.Node | None" = None
    factor: float = 1.0


def _arg(node: fx.Node, pos: int, name: str, default: Any) -> Any:
    if name in node.kwargs:
        return node.kwargs[name]
    return node.args[pos] if len(node.args) > pos else default


def _scalar(value: Any, gm: fx.GraphModule) -> "float | None":
    """A Python number, or a one-element parameter/buffer read by a get_attr node."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, fx.Node) and value.op == "get_attr":
        try:
            t = gm.get_parameter(value.target)
        except AttributeError:
            try:
                t = gm.get_buffer(value.target)
            except AttributeError:
                return None
        if isinstance(t, torch.Tensor) and t.numel() == 1:
            return float(t.detach().reshape(()).cpu())
    return None


def activation_of_module(m: nn.Module) -> tuple[str, dict[str, float]] | str:
    """(varprop activation name, parameters) of an activation module, or the reason it
    has no varprop twin."""
    if isinstance(m, nn.ReLU):
        return "relu", {}
    if isinstance(m, nn.LeakyReLU):
        return "leaky_relu", {"negative_slope": float(m.negative_slope)}
    if isinstance(m, nn.GELU):
        return ("gelu" if m.approximate == "none" else "gelu_tanh"), {}
    if isinstance(m, nn.ELU):
        return "elu", {"alpha": float(m.alpha)}
    if isinstance(m, nn.Softplus):
        if m.beta != 1:
            return f"Softplus(beta={m.beta}): varprop's softplus has beta 1"
        return "softplus", {}
    names = {nn.Tanh: "tanh", nn.Sigmoid: "sigmoid", nn.SiLU: "silu", nn.SELU: "selu",
             nn.Softsign: "softsign"}
    for base, name in names.items():
        if isinstance(m, base):
            return name, {}
    return f"{type(m).__name__}: no varprop activation"


def _activation_of_call(node: fx.Node, name: str) -> tuple[str, dict[str, float]] | str:
    act = _ACT_FUNCS[name]
    if act == "leaky_relu":
        return act, {"negative_slope": float(_arg(node, 1, "negative_slope", 0.01))}
    if act == "elu":
        return act, {"alpha": float(_arg(node, 1, "alpha", 1.0))}
    if act == "gelu":
        approx = _arg(node, 1, "approximate", "none")
        return ("gelu" if approx == "none" else "gelu_tanh"), {}
    if act == "softplus":
        beta = _arg(node, 1, "beta", 1.0)
        if beta != 1:
            return f"softplus(beta={beta}): varprop's softplus has beta 1"
    return act, {}


def _call_name(node: fx.Node) -> "str | None":
    """The function or method name of a call node (None: not from torch/operator)."""
    if node.op == "call_method":
        return str(node.target)
    module = getattr(node.target, "__module__", None) or ""
    if not module.startswith(_FUNC_MODULES):
        return None
    return getattr(node.target, "__name__", None)


def classify(node: fx.Node, gm: fx.GraphModule, sequence: bool = False) -> Op:
    """What ``node`` is (see :class:`Op`). ``sequence``: the model reads token
    sequences ``(batch, T, features)``, whose Linear and LayerNorm act on the last dim
    and whose tokens varprop treats as rows (docs/torch.md); an op that mixes tokens
    (pooling, reshaping, a BatchNorm over dim 1) is then unsupported."""
    op = _classify(node, gm, sequence)
    if sequence and (op.kind in ("pool", "global_pool")
                     or (op.kind == "norm" and not isinstance(op.module, nn.LayerNorm))
                     or (op.kind == "reshape" and torch_shape(node) != torch_shape(op.input))):
        return Op("unsupported", op.name, reason="mixes the tokens of a sequence (varprop "
                  "treats each token as a row)")
    return op


def _classify(node: fx.Node, gm: fx.GraphModule, sequence: bool) -> Op:
    if node.op == "placeholder":
        return Op("input", node.name)
    if node.op == "output":
        out = node.args[0]
        if not isinstance(out, fx.Node):
            return Op("unsupported", "output", reason="the model returns more than one "
                      "tensor (a tuple or dict): varprop follows one output")
        return Op("output", "output", out)
    if node.op == "get_attr":
        return Op("helper", node.name)
    if node.op == "call_module":
        return _classify_module(node, gm.get_submodule(str(node.target)), sequence)
    name = _call_name(node)
    label = f"{name or node.target} (node {node.name!r})"
    if name is None:
        return Op("unsupported", label, reason="a call varprop does not know")
    if name in _HELPERS:
        return Op("helper", label)
    x = node.args[0] if node.args else None
    if name in _ADDS:
        a, b = node.args[0], node.args[1] if len(node.args) > 1 else node.kwargs.get("other")
        if not (is_tensor(a) and is_tensor(b)):
            return Op("unsupported", label, reason="adds a constant (only x + f(x) is mapped)")
        alpha = _scalar(node.kwargs.get("alpha", 1.0), gm)
        if alpha is None:
            return Op("unsupported", label, reason="add with a non-scalar alpha")
        return Op("add", label, a, other=b, factor=alpha)
    if name in _MULS | _DIVS:
        a, b = node.args[0], node.args[1] if len(node.args) > 1 else node.kwargs.get("other")
        if name in _MULS and not is_tensor(a):
            a, b = b, a
        factor = _scalar(b, gm)
        if not is_tensor(a) or factor is None or (name in _DIVS and factor == 0):
            return Op("unsupported", label, reason="a product or quotient of two tensors")
        attr = b if isinstance(b, fx.Node) else None  # a parameter read as the factor
        return Op("scale", label, a, factor=factor if name in _MULS else 1.0 / factor,
                  other=attr)
    known = set(_ACT_FUNCS) | _DROPOUT_FUNCS | _RESHAPES | {"mean"} | {
        "max_pool1d", "max_pool2d", "avg_pool1d", "avg_pool2d", "adaptive_avg_pool1d",
        "adaptive_avg_pool2d"}
    if name not in known:
        return Op("unsupported", label, reason="an op varprop does not map")
    if not is_tensor(x):
        return Op("unsupported", label, reason="its first argument is not a tensor")
    if name in _ACT_FUNCS:
        act = _activation_of_call(node, name)
        if isinstance(act, str):
            return Op("unsupported", label, reason=act)
        return Op("act", label, x, params={"name": act[0], **act[1]})
    if name in _DROPOUT_FUNCS:
        return Op("none", label, x)
    if name in _RESHAPES:
        return Op("reshape", label, x)
    if name in ("max_pool1d", "max_pool2d", "avg_pool1d", "avg_pool2d"):
        return _functional_pool(node, name, label, x)
    if name in ("adaptive_avg_pool1d", "adaptive_avg_pool2d"):
        return _adaptive(node, label, x, _arg(node, 1, "output_size", None))
    return _mean(node, label, x)


def _classify_module(node: fx.Node, m: nn.Module, sequence: bool = False) -> Op:
    target = str(node.target)
    label = f"{type(m).__name__} at {target!r}"
    x = node.args[0] if node.args else None
    if isinstance(m, nn.MultiheadAttention):
        return Op("unsupported", label, x, m, reason="attention: measured only, flagged "
                  "approximate/measured only (varprop derives no theory for softmax "
                  "attention at initialization)")
    if isinstance(m, nn.RNNBase):
        return Op("unsupported", label, x, m, reason="a recurrent layer: measured only, "
                  "with the gated mean field (docs/gated.md) beside it where it has one")
    if not _mapped(m):
        return Op("unsupported", label, reason="a layer varprop does not map")
    if not is_tensor(x):
        return Op("unsupported", label, reason="its input is not one tensor")
    rank = len(torch_shape(x))
    if isinstance(m, nn.Embedding):
        if x.op != "placeholder" or m.max_norm is not None:
            return Op("unsupported", label, reason="an Embedding of a computed index or "
                      "with max_norm (varprop maps an Embedding of the input tokens)")
        return Op("weighted", label, x, m)
    if isinstance(m, nn.Linear):
        if rank != 2 and not sequence:
            return Op("unsupported", label, reason=f"Linear on a rank-{rank} input (varprop "
                      "maps Linear on (batch, features))")
        return Op("weighted", label, x, m)
    if isinstance(m, (nn.Conv1d, nn.Conv2d)):
        if m.padding_mode != "zeros":
            return Op("unsupported", label, reason=f"padding_mode={m.padding_mode!r} "
                      "(varprop pads with zeros)")
        return Op("weighted", label, x, m)
    if isinstance(m, _ACT_MODULES):
        act = activation_of_module(m)
        if isinstance(act, str):
            return Op("unsupported", label, reason=act)
        return Op("act", label, x, m, params={"name": act[0], **act[1]})
    if isinstance(m, _NO_OPS):
        return Op("none", label, x, m)
    if isinstance(m, nn.Flatten):
        return Op("reshape", label, x, m)
    if isinstance(m, NORMS):
        over = torch_shape(x)[-1:] if sequence else torch_shape(x)[1:]
        if isinstance(m, nn.LayerNorm) and tuple(m.normalized_shape) != over:
            return Op("unsupported", label, reason=f"LayerNorm over {tuple(m.normalized_shape)}"
                      f" of a {torch_shape(x)} input: varprop's LayerNorm normalizes each "
                      "sample over all its features")
        return Op("norm", label, x, m)
    if isinstance(m, (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d)):
        return _adaptive(node, label, x, m.output_size, m)
    if getattr(m, "ceil_mode", False) or getattr(m, "return_indices", False) \
            or getattr(m, "divisor_override", None) is not None \
            or getattr(m, "dilation", 1) not in (1, (1,), (1, 1)):
        return Op("unsupported", label, reason="ceil_mode, return_indices, dilation or "
                  "divisor_override (varprop pools without them)")
    kind = "max" if isinstance(m, (nn.MaxPool1d, nn.MaxPool2d)) else "avg"
    params = {"kind": kind, "pool_size": m.kernel_size, "stride": m.stride or m.kernel_size,
              "padding": m.padding, "count_include_pad": getattr(m, "count_include_pad", True)}
    return Op("pool", label, x, m, params=params)


def _functional_pool(node: fx.Node, name: str, label: str, x: fx.Node) -> Op:
    kernel = _arg(node, 1, "kernel_size", None)
    stride = _arg(node, 2, "stride", None)
    padding = _arg(node, 3, "padding", 0)
    if name.startswith("max"):
        extra = (_arg(node, 4, "dilation", 1) not in (1, (1,), (1, 1), [1, 1])
                 or _arg(node, 5, "ceil_mode", False) or _arg(node, 6, "return_indices", False))
        include = True
    else:
        extra = _arg(node, 4, "ceil_mode", False) or \
            _arg(node, 6, "divisor_override", None) is not None
        include = _arg(node, 5, "count_include_pad", True)
    if extra:
        return Op("unsupported", label, reason="ceil_mode, return_indices, dilation or "
                  "divisor_override (varprop pools without them)")
    params = {"kind": name[:3], "pool_size": kernel, "stride": stride or kernel,
              "padding": padding, "count_include_pad": include}
    return Op("pool", label, x, params=params)


def _adaptive(node: fx.Node, label: str, x: fx.Node, size: Any,
              module: "nn.Module | None" = None) -> Op:
    spatial = torch_shape(x)[2:]
    sizes = tuple(size) if isinstance(size, (list, tuple)) else (size,) * len(spatial)
    sizes = tuple(s if s is not None else spatial[i] for i, s in enumerate(sizes))
    if all(s == 1 for s in sizes):
        return Op("global_pool", label, x, module)
    if sizes == spatial:
        return Op("none", label, x, module)
    return Op("unsupported", label, reason=f"adaptive pooling to {sizes} (varprop maps "
              "output size 1, a global average pooling)")


def _mean(node: fx.Node, label: str, x: fx.Node) -> Op:
    rank = len(torch_shape(x))
    dims = _arg(node, 1, "dim", None)
    dims = (dims,) if isinstance(dims, int) else tuple(dims or ())
    if rank >= 3 and sorted(d % rank for d in dims) == list(range(2, rank)):
        return Op("global_pool", label, x)
    return Op("unsupported", label, reason=f"a mean over dims {dims} (varprop maps the "
              "mean over all spatial dims, a global average pooling)")


# ----------------------------------------------------------------------------- neighbours
def _activation_name(node: fx.Node, gm: fx.GraphModule) -> "str | None":
    if node.op == "call_module":
        m = gm.get_submodule(str(node.target))
        if isinstance(m, _ACT_MODULES):
            act = activation_of_module(m)
            return None if isinstance(act, str) else act[0]
        return None
    name = _call_name(node) if node.op in ("call_function", "call_method") else None
    if name in _ACT_FUNCS:
        act = _activation_of_call(node, name)
        return None if isinstance(act, str) else act[0]
    return None


def _passes_through(node: fx.Node, gm: fx.GraphModule) -> bool:
    """Ops that change nothing at initialization (dropout, identity, contiguous)."""
    if node.op == "call_module":
        return isinstance(gm.get_submodule(str(node.target)), _NO_OPS)
    return node.op in ("call_function", "call_method") and _call_name(node) in _DROPOUT_FUNCS


def next_ops(gm: "fx.GraphModule | None", model: nn.Module) -> dict[str, str]:
    """For each Linear/Conv module (any conv, transposed too): what reads its output,
    through dropout and identities: "norm", an activation name, or "other". Without a
    graph, the next module in registration order decides (a Sequential's order)."""
    convs = (nn.Linear, nn.modules.conv._ConvNd)
    out: dict[str, str] = {}
    if gm is None:
        leaves = [(n, m) for n, m in model.named_modules() if not list(m.children())]
        for (name, m), nxt in zip(leaves, leaves[1:] + [(None, None)]):
            if isinstance(m, convs):
                out[name] = _module_role(nxt[1])
        return out
    for node in gm.graph.nodes:
        if node.op != "call_module" or not isinstance(gm.get_submodule(str(node.target)), convs):
            continue
        cur = node
        while len(cur.users) == 1 and _passes_through(next(iter(cur.users)), gm):
            cur = next(iter(cur.users))
        users = list(cur.users)
        what = "other"
        if len(users) == 1:
            user = users[0]
            if user.op == "call_module":
                what = _module_role(gm.get_submodule(str(user.target)))
            elif user.op in ("call_function", "call_method") and \
                    _call_name(user) in ("batch_norm", "layer_norm", "group_norm"):
                what = "norm"
            else:
                what = _activation_name(user, gm) or "other"
        # a module called twice keeps the stricter answer
        prev = out.get(str(node.target))
        out[str(node.target)] = what if prev in (None, what) else "other"
    return out


def _module_role(m: "nn.Module | None") -> str:
    """"norm", the activation's varprop name, or "other"."""
    if isinstance(m, NORMS):
        return "norm"
    if isinstance(m, _ACT_MODULES):
        act = activation_of_module(m)
        return "other" if isinstance(act, str) else act[0]
    return "other"
