"""Measured per-step statistics of a gated cell (LSTM, GRU) on drawn weights.

Each seed draws the cell's arrays (:func:`~varprop.recurrent.gated_arrays.draw_gated_parameters`,
``stream(seed, 0, key)``), the input sequences (``stream(seed, 1)``, as
:func:`varprop.recurrent.measure.draw_inputs`) and the loss's standard normal gradients
on the states (``stream(seed, 2)``), runs the sequence forward and back through time
and records, per step, pooled over the batch and the units (float64 accumulation). The
passes run on the fused kernels of :mod:`varprop.gated_kernels` when the compiled
extension is there (``backend="auto"``, the default), else in plain numpy
(:mod:`varprop.recurrent.gated_arrays`, the kernels' twin); ``meta["backend"]`` says
which. The two agree to rounding (docs/gated.md, section 4), and the numpy path's values
are those of earlier versions, bit for bit.

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
from .._threads import resolve_n_threads
from .._validate import finite_real, float_dtype, one_of, positive_int, seed_list
from ..profile import Profile
from .gated import GatedCell
from .gated_arrays import draw_gated_parameters, gated_backward, gated_forward
from .measure import (draw_inputs, loss_gradient, mean_square_steps, pooled_steps,
                      summarize_steps)
from .theory import check_run

__all__ = ["measure_gated", "FIELDS", "GRAD_MEANING", "BACKENDS"]

#: Per-step fields measured for each seed (rows of the per-seed arrays).
FIELDS = ("z_mean", "z_var", "a_mean", "a_var", "grad_var")
#: What ``grad_var`` is for a gated cell (``meta["grad"]`` of both profiles).
GRAD_MEANING = "Var dL/dh_t: the state's total gradient (direct + through later steps)"
#: What ``z_*`` is, per cell kind (``meta["z"]``).
Z_MEANING = {"lstm": "the cell state c_t",
             "gru": "the candidate pre-activation x W_xn + b_xn + r (h_{t-1} W_hn + b_hn)"}
#: ``backend`` values: the kernels when the extension imports, else numpy; or either one.
BACKENDS = ("auto", "kernels", "numpy")
# stream keys: parameters (with sub-keys), inputs, loss gradients
_PARAM, _INPUT = 0, 1  # the loss gradient's stream key is measure's (loss_gradient)


def one_seed(cell: GatedCell, steps: int, batch: int, inputs: str, input_var: float,
             loss: str, seed: int, dtype: Any, n_threads: int | None = None) -> np.ndarray:
    """One seed's ``(len(FIELDS), steps)`` statistics (see the module doc): on the
    kernels with ``n_threads`` threads, in plain numpy when ``n_threads`` is None."""
    params = draw_gated_parameters(cell, seed, dtype)
    x = draw_inputs(cell, steps, batch, inputs, input_var, stream(seed, _INPUT), dtype)
    if n_threads is None:
        forward, backward = gated_forward, gated_backward
    else:
        from functools import partial

        from ..gated_kernels import cell_backward, cell_forward
        forward = partial(cell_forward, n_threads=n_threads)
        backward = partial(cell_backward, n_threads=n_threads)
    fwd = forward(cell, x, params)
    out = np.empty((len(FIELDS), steps))
    out[0], out[1] = pooled_steps(fwd.c if fwd.c is not None else fwd.cand_pre)
    out[2], out[3] = pooled_steps(fwd.h)
    grad_out = loss_gradient(fwd.h, loss, seed)
    g = backward(cell, x, params, fwd, grad_out, param_grads=False).grad_h
    out[4] = mean_square_steps(g)
    return out


def measure_gated(cell: GatedCell, steps: int, *, batch: int = 256,
                  seeds: "int | Sequence[int]" = 5, inputs: str = "gaussian",
                  input_var: float = 1.0, loss: str = "last", dtype: Any = np.float32,
                  backend: str = "auto", n_threads: int | None = None,
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
        backend: ``"auto"`` (the kernels when the compiled extension imports, else
            numpy), ``"kernels"`` (ExtensionMissingError without the extension) or
            ``"numpy"`` (the plain-numpy twin).
        n_threads: kernel threads (None: :func:`varprop.get_num_threads`); results do
            not depend on it (bitwise). Unused on the numpy path.
        progress: a callable ``progress(done, total)`` called after each seed.

    Returns:
        ``Profile(kind="empirical")`` with one record per time step (module doc):
        ``a_*`` of ``h_t``, ``z_*`` of ``c_t`` (LSTM) or of the candidate
        pre-activation (GRU), ``grad_var`` = ``E[(dL/dh_t)^2]``;
        ``meta["axis"] == "time step"``, ``meta["grad"]`` and ``meta["z"]`` say so;
        ``meta["backend"]`` is ``"kernels"`` or ``"numpy"``.

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
    threads = _threads_for(one_of("backend", backend, BACKENDS), n_threads)
    t0 = time.perf_counter()
    values = []
    with np.errstate(over="ignore", invalid="ignore"):
        for i, seed in enumerate(bases):
            values.append(one_seed(cell, steps, batch, inputs, input_var, loss, seed, dt,
                                   threads))
            if progress is not None:
                progress(i + 1, len(bases))
    arr = np.array(values)  # (seeds, fields, steps)
    records, per_seed, limits = summarize_steps(arr, FIELDS, cell, dt)
    meta = {"axis": "time step", "cell": cell.kind, "layout": cell.layout,
            "grad": GRAD_MEANING, "z": Z_MEANING[cell.kind], "batch": batch,
            "backend": "numpy" if threads is None else "kernels", "n_threads": threads,
            "seeds": list(bases), "n_seeds": len(bases), "dtype": dt.name,
            "inputs": inputs, "loss": loss, "steps": steps, "units": cell.units,
            "time_s": time.perf_counter() - t0, **limits}
    return Profile("empirical", records, cell.describe(), input_var=input_var, meta=meta,
                   seed_values=per_seed)


def _threads_for(backend: str, n_threads: int | None) -> int | None:
    """The kernels' thread count, or None for the numpy path (``backend`` checked)."""
    from ..gated_kernels import _extension, available
    threads = resolve_n_threads(n_threads)  # checked on either path
    if backend == "numpy" or (backend == "auto" and not available()):
        return None
    _extension()  # "kernels" without the extension: ExtensionMissingError, saying why
    return threads
