"""Theory against measurement for a Keras model: :func:`compare`."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..compare import Comparison
from ..compare import compare as _compare
from .init import to_numpy
from .trace import trace

__all__ = ["compare", "DEFAULT_BATCH"]

#: The batch the measurement draws when none is given: enough rows for each variance
#: estimate, whatever the size of the example input.
DEFAULT_BATCH = 256


def compare(model: Any, example_input: Any, *, seeds: int = 3, batch: "int | None" = None,
            init: Any = None, law: str = "init", n_threads: "int | None" = None
            ) -> Comparison:
    """Trace a Keras model (:func:`varprop.keras.trace`) and compare the mean-field
    theory with a measurement of the traced network (:func:`varprop.compare`).

    The measurement runs varprop's own kernels on the traced network: each seed
    re-draws every weight from the law the trace found (or from ``init``) and draws
    inputs with the example input's mean and variance. It does not run the Keras model
    itself (``trace(...).forward(x)`` runs the traced network with the model's own
    weights).

    Args:
        model, example_input, init, law: as for :func:`varprop.keras.trace`
            (``example_input`` is required here: its moments are the inputs').
        seeds: independent draws of the measurement (>= 2 for confidence intervals).
        batch: rows of each measured batch (and the batch BatchNorm's theory uses);
            None: :data:`DEFAULT_BATCH`.
        n_threads: threads of the measurement (None: varprop's default).

    Returns:
        A :class:`varprop.Comparison` (``.table()`` prints theory next to measurement).

    Raises:
        TypeError, ValueError: as :func:`varprop.keras.trace`; ``example_input`` None.

    Example:
        >>> import os; os.environ.setdefault("KERAS_BACKEND", "torch")
        'torch'
        >>> import numpy as np, keras, varprop.keras
        >>> model = keras.Sequential([keras.Input((64,)),
        ...     keras.layers.Dense(64, activation="tanh"), keras.layers.Dense(64)])
        >>> x = np.random.default_rng(0).standard_normal((16, 64))
        >>> cmp = varprop.keras.compare(model, x, seeds=3)
        >>> len(cmp.analytic), cmp.agree
        (2, True)
    """
    if example_input is None:
        raise ValueError("compare: example_input is required (its mean and variance are "
                         "the measured inputs')")
    result = trace(model, example_input, init=init, law=law)
    x = to_numpy(example_input).astype(np.float64)
    var = float(x.var())
    return _compare(result.network, batch=DEFAULT_BATCH if batch is None else batch,
                    seeds=seeds, input_mean=float(x.mean()), input_var=var if var > 0 else 1.0,
                    n_threads=n_threads)
