"""varprop for PyTorch models (``pip install "varprop[torch]"``): read a model as a
varprop network and predict, measure and audit its variance at initialization.

* :func:`trace`: the model as a :class:`~varprop.network.Network` (``torch.fx``), with
  each weight's law read from the model (or given by name);
* :func:`init_`: any varprop initializer applied in place, at each layer's true fans;
* :func:`audit`: what is wrong with the model's initialization, layer by layer;
* :func:`compare`: theory against measurement on the traced network.

``import varprop`` does not import torch; ``import varprop.torch`` does (this package's
modules import the real ``torch`` absolutely). docs/torch.md is the user guide.

Example:
    >>> import torch, varprop.torch
    >>> model = torch.nn.Sequential(torch.nn.Linear(32, 32), torch.nn.ReLU(),
    ...                             torch.nn.Linear(32, 10))
    >>> [f.kind for f in varprop.torch.audit(model)]
    ['torch_default_init', 'torch_default_init']
"""

from __future__ import annotations

from ._law import Law
from .audit import Finding, audit
from .compare import compare
from .init import init_
from .trace import TraceResult, UnsupportedOpError, trace

__all__ = ["trace", "TraceResult", "UnsupportedOpError", "Law", "init_", "audit",
           "Finding", "compare"]
