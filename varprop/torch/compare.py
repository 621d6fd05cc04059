"""Theory against measurement for a PyTorch model: :func:`compare`."""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from ..adapters.compare import (ANCHORING, DEFAULT_BATCH, MEASURES, MeasuredComparison,
                                traced, with_measured)
from ..analytic import analyze
from ..compare import Comparison
from ..compare import compare as _compare
from .profile import keep_modes, profile_traced
from .trace import trace

__all__ = ["compare", "TorchComparison", "DEFAULT_BATCH", "MEASURES", "ANCHORING"]

#: What :func:`compare` returns on ``measure="model"``: a :class:`varprop.Comparison`
#: with the rows of the model's measured-only ops (docs/torch.md).
TorchComparison = MeasuredComparison


def compare(model: nn.Module, example_input: torch.Tensor, *,
            seeds: "int | Sequence[int]" = 3, batch: "int | None" = None, init: Any = None,
            measure: str = "model", n_threads: "int | None" = None, progress: Any = None,
            input_kind: str = "auto") -> Comparison:
    """Trace ``model`` (:func:`varprop.torch.trace`) and compare the mean-field theory
    of the traced network with a measurement (:func:`varprop.compare`).

    ``measure="model"`` (the default) measures the PyTorch model itself with
    :func:`varprop.torch.profile`: forward and tensor hooks on its own forward and
    backward, each seed re-drawing its Linear/Conv weights from the law the trace found
    (or from ``init``), on standard-normal inputs, Dropout off and BatchNorm in training
    mode. The theory then takes standard-normal inputs too, and the ``batch`` measured.

    ``measure="traced"`` measures the traced network on varprop's kernels instead
    (:func:`varprop.measure`), with inputs of the example's mean and variance: the
    behaviour of earlier versions.

    Args:
        model, example_input, init, input_kind: as for :func:`varprop.torch.trace`.
        seeds: independent draws of the measurement (>= 2 for confidence intervals):
            a count or a sequence of distinct seeds.
        batch: rows of each measured batch (and the batch BatchNorm's theory uses);
            None: the example's own batch with ``measure="model"``,
            :data:`DEFAULT_BATCH` with ``measure="traced"``.
        measure: "model" or "traced" (above).
        n_threads: threads of the ``measure="traced"`` measurement (None: varprop's
            default); the model runs on torch's own threads.
        progress: as for :func:`varprop.torch.profile` / :func:`varprop.measure`.

    Returns:
        A :class:`varprop.Comparison` (``.table()`` prints theory next to measurement;
        ``.disagrees`` is the log-space test of docs/comparison.md).

    Raises:
        ValueError: an unknown ``measure``; and as :func:`varprop.torch.trace` and
            :func:`varprop.torch.profile`.

    Example:
        >>> import torch, varprop.torch
        >>> model = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.Tanh(),
        ...                             torch.nn.Linear(64, 64))
        >>> cmp = varprop.torch.compare(model, torch.randn(128, 64), seeds=3)
        >>> len(cmp.analytic), cmp.agree
        (2, True)
    """
    if measure not in MEASURES:
        raise ValueError(f"compare: measure must be one of {MEASURES}, got {measure!r}")
    with keep_modes(model):
        result = trace(model, example_input, init=init, anchor=False, input_kind=input_kind)
    if measure == "traced" and result.measured:
        raise ValueError("compare: measure='traced' runs the traced network on varprop's "
                         "kernels, which have no array code for its measured-only ops ("
                         + "; ".join(op.name for op in result.measured)
                         + "): use measure='model'")
    if measure == "traced":
        return traced(result.network, example_input.detach().double().cpu().numpy(),
                      seeds=seeds, batch=batch, n_threads=n_threads, progress=progress)
    with keep_modes(model):
        empirical = profile_traced(model, result, tuple(example_input.shape), seeds=seeds,
                                   init=init, batch=batch, progress=progress)
    rows = empirical.meta["batch"]
    if result.measured:  # theory re-anchored on this very measurement
        result = result.anchor(empirical)
    in_mean, in_var = result.input_moments
    # BatchNorm's gradient depends on the batch it normalizes over (docs/theory.md)
    analytic = analyze(result.network, input_mean=in_mean, input_var=in_var, batch=rows)
    cmp = _compare(result.network, batch=rows, analytic=analytic, empirical=empirical)
    return with_measured(cmp, empirical.meta.get("measured_only", []), result.notes)
