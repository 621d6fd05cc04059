"""Recurrent networks: time as depth (docs/recurrent.md).

:class:`SimpleRNN` is the spec of an Elman layer ``h_t = phi(x_t W_x + h_{t-1} W_h + b)``
(:func:`rnn_preset` builds the seeds' network); :func:`analyze_rnn` gives its per-step
mean-field statistics (for identity recurrence, the exact one-unit law),
:func:`measure_rnn` the measured ones on the recurrent kernels, and :func:`compare_rnn`
lines them up step by step with the log-space test. The Jacobian's singular-value spread
through time: :func:`predict_jacobian_spread`, :func:`measure_jacobian_spread`.
"""

from .compare import compare_rnn
from .isometry import JacobianSpread, measure_jacobian_spread, predict_jacobian_spread
from .measure import measure_rnn
from .spec import INPUT_KINDS, LOSSES, RNN_PRESETS, SimpleRNN, rnn_preset
from .theory import analyze_rnn

__all__ = ["SimpleRNN", "rnn_preset", "RNN_PRESETS", "INPUT_KINDS", "LOSSES", "analyze_rnn",
           "measure_rnn", "compare_rnn", "JacobianSpread", "predict_jacobian_spread",
           "measure_jacobian_spread"]
