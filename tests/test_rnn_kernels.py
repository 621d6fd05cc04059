"""The recurrent kernels (varprop.rnn_kernels) against their plain-numpy twins
(varprop._reference_rnn) and finite differences; bitwise independence of the thread
count; any memory order; bad arguments named in the error. The PyTorch cross-checks are
in test_rnn_kernels_torch.py.

Tolerances are derived, never tuned. A k-term dot product in precision u is off by at
most gamma_k = k u / (1 - k u) times the sum of its absolute terms (Higham); the
activation and its derivative are computed in double and rounded once (eps relative to
max(|phi'|, 1)). Each step is checked on its own against float64 arithmetic fed the
kernel's own previous state (a local bound), and the whole sequence against the twin
with that local bound carried through time: an error e in h_{t-1} is at most
e |W_h| in z_t and L e |W_h| in h_t, L = max |phi'| (first order in u)."""

import sys

import numpy as np
import pytest

from varprop import _reference_rnn as ref
from varprop import rnn_kernels as rk
from varprop.activations import ACTIVATION_NAMES, Activation, get_activation
from varprop.kernels import ExtensionMissingError

DTYPES = [np.float32, np.float64]
ACTIVATIONS = ["tanh", "relu", "identity", "sigmoid"]
THREADS = [1, 2, 3]
SHAPES = [  # (T, B, F, H)
    (1, 1, 1, 1), (1, 3, 2, 4), (4, 1, 3, 5), (5, 2, 1, 3), (3, 4, 6, 1),
    (7, 5, 9, 13), (6, 37, 11, 17),  # B = 37: five batch tiles, the last one short
    (3, 70, 20, 33),
]


def _eps(dtype):
    return float(np.finfo(dtype).eps)


def _gamma(k, dtype):
    u = _eps(dtype) / 2
    return k * u / (1 - k * u)


def _lipschitz(act):
    """max |phi'| over a fine grid (the activations' slopes are bounded and smooth)."""
    return float(np.max(np.abs(act.derivative(np.linspace(-60, 60, 24001)))))


def _data(shape, dtype, seed=0):
    """x, W_x, W_h (scaled to a spectral radius below 1: stable states), b, h0."""
    steps, batch, n_in, hidden = shape
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((steps, batch, n_in)).astype(dtype)
    w_x = (rng.standard_normal((n_in, hidden)) / np.sqrt(n_in)).astype(dtype)
    w_h = (0.8 * rng.standard_normal((hidden, hidden)) / np.sqrt(hidden)).astype(dtype)
    b = (0.3 * rng.standard_normal(hidden)).astype(dtype)
    h0 = (0.5 * rng.standard_normal((batch, hidden))).astype(dtype)
    return x, w_x, w_h, b, h0


def _f64(*arrays):
    return [None if a is None else np.asarray(a, np.float64) for a in arrays]


def _layout(arr, order):
    if order == "F":
        return np.asfortranarray(arr)
    if order == "strided":  # a view with non-unit strides
        return np.repeat(arr, 2, axis=-1)[..., ::2]
    return arr


def _same_bits(a, b):
    return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(
        np.ascontiguousarray(a).view(np.uint8), np.ascontiguousarray(b).view(np.uint8))


# ------------------------------------------------------------------------ bounds
def forward_bound(x, w_x, w_h, b, h0, h, act, dtype, sides=2, act_ulps=2, adds=2):
    """Bounds on |z - z_twin| and |h - h_twin| per element, given the kernel's h: each
    side's step rounding gamma_{F+H+adds} |x_t W_x + b + h_{t-1} W_h| (in absolute
    terms: two dot products and ``adds`` additions), plus the carried error; each side's
    activation act_ulps eps relative."""
    steps, batch, n_in = x.shape
    hidden = w_h.shape[0]
    ax, awx, awh, ab, prev, ah = (np.abs(a) for a in _f64(
        x, w_x, w_h, np.zeros(hidden) if b is None else b,
        np.zeros((batch, hidden)) if h0 is None else h0, h))
    g, eps, lip = _gamma(n_in + hidden + adds, dtype), _eps(dtype), _lipschitz(act)
    e_h = np.zeros((batch, hidden))
    e_z_all, e_h_all = np.zeros(ah.shape), np.zeros(ah.shape)
    for t in range(steps):
        scale = ax[t] @ awx + ab + prev @ awh
        e_z = sides * g * scale + e_h @ awh
        e_h = lip * e_z + act_ulps * eps * ah[t]
        e_z_all[t], e_h_all[t], prev = e_z, e_h, ah[t]
    return e_z_all, e_h_all


def backward_bound(x, w_x, w_h, z, h, grad_h, h0, grad_z, act, dtype, sides=2,
                   slope_err=None):
    """Bounds on each gradient's difference from the twin's, given the same z, h and the
    kernel's grad_z: per step gamma_{H+1} |grad_h_t + dz_{t+1} W_h^T| times |phi'|, one
    rounding of phi' and of the product, and the error carried from dz_{t+1}; then
    gamma_k of each GEMM over its k terms plus the carried errors of dZ. ``slope_err``
    (T, B, H): a bound on how far the other side's phi' is off ours (the other side
    evaluated it at its own z), times the incoming gradient, carried the same way."""
    ax, awx, awh, ah0, ah, ag, adz = (np.abs(a) for a in _f64(
        x, w_x, w_h, np.zeros(grad_z.shape[1:]) if h0 is None else h0, h, grad_h, grad_z))
    steps, batch, n_in = x.shape
    hidden, rows, eps = w_h.shape[0], x.shape[0] * x.shape[1], _eps(dtype)
    slope = np.abs(act.derivative(np.asarray(z, np.float64)))
    err = np.zeros(adz.shape)
    for t in range(steps - 1, -1, -1):
        later = adz[t + 1] @ awh.T if t + 1 < steps else 0.0
        carried = err[t + 1] @ awh.T if t + 1 < steps else 0.0
        incoming = ag[t] + later
        err[t] = slope[t] * (sides * _gamma(hidden + 1, dtype) * incoming + carried) \
            + sides * eps * (slope[t] + 1) * incoming
        if slope_err is not None:
            err[t] += slope_err[t] * (incoming + carried)
    gk = sides * _gamma(rows, dtype)
    hprev = np.concatenate([ah0[None], ah[:-1]])
    flat = lambda a: a.reshape(rows, -1)  # noqa: E731
    return {
        "grad_z": err,
        "grad_x": sides * _gamma(hidden, dtype) * adz @ awx.T + err @ awx.T,
        "grad_h0": sides * _gamma(hidden, dtype) * adz[0] @ awh.T + err[0] @ awh.T,
        "grad_w_x": gk * flat(ax).T @ flat(adz) + flat(ax).T @ flat(err),
        "grad_w_h": gk * flat(hprev).T @ flat(adz) + flat(hprev).T @ flat(err),
        "grad_b": gk * flat(adz).sum(0) + flat(err).sum(0),
    }


def _assert_within(got, want, tol, context):
    assert got.shape == want.shape, context
    diff = np.abs(np.asarray(got, np.float64) - np.asarray(want, np.float64))
    assert np.all(diff <= tol + 1e-300), (context, float(np.max(diff - tol)))


# ------------------------------------------------------------------- against the twin
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("name", ACTIVATIONS)
def test_forward_and_backward_match_numpy_twin(name, shape, dtype):
    act = get_activation(name)
    x, w_x, w_h, b, h0 = _data(shape, dtype)
    grad_h = np.random.default_rng(1).standard_normal((shape[0], shape[1], shape[3]))
    grad_h[:-1:2] = 0.0  # steps without a loss
    grad_h = grad_h.astype(dtype)
    for bias, state in ((b, h0), (None, None)):
        got = rk.rnn_forward(x, w_x, w_h, bias, state, name, n_threads=2)
        assert got.z.dtype == dtype and got.h.dtype == dtype and got.h.flags.c_contiguous
        # local: each step from the kernel's own previous state, in float64
        prev = np.zeros(h0.shape) if state is None else np.float64(state)
        z64, h64 = _f64(got.z, got.h)
        for t in range(shape[0]):
            exact = np.float64(x[t]) @ np.float64(w_x) + prev @ np.float64(w_h)
            exact += 0 if bias is None else np.float64(bias)
            scale = np.abs(np.float64(x[t])) @ np.abs(np.float64(w_x)) + np.abs(prev) @ \
                np.abs(np.float64(w_h)) + (0 if bias is None else np.abs(np.float64(bias)))
            _assert_within(z64[t], exact, _gamma(shape[2] + shape[3] + 2, dtype) * scale, t)
            _assert_within(h64[t], act(z64[t]), 2 * _eps(dtype) * np.abs(act(z64[t])), t)
            prev = h64[t]
        # global: the twin in float64, the local bound carried through time
        want = ref.rnn_forward(*_f64(x, w_x, w_h, bias, state), activation=name)
        e_z, e_h = forward_bound(x, w_x, w_h, bias, state, got.h, act, dtype)
        _assert_within(got.z, want.z, e_z, "z")
        _assert_within(got.h, want.h, e_h, "h")

        g = rk.rnn_backward(x, w_x, w_h, got.z, got.h, grad_h, state, name, n_threads=2)
        r = ref.rnn_backward(*_f64(x, w_x, w_h, got.z, got.h, grad_h, state),
                             activation=name)
        bounds = backward_bound(x, w_x, w_h, got.z, got.h, grad_h, state, g.grad_z, act,
                                dtype)
        for field, tol in bounds.items():
            assert getattr(g, field).dtype == dtype, field
            _assert_within(getattr(g, field), getattr(r, field), tol, field)


@pytest.mark.parametrize("name", ACTIVATION_NAMES)
def test_every_registry_activation_runs_the_kernels(name):
    act = get_activation(name)
    shape = (4, 9, 5, 6)
    x, w_x, w_h, b, h0 = _data(shape, np.float64, seed=2)
    got = rk.rnn_forward(x, w_x, w_h, b, h0, act)
    want = ref.rnn_forward(x, w_x, w_h, b, h0, name)
    _, e_h = forward_bound(x, w_x, w_h, b, h0, got.h, act, np.float64)
    _assert_within(got.h, want.h, e_h, name)
    grad_h = np.random.default_rng(3).standard_normal(got.h.shape)
    g = rk.rnn_backward(x, w_x, w_h, got.z, got.h, grad_h, h0, name)
    r = ref.rnn_backward(x, w_x, w_h, got.z, got.h, grad_h, h0, name)
    bounds = backward_bound(x, w_x, w_h, got.z, got.h, grad_h, h0, g.grad_z, act,
                            np.float64)
    for field, tol in bounds.items():
        _assert_within(getattr(g, field), getattr(r, field), tol, field)


def test_twin_returns_the_input_dtype_and_the_result_types():
    x, w_x, w_h, b, h0 = _data((3, 2, 4, 5), np.float32)
    f = ref.rnn_forward(x, w_x, w_h, b, h0)
    g = ref.rnn_backward(x, w_x, w_h, f.z, f.h, np.ones_like(f.h), h0)
    assert isinstance(f, rk.RNNForward) and isinstance(g, rk.RNNGradients)
    assert all(a.dtype == np.float32 for a in (f.z, f.h, g.grad_x, g.grad_h0, g.grad_w_x,
                                                g.grad_w_h, g.grad_b, g.grad_z))


# ----------------------------------------------------------------- finite differences
def _fd(f, arr, h):
    g = np.zeros_like(arr)
    flat, gf = arr.reshape(-1), g.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + h
        up = f()
        flat[i] = old - h
        down = f()
        flat[i] = old
        gf[i] = (up - down) / (2 * h)
    return g


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_backward_matches_finite_differences_float64(name):
    shape = (4, 3, 2, 3)
    x, w_x, w_h, b, h0 = _data(shape, np.float64, seed=5)
    up = np.random.default_rng(6).standard_normal((4, 3, 3))

    def loss():  # one thread: ~100 small calls, each a parallel region otherwise
        return float(np.sum(up * rk.rnn_forward(x, w_x, w_h, b, h0, name, n_threads=1).h))

    f = rk.rnn_forward(x, w_x, w_h, b, h0, name)
    g = rk.rnn_backward(x, w_x, w_h, f.z, f.h, up, h0, name)
    step = 1e-6
    # central differences: rounding eps sum|up h| / step; truncation step^2 / 6 |f'''|,
    # with |phi'''| <= 2 and each of the three derivatives of a T-step state through
    # at most T H products of entries up to m
    m = max(1.0, *(float(np.abs(a).max()) for a in (x, w_x, w_h, b, h0)))
    size = np.sum(np.abs(up))
    rounding = np.finfo(np.float64).eps * size * max(1.0, np.abs(f.h).max()) / step
    trunc = step**2 / 6 * 2 * size * (shape[0] * shape[3] * m) ** 3
    pairs = ((x, g.grad_x), (w_x, g.grad_w_x), (w_h, g.grad_w_h), (b, g.grad_b),
             (h0, g.grad_h0))
    for arr, grad in pairs:
        np.testing.assert_allclose(grad, _fd(loss, arr, step), rtol=0, atol=rounding + trunc)
    # grad_z is dL/dz_t: perturbing z_t's input (the bias of one step) moves it
    assert np.allclose(g.grad_z.sum(axis=(0, 1)), g.grad_b, rtol=1e-12, atol=1e-12)


# ----------------------------------------------------------- threads and memory order
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("shape", [(12, 45, 30, 70), (3, 1, 1, 1), (5, 130, 7, 9)],
                         ids=lambda s: "x".join(map(str, s)))
def test_bitwise_identical_for_any_thread_count(shape, dtype):
    # (12, 45, 30, 70): 6 batch tiles, 3 projection row tiles, 2 bias blocks
    x, w_x, w_h, b, h0 = _data(shape, dtype, seed=7)
    grad_h = np.random.default_rng(8).standard_normal((*shape[:2], shape[3])).astype(dtype)
    runs, grads = [], []
    for threads in THREADS:
        f = rk.rnn_forward(x, w_x, w_h, b, h0, "tanh", n_threads=threads)
        runs.append(f)
        grads.append(rk.rnn_backward(x, w_x, w_h, f.z, f.h, grad_h, h0, "tanh",
                                     n_threads=threads))
    for f in runs[1:]:
        assert _same_bits(f.z, runs[0].z) and _same_bits(f.h, runs[0].h)
    for g in grads[1:]:
        for field in ("grad_x", "grad_h0", "grad_w_x", "grad_w_h", "grad_b", "grad_z"):
            assert _same_bits(getattr(g, field), getattr(grads[0], field)), field


@pytest.mark.parametrize("order", ["F", "strided"])
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_any_memory_order_gives_the_same_bits(order, dtype):
    x, w_x, w_h, b, h0 = _data((5, 19, 7, 11), dtype, seed=9)
    grad_h = np.random.default_rng(10).standard_normal((5, 19, 11)).astype(dtype)
    c = rk.rnn_forward(x, w_x, w_h, b, h0, "sigmoid", n_threads=2)
    lay = [_layout(a, order) for a in (x, w_x, w_h, b[:, None], h0)]
    assert not lay[0].flags.c_contiguous
    o = rk.rnn_forward(lay[0], lay[1], lay[2], lay[3][:, 0], lay[4], "sigmoid", n_threads=2)
    assert _same_bits(c.z, o.z) and _same_bits(c.h, o.h) and o.h.flags.c_contiguous
    gc = rk.rnn_backward(x, w_x, w_h, c.z, c.h, grad_h, h0, "sigmoid", n_threads=2)
    go = rk.rnn_backward(lay[0], lay[1], lay[2], _layout(c.z, order), _layout(c.h, order),
                         _layout(grad_h, order), lay[4], "sigmoid", n_threads=2)
    for field in ("grad_x", "grad_h0", "grad_w_x", "grad_w_h", "grad_b", "grad_z"):
        assert _same_bits(getattr(gc, field), getattr(go, field)), field


def test_batch_rows_never_mix_and_nan_propagates():
    x, w_x, w_h, b, h0 = _data((4, 20, 3, 5), np.float64, seed=11)
    x[1, 7, 0] = np.nan
    f = rk.rnn_forward(x, w_x, w_h, b, h0, "tanh", n_threads=2)
    assert np.isnan(f.h[1:, 7]).all() and np.isfinite(f.h[0]).all()
    assert np.isfinite(np.delete(f.h, 7, axis=1)).all()


def test_batch_tiles_depend_on_the_batch_only():
    assert [rk.batch_tile(b) for b in (1, 5, 8, 9, 32, 64, 100, 128, 129, 10**6)] == \
        [1, 5, 8, 8, 8, 8, 13, 16, 16, 16]


def test_activation_objects_and_identity_alias():
    x, w_x, w_h, b, h0 = _data((3, 4, 2, 3), np.float64, seed=12)
    a = rk.rnn_forward(x, w_x, w_h, b, h0, Activation("leaky_relu", negative_slope=0.2))
    want = ref.rnn_forward(x, w_x, w_h, b, h0, Activation("leaky_relu", negative_slope=0.2))
    np.testing.assert_allclose(a.h, want.h, rtol=1e-13, atol=1e-15)
    ident = rk.rnn_forward(x, w_x, w_h, b, h0, "identity")
    assert _same_bits(ident.z, ident.h)


# ---------------------------------------------------------------------- bad input
X, WX, WH = np.ones((3, 2, 4)), np.ones((4, 5)), np.ones((5, 5))


def _fwd(x=X, w_x=WX, w_h=WH, *args, **kw):
    return lambda: rk.rnn_forward(x, w_x, w_h, *args, **kw)


def _bwd(z=None, h=None, g=None, h0=None, **kw):
    s = np.ones((3, 2, 5))
    return lambda: rk.rnn_backward(X, WX, WH, s if z is None else z, s if h is None else h,
                                   s if g is None else g, h0, **kw)


BAD = [  # (call, error type, a phrase the message must hold)
    (_fwd([[[1.0]]]), TypeError, "x must be a numpy array"),
    (_fwd(X.astype(int)), TypeError, "x must have dtype float32 or float64"),
    (_fwd(X.astype(np.float16)), TypeError, "x must have dtype"),
    (_fwd(X.astype(complex)), TypeError, "x must have dtype"),
    (_fwd(np.ones((3, 4))), ValueError, "x must be 3-D"),
    (_fwd(np.ones((0, 2, 4))), ValueError, "x must have every dimension >= 1"),
    (_fwd(np.ones((3, 0, 4))), ValueError, "x must have every dimension >= 1"),
    (_fwd(np.ones((3, 2, 0)), np.ones((0, 5))), ValueError, "x must have every dimension"),
    (_fwd(w_x=np.ones((3, 5))), ValueError, r"w_x must have shape \(F, H\) = \(4, 5\)"),
    (_fwd(w_x=np.ones((4, 5), np.float32)), TypeError, "w_x has dtype float32"),
    (_fwd(w_h=np.ones((5, 4))), ValueError, "w_h must be square"),
    (_fwd(w_h=np.ones((5, 5, 1))), ValueError, "w_h must be 2-D"),
    (_fwd(w_h=np.ones((0, 0)), w_x=np.ones((4, 0))), ValueError, "w_h must have every"),
    (_fwd(X, WX, WH, np.ones(4)), ValueError, r"b must have shape \(H,\) = \(5,\)"),
    (_fwd(X, WX, WH, np.ones((5, 1))), ValueError, "b must be 1-D"),
    (_fwd(X, WX, WH, np.ones(5, np.float32)), TypeError, "b has dtype float32"),
    (_fwd(X, WX, WH, None, np.ones((3, 5))), ValueError, r"h0 must have shape \(B, H\)"),
    (_fwd(X, WX, WH, None, np.ones((2, 5), np.float32)), TypeError, "h0 has dtype"),
    (_fwd(X, WX, WH, None, None, "nope"), ValueError, "activation"),
    (_fwd(X, WX, WH, None, None, 3), TypeError, "activation"),
    (_fwd(n_threads=0), ValueError, "n_threads"),
    (_fwd(n_threads=2.0), TypeError, "n_threads"),
    (_fwd(n_threads=True), TypeError, "n_threads"),
    (_bwd(z=np.ones((3, 2, 4))), ValueError, r"z must have shape \(T, B, H\) = \(3, 2, 5\)"),
    (_bwd(h=np.ones((2, 2, 5))), ValueError, "h must have shape"),
    (_bwd(g=np.ones((2, 5))), ValueError, "grad_h must be 3-D"),
    (_bwd(g=np.ones((3, 2, 5), np.float32)), TypeError, "grad_h has dtype float32"),
    (_bwd(h0=np.ones((2, 4))), ValueError, "h0 must have shape"),
    (_bwd(n_threads=-1), ValueError, "n_threads"),
    (_bwd(activation="tahn"), ValueError, "did you mean|Did you mean"),
]


@pytest.mark.parametrize("call, error, phrase", BAD,
                         ids=[f"{i}-{b[2][:20]}" for i, b in enumerate(BAD)])
def test_bad_arguments_are_named(call, error, phrase):
    with pytest.raises(error, match=phrase):
        call()


def _private_args(dtype=np.float64):
    """Valid arguments of varprop._rnn.forward and backward (T, B, F, H = 3, 4, 2, 5)."""
    x, w_x, w_h, b, h0 = _data((3, 4, 2, 5), dtype, seed=13)
    seq = lambda *s: np.zeros(s, dtype)  # noqa: E731
    fwd = dict(x=x, w_x=w_x, w_h=w_h, b=b, h0=h0, z=seq(3, 4, 5), h=seq(3, 4, 5), kind=7,
               p0=0.0, p1=0.0, tiles=(2, 5, 3), n_threads=2)
    bwd = dict(x=x, w_x=w_x, w_h=w_h, z=seq(3, 4, 5), h=seq(3, 4, 5), grad_h=seq(3, 4, 5),
               h0=h0, grad_z=seq(3, 4, 5), grad_x=seq(3, 4, 2), grad_h0=seq(4, 5),
               grad_w_x=seq(2, 5), grad_w_h=seq(5, 5), bias_partials=np.zeros((3, 5)),
               kind=7, p0=0.0, p1=0.0, tiles=(3, 5, 1, 1, 2, 2, 3, 5), n_threads=2)
    return fwd, bwd


def _private_bad():
    out = []
    for change in (dict(z=np.zeros((3, 4, 4))), dict(h=np.zeros((3, 5, 5))),
                   dict(w_x=np.zeros((3, 5))), dict(w_h=np.zeros((5, 4))),
                   dict(b=np.zeros(4)), dict(h0=np.zeros((4, 4))),
                   dict(x=np.zeros((0, 4, 2))), dict(z=np.zeros((5, 4, 3)).transpose(2, 1, 0)),
                   dict(z=np.zeros((3, 4, 5), np.float32)), dict(kind=12), dict(kind=-1),
                   dict(tiles=(0, 5, 3)), dict(tiles=(2, 5, 2**31)), dict(tiles=(2, 5)),
                   dict(n_threads=0), dict(h="z")):
        out.append(("forward", change))
    for change in (dict(grad_x=np.zeros((3, 4, 3))), dict(grad_w_h=np.zeros((5, 4))),
                   dict(bias_partials=np.zeros((2, 5))),
                   dict(bias_partials=np.zeros((3, 5), np.float32)),
                   dict(grad_h0=np.zeros((4, 5), np.float32)), dict(grad_z="x"),
                   dict(grad_h=np.zeros((3, 4, 6))), dict(tiles=(3, 5, 1, 1, 2, 2, 3, 0))):
        out.append(("backward", change))
    return out


@pytest.mark.parametrize("which, change", _private_bad(),
                         ids=[f"{w}-{i}" for i, (w, _) in enumerate(_private_bad())])
def test_extension_checks_every_buffer(which, change):
    """The Cython entry points refuse what would take the C loops out of bounds."""
    ext = rk._extension()
    fwd, bwd = _private_args()
    args = fwd if which == "forward" else bwd
    args = dict(args, **change)
    for key, value in change.items():
        if isinstance(value, str):  # the output aliases an input
            args[key] = args[value]
    with pytest.raises((TypeError, ValueError)):
        getattr(ext, which)(**args)


def test_extension_refuses_read_only_outputs_and_accepts_valid_calls():
    ext = rk._extension()
    fwd, bwd = _private_args()
    ext.forward(**fwd)
    ext.backward(**bwd)
    fwd["z"].flags.writeable = False
    with pytest.raises(ValueError):
        ext.forward(**fwd)


def test_import_without_the_extension_raises_on_use(monkeypatch):
    monkeypatch.setitem(sys.modules, "varprop._rnn", None)  # import of it fails
    monkeypatch.setattr(rk, "_rnn_module", None)
    monkeypatch.delattr(sys.modules["varprop"], "_rnn", raising=False)
    with pytest.raises(ExtensionMissingError, match=r"varprop\._rnn"):
        rk.rnn_forward(X, WX, WH)
    with pytest.raises(ExtensionMissingError, match="recurrent kernels"):
        rk.rnn_backward(X, WX, WH, np.ones((3, 2, 5)), np.ones((3, 2, 5)), np.ones((3, 2, 5)))
