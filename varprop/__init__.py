"""varprop: see and predict how signal and gradient variance travel through deep networks.

The main entry points:
    * :func:`dense_forward`, :func:`dense_backward`: fused dense-layer kernels (C + OpenMP).
    * :mod:`varprop.activations`: the activation registry.
"""

from ._kernels import built_with_openmp
from ._results import DenseForward, DenseGradients, LayerStats
from ._threads import get_num_threads, set_num_threads
from .activations import ACTIVATION_NAMES, Activation, get_activation
from .kernels import activation_apply, dense_backward, dense_forward

__version__ = "0.1.0"

__all__ = [
    "ACTIVATION_NAMES",
    "Activation",
    "DenseForward",
    "DenseGradients",
    "LayerStats",
    "activation_apply",
    "built_with_openmp",
    "dense_backward",
    "dense_forward",
    "get_activation",
    "get_num_threads",
    "set_num_threads",
]
