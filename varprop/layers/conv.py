"""The convolution ``z = conv(x, W) + b`` over 1 or 2 spatial dims, channels last:
validation, parameter draw, array forward and backward on the convolution kernels, and
the per-pixel mean-field rule, side by side.

Mean-field rule (docs/theory.md, section 8; Xiao et al. 2018, "Dynamical
Isometry and a Mean Field Theory of CNNs"; Novak et al. 2019): with independent weights
of mean 0 and variance ``v``, an output pixel's variance needs only the second moments of
the input pixels in its window, ``Var[z_p] = v (C_in / groups) sum_k E[x_{p+k}^2] + v_b``.
Zero padding contributes nothing, so border pixels lose variance, and the loss travels
inward with depth. Covariances between pixels are carried only where a later layer
needs them (pooling), as neural-tangents does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from .._validate import one_of, positive_int
from ..initializers import Initializer
from ..profile import LayerRecord
from ._spatial import SpatialGradient, numel, spatial_of
from .base import Layer, Step, weighted_backward, weighted_forward
from ..initializers import initializer_argument

__all__ = ["Conv"]


def _tuple(name: str, value: Any, n: int, owner: str) -> tuple[int, ...]:
    """An int or a length-``n`` sequence of positive ints, as a tuple."""
    if isinstance(value, (list, tuple)):
        if len(value) != n:
            raise ValueError(f"{owner}: {name} needs {n} entries (one per spatial dim), "
                             f"got {value!r}")
        return tuple(positive_int(name, v, owner=owner) for v in value)
    return (positive_int(name, value, owner=owner),) * n


def _padding(value: Any, n: int, owner: str) -> Any:
    """"valid", "same", an int, per-dim ints or per-dim (before, after) pairs; checked
    here for type and sign, resolved per input size by the kernels' rule."""
    if isinstance(value, str):
        return one_of("padding", value.lower(), ("valid", "same"), owner=owner)
    if isinstance(value, (list, tuple)):
        if len(value) != n:
            raise ValueError(f"{owner}: padding needs {n} entries (one per spatial dim), "
                             f"got {value!r}")
        out = []
        for v in value:
            if isinstance(v, (list, tuple)):
                if len(v) != 2:
                    raise ValueError(f"{owner}: padding pairs are (before, after), got {v!r}")
                out.append(tuple(_non_negative(p, owner) for p in v))
            else:
                out.append(_non_negative(v, owner))
        return tuple(out)
    return _non_negative(value, owner)


def _non_negative(v: Any, owner: str) -> int:
    from .._validate import integer
    v = integer("padding", v, owner=owner)
    if v < 0:
        raise ValueError(f"{owner}: padding must be >= 0, got {v}")
    return v


def _second_moment_exact(act: Any, z: Any, s: Any) -> bool:
    """With few inputs per unit, z given the weights is Gaussian with a variance that
    varies across units: E[phi(z)^2] is still the Gaussian one when it is linear in
    that variance, i.e. for a linear or ReLU-like (kink at 0) activation of a
    zero-mean z (no bias, zero-mean inputs and weights)."""
    if act.name == "linear":
        return True
    return bool(act.piecewise_linear and act.kinks == (0.0,) and np.all(z.mean == 0.0)
                and np.all(s.mean == 0.0))


@dataclass(frozen=True)
class Conv(Layer):
    """A convolution over 1 or 2 spatial dims of channels-last input ``(batch, *spatial,
    in_channels)`` with a kernel of shape ``(*kernel_size, in_channels // groups,
    out_channels)`` (Keras's layout; ``layout="torch"`` draws it in PyTorch's
    ``(out, in // groups, *kernel_size)`` layout, so that initializers see the shape
    PyTorch gives them, and transposes).

    ``kernel_size``, ``stride`` and ``dilation`` are ints or one per spatial dim (an int
    ``kernel_size`` means 2-D unless ``spatial_dims=1``); ``padding`` is "valid", "same"
    (TensorFlow's rule, PyTorch's for stride 1), an int, per-dim ints or per-dim
    ``(before, after)`` pairs; ``groups`` must divide both channel counts
    (``groups == in_channels`` is a depthwise convolution). ``init`` and ``bias_init``
    as for :class:`~varprop.layers.Dense`; the fans are :func:`compute_fans`'s
    (``receptive field * channels``).
    """

    in_channels: int
    out_channels: int
    kernel_size: Any
    init: Initializer
    bias_init: Initializer | None = None
    stride: Any = 1
    padding: Any = "valid"
    dilation: Any = 1
    groups: int = 1
    spatial_dims: int | None = None
    layout: str = "keras"

    weighted = True

    def __post_init__(self) -> None:
        owner = "Conv"
        for name in ("in_channels", "out_channels", "groups"):
            object.__setattr__(self, name, positive_int(name, getattr(self, name), owner=owner))
        dims = self.spatial_dims
        if dims is None:
            dims = len(self.kernel_size) if isinstance(self.kernel_size, (list, tuple)) else 2
        if dims not in (1, 2) or isinstance(dims, bool):
            raise ValueError(f"{owner}: spatial_dims must be 1 or 2, got {dims!r}")
        object.__setattr__(self, "spatial_dims", dims)
        object.__setattr__(self, "kernel_size", _tuple("kernel_size", self.kernel_size, dims, owner))
        object.__setattr__(self, "stride", _tuple("stride", self.stride, dims, owner))
        object.__setattr__(self, "dilation", _tuple("dilation", self.dilation, dims, owner))
        object.__setattr__(self, "padding", _padding(self.padding, dims, owner))
        object.__setattr__(self, "layout", one_of("layout", self.layout, ("keras", "torch"),
                                                  owner=owner))
        for name in ("in_channels", "out_channels"):
            if getattr(self, name) % self.groups:
                raise ValueError(f"{owner}: groups ({self.groups}) must divide {name} "
                                 f"({getattr(self, name)})")
        object.__setattr__(self, "init", initializer_argument(owner, "init", self.init, False))
        object.__setattr__(self, "bias_init",
                           initializer_argument(owner, "bias_init", self.bias_init, True))

    # ------------------------------------------------------------------ shapes
    @property
    def n_in(self) -> int:
        """The fan in: receptive field times input channels per group."""
        return math.prod(self.kernel_size) * (self.in_channels // self.groups)

    @property
    def n_out(self) -> int:
        return self.out_channels

    @property
    def weight_shape(self) -> tuple[int, ...]:
        """The kernel's shape as varprop holds it: ``(*kernel_size, in // groups, out)``."""
        return (*self.kernel_size, self.in_channels // self.groups, self.out_channels)

    @property
    def drawn_shape(self) -> tuple[int, ...]:
        """The shape the initializer draws (PyTorch's ``(out, in // groups, *k)`` for
        ``layout="torch"``)."""
        if self.layout == "torch":
            return (self.out_channels, self.in_channels // self.groups, *self.kernel_size)
        return self.weight_shape

    def geometry(self, spatial: tuple[int, ...]) -> dict[str, Any]:
        """Stride, padding (resolved to per-dim ``(before, after)`` pairs for an input of
        these spatial dims), dilation and groups: the kernels' keyword arguments."""
        from ..conv_kernels import resolve_padding
        pads = resolve_padding(self.padding, spatial, self.kernel_size, self.stride,
                               self.dilation)
        return {"stride": self.stride, "padding": pads, "dilation": self.dilation,
                "groups": self.groups}

    def output_width(self, width: Any, position: str) -> tuple[int, ...]:
        spatial, channels = spatial_of(width, "Conv", position, self.spatial_dims)
        if channels != self.in_channels:
            raise ValueError(f"{position}: Conv expects {self.in_channels} input channels "
                             f"but receives {channels} (input shape {width!r})")
        from ..conv_kernels import conv_output_shape
        try:
            out = conv_output_shape(spatial, self.kernel_size, self.stride, self.padding,
                                    self.dilation)
        except ValueError as exc:
            raise ValueError(f"{position}: {exc}") from None
        return (*out, self.out_channels)

    # ------------------------------------------------------------------ parameters
    def draw(self, run: Any, index: int) -> tuple[np.ndarray, np.ndarray | None]:
        """(w, b) of weighted layer ``index`` from its own random streams, ``w`` in
        varprop's ``(*kernel_size, in // groups, out)`` layout."""
        w = self._init_for_layout()(self.drawn_shape, seed=run.stream(index, 0),
                                    dtype=run.dtype)
        if self.layout == "torch":  # (out, in, *k) -> (*k, in, out)
            w = np.ascontiguousarray(np.moveaxis(w, (0, 1), (-1, -2)))
        if self.bias_init is None:
            return w, None
        try:
            b = self.bias_init((self.out_channels,), seed=run.stream(index, 1),
                               dtype=run.dtype)
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"measure: conv layer {index}: bias_init {self.bias_init!r} "
                            f"cannot draw a bias of shape ({self.out_channels},): {exc}") from exc
        return w, b

    def _init_for_layout(self) -> Initializer:
        """The initializer with PyTorch's fan axes when the kernel is drawn in its layout."""
        if self.layout != "torch":
            return self.init
        config = self.init.get_config()
        if config.get("layout", "keras") == "torch" or "layout" not in config:
            return self.init
        return type(self.init).from_config({**config, "layout": "torch"})

    def weight_moments(self, ctx: Any) -> Any:
        init = self._init_for_layout()
        return ctx.init_moments(init, self.drawn_shape)

    def analytic_key(self, once: Callable[[Any, Any, Callable[[], Any]], Any]) -> Any:
        return once(self, type(self), lambda: repr(self))

    # ------------------------------------------------------------------ arrays
    def forward(self, step: Step, run: Any, x: np.ndarray, x2: np.ndarray | None,
                keep: bool, record: bool) -> tuple[np.ndarray, np.ndarray | None, Any]:
        from ..conv_kernels import conv_forward
        geo = self.geometry(x.shape[1:-1])

        def kernel(xs: np.ndarray, w: np.ndarray, b: Any, act: Any, stats: bool) -> Any:
            return conv_forward(xs, w, b, act, stats=stats, n_threads=run.n_threads, **geo)

        y, y2, cache, r = weighted_forward(step, run, x, x2, keep, record, kernel)
        if record:
            run.record_maps(step.index, z=r.z, a=y)
        return y, y2, cache

    def backward(self, step: Step, run: Any, cache: Any, grad: np.ndarray) -> np.ndarray:
        from ..conv_kernels import conv_backward
        geo = self.geometry(cache[0].shape[1:-1])

        def kernel(x: np.ndarray, w: np.ndarray, z: np.ndarray, g: np.ndarray, act: Any) -> Any:
            return conv_backward(x, w, z, g, act, n_threads=run.n_threads, **geo)

        g = weighted_backward(step, run, cache, grad, kernel)
        run.record_maps(step.index, grad=g.grad_z)
        return g.grad_x

    def cache_bytes(self, step: Step, width: Any, batch: int, itemsize: int
                    ) -> tuple[int, Any]:
        out = self.output_width(width, "cache")
        return (batch * (numel(width) + numel(out)) + math.prod(self.weight_shape)) \
            * itemsize, out

    # ------------------------------------------------------------------ theory
    def analytic(self, step: Step, analyzer: Any, x: Any, ops: list) -> Any:
        from ..theory import spatial as sp
        from ._spatial_rules import act_spatial, check_spatial, mark_approximate
        s = check_spatial(x, self, analyzer)
        w = self.weight_moments(analyzer.ctx)
        b_mean, b_var, _ = analyzer.ctx.bias(self)
        spatial = tuple(np.shape(s.mean))
        geo = self.geometry(spatial)
        fan_channels = self.in_channels // self.groups
        z = sp.conv_forward(s, w_mean=w.mean, w_var=w.var, b_mean=b_mean, b_var=b_var,
                            fan_channels=fan_channels, kernel=self.kernel_size,
                            stride=self.stride, padding_pairs=geo["padding"],
                            dilation=self.dilation, track_cross=analyzer.track_cross)
        def pairs(m: Any) -> Any:  # the same rule on another sample's pairs
            return sp.conv_forward(
                m, w_mean=w.mean, w_var=w.var, b_mean=b_mean, b_var=b_var,
                fan_channels=fan_channels, kernel=self.kernel_size, stride=self.stride,
                padding_pairs=geo["padding"], dilation=self.dilation, track_cross=True)

        z.bcross = sp.between_samples(s, pairs)
        z.icross = sp.between_samples(s, pairs, "icross")
        index = len(analyzer.records)
        z_mean, z_var = sp.pooled(z)
        rec = LayerRecord(index, self.n_in, self.out_channels, z_mean=z_mean, z_var=z_var,
                          a_mean=z_mean, a_var=z_var, symmetric=bool(w.symmetric),
                          z_corr=sp.pooled_correlation(z))
        analyzer.records.append(rec)
        analyzer.add_map(index, "z_var", z.second - z.mean ** 2)
        if w.structure == "identity" or (w.symmetric and w.mean != 0.0):
            mark_approximate(analyzer, index)  # a Dirac or constant kernel: not Gaussian
        if not z.exact:
            mark_approximate(analyzer, index)
        ops.append((self._backward_rule, (rec, s, w, geo, spatial)))
        if step.act is None:
            analyzer.add_map(index, "a_var", z.second - z.mean ** 2)
            return z
        from .._approximations import SMALL_FAN_IN
        if self.n_in < SMALL_FAN_IN and not _second_moment_exact(step.act, z, s):
            analyzer.fan_in_approximate.add(index)
        a = act_spatial(analyzer, step.act, z, ops)
        rec.a_mean, rec.a_var = sp.pooled(a)
        analyzer.add_map(index, "a_var", a.second - a.mean ** 2)
        return a

    def _backward_rule(self, analyzer: Any, state: tuple, g: Any) -> SpatialGradient:
        from ..theory import spatial as sp
        rec, s, w, geo, spatial = state
        g_map = g.total() if isinstance(g, SpatialGradient) else np.asarray(g.total())
        rec.grad_var = float(np.mean(g_map))
        analyzer.add_map(rec.index, "grad_var", g_map)
        rec.weight_grad_var = float(sp.conv_weight_grad_var(
            s, g_map, kernel=self.kernel_size, stride=self.stride,
            padding_pairs=geo["padding"], dilation=self.dilation))
        kw = dict(w_mean=w.mean, w_var=w.var, out_channels=self.out_channels // self.groups,
                  kernel=self.kernel_size, stride=self.stride,
                  padding_pairs=geo["padding"], dilation=self.dilation, in_spatial=spatial)
        # the gradient's pixel pairs too, where an overlapping max pool below needs them
        from ._spatial import through_conv
        return through_conv(g, sp.conv_backward(g_map, **kw), kw)
