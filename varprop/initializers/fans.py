"""Fans: how many inputs feed one output unit, and how many outputs one input feeds.

varprop computes fans from explicit axes, as JAX does; the layouts are presets of
those axes:

========  ===========================  =================  ======================
layout    dense / conv kernel           in_axis, out_axis  from
========  ===========================  =================  ======================
keras     ``(..., in, out)``            -2, -1             Keras, varprop itself
torch     ``(out, in, ...)``            1, 0               PyTorch ``nn.Conv``
jax       ``(..., in, out)`` by default -2, -1             ``jax.nn.initializers``
========  ===========================  =================  ======================

Explicit ``in_axis``/``out_axis`` (an int or a tuple of ints, as in JAX) override the
layout's preset axes. Axes in none of ``in_axis``, ``out_axis``, ``batch_axis`` form
the receptive field (kernel spatial axes) ``R``; then, for ``groups=1``,
``fan_in = R * shape[in_axis]`` and ``fan_out = R * shape[out_axis]``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Union

import numpy as np

from .._validate import boolean, integer, one_of, positive_int, shape_tuple
from ._core import ShapeLike

__all__ = ["LAYOUTS", "FAN_OPTION_NAMES", "FanOptions", "compute_fans"]

LAYOUTS: tuple[str, ...] = ("keras", "torch", "jax")
"""Layout presets: ``keras`` ``(..., in, out)`` (varprop's own dense layout),
``torch`` ``(out, in, ...)``, ``jax`` (JAX's default axes -2 and -1, overridable)."""

_PRESET_AXES: dict[str, tuple[int, int]] = {"keras": (-2, -1), "jax": (-2, -1), "torch": (1, 0)}

FAN_OPTION_NAMES: tuple[str, ...] = (
    "layout",
    "in_axis",
    "out_axis",
    "batch_axis",
    "groups",
    "transposed",
    "depthwise",
)
"""Keyword arguments that every initializer accepts at construction and that
:meth:`Initializer.moments` accepts as overrides."""

AxisSpec = Union[None, int, Sequence[int]]


def _axes_arg(argname: str, value: AxisSpec, *, allow_none: bool) -> Union[None, int, tuple[int, ...]]:
    """Validate an axis argument: None (when allowed), an int, or a sequence of ints."""
    if value is None and allow_none:
        return None
    if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
        return int(value)
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        return tuple(integer(f"{argname}[{i}]", v) for i, v in enumerate(value))
    raise TypeError(f"{argname} must be an int or a sequence of ints; got {value!r} ({type(value).__name__})")


def _normalize(argname: str, axes: Union[int, tuple[int, ...]], shape: tuple[int, ...]) -> tuple[int, ...]:
    rank = len(shape)
    seq = (axes,) if isinstance(axes, int) else axes
    out = []
    for a in seq:
        if not -rank <= a < rank:
            raise ValueError(
                f"{argname}={axes!r} is out of range for the rank-{rank} shape {shape}; "
                f"pass {argname} naming axes in [-{rank}, {rank - 1}]"
                if rank
                else f"{argname}={axes!r} is out of range for the rank-0 shape (); pass {argname}=()"
            )
        out.append(a % rank)
    if len(set(out)) != len(out):
        raise ValueError(f"{argname}={axes!r} names the same axis twice for shape {shape}")
    return tuple(out)


@dataclass(frozen=True)
class FanOptions:
    """How to read the fans off a weight shape (see :func:`compute_fans`).

    Built and validated by :meth:`create`; immutable and hashable, so fans are
    cached per (shape, options).
    """

    layout: str = "keras"
    in_axis: Union[None, int, tuple[int, ...]] = None
    out_axis: Union[None, int, tuple[int, ...]] = None
    batch_axis: tuple[int, ...] = ()
    groups: int = 1
    transposed: bool = False
    depthwise: bool = False

    @classmethod
    def create(
        cls,
        layout: str = "keras",
        in_axis: AxisSpec = None,
        out_axis: AxisSpec = None,
        batch_axis: AxisSpec = (),
        groups: int = 1,
        transposed: bool = False,
        depthwise: bool = False,
    ) -> "FanOptions":
        """Validate the fan options of :func:`compute_fans` and bundle them."""
        layout = one_of("layout", layout, LAYOUTS)
        ia = _axes_arg("in_axis", in_axis, allow_none=True)
        oa = _axes_arg("out_axis", out_axis, allow_none=True)
        ba = _axes_arg("batch_axis", batch_axis, allow_none=False)
        ba = (ba,) if isinstance(ba, int) else ba
        groups = positive_int("groups", groups)
        transposed = boolean("transposed", transposed)
        depthwise = boolean("depthwise", depthwise)
        if depthwise:
            if layout == "torch":
                raise ValueError(
                    "depthwise=True describes the Keras DepthwiseConv kernel (..., in, multiplier); "
                    "in the torch layout a depthwise kernel (in*multiplier, 1, ...) is a grouped one: "
                    "pass groups=in_channels instead"
                )
            if transposed:
                raise ValueError("depthwise=True and transposed=True cannot be combined (no such layer)")
        return cls(layout, ia, oa, ba, groups, transposed, depthwise)

    def replace(self, **overrides: Any) -> "FanOptions":
        """A copy with some options replaced (validated again); no overrides: ``self``."""
        if not overrides:
            return self
        unknown = sorted(set(overrides) - set(FAN_OPTION_NAMES))
        if unknown:
            raise TypeError(f"unknown fan option(s) {unknown}; valid: {FAN_OPTION_NAMES}")
        current = {name: getattr(self, name) for name in FAN_OPTION_NAMES}
        current.update(overrides)
        return FanOptions.create(**current)

    def to_config(self) -> dict[str, Any]:
        """JSON-able dict of every option (tuples as lists)."""
        def js(v: Any) -> Any:
            return list(v) if isinstance(v, tuple) else v

        return {name: js(getattr(self, name)) for name in FAN_OPTION_NAMES}

    def axes(self, shape: tuple[int, ...]) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
        """Resolve ``(in_axes, out_axes, batch_axes)`` for ``shape`` as non-negative ints.

        Raises:
            ValueError: the axes cannot be inferred (rank too small for the layout's
                preset), are out of range, or overlap; the message says what to pass.
        """
        return _resolve_axes(shape, self)

    def out_axes(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """The output axes alone (``out_axis`` or the layout's), for schemes that set apart
        only the output axis (orthogonal, sparse); ``in_axis`` is not consulted."""
        axes = self.out_axis if self.out_axis is not None else _PRESET_AXES[self.layout][1]
        if not shape:
            raise ValueError("the rank-0 shape () has no output axis; pass a shape of rank >= 1")
        return _normalize("out_axis", axes, shape)

    def fans(self, shape: tuple[int, ...]) -> tuple[int, int]:
        """``(fan_in, fan_out)`` of ``shape`` under these options (cached)."""
        return _fans(shape, self)


@lru_cache(maxsize=4096)
def _resolve_axes(
    shape: tuple[int, ...], opts: FanOptions
) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    rank = len(shape)
    pre_in, pre_out = _PRESET_AXES[opts.layout]
    ia, oa = opts.in_axis, opts.out_axis
    if rank < 2 and (ia is None or oa is None):
        raise ValueError(
            f"cannot infer the fans of the rank-{rank} shape {shape}: layout={opts.layout!r} needs "
            "rank >= 2; pass in_axis and out_axis explicitly (e.g. in_axis=0, out_axis=() for a "
            "vector whose length is its fan-in, or in_axis=(), out_axis=() for fans (1, 1))"
        )
    in_axes = _normalize("in_axis", pre_in if ia is None else ia, shape)
    out_axes = _normalize("out_axis", pre_out if oa is None else oa, shape)
    batch_axes = _normalize("batch_axis", opts.batch_axis, shape)
    roles = (("in_axis", in_axes), ("out_axis", out_axes), ("batch_axis", batch_axes))
    for i, (na, a) in enumerate(roles):
        for nb, b in roles[i + 1:]:
            common = set(a) & set(b)
            if common:
                raise ValueError(
                    f"{na} {a} and {nb} {b} share axis {sorted(common)} of shape {shape}: each axis "
                    f"plays one role; pass {na} and {nb} naming different axes"
                )
    return in_axes, out_axes, batch_axes


@lru_cache(maxsize=4096)
def _fans(shape: tuple[int, ...], opts: FanOptions) -> tuple[int, int]:
    in_axes, out_axes, batch_axes = _resolve_axes(shape, opts)
    used = set(in_axes) | set(out_axes) | set(batch_axes)
    receptive = math.prod(d for i, d in enumerate(shape) if i not in used)
    n_in_axis = math.prod(shape[i] for i in in_axes)
    n_out_axis = math.prod(shape[i] for i in out_axes)
    g = opts.groups
    if opts.depthwise:
        if g not in (1, n_in_axis):
            raise ValueError(
                f"groups={g} conflicts with depthwise=True for shape {shape}: a depthwise kernel "
                f"(..., in, multiplier) has groups = in = {n_in_axis}; leave groups=1 or pass {n_in_axis}"
            )
        return receptive, receptive * n_out_axis
    if n_out_axis % g:
        what = "input" if opts.transposed else "output"
        raise ValueError(
            f"groups={g} must divide the {n_out_axis} channels along out_axis {out_axes} of shape "
            f"{shape} (the layer's {what} channels); pass the groups of the layer"
        )
    fan_in, fan_out = receptive * n_in_axis, receptive * (n_out_axis // g)
    if opts.transposed:
        fan_in, fan_out = fan_out, fan_in
    return fan_in, fan_out


def compute_fans(
    shape: ShapeLike,
    *,
    layout: str = "keras",
    in_axis: AxisSpec = None,
    out_axis: AxisSpec = None,
    batch_axis: AxisSpec = (),
    groups: int = 1,
    transposed: bool = False,
    depthwise: bool = False,
) -> tuple[int, int]:
    """Fan-in and fan-out of a weight shape: the layer's true fans, layout made explicit.

    ``fan_in`` is the number of inputs that feed one output unit, ``fan_out`` the
    number of outputs that one input feeds. With ``R`` the product of the receptive
    field axes (all axes not in ``in_axis``, ``out_axis``, ``batch_axis``),
    ``C_in = prod(shape[in_axis])`` and ``C_out = prod(shape[out_axis])``:

    .. math::
        \\text{fan\\_in} = R\\,C_{in}, \\qquad \\text{fan\\_out} = R\\,C_{out} / \\text{groups}

    * **Grouped convolutions** (``groups=g``): the in axis holds ``in_channels / g``
      (as in PyTorch ``(out, in/g, *k)`` and Keras/Flax ``(*k, in/g, out)``), so
      fan_in is already right; each input feeds only the ``out/g`` outputs of its
      group, so fan_out is divided by ``g``. PyTorch's
      ``_calculate_fan_in_and_fan_out`` ignores groups and overcounts fan_out
      ``g``-fold (pytorch#23854); Keras does the same. For a PyTorch depthwise conv
      ``(in*m, 1, *k)`` pass ``groups=in``: fans ``(R, R*m)``.
    * **Keras DepthwiseConv kernels** ``(*k, in, multiplier)`` store every input
      channel on the in axis: pass ``depthwise=True`` (fans ``(R, R*multiplier)``);
      Keras itself returns ``(R*in, R*multiplier)``, overcounting fan_in.
    * **Transposed convolutions** (``transposed=True``): the kernel is stored as the
      convolution it transposes (PyTorch ``ConvTranspose`` ``(in, out/g, *k)``, Keras
      ``Conv*DTranspose`` ``(*k, out, in)``), so the layer's fans are the swapped
      ones: ``(R*C_out/g, R*C_in)``. PyTorch and Keras return the unswapped values
      for these kernels; ``transposed=False`` reproduces them. Strides are ignored,
      as in every library.
    * **Batch axes** (``batch_axis``, JAX): ignored entirely (a stack of layers).

    Args:
        shape: the weight shape.
        layout: ``"keras"`` (``(..., in, out)``), ``"torch"`` (``(out, in, ...)``) or
            ``"jax"`` (JAX's defaults ``in_axis=-2``, ``out_axis=-1``).
        in_axis, out_axis: an int or a tuple of ints overriding the layout's axes;
            ``()`` is allowed (a size-1 role), e.g. ``in_axis=0, out_axis=()`` for a
            vector whose length is its fan-in.
        batch_axis: axes to ignore.
        groups: the convolution's groups (>= 1), dividing the out axis.
        transposed: the kernel belongs to a transposed convolution.
        depthwise: the kernel is a Keras DepthwiseConv kernel (not with ``torch``).

    Returns:
        ``(fan_in, fan_out)`` as Python ints.

    Raises:
        ValueError: rank too small for the layout (rank 0 or 1 without explicit
            axes), axes out of range or overlapping, ``groups`` not dividing the
            channels, an unknown layout.
        TypeError: non-integer shape entries or axes.

    Example:
        >>> compute_fans((3, 3, 16, 32))                   # Keras conv kernel
        (144, 288)
        >>> compute_fans((32, 16, 3, 3), layout="torch")   # the same layer, PyTorch
        (144, 288)
    """
    opts = FanOptions.create(layout, in_axis, out_axis, batch_axis, groups, transposed, depthwise)
    return opts.fans(shape_tuple("shape", shape))
