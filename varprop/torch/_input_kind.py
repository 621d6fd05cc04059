"""What a traced model's input is (docs/torch.md, "Sequences and tokens"): flat
features, channels-first images, a sequence ``(batch, T, features)`` whose tokens are
rows to the theory, or integer token indices. :func:`read_input` decides it from
``input_kind`` (the user's word) or, with ``input_kind="auto"``, from the ops that first
read the input, and asks the user (a ValueError naming ``input_kind``) where a rank-3
input could be either a sequence or images.

A rank-3 float input ``(batch, A, B)`` is the one ambiguous rank: a sequence ``(batch, T,
features)`` and channels-first images ``(batch, C, L)`` have the same shape. The ops that
read it tell them apart: a convolution, pooling, BatchNorm or GroupNorm reads channels
first (images); a Linear, a LayerNorm over the last dim, or a ``batch_first`` recurrent
layer or attention reads features last (a sequence). Elementwise ops and same-shape adds
(residual streams) are looked through. Readers of one of the two kinds decide; readers of
both kinds, or only readers that say neither (a flatten, a transpose, a mean), leave it
open, and the trace asks.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.fx as fx
from torch import nn

from .._validate import one_of
from ._ops import classify, torch_shape

__all__ = ["INPUT_KINDS", "check_input_kind", "read_input"]

#: The values of ``input_kind``: "auto" decides from the model where it can.
INPUT_KINDS = ("auto", "sequence", "image")

_IMAGE_MODULES = (nn.modules.conv._ConvNd, nn.modules.batchnorm._BatchNorm, nn.GroupNorm,
                  nn.modules.pooling._MaxPoolNd, nn.modules.pooling._AvgPoolNd,
                  nn.modules.pooling._AdaptiveAvgPoolNd)
_IMAGE_FUNCS = ("conv1d", "max_pool1d", "avg_pool1d", "adaptive_avg_pool1d", "batch_norm",
                "group_norm")
_SEQUENCE_FUNCS = ("linear", "layer_norm")
_LOOK_THROUGH = ("act", "none", "scale", "add")


def check_input_kind(value: Any, owner: str) -> str:
    """``value`` if it is one of :data:`INPUT_KINDS` (a ValueError naming
    ``input_kind`` otherwise; a TypeError for a non-string)."""
    return one_of("input_kind", value, INPUT_KINDS, owner=owner)


def read_input(x: torch.Tensor, gm: fx.GraphModule, used: list, inputs: list,
               input_kind: str) -> tuple[bool, int]:
    """``(sequence, tokens)`` of the example ``x`` (module doc): ``sequence`` whether
    the tokens of a ``(batch, T, ...)`` input are rows to the theory, ``tokens`` the
    vocabulary of integer token indices (0 for floats).

    Raises:
        ValueError: ``input_kind`` that does not fit ``x``'s rank or dtype, naming it;
            a rank-3 float input the model does not tell apart with
            ``input_kind="auto"``, asking for ``input_kind``.
    """
    shape = tuple(x.shape)
    if not x.is_floating_point():
        embeds = [gm.get_submodule(str(u.target)) for i in inputs for u in i.users
                  if u.op == "call_module"
                  and isinstance(gm.get_submodule(str(u.target)), nn.Embedding)]
        if not embeds:
            raise ValueError("trace: integer example_input (token indices) must be read "
                             "by an nn.Embedding")
        if input_kind == "image" or (input_kind == "sequence" and x.dim() != 2):
            raise ValueError(f"trace: input_kind={input_kind!r} does not fit integer token "
                             f"indices of shape {shape}: (batch, T) tokens are a sequence, "
                             "(batch,) one token per sample; leave input_kind='auto'")
        return x.dim() == 2, int(embeds[0].num_embeddings)
    if x.dim() != 3:
        if input_kind == "sequence" or (input_kind == "image" and x.dim() == 2):
            want = "a rank-3 (batch, T, features)" if input_kind == "sequence" else \
                "a rank-3 (batch, C, L) or rank-4 (batch, C, H, W)"
            raise ValueError(f"trace: input_kind={input_kind!r} needs {want} example_input, "
                             f"got shape {shape}")
        return False, 0
    if input_kind != "auto":
        return input_kind == "sequence", 0
    found = _readers(gm, inputs[0], set(used))
    kinds = {kind for kind, _ in found} - {"open"}
    if len(kinds) == 1:  # a reader that says it; others (a flatten, a token pick) do not
        return kinds == {"sequence"}, 0
    if kinds:
        why = ("it is read both as images ("
               + next(w for k, w in found if k == "image") + ") and as a sequence ("
               + next(w for k, w in found if k == "sequence") + ")")
    else:
        why = "it is first read by " + ", ".join(w for k, w in found if k == "open") \
            if found else "nothing reads it"
    raise ValueError(f"trace: a rank-3 example_input of shape {shape} may be a sequence "
                     "(batch, T, features) or channels-first images (batch, C, L), and the "
                     f"model does not say which: {why}. Pass input_kind='sequence' (Linear "
                     "and LayerNorm act on the last dim, each token a row) or "
                     "input_kind='image' (docs/torch.md)")


def _readers(gm: fx.GraphModule, start: fx.Node, used: set) -> list[tuple[str, str]]:
    """``(kind, what)`` of each op that first reads ``start``'s layout (kind "image",
    "sequence" or "open"), looking through elementwise ops and same-shape adds."""
    shape = torch_shape(start)
    out, seen, todo = [], {start}, [start]
    while todo:
        for user in todo.pop().users:
            if user not in used or user in seen or user.op == "output":
                continue
            seen.add(user)
            kind, what = _reader(gm, user, shape)
            if kind is None:
                todo.append(user)
            else:
                out.append((kind, what))
    return out


def _reader(gm: fx.GraphModule, node: fx.Node, shape: tuple) -> tuple["str | None", str]:
    """How ``node`` reads a value of the input's ``shape`` (None: it looks through)."""
    if node.op == "call_module":
        m = gm.get_submodule(str(node.target))
        what = f"{type(m).__name__} at {str(node.target)!r}"
        if isinstance(m, _IMAGE_MODULES):
            return "image", what
        if isinstance(m, nn.Linear) or (isinstance(m, nn.LayerNorm)
                                        and tuple(m.normalized_shape) == shape[-1:]):
            return "sequence", what
        if isinstance(m, (nn.RNNBase, nn.MultiheadAttention)) and m.batch_first:
            return "sequence", what
    else:
        name = getattr(node.target, "__name__", str(node.target))
        what = f"{name} (node {node.name!r})"
        if node.op == "call_function" and name in _IMAGE_FUNCS:
            return "image", what
        if node.op == "call_function" and name in _SEQUENCE_FUNCS:
            return "sequence", what
    try:
        kind = classify(node, gm).kind
    except Exception:  # noqa: BLE001 - a node classify cannot read is not looked through
        kind = "unsupported"
    if kind in _LOOK_THROUGH and _shape_of(node) == shape:
        return None, what
    return "open", what


def _shape_of(node: fx.Node) -> "tuple | None":
    try:
        return torch_shape(node)
    except Exception:  # noqa: BLE001 - no shape recorded: not the input's layout
        return None
