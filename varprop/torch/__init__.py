"""varprop for PyTorch models (``pip install "varprop[torch]"``): read a model as a
varprop network and predict, measure and audit its variance at initialization.

* :func:`trace`: the model as a :class:`~varprop.network.Network` (``torch.fx``), with
  each weight's law read from the model (or given by name);
* :func:`init_`: any varprop initializer applied in place, at each layer's true fans;
* :func:`audit`: what is wrong with the model's initialization, layer by layer;
* :func:`profile`: the model itself measured through forward and tensor hooks, one
  record per weighted layer, lined up with ``varprop.analyze``'s;
* :func:`compare`: theory against that measurement (or, ``measure="traced"``, against
  a measurement of the traced network), with each op varprop has no theory for kept as
  a measured-only row and the theory re-anchored on it.

``import varprop`` does not import torch, and neither does ``import varprop.torch``:
its names load on first use (PEP 562), so that the ``varprop model`` command
(:mod:`varprop.torch.command`) can register itself without torch, which then costs its
import time (about a second) only when the command runs. docs/torch.md is the user
guide.

Example:
    >>> import torch, varprop.torch
    >>> model = torch.nn.Sequential(torch.nn.Linear(32, 32), torch.nn.ReLU(),
    ...                             torch.nn.Linear(32, 10))
    >>> [f.kind for f in varprop.torch.audit(model)]
    ['torch_default_init', 'torch_default_init']
"""

from __future__ import annotations

import importlib
import types
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover - for type checkers; at run time the names load lazily
    from ._law import Law
    from .audit import Finding, audit
    from .compare import TorchComparison, compare
    from .init import init_
    from .profile import profile
    from .trace import TraceResult, UnsupportedOpError, trace

#: Each exported name and the submodule that defines it.
_EXPORTS = {"trace": "trace", "TraceResult": "trace", "UnsupportedOpError": "trace",
            "Law": "_law", "init_": "init", "audit": "audit", "Finding": "audit",
            "compare": "compare", "TorchComparison": "compare", "profile": "profile"}

__all__ = ["trace", "TraceResult", "UnsupportedOpError", "Law", "init_", "audit",
           "Finding", "compare", "TorchComparison", "profile"]


class _Package(types.ModuleType):
    """This package: exported names load on first access, and the submodules that share
    a function's name (``trace``, ``audit``, ``compare``, ``profile``) never shadow it.

    Python's import system sets ``varprop.torch.trace`` to the submodule whenever that
    submodule is first imported (by this package's own modules too); the function must
    stay what ``varprop.torch.trace`` names, as it was with eager imports."""

    def __getattr__(self, name: str) -> Any:
        if name not in _EXPORTS:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        try:
            module = importlib.import_module(f"{__name__}.{_EXPORTS[name]}")
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.split(".")[0] == "torch":
                raise ImportError(f"varprop.torch.{name} needs PyTorch: "
                                  "pip install 'varprop[torch]'") from exc
            raise
        value = getattr(module, name)
        types.ModuleType.__setattr__(self, name, value)
        return value

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _EXPORTS and isinstance(value, types.ModuleType):
            return  # a submodule named like a function: reachable in sys.modules only
        types.ModuleType.__setattr__(self, name, value)

    def __dir__(self) -> list[str]:
        return sorted(set(super().__dir__()) | set(__all__))


import sys as _sys  # noqa: E402 - after the class it is given to

_sys.modules[__name__].__class__ = _Package
