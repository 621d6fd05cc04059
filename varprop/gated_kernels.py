"""LSTM and GRU on fused kernels: the validated public face of ``varprop._gated``.

The arrays are in the canonical form of :mod:`varprop.recurrent.gated_arrays`: Keras's
``z = x @ W``, ``W_x (F, G H)``, ``W_h (H, G H)``, an input-side bias ``b_x`` and a
state-side bias ``b_h`` (``G H`` each), the gates in the order i, f, g, o (LSTM, G = 4)
or z, r, n (GRU, G = 3); inputs time-major, ``x (T, B, F)``::

    LSTM:  a = x_t W_x + b_x + h_{t-1} W_h + b_h;   i, f, o = sigmoid, g = tanh
           c_t = f c_{t-1} + i g,   h_t = o tanh(c_t)
    GRU:   z, r = sigmoid(x_t W_x + b_x + h_{t-1} W_h + b_h)   (their blocks)
           s_t = h_{t-1} W_hn + b_hn,   n = tanh(x_t W_xn + b_xn + r s_t)
           h_t = z h_{t-1} + (1 - z) n

with ``h_{-1} = h0`` and ``c_{-1} = c0`` (zeros when None). The forward computes the
input projection of every step as one GEMM over the ``T B`` rows, then runs the time
loop in C per batch tile: each step's recurrent GEMM, then at once the gate
nonlinearities and the cell update on the rows it wrote. The backward runs back through
time the same way, then forms the weight and input gradients as whole-sequence GEMMs
(docs/gated.md, section 4; docs/kernels.md).

:func:`cell_forward` and :func:`cell_backward` take a cell spec and its arrays in either
layout (Keras's or PyTorch's) and return what :func:`varprop.recurrent.gated_arrays.
gated_forward` and ``gated_backward`` return: the kernels are their drop-in, and those
plain-numpy functions are the kernels' twin.

Rules (those of :mod:`varprop.rnn_kernels`): float32 or float64, one dtype for all arrays
(TypeError otherwise); arrays of any memory order (copied to C order where needed);
outputs are new C-contiguous arrays of the input dtype; results are bitwise identical for
any ``n_threads`` (the tile grids depend on the shapes only, every output element is
written by one task, the bias gradients' per-block float64 partial sums are added in
block order). Without the compiled extension this module imports and every kernel raises
:class:`varprop.kernels.ExtensionMissingError`.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from ._blas import single_threaded_blas
from ._threads import resolve_n_threads
from .kernels import (_BACKWARD_BLOCK, ExtensionMissingError, _ceil_div, _missing_message,
                      _same_dtype, forward_tiles)
from .rnn_kernels import _array

__all__ = ["lstm_forward", "lstm_backward", "gru_forward", "gru_backward", "cell_forward",
           "cell_backward", "GatedKernelForward", "GatedKernelGradients", "batch_tile",
           "available", "built_with_openmp"]

_INT32_MAX = 2**31 - 1
_CELL_ID = {"lstm": 0, "gru": 1}
_N_GATES = {"lstm": 4, "gru": 3}
#: Rows per batch tile of the recurrence: one step of a tile is a (rows x H) x (H x G H)
#: GEMM whose W_h panel is G times the Elman cell's, so a tile needs more rows than the
#: Elman cell's 8 to 16 before the product outweighs packing W_h (docs/kernels.md).
_BATCH_TILE = 32
_MIN_BATCH_TILE = 16
_TARGET_TILES = 8

_gated_module: ModuleType | None = None


def _extension() -> ModuleType:
    """``varprop._gated``, imported on first use; ExtensionMissingError without it."""
    global _gated_module
    if _gated_module is None:
        try:
            from . import _gated
        except ImportError as exc:
            raise ExtensionMissingError(_missing_message(
                exc, "_gated", "the gated-cell kernels (lstm_forward, gru_forward, ...)")
            ) from exc
        _gated_module = _gated
    return _gated_module


def available() -> bool:
    """True when the compiled ``varprop._gated`` imports (the kernels can run)."""
    try:
        _extension()
    except ExtensionMissingError:
        return False
    return True


def built_with_openmp() -> bool:
    """True when the gated loops were built with OpenMP (ExtensionMissingError without
    the compiled extension)."""
    return bool(_extension().built_with_openmp())


def batch_tile(batch: int) -> int:
    """Rows per batch tile of the recurrence, a function of the batch alone: about
    batch / 8 rows, between 16 and 32, never more than the batch."""
    return min(batch, max(_MIN_BATCH_TILE, min(_BATCH_TILE, _ceil_div(batch, _TARGET_TILES))))


@dataclass(frozen=True)
class GatedKernelForward:
    """One forward pass: ``h (T, B, H)`` the states; ``c`` the LSTM's cell states (None
    for a GRU); ``gates (T, B, G H)`` the gate values after their nonlinearities
    (i, f, g, o / z, r, n); ``pre`` their pre-activations (the GRU's n block: the
    candidate's, ``x W_xn + b_xn + r s``); ``s`` the GRU's ``h_{t-1} W_hn + b_hn`` (None
    for an LSTM)."""

    h: np.ndarray
    c: np.ndarray | None
    gates: np.ndarray
    pre: np.ndarray
    s: np.ndarray | None


@dataclass(frozen=True)
class GatedKernelGradients:
    """One backward pass. ``grad_h (T, B, H)``: the total ``dL/dh_t`` (the loss's direct
    gradient plus what the later steps send back); ``grad_c``: the LSTM's total
    ``dL/dc_t`` (None for a GRU); ``grad_a (T, B, G H)``: ``dL/d pre``; ``grad_h0``,
    ``grad_c0`` (None for a GRU): of the initial states. With ``param_grads`` (else
    None): ``grad_x (T, B, F)``, ``grad_w_x (F, G H)``, ``grad_w_h (H, G H)``,
    ``grad_b_x``, ``grad_b_h`` (``G H``; summed in float64)."""

    grad_h: np.ndarray
    grad_c: np.ndarray | None
    grad_a: np.ndarray
    grad_h0: np.ndarray
    grad_c0: np.ndarray | None
    grad_x: np.ndarray | None = None
    grad_w_x: np.ndarray | None = None
    grad_w_h: np.ndarray | None = None
    grad_b_x: np.ndarray | None = None
    grad_b_h: np.ndarray | None = None


def _weights(kind: str, x: Any, w_x: Any, w_h: Any) -> tuple[int, int, int, int]:
    """(T, B, F, H) from x, W_x and W_h, checked against each other and the cell."""
    steps, batch, n_in = _array("x", x, 3, "(T, B, F)").shape
    if steps * batch > _INT32_MAX:
        raise ValueError(f"x has T B = {steps * batch} rows (shape {x.shape}): at most "
                         "2**31 - 1")
    g = _N_GATES[kind]
    hidden = _array("w_h", w_h, 2, f"(H, {g} H)").shape[0]
    if w_h.shape != (hidden, g * hidden):
        raise ValueError(f"w_h must have shape (H, {g} H) for the {kind.upper()}'s {g} "
                         f"gates, got {w_h.shape}")
    if _array("w_x", w_x, 2, f"(F, {g} H)").shape != (n_in, g * hidden):
        raise ValueError(f"w_x must have shape (F, {g} H) = {(n_in, g * hidden)} (x has "
                         f"F = {n_in} features, w_h has H = {hidden} units), got {w_x.shape}")
    return steps, batch, n_in, hidden


def _optional(name: str, arr: Any, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """``arr`` in C order, or an empty array (first dimension 0) standing for none."""
    if arr is None:
        return np.empty((0,) + shape[1:], dtype)
    what = "(" + ", ".join(("B", "H") if len(shape) == 2 else ("G H",)) + ")"
    if _array(name, arr, len(shape), what).shape != shape:
        raise ValueError(f"{name} must have shape {what} = {shape}, got {arr.shape}")
    return np.ascontiguousarray(arr)


def _sequence(name: str, arr: Any, shape: tuple[int, ...], what: str) -> np.ndarray:
    """A (T, B, .) argument of the backward in C order."""
    if _array(name, arr, 3, what).shape != shape:
        raise ValueError(f"{name} must have shape {what} = {shape}, got {arr.shape}")
    return np.ascontiguousarray(arr)


def _dtype(named: dict[str, Any]) -> np.dtype:
    return _same_dtype({k: v for k, v in named.items() if v is not None})


def _forward(kind: str, x: Any, w_x: Any, w_h: Any, b_x: Any, b_h: Any, h0: Any, c0: Any,
             n_threads: int | None) -> GatedKernelForward:
    ext = _extension()
    dtype = _dtype({"x": x, "w_x": w_x, "w_h": w_h, "b_x": b_x, "b_h": b_h, "h0": h0,
                    "c0": c0})
    steps, batch, _, hidden = _weights(kind, x, w_x, w_h)
    gh = _N_GATES[kind] * hidden
    bx, bh = (_optional(n, b, (gh,), dtype) for n, b in (("b_x", b_x), ("b_h", b_h)))
    s0, c_init = (_optional(n, a, (batch, hidden), dtype) for n, a in (("h0", h0), ("c0", c0)))
    threads = resolve_n_threads(n_threads)
    lstm = kind == "lstm"
    pre = np.empty((steps, batch, gh), dtype)
    gates = np.empty((steps, batch, gh), dtype)
    h = np.empty((steps, batch, hidden), dtype)
    c = np.empty((steps if lstm else 0, batch, hidden), dtype)
    s = np.empty((0 if lstm else steps, batch, hidden), dtype)
    tiles = (batch_tile(batch), *forward_tiles(steps * batch, gh))
    with single_threaded_blas():
        ext.forward(_CELL_ID[kind], np.ascontiguousarray(x), np.ascontiguousarray(w_x),
                    np.ascontiguousarray(w_h), bx, bh, s0, c_init, pre, gates, h, c, s,
                    tiles, threads)
    return GatedKernelForward(h, c if lstm else None, gates, pre, None if lstm else s)


def lstm_forward(x: np.ndarray, w_x: np.ndarray, w_h: np.ndarray,
                 b_x: np.ndarray | None = None, b_h: np.ndarray | None = None,
                 h0: np.ndarray | None = None, c0: np.ndarray | None = None, *,
                 n_threads: int | None = None) -> GatedKernelForward:
    """Forward pass of an LSTM (module doc).

    Args:
        x: inputs ``(T, B, F)``, time-major, float32 or float64 (T, B, F >= 1).
        w_x: input weights ``(F, 4H)``, gates i, f, g, o; x's dtype.
        w_h: recurrent weights ``(H, 4H)``.
        b_x, b_h: biases ``(4H,)`` (added in that order), or None for none.
        h0, c0: initial state and cell ``(B, H)``, or None for zeros.
        n_threads: OpenMP threads; None uses :func:`varprop.get_num_threads`.

    Returns:
        :class:`GatedKernelForward` (``s`` None).

    Example:
        >>> x = np.ones((5, 2, 3)); w_x = np.full((3, 16), 0.1); w_h = np.zeros((4, 16))
        >>> lstm_forward(x, w_x, w_h).c.shape
        (5, 2, 4)
    """
    return _forward("lstm", x, w_x, w_h, b_x, b_h, h0, c0, n_threads)


def gru_forward(x: np.ndarray, w_x: np.ndarray, w_h: np.ndarray,
                b_x: np.ndarray | None = None, b_h: np.ndarray | None = None,
                h0: np.ndarray | None = None, *, n_threads: int | None = None
                ) -> GatedKernelForward:
    """Forward pass of a GRU (module doc; PyTorch's and Keras's ``reset_after=True``
    form): as :func:`lstm_forward` with ``w_x (F, 3H)``, ``w_h (H, 3H)``, gates z, r, n,
    no cell. Returns :class:`GatedKernelForward` (``c`` None)."""
    return _forward("gru", x, w_x, w_h, b_x, b_h, h0, None, n_threads)


def _backward(kind: str, x: Any, w_x: Any, w_h: Any, h: Any, c: Any, gates: Any, s: Any,
              grad_out: Any, h0: Any, c0: Any, param_grads: bool, n_threads: int | None
              ) -> GatedKernelGradients:
    ext = _extension()
    dtype = _dtype({"x": x, "w_x": w_x, "w_h": w_h, "h": h, "c": c, "gates": gates, "s": s,
                    "grad_out": grad_out, "h0": h0, "c0": c0})
    if not isinstance(param_grads, (bool, np.bool_)):
        raise TypeError(f"param_grads must be a bool, got {type(param_grads).__name__}")
    steps, batch, n_in, hidden = _weights(kind, x, w_x, w_h)
    gh = _N_GATES[kind] * hidden
    lstm = kind == "lstm"
    state, gshape = (steps, batch, hidden), (steps, batch, gh)
    hc = _sequence("h", h, state, "(T, B, H)")
    gc = _sequence("gates", gates, gshape, "(T, B, G H)")
    cc = _sequence("c", c, state, "(T, B, H)") if lstm else np.empty((0, batch, hidden), dtype)
    sc = np.empty((0, batch, hidden), dtype) if lstm else _sequence("s", s, state, "(T, B, H)")
    go = _sequence("grad_out", grad_out, state, "(T, B, H)")
    s0, c_init = (_optional(n, a, (batch, hidden), dtype) for n, a in (("h0", h0), ("c0", c0)))
    threads = resolve_n_threads(n_threads)

    rows = steps * batch
    block = max(1, min(rows, _BACKWARD_BLOCK // gh))
    n_blocks = _ceil_div(rows, block) if param_grads else 0
    grad_h = np.empty(state, dtype)
    grad_c = np.empty(state if lstm else (0, batch, hidden), dtype)
    grad_a = np.empty(gshape, dtype)
    grad_rec = np.empty((0, batch, gh) if lstm else gshape, dtype)
    grad_h0 = np.empty((batch, hidden), dtype)
    grad_c0 = np.empty((batch if lstm else 0, hidden), dtype)
    grad_x = np.empty((steps, batch, n_in) if param_grads else (0, batch, n_in), dtype)
    grad_w_x = np.empty((n_in if param_grads else 0, gh), dtype)
    grad_w_h = np.empty((hidden if param_grads else 0, gh), dtype)
    part_x = np.empty((n_blocks, gh), np.float64)
    part_h = np.empty((0 if lstm else n_blocks, gh), np.float64)
    tiles = (batch_tile(batch), *forward_tiles(rows, n_in), *forward_tiles(n_in, gh),
             *forward_tiles(hidden, gh), block)
    with single_threaded_blas():
        ext.backward(_CELL_ID[kind], np.ascontiguousarray(x), np.ascontiguousarray(w_x),
                     np.ascontiguousarray(w_h), s0, c_init, gc, hc, cc, sc, go, grad_h,
                     grad_c, grad_a, grad_rec, grad_h0, grad_c0, grad_x, grad_w_x,
                     grad_w_h, part_x, part_h, tiles, threads)
    out = GatedKernelGradients(grad_h, grad_c if lstm else None, grad_a, grad_h0,
                               grad_c0 if lstm else None)
    if not param_grads:
        return out
    # blocks added in order: the sums do not depend on the thread count
    grad_b_x = np.sum(part_x, axis=0).astype(dtype)
    grad_b_h = grad_b_x.copy() if lstm else np.sum(part_h, axis=0).astype(dtype)
    return GatedKernelGradients(grad_h, out.grad_c, grad_a, grad_h0, out.grad_c0, grad_x,
                                grad_w_x, grad_w_h, grad_b_x, grad_b_h)


def lstm_backward(x: np.ndarray, w_x: np.ndarray, w_h: np.ndarray, h: np.ndarray,
                  c: np.ndarray, gates: np.ndarray, grad_out: np.ndarray,
                  h0: np.ndarray | None = None, c0: np.ndarray | None = None, *,
                  param_grads: bool = True, n_threads: int | None = None
                  ) -> GatedKernelGradients:
    """Backward through time of :func:`lstm_forward`, from ``t = T-1`` down to 0::

        dh_t = grad_out_t + dA_{t+1} W_h^T
        dc_t = dh_t o (1 - tanh^2 c_t) + dc_{t+1} f_{t+1}
        dA_t = (dc g i(1-i), dc c_{t-1} f(1-f), dc i (1-g^2), dh tanh(c_t) o(1-o))

    then ``grad_h0 = dA_0 W_h^T``, ``grad_c0 = dc_0 f_0`` and, with ``param_grads``,
    ``grad_x = dA W_x^T``, ``grad_w_x = X^T dA``, ``grad_w_h = sum_t h_{t-1}^T dA_t``,
    ``grad_b_x = grad_b_h = sum dA``.

    Args:
        x, w_x, w_h, h0, c0, n_threads: as given to :func:`lstm_forward`.
        h, c, gates: its outputs.
        grad_out: the loss's direct gradient on each state ``h_t``, ``(T, B, H)``.
        param_grads: False skips the whole-sequence GEMMs (``grad_x`` and the weight
            and bias gradients are then None): what a measurement of ``dL/dh_t`` needs.

    Returns:
        :class:`GatedKernelGradients` (new arrays of x's dtype).
    """
    return _backward("lstm", x, w_x, w_h, h, c, gates, None, grad_out, h0, c0, param_grads,
                     n_threads)


def gru_backward(x: np.ndarray, w_x: np.ndarray, w_h: np.ndarray, h: np.ndarray,
                 gates: np.ndarray, s: np.ndarray, grad_out: np.ndarray,
                 h0: np.ndarray | None = None, *, param_grads: bool = True,
                 n_threads: int | None = None) -> GatedKernelGradients:
    """Backward through time of :func:`gru_forward`, from ``t = T-1`` down to 0::

        dh_t = grad_out_t + dR_{t+1} W_h^T + dh_{t+1} z_{t+1}
        dn   = dh (1 - z)(1 - n^2)
        dA_t = (dh (h_{t-1} - n) z(1-z), dn s r(1-r), dn)      (input side)
        dR_t = (dA_t[z], dA_t[r], dn r)                          (recurrent side)

    then ``grad_h0 = dR_0 W_h^T + dh_0 z_0`` and, with ``param_grads``, ``grad_x = dA
    W_x^T``, ``grad_w_x = X^T dA``, ``grad_w_h = sum_t h_{t-1}^T dR_t``, ``grad_b_x =
    sum dA``, ``grad_b_h = sum dR``. Arguments as :func:`lstm_backward`, with ``s`` (the
    forward's) instead of ``c``."""
    return _backward("gru", x, w_x, w_h, h, None, gates, s, grad_out, h0, None, param_grads,
                     n_threads)


# ------------------------------------------------------------------ cell-level face
def cell_forward(cell: Any, x: np.ndarray, params: dict[str, np.ndarray], *,
                 n_threads: int | None = None) -> Any:
    """:func:`varprop.recurrent.gated_arrays.gated_forward` on the kernels: ``cell`` (an
    LSTM or GRU spec) over ``x (T, B, F)`` from zero states, its arrays ``params`` in the
    cell's layout. Returns a :class:`~varprop.recurrent.gated_arrays.GatedForward`."""
    from .recurrent.gated_arrays import GatedForward, _check_x, canonical
    x = _check_x(cell, x)
    w_x, w_h, b_x, b_h = _canonical_biases(cell, params, canonical, x.dtype)
    if cell.kind == "lstm":
        f = lstm_forward(x, w_x, w_h, b_x, b_h, n_threads=n_threads)
        return GatedForward(f.h, f.c, f.gates)
    f = gru_forward(x, w_x, w_h, b_x, b_h, n_threads=n_threads)
    n = cell.units
    return GatedForward(f.h, None, f.gates, f.pre[:, :, 2 * n:], f.s)


def cell_backward(cell: Any, x: np.ndarray, params: dict[str, np.ndarray], fwd: Any,
                  grad_out: np.ndarray, *, param_grads: bool = True,
                  n_threads: int | None = None) -> Any:
    """:func:`varprop.recurrent.gated_arrays.gated_backward` on the kernels: the same
    arguments (``fwd`` from :func:`cell_forward` or ``gated_forward``) and the same
    :class:`~varprop.recurrent.gated_arrays.GatedBackward`, the parameter gradients named
    and shaped as the layout's arrays."""
    from .recurrent.gated_arrays import GatedBackward, _check_x, _to_layout, canonical
    x = _check_x(cell, x)
    dt = x.dtype
    w_x, w_h, b_x, b_h = _canonical_biases(cell, params, canonical, dt)
    grad_out = np.asarray(grad_out, dtype=dt)
    if grad_out.shape != fwd.h.shape:
        raise ValueError(f"grad_out must have the states' shape {fwd.h.shape}; got "
                         f"{grad_out.shape}")
    if cell.kind == "lstm":
        g = lstm_backward(x, w_x, w_h, fwd.h, fwd.c, fwd.gates, grad_out,
                          param_grads=param_grads, n_threads=n_threads)
    else:
        g = gru_backward(x, w_x, w_h, fwd.h, fwd.gates, fwd.rec_n, grad_out,
                         param_grads=param_grads, n_threads=n_threads)
    if not param_grads:
        return GatedBackward(g.grad_h, g.grad_c, None, {})
    return GatedBackward(g.grad_h, g.grad_c, g.grad_x,
                         _to_layout(cell, params, g.grad_w_x, g.grad_w_h, g.grad_b_x,
                                    g.grad_b_h))


def _canonical_biases(cell: Any, params: dict[str, np.ndarray], canonical: Any,
                      dtype: np.dtype) -> tuple[np.ndarray, np.ndarray, Any, Any]:
    """The canonical arrays in ``dtype``, with None for a bias the layout does not have
    (Keras's LSTM has no state-side bias; a cell without bias has neither): adding the
    zeros that :func:`~varprop.recurrent.gated_arrays.canonical` returns would change no
    bit, only cost a pass."""
    w_x, w_h, b_x, b_h = (np.asarray(a, dtype=dtype) for a in canonical(cell, params))
    if cell.bias_init is None:
        return w_x, w_h, None, None
    if cell.layout == "keras" and cell.kind == "lstm":
        return w_x, w_h, b_x, None
    return w_x, w_h, b_x, b_h
