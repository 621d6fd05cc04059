"""The activation registry: the one place every part of varprop asks about an activation.

Each entry gives the activation's value, first and second derivative as plain numpy
(the reference twin of the C kernels and the integrand of the Gaussian expectations),
the id of its C kernel, its parameters with their defaults, and whether it has a kink
at zero (quadrature splits panels there).

An activation is named by its string, with parameters as keyword arguments, or passed as
an :class:`Activation` object; :func:`get_activation` accepts both::

    >>> act = get_activation("leaky_relu", negative_slope=0.2)
    >>> act(np.array([-1.0, 2.0]))
    array([-0.2,  2. ])
    >>> get_activation(act) is act
    True

The numpy functions are stable for inputs up to +-inf: no NaN unless the input is NaN
and no overflow warnings.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np
from scipy import special

__all__ = [
    "Activation",
    "ACTIVATION_NAMES",
    "SELU_ALPHA",
    "SELU_SCALE",
    "GELU_TANH_COEFF",
    "get_activation",
]

#: SELU constants (Klambauer et al. 2017, arXiv 1706.02515), the fixed point mean 0, var 1.
SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946
#: The cubic coefficient of the tanh approximation of GELU (Hendrycks & Gimpel 2016).
GELU_TANH_COEFF = 0.044715
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_INV_SQRT_2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
# Beyond this |x| the tails of the smooth gates (Phi, tanh, sigmoid) are exactly 0 or 1 in
# float64, so clipping the gate's argument there changes nothing but avoids inf * 0.
_GATE_CLIP = 40.0

Array = np.ndarray


def _as_float_array(x: Any) -> Array:
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float64)
    return x


# ----------------------------------------------------------------------------- formulas
# Each function takes a float ndarray and the activation's parameters; all return arrays
# of the input's dtype.  ``np.errstate`` is not needed: every branch is written so that
# no intermediate overflows or forms inf * 0.


def _linear(x, **_):
    return x.copy()


def _linear_d(x, **_):
    return np.where(np.isnan(x), x, 1.0).astype(x.dtype)


def _zero_d2(x, **_):
    return np.where(np.isnan(x), x, 0.0).astype(x.dtype)


def _leaky(x, negative_slope=0.0, **_):
    if negative_slope == 0.0:  # 0 * -inf would be NaN; relu(-inf) is 0
        return np.maximum(x, np.zeros((), x.dtype))
    return np.where(x > 0, x, negative_slope * x).astype(x.dtype)


def _leaky_d(x, negative_slope=0.0, **_):
    d = np.where(x > 0, 1.0, negative_slope)
    return np.where(np.isnan(x), x, d).astype(x.dtype)


def _elu(x, alpha=1.0, scale=1.0, **_):
    neg = alpha * np.expm1(np.minimum(x, 0))
    return (scale * np.where(x > 0, x, neg)).astype(x.dtype)


def _elu_d(x, alpha=1.0, scale=1.0, **_):
    neg = alpha * np.exp(np.minimum(x, 0))
    d = scale * np.where(x > 0, 1.0, neg)
    return np.where(np.isnan(x), x, d).astype(x.dtype)


def _elu_d2(x, alpha=1.0, scale=1.0, **_):
    neg = alpha * np.exp(np.minimum(x, 0))
    d = scale * np.where(x > 0, 0.0, neg)
    return np.where(np.isnan(x), x, d).astype(x.dtype)


def _norm_cdf(x):
    return 0.5 * special.erfc(-x * _INV_SQRT_2)


def _norm_pdf(x):
    return _INV_SQRT_2PI * np.exp(-0.5 * x * x)


def _gelu(x, **_):
    xc = np.maximum(x, -_GATE_CLIP)
    return np.where(x < -_GATE_CLIP, 0.0, xc * _norm_cdf(xc)).astype(x.dtype)


def _gelu_d(x, **_):
    xc = np.clip(x, -_GATE_CLIP, _GATE_CLIP)
    return (_norm_cdf(xc) + xc * _norm_pdf(xc)).astype(x.dtype)


def _gelu_d2(x, **_):
    xc = np.clip(x, -_GATE_CLIP, _GATE_CLIP)
    return (_norm_pdf(xc) * (2.0 - xc * xc)).astype(x.dtype)


def _gelu_tanh_parts(x):
    # 1 + tanh(g) = 2 sigmoid(2 g): the sigmoid form keeps relative accuracy in the
    # negative tail, where 1 + tanh(g) would cancel.
    u = np.clip(x, -_GATE_CLIP, _GATE_CLIP)
    g2 = 2.0 * _SQRT_2_OVER_PI * (u + GELU_TANH_COEFF * u**3)
    dg = _SQRT_2_OVER_PI * (1.0 + 3.0 * GELU_TANH_COEFF * u * u)
    d2g = _SQRT_2_OVER_PI * 6.0 * GELU_TANH_COEFF * u
    gate = special.expit(g2)
    gate_slope = gate * special.expit(-g2)  # sigmoid'(2g) = (1 - tanh(g)^2) / 4
    return u, gate, gate_slope, dg, d2g


def _gelu_tanh(x, **_):
    u, gate, _, _, _ = _gelu_tanh_parts(x)
    return np.where(x < -_GATE_CLIP, 0.0, np.where(x > _GATE_CLIP, x, u * gate)).astype(x.dtype)


def _gelu_tanh_d(x, **_):
    u, gate, p, dg, _ = _gelu_tanh_parts(x)
    return (gate + 2.0 * u * p * dg).astype(x.dtype)


def _gelu_tanh_d2(x, **_):
    u, gate, p, dg, d2g = _gelu_tanh_parts(x)
    return (4.0 * p * dg * (1.0 + u * (1.0 - 2.0 * gate) * dg) + 2.0 * u * p * d2g).astype(
        x.dtype
    )


def _tanh(x, **_):
    return np.tanh(x)


def _tanh_d(x, **_):
    # 4 sigmoid(2x) sigmoid(-2x) = 1 - tanh^2, without cancellation in the tails
    return (4.0 * special.expit(2.0 * x) * special.expit(-2.0 * x)).astype(x.dtype)


def _tanh_d2(x, **_):
    return (-2.0 * np.tanh(x) * _tanh_d(x)).astype(x.dtype)


def _sigmoid(x, **_):
    return special.expit(x)


def _sigmoid_d(x, **_):
    return (special.expit(x) * special.expit(-x)).astype(x.dtype)


def _sigmoid_d2(x, **_):
    return (-_sigmoid_d(x) * np.tanh(0.5 * x)).astype(x.dtype)


def _softplus(x, **_):
    return (np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x)))).astype(x.dtype)


_SILU_CLIP = 800.0  # e^-800 is 0 in float64: silu is 0 and its slopes are 0 below


def _silu(x, **_):
    xc = np.maximum(x, -_SILU_CLIP)
    return np.where(x < -_SILU_CLIP, 0.0, xc * special.expit(xc)).astype(x.dtype)


def _silu_d(x, **_):
    xc = np.clip(x, -_SILU_CLIP, _SILU_CLIP)
    s = special.expit(xc)
    return (s + xc * s * special.expit(-xc)).astype(x.dtype)


def _silu_d2(x, **_):
    xc = np.clip(x, -_SILU_CLIP, _SILU_CLIP)
    s = special.expit(xc)
    return (s * special.expit(-xc) * (2.0 - xc * np.tanh(0.5 * xc))).astype(x.dtype)


def _softsign(x, **_):
    finite = np.where(np.isinf(x), 0.0, x)
    return np.where(np.isinf(x), np.sign(x), finite / (1.0 + np.abs(finite))).astype(x.dtype)


def _softsign_d(x, **_):
    return ((1.0 / (1.0 + np.abs(x))) ** 2).astype(x.dtype)  # (1+|x|)^2 would overflow


def _softsign_d2(x, **_):
    finite = np.where(np.isinf(x), 0.0, x)
    d2 = -2.0 * np.sign(finite) * (1.0 / (1.0 + np.abs(finite))) ** 3
    return np.where(np.isnan(x), x, d2).astype(x.dtype)


# ----------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class _Spec:
    """What the registry knows about one activation family."""

    kernel_id: int  # must match enum vp_activation in csrc/vp_activations.h
    value: Callable[..., Array]
    derivative: Callable[..., Array]
    second_derivative: Callable[..., Array]
    defaults: Mapping[str, float] = field(default_factory=dict)
    kinked: bool = False  # phi' jumps at 0: quadrature must split there
    doc: str = ""


_SPECS: dict[str, _Spec] = {
    "linear": _Spec(0, _linear, _linear_d, _zero_d2, doc="phi(x) = x"),
    "relu": _Spec(1, _leaky, _leaky_d, _zero_d2, kinked=True, doc="max(x, 0)"),
    "leaky_relu": _Spec(
        2, _leaky, _leaky_d, _zero_d2, {"negative_slope": 0.01}, kinked=True,
        doc="x if x > 0 else negative_slope * x",
    ),
    "elu": _Spec(
        3, _elu, _elu_d, _elu_d2, {"alpha": 1.0}, kinked=True,
        doc="x if x > 0 else alpha * (exp(x) - 1)",
    ),
    "selu": _Spec(
        4, _elu, _elu_d, _elu_d2, kinked=True,
        doc="SELU_SCALE * elu(x, SELU_ALPHA) (Klambauer et al. 2017)",
    ),
    "gelu": _Spec(5, _gelu, _gelu_d, _gelu_d2, doc="x * Phi(x), exact erf form"),
    "gelu_tanh": _Spec(
        6, _gelu_tanh, _gelu_tanh_d, _gelu_tanh_d2,
        doc="0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))",
    ),
    "tanh": _Spec(7, _tanh, _tanh_d, _tanh_d2, doc="tanh(x)"),
    "sigmoid": _Spec(8, _sigmoid, _sigmoid_d, _sigmoid_d2, doc="1 / (1 + exp(-x))"),
    "softplus": _Spec(9, _softplus, _sigmoid, _sigmoid_d, doc="log(1 + exp(x))"),
    "silu": _Spec(10, _silu, _silu_d, _silu_d2, doc="x * sigmoid(x) (swish)"),
    "softsign": _Spec(
        11, _softsign, _softsign_d, _softsign_d2, kinked=True, doc="x / (1 + |x|)"
    ),
}

#: Every activation name the registry knows, in kernel-id order.
ACTIVATION_NAMES: tuple[str, ...] = tuple(_SPECS)
_ALIASES = {"swish": "silu", "identity": "linear", "none": "linear"}


def _check_param(activation: str, key: str, value: Any) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.number)):
        raise TypeError(
            f"activation {activation!r}: parameter {key!r} must be a real number, "
            f"got {type(value).__name__} {value!r}"
        )
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(
            f"activation {activation!r}: parameter {key!r} must be finite, got {value!r}"
        )
    if key == "alpha" and value < 0:
        raise ValueError(
            f"activation {activation!r}: parameter 'alpha' must be >= 0, got {value!r}"
        )
    return value


class Activation:
    """An activation function with its parameters bound.

    Call it on an array for its value; ``derivative`` and ``second_derivative`` give
    phi' and phi''. ``kernel_id`` and ``kernel_params`` are what the C kernels take.

    Args:
        name: one of :data:`ACTIVATION_NAMES` (``"swish"`` is accepted for ``"silu"``).
        **params: the activation's parameters (``negative_slope`` for ``leaky_relu``,
            ``alpha`` for ``elu``); omitted ones take their defaults.
    """

    __slots__ = ("name", "params", "_spec")

    def __init__(self, name: str, **params: Any) -> None:
        if not isinstance(name, str):
            raise TypeError(
                f"activation must be a name (str) or an Activation, got {type(name).__name__}"
            )
        key = _ALIASES.get(name.lower(), name.lower())
        if key not in _SPECS:
            close = difflib.get_close_matches(name, ACTIVATION_NAMES, n=3)
            hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
            raise ValueError(
                f"activation: unknown name {name!r}.{hint} "
                f"Valid names: {', '.join(ACTIVATION_NAMES)}."
            )
        spec = _SPECS[key]
        unknown = sorted(set(params) - set(spec.defaults))
        if unknown:
            valid = ", ".join(spec.defaults) or "none"
            raise TypeError(
                f"activation {key!r} got unexpected parameter(s) {', '.join(unknown)}; "
                f"its parameters are: {valid}"
            )
        merged = dict(spec.defaults)
        merged.update({k: _check_param(key, k, v) for k, v in params.items()})
        self.name: str = key
        self.params: dict[str, float] = merged
        self._spec = spec

    # Parameters passed to the formulas (SELU is ELU with fixed constants).
    @property
    def _formula_params(self) -> dict[str, float]:
        if self.name == "selu":
            return {"alpha": SELU_ALPHA, "scale": SELU_SCALE}
        if self.name == "relu":
            return {"negative_slope": 0.0}
        return self.params

    @property
    def kernel_id(self) -> int:
        """The C kernel's activation id (``enum vp_activation`` in csrc)."""
        return self._spec.kernel_id

    @property
    def kernel_params(self) -> tuple[float, float]:
        """The two scalar parameters the C kernels take (p0, p1)."""
        p = self._formula_params
        if self.name in ("relu", "leaky_relu"):
            return (p["negative_slope"], 0.0)
        if self.name in ("elu", "selu"):
            return (p["alpha"], p.get("scale", 1.0))
        return (0.0, 0.0)

    @property
    def kinked(self) -> bool:
        """True when phi' jumps at 0 (relu-likes, elu, softsign)."""
        if self.name == "elu" and self.params["alpha"] == 1.0:
            return False  # elu with alpha 1 is C1; phi'' still jumps, keep splitting
        return self._spec.kinked

    @property
    def description(self) -> str:
        return self._spec.doc

    def __call__(self, x: Any) -> Array:
        return self._spec.value(_as_float_array(x), **self._formula_params)

    value = __call__

    def derivative(self, x: Any) -> Array:
        """phi'(x); at a kink the right-hand convention of PyTorch (relu'(0) = 0)."""
        return self._spec.derivative(_as_float_array(x), **self._formula_params)

    def second_derivative(self, x: Any) -> Array:
        """phi''(x) (0 away from the kink for piecewise-linear activations)."""
        return self._spec.second_derivative(_as_float_array(x), **self._formula_params)

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name, **self.params}

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Activation)
            and other.name == self.name
            and other.params == self.params
        )

    def __hash__(self) -> int:
        return hash((self.name, tuple(sorted(self.params.items()))))

    def __repr__(self) -> str:
        args = "".join(f", {k}={v!r}" for k, v in self.params.items())
        return f"Activation({self.name!r}{args})"


def get_activation(activation: "str | Activation | Mapping[str, Any]" = "relu",
                   **params: Any) -> Activation:
    """Resolve a name (with keyword parameters), a config dict or an Activation.

    Raises:
        ValueError: unknown name (the message lists the valid ones) or bad parameter value.
        TypeError: parameters passed alongside an Activation object, unknown parameter
            names, or a value of the wrong type.
    """
    if isinstance(activation, Activation):
        if params:
            raise TypeError(
                "activation: parameters "
                f"{', '.join(sorted(params))} were given with an Activation object; "
                "pass them either as keywords with a name or inside the object"
            )
        return activation
    if isinstance(activation, Mapping):
        config = dict(activation)
        if "name" not in config:
            raise ValueError("activation: a config dict needs a 'name' key")
        name = config.pop("name")
        config.update(params)
        return Activation(name, **config)
    return Activation(activation, **params)
