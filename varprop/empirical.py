"""The empirical half of the analyzer: per-layer statistics measured on drawn networks.

:func:`measure` draws every layer's weights with its initializer (seeded), pushes a
batch forward through the fused kernels of :mod:`varprop.kernels` with their batch
statistics on, back-propagates a standard-normal output gradient, and returns a
:class:`~varprop.profile.Profile` of the same record type as the analytic side, with
means over seeds and 95% confidence half-widths.

What each field of a record is (``z`` = the dense layer's pre-activation over the batch,
``B`` rows by ``n_out`` units; statistics accumulate in float64):

* ``z_mean``, ``z_var``: mean and variance of all ``B * n_out`` entries of z (the
  kernel's pooled statistics); ``a_mean``, ``a_var`` the same for the activation that
  directly follows the dense layer (fused into the kernel call), ``a = z`` if none does.
* ``channel_sq_mean``: the mean over units of (batch mean of z_j)^2; ``channel_var``: the
  mean over units of the batch variance of z_j (signal propagation plots, Brock et al.
  2021, arXiv 2101.08692). ``z_var = channel_var + spread of the unit means``.
* ``grad_var``: variance of all entries of dL/dz for ``L = sum(G * output)``, G standard
  normal (one draw per seed), i.e. mean of squares minus squared mean.
* ``weight_grad_var``: variance of the entries of dL/dW divided by the batch B. dL/dW sums
  B independent per-sample terms, so its variance is B times a one-sample term; dividing
  by B gives the per-sample convention of the analytic side, ``E[a^2] Var[g]``.
* ``z_corr`` (with ``input_correlation=c``): a second batch with rows
  ``x2 = m + c (x1 - m) + sqrt(1 - c^2) s n`` (n standard normal, m and s the input mean
  and standard deviation) is pushed through the same weights; ``z_corr`` is the pooled,
  uncentred correlation ``sum(z1 * z2) / sqrt(sum(z1^2) sum(z2^2))`` over all samples
  and units. It estimates the mean-field ``q12 / sqrt(q11 q22)`` (docs/theory.md section 4):
  the q's there are second moments over the weights, i.e. over units of a wide layer.
* ``symmetric``: ``init.moments(shape).symmetric`` of the layer's weight initializer.

Across seeds every field is the mean and ``<field>_ci`` the 95% half-width
``t_{0.975, S-1} * sd / sqrt(S)`` (NaN for one seed). ``channel_*`` carry no ci. The
profile's ``seed_values`` keep every seed's ``z_var``, ``a_var`` and ``grad_var`` (the
log-space comparison of :mod:`varprop.agreement` reads them).
"""

from __future__ import annotations

import math
import sys
import threading
import time
from typing import Any, Callable, Sequence

import numpy as np
from scipy import stats as _stats

from ._empirical_run import (FIELDS, INPUT_KEY, KEEP_ALL_BYTES, PAIR_KEY, SeedRun,
                             cache_bytes, default_checkpoint_every, stream)
from ._blas import single_threaded_blas
from ._threads import resolve_n_threads, run_side_by_side
from ._validate import (MIN_BATCH, boolean, correlation, finite_real, float_dtype, positive_int,
                        seed_list, variance_batch)
from .network import Network
from .profile import SEED_FIELDS, LayerRecord, Profile

__all__ = ["measure"]

_DEFAULT_BATCH = 1024
#: Every field is a variance (or mean) estimate over the batch: one sample is not enough.
_MIN_BATCH = MIN_BATCH
_CI_FIELDS = ("z_mean", "z_var", "a_mean", "a_var", "grad_var", "weight_grad_var", "z_corr")


def measure(
    net: Network,
    *,
    batch: int | None = None,
    seeds: "int | Sequence[int]" = 5,
    inputs: np.ndarray | None = None,
    input_mean: float = 0.0,
    input_var: float = 1.0,
    input_correlation: float | None = None,
    dtype: Any = np.float32,
    n_threads: int | None = None,
    backward: bool = True,
    checkpoint_every: int | None = None,
    progress: "bool | Callable[[int, int], Any] | None" = None,
) -> Profile:
    """Measure per-layer statistics of ``net`` on drawn weights (see the module doc).

    Args:
        net: a :class:`~varprop.network.Network` (``varprop.mlp(...)``).
        batch: rows of the input batch, >= 2 (every statistic is a variance estimate,
            and batch normalization needs two samples too); default 1024, or the rows of
            ``inputs``.
        seeds: the number of independent draws S (seeds ``0 .. S-1``) or a sequence of
            non-negative int seeds. Each seed draws all weights, biases, the input batch
            and the output gradient from streams spawned off ``SeedSequence(seed)``, one
            per layer, so results depend on neither the thread count nor the depth.
        inputs: a fixed ``(batch, input_width)`` input batch, ``batch >= 2`` finite rows
            (cast to ``dtype``), used for every seed instead of the drawn one;
            ``input_mean``/``input_var`` are then ignored and the profile reports the
            inputs' own mean and variance.
        input_mean, input_var: the drawn inputs are ``input_mean + sqrt(input_var) N(0,1)``.
        input_correlation: c in [-1, 1]: also measure ``z_corr`` on a second batch with
            row-wise correlation c to the first (forward only).
        dtype: np.float32 (default, fast) or np.float64.
        n_threads: threads to use (None: :func:`varprop.get_num_threads`). With two or
            more seeds whose caches fit whole, up to ``n_threads`` seeds run side by side,
            each on ``n_threads // workers`` kernel threads; otherwise the seeds run in turn on ``n_threads``
            OpenMP threads. The results do not depend on it (bitwise).
        backward: also back-propagate (``grad_var``, ``weight_grad_var``).
        checkpoint_every: keep the input of every k-th top-level op (a Dense with its
            Act, a norm, a whole Residual block) and recompute the rest in the backward
            pass; k >= n_ops keeps everything. Default: keep everything when the caches
            (inputs, pre-activations, weights of every layer) need at most 256 MiB, else
            ``ceil(sqrt(n_ops))``. Results are bitwise identical for every k.
        progress: None/False silent; True prints a progress line on stderr when it is a
            terminal; a callable is called as ``progress(done, total)`` after every dense
            layer's forward and backward step (``total = S * n_dense * (1 + backward)``).

    Returns:
        ``Profile(kind="empirical")``, one record per dense layer in forward order
        (residual branches included); ``meta`` holds batch, seeds, dtype, n_threads,
        checkpoint_every, time_s and the definitions above.

    Memory: forward-only keeps the current op's input and output; the backward pass
    keeps about ``n_ops / k`` checkpoints plus one segment of k ops (their inputs,
    pre-activations and weights): a 10,000-layer width-256 batch-256 ReLU net needs
    about 225 MB peak RSS (measured) instead of the 2.6 GB of its weights alone.

    Raises:
        TypeError: ``net`` not a Network, non-integer batch/seeds/checkpoint_every,
            ``inputs`` not a real array, an unsupported dtype, bad ``progress``.
        ValueError: batch < 2 (also ``inputs`` with one row), seeds < 1, negative or
            repeated seeds, ``inputs`` of the wrong shape or with non-finite entries,
            ``input_var <= 0``, non-finite input moments, ``|input_correlation| > 1``,
            checkpoint_every < 1, a non-finite Residual ``alpha`` or a negative or
            non-finite normalization ``eps``.
    """
    t0 = time.perf_counter()
    if not isinstance(net, Network):
        raise TypeError(f"measure: net must be a varprop Network (e.g. varprop.mlp(...)), "
                        f"got {type(net).__name__}")
    dt = float_dtype("dtype", dtype, kernels=True, owner="measure")
    bases = seed_list("seeds", seeds, int_is_count=True, unique=True, owner="measure")
    input_mean = finite_real("input_mean", input_mean, owner="measure")
    input_var = finite_real("input_var", input_var, positive=True, owner="measure")
    corr = None
    if input_correlation is not None:
        corr = correlation("input_correlation", input_correlation, owner="measure")
    given = None
    if inputs is not None:
        given = _check_inputs(inputs, net, batch, dt)
        batch = given.shape[0]
    elif batch is None:
        batch = _DEFAULT_BATCH
    else:
        batch = variance_batch("batch", batch, owner="measure")
    boolean("backward", backward, owner="measure")
    threads = resolve_n_threads(n_threads)
    ops = net.steps
    dense = list(net.dense_layers())
    if checkpoint_every is None:
        k = default_checkpoint_every(ops, net.input_width, batch, dt.itemsize)
    else:
        k = positive_int("checkpoint_every", checkpoint_every, owner="measure")
    report = _progress_reporter(progress, len(bases) * len(dense) * (2 if backward else 1))
    symmetric = [bool(_weight_moments(d).symmetric) for d in dense]

    if given is not None:
        g64 = given.astype(np.float64)
        in_mean, in_sd = float(g64.mean()), float(g64.std())
        profile_mean, profile_var = in_mean, in_sd ** 2
    else:
        in_mean, in_sd = input_mean, math.sqrt(input_var)
        profile_mean, profile_var = input_mean, input_var

    values = np.empty((len(bases), len(FIELDS), len(dense)))
    seed_maps: list[dict[int, dict[str, np.ndarray]]] = [{} for _ in bases]
    workers = _seed_workers(threads, len(bases), ops, net.input_width, batch, dt.itemsize,
                            bool(backward))
    tick = None
    if report:
        lock = threading.Lock()

        def tick() -> None:
            with lock:
                report.tick()

    def one_seed(s: int) -> None:
        x, x2 = _inputs(bases[s], batch, net.input_shape, given, in_mean, in_sd, corr, dt)
        # the threads a worker leaves idle go to its kernels: 4 seeds on 16 threads run
        # side by side on 4 kernel threads each (the bits do not depend on it)
        run = SeedRun(ops, len(dense), bases[s], dt, max(1, threads // workers), tick)
        run.run(x, x2, bool(backward), k)
        values[s] = run.values
        seed_maps[s] = run.maps

    def one_seed_one_thread(s: int) -> None:
        # the weight draws' BLAS too (orthogonal's QR): each worker is one thread
        with single_threaded_blas():
            one_seed(s)

    run_side_by_side(one_seed if workers == 1 else one_seed_one_thread, len(bases), workers,
                     "varprop-measure")
    if report:
        report.close()

    mean, ci = _summarize(values)
    records = []
    for i, d in enumerate(dense):
        fields = {name: float(mean[j, i]) for j, name in enumerate(FIELDS)}
        cis = {f"{name}_ci": float(ci[FIELDS.index(name), i]) for name in _CI_FIELDS}
        records.append(LayerRecord(index=i, n_in=d.n_in, n_out=d.n_out,
                                   symmetric=symmetric[i], **fields, **cis))
    measured = values[:, [FIELDS.index(f) for f in ("z_var", "a_var")], :]
    meta = {
        "batch": batch,
        "seeds": list(bases),
        "n_seeds": len(bases),
        "dtype": dt.name,
        "n_threads": threads,
        "seeds_side_by_side": workers,
        "backward": bool(backward),
        "checkpoint_every": k if backward else None,
        "inputs": "given" if given is not None else "standard normal",
        "input_correlation": corr,
        "nonfinite": bool(not np.all(np.isfinite(measured))),
        "weight_grad_var": "Var[dL/dW entry] / batch (per-sample convention)",
        "z_corr": "sum(z1*z2)/sqrt(sum z1^2 sum z2^2) over samples and units (uncentred)",
        "time_s": time.perf_counter() - t0,
    }
    per_seed = {name: values[:, FIELDS.index(name), :].tolist() for name in SEED_FIELDS}
    maps = {i: {name: np.mean([m[i][name] for m in seed_maps], axis=0)
                for name in seed_maps[0][i]} for i in seed_maps[0]}
    return Profile("empirical", records, net.describe(), input_var=profile_var,
                   input_mean=profile_mean, meta=meta, seed_values=per_seed, maps=maps)


def _weight_moments(layer: Any) -> Any:
    """The moments of a weighted layer's initializer at the shape it draws."""
    if hasattr(layer, "moments_as_drawn"):  # a recurrent layer: which kernel decides
        return layer.moments_as_drawn()
    if hasattr(layer, "drawn_shape"):  # a convolution, maybe in PyTorch's layout
        return layer._init_for_layout().moments(layer.drawn_shape)
    return layer.init.moments((layer.n_in, layer.n_out))


# ----------------------------------------------------------------------------- helpers
def _seed_workers(threads: int, n_seeds: int, ops: Sequence[Any], width: int, batch: int,
                  itemsize: int, backward: bool) -> int:
    """How many seeds to measure side by side, each on n_threads // workers
    kernel threads.

    A kernel call at these sizes keeps two OpenMP threads only partly busy, and the
    weight draws and numpy statistics between calls run on one thread: seeds side by side
    use the cores better (measured on 2 cores, depth 30, width 512, 4 seeds: 2.1x faster
    at batch 256, 1.4x at 1024). Results are the same bits, since each seed draws from
    its own streams and the kernels do not depend on the thread count. Each worker holds
    one seed's caches, so seeds go side by side only when those caches are small enough
    to be kept whole (:data:`KEEP_ALL_BYTES`; forward-only runs hold two layers);
    checkpointed (very deep) networks run one seed at a time on all threads."""
    if threads < 2 or n_seeds < 2:
        return 1
    if backward and cache_bytes(ops, width, batch, itemsize)[0] > KEEP_ALL_BYTES:
        return 1
    return min(threads, n_seeds)


def _summarize(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean over seeds and the 95% t half-width (NaN for one seed)."""
    n = values.shape[0]
    with np.errstate(invalid="ignore", over="ignore"):
        mean = values.mean(axis=0)
        if n < 2:
            return mean, np.full_like(mean, np.nan)
        sd = values.std(axis=0, ddof=1)
    return mean, float(_stats.t.ppf(0.975, n - 1)) * sd / math.sqrt(n)


def _inputs(base: int, batch: int, shape: tuple[int, ...], given: np.ndarray | None, mean: float,
            sd: float, corr: float | None, dt: np.dtype) -> tuple[np.ndarray, np.ndarray | None]:
    """The input batch and, with a correlation c, the second batch
    ``x2 = m + c (x1 - m) + sqrt(1 - c^2) sd n``."""
    if given is not None:
        x = given
        centred = given.astype(np.float64) - mean
    else:
        centred = np.random.default_rng(stream(base, INPUT_KEY)).standard_normal((batch, *shape))
        centred *= sd
        if corr is None:  # no float64 copy outlives this function
            centred += mean
            return centred.astype(dt), None
        x = (mean + centred).astype(dt)
    if corr is None:
        return x, None
    other = np.random.default_rng(stream(base, PAIR_KEY)).standard_normal((batch, *shape))
    x2 = mean + corr * centred + math.sqrt(max(0.0, 1.0 - corr * corr)) * sd * other
    return x, np.ascontiguousarray(x2.astype(dt))


def _check_inputs(inputs: Any, net: Network, batch: Any, dt: np.dtype) -> np.ndarray:
    shape = net.input_shape
    want = shape if net.layout != "torch" or len(shape) == 1 else (shape[-1], *shape[:-1])
    text = ", ".join(map(str, want))
    if not isinstance(inputs, np.ndarray):
        raise TypeError(f"measure: inputs must be a numpy array of shape (batch, {text}), "
                        f"got {type(inputs).__name__}")
    if inputs.dtype.kind not in "fiu":
        raise TypeError(f"measure: inputs must be a real float or integer array, "
                        f"got dtype {inputs.dtype}")
    if inputs.ndim != len(want) + 1 or inputs.shape[1:] != want:
        raise ValueError(f"measure: inputs must have shape (batch, {text}) "
                         f"(the network's input {'width' if len(want) == 1 else 'shape'} "
                         f"is {text if len(want) == 1 else want}), got {inputs.shape}")
    if want != shape:  # PyTorch's channels-first layout at the edge: varprop's inside
        inputs = np.moveaxis(inputs, 1, -1)
    if inputs.shape[0] < _MIN_BATCH:
        raise ValueError(f"measure: batch must be >= {_MIN_BATCH} (a variance needs two "
                         f"samples), but inputs has {inputs.shape[0]} row(s)")
    if inputs.dtype.kind == "f" and not np.all(np.isfinite(inputs)):
        bad = tuple(int(i) for i in np.argwhere(~np.isfinite(inputs))[0])
        raise ValueError(f"measure: inputs must be finite, got {inputs[bad]!r} at index {bad}")
    if batch is not None:
        batch = variance_batch("batch", batch, owner="measure")
        if batch != inputs.shape[0]:
            raise ValueError(f"measure: batch={batch} disagrees with inputs, which have "
                             f"{inputs.shape[0]} rows; leave batch out with inputs")
    return np.ascontiguousarray(inputs, dtype=dt)


class _Progress:
    """Counts dense-layer steps and reports them to a callable or a terminal line."""

    def __init__(self, total: int, callback: Callable[[int, int], Any] | None) -> None:
        self.total, self.done, self.callback = total, 0, callback
        self._last = 0.0

    def tick(self) -> None:
        self.done += 1
        if self.callback is not None:
            self.callback(self.done, self.total)
            return
        now = time.monotonic()
        if now - self._last >= 0.2 or self.done == self.total:
            self._last = now
            pct = 100.0 * self.done / self.total if self.total else 100.0
            sys.stderr.write(f"\rvarprop.measure: {self.done}/{self.total} layer steps "
                             f"({pct:5.1f}%)")
            sys.stderr.flush()

    def close(self) -> None:
        if self.callback is None:
            sys.stderr.write("\n")
            sys.stderr.flush()


def _progress_reporter(progress: Any, total: int) -> _Progress | None:
    if progress is None or progress is False:
        return None
    if progress is True:
        try:
            tty = sys.stderr.isatty()
        except (AttributeError, ValueError):
            tty = False
        return _Progress(total, None) if tty else None
    if callable(progress):
        return _Progress(total, progress)
    raise TypeError(f"measure: progress must be None, True/False or a callable(done, total), "
                    f"got {type(progress).__name__}")
