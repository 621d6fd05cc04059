"""Name registry: ``get``, ``available_initializers`` and ``recommended_initializer``."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Optional, Union

from .._validate import close_matches
from ..activations import ACTIVATION_NAMES, Activation
from .base import Initializer
from .fans import FAN_OPTION_NAMES
from .gains import GAIN_ALIASES, calculate_gain
from .scaling import (
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
from .structured import DeltaOrthogonal, Dirac, Identity, Orthogonal, Sparse

__all__ = ["REGISTRY", "ALIASES", "available_initializers", "resolve_name", "get", "recommended_initializer",
           "initializer_argument"]

_CLASSES: tuple[type[Initializer], ...] = (
    Zeros,
    Ones,
    Constant,
    RandomNormal,
    RandomUniform,
    TruncatedNormal,
    TruncNormal,
    VarianceScaling,
    GlorotNormal,
    GlorotUniform,
    XavierNormal,
    XavierUniform,
    HeNormal,
    HeUniform,
    KaimingNormal,
    KaimingUniform,
    LecunNormal,
    LecunUniform,
    Orthogonal,
    Identity,
    Dirac,
    DeltaOrthogonal,
    Sparse,
    TorchDefault,
    TorchDefaultBias,
)

REGISTRY: Mapping[str, type[Initializer]] = MappingProxyType({cls.name: cls for cls in _CLASSES})
"""Canonical (snake_case) name -> class."""

_EXTRA_ALIASES = {
    # Keras 3 aliases and class names that differ from varprop's.
    "zero": "zeros",
    "one": "ones",
    "OrthogonalInitializer": "orthogonal",
    "IdentityInitializer": "identity",
    # PyTorch's eye_ is identity with gain 1.
    "eye": "identity",
}

ALIASES: Mapping[str, str] = MappingProxyType(
    {**{cls.__name__: cls.name for cls in _CLASSES}, **_EXTRA_ALIASES}
)
"""Other accepted names -> canonical name: Keras class names (``HeNormal``), Keras's
``zero``/``one``, ``eye``. Also accepted without listing: PyTorch's in-place names
with a trailing underscore (``kaiming_normal_``) and lower-cased class names."""

_AMBIGUOUS = {
    "normal": (
        "'normal' means N(0, 0.05^2) in Keras (RandomNormal), N(0, 1) in PyTorch (normal_) and "
        "N(0, 0.01^2) in JAX (normal); varprop does not guess: use 'random_normal' with explicit "
        "mean and stddev, e.g. get('random_normal', stddev=1.0)"
    ),
    "uniform": (
        "'uniform' means U(-0.05, 0.05) in Keras (RandomUniform), U(0, 1) in PyTorch (uniform_) and "
        "U(0, 0.01) in JAX (uniform); varprop does not guess: use 'random_uniform' with explicit "
        "minval and maxval, e.g. get('random_uniform', minval=0.0, maxval=1.0)"
    ),
}

_LOOKUP: dict[str, str] = {**{n: n for n in REGISTRY}, **ALIASES}
_LOOKUP.update({k.lower(): v for k, v in list(_LOOKUP.items())})


def _unknown(what: str, name: str, close: list[str], valid: tuple[str, ...] | list[str]) -> str:
    """'unknown <what> 'x'; did you mean ...?; valid names: ...'."""
    parts = [f"unknown {what} {name!r}"]
    if close:
        parts.append(f"did you mean {', '.join(map(repr, close))}?")
    parts.append(f"valid names: {', '.join(valid)}")
    return "; ".join(parts)


def available_initializers(*, aliases: bool = False) -> tuple[str, ...]:
    """Canonical initializer names, sorted (with ``aliases=True``, every accepted name)."""
    names = set(REGISTRY) | (set(ALIASES) if aliases else set())
    return tuple(sorted(names, key=lambda s: (s.lower(), s)))


def resolve_name(name: str) -> str:
    """The canonical name for ``name`` (canonical, alias, ``trailing_`` PyTorch form, any case).

    Raises:
        ValueError: unknown or ambiguous name; the message lists close matches and
            every valid name.
    """
    if not isinstance(name, str):
        raise TypeError(f"initializer name must be a string; got {name!r} ({type(name).__name__})")
    key = name.strip()
    for candidate in (key, key.rstrip("_"), key.lower(), key.lower().rstrip("_")):
        if candidate in _LOOKUP:
            return _LOOKUP[candidate]
    base = key.lower().rstrip("_")
    if base in _AMBIGUOUS:
        raise ValueError(f"ambiguous initializer name {name!r}: {_AMBIGUOUS[base]}")
    matches = close_matches(key, list(_LOOKUP), n=6)
    close = list(dict.fromkeys(_LOOKUP[m] for m in matches))[:4]
    raise ValueError(_unknown("initializer", name, close, available_initializers()))


def _build(name: str, params: Mapping[str, Any]) -> Initializer:
    cls = REGISTRY[name]
    try:
        inspect.signature(cls).bind(**params)
    except TypeError as exc:
        raise TypeError(f"{name}: {exc}; it takes {', '.join(cls.parameter_names())}") from None
    return cls(**params)


def get(identifier: Union[str, Mapping[str, Any], Initializer], **kwargs: Any) -> Initializer:
    """An initializer from a name, a config dict, or an initializer object.

    * a name (see :func:`available_initializers`; Keras class names such as
      ``"HeNormal"`` and PyTorch's ``"kaiming_normal_"`` work too) with its
      parameters as keywords: ``get("random_normal", stddev=0.1)``,
      ``get("kaiming_normal", a=0.2, layout="torch")``;
    * a config: ``get(init.get_config())`` (``{"name": ..., **params}``), or a Keras
      config ``{"class_name": "HeNormal", "config": {...}}`` (``config`` a dict or
      null; its ``seed`` must be None: varprop takes the seed when drawing; Keras 3's
      ``input_axes``/``output_axes`` are understood, see
      :class:`~varprop.initializers.VarianceScaling`); ``kwargs`` override its entries;
    * an :class:`Initializer`: returned as is (no ``kwargs`` allowed).

    Raises:
        ValueError: unknown or ambiguous name (with close matches and the valid
            names), a malformed config, bad parameter values.
        TypeError: unexpected parameters (listing the accepted ones), a wrong
            identifier type, a Keras ``config`` that is not a dict.

    Example:
        >>> get("he_normal").moments((256, 128)).var == 2 / 256
        True
    """
    if isinstance(identifier, Initializer):
        if kwargs:
            raise TypeError(
                f"get: parameters {sorted(kwargs)} cannot be applied to the initializer object "
                f"{identifier!r}; pass its name or config instead"
            )
        return identifier
    if isinstance(identifier, str):
        return _build(resolve_name(identifier), kwargs)
    if isinstance(identifier, Mapping):
        config = dict(identifier)
        if "class_name" in config:  # Keras serialization
            name = config["class_name"]
            inner = config.get("config")
            if inner is None:
                inner = {}
            if not isinstance(inner, Mapping):
                raise TypeError(
                    f"get: the Keras config of {name!r} has 'config' = {inner!r} "
                    f"({type(inner).__name__}); config must be a dict of parameters (or null)"
                )
            params = dict(inner)
            seed = params.pop("seed", None)
            if seed is not None:
                raise ValueError(
                    f"get: the Keras config of {name!r} fixes seed={seed!r}; varprop takes the seed "
                    "when drawing, init(shape, seed=...): remove it from the config"
                )
        elif "name" in config:
            name = config.pop("name")
            params = config
        else:
            raise ValueError(
                f"get: a config dict needs a 'name' key (or Keras's 'class_name'); got keys {sorted(config)}"
            )
        params.update(kwargs)
        bad = [k for k in params if not isinstance(k, str)]
        if bad:
            raise TypeError(f"get: config parameter names must be strings; got {bad!r}")
        return _build(resolve_name(name), params)
    raise TypeError(
        "get: identifier must be an initializer name, a config dict or an Initializer; "
        f"got {identifier!r} ({type(identifier).__name__})"
    )


def recommended_initializer(activation: str, **params: Any) -> Initializer:
    """The initializer that keeps the forward signal of ``activation`` alive in depth.

    ====================================  ====================================================
    activation                            initializer, and why
    ====================================  ====================================================
    relu                                  ``he_normal``: Var[W] = 2 / fan_in; ReLU halves
                                          E[z^2], the 2 restores it (He et al. 2015).
    leaky_relu (negative_slope s)         ``kaiming_normal(a=s)``: Var[W] = 2 / ((1 + s^2)
                                          fan_in), since E[phi^2] = (1 + s^2) q / 2.
    selu                                  ``lecun_normal``: Var[W] = 1 / fan_in makes mean 0,
                                          variance 1 the attracting fixed point
                                          (Klambauer et al. 2017), not PyTorch's gain 3/4.
    linear, tanh, softsign, sigmoid       ``glorot_normal``: Var[W] = 2 / (fan_in + fan_out)
                                          (Glorot & Bengio 2010). Their slope at 0 is the
                                          linear regime: sigma_w^2 = 1 keeps forward (and,
                                          for square layers, backward) variance, and for
                                          tanh it is the edge of chaos (chi_1 = 1 at q* = 0,
                                          Schoenholz et al. 2017). Sigmoid's mean 1/2 and
                                          slope 1/4 defeat every zero-mean scheme; Glorot is
                                          its conventional choice (Keras's default).
    elu (alpha), gelu, gelu_tanh, silu    ``variance_scaling(g^2, "fan_in",
    (swish), softplus                     "truncated_normal")`` with g from
                                          :func:`calculate_gain`, g^2 = 1 / E[phi(z)^2]:
                                          keeps E[z^2] = 1 layer after layer for
                                          unit-variance inputs (the He argument for smooth
                                          ReLU-likes).
    ====================================  ====================================================

    Args:
        activation: a varprop activation name (case-insensitive; ``swish`` = ``silu``).
        **params: the activation's parameter (``negative_slope`` for leaky_relu,
            ``alpha`` for elu) and/or fan options for the initializer (``layout``,
            ``in_axis``, ...).

    Raises:
        ValueError: unknown activation (with close matches).
        TypeError: a parameter that neither the activation nor the fan options take.

    Example:
        >>> recommended_initializer("leaky_relu", negative_slope=0.2)
        KaimingNormal(a=0.2, mode='fan_in', nonlinearity='leaky_relu')
    """
    if not isinstance(activation, str):
        raise TypeError(f"activation must be a string such as 'relu'; got {activation!r}")
    key = activation.strip().lower()
    key = GAIN_ALIASES.get(key, key)
    if key not in ACTIVATION_NAMES:
        names = sorted({*ACTIVATION_NAMES, *GAIN_ALIASES})
        close = close_matches(key, names)
        raise ValueError(_unknown("activation", activation, close, names))
    act = Activation(key)  # its record holds the scheme and the parameter its gain takes
    act_param, default = act.gain_rule[:2] if act.gain_rule else (None, None)
    fan_options = {k: v for k, v in params.items() if k in FAN_OPTION_NAMES}
    rest = {k: v for k, v in params.items() if k not in FAN_OPTION_NAMES}
    value = rest.pop(act_param, None) if act_param else None
    if rest:
        takes = ([act_param] if act_param else []) + list(FAN_OPTION_NAMES)
        raise TypeError(
            f"recommended_initializer({key!r}): unexpected parameter(s) {sorted(rest)}; it takes {takes}"
        )
    if act.init == "he":
        return HeNormal(**fan_options)
    if act.init == "lecun":
        return LecunNormal(**fan_options)
    if act.init == "glorot":
        return GlorotNormal(**fan_options)
    gain = calculate_gain(key, value)
    if act.init == "kaiming":
        slope = default if value is None else value
        return KaimingNormal(a=slope, mode="fan_in", nonlinearity="leaky_relu", **fan_options)
    return VarianceScaling(gain * gain, "fan_in", "truncated_normal", **fan_options)


def initializer_argument(owner: str, name: str, value: Any,
                         optional: bool = False) -> Optional[Initializer]:
    """A layer's initializer field as an :class:`Initializer`: an object as it is, a name
    or config dict through :func:`get`; None where ``optional``. Errors name the owner
    and the field (``"Dense: init: unknown name ..."``)."""
    if value is None and optional:
        return None
    if isinstance(value, Initializer):
        return value
    if isinstance(value, (str, dict)):
        try:
            return get(value)
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"{owner}: {name}: {exc}") from None
    raise TypeError(f"{owner}: {name} must be an initializer (a name, a config dict or an "
                    f"Initializer){' or None' if optional else ''}, got "
                    f"{type(value).__name__} {value!r}")
