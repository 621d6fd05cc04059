"""What :func:`varprop.torch.trace` returns: :class:`TraceResult` (the network, the laws
read off the model, the measured-only ops, and the model's own parameters run on
varprop's kernels), and :class:`UnsupportedOpError`."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from .. import layers as vl
from ..adapters.run import OwnRun, TraceFields

__all__ = ["TraceResult", "UnsupportedOpError"]


class UnsupportedOpError(ValueError):
    """The model's graph cannot be read as one chain at all (several inputs or outputs);
    ``unsupported`` names why (a ``ValueError``). Ops varprop has no theory for are kept
    as measured-only instead (:attr:`TraceResult.measured`)."""

    def __init__(self, unsupported: list[str]) -> None:
        self.unsupported = list(unsupported)
        super().__init__("trace: the model is not one chain varprop can follow: "
                         + "; ".join(self.unsupported)
                         + ". varprop follows one input to one output tensor; an op it has "
                           "no theory for is kept as measured-only (docs/torch.md)")


@dataclass
class TraceResult(TraceFields):
    """What :func:`trace` found.

    Attributes:
        network: the varprop :class:`~varprop.network.Network` (``layout="torch"`` for
            channels-first image inputs): ``varprop.analyze(result.network)``.
        covered: the fraction of the model's parameters (by count) whose role the theory
            reads: Linear/Conv weights and biases, and normalization affines at their
            identity initialization; an affine that is not the identity, or a parameter
            the forward never reads, is not covered (``notes`` says which).
        unsupported: the measured-only ops, each named with why theory does not cover
            it (``str`` of each of ``measured``).
        measured: the measured-only ops (:class:`~varprop.torch._measured.MeasuredOp`),
            in forward order: each is a :class:`~varprop.layers.measured.Measured` layer
            of ``network``, re-anchored on measurement (docs/torch.md).
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

    #: the model reads sequences (batch, T, features): tokens are rows to the theory
    sequence: bool = False
    #: the vocabulary of token-index inputs (one-hot width to the theory); 0: floats
    tokens: int = 0

    @property
    def input_moments(self) -> tuple[float, float]:
        """(mean, variance) of one input unit as ``profile`` draws them: standard normal,
        or one-hot tokens drawn uniformly from the vocabulary ``V`` (mean ``1/V``,
        variance ``1/V - 1/V^2``)."""
        if self.tokens:
            return 1.0 / self.tokens, 1.0 / self.tokens - 1.0 / self.tokens ** 2
        return 0.0, 1.0

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
                if isinstance(module, nn.Embedding):
                    pass  # (V, D): the one-hot Dense's (n_in, n_out) already
                elif isinstance(layer, vl.Conv):
                    w = np.moveaxis(w, (0, 1), (-1, -2))  # (out, in, *k) -> (*k, in, out)
                elif pending is not None:  # rows of a (C, *spatial) flattening, C-order
                    c, rest = pending[0], math.prod(pending[1:])
                    w = w.reshape(w.shape[0], c, rest).transpose(2, 1, 0).reshape(-1, w.shape[0])
                else:
                    w = w.T
                pending = None
                bias = getattr(module, "bias", None)
                b = None if bias is None else bias.detach().cpu().double().numpy()
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
        if self.tokens:  # token indices: one-hot rows of the embedding's Dense
            arr = np.eye(self.tokens, dtype=dt)[arr]
        arr = arr.astype(dt)
        lead = arr.shape[:-1]
        if self.sequence:  # tokens are rows
            arr = arr.reshape(-1, arr.shape[-1])
        if self.network.spatial:
            arr = np.moveaxis(arr, 1, -1)
        run = OwnRun(self.weights(dt), dt)
        h = np.ascontiguousarray(arr)
        for step in self.network.steps:
            h, _, _ = step.layer.forward(step, run, h, None, False, False)
        if self.sequence:
            return h.reshape(*lead, h.shape[-1])
        return np.moveaxis(h, -1, 1) if h.ndim > 2 else h

