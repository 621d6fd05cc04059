"""The activation registry: the one place every part of varprop asks about an activation.

Each entry (:class:`_Spec`, read through :class:`Activation`) holds every fact about one
activation: its value, first and second derivative as plain numpy (the reference twin
of the C kernels and the integrand of the Gaussian expectations), its parameters, its C
kernel id and (p0, p1), its symmetries, kinks and asymptotes, its initialization gain,
and which closed form (varprop/theory/closed_forms.py) and series
(varprop/theory/series.py) give its Gaussian moments.

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

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np
from scipy import special

from ._validate import close_matches, finite_real

__all__ = ["Activation", "ACTIVATION_NAMES", "SELU_ALPHA", "SELU_SCALE", "GELU_TANH_COEFF",
           "get_activation"]

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
    xc = np.minimum(np.maximum(x, -_GATE_CLIP), _GATE_CLIP)
    return (_norm_cdf(xc) + xc * _norm_pdf(xc)).astype(x.dtype)


def _gelu_d2(x, **_):
    xc = np.minimum(np.maximum(x, -_GATE_CLIP), _GATE_CLIP)
    return (_norm_pdf(xc) * (2.0 - xc * xc)).astype(x.dtype)


def _gelu_tanh_parts(x):
    # 1 + tanh(g) = 2 sigmoid(2 g): the sigmoid form keeps relative accuracy in the
    # negative tail, where 1 + tanh(g) would cancel.
    u = np.minimum(np.maximum(x, -_GATE_CLIP), _GATE_CLIP)
    g2 = 2.0 * _SQRT_2_OVER_PI * (u + GELU_TANH_COEFF * (u * u * u))  # (u**3: a slow pow)
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
    xc = np.minimum(np.maximum(x, -_SILU_CLIP), _SILU_CLIP)
    s = special.expit(xc)
    return (s + xc * s * special.expit(-xc)).astype(x.dtype)


def _silu_d2(x, **_):
    xc = np.minimum(np.maximum(x, -_SILU_CLIP), _SILU_CLIP)
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


def _elu_gain(alpha: float) -> float:
    # 1 / sqrt(E[elu_alpha(z)^2]), z ~ N(0, 1): the closed form of docs/theory.md section 5
    # at q = 1, written once in varprop/theory/closed_forms.py
    from .theory.closed_forms import scalar_closed_form

    return 1.0 / math.sqrt(scalar_closed_form("elu", {"alpha": alpha, "scale": 1.0}, 0.0, 1.0)[1])


@dataclass(frozen=True)
class _Spec:
    """Every fact about one activation family (tests/test_activation_records.py checks the
    copies in csrc/ against it)."""

    kernel_id: int  # enum vp_activation in csrc/vp_activations.h
    value: Callable[..., Array]
    derivative: Callable[..., Array]
    second_derivative: Callable[..., Array]
    defaults: Mapping[str, float] = field(default_factory=dict)  # the user's parameters
    fixed: Mapping[str, float] = field(default_factory=dict)  # formula parameters set here
    kernel_args: tuple[str, ...] = ()  # formula parameters passed to C as (p0, p1)
    # Below, a fact that depends on the parameters is a function of the formula parameters.
    kinked: "bool | Callable[..., bool]" = False  # phi' or phi'' jumps at 0
    odd: bool = False  # phi(-x) = -phi(x)
    centred_mean: float | None = None  # E[phi(x)], x ~ N(0, q), fixed by a symmetry
    slopes: Any = None  # piecewise linear: (phi'(0-), phi'(0+)); None if not
    # linear asymptotes (a+, b+, a-, b-, X): phi(x) = a+ x + b+ for x >= X, a- x + b- for
    # x <= -X, to 1e-20 relative (48 e^-48 = 7e-20; tanh 2 e^-52; gelu_tanh's gate is
    # 1 - e^-142 at 12); none for softsign, whose gap decays only like 1/|x|
    asymptote: Any = None
    gain: "float | Callable[[float], float] | None" = None  # calculate_gain's value or rule
    gain_param: str | None = None  # the parameter a gain rule takes (its default: defaults)
    torch_gain: bool = False  # the gain is torch.nn.init.calculate_gain's
    init: str = "gain"  # recommended_initializer's scheme (varprop/initializers/registry.py)
    closed_form: str | None = None  # its family in varprop/theory/closed_forms.py
    series: str | None = None  # its small-variance series in varprop/theory/series.py
    doc: str = ""


def _elu_asymptote(alpha: float, scale: float) -> tuple:
    return (scale, 0.0, 0.0, -scale * alpha, 48.0)


def _fill(fact: Any, fp: Mapping[str, float]) -> Any:
    """A record's fact for the formula parameters ``fp``."""
    return fact(**fp) if callable(fact) else fact


_SPECS: dict[str, _Spec] = {
    "linear": _Spec(
        0, _linear, _linear_d, _zero_d2, odd=True, centred_mean=0.0,
        slopes=(1.0, 1.0), gain=1.0, torch_gain=True, init="glorot", closed_form="linear",
        doc="phi(x) = x"),
    "relu": _Spec(
        1, _leaky, _leaky_d, _zero_d2, fixed={"negative_slope": 0.0},
        kernel_args=("negative_slope",), kinked=True, slopes=(0.0, 1.0),
        gain=math.sqrt(2.0), torch_gain=True, init="he", closed_form="leaky", doc="max(x, 0)"),
    "leaky_relu": _Spec(
        2, _leaky, _leaky_d, _zero_d2, {"negative_slope": 0.01},
        kernel_args=("negative_slope",), kinked=True,
        slopes=lambda negative_slope: (negative_slope, 1.0),
        # E[leaky_relu_s(z)^2] = (1 + s^2) / 2, z ~ N(0, 1) (He et al. 2015, eq. 15)
        # (beyond |slope| 1e150, slope^2 overflows: the gain is sqrt(2) / |slope|)
        gain=lambda s: math.sqrt(2.0 / (1.0 + s * s)) if abs(s) < 1e150 else math.sqrt(2.0) / abs(s),
        gain_param="negative_slope", torch_gain=True, init="kaiming", closed_form="leaky",
        doc="x if x > 0 else negative_slope * x"),
    "elu": _Spec(
        3, _elu, _elu_d, _elu_d2, {"alpha": 1.0}, {"scale": 1.0}, ("alpha", "scale"),
        # alpha = 1 makes elu C1 (phi'' still jumps): historically not split there
        kinked=lambda alpha, scale: alpha != 1.0, asymptote=_elu_asymptote, gain=_elu_gain,
        gain_param="alpha", closed_form="elu", doc="x if x > 0 else alpha * (exp(x) - 1)"),
    "selu": _Spec(
        4, _elu, _elu_d, _elu_d2, fixed={"alpha": SELU_ALPHA, "scale": SELU_SCALE},
        kernel_args=("alpha", "scale"), kinked=True, asymptote=_elu_asymptote,
        # found empirically (pytorch/pytorch#50664); for self-normalizing networks
        # (Klambauer et al. 2017) PyTorch's docs advise "linear" (gain 1)
        gain=3.0 / 4.0, torch_gain=True, init="lecun", closed_form="elu",
        doc="SELU_SCALE * elu(x, SELU_ALPHA) (Klambauer et al. 2017)"),
    "gelu": _Spec(
        5, _gelu, _gelu_d, _gelu_d2, asymptote=(1.0, 0.0, 0.0, 0.0, 12.0),
        gain=1.5335304411955352, closed_form="gelu", doc="x * Phi(x), exact erf form"),
    "gelu_tanh": _Spec(
        6, _gelu_tanh, _gelu_tanh_d, _gelu_tanh_d2,
        asymptote=(1.0, 0.0, 0.0, 0.0, 12.0), gain=1.5335805216661469,
        doc="0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))"),
    "tanh": _Spec(
        7, _tanh, _tanh_d, _tanh_d2, odd=True, centred_mean=0.0,
        asymptote=(0.0, 1.0, 0.0, -1.0, 26.0), gain=5.0 / 3.0, torch_gain=True,
        init="glorot", series="tanh", doc="tanh(x)"),
    "sigmoid": _Spec(
        8, _sigmoid, _sigmoid_d, _sigmoid_d2, centred_mean=0.5,  # sigmoid(x) + sigmoid(-x) = 1
        asymptote=(0.0, 1.0, 0.0, 0.0, 48.0), gain=1.0, torch_gain=True, init="glorot",
        doc="1 / (1 + exp(-x))"),
    "softplus": _Spec(
        9, _softplus, _sigmoid, _sigmoid_d, asymptote=(1.0, 0.0, 0.0, 0.0, 48.0),
        gain=1.0418668355353017, doc="log(1 + exp(x))"),
    "silu": _Spec(
        10, _silu, _silu_d, _silu_d2, asymptote=(1.0, 0.0, 0.0, 0.0, 48.0),
        gain=1.6765324703310912, doc="x * sigmoid(x) (swish)"),
    "softsign": _Spec(
        11, _softsign, _softsign_d, _softsign_d2, kinked=True, odd=True, centred_mean=0.0,
        gain=2.3375333631085397, init="glorot", series="softsign", doc="x / (1 + |x|)"),
}
# The gains without a PyTorch entry are 1 / sqrt(E[phi(z)^2]), z ~ N(0, 1), by mpmath
# quadrature at 40 digits (tests/test_initializers_fans.py recomputes them).

#: Every activation name the registry knows, in kernel-id order.
ACTIVATION_NAMES: tuple[str, ...] = tuple(_SPECS)
_ALIASES = {"swish": "silu", "identity": "linear", "none": "linear"}


def _fact(key: str, doc: str) -> property:
    """A read-only property of :class:`Activation` that is a field of its record."""
    return property(lambda self: getattr(self._spec, key), doc=doc)


class Activation:
    """An activation function with its parameters bound: the one record of its facts.

    Call it on an array for its value; ``derivative`` and ``second_derivative`` give
    phi' and phi''; its properties (``kernel_id``, ``kernel_params``, ``odd``,
    ``centred_mean``, ``piecewise_linear``, ``kinks``, ``asymptote``, ``gain``,
    ``closed_form``, ...) are what the C kernels, the theory and the initializers ask.

    Args:
        name: one of :data:`ACTIVATION_NAMES` (``"swish"`` is accepted for ``"silu"``).
        **params: the activation's parameters (``negative_slope`` for ``leaky_relu``,
            ``alpha`` for ``elu``); omitted ones take their defaults.
    """

    __slots__ = ("name", "params", "_spec", "_fp")

    def __init__(self, name: str, **params: Any) -> None:
        if not isinstance(name, str):
            raise TypeError(
                f"activation must be a name (str) or an Activation, got {type(name).__name__}")
        key = _ALIASES.get(name.lower(), name.lower())
        if key not in _SPECS:
            close = close_matches(name, ACTIVATION_NAMES)
            hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
            raise ValueError(f"activation: unknown name {name!r}.{hint} "
                             f"Valid names: {', '.join(ACTIVATION_NAMES)}.")
        spec = _SPECS[key]
        unknown = sorted(set(params) - set(spec.defaults))
        if unknown:
            valid = ", ".join(spec.defaults) or "none"
            raise TypeError(f"activation {key!r} got unexpected parameter(s) "
                            f"{', '.join(unknown)}; its parameters are: {valid}")
        merged = dict(spec.defaults)
        merged.update({k: finite_real(f"parameter {k!r}", v, non_negative=k == "alpha",
                                      owner=f"activation {key!r}") for k, v in params.items()})
        self.name: str = key
        self.params: dict[str, float] = merged
        self._spec = spec
        self._fp = {**spec.fixed, **merged}

    kernel_id = _fact("kernel_id", "The C kernel's id (``enum vp_activation`` in csrc).")
    odd = _fact("odd", "phi(-x) = -phi(x) (linear, tanh, softsign).")
    centred_mean = _fact("centred_mean", "``E[phi(x)]``, ``x ~ N(0, q)``, for every q where "
                         "a symmetry fixes it (0 if odd, 1/2 for sigmoid); else None.")
    torch_gain = _fact("torch_gain", "Whether :attr:`gain` is PyTorch's calculate_gain's.")
    init = _fact("init", "The scheme varprop.initializers.recommended_initializer picks: he, "
                 "kaiming (leaky_relu's slope), lecun, glorot or gain (Var[W] = gain^2/fan_in).")
    is_identity = property(lambda self: self.name == "linear", doc="phi(x) = x (linear).")
    closed_form = _fact("closed_form", "Its family of Gaussian-moment closed forms in "
                        "varprop/theory/closed_forms.py, or None.")
    series = _fact("series", "Its small-variance series (varprop/theory/series.py), or None.")
    description = _fact("doc", "The formula, in words.")

    formula_params = property(lambda self: self._fp, doc="The formulas' parameters: the "
                              "user's and the fixed ones (SELU's constants).")

    @property
    def kernel_params(self) -> tuple[float, float]:
        """The two scalar parameters the C kernels take (p0, p1)."""
        args = [self._fp[k] for k in self._spec.kernel_args]
        return tuple(args + [0.0] * (2 - len(args)))  # type: ignore[return-value]

    @property
    def kinked(self) -> bool:
        """True when phi' (or phi'') jumps at 0 (relu-likes, elu with alpha != 1, selu,
        softsign): quadrature splits its panels there."""
        return bool(_fill(self._spec.kinked, self._fp))

    kinks = property(lambda self: (0.0,) if self.kinked else (),
                     doc="The points where phi' or phi'' jumps: ``(0.0,)`` or ``()``.")

    @property
    def piecewise_linear(self) -> bool:
        """phi is linear on each side of 0 (linear, relu, leaky_relu)."""
        return self._spec.slopes is not None

    @property
    def slopes(self) -> tuple[float, float] | None:
        """``(phi'(0-), phi'(0+))`` of a piecewise-linear activation (None otherwise)."""
        return _fill(self._spec.slopes, self._fp)

    @property
    def asymptote(self) -> tuple[float, float, float, float, float] | None:
        """``(a+, b+, a-, b-, X)``: phi is ``a+ x + b+`` beyond X and ``a- x + b-`` below
        -X to within 1e-20 relative; None where the gap decays only algebraically."""
        return _fill(self._spec.asymptote, self._fp)

    @property
    def gain(self) -> float:
        """The initialization gain (``torch.nn.init.calculate_gain``'s value, else
        ``1 / sqrt(E[phi(z)^2])``, z ~ N(0, 1)); see varprop.initializers.calculate_gain."""
        g, p = self._spec.gain, self._spec.gain_param
        return g(self.params[p]) if p is not None else g

    @property
    def gain_rule(self) -> tuple[str, float, Callable[[float], float]] | None:
        """``(parameter, default, gain as a function of it)`` of a parametric gain."""
        p = self._spec.gain_param
        return None if p is None else (p, self._spec.defaults[p], self._spec.gain)

    def __call__(self, x: Any) -> Array:
        return self._spec.value(_as_float_array(x), **self._fp)

    value = __call__

    def derivative(self, x: Any) -> Array:
        """phi'(x); at a kink the right-hand convention of PyTorch (relu'(0) = 0)."""
        return self._spec.derivative(_as_float_array(x), **self._fp)

    def second_derivative(self, x: Any) -> Array:
        """phi''(x) (0 away from the kink for piecewise-linear activations)."""
        return self._spec.second_derivative(_as_float_array(x), **self._fp)

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name, **self.params}

    def __reduce__(self) -> tuple:  # rebuilt from the registry (records hold lambdas)
        return (get_activation, (self.get_config(),))

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, Activation) and other.name == self.name
                and other.params == self.params)

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
