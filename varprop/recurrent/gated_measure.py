"""Measured per-step statistics of a gated cell (LSTM, GRU) on drawn weights.

Each seed draws the cell's arrays (:func:`~varprop.recurrent.gated_arrays.draw_gated_parameters`,
``stream(seed, 0, key)``), the input sequences (``stream(seed, 1)``, as
:func:`varprop.recurrent.measure.draw_inputs`) and the loss's standard normal gradients
on the states (``stream(seed, 2)``), runs the sequence forward and back through time in
plain numpy (:mod:`varprop.recurrent.gated_arrays`) and records, per step, pooled over
the batch and the units (float64 accumulation):

==========  ================================================================
field       gated cells
==========  ================================================================
``z_*``     mean and variance of the LSTM's cell state ``c_t``; of the GRU's
            candidate pre-activation ``x W_xn + b_xn + r (h_{t-1} W_hn + b_hn)``
``a_*``     mean and variance of the state ``h_t``
grad_var    ``E[(dL/dh_t)^2]``: the state's total gradient (the loss's direct
            gradient on ``h_t`` plus what the later steps send back); it has
            mean 0, the loss gradients being symmetric. Not ``dL/dz``, as a
            SimpleRNN's profile has
==========  ================================================================

Across seeds every field is the mean with its 95% t half-width (``*_ci``), and
``seed_values`` keeps each seed's ``z_var``, ``a_var`` and ``grad_var``, as
:func:`varprop.recurrent.measure_rnn` does.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Sequence

import numpy as np

from .._empirical_run import stream
from .._validate import finite_real, float_dtype, positive_int, seed_list
from ..profile import Profile
from .gated import GatedCell
from .gated_arrays import draw_gated_parameters, gated_backward, gated_forward
from .measure import draw_inputs, loss_gradient, step_records
from .theory import check_run

__all__ = ["measure_gated", "FIELDS", "GRAD_MEANING"]

#: Per-step fields measured for each seed (rows of the per-seed arrays).
FIELDS = ("z_mean", "z_var", "a_mean", "a_var", "grad_var")
#: What ``grad_var`` is for a gated cell (``meta["grad"]`` of both profiles).
GRAD_MEANING = "Var dL/dh_t: the state's total gradient (direct + through later steps)"
#: What ``z_*`` is, per cell kind (``meta["z"]``).
Z_MEANING = {"lstm": "the cell state c_t",
             "gru": "the candidate pre-activation x W_xn + b_xn + r (h_{t-1} W_hn + b_hn)"}
# stream keys: parameters (with sub-keys), inputs, loss gradients
_PARAM, _INPUT = 0, 1  # the loss gradient's stream key is measure's (loss_gradient)


def _pooled(arr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per step: mean and variance over the batch and the units (float64)."""
    flat = arr.reshape(arr.shape[0], -1).astype(np.float64)
    return flat.mean(axis=1), flat.var(axis=1)


def one_seed(cell: GatedCell, steps: int, batch: int, inputs: str, input_var: float,
             loss: str, seed: int, dtype: Any) -> np.ndarray:
    """One seed's ``(len(FIELDS), steps)`` statistics (see the module doc)."""
    params = draw_gated_parameters(cell, seed, dtype)
    x = draw_inputs(cell, steps, batch, inputs, input_var, stream(seed, _INPUT), dtype)
    fwd = gated_forward(cell, x, params)
    out = np.empty((len(FIELDS), steps))
    out[0], out[1] = _pooled(fwd.c if fwd.c is not None else fwd.cand_pre)
    out[2], out[3] = _pooled(fwd.h)
    grad_out = loss_gradient(fwd.h, loss, seed)
    g = gated_backward(cell, x, params, fwd, grad_out, param_grads=False).grad_h
    flat = g.reshape(steps, -1).astype(np.float64)
    out[4] = (flat * flat).mean(axis=1)
    return out


def measure_gated(cell: GatedCell, steps: int, *, batch: int = 256,
                  seeds: "int | Sequence[int]" = 5, inputs: str = "gaussian",
                  input_var: float = 1.0, loss: str = "last", dtype: Any = np.float32,
                  progress: Callable[[int, int], Any] | None = None) -> Profile:
    """Measure per-step statistics of a gated ``cell`` over ``steps`` time steps.

    Args:
        cell: an :class:`~varprop.recurrent.gated.LSTM` or
            :class:`~varprop.recurrent.gated.GRU`.
        steps: sequence length ``T``.
        batch: sequences per seed (>= 2).
        seeds: a count S (seeds ``0 .. S-1``) or a sequence of distinct non-negative
            int seeds.
        inputs: ``"gaussian"`` (N(0, input_var) features) or ``"one_hot"`` tokens.
        input_var: variance of a Gaussian input feature (> 0).
        loss: ``"last"`` (a standard normal gradient on ``h_{T-1}``) or ``"sequence"``
            (an independent one on every state).
        dtype: np.float32 (default) or np.float64, the arithmetic's dtype.
        progress: a callable ``progress(done, total)`` called after each seed.

    Returns:
        ``Profile(kind="empirical")`` with one record per time step (module doc):
        ``a_*`` of ``h_t``, ``z_*`` of ``c_t`` (LSTM) or of the candidate
        pre-activation (GRU), ``grad_var`` = ``E[(dL/dh_t)^2]``;
        ``meta["axis"] == "time step"``, ``meta["grad"]`` and ``meta["z"]`` say so.

    Example:
        >>> from varprop.recurrent.gated import keras_lstm
        >>> p = measure_gated(keras_lstm(8, 16), 4, batch=32, seeds=2)
        >>> len(p), p[3].grad_var                 # the loss's own gradient at the end
        (4, 1.0...)
    """
    if not isinstance(cell, GatedCell):
        raise TypeError(f"cell must be a varprop.recurrent.gated.LSTM or GRU, got "
                        f"{type(cell).__name__}")
    steps, inputs, loss = check_run(steps, inputs, loss)
    batch = positive_int("batch", batch)
    if batch < 2:
        raise ValueError(f"batch must be >= 2 (every statistic is a variance); got {batch}")
    bases = seed_list("seeds", seeds, int_is_count=True, unique=True)
    input_var = finite_real("input_var", input_var, positive=True)
    if progress is not None and not callable(progress):
        raise TypeError(f"progress must be a callable or None, got {type(progress).__name__}")
    dt = float_dtype("dtype", dtype, kernels=True)
    t0 = time.perf_counter()
    values = []
    with np.errstate(over="ignore", invalid="ignore"):
        for i, seed in enumerate(bases):
            values.append(one_seed(cell, steps, batch, inputs, input_var, loss, seed, dt))
            if progress is not None:
                progress(i + 1, len(bases))
    arr = np.array(values)  # (seeds, fields, steps)
    records, per_seed = step_records(arr, FIELDS, cell)
    meta = {"axis": "time step", "cell": cell.kind, "layout": cell.layout,
            "grad": GRAD_MEANING, "z": Z_MEANING[cell.kind], "batch": batch,
            "seeds": list(bases), "n_seeds": len(bases), "dtype": dt.name,
            "inputs": inputs, "loss": loss, "steps": steps, "units": cell.units,
            "time_s": time.perf_counter() - t0,
            "nonfinite": bool(not np.all(np.isfinite(arr)))}
    return Profile("empirical", records, cell.describe(), input_var=input_var, meta=meta,
                   seed_values=per_seed)
