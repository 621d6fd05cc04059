"""The backward half of the gated cells' mean field: the state's gradient through time.

Under gradient independence the transposed recurrent matrix of the backward pass is
independent of the forward one, but it is still *one* matrix, used at every step. The
backward pass of a gated cell sends its gradient two ways: through ``W_h^T`` (the gate
deltas, mixed over the units) and along the cell's own direct path (``f`` for the
LSTM's cell state, ``z`` for the GRU's state), which keeps the gradient of one unit
correlated from step to step. The tied ``W_h^T`` turns those correlations into
correlations of the mixed part ``e_t = W_h^T delta_{t+1}`` between steps::

    E[e_{t-1} e_{s-1}] = H v_h sum_k E[delta_{k,t} delta_{k,s}]        (one gate block k)

so that ``dL/dh_{t-1}`` is correlated with the direct path's gradient, an O(1) effect at
any width (docs/gated.md, section 2.3). This module carries the two-time kernels
``Q(t, s) = E[dL/dh_t dL/dh_s]`` and ``P(t, s)`` (the LSTM's ``E[dL/dc_t dL/dc_s]``, the
GRU's ``E[dL/dh_t dL/dh_s]`` per unit class) back in time, in a band ``|t - s| <= L``
outside which the direct path's products have decayed below 1e-12. With ``L = 0``
(``backward="fresh"``) it is the one-time recursion of a transposed matrix drawn afresh at
every step (the module doc of :mod:`varprop.recurrent.gated_theory`).

Expectations of products of forward quantities at different steps factor (the gates of
different steps independent), except the states, whose two-time kernels (``E[c_t c_s]``,
``E[h_t h_s]``) follow the forward recursions; ``E[tanh c_t tanh c_s]`` is taken to first
order in the covariance (Price's theorem). Where the direct path's chain contains the
very gate whose delta is taken (the LSTM's ``f_s`` in ``delta_f``, the GRU's ``z_s``), the
chain's factor at ``s`` is ``E[f s'(a_f)]`` (or ``E[z (1 - z)]``) rather than the product of
the two means.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["band", "lstm_backward", "gru_backward", "MAX_BAND"]

#: The widest band of two-time kernels carried (steps): beyond it the direct path's
#: chain is taken as decayed (it decays at least like ``max f^L``; chrono with
#: ``T_max`` of a few thousand is the case that reaches it).
MAX_BAND = 4000
_DECAYED = 1e-12


def band(chain: np.ndarray, steps: int) -> int:
    """The band ``L``: where the largest chain factor's power falls below 1e-12."""
    top = float(np.max(chain)) if chain.size else 0.0
    if steps <= 1 or top <= 0.0:
        return 0
    if top >= 1.0 - 1e-12:
        return min(steps - 1, MAX_BAND)
    return int(min(steps - 1, MAX_BAND, math.ceil(math.log(_DECAYED) / math.log(top)) + 1))


def _shifted(arr: np.ndarray, t: int, width: int) -> np.ndarray:
    """``arr[t + d]`` for ``d = 0 .. width - 1`` (rows of a (T, K) array), zeros past the
    end."""
    out = np.zeros((width,) + arr.shape[1:])
    part = arr[t:t + width]
    out[:len(part)] = part
    return out


def _forward_kernel(t: int, width: int, second: np.ndarray, mean: np.ndarray,
                    keep: np.ndarray, inject: np.ndarray) -> np.ndarray:
    """Row ``E[x_t x_{t+d}]``, ``d = 0 .. width-1``, of a state obeying
    ``x_s = keep_s x_{s-1} + (fresh term of mean inject_s)``: ``second[t]`` at ``d = 0``,
    then ``keep * previous + inject * E[x_t]`` (the gates of later steps independent of
    ``x_t``). Rows before the first step (``t < 0``: the zero initial state) are 0."""
    row = np.zeros((width, second.shape[1]))
    if t < 0:
        return row
    steps = second.shape[0]
    row[0] = second[t]
    for d in range(1, min(width, steps - t)):
        row[d] = keep[t + d] * row[d - 1] + inject[t + d] * mean[t]
    return row


def _chain_rows(t: int, width: int, keep: np.ndarray, keep2: np.ndarray, p_diag: np.ndarray,
                m: np.ndarray, q0: float, entry: np.ndarray, entry2: np.ndarray,
                p_next: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(P(t, t+d), D(t, t+d))`` per node: the direct path's two-time kernel and its
    part that runs the chain from ``t`` to ``t + d`` (``D = prod keep * P(t+d, t+d)``).

    The path's gradient is ``x_t = entry_t y_t + keep_{t+1} x_{t+1}`` with ``y`` the
    state's gradient (``entry = o tanh'(c)`` for the LSTM's cell, 1 for the GRU) and
    ``m[d] = E[y_t x_{t+d}]``::

        P(t, t)   = E[entry^2] Q(t, t) + E[keep^2] P(t+1, t+1) + 2 E[entry] E[keep] m[1]
        P(t, t+d) = E[entry] m[d] + E[keep] P(t+1, t+d)
    """
    steps, k = keep.shape
    p = np.zeros((width, k))
    keep_next = keep[t + 1] if t + 1 < steps else np.zeros(k)
    keep2_next = keep2[t + 1] if t + 1 < steps else np.zeros(k)
    p[0] = q0 * entry2 + keep2_next * p_next[0] + 2.0 * entry * keep_next * m[1]
    p[1:] = entry * m[1:width] + keep_next * p_next[:width - 1]
    prod = np.cumprod(_shifted(keep, t + 1, width - 1), axis=0)
    d = np.zeros((width, k))
    d[0] = p[0]
    d[1:] = prod * _shifted(p_diag, t + 1, width - 1)
    return p, d


def lstm_backward(stats: dict[str, np.ndarray], weights: np.ndarray, reads: np.ndarray,
                  factor: float, width: int) -> tuple[np.ndarray, np.ndarray]:
    """``E[(dL/dh_t)^2]`` per step of the LSTM (module doc), and the gate deltas'
    ``sum_k E[delta_(k,t)^2]`` per step, the input's gradient without its kernel's
    factor (``Var dL/dx_t = H (v_x + m_x^2)`` times it); ``factor = H (v_h + m_h^2)``,
    ``width = L + 1`` (1: the one-time recursion)."""
    steps, k = stats["fm"].shape
    a_cell = stats["om"] * stats["dth"]  # E[o tanh'(c)]: the state's entry into the cell
    a2_cell = stats["om2"] * stats["dth2"]
    ig = stats["im"] * stats["gm"]
    grad = np.empty(steps)
    deltas = np.empty(steps)
    p_next = np.zeros((width, k))
    p_diag = np.zeros((steps, k))
    k_row = np.zeros(width)  # E[e_t e_{t+d}]
    for t in range(steps - 1, -1, -1):
        q = k_row.copy()
        q[0] += reads[t]
        grad[t] = q[0]
        live = min(width, steps - t)
        # M(t, t+d) = E[dL/dh_t dL/dc_{t+d}] = a_{t+d} Q(t, t+d) + f_{t+d+1} M(t, t+d+1)
        m = np.zeros((width + 1, k))
        for d in range(live - 1, -1, -1):
            f_up = stats["fm"][t + d + 1] if t + d + 1 < steps else 0.0
            m[d] = a_cell[t + d] * q[d] + f_up * m[d + 1]
        p, chain = _chain_rows(t, width, stats["fm"], stats["fm2"], p_diag, m, q[0],
                               a_cell[t], a2_cell[t], p_next)
        p[live:] = 0.0
        chain[live:] = 0.0
        p_diag[t] = p[0]
        # the gate deltas' two-time kernel at (t, t+d): same step, then the others
        same = (p[0] * (stats["gm2"][t] * stats["id2"][t] + stats["c2_prev"][t] * stats["fd2"][t]
                        + stats["im2"][t] * stats["gd2"][t])
                + q[0] * stats["th2"][t] * stats["od2"][t])
        row = np.zeros((width, k))
        row[0] = same
        deltas[t] = float(same @ weights)
        if live > 1:
            s = slice(t + 1, t + live)
            gi = stats["gm"] * stats["id"]  # E[g] E[s'(a_i)]
            ig_d = stats["im"] * stats["gd"]  # E[i] E[tanh'(a_g)]
            c_prev = _forward_kernel(t - 1, live, stats["c2"], stats["cm"], stats["fm"], ig)
            c_now = _forward_kernel(t, live, stats["c2"], stats["cm"], stats["fm"], ig)
            tanh_cross = (stats["th"][t] * stats["th"][s] + stats["dth"][t] * stats["dth"][s]
                          * (c_now[1:] - stats["cm"][t] * stats["cm"][s]))
            pm, ch = p[1:live], chain[1:live]
            f_gate = stats["fd"][t] * c_prev[1:] * ((pm - ch) * stats["fd"][s]
                                                      + ch * stats["fsd"][s] / stats["fm"][s])
            row[1:live] = (pm * (gi[t] * gi[s] + ig_d[t] * ig_d[s]) + f_gate
                           + q[1:live, None] * tanh_cross * stats["od"][t] * stats["od"][s])
        k_row = factor * (row @ weights)  # E[e_{t-1} e_{t-1+d}]
        p_next = p
    return grad, deltas


def gru_backward(stats: dict[str, np.ndarray], weights: np.ndarray, reads: np.ndarray,
                 factor: float, width: int) -> tuple[np.ndarray, np.ndarray]:
    """``E[(dL/dh_t)^2]`` per step of the GRU (module doc), and the input's gate deltas,
    as :func:`lstm_backward`: the candidate's delta reaches ``x_t`` without the reset
    gate ``r_t`` that scales it on the way to ``h_(t-1)``."""
    steps, k = stats["zm"].shape
    one_z = 1.0 - stats["zm"]
    one_z2 = 1.0 - 2.0 * stats["zm"] + stats["zm2"]
    en = stats["en"]
    grad = np.empty(steps)
    deltas = np.empty(steps)
    p_next = np.zeros((width, k))
    p_diag = np.zeros((steps, k))
    k_row = np.zeros(width)
    one = np.ones(k)
    for t in range(steps - 1, -1, -1):
        q = k_row.copy()
        q[0] += reads[t]
        live = min(width, steps - t)
        # M(t, t+d) = E[(r_t + e_t) dL/dh_{t+d}] = Q(t, t+d) + z_{t+d+1} M(t, t+d+1)
        m = np.zeros((width + 1, k))
        for d in range(live - 1, -1, -1):
            z_up = stats["zm"][t + d + 1] if t + d + 1 < steps else 0.0
            m[d] = q[d] + z_up * m[d + 1]
        p, chain = _chain_rows(t, width, stats["zm"], stats["zm2"], p_diag, m, q[0], one,
                               one, p_next)
        p[live:] = 0.0
        chain[live:] = 0.0
        p_diag[t] = p[0]
        grad[t] = float(p[0] @ weights)
        row = np.zeros((width, k))
        row[0] = p[0] * (stats["zd2"][t] * stats["hn2"][t]
                         + one_z2[t] * (stats["dn_r2"][t] + stats["dn_s2"][t]))
        deltas[t] = float((p[0] * (stats["zd2"][t] * stats["hn2"][t]
                                   + one_z2[t] * (stats["dn2"][t] + stats["dn_s2"][t])))
                          @ weights)
        if live > 1:
            s = slice(t + 1, t + live)
            # E[(h_{t-1} - n_t)(h_{s-1} - n_s)]: the states' kernel, the candidate of t
            # inside h_{s-1}, and the later candidates independent of the earlier states
            h_prev = _forward_kernel(t - 1, live, stats["h2"], stats["hm"], stats["zm"],
                                     one_z * en)
            nh = np.zeros((live, k))  # E[n_t h_{t+d}]
            nh[0] = stats["zm"][t] * en[t] * stats["hm_prev"][t] + one_z[t] * stats["en2"][t]
            for d in range(1, live):
                nh[d] = stats["zm"][t + d] * nh[d - 1] + one_z[t + d] * en[t] * en[t + d]
            hn = (h_prev[1:] - stats["hm_prev"][t] * en[s] - nh[:live - 1]
                  + en[t] * en[s])
            pm, ch = p[1:live], chain[1:live]
            z_gate = stats["zd"][t] * hn * ((pm - ch) * stats["zd"][s]
                                            + ch * stats["zsd"][s] / stats["zm"][s])
            own = (stats["zm"][s] - stats["zm2"][s]) / stats["zm"][s]  # E[z (1 - z)] / E[z]
            cand = one_z[t] * (stats["tr"][t] * stats["tr"][s] + stats["ts"][t] * stats["ts"][s])
            row[1:live] = z_gate + cand * ((pm - ch) * one_z[s] + ch * own)
        k_row = factor * (row @ weights)
        p_next = p
    return grad, deltas
