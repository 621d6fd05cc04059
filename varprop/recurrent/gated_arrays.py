"""Plain-numpy forward and backward passes through time of the gated cells.

Inputs are time-major, ``x (T, B, F)``; the arithmetic runs in ``x``'s dtype (float32 or
float64). The cells' equations are in :mod:`varprop.recurrent.gated` and docs/gated.md.

Internally every layout is mapped to one canonical form, Keras's ``z = x @ W``:
``W_x (F, G H)``, ``W_h (H, G H)``, an input-side bias ``b_x`` and a state-side bias
``b_h`` (``G H`` each), gates in the order i, f, g, o (LSTM) or z, r, n (GRU). PyTorch's
arrays are the transposes, and its GRU stores r before z; Keras's LSTM has one bias
(``b_h = 0``) and its GRU the two rows of ``bias (2, 3H)``. Gradients are mapped back to
the layout's own arrays and names.

:func:`gated_backward` returns ``dL/dh_t`` for every step: the *total* gradient of the
loss with respect to the state ``h_t``, the loss's direct gradient on ``h_t`` plus what
comes back from the later steps (and ``dL/dc_t`` for the LSTM, likewise total).

Example:
    >>> from varprop.recurrent.gated import keras_gru
    >>> cell = keras_gru(3, 5)
    >>> p = draw_gated_parameters(cell, seed=0, dtype=np.float64)
    >>> x = np.random.default_rng(1).standard_normal((4, 2, 3))
    >>> fwd = gated_forward(cell, x, p)
    >>> fwd.h.shape, fwd.c is None
    ((4, 2, 5), True)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .._empirical_run import stream
from .gated import GatedCell, chrono_bias

__all__ = ["draw_gated_parameters", "draw_gated_arrays", "canonical", "gated_forward", "gated_backward",
           "GatedForward", "GatedBackward", "PARAM_KEYS"]

#: Stream keys of a seed's parameters, ``stream(seed, 0, key)``: the input kernel, the
#: recurrent kernel, the (first) bias, PyTorch's second bias, the chrono biases.
PARAM_KEYS = {"kernel": 0, "recurrent": 1, "bias": 2, "bias_hh": 3, "chrono": 4}

# The position of each canonical gate (i, f, g, o / z, r, n) in each layout's order.
_ORDER = {("lstm", "keras"): (0, 1, 2, 3), ("lstm", "torch"): (0, 1, 2, 3),
          ("gru", "keras"): (0, 1, 2), ("gru", "torch"): (1, 0, 2)}


def _blocks(arr: np.ndarray, order: tuple[int, ...], units: int, axis: int) -> np.ndarray:
    """``arr``'s gate blocks along ``axis`` taken in ``order`` (a permutation: its own
    inverse for the two orders used here)."""
    parts = [np.take(arr, np.arange(k * units, (k + 1) * units), axis=axis) for k in order]
    return np.concatenate(parts, axis=axis)


def draw_gated_parameters(cell: GatedCell, seed: int = 0, dtype: Any = np.float32
                          ) -> dict[str, np.ndarray]:
    """One seed's arrays in the cell's layout (names as :attr:`GatedCell.array_shapes`),
    each from its own stream ``stream(seed, 0, key)`` (:data:`PARAM_KEYS`), with
    ``unit_forget_bias`` and ``chrono`` applied as the spec documents."""
    return draw_gated_arrays(cell, lambda key: stream(seed, 0, key), dtype)


def draw_gated_arrays(cell: GatedCell, streams: Any, dtype: Any = np.float32
                      ) -> dict[str, np.ndarray]:
    """:func:`draw_gated_parameters` with the streams given: ``streams(key)`` is the
    seed of the array with :data:`PARAM_KEYS` key ``key`` (a recurrent layer inside a
    network draws from its weighted layer's streams)."""
    shapes = cell.array_shapes
    keras = cell.layout == "keras"
    out = {
        "kernel" if keras else "weight_ih":
            cell.kernel_init(cell.kernel_shape, seed=streams(PARAM_KEYS["kernel"]),
                             dtype=dtype),
        "recurrent_kernel" if keras else "weight_hh":
            cell.recurrent_init(cell.recurrent_shape,
                                seed=streams(PARAM_KEYS["recurrent"]), dtype=dtype),
    }
    if cell.bias_init is None:
        return out
    h = cell.units
    if keras:
        out["bias"] = cell.bias_init(shapes["bias"], seed=streams(PARAM_KEYS["bias"]),
                                     dtype=dtype)
    else:
        out["bias_ih"] = cell.bias_init(shapes["bias_ih"],
                                        seed=streams(PARAM_KEYS["bias"]), dtype=dtype)
        out["bias_hh"] = cell.bias_init(shapes["bias_hh"],
                                        seed=streams(PARAM_KEYS["bias_hh"]), dtype=dtype)
    # the first bias row carries the set values, the second (torch's bias_hh, Keras GRU's
    # recurrent row) is zeroed there, so that the gate's total bias is the set value
    first, second = (out["bias"], None) if keras and cell.kind == "lstm" else \
        ((out["bias"][0], out["bias"][1]) if keras else (out["bias_ih"], out["bias_hh"]))
    gates = cell.gates

    def put(gate: str, value: Any) -> None:
        k = gates.index(gate)
        first[k * h:(k + 1) * h] = value
        if second is not None:
            second[k * h:(k + 1) * h] = 0.0

    if getattr(cell, "unit_forget_bias", False):
        put("f", 1.0)
    if cell.chrono is not None:
        b = chrono_bias(cell.chrono, h, streams(PARAM_KEYS["chrono"]), dtype)
        if cell.kind == "lstm":
            put("f", b)
            put("i", -b)
        else:
            put("z", b)
    return out


def canonical(cell: GatedCell, params: dict[str, np.ndarray]
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(W_x (F, G H), W_h (H, G H), b_x, b_h)`` in the canonical gate order (module
    doc); missing biases are zeros."""
    order, h = _ORDER[(cell.kind, cell.layout)], cell.units
    if cell.layout == "keras":
        w_x, w_h = params["kernel"], params["recurrent_kernel"]
        bias = params.get("bias")
        if bias is None:
            b_x = b_h = np.zeros(w_x.shape[1], dtype=w_x.dtype)
        elif cell.kind == "lstm":
            b_x, b_h = bias, np.zeros_like(bias)
        else:
            b_x, b_h = bias[0], bias[1]
        return w_x, w_h, b_x, b_h
    w_x = _blocks(params["weight_ih"], order, h, 0).T
    w_h = _blocks(params["weight_hh"], order, h, 0).T
    zeros = np.zeros(w_x.shape[1], dtype=w_x.dtype)
    b_x = _blocks(params["bias_ih"], order, h, 0) if "bias_ih" in params else zeros
    b_h = _blocks(params["bias_hh"], order, h, 0) if "bias_hh" in params else zeros
    return w_x, w_h, b_x, b_h


def _sigmoid(a: np.ndarray) -> np.ndarray:
    # 0.5 (1 + tanh(a / 2)) never overflows, unlike 1 / (1 + exp(-a))
    return 0.5 * (1.0 + np.tanh(0.5 * a))


@dataclass
class GatedForward:
    """One forward pass. ``h (T, B, H)``: the states; ``c``: the LSTM's cell states
    (None for a GRU); ``gates (T, B, G H)``: the gate values after their activations in
    the canonical order (i, f, g, o / z, r, n); ``cand_pre``: the GRU's candidate
    pre-activation ``x W_xn + b_xn + r s`` (None for an LSTM); ``rec_n``: the GRU's
    ``s = h_{t-1} W_hn + b_hn``."""

    h: np.ndarray
    c: np.ndarray | None
    gates: np.ndarray
    cand_pre: np.ndarray | None = None
    rec_n: np.ndarray | None = None


@dataclass
class GatedBackward:
    """One backward pass: ``grad_h (T, B, H)`` the total ``dL/dh_t`` per step (the
    state's gradient), ``grad_c`` the LSTM's total ``dL/dc_t`` (None for a GRU),
    ``grad_x (T, B, F)`` and ``params`` the gradients of the layout's arrays (empty
    without ``param_grads``)."""

    grad_h: np.ndarray
    grad_c: np.ndarray | None
    grad_x: np.ndarray | None
    params: dict[str, np.ndarray]


def _check_x(cell: GatedCell, x: Any) -> np.ndarray:
    if not isinstance(x, np.ndarray) or x.ndim != 3 or x.shape[2] != cell.input_size:
        raise ValueError(f"x must be a (steps, batch, {cell.input_size}) numpy array; got "
                         f"{getattr(x, 'shape', type(x).__name__)}")
    if x.dtype not in (np.float32, np.float64):
        raise TypeError(f"x must be float32 or float64; got {x.dtype}")
    return x


def gated_forward(cell: GatedCell, x: np.ndarray, params: dict[str, np.ndarray]
                  ) -> GatedForward:
    """Run ``cell`` over ``x (T, B, F)`` from zero states (see :class:`GatedForward`)."""
    x = _check_x(cell, x)
    dt = x.dtype
    w_x, w_h, b_x, b_h = (np.asarray(a, dtype=dt) for a in canonical(cell, params))
    steps, batch, _ = x.shape
    n = cell.units
    xp = (x.reshape(steps * batch, -1) @ w_x + b_x).reshape(steps, batch, -1)
    h = np.zeros((batch, n), dtype=dt)
    hs = np.empty((steps, batch, n), dtype=dt)
    gates = np.empty((steps, batch, cell.n_gates * n), dtype=dt)
    if cell.kind == "lstm":
        c = np.zeros((batch, n), dtype=dt)
        cs = np.empty_like(hs)
        for t in range(steps):
            a = xp[t] + h @ w_h + b_h
            gates[t, :, :2 * n] = _sigmoid(a[:, :2 * n])
            gates[t, :, 2 * n:3 * n] = np.tanh(a[:, 2 * n:3 * n])
            gates[t, :, 3 * n:] = _sigmoid(a[:, 3 * n:])
            i, f, g, o = (gates[t, :, k * n:(k + 1) * n] for k in range(4))
            c = f * c + i * g
            h = o * np.tanh(c)
            cs[t], hs[t] = c, h
        return GatedForward(hs, cs, gates)
    pre = np.empty_like(hs)
    rec = np.empty_like(hs)
    for t in range(steps):
        hp = h @ w_h + b_h
        gates[t, :, :2 * n] = _sigmoid(xp[t, :, :2 * n] + hp[:, :2 * n])
        z, r = gates[t, :, :n], gates[t, :, n:2 * n]
        rec[t] = hp[:, 2 * n:]
        pre[t] = xp[t, :, 2 * n:] + r * rec[t]
        cand = np.tanh(pre[t])
        gates[t, :, 2 * n:] = cand
        h = z * h + (1.0 - z) * cand
        hs[t] = h
    return GatedForward(hs, None, gates, pre, rec)


def gated_backward(cell: GatedCell, x: np.ndarray, params: dict[str, np.ndarray],
                   fwd: GatedForward, grad_out: np.ndarray, *, param_grads: bool = True
                   ) -> GatedBackward:
    """Back-propagate the loss's direct gradients ``grad_out (T, B, H)`` on the states
    ``h_t`` through time (see :class:`GatedBackward`); ``param_grads=False`` skips the
    weight and input gradients (what the measurement needs is the state's gradient)."""
    x = _check_x(cell, x)
    dt = x.dtype
    w_x, w_h, b_x, b_h = (np.asarray(a, dtype=dt) for a in canonical(cell, params))
    steps, batch, _ = x.shape
    n, g_n = cell.units, cell.n_gates * cell.units
    grad_out = np.asarray(grad_out, dtype=dt)
    if grad_out.shape != fwd.h.shape:
        raise ValueError(f"grad_out must have the states' shape {fwd.h.shape}; got "
                         f"{grad_out.shape}")
    grad_h = np.empty_like(fwd.h)
    carry = np.zeros((batch, n), dtype=dt)  # dL/dh_t arriving from step t + 1
    d_pre = np.empty((steps, batch, g_n), dtype=dt) if param_grads else None
    d_rec = np.empty((steps, batch, g_n), dtype=dt) if param_grads else None
    zero = np.zeros((batch, n), dtype=dt)
    lstm = cell.kind == "lstm"
    grad_c = np.empty_like(fwd.h) if lstm else None
    dc_next = zero  # dL/dc_t through c_{t+1} = f_{t+1} c_t + ...
    for t in range(steps - 1, -1, -1):
        dh = grad_out[t] + carry
        grad_h[t] = dh
        gt = fwd.gates[t]
        h_prev = fwd.h[t - 1] if t > 0 else zero
        if lstm:
            i, f, g, o = (gt[:, k * n:(k + 1) * n] for k in range(4))
            tc = np.tanh(fwd.c[t])
            c_prev = fwd.c[t - 1] if t > 0 else zero
            dc = dh * o * (1.0 - tc * tc) + dc_next
            grad_c[t] = dc
            da = np.concatenate([dc * g * i * (1.0 - i), dc * c_prev * f * (1.0 - f),
                                 dc * i * (1.0 - g * g), dh * tc * o * (1.0 - o)], axis=1)
            dc_next = dc * f
            carry = da @ w_h.T
            if param_grads:
                d_pre[t] = da
                d_rec[t] = da
        else:
            z, r, cand = gt[:, :n], gt[:, n:2 * n], gt[:, 2 * n:]
            d_cand = dh * (1.0 - z) * (1.0 - cand * cand)
            da_z = dh * (h_prev - cand) * z * (1.0 - z)
            da_r = d_cand * fwd.rec_n[t] * r * (1.0 - r)
            d_hp = np.concatenate([da_z, da_r, d_cand * r], axis=1)
            carry = d_hp @ w_h.T + dh * z
            if param_grads:
                d_pre[t] = np.concatenate([da_z, da_r, d_cand], axis=1)
                d_rec[t] = d_hp
    if not param_grads:
        return GatedBackward(grad_h, grad_c, None, {})
    h_prev_all = np.concatenate([np.zeros((1, batch, n), dtype=dt), fwd.h[:-1]], axis=0)
    flat = (steps * batch, -1)
    dw_x = x.reshape(flat).T @ d_pre.reshape(flat)
    dw_h = h_prev_all.reshape(flat).T @ d_rec.reshape(flat)
    db_x = d_pre.reshape(flat).sum(axis=0)
    db_h = d_rec.reshape(flat).sum(axis=0)
    grad_x = (d_pre.reshape(flat) @ w_x.T).reshape(x.shape)
    return GatedBackward(grad_h, grad_c, grad_x,
                         _to_layout(cell, params, dw_x, dw_h, db_x, db_h))


def _to_layout(cell: GatedCell, params: dict[str, np.ndarray], dw_x: np.ndarray,
               dw_h: np.ndarray, db_x: np.ndarray, db_h: np.ndarray) -> dict[str, np.ndarray]:
    """Canonical gradients as the layout's arrays (the inverse of :func:`canonical`)."""
    if cell.layout == "keras":
        out = {"kernel": dw_x, "recurrent_kernel": dw_h}
        if "bias" in params:
            # Keras's LSTM bias feeds both sides (b_h = 0 there): its gradient is db_x
            out["bias"] = db_x if cell.kind == "lstm" else np.stack([db_x, db_h])
        return out
    order, h = _ORDER[(cell.kind, cell.layout)], cell.units
    out = {"weight_ih": _blocks(dw_x.T, order, h, 0), "weight_hh": _blocks(dw_h.T, order, h, 0)}
    if "bias_ih" in params:
        out["bias_ih"] = _blocks(db_x, order, h, 0)
        out["bias_hh"] = _blocks(db_h, order, h, 0)
    return out
