"""Parts of :func:`varprop.torch.profile`: its tensors as the statistics of
:mod:`varprop.adapters.measure` read them, and what it puts back on the model afterwards
(:class:`Saved`, :func:`keep_modes`)."""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

import numpy as np
import torch
from torch import nn

from ..adapters import measure

__all__ = ["Saved", "channels_last", "grad_stats", "keep_modes"]


def channels_last(t: torch.Tensor) -> np.ndarray:
    """``t`` in float64 as a numpy array in varprop's layout (channels last), for the
    statistics of :mod:`varprop.adapters.measure`."""
    arr = t.detach().double().cpu().numpy()
    return np.moveaxis(arr, 1, -1) if arr.ndim > 2 else arr


def grad_stats(col: np.ndarray, g: torch.Tensor, maps: dict, i: int, tick: Any) -> None:
    """:func:`varprop.adapters.measure.grad_stats` of ``g = dL/dz``, then ``tick(1)``."""
    measure.grad_stats(col, channels_last(g), maps, i)
    if tick is not None:
        tick(1)


@contextlib.contextmanager
def keep_modes(model: nn.Module) -> Iterator[None]:
    """Put every submodule's own train/eval flag back on leaving, also when the body
    raises. ``model.train(flag)`` would set every submodule to one mode, losing a
    BatchNorm or Dropout a user put in the other mode on purpose; so each module's
    ``training`` attribute is recorded and written back as it was."""
    modes = [(m, m.training) for m in model.modules()]
    try:
        yield
    finally:
        for m, mode in modes:
            m.training = mode


class Saved:
    """The model's parameters, buffers, gradients, flags and modes, to put back."""

    def __init__(self, model: nn.Module) -> None:
        self.params = [(p, p.detach().clone(), None if p.grad is None else p.grad.clone(),
                        p.requires_grad) for p in model.parameters()]
        self.buffers = [(b, b.detach().clone()) for b in model.buffers()]
        self.modes = [(m, m.training) for m in model.modules()]

    def restore(self) -> None:
        with torch.no_grad():
            for p, value, grad, flag in self.params:
                p.copy_(value)
                p.grad = grad
                p.requires_grad_(flag)
            for b, value in self.buffers:
                b.copy_(value)
        for m, mode in self.modes:
            m.training = mode

