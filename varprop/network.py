"""Network specifications the analyzer reads: a small layer vocabulary and ``mlp``.

A :class:`Network` is an input width and a sequence of layers:

* :class:`Dense` ``z = x @ W + b`` with its weight and bias initializers,
* :class:`Act` ``a = phi(z)``,
* :class:`Residual` ``x + alpha * f(x)`` around a branch of layers,
* :class:`BatchNorm` and :class:`LayerNorm` (training-mode statistics, no affine).

Specs hold no weights: the analytic side reads the initializers' moments, the empirical
side draws the weights (seeded) when it measures.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence, Union

from .activations import Activation, get_activation
from .initializers import Initializer
from .initializers import get as get_initializer

__all__ = ["Dense", "Act", "Residual", "BatchNorm", "LayerNorm", "Network", "mlp",
           "dense_stack", "plain_chain"]


@dataclass(frozen=True)
class Dense:
    """A dense layer ``z = x @ W + b`` with ``W`` of shape ``(n_in, n_out)``."""

    n_in: int
    n_out: int
    init: Initializer
    bias_init: Initializer | None = None

    def __post_init__(self) -> None:
        for name in ("n_in", "n_out"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"Dense: {name} must be a positive integer, got {value!r}")

    @property
    def width(self) -> int:
        return self.n_out


@dataclass(frozen=True)
class Act:
    """An elementwise activation."""

    activation: Activation


@dataclass(frozen=True)
class BatchNorm:
    """Batch normalization in training mode: each unit to mean 0, variance 1 over the batch."""

    eps: float = 1e-5


@dataclass(frozen=True)
class LayerNorm:
    """Layer normalization: each sample's features to mean 0, variance 1."""

    eps: float = 1e-5


@dataclass(frozen=True)
class Residual:
    """``x + alpha * f(x)``: ``branch`` must map a width to the same width."""

    branch: tuple["Layer", ...]
    alpha: float = 1.0


Layer = Union[Dense, Act, BatchNorm, LayerNorm, Residual]


@dataclass(frozen=True)
class Network:
    """An input width and a sequence of layers; ``describe()`` gives a one-line summary."""

    input_width: int
    layers: tuple[Layer, ...]
    name: str = ""
    meta: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if isinstance(self.input_width, bool) or not isinstance(self.input_width, int) \
                or self.input_width < 1:
            raise ValueError(f"input_width must be a positive integer, got {self.input_width!r}")
        _check_widths(self.layers, self.input_width)

    def dense_layers(self) -> Iterator[Dense]:
        """Every Dense layer in forward order, branches included."""
        yield from _iter_dense(self.layers)

    @property
    def depth(self) -> int:
        return sum(1 for _ in self.dense_layers())

    def describe(self) -> str:
        return self.name or f"network of {self.depth} dense layers"


def plain_chain(layers: Sequence[Layer]) -> list[tuple[Dense, Activation | None]] | None:
    """``[(dense, the activation after it or None), ...]`` when ``layers`` is a plain
    chain ``(Dense [Act])*`` (every ``mlp``), else None."""
    pairs: list[tuple[Dense, Activation | None]] = []
    i, n_layers = 0, len(layers)
    while i < n_layers:
        layer = layers[i]
        if type(layer) is not Dense:
            return None
        act = None
        if i + 1 < n_layers and type(layers[i + 1]) is Act:
            act = layers[i + 1].activation
            i += 1
        i += 1
        pairs.append((layer, act))
    return pairs


def _iter_dense(layers: Sequence[Layer]) -> Iterator[Dense]:
    for layer in layers:
        if isinstance(layer, Dense):
            yield layer
        elif isinstance(layer, Residual):
            yield from _iter_dense(layer.branch)


def _check_widths(layers: Sequence[Layer], width: int) -> int:
    for i, layer in enumerate(layers):
        if isinstance(layer, Dense):
            if layer.n_in != width:
                raise ValueError(
                    f"layer {i}: Dense expects {layer.n_in} inputs but receives width {width}")
            width = layer.n_out
        elif isinstance(layer, Residual):
            out = _check_widths(layer.branch, width)
            if out != width:
                raise ValueError(
                    f"layer {i}: a Residual branch must keep the width ({width}), it ends at {out}")
        elif not isinstance(layer, (Act, BatchNorm, LayerNorm)):
            raise TypeError(f"layer {i}: unknown layer type {type(layer).__name__}")
    return width


def _per_layer(value: Any, n: int, name: str) -> list[Any]:
    if isinstance(value, (list, tuple)):
        if len(value) != n:
            raise ValueError(f"{name}: a per-layer list needs {n} entries, got {len(value)}")
        return list(value)
    return [value] * n


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
    for w in widths:
        if isinstance(w, bool) or not isinstance(w, int) or w < 1:
            raise ValueError(f"widths must be positive integers, got {widths}")
    n = len(widths) - 1
    if isinstance(activation, (list, tuple)):
        acts = [get_activation(a, **activation_params)
                for a in _per_layer(activation, n, "activation")]
    else:  # one activation for every layer: one object (a deep net builds it once)
        acts = [get_activation(activation, **activation_params)] * n
    inits = [get_initializer(i) for i in _per_layer(init, n, "init")]
    biases = [None if b is None else get_initializer(b) for b in _per_layer(bias_init, n, "bias_init")]
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
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
        raise ValueError(f"depth must be a positive integer, got {depth!r}")
    return mlp([width] * (depth + 1), activation, init, bias_init, **activation_params)
