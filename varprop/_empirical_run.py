"""The engine of :func:`varprop.measure`: one seed's forward and backward sweep.

A network's *ops* are its steps (:func:`varprop.layers.walk`: a Dense fused with the
Act that follows it, a lone Act, a normalization, or a Residual holding its own steps),
each computed by its layer. One :class:`SeedRun` pushes a batch through the ops, writes the statistics of every dense
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
from typing import Any, Callable, Sequence

import numpy as np

from .activations import get_activation
from .layers import Step

__all__ = ["FIELDS", "SeedRun", "stream", "default_checkpoint_every", "cache_bytes"]

#: Per-layer statistics one seed produces, rows of :attr:`SeedRun.values`.
FIELDS = ("z_mean", "z_var", "a_mean", "a_var", "grad_var", "weight_grad_var", "z_corr",
          "channel_sq_mean", "channel_var")
_ROW = {name: i for i, name in enumerate(FIELDS)}

INPUT_KEY, PAIR_KEY, GRAD_KEY, LAYER_KEY = 0, 1, 2, 3
_LINEAR = get_activation("linear")


def stream(base: int, *key: int) -> np.random.SeedSequence:
    """The SeedSequence ``SeedSequence(base).spawn`` would give at ``key`` (see module doc)."""
    return np.random.SeedSequence(base, spawn_key=tuple(key))


#: Keep every op's cache (no recomputation) when that needs at most this many bytes.
KEEP_ALL_BYTES = 256 * 2**20


def cache_bytes(steps: Sequence[Step], width: int, batch: int, itemsize: int
                ) -> tuple[int, int]:
    """(bytes the backward caches of ``steps`` hold when all are kept, output width)."""
    total = 0
    for step in steps:
        size, width = step.layer.cache_bytes(step, width, batch, itemsize)
        total += size
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
    """Variance of all entries (ddof 0), accumulated in float64 (two-pass).

    A float32/float64 array goes through the compiled two-pass loop (one fixed order, no
    float64 temporaries: numpy's np.var was a tenth of measure's time, docs/kernels.md);
    other arrays, or no compiled extension, through np.var."""
    if arr.size == 0:
        return math.nan
    if arr.dtype in (np.float32, np.float64):
        try:
            from . import _kernels
        except ImportError:  # no extension: numpy's two passes
            _kernels = None
        if _kernels is not None and hasattr(_kernels, "pooled_var"):
            return float(_kernels.pooled_var(np.ascontiguousarray(arr).reshape(-1)))
    return float(np.var(arr, dtype=np.float64))


def pooled_corr(z1: np.ndarray, z2: np.ndarray) -> float:
    """sum(z1 z2) / sqrt(sum z1^2 sum z2^2) over all entries (uncentred, float64)."""
    a, b = z1.astype(np.float64), z2.astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return float(np.sum(a * b) / np.sqrt(np.sum(a * a) * np.sum(b * b)))


# ----------------------------------------------------------------------------- one seed
class SeedRun:
    """Forward (and backward) sweep of one seed over a network's steps (each step's layer
    computes itself; see :class:`varprop.layers.Layer`); fills :attr:`values`
    (FIELDS x n_dense)."""

    #: the activation of a weighted layer with none fused after it
    linear = _LINEAR

    def __init__(self, ops: tuple[Step, ...], n_dense: int, base: int, dtype: np.dtype,
                 n_threads: int, tick: Callable[[], None] | None = None) -> None:
        self.ops = ops
        self.base = base
        self.dtype = np.dtype(dtype)
        self.n_threads = n_threads
        self.tick = tick
        self.values = np.full((len(FIELDS), n_dense), np.nan)
        #: per-pixel maps of spatial weighted layers: ``maps[index][name]``
        self.maps: dict[int, dict[str, np.ndarray]] = {}

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

    # ------------------------------------------------------------------ what layers use
    def stream(self, index: int, k: int) -> np.random.SeedSequence:
        """The stream of parameter ``k`` of weighted layer ``index`` (module doc)."""
        return stream(self.base, LAYER_KEY, index, k)

    def parameters(self, layer: Any, index: int) -> tuple[np.ndarray, np.ndarray | None]:
        """Weighted layer ``index``'s ``(w, b)``: drawn afresh from its streams (the
        measurement regenerates weights instead of storing them; a trainer's run hands
        out the model's own arrays instead)."""
        return layer.draw(self, index)

    def gradients(self, index: int, grad_w: np.ndarray, grad_b: np.ndarray | None) -> None:
        """A weighted layer's parameter gradients (a trainer's run keeps them; the
        measurement records only their statistics)."""

    def record_forward(self, index: int, stats: Any) -> None:
        """A weighted layer's forward statistics (the kernels' pooled and per-unit ones)."""
        col = self.values[:, index]
        col[_ROW["z_mean"]] = stats.z_pooled_mean
        col[_ROW["z_var"]] = stats.z_pooled_var
        col[_ROW["a_mean"]] = stats.a_pooled_mean
        col[_ROW["a_var"]] = stats.a_pooled_var
        col[_ROW["channel_sq_mean"]] = float(np.mean(stats.z_mean ** 2))
        col[_ROW["channel_var"]] = float(np.mean(stats.z_var))
        if self.tick is not None:
            self.tick()

    def record_corr(self, index: int, z1: np.ndarray, z2: np.ndarray) -> None:
        """The pre-activation correlation of the two correlated batches."""
        self.values[_ROW["z_corr"], index] = pooled_corr(z1, z2)

    def record_backward(self, index: int, grad_z: np.ndarray, grad_w: np.ndarray,
                        batch: int) -> None:
        """A weighted layer's gradient statistics; ``grad_w`` is summed over the batch."""
        col = self.values[:, index]
        col[_ROW["grad_var"]] = pooled_var(grad_z)
        col[_ROW["weight_grad_var"]] = pooled_var(grad_w) / batch
        if self.tick is not None:
            self.tick()

    def record_maps(self, index: int, **arrays: np.ndarray) -> None:
        """Per-pixel variance maps of a spatial layer's ``(batch, *spatial, C)`` arrays
        (pooled over the batch and the channels, float64): ``z``, ``a`` and ``grad``
        give the ``z_var``, ``a_var`` and ``grad_var`` maps."""
        maps = self.maps.setdefault(index, {})
        for name, arr in arrays.items():
            axes = (0, arr.ndim - 1)
            maps[f"{name}_var"] = np.var(arr, axis=axes, dtype=np.float64)

    def forward(self, step: Step, x: np.ndarray, x2: np.ndarray | None, *, keep: bool,
                record: bool) -> tuple[np.ndarray, np.ndarray | None, Any]:
        """One step: (output, second batch's output or None, cache for backward or None)."""
        return step.layer.forward(step, self, x, x2, keep, record)

    def backward(self, step: Step, cache: Any, grad: np.ndarray) -> np.ndarray:
        """dL/d(step input) from dL/d(step output), recording weighted layers' statistics."""
        return step.layer.backward(step, self, cache, grad)
