"""Measured per-step statistics of a simple recurrent network, on the recurrent kernels.

Each seed draws ``W_x``, ``W_h``, ``b``, the input sequences and the loss gradients from
its own streams (``SeedSequence(seed)`` spawned at fixed keys), runs the whole sequence
forward and back through time on :mod:`varprop.rnn_kernels`, and records per step the
mean and variance of ``z_t`` and ``h_t`` over the batch and the units and the variance
of ``dL/dz_t``. Across seeds each field is the mean, with a 95% t half-width, as
:func:`varprop.measure` gives per layer; the seeds' own values feed the comparison's
log-space test.

Two float32 limits are handled explicitly (docs/recurrent.md, section 6):

* *overflow*: a state or gradient through time beyond the float32 range becomes inf, and
  the next step's ``inf - inf`` or ``inf * 0`` NaN. Such a step's variance is recorded as
  +inf (overflowed) for that seed, never NaN, and its mean as NaN; ``meta["overflow"]``
  lists the steps per field. The comparison's explicit rules then apply: where the
  theory too lies beyond float32's range the step is untestable (left out of the test),
  within it the overflow is a disagreement.
* *underflow*: a seed whose per-step mean square is below :func:`underflow_floor` holds
  entries below float32's smallest normal number, flushed to 0 or kept with lost
  precision, so its value is biased low by an unknown amount (exactly 0 once every entry
  underflowed). The displayed mean over seeds leaves such seeds out (the test still
  sees them, as values below float32's resolution); where every seed underflowed it is
  0 with no interval. ``meta["underflow"]`` lists the steps per field.
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable, Sequence

import numpy as np

from .._empirical_run import stream
from .._threads import resolve_n_threads
from .._validate import correlation, finite_real, float_dtype, positive_int, seed_list
from ..profile import SEED_FIELDS, LayerRecord, Profile
from .spec import SimpleRNN
from .theory import check_run

__all__ = ["measure_rnn", "draw_parameters", "draw_inputs", "step_records", "FIELDS",
           "underflow_floor", "VARIANCE_FIELDS", "summarize_steps", "pooled_steps",
           "mean_square_steps"]

#: Per-step fields measured for each seed (rows of the per-seed arrays).
FIELDS = ("z_mean", "z_var", "a_mean", "a_var", "grad_var", "z_corr")
#: The fields that are variances (mean squares): the ones that overflow to +inf and
#: whose underflowed seeds the displayed mean leaves out.
VARIANCE_FIELDS = ("z_var", "a_var", "grad_var")
# stream keys: parameters, inputs, loss gradients, second (correlated) inputs
_PARAM, _INPUT, _GRAD, _INPUT2 = 0, 1, 2, 3


def draw_parameters(rnn: SimpleRNN, seed: int, dtype: Any = np.float32
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """``(W_x, W_h, b)`` of one seed (b None without a bias)."""
    w_x = rnn.kernel_init(rnn.kernel_shape, seed=stream(seed, _PARAM, 0), dtype=dtype)
    w_h = rnn.recurrent_init(rnn.recurrent_shape, seed=stream(seed, _PARAM, 1), dtype=dtype)
    b = None if rnn.bias_init is None else \
        rnn.bias_init((rnn.units,), seed=stream(seed, _PARAM, 2), dtype=dtype)
    return w_x, w_h, b


def draw_inputs(rnn: SimpleRNN, steps: int, batch: int, inputs: str, input_var: float,
                seed: Any, dtype: Any = np.float32) -> np.ndarray:
    """A ``(steps, batch, input_size)`` input batch: N(0, input_var) features, or
    one-hot tokens drawn uniformly from the ``input_size`` words."""
    rng = np.random.default_rng(seed)
    if inputs == "one_hot":
        tokens = rng.integers(0, rnn.input_size, size=(steps, batch))
        x = np.zeros((steps, batch, rnn.input_size), dtype=dtype)
        np.put_along_axis(x, tokens[..., None], 1.0, axis=2)
        return x
    x = rng.standard_normal((steps, batch, rnn.input_size))
    return (x * math.sqrt(input_var)).astype(dtype, copy=False)


def loss_gradient(h: np.ndarray, loss: str, seed: int) -> np.ndarray:
    """One seed's standard normal loss gradient ``dL/dh``, shaped and typed like the
    states ``h`` (T, B, H): at every step (``loss="sequence"``) or at the last one."""
    rng = np.random.default_rng(stream(seed, _GRAD))
    grad = np.zeros_like(h)
    if loss == "sequence":
        grad[...] = rng.standard_normal(grad.shape)
    else:
        grad[-1] = rng.standard_normal(grad.shape[1:])
    return grad


def underflow_floor(dtype: Any) -> float:
    """The smallest per-step mean square a ``dtype`` measurement resolves:
    ``(10 tiny)^2``, with ``tiny`` the dtype's smallest normal number (1.4e-74 for
    float32; float64's is 0 in float64, so nothing is left out there).

    Entries below ``tiny`` are subnormal or, where the kernels flush them, 0. For
    Gaussian entries of standard deviation ``s`` the share of the mean square carried
    by entries below ``tiny`` is at most ``E[g^2; |g| < tiny] / s^2``, which is 0.2 at
    ``s = tiny`` and 5e-4 at ``s = 10 tiny``: above this floor the loss is below 0.1%."""
    with np.errstate(under="ignore"):
        return float(np.float64(10.0 * np.finfo(np.dtype(dtype)).tiny) ** 2)


def pooled_steps(arr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per step: mean and variance over the batch and the units (float64); a step with
    an overflowed (non-finite) entry has variance +inf and mean NaN."""
    flat = arr.reshape(arr.shape[0], -1)
    finite = np.isfinite(flat).all(axis=1)
    flat = flat.astype(np.float64)
    mean, var = flat.mean(axis=1), flat.var(axis=1)
    return np.where(finite, mean, np.nan), np.where(finite, var, np.inf)


def mean_square_steps(arr: np.ndarray) -> np.ndarray:
    """Per step: the mean square over the batch and the units (float64); +inf for a step
    with an overflowed (non-finite) entry."""
    flat = arr.reshape(arr.shape[0], -1)
    finite = np.isfinite(flat).all(axis=1)
    flat = flat.astype(np.float64)
    return np.where(finite, (flat * flat).mean(axis=1), np.inf)


def _one_seed(rnn: SimpleRNN, steps: int, batch: int, inputs: str, input_var: float,
              c: float | None, loss: str, seed: int, dtype: np.dtype, threads: int
              ) -> np.ndarray:
    from ..rnn_kernels import rnn_backward, rnn_forward
    act = rnn.activation
    w_x, w_h, b = draw_parameters(rnn, seed, dtype)
    x = draw_inputs(rnn, steps, batch, inputs, input_var, stream(seed, _INPUT), dtype)
    fwd = rnn_forward(x, w_x, w_h, b, activation=act, n_threads=threads)
    out = np.full((len(FIELDS), steps), np.nan)
    out[0], out[1] = pooled_steps(fwd.z)
    out[2], out[3] = pooled_steps(fwd.h)
    if c is not None:  # a second batch, step by step correlated c with the first
        noise = draw_inputs(rnn, steps, batch, inputs, input_var, stream(seed, _INPUT2), dtype)
        x2 = (c * x + math.sqrt(max(1.0 - c * c, 0.0)) * noise).astype(dtype)
        z2 = rnn_forward(x2, w_x, w_h, b, activation=act, n_threads=threads).z
        z1 = fwd.z.reshape(steps, -1).astype(np.float64)
        z2 = z2.reshape(steps, -1).astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[5] = (z1 * z2).sum(1) / np.sqrt((z1 * z1).sum(1) * (z2 * z2).sum(1))
    grad_h = loss_gradient(fwd.h, loss, seed)
    g = rnn_backward(x, w_x, w_h, fwd.z, fwd.h, grad_h, activation=act, n_threads=threads)
    out[4] = mean_square_steps(g.grad_z)  # E[(dL/dz)^2]: dL/dz has mean 0 by symmetry
    return out


def step_records(arr: np.ndarray, fields: Sequence[str], cell: Any, *,
                 floor: float = 0.0
                 ) -> tuple[list[LayerRecord], dict[str, list[list[float]]]]:
    """Per-step records (mean over seeds and 95% half-widths) and the per-seed values
    of :data:`~varprop.profile.SEED_FIELDS`, from ``arr`` of shape ``(seeds,
    len(fields), steps)``; ``cell`` (a SimpleRNN or a gated cell) gives the fans and
    whether its kernels make every unit identical.

    ``floor`` (:func:`underflow_floor`; 0: nothing is left out): in the variance
    fields, a step's seeds below it are left out of that step's mean and interval when
    some seed is above it; when none is, the step shows 0 (no interval), or 0 +- 0 if
    every seed is exactly 0 (an exact zero, as all-zero kernels give). The per-seed
    values are kept as measured."""
    from ..empirical import _summarize
    with np.errstate(invalid="ignore", over="ignore"):  # overflowed seeds are +inf
        mean, ci = _summarize(arr)
    if floor > 0.0:
        _leave_out_underflow(arr, fields, floor, mean, ci)
    symmetric = bool(cell.kernel_init.moments(cell.kernel_shape).symmetric
                     and cell.recurrent_init.moments(cell.recurrent_shape).symmetric)
    records = []
    for t in range(arr.shape[2]):
        values = {name: float(mean[j, t]) for j, name in enumerate(fields)}
        cis = {f"{name}_ci": float(ci[j, t]) for j, name in enumerate(fields)}
        records.append(LayerRecord(t, cell.input_size + cell.units, cell.units,
                                   symmetric=symmetric, **values, **cis))
    per_seed = {name: arr[:, fields.index(name), :].tolist() for name in SEED_FIELDS}
    return records, per_seed


def summarize_steps(arr: np.ndarray, fields: Sequence[str], cell: Any, dtype: Any
                    ) -> tuple[list[LayerRecord], dict[str, list[list[float]]], dict[str, Any]]:
    """:func:`step_records` with the float32 limits of the module doc applied (the one
    place the simple and the gated measurements handle them): the records, the per-seed
    values and the meta entries ``nonfinite``, ``overflow``, ``underflow`` and
    ``underflow_floor``."""
    floor = underflow_floor(dtype)
    records, per_seed = step_records(arr, fields, cell, floor=floor)
    overflow = _steps_where(arr, fields, lambda v: ~np.isfinite(v))
    # below the floor at some seed, unless every seed is exactly 0 (an exact zero)
    underflow = _steps_where(arr, fields, lambda v: (v < floor) & ~np.all(v == 0.0, axis=0))
    return records, per_seed, {"nonfinite": bool(overflow), "overflow": overflow,
                               "underflow": underflow, "underflow_floor": floor}


def _leave_out_underflow(arr: np.ndarray, fields: Sequence[str], floor: float,
                         mean: np.ndarray, ci: np.ndarray) -> None:
    """``mean`` and ``ci`` of the variance fields recomputed, in place, from the seeds
    at or above ``floor`` at each step where some seed is below it (step_records)."""
    from ..empirical import _summarize
    for j, name in enumerate(fields):
        if name not in VARIANCE_FIELDS:
            continue
        for t in np.flatnonzero((arr[:, j, :] < floor).any(axis=0)):
            values = arr[:, j, t]
            kept = values[~(values < floor)]  # inf (overflow) and NaN stay in
            if kept.size:
                with np.errstate(invalid="ignore", over="ignore"):
                    m, c = _summarize(kept[:, None])
                mean[j, t], ci[j, t] = float(m[0]), float(c[0])
            else:
                mean[j, t] = 0.0
                ci[j, t] = 0.0 if np.all(values == 0.0) else np.nan


def _steps_where(arr: np.ndarray, fields: Sequence[str], test: Callable[[np.ndarray], np.ndarray]
                 ) -> dict[str, list[int]]:
    """Per variance field, the steps where ``test`` holds for some seed (for the meta)."""
    out = {}
    for j, name in enumerate(fields):
        if name in VARIANCE_FIELDS:
            steps = np.flatnonzero(test(arr[:, j, :]).any(axis=0)).tolist()
            if steps:
                out[name] = steps
    return out


def measure_rnn(rnn: SimpleRNN, steps: int, *, batch: int = 256,
                seeds: "int | Sequence[int]" = 5, inputs: str = "gaussian",
                input_var: float = 1.0, input_correlation: float | None = None,
                loss: str = "last", dtype: Any = np.float32, n_threads: int | None = None,
                progress: Callable[[int, int], Any] | None = None) -> Profile:
    """Measure per-step statistics of ``rnn`` over ``steps`` time steps.

    Args:
        rnn: the :class:`~varprop.recurrent.SimpleRNN`.
        steps: sequence length ``T``.
        batch: sequences per seed (>= 2).
        seeds: a count S (seeds ``0 .. S-1``) or a sequence of non-negative int seeds.
        inputs, input_var, input_correlation, loss: as in
            :func:`~varprop.recurrent.analyze_rnn`.
        dtype: np.float32 (default) or np.float64.
        n_threads: kernel threads (None: :func:`varprop.get_num_threads`); results do
            not depend on it (bitwise).
        progress: a callable ``progress(done, total)`` called after each seed.

    Returns:
        ``Profile(kind="empirical")`` with one record per time step; ``grad_var`` is
        the mean square of ``dL/dz_t`` under standard normal loss gradients.
    """
    if not isinstance(rnn, SimpleRNN):
        raise TypeError(f"rnn must be a varprop.recurrent.SimpleRNN, got {type(rnn).__name__}")
    steps, inputs, loss = check_run(steps, inputs, loss)
    batch = positive_int("batch", batch)
    if batch < 2:
        raise ValueError(f"batch must be >= 2 (every statistic is a variance); got {batch}")
    bases = seed_list("seeds", seeds, int_is_count=True, unique=True)
    input_var = finite_real("input_var", input_var, positive=True)
    c = None if input_correlation is None else correlation("input_correlation",
                                                           input_correlation)
    if c is not None and inputs == "one_hot":
        raise ValueError("input_correlation applies to Gaussian inputs; one-hot "
                         "sequences are not correlated by a number")
    if progress is not None and not callable(progress):
        raise TypeError(f"progress must be a callable or None, got {type(progress).__name__}")
    dt = float_dtype("dtype", dtype, kernels=True)
    threads = resolve_n_threads(n_threads)
    t0 = time.perf_counter()
    values = []
    # a state or gradient beyond float32's range is an outcome, recorded as overflowed
    # (module doc), not a RuntimeWarning
    with np.errstate(over="ignore", invalid="ignore", under="ignore"):
        for i, seed in enumerate(bases):
            values.append(_one_seed(rnn, steps, batch, inputs, input_var, c, loss, seed,
                                    dt, threads))
            if progress is not None:
                progress(i + 1, len(bases))
    arr = np.array(values)  # (seeds, fields, steps)
    records, per_seed, limits = summarize_steps(arr, FIELDS, rnn, dt)
    meta = {"axis": "time step", "batch": batch, "seeds": list(bases),
            "n_seeds": len(bases), "dtype": dt.name, "n_threads": threads,
            "inputs": inputs, "loss": loss, "steps": steps, "units": rnn.units,
            "input_correlation": c, "time_s": time.perf_counter() - t0, **limits}
    return Profile("empirical", records, rnn.describe(), input_var=input_var, meta=meta,
                   seed_values=per_seed)
