"""Theory against measurement for a Keras model: :func:`compare`."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ..adapters.compare import DEFAULT_BATCH, MEASURES, traced, with_measured
from ..analytic import analyze
from ..compare import Comparison
from ..compare import compare as _compare
from ._measured import recurrent_beside
from .init import to_numpy
from .profile import profile_traced
from .trace import trace

__all__ = ["compare", "DEFAULT_BATCH", "MEASURES"]



def compare(model: Any, example_input: Any, *, seeds: "int | Sequence[int]" = 3,
            batch: "int | None" = None, init: Any = None, law: str = "init",
            measure: str = "model", n_threads: "int | None" = None, progress: Any = None
            ) -> Comparison:
    """Trace a Keras model (:func:`varprop.keras.trace`) and compare the mean-field
    theory of the traced network with a measurement (:func:`varprop.compare`).

    ``measure="model"`` (the default) measures the Keras model itself with
    :func:`varprop.keras.profile`: its own layers run on standard-normal inputs, each
    seed re-drawing its kernels from the law the trace found (or from ``init``),
    Dropout off and BatchNormalization in training mode; the theory then takes
    standard-normal inputs too, and the ``batch`` measured. It needs Keras's torch
    backend.

    ``measure="traced"`` measures the traced network on varprop's kernels instead
    (:func:`varprop.measure`), with inputs of the example's mean and variance, on any
    backend: each seed re-draws every weight from the law the trace found.

    Args:
        model, example_input, init, law: as for :func:`varprop.keras.trace`
            (``example_input`` is required here).
        seeds: independent draws of the measurement (>= 2 for confidence intervals): a
            count or a sequence of distinct seeds.
        batch: rows of each measured batch (and the batch BatchNorm's theory uses);
            None: the example's own batch with ``measure="model"``,
            :data:`DEFAULT_BATCH` with ``measure="traced"``.
        measure: "model" or "traced" (above).
        n_threads: threads of the ``measure="traced"`` measurement (None: varprop's
            default).
        progress: as for :func:`varprop.keras.profile` / :func:`varprop.measure`.

    Returns:
        A :class:`varprop.Comparison` (``.table()`` prints theory next to measurement;
        ``.disagrees`` is the log-space test of docs/comparison.md).

    Raises:
        ValueError: an unknown ``measure``; ``example_input`` None; ``measure="traced"``
            with measured-only layers (a recurrent layer); and as
            :func:`varprop.keras.trace` and :func:`varprop.keras.profile`.
        NotImplementedError: ``measure="model"`` on a backend other than torch.

    Example:
        >>> import os; os.environ.setdefault("KERAS_BACKEND", "torch")
        'torch'
        >>> import numpy as np, keras, varprop.keras
        >>> model = keras.Sequential([keras.Input((64,)),
        ...     keras.layers.Dense(64, activation="tanh"), keras.layers.Dense(64)])
        >>> x = np.random.default_rng(0).standard_normal((128, 64))
        >>> cmp = varprop.keras.compare(model, x, seeds=3)
        >>> len(cmp.analytic), cmp.agree
        (2, True)
    """
    if measure not in MEASURES:
        raise ValueError(f"compare: measure must be one of {MEASURES}, got {measure!r}")
    if example_input is None:
        raise ValueError("compare: example_input is required (it fixes the measured "
                         "inputs' shape, and with measure='traced' their mean and variance)")
    result = trace(model, example_input, init=init, law=law)
    if measure == "traced" and result.measured:
        raise ValueError("compare: measure='traced' runs the traced network on varprop's "
                         "kernels, which have no array code for its measured-only layers ("
                         + "; ".join(m.name for m in result.measured) + "): use "
                         "measure='model'")
    if measure == "traced":
        return traced(result.network, to_numpy(example_input), seeds=seeds, batch=batch,
                      n_threads=n_threads, progress=progress)
    shape = tuple(int(d) for d in getattr(example_input, "shape", np.shape(example_input)))
    empirical = profile_traced(model, result, shape, seeds=seeds, init=init, batch=batch,
                               progress=progress)
    rows = empirical.meta["batch"]
    if result.measured:  # the theory re-anchored on this very measurement (docs/keras.md)
        result = result.anchor(empirical)
    # BatchNorm's gradient depends on the batch it normalizes over (docs/theory.md)
    analytic = analyze(result.network, input_mean=0.0, input_var=1.0, batch=rows)
    cmp = _compare(result.network, batch=rows, analytic=analytic, empirical=empirical)
    if result.measured:  # their measured rows, in the table and the JSON
        rows = [{**row, "recurrent_theory": recurrent_beside(m, row["in_var"])}
                for m, row in zip(result.measured, empirical.meta["measured_only"])]
        return with_measured(cmp, rows, result.notes)
    return cmp
