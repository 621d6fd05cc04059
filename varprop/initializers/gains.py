"""Gains: the factor an initializer multiplies its standard deviation by for a nonlinearity.

PyTorch's :func:`torch.nn.init.calculate_gain` table plus values for the other varprop
activations, read from the activation records (varprop/activations.py). A gain ``g``
enters a variance-scaling scheme as ``Var[W] = g^2 / fan``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import NamedTuple, Optional

from ..activations import ACTIVATION_NAMES, Activation
from .._validate import close_matches, finite_real

__all__ = ["TORCH_GAINS", "PARAMETRIC_GAINS", "VARPROP_GAINS", "GAIN_ALIASES", "calculate_gain", "gain_names"]

# Every activation's gain is a fact of its record (varprop/activations.py, ``gain``); these
# tables are views of the records, plus the layer names PyTorch gives gain 1.
_RECORDS = tuple(Activation(name) for name in ACTIVATION_NAMES)

TORCH_GAINS: Mapping[str, float] = MappingProxyType(
    {
        **{a.name: a.gain for a in _RECORDS if a.torch_gain and a.gain_rule is None},
        **{f"conv{k}": 1.0 for k in ("1d", "2d", "3d", "_transpose1d", "_transpose2d",
                                     "_transpose3d")},
    }
)
"""PyTorch's fixed gains, exactly as ``torch.nn.init.calculate_gain`` returns them."""


class ParametricGain(NamedTuple):
    """A gain that depends on one activation parameter."""

    param: str
    """Name of the activation parameter (as varprop's activations call it)."""
    default: float
    """Its value when ``param=None``."""
    formula: Callable[[float], float]
    """The gain as a function of the parameter."""


PARAMETRIC_GAINS: Mapping[str, ParametricGain] = MappingProxyType(
    {a.name: ParametricGain(*a.gain_rule) for a in _RECORDS if a.gain_rule is not None}
)
"""Gains with a parameter (``param`` of :func:`calculate_gain`): leaky_relu's is
PyTorch's, ``sqrt(2 / (1 + negative_slope^2))`` with slope 0.01 by default; elu's is
varprop's unit-variance fixed-point gain (see :data:`VARPROP_GAINS`),
``1 / sqrt(E[elu_alpha(z)^2])`` in closed form (docs/theory.md section 5 at q = 1)."""

VARPROP_GAINS: Mapping[str, float] = MappingProxyType(
    {a.name: a.gain for a in _RECORDS if not a.torch_gain and a.gain_rule is None}
)
"""varprop's gains for activations PyTorch has no entry for.

Each is ``1 / sqrt(E[phi(z)^2])`` for z ~ N(0, 1): the gain for which a layer fed
by unit-second-moment pre-activations passes unit second moment on
(``q = g^2 E[phi(sqrt(q) z)^2] = 1`` at ``q = 1``, docs/theory.md section 2). This is
exactly PyTorch's rule for relu (sqrt 2), leaky_relu and linear (1); PyTorch's
tanh (5/3), sigmoid (1) and selu (3/4) are kept as PyTorch has them, although the
same rule gives 1.5925, 1.8462 and 1. The values were computed with mpmath
quadrature at 40 digits (gelu also has a closed form:
``E[gelu(z)^2] = 1/4 + 1/(2 pi sqrt 3) + 1/12``); the tests recompute them.
"""

GAIN_ALIASES: Mapping[str, str] = MappingProxyType({"swish": "silu"})
"""Other names accepted by :func:`calculate_gain`."""


def gain_names() -> tuple[str, ...]:
    """Every name :func:`calculate_gain` accepts, sorted (aliases included)."""
    return tuple(sorted({*TORCH_GAINS, *PARAMETRIC_GAINS, *VARPROP_GAINS, *GAIN_ALIASES}))


def calculate_gain(nonlinearity: str, param: Optional[float] = None) -> float:
    """Recommended gain for a nonlinearity (PyTorch's ``calculate_gain`` and more).

    ======================  ==========================================
    nonlinearity            gain
    ======================  ==========================================
    linear, conv*, sigmoid  1
    tanh                    5/3
    relu                    sqrt(2)
    leaky_relu              sqrt(2 / (1 + negative_slope^2)), slope 0.01
    selu                    3/4
    elu (varprop)           1 / sqrt(E[elu_alpha(z)^2]), alpha 1: 1.2452
    gelu, gelu_tanh,        1 / sqrt(E[phi(z)^2]) (see :data:`VARPROP_GAINS`)
    silu (swish), softplus,
    softsign (varprop)
    ======================  ==========================================

    The PyTorch rows are :data:`TORCH_GAINS` and :data:`PARAMETRIC_GAINS` verbatim
    (reference: He et al. 2015, arXiv 1502.01852, for relu and leaky_relu). As in
    PyTorch, ``param`` is used only by parametric nonlinearities (leaky_relu's
    negative slope, elu's alpha) and ignored by the others, so
    ``kaiming_normal(a=..., nonlinearity="relu")`` behaves as in PyTorch.

    Args:
        nonlinearity: a name above (case-insensitive).
        param: the parameter of leaky_relu or elu; None takes the default.

    Returns:
        The gain, a positive float.

    Raises:
        ValueError: unknown nonlinearity (lists close matches and every valid
            name) or a non-finite ``param``.
        TypeError: ``param`` not a real number.

    Example:
        >>> calculate_gain("leaky_relu", 0.2)
        1.3867504905630728
    """
    if not isinstance(nonlinearity, str):
        raise TypeError(f"nonlinearity must be a string such as 'relu'; got {nonlinearity!r}")
    key = nonlinearity.strip().lower()
    key = GAIN_ALIASES.get(key, key)
    if key in TORCH_GAINS:
        return TORCH_GAINS[key]
    if key in VARPROP_GAINS:
        return VARPROP_GAINS[key]
    if key in PARAMETRIC_GAINS:
        entry = PARAMETRIC_GAINS[key]
        value = entry.default if param is None else finite_real("param", param, owner=f"calculate_gain({key!r})")
        return entry.formula(value)
    names = gain_names()
    close = close_matches(key, names)
    hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
    raise ValueError(f"unknown nonlinearity {nonlinearity!r}{hint}; valid names: {', '.join(names)}")
