"""Theory against measurement for a PyTorch model: :func:`compare`."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..compare import Comparison
from ..compare import compare as _compare
from .trace import trace

__all__ = ["compare"]

#: The batch the measurement draws when none is given: enough rows for each variance
#: estimate, whatever the size of the example input.
DEFAULT_BATCH = 256


def compare(model: nn.Module, example_input: torch.Tensor, *, seeds: int = 3,
            batch: "int | None" = None, init: Any = None, n_threads: "int | None" = None
            ) -> Comparison:
    """Trace ``model`` (:func:`varprop.torch.trace`) and compare the mean-field theory
    with a measurement of the traced network (:func:`varprop.compare`).

    The measurement runs varprop's own kernels on the traced network: each seed re-draws
    every weight from the law the trace found (or from ``init``), and draws inputs with
    the example input's mean and variance. It does not run the PyTorch model itself;
    measuring the model through forward and backward hooks is planned, not done.

    Args:
        model, example_input, init: as for :func:`varprop.torch.trace`.
        seeds: independent draws of the measurement (>= 2 for confidence intervals).
        batch: rows of each measured batch (and the batch BatchNorm's theory uses);
            None: :data:`DEFAULT_BATCH`.
        n_threads: threads of the measurement (None: varprop's default).

    Returns:
        A :class:`varprop.Comparison` (``.table()`` prints theory next to measurement).

    Example:
        >>> import torch, varprop.torch
        >>> model = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.Tanh(),
        ...                             torch.nn.Linear(64, 64))
        >>> cmp = varprop.torch.compare(model, torch.randn(16, 64), seeds=3)
        >>> len(cmp.analytic), cmp.agree
        (2, True)
    """
    result = trace(model, example_input, init=init)
    x = example_input.detach().double()
    var = float(x.var(unbiased=False))
    return _compare(result.network, batch=DEFAULT_BATCH if batch is None else batch,
                    seeds=seeds, input_mean=float(x.mean()), input_var=var if var > 0 else 1.0,
                    n_threads=n_threads)
