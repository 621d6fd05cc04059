"""Network specifications the analyzer reads: :class:`Network` and the ``mlp`` builder.

A :class:`Network` is an input width and a sequence of layers (:mod:`varprop.layers`,
each a bundle of validation, array code and mean-field rule; re-exported here):

* :class:`Dense` ``z = x @ W + b`` with its weight and bias initializers,
* :class:`Act` ``a = phi(z)``,
* :class:`Residual` ``x + alpha * f(x)`` around a branch of layers,
* :class:`BatchNorm`, :class:`LayerNorm` and ``GroupNorm`` (training-mode statistics, no
  affine),
* ``Conv``, ``MaxPool``, ``AvgPool``, ``GlobalAvgPool`` and ``Flatten`` over images or
  sequences (channels last; :func:`varprop.cnn` builds the common case),
* ``Recurrent``: an Elman, LSTM or GRU cell over a ``(T, F)`` sequence.

Specs hold no weights: the analytic side reads the initializers' moments, the empirical
side draws the weights (seeded) when it measures.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

from .activations import Activation, get_activation
from .initializers import get as get_initializer
from ._validate import one_of, per_layer, positive_int
from .layers import (Act, AvgPool, BatchNorm, Conv, Dense, Flatten, GlobalAvgPool, Layer,
                     LayerNorm, MaxPool, Residual, Step, walk)

__all__ = ["Dense", "Conv", "Act", "Residual", "BatchNorm", "LayerNorm", "MaxPool",
           "AvgPool", "GlobalAvgPool", "Flatten", "Network", "mlp", "dense_stack", "Layer"]


@dataclass(frozen=True)
class Network:
    """An input feature shape and a sequence of layers; ``describe()`` gives a one-line
    summary.

    ``input_width`` is an int for flat inputs ``(batch, width)``, or the shape of one
    sample ``(*spatial, channels)`` (channels last, 1 or 2 spatial dims) for a network
    that starts with convolutions or, ``(T, F)``, with a recurrent layer. ``layout="torch"`` says that the arrays given at the
    edges (``measure(inputs=...)``, ``analyze(inputs=...)``) are in PyTorch's
    channels-first layout ``(batch, channels, *spatial)``; inside, varprop works
    channels last.
    """

    input_width: "int | tuple[int, ...]"
    layers: tuple[Layer, ...]
    name: str = ""
    meta: dict[str, Any] = field(default_factory=dict, compare=False)
    layout: str = "keras"

    def __post_init__(self) -> None:
        width = self.input_width
        if isinstance(width, (list, tuple)):
            if not 2 <= len(width) <= 3:
                raise ValueError(f"input_width: a spatial input is (*spatial, channels) "
                                 f"with 1 or 2 spatial dims, got {width!r}")
            width = tuple(positive_int("input_width", w) for w in width)
        else:
            width = positive_int("input_width", width)
        object.__setattr__(self, "input_width", width)
        object.__setattr__(self, "layout", one_of("layout", self.layout, ("keras", "torch")))
        if isinstance(self.layers, Layer) or not isinstance(self.layers, (list, tuple)):
            raise TypeError(f"layers must be a sequence of varprop layers, got "
                            f"{type(self.layers).__name__}")
        object.__setattr__(self, "layers", tuple(self.layers))
        steps, _ = walk(self.layers, self.input_width)
        weighted = [s.layer for s in _iter_weighted(steps)]
        object.__setattr__(self, "_steps", steps)
        object.__setattr__(self, "_weighted", tuple(weighted))

    @property
    def input_shape(self) -> tuple[int, ...]:
        """One input sample's shape, channels last: ``(width,)`` or ``(*spatial, C)``."""
        w = self.input_width
        return (w,) if isinstance(w, int) else w

    @property
    def spatial(self) -> bool:
        """True when the input has spatial dims (a convolutional network)."""
        return not isinstance(self.input_width, int)

    @property
    def steps(self) -> tuple[Step, ...]:
        """The walk of the layers (:func:`varprop.layers.walk`): what analyze, measure,
        compare and the report run over."""
        return self._steps  # type: ignore[attr-defined]

    def dense_layers(self) -> Iterator[Dense]:
        """Every weighted layer (Dense, Conv) in forward order, branches included."""
        return iter(self._weighted)  # type: ignore[attr-defined]

    @property
    def depth(self) -> int:
        return len(self._weighted)  # type: ignore[attr-defined]

    def describe(self) -> str:
        if self.name:
            return self.name
        kinds = sorted({type(layer).__name__ for layer in self._weighted})  # type: ignore[attr-defined]
        if kinds == ["Dense"]:
            return f"network of {self.depth} dense layers"
        return f"network of {self.depth} weighted layers ({', '.join(kinds)})"


def _iter_weighted(steps: Sequence[Step]) -> Iterator[Step]:
    for step in steps:
        if step.layer.weighted:
            yield step
        yield from _iter_weighted(step.branch)


def mlp(
    widths: Sequence[int],
    activation: "str | Activation | Sequence[str | Activation]" = "relu",
    init: Any = "he_normal",
    bias_init: Any = "zeros",
    *,
    final_activation: bool = True,
    **activation_params: Any,
) -> Network:
    """A multilayer perceptron: Dense + activation per layer.

    Args:
        widths: layer widths including the input width: ``[784, 512, 512, 10]`` is three
            dense layers.
        activation: a name or Activation, or one per dense layer.
        init, bias_init: an initializer name, config dict or object (or one per layer);
            ``bias_init=None`` means no bias.
        final_activation: apply the activation after the last dense layer too (the
            default, so every layer of a variance study is alike); False leaves it linear.
        **activation_params: parameters of a named activation (``negative_slope=0.2``).

    Example:
        >>> net = mlp([256] * 31, "tanh", init="glorot_normal")
        >>> net.depth
        30
    """
    widths = list(widths)
    if len(widths) < 2:
        raise ValueError(f"widths needs the input width and at least one layer width, got {widths}")
    widths = [positive_int("widths", w) for w in widths]
    n = len(widths) - 1
    if isinstance(activation, (list, tuple)):
        acts = [get_activation(a, **activation_params)
                for a in per_layer("activation", activation, n)]
    else:  # one activation for every layer: one object (a deep net builds it once)
        acts = [get_activation(activation, **activation_params)] * n
    inits = [get_initializer(i) for i in per_layer("init", init, n)]
    biases = [None if b is None else get_initializer(b) for b in per_layer("bias_init", bias_init, n)]
    layers: list[Layer] = []
    for i in range(n):
        layers.append(Dense(widths[i], widths[i + 1], inits[i], biases[i]))
        if final_activation or i < n - 1:
            layers.append(Act(acts[i]))
    act_names = sorted({a.name for a in acts})
    init_names = sorted({getattr(i, "name", type(i).__name__) for i in inits})
    name = f"mlp depth {n}, width {widths[1]}, {'/'.join(act_names)}, {'/'.join(init_names)}"
    return Network(widths[0], tuple(layers), name=name)


def dense_stack(width: int, depth: int, activation: Any = "relu", init: Any = "he_normal",
                bias_init: Any = "zeros", **activation_params: Any) -> Network:
    """``mlp([width] * (depth + 1), ...)``: the square deep network of variance studies."""
    depth = positive_int("depth", depth)
    return mlp([width] * (depth + 1), activation, init, bias_init, **activation_params)
