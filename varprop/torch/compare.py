"""Theory against measurement for a PyTorch model: :func:`compare`."""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from ..analytic import analyze
from ..compare import Comparison
from ..compare import compare as _compare
from .profile import keep_modes, profile_traced
from .trace import trace

__all__ = ["compare", "DEFAULT_BATCH", "MEASURES"]

#: The batch ``measure="traced"`` draws when none is given: enough rows for each
#: variance estimate, whatever the size of the example input.
DEFAULT_BATCH = 256
#: What :func:`compare` can measure.
MEASURES = ("model", "traced")


def compare(model: nn.Module, example_input: torch.Tensor, *,
            seeds: "int | Sequence[int]" = 3, batch: "int | None" = None, init: Any = None,
            measure: str = "model", n_threads: "int | None" = None, progress: Any = None
            ) -> Comparison:
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
        model, example_input, init: as for :func:`varprop.torch.trace`.
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
        result = trace(model, example_input, init=init)
    if measure == "traced":
        x = example_input.detach().double()
        var = float(x.var(unbiased=False))
        return _compare(result.network, batch=DEFAULT_BATCH if batch is None else batch,
                        seeds=seeds, input_mean=float(x.mean()),
                        input_var=var if var > 0 else 1.0, n_threads=n_threads,
                        progress=progress)
    with keep_modes(model):
        empirical = profile_traced(model, result, tuple(example_input.shape), seeds=seeds,
                                   init=init, batch=batch, progress=progress)
    rows = empirical.meta["batch"]
    # BatchNorm's gradient depends on the batch it normalizes over (docs/theory.md)
    analytic = analyze(result.network, input_mean=0.0, input_var=1.0, batch=rows)
    return _compare(result.network, batch=rows, analytic=analytic, empirical=empirical)
