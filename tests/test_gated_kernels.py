"""The gated-cell kernels (varprop.gated_kernels) against their plain-numpy twin
(varprop.recurrent.gated_arrays), an independent float64 reference with initial states,
and finite differences; bitwise independence of the thread count; any memory order;
bad arguments named in the error; measure_gated on either path. The PyTorch checks are in
test_gated_kernels_torch.py.

Tolerances are derived, never tuned: tests/_gated_reference.py carries with every value
of a float64 reference a first-order bound u E on its rounding error (Wilkinson's running
error analysis), and two implementations of the same equations differ by at most
2 u E."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from _gated_reference import G, reference, unit_roundoff
from varprop import gated_kernels as gk
from varprop.kernels import ExtensionMissingError
from varprop.recurrent.gated import GRU, LSTM, keras_gru, keras_lstm, torch_gru
from varprop.recurrent.gated_arrays import (canonical, draw_gated_parameters,
                                            gated_backward, gated_forward)

DTYPES = [np.float32, np.float64]
KINDS = ["lstm", "gru"]
THREADS = [1, 2, 3]
SHAPES = [  # (T, B, F, H)
    (1, 1, 1, 1), (1, 3, 2, 4), (4, 1, 3, 5), (5, 2, 1, 3), (7, 37, 9, 13),
    (3, 70, 20, 33),  # B = 70: four batch tiles of 16 rows and a short one
]


def _data(kind, shape, dtype, seed=0, states=True):
    """x, W_x, W_h (scaled so the gates are neither saturated nor linear), b_x, b_h, h0,
    c0 (c0 None for a GRU; both None without ``states``) and a loss gradient on every
    state, half of the steps zero."""
    steps, batch, n_in, hidden = shape
    gh = G[kind] * hidden
    rng = np.random.default_rng(seed)
    arr = lambda *s, scale=1.0: (scale * rng.standard_normal(s)).astype(dtype)  # noqa: E731
    x = arr(steps, batch, n_in)
    w_x, w_h = arr(n_in, gh, scale=n_in ** -0.5), arr(hidden, gh, scale=hidden ** -0.5)
    b_x, b_h = arr(gh, scale=0.5), arr(gh, scale=0.3)
    h0 = arr(batch, hidden, scale=0.5) if states else None
    c0 = arr(batch, hidden, scale=0.8) if states and kind == "lstm" else None
    go = arr(steps, batch, hidden)
    go[:-1:2] = 0
    return x, w_x, w_h, b_x, b_h, h0, c0, go


def _run(kind, x, w_x, w_h, b_x, b_h, h0, c0, go, n_threads=2, param_grads=True):
    if kind == "lstm":
        f = gk.lstm_forward(x, w_x, w_h, b_x, b_h, h0, c0, n_threads=n_threads)
        g = gk.lstm_backward(x, w_x, w_h, f.h, f.c, f.gates, go, h0, c0,
                             param_grads=param_grads, n_threads=n_threads)
    else:
        f = gk.gru_forward(x, w_x, w_h, b_x, b_h, h0, n_threads=n_threads)
        g = gk.gru_backward(x, w_x, w_h, f.h, f.gates, f.s, go, h0,
                            param_grads=param_grads, n_threads=n_threads)
    return f, g


def _within(got, want, tol, what):
    got = np.asarray(got, np.float64)
    assert got.shape == np.shape(want), what
    diff = np.abs(got - want)
    assert np.all(diff <= tol + 1e-300), (what, float(np.max(diff - tol)))


FIELDS = ("grad_h", "grad_a", "grad_h0", "grad_x", "grad_w_x", "grad_w_h", "grad_b_x",
          "grad_b_h")


def check_all(kind, dtype, f, g, ref):
    """Every kernel output within 2 u E of the float64 reference's value (module doc)."""
    tol = 2 * unit_roundoff(dtype)
    pairs = {"h": f.h, "gates": f.gates}
    if kind == "lstm":
        pairs.update(c=f.c, grad_c=g.grad_c, grad_c0=g.grad_c0)
    else:
        pairs.update(s=f.s, cand=f.pre[:, :, 2 * f.s.shape[2]:])
    pairs.update({k: getattr(g, k) for k in FIELDS})
    for name, got in pairs.items():
        assert got.dtype == dtype, name
        _within(got, ref[name].v, tol * ref[name].e, name)


# ------------------------------------------------------------------- against references
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("kind", KINDS)
def test_kernels_match_the_float64_reference_with_and_without_states(kind, shape, dtype):
    for states, biases in ((True, True), (False, False)):
        x, w_x, w_h, b_x, b_h, h0, c0, go = _data(kind, shape, dtype, states=states)
        if not biases:
            b_x = b_h = None
        f, g = _run(kind, x, w_x, w_h, b_x, b_h, h0, c0, go)
        check_all(kind, dtype, f, g, reference(kind, x, w_x, w_h, b_x, b_h, h0, c0, go))
        if not states:  # zero states: grad_h0 is still dL/dh0, the twin's carry
            assert g.grad_h0.shape == (shape[1], shape[3])


def _random_cell(kind, layout, f, h):
    u = {"name": "random_uniform", "minval": -0.6, "maxval": 0.6}
    if kind == "lstm":
        return LSTM(f, h, u, u, u, layout, unit_forget_bias=False)
    return GRU(f, h, u, u, u, layout)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("layout", ["keras", "torch"])
@pytest.mark.parametrize("kind", KINDS)
def test_cell_face_matches_the_numpy_twin_in_either_layout(kind, layout, dtype):
    shape = (6, 19, 4, 7)
    cell = _random_cell(kind, layout, shape[2], shape[3])
    p = draw_gated_parameters(cell, 3, dtype)
    rng = np.random.default_rng(4)
    x = rng.standard_normal(shape[:3]).astype(dtype)
    go = rng.standard_normal((*shape[:2], shape[3])).astype(dtype)
    want_f = gated_forward(cell, x, p)
    want_b = gated_backward(cell, x, p, want_f, go)
    got_f = gk.cell_forward(cell, x, p, n_threads=2)
    got_b = gk.cell_backward(cell, x, p, got_f, go, n_threads=2)
    # the twin is one more implementation within u E of the exact values
    w_x, w_h, b_x, b_h = canonical(cell, p)
    ref = reference(kind, x, w_x, w_h, b_x, b_h, None, None, go)
    tol = 2 * unit_roundoff(dtype)
    pairs = [(got_f.h, want_f.h, "h"), (got_f.gates, want_f.gates, "gates"),
             (got_b.grad_h, want_b.grad_h, "grad_h"), (got_b.grad_x, want_b.grad_x, "grad_x")]
    if kind == "lstm":
        pairs += [(got_f.c, want_f.c, "c"), (got_b.grad_c, want_b.grad_c, "grad_c")]
    else:
        pairs += [(got_f.cand_pre, want_f.cand_pre, "cand"), (got_f.rec_n, want_f.rec_n, "s")]
    for got, want, name in pairs:
        _within(got, want, tol * ref[name].e, name)
    assert set(got_b.params) == set(want_b.params) == set(p)
    # the layout's arrays map back from the canonical error coefficients as the values do
    from varprop.recurrent.gated_arrays import _to_layout
    e_layout = _to_layout(cell, p, *(ref[k].e for k in ("grad_w_x", "grad_w_h", "grad_b_x",
                                                         "grad_b_h")))
    for name, want in want_b.params.items():
        assert got_b.params[name].dtype == dtype, name
        _within(got_b.params[name], want, tol * e_layout[name], name)
    quick = gk.cell_backward(cell, x, p, got_f, go, param_grads=False)
    assert quick.grad_x is None and quick.params == {}
    assert np.array_equal(quick.grad_h, got_b.grad_h)  # the same loop either way


# ----------------------------------------------------------------- finite differences
@pytest.mark.parametrize("kind", KINDS)
def test_gradients_match_finite_differences_float64(kind):
    shape = (3, 2, 2, 3)
    x, w_x, w_h, b_x, b_h, h0, c0, up = _data(kind, shape, np.float64, seed=5)
    up = np.random.default_rng(6).standard_normal(up.shape)

    def loss():  # one thread: ~200 small calls
        f, _ = _run(kind, x, w_x, w_h, b_x, b_h, h0, c0, up, n_threads=1,
                    param_grads=False)
        return float(np.sum(up * f.h))

    _, g = _run(kind, x, w_x, w_h, b_x, b_h, h0, c0, up)
    step = 1e-6
    # central differences: rounding eps sum|up| max(1, |h|) / step; truncation
    # step^2 / 6 |L'''|, each third derivative of a T-step state running through at
    # most T G H products of entries up to m, the gates' derivatives at most 2
    m = max(1.0, *(float(np.abs(a).max()) for a in (x, w_x, w_h, b_x, b_h, h0)))
    size = float(np.sum(np.abs(up)))
    rounding = np.finfo(np.float64).eps * size / step
    trunc = step**2 / 6 * 2 * size * (shape[0] * G[kind] * shape[3] * m) ** 3
    pairs = [(x, g.grad_x), (w_x, g.grad_w_x), (w_h, g.grad_w_h), (b_x, g.grad_b_x),
             (b_h, g.grad_b_h), (h0, g.grad_h0)]
    if kind == "lstm":
        pairs.append((c0, g.grad_c0))
    for arr, grad in pairs:
        fd = np.zeros_like(arr)
        flat, out = arr.reshape(-1), fd.reshape(-1)
        for i in range(flat.size):
            old = flat[i]
            flat[i] = old + step
            hi = loss()
            flat[i] = old - step
            lo = loss()
            flat[i] = old
            out[i] = (hi - lo) / (2 * step)
        np.testing.assert_allclose(grad, fd, rtol=0, atol=rounding + trunc)


# ----------------------------------------------------------- threads and memory order
def _same_bits(a, b):
    return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(
        np.ascontiguousarray(a).view(np.uint8), np.ascontiguousarray(b).view(np.uint8))


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("shape", [(12, 45, 30, 70), (3, 1, 1, 1), (5, 130, 7, 9)],
                         ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("kind", KINDS)
def test_bitwise_identical_for_any_thread_count(kind, shape, dtype):
    # (12, 45, 30, 70): 3 batch tiles, 4 projection tiles, several bias blocks;
    # (5, 130, 7, 9): 8 batch tiles
    data = _data(kind, shape, dtype, seed=7)
    runs = [_run(kind, *data, n_threads=n) for n in THREADS]
    f0, g0 = runs[0]
    for f, g in runs[1:]:
        for name in ("h", "c", "gates", "pre", "s"):
            a, b = getattr(f, name), getattr(f0, name)
            assert (a is None and b is None) or _same_bits(a, b), name
        for name in FIELDS + ("grad_c", "grad_c0"):
            a, b = getattr(g, name), getattr(g0, name)
            assert (a is None and b is None) or _same_bits(a, b), name


def _layout(arr, order):
    if arr is None:
        return None
    if order == "F":
        return np.asfortranarray(arr)
    return np.repeat(arr[..., None], 2, axis=-1)[..., 0]  # a view with non-unit strides


@pytest.mark.parametrize("order", ["F", "strided"])
@pytest.mark.parametrize("kind", KINDS)
def test_any_memory_order_gives_the_same_bits(kind, order):
    data = _data(kind, (5, 19, 7, 11), np.float32, seed=9)
    f, g = _run(kind, *data)
    lay = [_layout(a, order) for a in data]
    assert not lay[0].flags.c_contiguous
    if kind == "lstm":
        fo = gk.lstm_forward(*lay[:7], n_threads=2)
        go = gk.lstm_backward(lay[0], lay[1], lay[2], _layout(f.h, order),
                              _layout(f.c, order), _layout(f.gates, order), lay[7], lay[5],
                              lay[6], n_threads=2)
    else:
        fo = gk.gru_forward(*lay[:6], n_threads=2)
        go = gk.gru_backward(lay[0], lay[1], lay[2], _layout(f.h, order),
                             _layout(f.gates, order), _layout(f.s, order), lay[7], lay[5],
                             n_threads=2)
    assert _same_bits(fo.h, f.h) and _same_bits(fo.gates, f.gates) and fo.h.flags.c_contiguous
    for name in FIELDS:
        assert _same_bits(getattr(go, name), getattr(g, name)), name


def test_batch_rows_never_mix_and_nan_propagates():
    x, w_x, w_h, b_x, b_h, h0, c0, go = _data("lstm", (4, 40, 3, 5), np.float64, seed=11)
    x[1, 7, 0] = np.nan
    f = gk.lstm_forward(x, w_x, w_h, b_x, b_h, h0, c0, n_threads=2)
    assert np.isnan(f.h[1:, 7]).all() and np.isfinite(f.h[0]).all()
    assert np.isfinite(np.delete(f.h, 7, axis=1)).all()


def test_batch_tiles_depend_on_the_batch_only():
    assert [gk.batch_tile(b) for b in (1, 5, 16, 17, 32, 128, 129, 256, 10**6)] == \
        [1, 5, 16, 16, 16, 16, 17, 32, 32]


# ---------------------------------------------------------------------- bad input
X, WX, WH = np.ones((3, 2, 4)), np.ones((4, 20)), np.ones((5, 20))  # an LSTM, H = 5
S3 = np.ones((3, 2, 5))


def _lstm(x=X, w_x=WX, w_h=WH, *args, **kw):
    return lambda: gk.lstm_forward(x, w_x, w_h, *args, **kw)


def _lstm_back(h=S3, c=S3, gates=None, go=S3, h0=None, c0=None, **kw):
    gates = np.ones((3, 2, 20)) if gates is None else gates
    return lambda: gk.lstm_backward(X, WX, WH, h, c, gates, go, h0, c0, **kw)


def _gru_back(s=S3, gates=None, **kw):
    gates = np.ones((3, 2, 15)) if gates is None else gates
    return lambda: gk.gru_backward(X, np.ones((4, 15)), np.ones((5, 15)), S3, gates, s, S3,
                                   **kw)


BAD = [  # (call, error type, a phrase the message must hold)
    (_lstm([[[1.0]]]), TypeError, "x must be a numpy array"),
    (_lstm(X.astype(int)), TypeError, "x must have dtype float32 or float64"),
    (_lstm(X.astype(np.float16)), TypeError, "x must have dtype"),
    (_lstm(np.ones((3, 4))), ValueError, "x must be 3-D"),
    (_lstm(np.ones((0, 2, 4))), ValueError, "x must have every dimension >= 1"),
    (_lstm(w_h=np.ones((5, 15))), ValueError, r"w_h must have shape \(H, 4 H\)"),
    (_lstm(w_h=np.ones((5, 20, 1))), ValueError, "w_h must be 2-D"),
    (_lstm(w_x=np.ones((3, 20))), ValueError, r"w_x must have shape \(F, 4 H\) = \(4, 20\)"),
    (_lstm(w_x=np.ones((4, 20), np.float32)), TypeError, "w_x has dtype float32"),
    (_lstm(X, WX, WH, np.ones(19)), ValueError, r"b_x must have shape \(G H\) = \(20,\)"),
    (_lstm(X, WX, WH, None, np.ones((20, 1))), ValueError, "b_h must be 1-D"),
    (_lstm(X, WX, WH, None, np.ones(20, np.float32)), TypeError, "b_h has dtype float32"),
    (_lstm(X, WX, WH, None, None, np.ones((3, 5))), ValueError, r"h0 must have shape \(B, H\)"),
    (_lstm(X, WX, WH, None, None, None, np.ones((2, 4))), ValueError, "c0 must have shape"),
    (_lstm(n_threads=0), ValueError, "n_threads"),
    (_lstm(n_threads=2.0), TypeError, "n_threads"),
    (_lstm(n_threads=True), TypeError, "n_threads"),
    (lambda: gk.gru_forward(X, WX, WH), ValueError, r"w_h must have shape \(H, 3 H\)"),
    (_lstm_back(h=np.ones((3, 2, 4))), ValueError, r"h must have shape \(T, B, H\)"),
    (_lstm_back(c=np.ones((2, 2, 5))), ValueError, "c must have shape"),
    (_lstm_back(gates=np.ones((3, 2, 15))), ValueError, r"gates must have shape \(T, B, G H\)"),
    (_lstm_back(go=np.ones((2, 5))), ValueError, "grad_out must be 3-D"),
    (_lstm_back(go=np.ones((3, 2, 5), np.float32)), TypeError, "grad_out has dtype float32"),
    (_lstm_back(c0=np.ones((2, 4))), ValueError, "c0 must have shape"),
    (_lstm_back(param_grads=1), TypeError, "param_grads must be a bool"),
    (_lstm_back(n_threads=-1), ValueError, "n_threads"),
    (_gru_back(s=np.ones((3, 2, 4))), ValueError, "s must have shape"),
    (_gru_back(gates=np.ones((3, 2, 20))), ValueError, "gates must have shape"),
]


@pytest.mark.parametrize("call, error, phrase", BAD,
                         ids=[f"{i}-{b[2][:20]}" for i, b in enumerate(BAD)])
def test_bad_arguments_are_named(call, error, phrase):
    with pytest.raises(error, match=phrase):
        call()


def _private_args(kind):
    """Valid arguments of varprop._gated.forward and backward (T, B, F, H = 3, 4, 2, 5)."""
    lstm = kind == "lstm"
    gh = G[kind] * 5
    x, w_x, w_h, b_x, b_h, h0, c0, go = _data(kind, (3, 4, 2, 5), np.float64, seed=13)
    z = lambda *s: np.zeros(s)  # noqa: E731
    c0 = c0 if lstm else z(0, 5)
    fwd = dict(cell=0 if lstm else 1, x=x, w_x=w_x, w_h=w_h, b_x=b_x, b_h=b_h, h0=h0, c0=c0,
               pre=z(3, 4, gh), gates=z(3, 4, gh), h=z(3, 4, 5), c=z(3 if lstm else 0, 4, 5),
               s=z(0 if lstm else 3, 4, 5), tiles=(2, 5, 3), n_threads=2)
    bwd = dict(cell=fwd["cell"], x=x, w_x=w_x, w_h=w_h, h0=h0, c0=c0, gates=z(3, 4, gh),
               h=z(3, 4, 5), c=fwd["c"].copy(), s=fwd["s"].copy(), grad_out=go,
               grad_h=z(3, 4, 5), grad_c=z(3 if lstm else 0, 4, 5), grad_a=z(3, 4, gh),
               grad_rec=z(0 if lstm else 3, 4, gh), grad_h0=z(4, 5),
               grad_c0=z(4 if lstm else 0, 5), grad_x=z(3, 4, 2), grad_w_x=z(2, gh),
               grad_w_h=z(5, gh), partials_x=z(3, gh), partials_h=z(0 if lstm else 3, gh),
               tiles=(3, 5, 1, 1, 2, 2, 3, 5), n_threads=2)
    return fwd, bwd


def _private_bad():
    out = []
    for kind in KINDS:
        for change in (dict(pre=np.zeros((3, 4, 4))), dict(h=np.zeros((3, 5, 5))),
                       dict(w_x=np.zeros((3, 5))), dict(w_h=np.zeros((5, 4))),
                       dict(b_x=np.zeros(4)), dict(h0=np.zeros((4, 4))),
                       dict(x=np.zeros((0, 4, 2))), dict(cell=2), dict(cell=-1),
                       dict(gates=np.zeros((3, 4, 20), np.float32)),
                       dict(tiles=(0, 5, 3)), dict(tiles=(2, 5, 2**31)), dict(tiles=(2, 5)),
                       dict(n_threads=0), dict(gates="pre"),
                       dict(c=np.zeros((3, 4, 5)) if kind == "gru" else np.zeros((0, 4, 5))),
                       dict(c0=np.zeros((4, 5)) if kind == "gru" else np.zeros((3, 5)))):
            out.append((kind, "forward", change))
        for change in (dict(grad_x=np.zeros((3, 4, 3))), dict(grad_w_h=np.zeros((5, 4))),
                       dict(partials_x=np.zeros((2, G[kind] * 5))),
                       dict(partials_x=np.zeros((3, G[kind] * 5), np.float32)),
                       dict(grad_h0=np.zeros((4, 5), np.float32)), dict(grad_a="gates"),
                       dict(grad_h="grad_out"),
                       dict(grad_out=np.zeros((3, 4, 6))), dict(grad_x=np.zeros((0, 4, 2))),
                       dict(tiles=(3, 5, 1, 1, 2, 2, 3, 0)),
                       dict(grad_rec=np.zeros((3, 4, 20)) if kind == "lstm"
                            else np.zeros((0, 4, 15)))):
            out.append((kind, "backward", change))
    return out


@pytest.mark.parametrize("kind, which, change", _private_bad(),
                         ids=[f"{k}-{w}-{i}" for i, (k, w, _) in enumerate(_private_bad())])
def test_extension_checks_every_buffer(kind, which, change):
    """The Cython entry points refuse what would take the C loops out of bounds."""
    ext = gk._extension()
    fwd, bwd = _private_args(kind)
    args = dict(fwd if which == "forward" else bwd, **change)
    for key, value in change.items():
        if isinstance(value, str):  # the output aliases an input
            args[key] = args[value]
    with pytest.raises((TypeError, ValueError)):
        getattr(ext, which)(**args)


@pytest.mark.parametrize("kind", KINDS)
def test_extension_refuses_read_only_outputs_and_accepts_valid_calls(kind):
    ext = gk._extension()
    fwd, bwd = _private_args(kind)
    ext.forward(**fwd)
    ext.backward(**bwd)
    fwd["h"].flags.writeable = False
    with pytest.raises(ValueError):
        ext.forward(**fwd)


def test_import_without_the_extension_raises_on_use(monkeypatch):
    monkeypatch.setitem(sys.modules, "varprop._gated", None)  # import of it fails
    monkeypatch.setattr(gk, "_gated_module", None)
    monkeypatch.delattr(sys.modules["varprop"], "_gated", raising=False)
    assert gk.available() is False
    with pytest.raises(ExtensionMissingError, match=r"varprop\._gated"):
        gk.lstm_forward(X, WX, WH)
    with pytest.raises(ExtensionMissingError, match="gated-cell kernels"):
        gk.gru_backward(X, np.ones((4, 15)), np.ones((5, 15)), S3, np.ones((3, 2, 15)), S3, S3)
    # the measurement falls back to the numpy twin, and says so
    from varprop.recurrent.gated_measure import measure_gated
    prof = measure_gated(keras_gru(3, 4), 3, batch=4, seeds=1)
    assert prof.meta["backend"] == "numpy" and prof.meta["n_threads"] is None
    with pytest.raises(ExtensionMissingError):
        measure_gated(keras_gru(3, 4), 3, batch=4, seeds=1, backend="kernels")


# ------------------------------------------------------------------- measure_gated
def _measure_draws(cell, steps, batch, seed, dtype, loss):
    """What measure_gated draws for one seed: arrays, inputs, loss gradient."""
    from varprop._empirical_run import stream
    from varprop.recurrent.measure import draw_inputs, loss_gradient
    p = draw_gated_parameters(cell, seed, dtype)
    x = draw_inputs(cell, steps, batch, "gaussian", 1.0, stream(seed, 1), dtype)
    go = loss_gradient(np.zeros((steps, batch, cell.units), dtype), loss, seed)
    return p, x, go


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("make", [keras_lstm, torch_gru], ids=["keras_lstm", "torch_gru"])
def test_measure_gated_on_the_kernels_agrees_with_the_numpy_path(make, dtype):
    from varprop.recurrent.gated_measure import measure_gated
    cell, steps, batch, seed = make(6, 8), 5, 9, 2
    kw = dict(batch=batch, seeds=[seed], dtype=dtype, loss="sequence")
    fast = measure_gated(cell, steps, backend="kernels", n_threads=2, **kw)
    slow = measure_gated(cell, steps, backend="numpy", **kw)
    assert fast.meta["backend"] == "kernels" and fast.meta["n_threads"] == 2
    assert slow.meta["backend"] == "numpy"
    # the numpy path is the plain run of its draws, bit for bit (values of earlier
    # versions): the statistics recomputed here from gated_forward / gated_backward
    p, x, go = _measure_draws(cell, steps, batch, seed, dtype, "sequence")
    fwd = gated_forward(cell, x, p)
    grad = gated_backward(cell, x, p, fwd, go, param_grads=False).grad_h
    z = fwd.c if cell.kind == "lstm" else fwd.cand_pre
    flat = lambda a: a.reshape(steps, -1).astype(np.float64)  # noqa: E731
    assert slow.seed_values["z_var"][0] == flat(z).var(axis=1).tolist()
    assert slow.seed_values["a_var"][0] == flat(fwd.h).var(axis=1).tolist()
    assert slow.seed_values["grad_var"][0] == (flat(grad) ** 2).mean(axis=1).tolist()
    # kernels against numpy: every element of either path within u E of the exact one
    # (tests/_gated_reference.py), so per step D = max 2 u E bounds the elements'
    # difference, and for a pooled variance |Var a' - Var a| <= 2 sqrt(Var a) D + D^2
    # (Cauchy-Schwarz; Var d <= D^2), for a mean |diff| <= D, for a mean square the same
    # as the variance with E[g^2] for Var
    ref = reference(cell.kind, x, *canonical(cell, p), None, None, go)
    u2 = 2 * unit_roundoff(dtype)
    checks = {"z": ("c" if cell.kind == "lstm" else "cand"), "a": "h"}
    for field, key in checks.items():
        d = u2 * ref[key].e.reshape(steps, -1).max(axis=1)
        var = np.asarray(slow.seed_values[f"{field}_var"][0])
        got = np.asarray(fast.seed_values[f"{field}_var"][0])
        assert np.all(np.abs(got - var) <= 2 * np.sqrt(var) * d + d * d), field
        mean_fast, mean_slow = fast.column(f"{field}_mean"), slow.column(f"{field}_mean")
        assert np.all(np.abs(mean_fast - mean_slow) <= d), field
    d = u2 * ref["grad_h"].e.reshape(steps, -1).max(axis=1)
    gv = np.asarray(slow.seed_values["grad_var"][0])
    got = np.asarray(fast.seed_values["grad_var"][0])
    assert np.all(np.abs(got - gv) <= 2 * np.sqrt(gv) * d + d * d)


def test_measure_gated_is_bitwise_the_same_for_any_thread_count():
    from varprop.recurrent.gated_measure import measure_gated
    runs = [measure_gated(torch_gru(5, 40), 6, batch=40, seeds=2, n_threads=n)
            for n in THREADS]
    for r in runs[1:]:
        for name in ("z_var", "a_var", "grad_var", "z_mean", "a_mean"):
            assert np.array_equal(r.column(name), runs[0].column(name)), name


def test_measure_gated_backend_argument():
    from varprop.recurrent.gated_measure import measure_gated
    with pytest.raises(ValueError, match="backend must be one of"):
        measure_gated(keras_lstm(3, 4), 2, batch=2, seeds=1, backend="torch")
    with pytest.raises(ValueError, match="n_threads"):
        measure_gated(keras_lstm(3, 4), 2, batch=2, seeds=1, n_threads=0)
    auto = measure_gated(keras_lstm(3, 4), 2, batch=2, seeds=1)
    assert auto.meta["backend"] == "kernels"  # this build has the extension


def test_a_tree_without_any_compiled_file_measures_on_numpy(tmp_path):
    """A copy of the package with no compiled extension at all (a checkout never built):
    measure_gated runs on the numpy twin, the kernels say how to build."""
    import varprop
    src = Path(varprop.__file__).resolve().parent
    shutil.copytree(src, tmp_path / "varprop",
                    ignore=shutil.ignore_patterns("*.so", "*.pyd", "*.c", "__pycache__"))
    code = ("import sys; sys.meta_path[:] = [f for f in sys.meta_path if '__editable__' "
            "not in str(getattr(f, '__module__', ''))]\n"
            "from varprop.recurrent.gated import keras_lstm, measure_gated\n"
            "from varprop import gated_kernels as gk\n"
            "p = measure_gated(keras_lstm(3, 4), 3, batch=4, seeds=1)\n"
            "print(p.meta['backend'], gk.available(), gk.__file__)\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    backend, avail, path = out.stdout.split()
    assert (backend, avail) == ("numpy", "False")
    assert Path(path).resolve().is_relative_to(tmp_path.resolve())
