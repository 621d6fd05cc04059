"""Builders of convolutional networks: :func:`cnn` for the common case and the seeds'
CNN as a named preset (:func:`cnn_preset`)."""

from __future__ import annotations

from typing import Any, Sequence

from ._validate import one_of, positive_int
from .activations import get_activation
from .initializers import get as get_initializer
from .layers import (Act, AvgPool, BatchNorm, Conv, Dense, Flatten, GlobalAvgPool, Layer,
                     LayerNorm, MaxPool)
from .network import Network

__all__ = ["cnn", "cnn_preset", "CNN_PRESETS"]


def cnn(
    input_shape: Sequence[int],
    channels: Sequence[int],
    *,
    kernel_size: "int | Sequence[int]" = 3,
    activation: Any = "relu",
    init: Any = "he_normal",
    bias_init: Any = "zeros",
    padding: Any = "same",
    stride: "int | Sequence[int]" = 1,
    pool: str | None = None,
    pool_size: int = 2,
    norm: str | None = None,
    head: str = "flatten",
    dense: Sequence[int] = (),
    n_classes: int | None = None,
    layout: str = "keras",
    **activation_params: Any,
) -> Network:
    """A convolutional network: per entry of ``channels`` a convolution, an optional
    normalization, the activation and an optional pooling; then a head.

    Args:
        input_shape: one sample's shape, channels last ``(H, W, C)`` or ``(L, C)``
            (``layout="torch"``: channels first, ``(C, H, W)`` or ``(C, L)``).
        channels: output channels of each convolution.
        kernel_size, padding, stride: of every convolution (see :class:`Conv`).
        activation, init, bias_init: as for :func:`varprop.mlp` (one for all layers).
        pool: None, "max" or "avg": a ``pool_size`` pooling after every block.
        norm: None, "batch" or "layer": a normalization between convolution and
            activation.
        head: "flatten" (Flatten, then the dense layers) or "global" (GlobalAvgPool,
            then the dense layers) or "none" (the network ends with the last block).
        dense: widths of hidden dense layers of the head (with the activation).
        n_classes: a final linear dense layer of this width (the logits), or None.
        layout: "keras" or "torch": the layout of ``input_shape``, of the arrays given
            to ``measure``/``analyze`` and of the kernels the initializers draw.

    Example:
        >>> net = cnn((8, 8, 1), [16, 32], pool="max", n_classes=10)
        >>> net.depth
        3
    """
    layout = one_of("layout", layout, ("keras", "torch"), owner="cnn")
    shape = tuple(positive_int("input_shape", s, owner="cnn") for s in input_shape)
    if not 2 <= len(shape) <= 3:
        raise ValueError(f"cnn: input_shape must be (H, W, C) or (L, C), got {tuple(input_shape)}")
    if layout == "torch":
        shape = (*shape[1:], shape[0])
    channels = [positive_int("channels", c, owner="cnn") for c in channels]
    if not channels:
        raise ValueError("cnn: channels needs at least one convolution")
    pool = None if pool is None else one_of("pool", pool, ("max", "avg"), owner="cnn")
    norm = None if norm is None else one_of("norm", norm, ("batch", "layer"), owner="cnn")
    head = one_of("head", head, ("flatten", "global", "none"), owner="cnn")
    act = get_activation(activation, **activation_params)
    w_init = get_initializer(init)
    b_init = None if bias_init is None else get_initializer(bias_init)
    dims = len(shape) - 1
    layers: list[Layer] = []
    c_in = shape[-1]
    for c in channels:
        layers.append(Conv(c_in, c, kernel_size, w_init, b_init, stride=stride,
                           padding=padding, spatial_dims=dims, layout=layout))
        if norm == "batch":
            layers.append(BatchNorm())
        elif norm == "layer":
            layers.append(LayerNorm())
        layers.append(Act(act))
        if pool == "max":
            layers.append(MaxPool(pool_size, spatial_dims=dims))
        elif pool == "avg":
            layers.append(AvgPool(pool_size, spatial_dims=dims))
        c_in = c
    if head != "none":
        layers.append(Flatten() if head == "flatten" else GlobalAvgPool())
        probe = Network(shape, tuple(layers))
        width = _out_width(probe)
        for d in dense:
            d = positive_int("dense", d, owner="cnn")
            layers += [Dense(width, d, w_init, b_init), Act(act)]
            width = d
        if n_classes is not None:
            layers.append(Dense(width, positive_int("n_classes", n_classes, owner="cnn"),
                                w_init, b_init))
    elif dense or n_classes is not None:
        raise ValueError("cnn: dense and n_classes need a head ('flatten' or 'global')")
    name = (f"cnn {'x'.join(map(str, shape))} -> {'/'.join(map(str, channels))}, "
            f"{act.name}, {getattr(w_init, 'name', type(w_init).__name__)}")
    return Network(shape, tuple(layers), name=name, layout=layout)


def _out_width(net: Network) -> int:
    from .layers import walk
    return walk(net.layers, net.input_width)[1]


#: Named networks: the seeds' CNN (two 3x3 convolutions with 16 and 32 channels, ReLU,
#: 2x2 max pooling, a dense classifier) on the 8x8 digits and on 28x28 MNIST.
CNN_PRESETS = {
    "seeds_cnn": {"input_shape": (8, 8, 1), "channels": (16, 32), "pool": "max",
                  "n_classes": 10},
    "seeds_cnn_mnist": {"input_shape": (28, 28, 1), "channels": (16, 32), "pool": "max",
                        "n_classes": 10},
}


def cnn_preset(name: str, init: Any = "he_normal", **overrides: Any) -> Network:
    """A named network of :data:`CNN_PRESETS` with the given initializer (and any of
    :func:`cnn`'s arguments overridden)."""
    name = one_of("name", name, tuple(CNN_PRESETS), owner="cnn_preset")
    kwargs = {**CNN_PRESETS[name], "init": init, **overrides}
    net = cnn(**kwargs)
    return Network(net.input_width, net.layers, name=f"{name}, {net.name.split(', ', 1)[1]}",
                   layout=net.layout)
