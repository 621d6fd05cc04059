"""The engine of :func:`varprop.measure`: one seed's forward and backward sweep.

A network is compiled into a flat tuple of *ops* (a Dense fused with the Act that
follows it, a lone Act, a normalization, or a Residual holding its own ops). One
:class:`SeedRun` pushes a batch through the ops, writes the statistics of every dense
layer into a ``(len(FIELDS), n_dense)`` array, and, for the backward pass, recomputes
what it needs from checkpoints:

* forward sweep: the input of every k-th top-level op is kept as a checkpoint; the
  caches (layer inputs, pre-activations, weights) of the *current* segment of k ops are
  kept too, so the last segment needs no recomputation and ``k >= n_ops`` is the
  keep-everything path;
* backward sweep, segment by segment from the end: recompute the segment's forward pass
  from its checkpoint (weights regenerated from their per-layer seeds, never stored for
  the whole network), back-propagate through it, drop it.

Peak memory is therefore about ``n_ops / k`` checkpoints plus ``k`` ops' caches, minimal
near ``k = sqrt(n_ops)``; with ``backward=False`` nothing is cached and only the current
layer's input and output are alive. A Residual block is one op: its branch's caches are
kept while that block is in the current segment (branches are short).

Random streams (all ``np.random.SeedSequence(base, spawn_key=...)``, which is exactly
``SeedSequence(base).spawn(...)``'s children, so no stream depends on another's length):

==================  =====================================================
spawn key           stream
==================  =====================================================
``(0,)``            the input batch (standard normal)
``(1,)``            the noise of the correlated second batch
``(2,)``            the output gradient dL/d(output) (standard normal)
``(3, i, 0)``       the weights of dense layer ``i`` (forward order)
``(3, i, 1)``       its bias
==================  =====================================================

Every array operation here is either a varprop kernel (bitwise independent of the
thread count) or a single-threaded numpy reduction, so the numbers never depend on
``n_threads``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from .activations import Activation, get_activation
from .kernels import activation_apply, dense_backward, dense_forward
from .network import Act, BatchNorm, Dense, LayerNorm, Residual

__all__ = ["FIELDS", "compile_layers", "SeedRun", "stream", "default_checkpoint_every",
           "check_eps", "check_alpha"]

#: Per-layer statistics one seed produces, rows of :attr:`SeedRun.values`.
FIELDS = ("z_mean", "z_var", "a_mean", "a_var", "grad_var", "weight_grad_var", "z_corr",
          "channel_sq_mean", "channel_var")
_ROW = {name: i for i, name in enumerate(FIELDS)}

INPUT_KEY, PAIR_KEY, GRAD_KEY, LAYER_KEY = 0, 1, 2, 3
_LINEAR = get_activation("linear")


def stream(base: int, *key: int) -> np.random.SeedSequence:
    """The SeedSequence ``SeedSequence(base).spawn`` would give at ``key`` (see module doc)."""
    return np.random.SeedSequence(base, spawn_key=tuple(key))


# ----------------------------------------------------------------------------- ops
@dataclass(frozen=True)
class DenseOp:
    index: int  # position among the network's dense layers
    layer: Dense
    act: Activation | None  # the Act fused into the kernel call, None = linear


@dataclass(frozen=True)
class ActOp:
    act: Activation


@dataclass(frozen=True)
class NormOp:
    axis: int  # 0: batch normalization (over the batch), 1: layer normalization
    eps: float


@dataclass(frozen=True)
class ResidualOp:
    ops: tuple[Any, ...]
    alpha: float


def compile_layers(layers: Sequence[Any], counter: list[int] | None = None) -> tuple[Any, ...]:
    """Network layers -> ops; a Dense directly followed by an Act becomes one fused op."""
    counter = [0] if counter is None else counter
    ops: list[Any] = []
    i = 0
    while i < len(layers):
        layer = layers[i]
        if isinstance(layer, Dense):
            nxt = layers[i + 1] if i + 1 < len(layers) else None
            act = nxt.activation if isinstance(nxt, Act) else None
            ops.append(DenseOp(counter[0], layer, act))
            counter[0] += 1
            i += 2 if act is not None else 1
            continue
        if isinstance(layer, Act):
            ops.append(ActOp(layer.activation))
        elif isinstance(layer, BatchNorm):
            ops.append(NormOp(0, check_eps(layer)))
        elif isinstance(layer, LayerNorm):
            ops.append(NormOp(1, check_eps(layer)))
        elif isinstance(layer, Residual):
            ops.append(ResidualOp(compile_layers(layer.branch, counter), check_alpha(layer)))
        else:  # Network validated its layers already; keep the message anyway
            raise TypeError(f"measure: unknown layer type {type(layer).__name__}")
        i += 1
    return tuple(ops)


def check_eps(layer: Any) -> float:
    """A normalization layer's ``eps``: finite and >= 0, else a ValueError naming it."""
    eps = layer.eps
    if isinstance(eps, bool) or not isinstance(eps, (int, float, np.number)) \
            or not math.isfinite(eps) or eps < 0:
        raise ValueError(f"{type(layer).__name__}: eps must be a finite number >= 0, "
                         f"got {eps!r}")
    return float(eps)


def check_alpha(layer: Any) -> float:
    """A Residual's ``alpha``: a finite real number, else a ValueError naming it."""
    alpha = layer.alpha
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float, np.number)) \
            or not math.isfinite(alpha):
        raise ValueError(f"Residual: alpha must be a finite real number, got {alpha!r}")
    return float(alpha)


#: Keep every op's cache (no recomputation) when that needs at most this many bytes.
KEEP_ALL_BYTES = 256 * 2**20


def cache_bytes(ops: Sequence[Any], width: int, batch: int, itemsize: int) -> tuple[int, int]:
    """(bytes the backward caches of ``ops`` hold when all are kept, output width)."""
    total = 0
    for op in ops:
        if isinstance(op, DenseOp):
            n_in, n_out = op.layer.n_in, op.layer.n_out
            total += (batch * (n_in + n_out) + n_in * n_out) * itemsize  # x, z, w
            width = n_out
        elif isinstance(op, ResidualOp):
            inner, width = cache_bytes(op.ops, width, batch, itemsize)
            total += inner + batch * width * itemsize
        else:
            total += batch * width * itemsize
    return total, width


def default_checkpoint_every(ops: Sequence[Any], width: int, batch: int, itemsize: int) -> int:
    """Every op (no recomputation) if its caches fit in :data:`KEEP_ALL_BYTES`, else
    ``ceil(sqrt(n_ops))``, which balances checkpoints against one segment's caches."""
    n_ops = max(len(ops), 1)
    if cache_bytes(ops, width, batch, itemsize)[0] <= KEEP_ALL_BYTES:
        return n_ops
    return max(1, math.ceil(math.sqrt(n_ops)))


# ----------------------------------------------------------------------------- stats
def pooled_var(arr: np.ndarray) -> float:
    """Variance of all entries (ddof 0), accumulated in float64 (two-pass)."""
    if arr.size == 0:
        return math.nan
    return float(np.var(arr, dtype=np.float64))


def pooled_corr(z1: np.ndarray, z2: np.ndarray) -> float:
    """sum(z1 z2) / sqrt(sum z1^2 sum z2^2) over all entries (uncentred, float64)."""
    a, b = z1.astype(np.float64), z2.astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return float(np.sum(a * b) / np.sqrt(np.sum(a * a) * np.sum(b * b)))


def _normalize(x: np.ndarray, axis: int, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """Training-mode normalization without affine: (y in x's dtype, 1/std in float64)."""
    x64 = x.astype(np.float64)
    centred = x64 - x64.mean(axis=axis, keepdims=True)
    inv = 1.0 / np.sqrt(np.mean(centred * centred, axis=axis, keepdims=True) + eps)
    return (centred * inv).astype(x.dtype), inv


def _normalize_backward(grad: np.ndarray, y: np.ndarray, inv: np.ndarray, axis: int) -> np.ndarray:
    """dL/dx of y = (x - mean) / sqrt(var + eps) (statistics over ``axis``)."""
    g, y64 = grad.astype(np.float64), y.astype(np.float64)
    dx = inv * (g - g.mean(axis=axis, keepdims=True)
                - y64 * np.mean(g * y64, axis=axis, keepdims=True))
    return dx.astype(grad.dtype)


# ----------------------------------------------------------------------------- one seed
class SeedRun:
    """Forward (and backward) sweep of one seed; fills :attr:`values` (FIELDS x n_dense)."""

    def __init__(self, ops: tuple[Any, ...], n_dense: int, base: int, dtype: np.dtype,
                 n_threads: int, tick: Callable[[], None] | None = None) -> None:
        self.ops = ops
        self.base = base
        self.dtype = np.dtype(dtype)
        self.n_threads = n_threads
        self.tick = tick
        self.values = np.full((len(FIELDS), n_dense), np.nan)

    # ------------------------------------------------------------------ whole sweep
    def run(self, x: np.ndarray, x2: np.ndarray | None, backward: bool,
            checkpoint_every: int) -> None:
        """Forward with statistics; then, if ``backward``, back-propagate a standard-normal
        output gradient segment by segment (``checkpoint_every`` top-level ops each)."""
        ops, k = self.ops, checkpoint_every
        checkpoints: dict[int, np.ndarray] = {}
        segment: list[Any] = []
        for i, op in enumerate(ops):
            if backward and i % k == 0:
                checkpoints[i] = x
                segment = []  # the previous segment's caches are released here
            x, x2, cache = self.forward(op, x, x2, keep=backward, record=True)
            if backward:
                segment.append(cache)
        if not backward:
            return
        x2 = None
        rng = np.random.default_rng(stream(self.base, GRAD_KEY))
        grad = rng.standard_normal(x.shape).astype(self.dtype)
        del x
        starts = list(range(0, len(ops), k))
        for start in reversed(starts):
            seg_ops = ops[start:start + k]
            if start != starts[-1]:  # the last segment's caches survive the forward sweep
                h = checkpoints[start]
                segment = []
                for op in seg_ops:
                    h, _, cache = self.forward(op, h, None, keep=True, record=False)
                    segment.append(cache)
                del h
            for op, cache in zip(reversed(seg_ops), reversed(segment)):
                grad = self.backward(op, cache, grad)
            segment = []
            del checkpoints[start]

    # ------------------------------------------------------------------ weights
    def weights(self, op: DenseOp) -> tuple[np.ndarray, np.ndarray | None]:
        """Draw (w, b) of a dense layer from its own streams: the same every time."""
        layer = op.layer
        shape = (layer.n_in, layer.n_out)
        w = layer.init(shape, seed=stream(self.base, LAYER_KEY, op.index, 0), dtype=self.dtype)
        if layer.bias_init is None:
            return w, None
        try:
            b = layer.bias_init((layer.n_out,), seed=stream(self.base, LAYER_KEY, op.index, 1),
                                dtype=self.dtype)
        except (TypeError, ValueError) as exc:
            raise type(exc)(
                f"measure: dense layer {op.index}: bias_init {layer.bias_init!r} cannot draw "
                f"a bias of shape ({layer.n_out},): {exc}") from exc
        return w, b

    # ------------------------------------------------------------------ forward
    def forward(self, op: Any, x: np.ndarray, x2: np.ndarray | None, *, keep: bool,
                record: bool) -> tuple[np.ndarray, np.ndarray | None, Any]:
        """One op: (output, second batch's output or None, cache for backward or None)."""
        if isinstance(op, DenseOp):
            return self._dense_forward(op, x, x2, keep, record)
        if isinstance(op, ActOp):
            y = activation_apply(x, op.act)
            y2 = None if x2 is None else activation_apply(x2, op.act)
            return y, y2, (x if keep else None)
        if isinstance(op, NormOp):
            y, inv = _normalize(x, op.axis, op.eps)
            y2 = None if x2 is None else _normalize(x2, op.axis, op.eps)[0]
            return y, y2, ((y, inv) if keep else None)
        # Residual: x + alpha * branch(x)
        h, h2 = x, x2
        caches: list[Any] | None = [] if keep else None
        for sub in op.ops:
            h, h2, cache = self.forward(sub, h, h2, keep=keep, record=record)
            if caches is not None:
                caches.append(cache)
        alpha = self.dtype.type(op.alpha)
        y = x + alpha * h
        y2 = None if x2 is None else x2 + alpha * h2
        return y, y2, caches

    def _dense_forward(self, op: DenseOp, x: np.ndarray, x2: np.ndarray | None, keep: bool,
                       record: bool) -> tuple[np.ndarray, np.ndarray | None, Any]:
        w, b = self.weights(op)
        act = op.act if op.act is not None else _LINEAR
        r = dense_forward(x, w, b, act, stats=record, n_threads=self.n_threads)
        y = r.a if op.act is not None else r.z
        y2 = None
        if x2 is not None:
            r2 = dense_forward(x2, w, b, act, stats=False, n_threads=self.n_threads)
            y2 = r2.a if op.act is not None else r2.z
            if record:
                self.values[_ROW["z_corr"], op.index] = pooled_corr(r.z, r2.z)
            del r2
        if record:
            s = r.stats
            col = self.values[:, op.index]
            col[_ROW["z_mean"]] = s.z_pooled_mean
            col[_ROW["z_var"]] = s.z_pooled_var
            col[_ROW["a_mean"]] = s.a_pooled_mean
            col[_ROW["a_var"]] = s.a_pooled_var
            col[_ROW["channel_sq_mean"]] = float(np.mean(s.z_mean ** 2))
            col[_ROW["channel_var"]] = float(np.mean(s.z_var))
            if self.tick is not None:
                self.tick()
        return y, y2, ((x, w, r.z) if keep else None)

    # ------------------------------------------------------------------ backward
    def backward(self, op: Any, cache: Any, grad: np.ndarray) -> np.ndarray:
        """dL/d(op input) from dL/d(op output), recording dense layers' gradient stats."""
        if isinstance(op, DenseOp):
            x, w, z = cache
            act = op.act if op.act is not None else _LINEAR
            g = dense_backward(x, w, z, grad, act, n_threads=self.n_threads)
            col = self.values[:, op.index]
            col[_ROW["grad_var"]] = pooled_var(g.grad_z)
            col[_ROW["weight_grad_var"]] = pooled_var(g.grad_w) / x.shape[0]
            if self.tick is not None:
                self.tick()
            return g.grad_x
        if isinstance(op, ActOp):
            return grad * activation_apply(cache, op.act, derivative=True)
        if isinstance(op, NormOp):
            y, inv = cache
            return _normalize_backward(grad, y, inv, op.axis)
        # Residual
        alpha = self.dtype.type(op.alpha)
        g = alpha * grad
        for sub, sub_cache in zip(reversed(op.ops), reversed(cache)):
            g = self.backward(sub, sub_cache, g)
        return grad + g
