"""Any varprop network as a trainable classifier: :class:`ConvNet` holds the parameters
of a :class:`~varprop.network.Network` (convolutions, pooling, normalization, dense
layers) and runs each layer's own array forward and backward on the kernels, the same
code :func:`varprop.measure` runs, with the model's parameters instead of fresh draws.

It has :class:`~varprop.training.model.MLP`'s interface, so :func:`~varprop.training.fit`,
``evaluate``, ``predict`` and ``gradient_variances`` take it::

    net = varprop.cnn_preset("seeds_cnn", init="he_normal")    # 8x8x1 -> 10 logits
    model = ConvNet.from_network(net, seed=0)
    history = fit(model, x_train, y_train, epochs=10)          # rows: flattened images

Input rows are flattened samples, channels last in C order (what the digits and MNIST
loaders give for one-channel images); a ``layout="torch"`` network takes PyTorch's
channels-first flattening instead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._blas import single_threaded_blas
from .._validate import SeedLike, as_generator, float_dtype
from ..activations import get_activation
from .model import Trainable

__all__ = ["ConvNet", "ConvCache"]

_LINEAR = get_activation("linear")


@dataclass
class ConvCache:
    """What one forward pass keeps for the backward pass: each step's cache, the
    logits, per weighted layer its input (``inputs``) and, when asked for, its
    :class:`~varprop.LayerStats`."""

    caches: list
    logits: np.ndarray
    inputs: list
    stats: list | None = None


class _Run:
    """The run object the layers' array code talks to (see
    :class:`varprop._empirical_run.SeedRun`): it hands out the model's parameters and
    collects their gradients."""

    linear = _LINEAR

    def __init__(self, model: "ConvNet", n_threads: int | None, stats: bool) -> None:
        self.model = model
        self.dtype = model.dtype
        self.n_threads = n_threads
        self.stats: list | None = [None] * model.n_layers if stats else None
        self.grads: list = [None] * model.n_layers
        self.grad_z: list = [None] * model.n_layers

    def parameters(self, layer: Any, index: int) -> tuple[np.ndarray, np.ndarray]:
        return self.model.weights[index]

    def gradients(self, index: int, grad_w: np.ndarray, grad_b: np.ndarray) -> None:
        self.grads[index] = (grad_w, grad_b)

    def record_forward(self, index: int, stats: Any) -> None:
        if self.stats is not None:
            self.stats[index] = stats

    def record_backward(self, index: int, grad_z: np.ndarray, grad_w: Any, batch: int) -> None:
        self.grad_z[index] = grad_z

    def record_corr(self, *args: Any) -> None:
        pass

    def record_maps(self, *args: Any, **kwargs: Any) -> None:
        pass


def _trainable(net: Any) -> list[Any]:
    """The weighted layers of ``net``, or a TypeError for one that ConvNet cannot
    train (it holds one ``(W, b)`` pair per layer)."""
    from ..layers import Conv, Dense
    layers = list(net.dense_layers())
    for layer in layers:
        if not isinstance(layer, (Conv, Dense)):
            raise TypeError(f"net: ConvNet trains Dense and Conv layers, not "
                            f"{type(layer).__name__} (a recurrent network trains with "
                            f"varprop.recurrent.train.fit_rnn)")
    return layers


class ConvNet(Trainable):
    """A classifier made of a varprop network whose output is the logits (its last
    weighted layer linear). ``weights[l] = (W, b)`` per weighted layer in forward order,
    ``W`` in varprop's layout (``(*kernel, in // groups, out)`` for a convolution,
    ``(n_in, n_out)`` for a dense layer); training updates them in place."""

    def __init__(self, net: Any, weights: list[tuple[np.ndarray, np.ndarray]]) -> None:
        from ..network import Network
        if not isinstance(net, Network):
            raise TypeError(f"net must be a varprop Network, got {type(net).__name__}")
        layers = _trainable(net)
        if len(weights) != len(layers):
            raise ValueError(f"weights: one (W, b) pair per weighted layer ({len(layers)}), "
                             f"got {len(weights)}")
        if not layers:
            raise ValueError("net has no weighted layer")
        last = net.steps[-1]
        if not last.layer.weighted or (last.act is not None and not last.act.is_identity):
            raise ValueError("net must end with a linear weighted layer (it outputs logits): "
                             "e.g. varprop.cnn(..., n_classes=10)")
        dtype = weights[0][0].dtype
        for l, ((w, b), layer) in enumerate(zip(weights, layers)):
            shape = getattr(layer, "weight_shape", (layer.n_in, layer.n_out))
            if w.shape != shape or b.shape != (layer.n_out,):
                raise ValueError(f"weights[{l}]: expected W {shape} and b ({layer.n_out},), "
                                 f"got {w.shape} and {b.shape}")
            if w.dtype != dtype or b.dtype != dtype:
                raise TypeError(f"weights[{l}]: all parameters must share one dtype ({dtype})")
        self.net = net
        self.weights = [(np.ascontiguousarray(w), np.ascontiguousarray(b)) for w, b in weights]

    @classmethod
    def from_network(cls, net: Any, *, seed: SeedLike = None, dtype: Any = np.float32
                     ) -> "ConvNet":
        """Draw the parameters of ``net`` (one Generator draws W_0, b_0, W_1, ... in
        order, so the same seed gives the same model; no bias initializer: zeros)."""
        from ..network import Network
        if not isinstance(net, Network):
            raise TypeError(f"net must be a varprop Network (e.g. varprop.cnn(...)), got "
                            f"{type(net).__name__}")
        dt = float_dtype("dtype", dtype, kernels=True)
        _trainable(net)
        rng = as_generator(seed)
        weights = []
        for layer in net.dense_layers():
            if hasattr(layer, "drawn_shape"):  # a convolution, maybe in PyTorch's layout
                w = layer._init_for_layout()(layer.drawn_shape, seed=rng, dtype=dt)
                if layer.layout == "torch":
                    w = np.moveaxis(w, (0, 1), (-1, -2))
            else:
                w = layer.init((layer.n_in, layer.n_out), seed=rng, dtype=dt)
            b = (np.zeros(layer.n_out, dt) if layer.bias_init is None
                 else layer.bias_init((layer.n_out,), seed=rng, dtype=dt))
            weights.append((np.ascontiguousarray(w, dt), np.ascontiguousarray(b, dt)))
        return cls(net, weights)

    # ----------------------------------------------------------------- properties
    @property
    def n_features(self) -> int:
        return math.prod(self.net.input_shape)

    def copy(self) -> "ConvNet":
        return ConvNet(self.net, [(w.copy(), b.copy()) for w, b in self.weights])

    def __repr__(self) -> str:
        return f"ConvNet({self.net.describe()!r}, {self.n_layers} weighted layers, {self.dtype})"

    # ----------------------------------------------------------------- passes
    def _images(self, x: np.ndarray) -> np.ndarray:
        shape = self.net.input_shape
        if self.net.layout == "torch" and len(shape) > 1:
            x = x.reshape(x.shape[0], shape[-1], *shape[:-1])
            return np.ascontiguousarray(np.moveaxis(x, 1, -1))
        return x.reshape(x.shape[0], *shape)

    def forward(self, x: np.ndarray, *, stats: bool = False,
                n_threads: int | None = None) -> ConvCache:
        """Run the network on the rows ``x`` (C-contiguous, the model's dtype) and keep
        what :meth:`backward` needs."""
        run = _Run(self, n_threads, stats)
        h = self._images(x)
        caches, inputs = [], []
        with single_threaded_blas():
            for step in self.net.steps:
                if step.layer.weighted:
                    inputs.append(h)
                h, _, cache = step.layer.forward(step, run, h, None, True, stats)
                caches.append(cache)
        out = ConvCache(caches, h, inputs, run.stats)
        out._run = run  # type: ignore[attr-defined]
        return out

    def backward(self, cache: ConvCache, grad_logits: np.ndarray, *,
                 n_threads: int | None = None, grad_z: bool = False
                 ) -> tuple[list[tuple[np.ndarray, np.ndarray]], list[np.ndarray] | None]:
        """Back-propagate dL/dlogits: ``(grads, grad_zs)`` as :meth:`MLP.backward`."""
        run = _Run(self, n_threads, False)
        g = grad_logits
        with single_threaded_blas():
            for step, c in zip(reversed(self.net.steps), reversed(cache.caches)):
                g = step.layer.backward(step, run, c, g)
        return run.grads, (run.grad_z if grad_z else None)
