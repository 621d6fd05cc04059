"""Weight initializers of PyTorch, Keras 3 and JAX, each stating its analytic moments.

Every scheme is an :class:`Initializer` object::

    init = get("he_normal")                      # or HeNormal(), he_normal(), get("HeNormal")
    w = init((512, 256), seed=0)                 # ndarray (n_in, n_out), float32
    init.moments((512, 256))                     # WeightMoments(mean=0.0, var=2/512, ...)
    get(init.get_config()) == init               # config round trip

Conventions (varprop's, see docs/theory.md, section 1):

* Dense weights are ``(n_in, n_out)`` (``z = x @ W + b``), the Keras layout
  ``(..., in, out)``; PyTorch's is ``(out, in, ...)``; JAX uses explicit axes. Every
  scheme takes ``layout=`` and the other fan options of :func:`compute_fans` at
  construction, default ``"keras"`` for every name. Nothing guesses a layout.
* ``seed`` is None, an int, a SeedSequence or a Generator, normalized by
  :func:`numpy.random.default_rng` (a Generator is used as is). No global state;
  the same int seed gives the same array on every machine and thread count (for
  orthogonal and delta_orthogonal, whose QR runs in LAPACK, up to rounding).

The schemes (``n`` = the fan of the mode; all means 0 unless stated):

=====================  ==========================  =====================================  ==================
name                   distribution                Var[W]                                 also reached by
=====================  ==========================  =====================================  ==================
zeros, ones,           constant c                  0 (mean c; ``symmetric=True``)         Keras, JAX,
constant(value)                                                                           torch ``*_``
random_normal          N(mean, stddev^2)           stddev^2 (mean ``mean``)               Keras RandomNormal
random_uniform         U[minval, maxval)           (hi - lo)^2 / 12, mean (lo + hi) / 2   Keras RandomUniform
truncated_normal       N cut at lower/upper std    stddev^2 * 0.7737 at +-2               Keras, JAX
trunc_normal           N cut at absolute a, b      exact truncated variance               torch trunc_normal_
variance_scaling       trunc. normal/normal/unif.  scale / n                              Keras, JAX
glorot_normal          truncated normal            2 / (fan_in + fan_out)                 Keras, JAX
glorot_uniform         uniform                     2 / (fan_in + fan_out)                 Keras, JAX
xavier_normal(gain)    normal                      gain^2 * 2 / (fan_in + fan_out)        torch xavier_normal_
xavier_uniform(gain)   uniform                     gain^2 * 2 / (fan_in + fan_out)        torch xavier_uniform_
he_normal              truncated normal            2 / fan_in                             Keras, JAX
he_uniform             uniform                     2 / fan_in                             Keras, JAX
kaiming_normal         normal                      gain(nonlinearity, a)^2 / fan_mode     torch kaiming_normal_
kaiming_uniform        uniform                     gain(nonlinearity, a)^2 / fan_mode     torch kaiming_uniform_
lecun_normal           truncated normal            1 / fan_in                             Keras, JAX
lecun_uniform          uniform                     1 / fan_in                             Keras, JAX
orthogonal(gain)       Haar (semi-)orthogonal      E[W^2] = gain^2 / max(rows, cols)      Keras, JAX, torch
identity(gain)         gain * eye                  of the entries (exact)                 Keras, torch eye_
dirac(groups)          delta kernel                of the entries (exact)                 torch dirac_
delta_orthogonal       orthogonal at the centre    gain^2 / (K * out)                     JAX
sparse(sparsity, std)  N(0, std^2), zeros per unit (1 - ceil(s n_out) / n_out) std^2      torch sparse_
torch_default          uniform, bound 1/sqrt(n)    1 / (3 fan_in)                         torch nn.Linear/Conv
torch_default_bias     U(+-1/sqrt(fan_in))         1 / (3 fan_in)                         torch bias default
=====================  ==========================  =====================================  ==================

Where the ecosystems disagree, each keeps its semantics under its own names:
Keras/JAX ``glorot_normal``, ``he_normal``, ``lecun_normal`` draw the truncated
normal; PyTorch's ``xavier_normal``, ``kaiming_normal`` the plain normal (JAX's
``xavier_*``/``kaiming_*`` aliases of its truncated schemes are therefore *not*
followed). ``"normal"`` and ``"uniform"`` mean three different things in the three
libraries and are refused with an explanation. Fans count grouped, depthwise and
transposed convolutions correctly, unlike PyTorch and Keras (see
:func:`compute_fans`).
"""

from __future__ import annotations

from ._core import (
    STRUCTURES,
    TRUNCATED_NORMAL_STD_FACTOR,
    SeedLike,
    ShapeLike,
    WeightMoments,
    as_generator,
    truncated_normal_moments,
)
from .base import Initializer
from .fans import FAN_OPTION_NAMES, LAYOUTS, FanOptions, compute_fans
from .gains import PARAMETRIC_GAINS, TORCH_GAINS, VARPROP_GAINS, calculate_gain, gain_names
from .registry import (ALIASES, REGISTRY, available_initializers, get, initializer_argument,
                       recommended_initializer, resolve_name)
from .scaling import (
    DISTRIBUTIONS,
    MODES,
    GlorotNormal,
    GlorotUniform,
    HeNormal,
    HeUniform,
    KaimingNormal,
    KaimingUniform,
    LecunNormal,
    LecunUniform,
    TorchDefault,
    VarianceScaling,
    XavierNormal,
    XavierUniform,
)
from .simple import (
    Constant,
    Ones,
    RandomNormal,
    RandomUniform,
    TorchDefaultBias,
    TruncatedNormal,
    TruncNormal,
    Zeros,
)
from .structured import DeltaOrthogonal, Dirac, Identity, Orthogonal, Sparse, haar_orthonormal

# snake_case names, as Keras's aliases and JAX's builders: each *is* its class, so
# ``he_normal(layout="torch")`` builds a HeNormal.
zeros = Zeros
ones = Ones
constant = Constant
random_normal = RandomNormal
random_uniform = RandomUniform
truncated_normal = TruncatedNormal
trunc_normal = TruncNormal
variance_scaling = VarianceScaling
glorot_normal = GlorotNormal
glorot_uniform = GlorotUniform
xavier_normal = XavierNormal
xavier_uniform = XavierUniform
he_normal = HeNormal
he_uniform = HeUniform
kaiming_normal = KaimingNormal
kaiming_uniform = KaimingUniform
lecun_normal = LecunNormal
lecun_uniform = LecunUniform
orthogonal = Orthogonal
identity = Identity
eye = Identity
dirac = Dirac
delta_orthogonal = DeltaOrthogonal
sparse = Sparse
torch_default = TorchDefault
torch_default_bias = TorchDefaultBias

_LAZY = {"lsuv": "lsuv", "fixup_scaling": "lsuv", "apply_fixup": "lsuv"}


def __getattr__(name: str) -> object:
    """Data-driven schemes of :mod:`varprop.lsuv` (LSUV, Fixup), imported on first use:
    they run the compiled kernels, which the initializers themselves do not need."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"varprop.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    # core API
    "Initializer",
    "WeightMoments",
    "get",
    "available_initializers",
    "resolve_name",
    "recommended_initializer",
    "compute_fans",
    "calculate_gain",
    "gain_names",
    "FanOptions",
    "as_generator",
    "truncated_normal_moments",
    "haar_orthonormal",
    # constants and tables
    "TRUNCATED_NORMAL_STD_FACTOR",
    "STRUCTURES",
    "LAYOUTS",
    "MODES",
    "DISTRIBUTIONS",
    "FAN_OPTION_NAMES",
    "TORCH_GAINS",
    "PARAMETRIC_GAINS",
    "VARPROP_GAINS",
    "REGISTRY",
    "ALIASES",
    "SeedLike",
    "ShapeLike",
    # classes
    "Zeros",
    "Ones",
    "Constant",
    "RandomNormal",
    "RandomUniform",
    "TruncatedNormal",
    "TruncNormal",
    "VarianceScaling",
    "GlorotNormal",
    "GlorotUniform",
    "XavierNormal",
    "XavierUniform",
    "HeNormal",
    "HeUniform",
    "KaimingNormal",
    "KaimingUniform",
    "LecunNormal",
    "LecunUniform",
    "Orthogonal",
    "Identity",
    "Dirac",
    "DeltaOrthogonal",
    "Sparse",
    "TorchDefault",
    "TorchDefaultBias",
    # snake_case names
    "zeros",
    "ones",
    "constant",
    "random_normal",
    "random_uniform",
    "truncated_normal",
    "trunc_normal",
    "variance_scaling",
    "glorot_normal",
    "glorot_uniform",
    "xavier_normal",
    "xavier_uniform",
    "he_normal",
    "he_uniform",
    "kaiming_normal",
    "kaiming_uniform",
    "lecun_normal",
    "lecun_uniform",
    "orthogonal",
    "identity",
    "eye",
    "dirac",
    "delta_orthogonal",
    "sparse",
    "torch_default",
    "torch_default_bias",
]
