"""The seed experiments, each one function returning a result with ``table()`` and
``plot(path)``:

===========  =====================  ===================================================
name         function               what it shows
===========  =====================  ===================================================
iris         :func:`run_iris`       zero init stays at chance, the others reach ~0.93
digits       :func:`run_digits`     twelve Keras initializers compared on the digits
deep-relu    :func:`run_deep_relu`  He trains a 30-layer ReLU MLP, Xavier stalls; the
                                    step-0 gradient variance per layer, measured and
                                    predicted
symmetry     :func:`run_symmetry`   zero/constant init keeps hidden units identical
cnn          :func:`run_cnn`        the seeds' CNN: zero init stuck at chance, Glorot
                                    and He train; per-layer step-0 variance, per-pixel
                                    theory next to measurement (``data=DIR``: MNIST)
rnn          :func:`run_rnn`        the seeds' RNN: gradient through time at step 0,
                                    theory next to measurement; the adding problem
                                    under IRNN, orthogonal, small random and Glorot
===========  =====================  ===================================================

``EXPERIMENTS`` maps each name to its function and :func:`run_experiment` runs one by
name (what ``varprop experiment NAME`` calls). Every function takes keyword arguments
only, all with defaults, and ``progress=None | True | callable``. Plots need matplotlib
(drawn on the Agg backend); without it ``plot`` raises an ImportError that says so.
"""

from __future__ import annotations

from typing import Any, Callable

from ._common import ExperimentResult, format_table, require_pyplot
from .cnn import CNN_INITIALIZERS, CnnResult, run_cnn
from .deep_relu import (DEEP_RELU_INITIALIZERS, DeepReluResult, backward_variance,
                        finite_width_log_band, run_deep_relu)
from .digits import DIGITS_INITIALIZERS, DigitsResult, run_digits
from .iris import IRIS_INITIALIZERS, IrisResult, run_iris
from .rnn import ADDING_INITS, RNN_PRESET_INITS, RnnResult, adding_problem, run_rnn
from .symmetry import SYMMETRY_INITIALIZERS, SymmetryResult, distinct_units, run_symmetry, unit_spread

__all__ = [
    "EXPERIMENTS",
    "run_experiment",
    "ExperimentResult",
    "run_iris",
    "IrisResult",
    "run_digits",
    "DigitsResult",
    "run_deep_relu",
    "DeepReluResult",
    "run_symmetry",
    "SymmetryResult",
    "backward_variance",
    "finite_width_log_band",
    "unit_spread",
    "distinct_units",
    "format_table",
    "require_pyplot",
    "IRIS_INITIALIZERS",
    "DIGITS_INITIALIZERS",
    "DEEP_RELU_INITIALIZERS",
    "SYMMETRY_INITIALIZERS",
    "run_cnn",
    "CnnResult",
    "CNN_INITIALIZERS",
    "run_rnn",
    "RnnResult",
    "adding_problem",
    "ADDING_INITS",
    "RNN_PRESET_INITS",
]

#: name -> experiment function (the names of ``varprop experiment NAME``).
EXPERIMENTS: dict[str, Callable[..., ExperimentResult]] = {
    "iris": run_iris,
    "digits": run_digits,
    "deep-relu": run_deep_relu,
    "symmetry": run_symmetry,
    "cnn": run_cnn,
    "rnn": run_rnn,
}


def run_experiment(name: str, **kwargs: Any) -> ExperimentResult:
    """Run the experiment ``name`` (``"iris"``, ``"digits"``, ``"deep-relu"``,
    ``"symmetry"``, ``"cnn"``, ``"rnn"``; ``_`` works for ``-``) with keyword arguments for its function."""
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, got {type(name).__name__}")
    key = name.strip().lower().replace("_", "-")
    if key not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}; valid names: {', '.join(EXPERIMENTS)}")
    return EXPERIMENTS[key](**kwargs)
