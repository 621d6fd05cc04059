"""varprop: see and predict how signal and gradient variance travel through deep networks.

Entry points:
    * kernels: :func:`dense_forward`, :func:`dense_backward` (C + OpenMP, numpy twins in
      ``varprop._reference``), :func:`activation_apply`;
    * activations: :mod:`varprop.activations` (``get_activation``, ``ACTIVATION_NAMES``);
    * initializers: :mod:`varprop.initializers` (every PyTorch / Keras / JAX scheme with
      its analytic moments; ``lsuv`` and Fixup);
    * networks: :func:`mlp`, :class:`Network` and the layers of :mod:`varprop.network`;
      recurrent networks: :class:`SimpleRNN`, :func:`analyze_rnn`, :func:`measure_rnn`,
      :func:`compare_rnn` (:mod:`varprop.recurrent`);
    * the analyzer: :func:`analyze` (mean field), :func:`measure` (empirical),
      :func:`compare` (with the log-space test of :mod:`varprop.agreement`) and
      :func:`verdict`; mean-field tools from :mod:`varprop.theory`;
    * training and the seed experiments: :mod:`varprop.train`, :mod:`varprop.experiments`;
    * the ``varprop`` command: :mod:`varprop.cli`.
"""

from . import activations, initializers, theory
from .kernels import built_with_openmp  # imports the compiled extension lazily
from ._results import DenseForward, DenseGradients, LayerStats
from ._threads import get_num_threads, set_num_threads
from .activations import ACTIVATION_NAMES, Activation, get_activation
from .analytic import analyze
from .compare import Comparison, Verdict, compare, verdict
from .empirical import measure
from .initializers import (
    TRUNCATED_NORMAL_STD_FACTOR,
    Initializer,
    WeightMoments,
    available_initializers,
    calculate_gain,
    compute_fans,
    constant,
    delta_orthogonal,
    dirac,
    eye,
    sparse,
    torch_default,
    torch_default_bias,
    trunc_normal,
    glorot_normal,
    glorot_uniform,
    he_normal,
    he_uniform,
    identity,
    kaiming_normal,
    kaiming_uniform,
    lecun_normal,
    lecun_uniform,
    ones,
    orthogonal,
    random_normal,
    random_uniform,
    recommended_initializer,
    truncated_normal,
    variance_scaling,
    xavier_normal,
    xavier_uniform,
    zeros,
)
from .initializers import get as get_initializer
from .kernels import activation_apply, dense_backward, dense_forward
from .network import Act, BatchNorm, Dense, LayerNorm, Network, Residual, mlp
from .layers import AvgPool, Conv, Flatten, GlobalAvgPool, GroupNorm, MaxPool, Recurrent
from .network_cnn import CNN_PRESETS, cnn, cnn_preset
from .profile import LayerRecord, Profile
from .recurrent import SimpleRNN, analyze_rnn, compare_rnn, measure_rnn, rnn_preset
from .theory import (
    c_map,
    chi1,
    depth_scales,
    edge_of_chaos,
    fixed_point,
    gaussian_cross_moments,
    gaussian_moments,
    jacobian_msv,
    q_map,
)

__version__ = "0.1.0"

__all__ = [
    "SimpleRNN", "analyze_rnn", "compare_rnn", "measure_rnn", "rnn_preset",
    "TRUNCATED_NORMAL_STD_FACTOR", "available_initializers", "delta_orthogonal", "dirac",
    "eye", "sparse", "torch_default", "torch_default_bias", "trunc_normal",
    "ACTIVATION_NAMES", "Act", "Activation", "BatchNorm", "Comparison", "Dense",
    "DenseForward", "DenseGradients", "Initializer", "LayerNorm", "LayerRecord",
    "LayerStats", "Network", "Profile", "Residual", "Verdict", "WeightMoments",
    "activation_apply", "activations", "analyze", "built_with_openmp", "c_map",
    "calculate_gain", "chi1", "compare", "compute_fans", "constant", "dense_backward",
    "dense_forward", "depth_scales", "edge_of_chaos", "fixed_point",
    "gaussian_cross_moments", "gaussian_moments", "get_activation", "get_initializer",
    "get_num_threads", "glorot_normal", "glorot_uniform", "he_normal", "he_uniform",
    "identity", "initializers", "jacobian_msv", "kaiming_normal", "kaiming_uniform",
    "lecun_normal", "lecun_uniform", "measure", "mlp", "ones", "orthogonal", "q_map",
    "random_normal", "random_uniform", "recommended_initializer", "set_num_threads",
    "theory", "truncated_normal", "variance_scaling", "verdict", "xavier_normal",
    "xavier_uniform", "zeros",
    "Conv", "MaxPool", "AvgPool", "GlobalAvgPool", "Flatten", "GroupNorm", "cnn",
    "cnn_preset", "CNN_PRESETS", "Recurrent",
]
