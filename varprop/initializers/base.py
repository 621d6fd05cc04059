"""The :class:`Initializer` base class that every scheme of varprop subclasses."""

from __future__ import annotations

import json
import math
from typing import Any, ClassVar

import numpy as np

from .._validate import SeedLike, as_generator, float_dtype, shape_tuple
from ._core import ShapeLike, WeightMoments
from .fans import FAN_OPTION_NAMES, FanOptions

__all__ = ["Initializer"]

_MAX_SIZE = np.iinfo(np.intp).max
"""The most entries an array can have (numpy's limit)."""


class Initializer:
    """A weight-initialization scheme: draws arrays and states their analytic moments.

    Subclasses set :attr:`name` and implement ``_draw``, ``_moments`` and
    ``_params`` (and ``_check`` for rank requirements). Every initializer accepts
    the fan options of :func:`~varprop.initializers.compute_fans` (``layout``,
    ``in_axis``, ``out_axis``, ``batch_axis``, ``groups``, ``transposed``,
    ``depthwise``) at construction; the default layout is varprop's ``keras``
    ``(..., in, out)`` for every scheme. Schemes whose draw does not depend on them
    (zeros, random_normal, ...) validate and ignore them and leave them out of their
    config.

    Usage::

        init = HeNormal(layout="torch")
        w = init((256, 128, 3, 3), seed=0)          # ndarray, float32
        m = init.moments((256, 128, 3, 3))          # WeightMoments(mean=0.0, var=2/1152, ...)
        get(init.get_config()) == init              # True

    Randomness: ``seed`` is normalized by :func:`numpy.random.default_rng`, so an int
    gives the same array on every machine and thread count (QR-based schemes: to
    rounding), and a Generator is used as it is. No global state is read or written.
    """

    name: ClassVar[str] = "initializer"
    """Registry name (e.g. ``"he_normal"``)."""

    uses_fan_options: ClassVar[bool] = False
    """Whether the fan options change what this scheme draws (and enter its config)."""

    def __init__(self, **fan_options: Any) -> None:
        unknown = sorted(set(fan_options) - set(FAN_OPTION_NAMES))
        if unknown:
            hint = (
                "; pass the seed when drawing: init(shape, seed=...)" if "seed" in unknown else ""
            )
            raise TypeError(
                f"{self.name}: unexpected parameter(s) {unknown}{hint}. It takes "
                f"{self.parameter_names()}"
            )
        self.fan_options: FanOptions = FanOptions.create(**fan_options)

    # ------------------------------------------------------------------ public API
    def __call__(self, shape: ShapeLike, seed: SeedLike = None, dtype: Any = np.float32) -> np.ndarray:
        """Draw a C-contiguous array of ``shape`` and ``dtype`` (a real floating dtype).

        ``dtype=None`` means the default, float32 (as Keras's ``dtype=None`` means its
        float32 ``floatx``), not numpy's ``np.dtype(None)``, float64.

        Shapes with a zero dimension give an empty array (after the rank checks). The
        rank-0 shape ``()`` gives a 0-d array from the elementwise schemes (zeros,
        random_normal, ...); the fan-based ones need ``in_axis=()``, ``out_axis=()``
        there (fans ``(1, 1)``, as :func:`compute_fans`), the structured ones refuse it.

        Entries beyond the dtype's range are refused, never returned as ``inf``: with
        ``random_normal(stddev=1e300)`` a float64 draw is finite (``1e300 * N(0, 1)``)
        while a float32 one raises ValueError naming ``stddev`` (float32 ends at 3.4e38).

        Raises:
            TypeError: bad ``shape`` entries, a non-floating ``dtype``, a bad ``seed``.
            ValueError: a shape this scheme cannot fill (e.g. orthogonal of rank 1), a
                shape with more entries than an array can hold, parameters whose
                entries overflow ``dtype``.
        """
        shape = shape_tuple("shape", shape)
        dt = np.dtype(np.float32) if dtype is None else float_dtype("dtype", dtype)
        rng = as_generator(seed)
        self._check(shape, self.fan_options)
        size = math.prod(shape)
        if size == 0:
            return np.zeros(shape, dtype=dt)
        if size > _MAX_SIZE:
            raise ValueError(
                f"{self.name}: shape {shape} has a {len(str(size))}-digit number of entries, more than "
                f"an array can hold ({_MAX_SIZE})"
            )
        bound, params = self._magnitude(shape, self.fan_options)
        top = float(np.finfo(dt).max)
        if bound <= top:  # entries cannot leave the dtype's range: no check needed
            out = np.asarray(self._draw(shape, rng, dt, self.fan_options))
            if out.dtype != dt:
                out = out.astype(dt)
        else:
            with np.errstate(over="ignore", invalid="ignore"):
                out = np.asarray(self._draw(shape, rng, dt, self.fan_options))
                if out.dtype != dt:
                    out = out.astype(dt)
            if not np.isfinite(out).all():
                raise ValueError(
                    f"{self.name}: with {params} the entries exceed the {dt.name} range "
                    f"(|x| <= {top:.4g}); draw in a wider dtype (dtype=np.float64) or use smaller values"
                )
        # np.asarray keeps a 0-d result 0-d (np.ascontiguousarray would make it 1-d).
        return out if out.flags.c_contiguous else np.ascontiguousarray(out)

    def moments(self, shape: ShapeLike, **fan_options: Any) -> WeightMoments:
        """Analytic per-entry moments of what this initializer draws for ``shape``.

        Args:
            shape: the weight shape.
            **fan_options: overrides of the construction-time fan options (``layout``,
                ``in_axis``, ...): the moments an initializer built with them would
                draw. Without overrides, exactly what ``self(shape)`` draws.

        Returns:
            A :class:`WeightMoments` (mean, var, symmetric, structure).

        Raises:
            ValueError: the shape cannot be filled, or a fan the variance divides by
                is zero.
        """
        shape = shape_tuple("shape", shape)
        opts = self.fan_options.replace(**fan_options)
        self._check(shape, opts)
        return self._moments(shape, opts)

    def get_config(self) -> dict[str, Any]:
        """JSON-able ``{"name": ..., **params}``; ``get(config)`` rebuilds an equal initializer."""
        config: dict[str, Any] = {"name": self.name, **self._params()}
        if self.uses_fan_options:
            config.update(self.fan_options.to_config())
        return config

    def to_config(self) -> dict[str, Any]:
        """Alias of :meth:`get_config`."""
        return self.get_config()

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "Initializer":
        """Rebuild from :meth:`get_config` output (the ``name`` key is optional)."""
        params = dict(config)
        name = params.pop("name", cls.name)
        if name != cls.name:
            raise ValueError(f"{cls.__name__}.from_config: config names {name!r}, not {cls.name!r}")
        return cls(**params)

    @classmethod
    def parameter_names(cls) -> tuple[str, ...]:
        """Keyword parameters the constructor accepts (scheme parameters, then fan options)."""
        import inspect

        own = [
            p.name
            for p in inspect.signature(cls.__init__).parameters.values()
            if p.name != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        ]
        return tuple(dict.fromkeys([*own, *FAN_OPTION_NAMES]))

    def __repr__(self) -> str:
        params = {k: v for k, v in self.get_config().items() if k != "name"}
        if self.uses_fan_options:
            defaults = FanOptions().to_config()
            params = {k: v for k, v in params.items() if not (k in defaults and defaults[k] == v)}
        inner = ", ".join(f"{k}={v!r}" for k, v in params.items())
        return f"{type(self).__name__}({inner})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Initializer):
            return NotImplemented
        return type(self) is type(other) and self.get_config() == other.get_config()

    def __hash__(self) -> int:
        return hash(json.dumps(self.get_config(), sort_keys=True))

    # ------------------------------------------------------------------ subclass hooks
    def _params(self) -> dict[str, Any]:
        """The scheme's own parameters, JSON-able (not the fan options)."""
        return {}

    def _magnitude(self, shape: tuple[int, ...], opts: FanOptions) -> tuple[float, str]:
        """``(bound, params)``: a bound on ``|W|`` that a draw exceeds with probability
        below 1e-300 (``inf`` if unknown, or where it overflows), and the parameters that
        set it, as ``"stddev=0.05"`` for the message. A draw whose bound exceeds the
        dtype's range is checked for entries that overflowed."""
        return math.inf, ", ".join(f"{k}={v!r}" for k, v in self._params().items()) or "its parameters"

    def _check(self, shape: tuple[int, ...], opts: FanOptions) -> None:
        """Raise ValueError if this scheme cannot fill ``shape`` (rank, channel rules)."""

    def _draw(
        self, shape: tuple[int, ...], rng: np.random.Generator, dtype: np.dtype, opts: FanOptions
    ) -> np.ndarray:
        raise NotImplementedError

    def _moments(self, shape: tuple[int, ...], opts: FanOptions) -> WeightMoments:
        raise NotImplementedError
