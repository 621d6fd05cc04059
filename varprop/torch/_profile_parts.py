"""Parts of :func:`varprop.torch.profile`: the statistics it reads at each hook, what it
puts back on the model afterwards (:class:`Saved`), and its progress line."""

from __future__ import annotations

import sys
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from .._empirical_run import FIELDS

__all__ = ["Saved", "reporter", "forward_stats", "grad_stats"]

_ROW = {name: i for i, name in enumerate(FIELDS)}


# ----------------------------------------------------------------------------- statistics
def _pooled(t: torch.Tensor) -> tuple[float, float]:
    t = t.double()
    return float(t.mean()), float(t.var(unbiased=False))


def forward_stats(col: np.ndarray, z: torch.Tensor, a: torch.Tensor, maps: dict,
                   i: int) -> None:
    col[_ROW["z_mean"]], col[_ROW["z_var"]] = _pooled(z)
    col[_ROW["a_mean"]], col[_ROW["a_var"]] = _pooled(a)
    per_unit = z.double().transpose(0, 1).reshape(z.shape[1], -1)  # units x (batch, pixels)
    col[_ROW["channel_sq_mean"]] = float((per_unit.mean(1) ** 2).mean())
    col[_ROW["channel_var"]] = float(per_unit.var(1, unbiased=False).mean())
    if z.dim() > 2:  # per-pixel maps, pooled over the batch and the channels
        maps.setdefault(i, {}).update(
            z_var=z.double().var((0, 1), unbiased=False).cpu().numpy(),
            a_var=a.double().var((0, 1), unbiased=False).cpu().numpy())


def grad_stats(col: np.ndarray, g: torch.Tensor, maps: dict, i: int, tick: Any) -> None:
    gd = g.detach()
    col[_ROW["grad_var"]] = _pooled(gd)[1]
    if gd.dim() > 2:
        maps.setdefault(i, {})["grad_var"] = gd.double().var((0, 1), unbiased=False).cpu().numpy()
    if tick is not None:
        tick(1)



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


def reporter(progress: Any, total: int) -> "Callable[[int | None], None] | None":
    """``tick(k)`` after k steps (``tick(None)`` at the end), or None for no progress."""
    if progress is None or progress is False:
        return None
    if progress is True:
        try:
            if not sys.stderr.isatty():
                return None
        except (AttributeError, ValueError):
            return None
        callback = None
    elif callable(progress):
        callback = progress
    else:
        raise TypeError(f"profile: progress must be None, True/False or a callable(done, "
                        f"total), got {type(progress).__name__}")
    done = [0]

    def tick(k: "int | None") -> None:
        if k is None:
            if callback is None:
                sys.stderr.write("\n")
            return
        done[0] += k
        if callback is not None:
            callback(done[0], total)
        else:
            sys.stderr.write(f"\rvarprop.torch.profile: {done[0]}/{total} layer steps")
            sys.stderr.flush()

    return tick
