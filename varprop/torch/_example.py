"""The example input ``varprop model`` gives a model (docs/torch.md): standard normal of
the shape asked for, or token indices where the model's input feeds an ``nn.Embedding``."""

from __future__ import annotations

import torch
from torch import nn

from ._ops import symbolic_graph

__all__ = ["example_input"]


def example_input(model: nn.Module, shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    """A batch of ``shape`` for ``model``: integer tokens drawn uniformly from the
    vocabulary of the ``nn.Embedding`` that reads the model's input, else standard
    normal in the dtype and device of the model's first floating parameter.

    Example:
        >>> m = nn.Sequential(nn.Embedding(100, 8), nn.Flatten(), nn.Linear(32, 2))
        >>> example_input(m, (5, 4)).dtype
        torch.int64
    """
    gen = torch.Generator().manual_seed(seed)
    first = next((p for p in model.parameters() if p.is_floating_point()), None)
    gm = symbolic_graph(model)
    for node in [] if gm is None else gm.graph.nodes:
        if node.op != "placeholder":
            continue
        for user in node.users:
            m = gm.get_submodule(str(user.target)) if user.op == "call_module" else None
            if isinstance(m, nn.Embedding):
                x = torch.randint(0, m.num_embeddings, shape, generator=gen)
                return x if first is None else x.to(first.device)
    x = torch.randn(shape, generator=gen)
    return x if first is None else x.to(first.device, first.dtype)
