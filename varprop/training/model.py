"""The multilayer perceptron of the trainer and its softmax cross-entropy loss.

An :class:`MLP` is a list of dense layers ``z = x @ W + b``, ``a = phi(z)`` whose last
layer is linear and gives the logits. Its forward and backward passes run only through
the fused kernels :func:`varprop.kernels.dense_forward` and
:func:`varprop.kernels.dense_backward`; nothing here multiplies matrices in numpy.

A new MLP is drawn from the analyzer's network spec (:func:`varprop.mlp`) by
:meth:`MLP.from_network`; :func:`classifier` builds that spec with Keras's defaults and
the last layer linear::

    model = classifier([4, 32, 16, 3], "relu", kernel_initializer="he_normal", seed=0)
    # the same network: MLP.from_network(varprop.mlp([4, 32, 16, 3], "relu", "he_normal",
    #                                                final_activation=False), seed=0)
    logits = model.logits(x)                    # (batch, 3)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence, Union

import numpy as np

from .._blas import single_threaded_blas
from .._validate import (SeedLike, as_generator, finite_real, float_dtype, per_layer,
                         positive_int)
from ..activations import Activation, get_activation
from ..kernels import activation_apply, dense_backward, dense_forward
from ._checks import check_features

__all__ = [
    "MLP",
    "classifier",
    "ForwardCache",
    "softmax_cross_entropy",
    "log_softmax",
    "auto_threads",
]

ActivationLike = Union[str, Activation, Mapping[str, Any]]
InitializerLike = Any  # a name, a config dict or an Initializer (varprop.initializers.get)

#: Layers with fewer than this many multiply-adds (batch * n_in * n_out) run their
#: kernels on one thread: below it the OpenMP fork/join costs more than it saves (on a
#: busy 2-core machine 2 threads were 2-10x slower at 64 x 256 x 256). The results are
#: bitwise identical for any thread count, so this only changes the speed.
SERIAL_WORK = 1 << 24


def auto_threads(batch: int, n_in: int, n_out: int, n_threads: int | None) -> int | None:
    """The thread count for one kernel call: ``n_threads`` if given, else 1 for small
    layers (see :data:`SERIAL_WORK`) and the package default (None) for large ones."""
    if n_threads is not None:
        return n_threads
    return 1 if batch * n_in * n_out < SERIAL_WORK else None


@dataclass
class ForwardCache:
    """What one forward pass keeps for the backward pass.

    Attributes:
        inputs: the input of each layer (``inputs[0]`` is x, ``inputs[l]`` layer l-1's a).
        z: the pre-activation of each layer; ``z[-1]`` are the logits.
        stats: per-layer :class:`~varprop.LayerStats` when asked for, else None.
    """

    inputs: list[np.ndarray]
    z: list[np.ndarray]
    stats: list | None = None

    @property
    def logits(self) -> np.ndarray:
        return self.z[-1]


class Trainable:
    """What :class:`MLP` and :class:`~varprop.training.convnet.ConvNet` share: ``weights``
    (one ``(W, b)`` pair per weighted layer, one dtype), the counts read off them, and
    :meth:`logits`, which runs the subclass's ``forward`` on checked rows."""

    weights: list[tuple[np.ndarray, np.ndarray]]
    n_features: int

    @property
    def dtype(self) -> np.dtype:
        """float32 or float64: the dtype of every parameter and of the computation."""
        return self.weights[0][0].dtype

    @property
    def n_layers(self) -> int:
        return len(self.weights)

    @property
    def n_classes(self) -> int:
        return self.weights[-1][0].shape[-1]

    @property
    def n_params(self) -> int:
        return sum(w.size + b.size for w, b in self.weights)

    def params(self) -> list[np.ndarray]:
        """``[W_0, b_0, W_1, b_1, ...]``: the arrays themselves (an optimizer updates them)."""
        return [p for pair in self.weights for p in pair]

    multipliers: "tuple[float, ...] | None" = None

    @staticmethod
    def _checked_pairs(weights: Sequence[Any]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Each ``(W, b)`` pair checked: numpy arrays, W 2-D and b 1-D, float32 or float64,
        one dtype for all, b as long as W's outputs; errors name the pair."""
        pairs: list[tuple[np.ndarray, np.ndarray]] = []
        dtype = None
        for l, pair in enumerate(weights):
            if not isinstance(pair, (tuple, list)) or len(pair) != 2:
                raise TypeError(f"weights[{l}] must be a (W, b) pair, got {type(pair).__name__}")
            w, b = pair
            for name, arr, ndim in ((f"weights[{l}][0] (W)", w, 2), (f"weights[{l}][1] (b)", b, 1)):
                if not isinstance(arr, np.ndarray):
                    raise TypeError(f"{name} must be a numpy array, got {type(arr).__name__}")
                if arr.dtype not in (np.float32, np.float64):
                    raise TypeError(f"{name} must be float32 or float64, got {arr.dtype}")
                if arr.ndim != ndim:
                    raise ValueError(f"{name} must be {ndim}-D, got shape {arr.shape}")
                dtype = arr.dtype if dtype is None else dtype
                if arr.dtype != dtype:
                    raise TypeError(f"{name} has dtype {arr.dtype} but the model is {dtype}: "
                                    "all weights must share one dtype")
            if b.shape[0] != w.shape[1]:
                raise ValueError(f"weights[{l}]: b has shape {b.shape} but W {w.shape} "
                                 f"has {w.shape[1]} outputs")
            pairs.append((w, b))
        return pairs

    def _set_multipliers(self, multipliers: Sequence[float] | None, per: str) -> None:
        """Check and keep the per-layer weight multipliers (None: every layer 1); ``per``
        names what there is one of, for the error."""
        self.multipliers = None
        if multipliers is None:
            return
        if isinstance(multipliers, (str, bytes)) or not isinstance(multipliers, Sequence):
            raise TypeError(f"multipliers must be a list of positive numbers or None, "
                            f"got {type(multipliers).__name__}")
        if len(multipliers) != len(self.weights):
            raise ValueError(f"multipliers must have one entry per {per} "
                             f"({len(self.weights)}), got {len(multipliers)}")
        self.multipliers = tuple(finite_real(f"multipliers[{l}]", m, positive=True)
                                 for l, m in enumerate(multipliers))

    def _effective(self, l: int) -> np.ndarray:
        """Layer l's weights as the kernels see them: ``m_l * W_l`` (W_l itself when the
        multiplier is 1, so no copy is made and a plain model's passes are unchanged)."""
        w = self.weights[l][0]
        if self.multipliers is None or self.multipliers[l] == 1.0:
            return w
        return w * w.dtype.type(self.multipliers[l])

    def forward(self, x: np.ndarray, *, stats: bool = False, n_threads: int | None = None) -> Any:
        raise NotImplementedError  # pragma: no cover - every subclass defines it

    def logits(self, x: Any, *, batch_size: int | None = None,
               n_threads: int | None = None) -> np.ndarray:
        """The network's outputs before the softmax, ``(n_samples, n_classes)``.

        Args:
            x: ``(n_samples, n_features)`` real array (converted to the model's dtype).
            batch_size: evaluate in chunks of this many rows (None: all at once).
        """
        xa = check_features(x, "x", self.n_features, self.dtype)
        batch_size = positive_int("batch_size", batch_size, or_none=True)
        if xa.shape[0] == 0:
            return np.empty((0, self.n_classes), self.dtype)
        if batch_size is None or xa.shape[0] <= batch_size:
            return self.forward(xa, n_threads=n_threads).logits
        parts = [self.forward(xa[i:i + batch_size], n_threads=n_threads).logits
                 for i in range(0, xa.shape[0], batch_size)]
        return np.concatenate(parts, axis=0)


class MLP(Trainable):
    """A dense network whose last layer is linear (it outputs logits).

    Args:
        weights: one ``(W, b)`` pair per layer, ``W`` of shape ``(n_in, n_out)`` and
            ``b`` of shape ``(n_out,)``, all float32 or all float64; consecutive layers
            must chain (``W[l].shape[1] == W[l+1].shape[0]``). The arrays are used as
            they are (not copied): training updates them in place.
        activations: one activation per layer (names, configs or
            :class:`~varprop.activations.Activation`); the last must be ``"linear"``.
        multipliers: None (the default: every layer is ``x @ W + b``) or one positive
            number per layer: layer l computes ``z = m_l * (x @ W) + b``, the weight
            multipliers of the NTK parameterization and of muP written with an output
            multiplier (docs/sweep.md); the gradients are those of ``W`` itself.

    Attributes:
        weights: the list of ``(W, b)`` pairs.
        activations: the resolved :class:`Activation` of each layer.
        multipliers: the multipliers as a tuple of floats, or None.
    """

    def __init__(self, weights: Sequence[tuple[np.ndarray, np.ndarray]],
                 activations: Sequence[ActivationLike], *,
                 multipliers: Sequence[float] | None = None) -> None:
        if isinstance(weights, (str, bytes)) or not isinstance(weights, Sequence) or not weights:
            raise TypeError("weights must be a non-empty list of (W, b) pairs")
        pairs = self._checked_pairs(weights)
        for l in range(1, len(pairs)):
            w = pairs[l][0]
            if w.shape[0] != pairs[l - 1][0].shape[1]:
                raise ValueError(
                    f"weights[{l}] takes {w.shape[0]} inputs but layer {l - 1} gives "
                    f"{pairs[l - 1][0].shape[1]} outputs"
                )
        if isinstance(activations, (str, Activation, Mapping)):
            raise TypeError("activations must be a list with one activation per layer")
        acts = [get_activation(a) for a in activations]
        if len(acts) != len(pairs):
            raise ValueError(f"activations must have one entry per layer ({len(pairs)}), "
                             f"got {len(acts)}")
        if not acts[-1].is_identity:
            raise ValueError(f"the last layer must be linear (it outputs logits), got {acts[-1]!r}")
        self.weights: list[tuple[np.ndarray, np.ndarray]] = pairs
        self.activations: list[Activation] = acts
        self._set_multipliers(multipliers, "layer")

    @classmethod
    def from_network(cls, net: Any, *, seed: SeedLike = None, dtype: Any = np.float32) -> "MLP":
        """Draw the weights of the analyzer's network spec: the one way an MLP is built.

        Args:
            net: a :class:`varprop.network.Network` that is a chain of ``Dense`` layers,
                each followed by at most one ``Act`` -- what :func:`varprop.mlp` builds --
                whose last dense layer is linear: ``varprop.mlp(..., final_activation=False)``
                (or a ``"linear"`` activation last).
            seed: None, int, SeedSequence or Generator (:func:`varprop._validate.as_generator`);
                one Generator draws every layer in order (W_0, b_0, W_1, b_1, ...), so the
                same seed gives the same network. A dense layer without a bias
                initializer gets zero biases (nothing drawn).
            dtype: float32 (default) or float64.

        Example:
            >>> import varprop
            >>> net = varprop.mlp([4, 32, 3], "relu", "he_normal", final_activation=False)
            >>> MLP.from_network(net, seed=0).widths
            [4, 32, 3]
        """
        from ..network import Act, Dense, Network

        if not isinstance(net, Network):
            raise TypeError(f"net must be a varprop Network (e.g. varprop.mlp(...)), "
                            f"got {type(net).__name__}")
        dt = float_dtype("dtype", dtype, kernels=True)
        chain: list[tuple[Any, Any]] = []
        layers = list(net.layers)
        i = 0
        while i < len(layers):
            if not isinstance(layers[i], Dense):
                raise ValueError(f"net: layer {i} is a {type(layers[i]).__name__}; an MLP is a "
                                 "chain of Dense layers, each followed by at most one Act")
            act = None
            if i + 1 < len(layers) and isinstance(layers[i + 1], Act):
                act = layers[i + 1].activation
            chain.append((layers[i], act))
            i += 1 if act is None else 2
        if not chain:
            raise ValueError("net has no Dense layer")
        last = chain[-1][1]
        if last is not None and not get_activation(last).is_identity:
            raise ValueError(f"the last layer must be linear (it outputs logits), got {last!r}: "
                             "build the network with varprop.mlp(..., final_activation=False)")
        rng = as_generator(seed)
        weights, acts = [], []
        for l, (dense, act) in enumerate(chain):
            w = dense.init((dense.n_in, dense.n_out), seed=rng, dtype=dt)
            if dense.bias_init is None:
                b = np.zeros(dense.n_out, dtype=dt)
            else:
                try:
                    b = dense.bias_init((dense.n_out,), seed=rng, dtype=dt)
                except (TypeError, ValueError) as exc:
                    raise type(exc)(f"the bias initializer of dense layer {l} (shape "
                                    f"({dense.n_out},)): {exc}") from exc
            weights.append((np.ascontiguousarray(w, dt), np.ascontiguousarray(b, dt)))
            acts.append("linear" if act is None else act)
        return cls(weights, acts)

    # ----------------------------------------------------------------- properties
    @property
    def widths(self) -> list[int]:
        """``[n_in, n_1, ..., n_classes]``."""
        return [self.weights[0][0].shape[0]] + [w.shape[1] for w, _ in self.weights]

    @property
    def n_features(self) -> int:
        return self.weights[0][0].shape[0]

    def copy(self) -> "MLP":
        """A deep copy (new arrays, same activations)."""
        return MLP([(w.copy(), b.copy()) for w, b in self.weights], list(self.activations),
                   multipliers=self.multipliers)

    def __repr__(self) -> str:
        acts = ", ".join(a.name for a in self.activations)
        return f"MLP(widths={self.widths}, activations=[{acts}], dtype={self.dtype})"

    # ----------------------------------------------------------------- passes
    def forward(self, x: np.ndarray, *, stats: bool = False,
                n_threads: int | None = None) -> ForwardCache:
        """Run the network on ``x`` (already a C-contiguous array of the model's dtype;
        use :meth:`logits` for arbitrary input) and keep what backward needs."""
        inputs, zs, layer_stats = [x], [], [] if stats else None
        h = x
        with single_threaded_blas():
            for l, ((_, b), act) in enumerate(zip(self.weights, self.activations)):
                w = self._effective(l)
                nt = auto_threads(h.shape[0], w.shape[0], w.shape[1], n_threads)
                out = dense_forward(h, w, b, act, stats=stats, n_threads=nt)
                zs.append(out.z)
                if stats:
                    layer_stats.append(out.stats)
                h = out.a
                inputs.append(h)
        inputs.pop()  # the last layer's a is its z (linear): not an input of anything
        return ForwardCache(inputs, zs, layer_stats)

    def backward(self, cache: ForwardCache, grad_logits: np.ndarray, *,
                 n_threads: int | None = None, grad_z: bool = False
                 ) -> tuple[list[tuple[np.ndarray, np.ndarray]], list[np.ndarray] | None]:
        """Back-propagate ``grad_logits`` (dL/dlogits) through the layers.

        Returns:
            ``(grads, grad_zs)``: ``grads[l] = (dL/dW_l, dL/db_l)``; with ``grad_z=True``
            also ``grad_zs[l] = dL/dz_l`` (else None).
        """
        n = self.n_layers
        grads: list = [None] * n
        gzs: list | None = [None] * n if grad_z else None
        grad_a = grad_logits
        with single_threaded_blas():
            for l in range(n - 1, -1, -1):
                w, act = self._effective(l), self.activations[l]
                x, z = cache.inputs[l], cache.z[l]
                nt = auto_threads(x.shape[0], w.shape[0], w.shape[1], n_threads)
                g = dense_backward(x, w, z, grad_a, act, n_threads=nt)
                grad_w = g.grad_w
                if w is not self.weights[l][0]:  # dL/dW = m * dL/d(m W)
                    grad_w = grad_w * grad_w.dtype.type(self.multipliers[l])
                grads[l] = (grad_w, g.grad_b)
                if gzs is not None:
                    gzs[l] = grad_a if act.is_identity else (
                        grad_a * activation_apply(z, act, derivative=True))
                grad_a = g.grad_x
        return grads, gzs


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise ``log softmax`` computed stably (max subtracted, then log-sum-exp)."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.sum(np.exp(shifted), axis=1, keepdims=True))


def softmax_cross_entropy(logits: np.ndarray, y: np.ndarray, *, grad: bool = True
                          ) -> tuple[float, np.ndarray | None, int]:
    """Mean softmax cross-entropy of integer labels, its gradient and the hit count.

    ``L = -(1/B) sum_i log softmax(logits_i)[y_i]`` via log-sum-exp with the row maximum
    subtracted, so logits of any size give a finite loss (no overflow in exp).

    Args:
        logits: ``(B, K)`` float array.
        y: ``(B,)`` int labels in ``0..K-1`` (not checked here: the callers check).
        grad: also return ``dL/dlogits = (softmax - onehot) / B`` (logits' dtype).

    Returns:
        ``(loss, grad_logits or None, n_correct)``; the loss is a float64 mean
        (NaN if the logits hold NaN); ``n_correct`` counts ``argmax(logits) == y``.
    """
    batch = logits.shape[0]
    logp = log_softmax(logits)
    rows = np.arange(batch)
    loss = -float(np.sum(logp[rows, y], dtype=np.float64)) / batch if batch else math.nan
    n_correct = int(np.count_nonzero(np.argmax(logits, axis=1) == y))
    if not grad:
        return loss, None, n_correct
    g = np.exp(logp)
    g[rows, y] -= 1
    g /= batch
    return loss, g, n_correct


def _resolve_initializer(spec: InitializerLike, argname: str):
    from ..initializers import get  # imported here: the subpackage is built separately

    try:
        return get(spec)
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"{argname}: {exc}") from exc


def classifier(
    widths: Sequence[int],
    activation: Union[ActivationLike, Sequence[ActivationLike]] = "relu",
    *,
    kernel_initializer: Union[InitializerLike, Sequence[InitializerLike]] = "glorot_uniform",
    bias_initializer: Union[InitializerLike, Sequence[InitializerLike]] = "zeros",
    seed: Any = None,
    dtype: Any = np.float32,
) -> MLP:
    """A classifier :class:`MLP` ``widths[0] -> ... -> widths[-1]`` with Keras's defaults.

    The analyzer's :func:`varprop.mlp` with the last layer linear (it gives the
    logits), drawn by :meth:`MLP.from_network`. What differs from :func:`varprop.mlp`:
    the output layer is always linear, the weights default to ``glorot_uniform``
    (Keras's ``Dense`` default, where the analyzer's default is ``he_normal``), and the
    weights are drawn (``seed``, ``dtype``).

    Args:
        widths: input features, hidden widths, classes (at least two entries, all >= 1).
        activation: the hidden layers' activation, or a list with one per hidden layer
            (``len(widths) - 2`` entries) or one per layer (the last ``"linear"``).
        kernel_initializer: a name, a config dict or an Initializer (see
            :func:`varprop.initializers.get`), or a list with one per layer.
        bias_initializer: the same for the biases, drawn with shape ``(n_out,)``
            (default zeros, as in Keras).
        seed, dtype: as in :meth:`MLP.from_network`.

    Example:
        >>> model = classifier([4, 32, 16, 3], kernel_initializer="he_normal", seed=0)
        >>> model.widths
        [4, 32, 16, 3]
    """
    from ..network import mlp as network_mlp

    if isinstance(widths, (str, bytes)) or not isinstance(widths, Sequence):
        raise TypeError(f"widths must be a list of layer widths, got {type(widths).__name__}")
    widths = [positive_int(f"widths[{i}]", n) for i, n in enumerate(widths)]
    if len(widths) < 2:
        raise ValueError(f"widths must have at least 2 entries (inputs, outputs), got {widths}")
    dt = float_dtype("dtype", dtype, kernels=True)
    n_layers = len(widths) - 1
    n_hidden = n_layers - 1
    if isinstance(activation, (str, Activation, Mapping)):
        acts = [activation] * n_hidden + ["linear"]
    elif isinstance(activation, (list, tuple)):
        if len(activation) == n_hidden:
            acts = list(activation) + ["linear"]
        elif len(activation) == n_layers:
            acts = list(activation)
        else:
            raise ValueError(f"activation must be one activation or a list of {n_hidden} "
                             f"(hidden layers) or {n_layers} (all layers), got {len(activation)}")
    else:
        raise TypeError(f"activation must be a name, a config dict, an Activation or a list, "
                        f"got {type(activation).__name__}")
    acts = [get_activation(a) for a in acts]
    if not acts[-1].is_identity:
        raise ValueError(f"the last layer must be linear (it outputs logits), got {acts[-1]!r}")
    kinits = [_resolve_initializer(k, "kernel_initializer")
              for k in per_layer("kernel_initializer", kernel_initializer, n_layers)]
    binits = [_resolve_initializer(k, "bias_initializer")
              for k in per_layer("bias_initializer", bias_initializer, n_layers)]
    net = network_mlp(widths, acts, kinits, binits, final_activation=False)
    return MLP.from_network(net, seed=seed, dtype=dt)
