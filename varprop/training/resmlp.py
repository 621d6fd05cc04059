"""The residual MLP of the trainer: an input layer, ``L`` residual blocks and a readout,
with forward and backward passes on the fused kernels (the network of depth-muP's
coordinate check, docs/sweep.md section 7).

With the stream ``h`` of width ``n``, ``phi`` the activation, ``a`` the branch multiplier
and ``m_l`` the per-layer weight multipliers (1 unless given)::

    h_0    = m_0 (x @ W_0) + b_0                                  input layer (linear)
    h_l    = h_{l-1} + a * (m_l (phi(h_{l-1}) @ W_l) + b_l)       block l = 1..L
    logits = m_{L+1} (phi(h_L) @ W_{L+1}) + b_{L+1}                readout

Each block has one weight matrix (block depth 1: the case in which Tensor Programs VI,
Yang et al. 2023, arXiv 2310.02244, finds depth-muP to be the unique optimal depthwise
parameterization) in the pre-activation form ``h + a W phi(h)`` of the residual networks
of Bordelon et al. 2023 (arXiv 2309.16620; depth-muP is ``a = 1/sqrt(L)``). We take
that form rather than the post-activation ``h + a phi(W h)`` because ``W phi(h)`` has
mean zero over the weights for any ``phi``: a ReLU branch ``phi(W h)`` would add a
positive mean ``a E[phi]`` to every unit at every block, a drift that grows as ``a L``
(``sqrt(L)`` under depth-muP) unless it is subtracted (Tensor Programs VI's branches
carry a mean subtraction, as we recall the paper; docs/sweep.md section 7).

Every matrix product runs in :func:`varprop.kernels.dense_forward` /
:func:`~varprop.kernels.dense_backward` (a linear dense layer per weight matrix) and
``phi``, ``phi'`` in :func:`varprop.kernels.activation_apply`; numpy only adds and scales
arrays elementwise. The plain :class:`~varprop.training.model.MLP` is untouched.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence, Union

import numpy as np

from .._blas import single_threaded_blas
from .._validate import finite_real
from ..activations import Activation, get_activation
from ..kernels import activation_apply, dense_backward, dense_forward
from .model import Trainable, auto_threads

__all__ = ["ResidualMLP", "ResidualCache"]

ActivationLike = Union[str, Activation, Mapping[str, Any]]

_LINEAR = get_activation("linear")


@dataclass
class ResidualCache:
    """What one forward pass of a :class:`ResidualMLP` keeps for the backward pass.

    Attributes:
        inputs: the input of each weighted layer: ``inputs[0]`` is x, ``inputs[l]`` is
            ``phi(h_{l-1})`` for the blocks ``l = 1..L`` and ``inputs[L+1]`` is
            ``phi(h_L)``, the readout's input.
        z: the output of each weighted layer: ``z[l]`` is the stream ``h_l`` after the
            input layer (l = 0) and after block l (1..L); ``z[L+1]`` are the logits.
        branch: ``branch[l-1]`` is block l's branch output before the multiplier ``a``,
            ``m_l (phi(h_{l-1}) @ W_l) + b_l``.
    """

    inputs: list[np.ndarray]
    z: list[np.ndarray]
    branch: list[np.ndarray]
    stats: None = None

    @property
    def logits(self) -> np.ndarray:
        return self.z[-1]


class ResidualMLP(Trainable):
    """An input layer, ``len(weights) - 2`` residual blocks and a linear readout.

    Args:
        weights: ``(W, b)`` pairs: the input layer ``(n_in, n)``, one square ``(n, n)``
            pair per block, the readout ``(n, n_classes)``; biases of shape ``(n_out,)``;
            all float32 or all float64. Used as they are (training updates them in place).
        activation: ``phi`` (a name, config or Activation), applied to the stream before
            every block's matrix and before the readout.
        branch_multiplier: ``a`` in ``h + a * branch`` (finite, > 0): 1 is a standard
            residual network, ``1/sqrt(L)`` depth-muP.
        multipliers: None or one positive number per weighted layer (input, blocks,
            readout): layer l computes ``m_l (x @ W_l) + b_l``, the width multipliers of
            :class:`~varprop.training.model.MLP`; the gradients are those of ``W`` itself.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> ws = [(rng.standard_normal((4, 8)), np.zeros(8))]
        >>> ws += [(rng.standard_normal((8, 8)) / 8, np.zeros(8)) for _ in range(3)]
        >>> ws += [(rng.standard_normal((8, 2)), np.zeros(2))]
        >>> model = ResidualMLP(ws, "relu", branch_multiplier=3 ** -0.5)
        >>> model.n_blocks, model.logits(rng.standard_normal((5, 4))).shape
        (3, (5, 2))
    """

    def __init__(self, weights: Sequence[tuple[np.ndarray, np.ndarray]],
                 activation: ActivationLike = "relu", *, branch_multiplier: float = 1.0,
                 multipliers: Sequence[float] | None = None) -> None:
        if isinstance(weights, (str, bytes)) or not isinstance(weights, Sequence):
            raise TypeError("weights must be a list of (W, b) pairs")
        if len(weights) < 2:
            raise ValueError(f"weights needs at least an input layer and a readout (2 pairs), "
                             f"got {len(weights)}")
        pairs = self._checked_pairs(weights)
        n = pairs[0][0].shape[1]
        for l, (w, _) in enumerate(pairs[1:-1], start=1):
            if w.shape != (n, n):
                raise ValueError(f"weights[{l}] is a residual block: W must be ({n}, {n}) "
                                 f"(the stream's width), got {w.shape}")
        if pairs[-1][0].shape[0] != n:
            raise ValueError(f"weights[{len(pairs) - 1}] (the readout) takes "
                             f"{pairs[-1][0].shape[0]} inputs but the stream has width {n}")
        if isinstance(activation, (list, tuple)):
            raise TypeError("activation must be one activation (name, config or Activation), "
                            "got a list")
        try:
            act = get_activation(activation)
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"activation: {exc}") from None
        self.weights: list[tuple[np.ndarray, np.ndarray]] = pairs
        self.activation: Activation = act
        self.branch_multiplier: float = finite_real("branch_multiplier", branch_multiplier,
                                                    positive=True)
        self._set_multipliers(multipliers, "weighted layer")

    # ----------------------------------------------------------------- properties
    @property
    def n_blocks(self) -> int:
        """``L``, the residual blocks."""
        return len(self.weights) - 2

    @property
    def width(self) -> int:
        """The stream's width ``n``."""
        return self.weights[0][0].shape[1]

    @property
    def n_features(self) -> int:
        return self.weights[0][0].shape[0]

    @property
    def widths(self) -> list[int]:
        """``[n_in, n, ..., n, n_classes]``: the fans of the weighted layers in order."""
        return [self.weights[0][0].shape[0]] + [w.shape[1] for w, _ in self.weights]

    def copy(self) -> "ResidualMLP":
        """A deep copy (new arrays, same activation and multipliers)."""
        return ResidualMLP([(w.copy(), b.copy()) for w, b in self.weights], self.activation,
                           branch_multiplier=self.branch_multiplier,
                           multipliers=self.multipliers)

    def __repr__(self) -> str:
        return (f"ResidualMLP(n_in={self.n_features}, width={self.width}, "
                f"blocks={self.n_blocks}, classes={self.n_classes}, "
                f"activation={self.activation.name}, branch_multiplier="
                f"{self.branch_multiplier:g}, dtype={self.dtype})")

    # ----------------------------------------------------------------- passes
    def forward(self, x: np.ndarray, *, stats: bool = False,
                n_threads: int | None = None) -> ResidualCache:
        """Run the network on ``x`` (a C-contiguous array of the model's dtype; use
        :meth:`logits` for arbitrary input) and keep what :meth:`backward` needs."""
        if stats:
            raise ValueError("stats: per-layer batch statistics are not recorded for a "
                             "ResidualMLP (the stream is read from the cache's z instead)")
        act, a = self.activation, self.dtype.type(self.branch_multiplier)
        n_last = self.n_layers - 1
        # a diverged network's inf/NaN pass through the stream's sums silently, as they
        # do through the kernels (a sweep records a diverged cell as null)
        with single_threaded_blas(), np.errstate(over="ignore", invalid="ignore"):
            def dense(l: int, inp: np.ndarray) -> np.ndarray:
                w = self._effective(l)
                nt = auto_threads(inp.shape[0], w.shape[0], w.shape[1], n_threads)
                return dense_forward(inp, w, self.weights[l][1], _LINEAR, n_threads=nt).z

            h = dense(0, x)
            inputs, zs, branch = [x], [h], []
            for l in range(1, n_last):
                u = activation_apply(h, act)
                v = dense(l, u)
                h = h + a * v  # a new array: the cache keeps every h_l
                inputs.append(u)
                branch.append(v)
                zs.append(h)
            u = activation_apply(h, act)
            inputs.append(u)
            zs.append(dense(n_last, u))
        return ResidualCache(inputs, zs, branch)

    def backward(self, cache: ResidualCache, grad_logits: np.ndarray, *,
                 n_threads: int | None = None, grad_z: bool = False
                 ) -> tuple[list[tuple[np.ndarray, np.ndarray]], list[np.ndarray] | None]:
        """Back-propagate ``grad_logits`` (dL/dlogits) through the readout, the blocks
        (the stream's gradient is the skip path's plus the branch's) and the input layer.

        Returns:
            ``(grads, grad_zs)``: ``grads[l] = (dL/dW_l, dL/db_l)`` per weighted layer;
            with ``grad_z=True`` also ``grad_zs[l] = dL/dz_l`` for the cache's ``z``
            (the stream ``h_l``, then the logits), else None.
        """
        if not isinstance(cache, ResidualCache):
            raise TypeError(f"cache must be the ResidualCache of forward(), got "
                            f"{type(cache).__name__}")
        act, a = self.activation, self.dtype.type(self.branch_multiplier)
        n_last = self.n_layers - 1
        grads: list = [None] * self.n_layers
        gzs: list | None = [None] * self.n_layers if grad_z else None

        def dense(l: int, out: np.ndarray, grad_out: np.ndarray) -> np.ndarray:
            w, x = self._effective(l), cache.inputs[l]
            nt = auto_threads(x.shape[0], w.shape[0], w.shape[1], n_threads)
            g = dense_backward(x, w, out, grad_out, _LINEAR, n_threads=nt)
            grad_w = g.grad_w
            if w is not self.weights[l][0]:  # dL/dW = m * dL/d(m W)
                grad_w = grad_w * grad_w.dtype.type(self.multipliers[l])
            grads[l] = (grad_w, g.grad_b)
            return g.grad_x

        with single_threaded_blas(), np.errstate(over="ignore", invalid="ignore"):
            if gzs is not None:
                gzs[n_last] = grad_logits
            # the readout reads phi(h_L): dL/dh_L = dL/dphi * phi'(h_L)
            gh = dense(n_last, cache.z[n_last], grad_logits) * activation_apply(
                cache.z[n_last - 1], act, derivative=True)
            for l in range(n_last - 1, 0, -1):
                if gzs is not None:
                    gzs[l] = gh
                # h_l = h_{l-1} + a * v_l: the branch sees a * dL/dh_l; the skip passes
                # dL/dh_l through unchanged
                gu = dense(l, cache.branch[l - 1], a * gh)
                gh = gh + gu * activation_apply(cache.z[l - 1], act, derivative=True)
            if gzs is not None:
                gzs[0] = gh
            dense(0, cache.z[0], gh)
        return grads, gzs
