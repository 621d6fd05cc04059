"""Theory and measurement of a recurrent network side by side, step by step."""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from ..agreement import ALPHA
from ..compare import Comparison, compare
from .measure import measure_rnn
from .spec import SimpleRNN
from .theory import analyze_rnn

__all__ = ["compare_rnn"]


def compare_rnn(rnn: SimpleRNN, steps: int, *, batch: int = 256,
                seeds: "int | Sequence[int]" = 5, inputs: str = "gaussian",
                input_var: float = 1.0, input_correlation: float | None = None,
                loss: str = "last", dtype: Any = np.float32, n_threads: int | None = None,
                progress: Callable[[int, int], Any] | None = None,
                alpha: float = ALPHA) -> Comparison:
    """:func:`~varprop.recurrent.analyze_rnn` and :func:`~varprop.recurrent.measure_rnn`
    of ``rnn`` lined up per time step, with the log-space test of
    :func:`varprop.agreement.agreement` (false-alarm rate ``alpha``); the verdicts speak
    per step ("the gradient vanishes: variance x0.8 per step, ...").

    Example:
        >>> from varprop.recurrent import SimpleRNN
        >>> cmp = compare_rnn(SimpleRNN(32, 128, "tanh"), 20, batch=64, seeds=3)
        >>> cmp.analytic_verdict.kind
        'preserves'
    """
    empirical = measure_rnn(rnn, steps, batch=batch, seeds=seeds, inputs=inputs,
                            input_var=input_var, input_correlation=input_correlation,
                            loss=loss, dtype=dtype, n_threads=n_threads, progress=progress)
    # the rare-path check judged against this measurement's own sequences
    analytic = analyze_rnn(rnn, steps, inputs=inputs, input_var=input_var,
                           input_correlation=input_correlation, loss=loss,
                           samples=empirical.meta["batch"] * empirical.meta["n_seeds"])
    return compare(rnn, analytic=analytic, empirical=empirical, alpha=alpha)  # type: ignore[arg-type]
