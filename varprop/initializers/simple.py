"""Schemes whose distribution does not depend on the fans: constants and plain random draws."""

from __future__ import annotations

import math
import sys
from typing import Any

import numpy as np

from .._validate import finite_real, positive_int
from ._core import (
    NORMAL_REACH,
    WeightMoments,
    square,
    square_times,
    standard_normal,
    standard_truncated_normal,
    truncated_normal_moments,
    uniform,
)
from .base import Initializer
from .fans import FanOptions

__all__ = [
    "Constant",
    "Zeros",
    "Ones",
    "RandomNormal",
    "RandomUniform",
    "TruncatedNormal",
    "TruncNormal",
    "TorchDefaultBias",
]


class Constant(Initializer):
    """Every entry equal to ``value`` (Keras ``Constant``, JAX ``constant``, PyTorch ``constant_``).

    .. math:: W_{ij} = c, \\quad E[W] = c, \\quad Var[W] = 0

    Every unit of a layer then computes the same function and receives the same
    gradient, so training cannot make them differ (the symmetry problem):
    :meth:`moments` reports ``symmetric=True``.

    Args:
        value: the constant (Keras's default 0.0). PyTorch calls it ``val``.

    Example:
        >>> Constant(0.5)((2, 2), dtype=np.float64)
        array([[0.5, 0.5],
               [0.5, 0.5]])
    """

    name = "constant"

    def __init__(self, value: float = 0.0, **fan_options: Any) -> None:
        super().__init__(**fan_options)
        self.value = finite_real("value", value, owner=self.name)

    def _params(self) -> dict[str, Any]:
        return {"value": self.value}

    def _draw(
        self, shape: tuple[int, ...], rng: np.random.Generator, dtype: np.dtype, opts: FanOptions
    ) -> np.ndarray:
        return np.full(shape, self.value, dtype=dtype)

    def _moments(self, shape: tuple[int, ...], opts: FanOptions) -> WeightMoments:
        return WeightMoments(self.value, 0.0, symmetric=True, structure="constant")

    def _magnitude(self, shape: tuple[int, ...], opts: FanOptions) -> tuple[float, str]:
        return abs(self.value), f"value={self.value!r}"


class Zeros(Constant):
    """All zeros (Keras ``Zeros``, JAX ``zeros``, PyTorch ``zeros_``): ``Constant(0.0)``.

    Symmetric: with zero weights every unit of the next layer receives zero
    gradient through them; the analyzer flags the layer rather than calling it healthy.
    """

    name = "zeros"

    def __init__(self, **fan_options: Any) -> None:
        super().__init__(0.0, **fan_options)

    def _params(self) -> dict[str, Any]:
        return {}


class Ones(Constant):
    """All ones (Keras ``Ones``, JAX ``ones``, PyTorch ``ones_``): ``Constant(1.0)``. Symmetric."""

    name = "ones"

    def __init__(self, **fan_options: Any) -> None:
        super().__init__(1.0, **fan_options)

    def _params(self) -> dict[str, Any]:
        return {}


class RandomNormal(Initializer):
    """Independent normal entries (Keras ``RandomNormal``; JAX ``normal``; PyTorch ``normal_``).

    .. math:: W_{ij} \\sim N(\\text{mean}, \\text{stddev}^2)

    Args:
        mean: the mean (default 0).
        stddev: the standard deviation, > 0 (Keras's default 0.05; JAX's
            ``normal`` defaults to 0.01 and PyTorch's ``normal_`` to 1).

    Example:
        >>> RandomNormal(stddev=0.1).moments((64, 32)).var
        0.010000000000000002
    """

    name = "random_normal"

    def __init__(self, mean: float = 0.0, stddev: float = 0.05, **fan_options: Any) -> None:
        super().__init__(**fan_options)
        self.mean = finite_real("mean", mean, owner=self.name)
        self.stddev = finite_real("stddev", stddev, positive=True, owner=self.name)

    def _params(self) -> dict[str, Any]:
        return {"mean": self.mean, "stddev": self.stddev}

    def _draw(
        self, shape: tuple[int, ...], rng: np.random.Generator, dtype: np.dtype, opts: FanOptions
    ) -> np.ndarray:
        x = standard_normal(rng, shape, dtype)
        x *= x.dtype.type(self.stddev)
        if self.mean:
            x += x.dtype.type(self.mean)
        return x

    def _moments(self, shape: tuple[int, ...], opts: FanOptions) -> WeightMoments:
        return WeightMoments(self.mean, square(self.stddev))  # inf where stddev^2 overflows

    def _magnitude(self, shape: tuple[int, ...], opts: FanOptions) -> tuple[float, str]:
        return abs(self.mean) + NORMAL_REACH * self.stddev, f"mean={self.mean!r}, stddev={self.stddev!r}"


class RandomUniform(Initializer):
    """Independent uniform entries on [minval, maxval) (Keras ``RandomUniform``).

    .. math:: E[W] = \\frac{lo + hi}{2}, \\qquad Var[W] = \\frac{(hi - lo)^2}{12}

    PyTorch's ``uniform_(a=0, b=1)`` is ``RandomUniform(a, b)``; JAX's
    ``uniform(scale)`` is ``RandomUniform(0, scale)``.

    Args:
        minval: the lower bound (default -0.05, as Keras).
        maxval: the upper bound, > minval (default 0.05).
    """

    name = "random_uniform"

    def __init__(self, minval: float = -0.05, maxval: float = 0.05, **fan_options: Any) -> None:
        super().__init__(**fan_options)
        self.minval = finite_real("minval", minval, owner=self.name)
        self.maxval = finite_real("maxval", maxval, owner=self.name)
        if not self.maxval > self.minval:
            raise ValueError(
                f"{self.name}: maxval must be greater than minval; got minval={minval!r}, maxval={maxval!r}"
            )

    def _params(self) -> dict[str, Any]:
        return {"minval": self.minval, "maxval": self.maxval}

    def _draw(
        self, shape: tuple[int, ...], rng: np.random.Generator, dtype: np.dtype, opts: FanOptions
    ) -> np.ndarray:
        return uniform(rng, shape, self.minval, self.maxval, dtype)

    def _moments(self, shape: tuple[int, ...], opts: FanOptions) -> WeightMoments:
        lo, hi = self.minval, self.maxval
        mean = (lo + hi) / 2.0
        if not math.isfinite(mean):  # lo + hi overflowed (both huge, same sign)
            mean = lo / 2.0 + hi / 2.0
        var = square(hi - lo) / 12.0
        if var == math.inf:  # (hi - lo)^2 or hi - lo overflowed: (hi/2 - lo/2)^2 / 3
            var = square_times(hi / 2.0 - lo / 2.0, 1.0 / 3.0)
        return WeightMoments(mean, var)

    def _magnitude(self, shape: tuple[int, ...], opts: FanOptions) -> tuple[float, str]:
        return max(abs(self.minval), abs(self.maxval)), f"minval={self.minval!r}, maxval={self.maxval!r}"


def _truncated_moments(mean: float, std: float, lower: float, upper: float) -> WeightMoments:
    """Moments of mean + std * X, X ~ N(0, 1) truncated to [lower, upper]."""
    m, v = truncated_normal_moments(lower, upper)
    var = std * std * v
    if var == math.inf:  # std^2 overflowed; the variance itself may not
        var = square_times(std, v)
    return WeightMoments(mean + std * m, var)


class TruncatedNormal(Initializer):
    """Normal entries cut at ``lower``/``upper`` standard deviations (Keras/JAX ``truncated_normal``).

    .. math:: W = \\text{mean} + \\text{stddev}\\, X, \\quad X \\sim N(0, 1) \\mid
              \\text{lower} \\le X \\le \\text{upper}

    ``stddev`` is the standard deviation *before* truncation, as in Keras and JAX:
    with the default +-2 cut the entries have standard deviation
    ``0.8796 * stddev`` (:data:`TRUNCATED_NORMAL_STD_FACTOR`) and
    :meth:`moments` reports that exact truncated variance.

    Args:
        mean: the centre (Keras; JAX has none, i.e. 0).
        stddev: the pre-truncation standard deviation, > 0 (Keras's default 0.05,
            JAX's 0.01).
        lower, upper: the cut in units of ``stddev`` around ``mean`` (JAX's
            arguments; Keras always cuts at -2 and 2).
    """

    name = "truncated_normal"

    def __init__(
        self,
        mean: float = 0.0,
        stddev: float = 0.05,
        lower: float = -2.0,
        upper: float = 2.0,
        **fan_options: Any,
    ) -> None:
        super().__init__(**fan_options)
        self.mean = finite_real("mean", mean, owner=self.name)
        self.stddev = finite_real("stddev", stddev, positive=True, owner=self.name)
        self.lower = finite_real("lower", lower, owner=self.name)
        self.upper = finite_real("upper", upper, owner=self.name)
        if not self.upper > self.lower:
            raise ValueError(f"{self.name}: upper must be greater than lower; got lower={lower!r}, upper={upper!r}")

    def _params(self) -> dict[str, Any]:
        return {"mean": self.mean, "stddev": self.stddev, "lower": self.lower, "upper": self.upper}

    def _draw(
        self, shape: tuple[int, ...], rng: np.random.Generator, dtype: np.dtype, opts: FanOptions
    ) -> np.ndarray:
        return standard_truncated_normal(
            rng, shape, self.lower, self.upper, dtype, scale=self.stddev, shift=self.mean
        )

    def _moments(self, shape: tuple[int, ...], opts: FanOptions) -> WeightMoments:
        return _truncated_moments(self.mean, self.stddev, self.lower, self.upper)

    def _magnitude(self, shape: tuple[int, ...], opts: FanOptions) -> tuple[float, str]:
        return (abs(self.mean) + self.stddev * max(abs(self.lower), abs(self.upper)),
                f"mean={self.mean!r}, stddev={self.stddev!r}, lower={self.lower!r}, upper={self.upper!r}")


class TruncNormal(Initializer):
    """PyTorch's ``trunc_normal_(mean=0, std=1, a=-2, b=2)``: absolute bounds.

    .. math:: W \\sim N(\\text{mean}, \\text{std}^2) \\mid a \\le W \\le b

    Unlike :class:`TruncatedNormal`, ``a`` and ``b`` are values of W, not multiples
    of the standard deviation; ``std`` is the pre-truncation standard deviation.
    The draw is exact for any bounds (inverse CDF in the tail, PyTorch's method,
    for intervals far from the mean).

    Args:
        mean, std: of the untruncated normal (std > 0).
        a, b: the cut, ``a < b``.
    """

    name = "trunc_normal"

    def __init__(
        self, mean: float = 0.0, std: float = 1.0, a: float = -2.0, b: float = 2.0, **fan_options: Any
    ) -> None:
        super().__init__(**fan_options)
        self.mean = finite_real("mean", mean, owner=self.name)
        self.std = finite_real("std", std, positive=True, owner=self.name)
        self.a = finite_real("a", a, owner=self.name)
        self.b = finite_real("b", b, owner=self.name)
        if not self.b > self.a:
            raise ValueError(f"{self.name}: b must be greater than a; got a={a!r}, b={b!r}")
        for key, bound in zip("ab", self._std_bounds()):
            if not math.isfinite(bound):
                raise ValueError(
                    f"{self.name}: ({key} - mean) / std overflows a float (a={a!r}, b={b!r}, mean={mean!r}, "
                    f"std={std!r}): the bound lies too many standard deviations from the mean"
                )

    def _params(self) -> dict[str, Any]:
        return {"mean": self.mean, "std": self.std, "a": self.a, "b": self.b}

    def _std_bounds(self) -> tuple[float, float]:
        return (self.a - self.mean) / self.std, (self.b - self.mean) / self.std

    def _draw(
        self, shape: tuple[int, ...], rng: np.random.Generator, dtype: np.dtype, opts: FanOptions
    ) -> np.ndarray:
        lo, hi = self._std_bounds()
        x = standard_truncated_normal(rng, shape, lo, hi, dtype, scale=self.std, shift=self.mean)
        return np.clip(x, x.dtype.type(self.a), x.dtype.type(self.b), out=x)

    def _moments(self, shape: tuple[int, ...], opts: FanOptions) -> WeightMoments:
        return _truncated_moments(self.mean, self.std, *self._std_bounds())

    def _magnitude(self, shape: tuple[int, ...], opts: FanOptions) -> tuple[float, str]:
        # |mean + std X| <= max(|a|, |b|), but std X alone may reach |mean| + max(|a|, |b|)
        return (abs(self.mean) + 2.0 * max(abs(self.a), abs(self.b)),
                f"mean={self.mean!r}, std={self.std!r}, a={self.a!r}, b={self.b!r}")


class TorchDefaultBias(Initializer):
    """PyTorch's default bias of ``nn.Linear``/``nn.Conv``: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).

    .. math:: b_j \\sim U(-k, k), \\quad k = 1/\\sqrt{\\text{fan\\_in}}, \\quad
              Var[b] = \\frac{1}{3\\,\\text{fan\\_in}}

    The bias vector carries no fan of its own, so ``fan_in`` is the fan-in of the
    layer's weight (e.g. ``compute_fans(w_shape, layout="torch")[0]``). PyTorch uses
    bound 0 for ``fan_in == 0``; here ``fan_in`` must be >= 1.

    Args:
        fan_in: the layer's fan-in, an int >= 1.
    """

    name = "torch_default_bias"

    def __init__(self, fan_in: int, **fan_options: Any) -> None:
        super().__init__(**fan_options)
        self.fan_in = positive_int("fan_in", fan_in, owner=self.name)
        if self.fan_in > sys.float_info.max:
            raise ValueError(f"{self.name}: fan_in must be at most {sys.float_info.max:.4g} (a float); "
                             f"got an integer of {len(str(self.fan_in))} digits")

    @property
    def bound(self) -> float:
        """The bound 1 / sqrt(fan_in)."""
        return 1.0 / math.sqrt(self.fan_in)

    def _params(self) -> dict[str, Any]:
        return {"fan_in": self.fan_in}

    def _draw(
        self, shape: tuple[int, ...], rng: np.random.Generator, dtype: np.dtype, opts: FanOptions
    ) -> np.ndarray:
        return uniform(rng, shape, -self.bound, self.bound, dtype)

    def _moments(self, shape: tuple[int, ...], opts: FanOptions) -> WeightMoments:
        return WeightMoments(0.0, 1.0 / (3.0 * self.fan_in))

    def _magnitude(self, shape: tuple[int, ...], opts: FanOptions) -> tuple[float, str]:
        return self.bound, f"fan_in={self.fan_in}"
