"""The small trainer behind the seed experiments (public face: :mod:`varprop.train`).

MLPs drawn from the analyzer's network spec (:meth:`MLP.from_network` of a
:func:`varprop.mlp`; :func:`classifier` with Keras's defaults) whose forward and
backward passes run on the fused kernels, the stable softmax
cross-entropy, SGD / momentum / Adam with Keras's defaults, a seeded mini-batch loop
with validation and a per-epoch history of loss, accuracy and per-layer gradient
variance. See :mod:`varprop.training.model`, :mod:`varprop.training.optimizers` and
:mod:`varprop.training.fit`.
"""

from .fit import (Evaluation, GradientVariances, History, evaluate, fit, gradient_variances,
                  predict, predict_proba)
from .model import MLP, ForwardCache, classifier, log_softmax, softmax_cross_entropy
from .optimizers import OPTIMIZER_NAMES, SGD, Adam, Momentum, Optimizer, get_optimizer
from .resmlp import ResidualCache, ResidualMLP

__all__ = [
    "MLP",
    "ResidualMLP",
    "ResidualCache",
    "classifier",
    "ForwardCache",
    "softmax_cross_entropy",
    "log_softmax",
    "Optimizer",
    "SGD",
    "Momentum",
    "Adam",
    "get_optimizer",
    "OPTIMIZER_NAMES",
    "History",
    "fit",
    "evaluate",
    "predict",
    "predict_proba",
    "Evaluation",
    "GradientVariances",
    "gradient_variances",
]
