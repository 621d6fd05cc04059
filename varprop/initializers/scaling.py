"""The variance-scaling core and the named schemes that are special cases of it.

:class:`VarianceScaling` states the contract once: entries with mean 0 and
variance ``scale / n``, where ``n`` is a fan of the shape
(:func:`~varprop.initializers.compute_fans`). Glorot/Xavier, He/Kaiming, LeCun and
PyTorch's layer default are one-line subclasses that fix ``scale``, ``mode`` and
``distribution``.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from typing import Any, Optional

import numpy as np

from .._validate import finite_real, integer, one_of
from ._core import (
    NORMAL_REACH,
    TRUNCATED_NORMAL_STD_FACTOR,
    WeightMoments,
    square,
    square_times,
    standard_normal,
    standard_truncated_normal,
    uniform,
)
from .base import Initializer
from .fans import FAN_OPTION_NAMES, FanOptions
from .gains import calculate_gain

__all__ = [
    "MODES",
    "DISTRIBUTIONS",
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
    "TorchDefault",
]

MODES: tuple[str, ...] = ("fan_in", "fan_out", "fan_avg", "fan_geo_avg")
"""Which fan ``n`` divides the scale: fan_in, fan_out, (fan_in + fan_out) / 2, sqrt(fan_in fan_out)."""

DISTRIBUTIONS: tuple[str, ...] = ("truncated_normal", "normal", "uniform")
"""Distributions of :class:`VarianceScaling` (Keras's ``"untruncated_normal"`` is accepted for ``"normal"``)."""

_DISTRIBUTION_ALIASES = {"untruncated_normal": "normal"}

_KERAS_AXES = ("input_axes", "output_axes")
_NAMED_AXES_EXCLUDE = ("in_axis", "out_axis", "batch_axis", "groups", "transposed", "depthwise")
_DEFAULT_FANS = FanOptions()


def _keras_axes(owner: str, argname: str, value: Any) -> Optional[tuple[int, ...]]:
    """Keras's ``input_axes``/``output_axes``: None or a list of ints, as a tuple."""
    if value is None:
        return None
    if isinstance(value, (str, bytes)) or not isinstance(value, (Sequence, np.ndarray)):
        raise TypeError(f"{owner}: {argname} must be a list of ints or None; got {value!r} ({type(value).__name__})")
    return tuple(integer(f"{argname}[{i}]", v, owner=owner) for i, v in enumerate(value))


def _axes_of(owner: str, argname: str, axes: tuple[int, ...], shape: tuple[int, ...]) -> tuple[int, ...]:
    rank = len(shape)
    for a in axes:
        if not -rank <= a < rank:
            raise ValueError(f"{owner}: {argname}={list(axes)} names axis {a}, out of range for the "
                             f"rank-{rank} shape {shape}")
    out = tuple(a % rank for a in axes)
    if len(set(out)) != len(out):
        raise ValueError(f"{owner}: {argname}={list(axes)} names an axis twice for shape {shape}")
    return out


class VarianceScaling(Initializer):
    """Entries of mean 0 and variance ``scale / n``: the core of every fan-based scheme.

    As ``jax.nn.initializers.variance_scaling`` and Keras ``VarianceScaling``:

    .. math:: Var[W_{ij}] = \\frac{\\text{scale}}{n}, \\qquad n = \\begin{cases}
              \\text{fan\\_in} & \\text{mode="fan\\_in"} \\\\
              \\text{fan\\_out} & \\text{mode="fan\\_out"} \\\\
              (\\text{fan\\_in} + \\text{fan\\_out}) / 2 & \\text{mode="fan\\_avg"} \\\\
              \\sqrt{\\text{fan\\_in}\\,\\text{fan\\_out}} & \\text{mode="fan\\_geo\\_avg"}
              \\end{cases}

    * ``"truncated_normal"``: N(0, s^2) cut at +-2 s with
      ``s = sqrt(scale / n) / 0.87962566103423978`` (:data:`TRUNCATED_NORMAL_STD_FACTOR`,
      the std of N(0, 1) cut at +-2), so the variance after truncation is exactly
      ``scale / n``;
    * ``"normal"``: N(0, scale / n), untruncated (Keras: ``"untruncated_normal"``);
    * ``"uniform"``: U(-l, l) with ``l = sqrt(3 scale / n)``.

    Args:
        scale: the variance numerator, > 0 (2 for He, 1 for LeCun and Glorot,
            ``gain**2`` for PyTorch's schemes).
        mode: one of :data:`MODES`.
        distribution: one of :data:`DISTRIBUTIONS`.
        in_axis, out_axis, batch_axis, layout, groups, transposed, depthwise: the fan
            options of :func:`~varprop.initializers.compute_fans`. ``in_axis`` and
            ``out_axis`` default to the layout's axes (-2 and -1 for ``keras`` and
            ``jax``, as in JAX).
        input_axes, output_axes: Keras 3's named fan axes (keyword-only, every class of
            this family takes them; Keras writes them into every config, ``null`` by
            default). None means the default. When both are lists the fans are the
            products of the named axes alone, ``fan_in = prod(shape[input_axes])`` and
            ``fan_out = prod(shape[output_axes])``, with no receptive field (Keras's
            ``compute_fans``; its EinsumDense names every axis, so the receptive field is 1
            there anyway); they then cannot be combined with ``in_axis``, ``out_axis``,
            ``batch_axis``, ``groups``, ``transposed`` or ``depthwise``. Given alone, one
            is ignored (kept in the config), as Keras ignores it.

    Huge scales: ``moments`` reports ``var = inf`` where ``scale / n`` overflows (e.g.
    ``xavier_normal(gain=1e300)``: ``gain^2``), while the draw uses the finite standard
    deviation ``gain / sqrt(n)`` (a float64 draw is finite; entries beyond the dtype's
    range raise ValueError, see :meth:`Initializer.__call__`).

    Example:
        >>> init = VarianceScaling(2.0, "fan_in", "normal")
        >>> init.moments((512, 256)).var == 2.0 / 512
        True
    """

    name = "variance_scaling"
    uses_fan_options = True

    def __init__(
        self,
        scale: float = 1.0,
        mode: str = "fan_in",
        distribution: str = "truncated_normal",
        *,
        input_axes: Optional[Sequence[int]] = None,
        output_axes: Optional[Sequence[int]] = None,
        **fan_options: Any,
    ) -> None:
        super().__init__(**fan_options)
        self.scale = finite_real("scale", scale, positive=True, owner=self.name)
        self._root_scale = math.sqrt(self.scale)
        self.input_axes = _keras_axes(self.name, "input_axes", input_axes)
        self.output_axes = _keras_axes(self.name, "output_axes", output_axes)
        if self.named_axes:
            self._named_axes_conflict(self.fan_options)
        self.mode = one_of("mode", mode, MODES, owner=self.name)
        if isinstance(distribution, str):
            distribution = _DISTRIBUTION_ALIASES.get(distribution, distribution)
        self.distribution = one_of(
            "distribution", distribution, DISTRIBUTIONS + tuple(_DISTRIBUTION_ALIASES), owner=self.name
        )

    def _params(self) -> dict[str, Any]:
        return {"scale": self.scale, "mode": self.mode, "distribution": self.distribution}

    def _set_gain(self, gain: float, scale: float, source: str) -> None:
        """Set ``scale = gain^2`` as computed by the caller (inf where it overflows, 0 where
        it underflows) while the draw keeps the standard deviation ``gain / sqrt(n)``."""
        if not gain > 0.0:
            raise ValueError(f"{self.name}: the gain must be > 0; {source} gives {gain!r}")
        self.scale = scale
        self._root_scale = gain

    # ------------------------------------------------------------- Keras's named axes
    @property
    def named_axes(self) -> bool:
        """Whether Keras's ``input_axes`` and ``output_axes`` are both given: then the fans
        are the products of the named axes alone (no receptive field), Keras's rule."""
        return self.input_axes is not None and self.output_axes is not None

    def _named_axes_conflict(self, opts: FanOptions) -> None:
        clash = [n for n in _NAMED_AXES_EXCLUDE if getattr(opts, n) != getattr(_DEFAULT_FANS, n)]
        if clash:
            raise ValueError(
                f"{self.name}: input_axes and output_axes (Keras's named fan axes) fix the fans; they "
                f"cannot be combined with {', '.join(clash)}: pass one or the other"
            )

    def _check(self, shape: tuple[int, ...], opts: FanOptions) -> None:
        if self.named_axes:
            self._named_axes_conflict(opts)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        if self.input_axes is not None or self.output_axes is not None:
            config.update({k: None if v is None else list(v)
                           for k, v in zip(_KERAS_AXES, (self.input_axes, self.output_axes))})
        return config

    @classmethod
    def parameter_names(cls) -> tuple[str, ...]:
        own = [n for n in super().parameter_names() if n not in FAN_OPTION_NAMES]
        return tuple(dict.fromkeys([*own, *_KERAS_AXES, *FAN_OPTION_NAMES]))

    # --------------------------------------------------------------------- the contract
    def fans(self, shape: tuple[int, ...], opts: FanOptions | None = None) -> tuple[int, int]:
        """``(fan_in, fan_out)`` of ``shape``: :func:`compute_fans` under the fan options,
        or with :attr:`named_axes` the products of ``input_axes`` and ``output_axes``."""
        shape = tuple(shape)
        if self.named_axes:
            assert self.input_axes is not None and self.output_axes is not None
            ia = _axes_of(self.name, "input_axes", self.input_axes, shape)
            oa = _axes_of(self.name, "output_axes", self.output_axes, shape)
            if set(ia) & set(oa):
                raise ValueError(f"{self.name}: input_axes {list(ia)} and output_axes {list(oa)} share "
                                 f"axes of shape {shape}; each axis plays one role")
            return math.prod(shape[i] for i in ia), math.prod(shape[i] for i in oa)
        return (opts or self.fan_options).fans(shape)

    def fan(self, shape: tuple[int, ...], opts: FanOptions | None = None) -> float:
        """The ``n`` of ``scale / n`` for ``shape`` (see :data:`MODES`)."""
        fan_in, fan_out = self.fans(shape, opts)
        if max(fan_in, fan_out) > sys.float_info.max / 2:
            raise ValueError(f"{self.name}: the fans of shape {tuple(shape)} exceed the float range")
        if self.mode == "fan_in":
            return float(fan_in)
        if self.mode == "fan_out":
            return float(fan_out)
        if self.mode == "fan_avg":
            return (fan_in + fan_out) / 2.0
        try:
            return math.sqrt(fan_in * fan_out)
        except OverflowError:  # the product exceeds a float; the root does not
            return math.sqrt(fan_in) * math.sqrt(fan_out)

    def variance(self, shape: tuple[int, ...], opts: FanOptions | None = None) -> float:
        """``scale / n``; ValueError when the fan is 0 (a zero-size channel axis)."""
        n = self.fan(shape, opts)
        if n == 0:
            raise ValueError(
                f"{self.name}: the {self.mode} of shape {tuple(shape)} is 0, so scale / {self.mode} is "
                "undefined; a zero-size channel axis has no weights to scale"
            )
        var = self.scale / n
        if var == math.inf:  # scale = gain^2 overflowed; gain^2 / n may not
            var = square_times(self._root_scale, 1.0 / n)
        return var

    def _std(self, shape: tuple[int, ...], opts: FanOptions) -> float:
        """sqrt(scale / n): as ``math.sqrt(var)`` (the historical bits) where the variance
        is a normal float, else ``sqrt(scale) / sqrt(n)`` (scale = gain^2 overflowed to inf
        or underflowed, while the standard deviation is a float)."""
        var = self.variance(shape, opts)
        if sys.float_info.min <= var < math.inf and sys.float_info.min <= self.scale < math.inf:
            return math.sqrt(var)
        return self._root_scale / math.sqrt(self.fan(shape, opts))

    def _limit(self, shape: tuple[int, ...], opts: FanOptions) -> float:
        """The uniform bound sqrt(3 scale / n), overflow-safe as :meth:`_std`."""
        var = self.variance(shape, opts)
        if sys.float_info.min <= var and 3.0 * var < math.inf and sys.float_info.min <= self.scale < math.inf:
            return math.sqrt(3.0 * var)
        return math.sqrt(3.0) * self._std(shape, opts)

    def _magnitude(self, shape: tuple[int, ...], opts: FanOptions) -> tuple[float, str]:
        if self.distribution == "uniform":
            bound = self._limit(shape, opts)
        else:
            reach = 2.0 / TRUNCATED_NORMAL_STD_FACTOR if self.distribution == "truncated_normal" else NORMAL_REACH
            bound = reach * self._std(shape, opts)
        params = ", ".join(f"{k}={v!r}" for k, v in self._params().items())
        return bound, f"{params + ', ' if params else ''}shape {shape}"

    def _draw(
        self, shape: tuple[int, ...], rng: np.random.Generator, dtype: np.dtype, opts: FanOptions
    ) -> np.ndarray:
        fan_in, fan_out = self.fans(shape, opts)
        if min(fan_in, fan_out) == 0:  # nothing to draw would reach here: prod(shape) > 0
            raise ValueError(f"{self.name}: zero fan for non-empty shape {shape}")
        if self.distribution == "truncated_normal":
            std = self._std(shape, opts) / TRUNCATED_NORMAL_STD_FACTOR
            return standard_truncated_normal(rng, shape, -2.0, 2.0, dtype, scale=std)
        if self.distribution == "normal":
            x = standard_normal(rng, shape, dtype)
            x *= x.dtype.type(self._std(shape, opts))
            return x
        limit = self._limit(shape, opts)
        return uniform(rng, shape, -limit, limit, dtype)

    def _moments(self, shape: tuple[int, ...], opts: FanOptions) -> WeightMoments:
        # Exact for every distribution: the truncated normal's std is divided by the
        # std of the +-2 truncation, so its variance is scale / n (to the last bit of
        # the 17-digit constant; the tests check it against scipy's truncnorm).
        return WeightMoments(0.0, self.variance(shape, opts))


class _Fixed(VarianceScaling):
    """A named special case: scale, mode and distribution fixed by the subclass."""

    _scale: float = 1.0
    _mode: str = "fan_in"
    _distribution: str = "truncated_normal"

    def __init__(self, **fan_options: Any) -> None:
        super().__init__(self._scale, self._mode, self._distribution, **fan_options)

    def _params(self) -> dict[str, Any]:
        return {}


class GlorotNormal(_Fixed):
    """Glorot normal (Keras/JAX): ``variance_scaling(1.0, "fan_avg", "truncated_normal")``.

    Glorot & Bengio 2010 (AISTATS, "Understanding the difficulty of training deep
    feedforward neural networks"): in the linear regime the forward pass needs
    ``fan_in Var[W] = 1`` and the backward pass ``fan_out Var[W] = 1``; the
    compromise is

    .. math:: Var[W] = \\frac{2}{\\text{fan\\_in} + \\text{fan\\_out}}

    drawn, as in Keras and JAX, from a normal truncated at +-2 std (rescaled so the
    variance is exact). PyTorch's :class:`XavierNormal` draws the plain normal.
    """

    name = "glorot_normal"
    _scale, _mode, _distribution = 1.0, "fan_avg", "truncated_normal"


class GlorotUniform(_Fixed):
    """Glorot uniform (Keras's default kernel initializer): ``variance_scaling(1.0, "fan_avg", "uniform")``.

    U(-l, l) with ``l = sqrt(6 / (fan_in + fan_out))`` (Glorot & Bengio 2010), so
    ``Var[W] = 2 / (fan_in + fan_out)``. Identical to PyTorch's
    ``xavier_uniform_`` with gain 1.
    """

    name = "glorot_uniform"
    _scale, _mode, _distribution = 1.0, "fan_avg", "uniform"


class HeNormal(_Fixed):
    """He normal (Keras/JAX): ``variance_scaling(2.0, "fan_in", "truncated_normal")``.

    He et al. 2015 (arXiv 1502.01852): ReLU halves the second moment, so

    .. math:: Var[W] = \\frac{2}{\\text{fan\\_in}}

    keeps it constant in depth. Truncated at +-2 std as in Keras and JAX (JAX's
    ``kaiming_normal`` alias is this one); PyTorch's :class:`KaimingNormal` draws
    the plain normal.
    """

    name = "he_normal"
    _scale, _mode, _distribution = 2.0, "fan_in", "truncated_normal"


class HeUniform(_Fixed):
    """He uniform (Keras/JAX): ``variance_scaling(2.0, "fan_in", "uniform")``.

    U(-l, l), ``l = sqrt(6 / fan_in)``, ``Var[W] = 2 / fan_in`` (He et al. 2015).
    Identical to PyTorch's ``kaiming_uniform_(a=0, nonlinearity="relu")``.
    """

    name = "he_uniform"
    _scale, _mode, _distribution = 2.0, "fan_in", "uniform"


class LecunNormal(_Fixed):
    """LeCun normal: ``variance_scaling(1.0, "fan_in", "truncated_normal")``.

    LeCun et al. 1998 ("Efficient BackProp"); with SELU it makes the network
    self-normalizing (Klambauer et al. 2017, arXiv 1706.02515):

    .. math:: Var[W] = \\frac{1}{\\text{fan\\_in}}
    """

    name = "lecun_normal"
    _scale, _mode, _distribution = 1.0, "fan_in", "truncated_normal"


class LecunUniform(_Fixed):
    """LeCun uniform: ``variance_scaling(1.0, "fan_in", "uniform")``: U(+-sqrt(3 / fan_in)), ``Var[W] = 1 / fan_in``."""

    name = "lecun_uniform"
    _scale, _mode, _distribution = 1.0, "fan_in", "uniform"


class XavierNormal(VarianceScaling):
    """PyTorch's ``xavier_normal_(gain=1)``: ``variance_scaling(gain**2, "fan_avg", "normal")``.

    Glorot & Bengio 2010, PyTorch's form: the plain (untruncated) normal

    .. math:: W \\sim N\\left(0, \\text{gain}^2 \\frac{2}{\\text{fan\\_in} + \\text{fan\\_out}}\\right)

    JAX's ``xavier_normal`` is an alias of its truncated ``glorot_normal``; varprop
    keeps PyTorch's meaning under PyTorch's name (:class:`GlorotNormal` is the
    Keras/JAX one).

    Args:
        gain: multiplies the standard deviation, > 0 (see
            :func:`~varprop.initializers.calculate_gain`).
    """

    name = "xavier_normal"
    _distribution = "normal"

    def __init__(self, gain: float = 1.0, **fan_options: Any) -> None:
        self.gain = finite_real("gain", gain, positive=True, owner=self.name)
        super().__init__(1.0, "fan_avg", self._distribution, **fan_options)
        self._set_gain(self.gain, square(self.gain), f"gain={gain!r}")

    def _params(self) -> dict[str, Any]:
        return {"gain": self.gain}


class XavierUniform(XavierNormal):
    """PyTorch's ``xavier_uniform_(gain=1)``: ``variance_scaling(gain**2, "fan_avg", "uniform")``.

    U(-l, l) with :math:`l = \\text{gain}\\sqrt{6 / (\\text{fan\\_in} + \\text{fan\\_out})}`
    (Glorot & Bengio 2010).
    """

    name = "xavier_uniform"
    _distribution = "uniform"


class KaimingNormal(VarianceScaling):
    """PyTorch's ``kaiming_normal_(a=0, mode="fan_in", nonlinearity="leaky_relu")``.

    He et al. 2015 (arXiv 1502.01852), PyTorch's form: the plain normal with

    .. math:: std = \\frac{\\text{gain}}{\\sqrt{\\text{fan\\_mode}}}, \\quad
              \\text{gain} = \\text{calculate\\_gain}(\\text{nonlinearity}, a)

    i.e. ``variance_scaling(gain**2, mode, "normal")``. With the defaults the gain
    is sqrt(2 / (1 + 0^2)) = sqrt 2, the He scheme. JAX's ``kaiming_normal`` is an
    alias of its truncated ``he_normal``; varprop keeps PyTorch's meaning here.

    Args:
        a: the negative slope of the leaky ReLU that follows (used only when
            ``nonlinearity="leaky_relu"``, as in PyTorch).
        mode: ``"fan_in"`` (preserve the forward variance) or ``"fan_out"``
            (preserve the backward variance); PyTorch accepts only these two.
        nonlinearity: a name of :func:`~varprop.initializers.calculate_gain`.
    """

    name = "kaiming_normal"
    _distribution = "normal"

    def __init__(
        self, a: float = 0.0, mode: str = "fan_in", nonlinearity: str = "leaky_relu", **fan_options: Any
    ) -> None:
        self.a = finite_real("a", a, owner=self.name)
        self.nonlinearity = nonlinearity
        gain = calculate_gain(nonlinearity, self.a)
        one_of("mode", mode, ("fan_in", "fan_out"), owner=self.name)
        super().__init__(1.0, mode, self._distribution, **fan_options)
        self._set_gain(gain, gain * gain, f"calculate_gain({nonlinearity!r}, a={a!r})")
        self.gain = gain

    def _params(self) -> dict[str, Any]:
        return {"a": self.a, "mode": self.mode, "nonlinearity": self.nonlinearity}


class KaimingUniform(KaimingNormal):
    """PyTorch's ``kaiming_uniform_(a=0, mode="fan_in", nonlinearity="leaky_relu")``.

    U(-l, l) with :math:`l = \\text{gain}\\sqrt{3 / \\text{fan\\_mode}}`, i.e.
    ``variance_scaling(gain**2, mode, "uniform")`` (He et al. 2015).
    """

    name = "kaiming_uniform"
    _distribution = "uniform"


class TorchDefault(_Fixed):
    """PyTorch's default weight of ``nn.Linear`` and ``nn.Conv*``: ``kaiming_uniform_(a=sqrt(5))``.

    The gain is sqrt(2 / (1 + 5)) = 1/sqrt(3), so

    .. math:: W \\sim U\\left(-\\frac{1}{\\sqrt{\\text{fan\\_in}}}, \\frac{1}{\\sqrt{\\text{fan\\_in}}}\\right),
              \\qquad Var[W] = \\frac{1}{3\\,\\text{fan\\_in}}

    i.e. ``variance_scaling(1/3, "fan_in", "uniform")``: a third of the LeCun
    variance, so in a deep ReLU stack the second moment shrinks 6-fold per layer. The
    default layout is varprop's ``keras``; pass ``layout="torch"`` for PyTorch
    weights ``(out, in, ...)``. The bias is :class:`TorchDefaultBias`.
    """

    name = "torch_default"
    _scale, _mode, _distribution = 1.0 / 3.0, "fan_in", "uniform"
