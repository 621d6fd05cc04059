"""Convolution and pooling kernels (varprop.conv_kernels) against their plain-numpy twins
(varprop._reference_conv) and finite differences; bitwise independence of the thread
count; bounded chunks; bad arguments named in the error. The PyTorch cross-checks are in
test_conv_kernels_torch.py.

Tolerances are derived, never tuned: a k-term dot product in precision u is off by at
most gamma_k = k u / (1 - k u) times the sum of the absolute terms (Higham), and the
twin, given |x|, |w| and |b|, computes exactly that sum."""

import numpy as np
import pytest

from varprop import _reference_conv as ref
from varprop import conv_kernels as ck
from varprop.activations import get_activation

DTYPES = [np.float32, np.float64]
THREADS = [1, 2, 3, 7]
CASES = {  # (x shape, kernel, stride, padding, dilation, groups, c_out)
    "1d_same": ((3, 9, 4), (3,), 1, "same", 1, 1, 5),
    "1d_stride_dil_groups": ((2, 11, 6), (4,), 2, "valid", 2, 2, 4),
    "1d_pairs": ((2, 8, 3), (2,), 3, ((2, 1),), 1, 1, 2),
    "2d_same": ((3, 7, 8, 3), (3, 3), 1, "same", 1, 1, 6),
    "2d_same_stride2": ((2, 7, 6, 2), (3, 2), 2, "same", 1, 1, 3),
    "2d_pairs_dil_groups": ((2, 9, 7, 4), (3, 2), (2, 1), ((1, 2), (0, 1)), (1, 2), 2, 6),
    "2d_int_pad": ((2, 5, 6, 2), (2, 3), 1, 2, 1, 1, 3),
    "2d_per_dim_pad": ((2, 6, 5, 3), (3, 3), (1, 2), (1, 0), (2, 1), 1, 4),
    "depthwise_x2": ((2, 6, 6, 4), (3, 3), 1, 1, 1, 4, 8),
    "depthwise": ((2, 5, 7, 3), (2, 2), 2, "valid", 1, 3, 3),
    "1x1": ((3, 4, 5, 6), (1, 1), 1, "valid", 1, 1, 7),
    "1x1_stride": ((2, 5, 5, 3), (1, 1), 2, 0, 1, 1, 2),
    "1x1_groups": ((2, 4, 5, 6), (1, 1), 1, "valid", 1, 3, 6),
    "full_kernel": ((4, 5, 5, 2), (5, 5), 1, "valid", 1, 1, 3),
}


def _data(shape, kernel, groups, c_out, dtype, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(dtype)
    w = (rng.standard_normal((*kernel, shape[-1] // groups, c_out)) * 0.5).astype(dtype)
    b = rng.standard_normal(c_out).astype(dtype)
    return x, w, b


def _layout(arr, order):
    if order == "F":
        return np.asfortranarray(arr)
    if order == "strided":  # a view with non-unit strides
        return np.repeat(arr, 2, axis=-1)[..., ::2]
    return arr


def _gamma(k, dtype):
    u = np.finfo(dtype).eps / 2
    return k * u / (1 - k * u)


def _lipschitz(name):
    return float(np.max(np.abs(get_activation(name).derivative(np.linspace(-60, 60, 24001)))))


def _kw(case):
    _, _, stride, padding, dilation, groups, _ = case
    return dict(stride=stride, padding=padding, dilation=dilation, groups=groups)


@pytest.mark.parametrize("order", ["C", "F", "strided"])
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_conv_matches_numpy_twin(case, dtype, order):
    shape, kernel, _, _, _, groups, c_out = case
    x, w, b = _data(shape, kernel, groups, c_out, dtype)
    kw = _kw(case)
    xs, ws, bs = _layout(x, order), _layout(w, order), _layout(b[:, None], order)[:, 0]
    got = ck.conv_forward(xs, ws, bs, "tanh", stats=True, n_threads=2, **kw)
    want = ref.conv_forward(x, w, b, "tanh", stats=True, **kw)
    taps = int(np.prod(kernel)) * w.shape[-2]
    scale = ref.conv_forward(np.abs(x).astype(np.float64), np.abs(w).astype(np.float64),
                             np.abs(b).astype(np.float64), **kw).z
    tol_z = 2 * _gamma(taps + 1, dtype) * scale
    eps = np.finfo(dtype).eps
    assert got.z.dtype == dtype and got.z.flags.c_contiguous and got.z.shape == want.z.shape
    assert np.all(np.abs(got.z - want.z.astype(np.float64)) <= tol_z)
    tol_a = _lipschitz("tanh") * tol_z + 2 * eps * np.abs(want.a)
    assert np.all(np.abs(got.a - want.a.astype(np.float64)) <= tol_a)
    # statistics: the moments of the kernel's own z and a, over batch and pixels
    zz, aa = (v.reshape(-1, c_out).astype(np.float64) for v in (got.z, got.a))
    assert got.stats.n_samples == zz.shape[0]
    for field, value in (("z_mean", zz.mean(0)), ("z_var", zz.var(0)), ("a_mean", aa.mean(0)),
                         ("a_var", aa.var(0))):
        np.testing.assert_allclose(getattr(got.stats, field), value, rtol=1e-12, atol=1e-14)
    assert got.stats.z_pooled_var == pytest.approx(zz.var(), rel=1e-12)
    assert got.stats.a_pooled_mean == pytest.approx(aa.mean(), rel=1e-12, abs=1e-15)

    ga = np.random.default_rng(1).standard_normal(got.z.shape).astype(dtype)
    g = ck.conv_backward(xs, ws, _layout(got.z, order), _layout(ga, order), "tanh",
                         n_threads=2, **kw)
    r = ref.conv_backward(x, w, got.z, ga, "tanh", **kw)
    # |dz| bound: phi' is computed to eps relative to max(|phi'|, 1) on each side
    dz = np.abs(ga.astype(np.float64)) * (np.abs(get_activation("tanh").derivative(
        got.z.astype(np.float64))) + 1.0)
    a64 = np.abs(x).astype(np.float64), np.abs(w).astype(np.float64)
    bound = ref.conv_backward(*a64, got.z, dz, **kw)  # the sums of |terms|
    rows = dz.size // c_out
    og = c_out // groups
    tols = {"grad_x": 2 * (_gamma(og * np.prod(kernel), dtype) + 2 * eps) * bound.grad_x,
            "grad_w": 2 * (_gamma(rows, dtype) + 2 * eps) * bound.grad_w,
            "grad_b": 2 * (_gamma(rows, dtype) + 2 * eps) * bound.grad_b,
            "grad_z": 2 * eps * dz}
    for field, tol in tols.items():
        a, e = getattr(g, field), getattr(r, field)
        assert a.shape == e.shape and a.dtype == dtype, field
        assert np.all(np.abs(a - e.astype(np.float64)) <= tol + 1e-300), field


@pytest.mark.parametrize("case", [CASES[k] for k in ("1d_stride_dil_groups", "2d_same",
                                                     "2d_pairs_dil_groups", "depthwise_x2",
                                                     "1x1")])
def test_conv_bitwise_identical_for_any_thread_count(case, monkeypatch):
    shape, kernel, _, _, _, groups, c_out = case
    x, w, b = _data((37,) + shape[1:], kernel, groups, c_out, np.float32)
    monkeypatch.setattr(ck, "CHUNK_BYTES", 12000)  # several chunks, several tiles each
    monkeypatch.setattr(ck, "weight_grad_blocks", lambda b, i, o: 3)  # dW in row blocks
    runs = [ck.conv_forward(x, w, b, "relu", stats=True, n_threads=t, **_kw(case))
            for t in THREADS]
    grads = [ck.conv_backward(x, w, runs[0].z, runs[0].a, "gelu", n_threads=t, **_kw(case))
             for t in THREADS]
    for r in runs[1:]:
        assert np.array_equal(r.z, runs[0].z) and np.array_equal(r.a, runs[0].a)
        for f in ("z_mean", "z_var", "a_mean", "a_var"):
            assert np.array_equal(getattr(r.stats, f), getattr(runs[0].stats, f))
    for g in grads[1:]:
        for f in ("grad_x", "grad_w", "grad_b", "grad_z"):
            assert np.array_equal(getattr(g, f), getattr(grads[0], f)), f


def test_concurrent_calls_from_python_threads_are_safe():
    """Each Python thread has its own scratch buffers: concurrent calls give the bits
    of a lone call."""
    from concurrent.futures import ThreadPoolExecutor
    x, w, b = _data((24, 9, 9, 5), (3, 3), 1, 7, np.float32)
    want = ck.conv_forward(x, w, b, "tanh", padding="same", stats=True, n_threads=1)
    grads = ck.conv_backward(x, w, want.z, want.a, "tanh", padding="same", n_threads=1)

    def work(i):
        same = []
        for _ in range(4):
            r = ck.conv_forward(x, w, b, "tanh", padding="same", stats=True, n_threads=2)
            g = ck.conv_backward(x, w, r.z, r.a, "tanh", padding="same", n_threads=1 + i % 2)
            same.append(np.array_equal(r.a, want.a) and np.array_equal(g.grad_x, grads.grad_x)
                        and np.array_equal(r.stats.z_var, want.stats.z_var))
        return all(same)

    with ThreadPoolExecutor(4) as pool:
        assert all(pool.map(work, range(4)))


def test_pools_bitwise_identical_for_any_thread_count():
    x = np.random.default_rng(2).standard_normal((9, 11, 10, 70)).astype(np.float32)
    x[x < 0] = 0  # ties
    out = []
    for t in THREADS:
        y, arg = ck.max_pool_forward(x, 3, stride=2, padding=1, n_threads=t)
        gm = ck.max_pool_backward(y, arg, x.shape, n_threads=t)
        a = ck.avg_pool_forward(x, (3, 2), stride=1, padding=(1, 0), n_threads=t,
                                count_include_pad=False)
        ga = ck.avg_pool_backward(a, x.shape, (3, 2), stride=1, padding=(1, 0),
                                  count_include_pad=False, n_threads=t)
        out.append((y, arg, gm, a, ga))
    for o in out[1:]:
        assert all(np.array_equal(p, q) for p, q in zip(o, out[0]))


def test_chunks_bound_the_patch_memory_and_keep_the_results(monkeypatch):
    x, w, b = _data((16, 8, 8, 3), (3, 3), 1, 4, np.float64)
    whole = ck.conv_forward(x, w, b, "relu", padding="same", stats=True)
    gw = ck.conv_backward(x, w, whole.z, whole.a, "relu", padding="same")
    monkeypatch.setattr(ck, "CHUNK_BYTES", 8 * 64 * 27 * 3)  # 3 samples per chunk
    assert ck._setup(x, w, 1, 1, "same", 1)[-1] == 3
    monkeypatch.setattr(ck, "CHUNK_BYTES", 8)
    assert ck._setup(x, w, 1, 1, "same", 1)[-1] == 1  # at least one sample
    monkeypatch.setattr(ck, "CHUNK_BYTES", 8 * 64 * 27 * 3)
    parts = ck.conv_forward(x, w, b, "relu", padding="same", stats=True)
    gp = ck.conv_backward(x, w, whole.z, whole.a, "relu", padding="same")
    # rows are the same dot products (the GEMM's blocking may differ by a rounding)
    tol = 2 * _gamma(28, np.float64) * ref.conv_forward(np.abs(x), np.abs(w), np.abs(b),
                                                       padding="same").z
    assert np.all(np.abs(parts.z - whole.z) <= tol)
    np.testing.assert_allclose(gp.grad_x, gw.grad_x, rtol=1e-13, atol=1e-13)
    for f in ("z_mean", "z_var", "a_mean", "a_var"):
        np.testing.assert_allclose(getattr(parts.stats, f), getattr(whole.stats, f),
                                   rtol=1e-13)
    np.testing.assert_allclose(gp.grad_w, gw.grad_w, rtol=1e-12)
    np.testing.assert_allclose(gp.grad_b, gw.grad_b, rtol=1e-12)


POOLS = [  # (x shape, pool, stride, padding)
    ((3, 7, 8, 2), 2, None, 0), ((3, 7, 8, 2), 3, 2, 1), ((2, 6, 7, 3), (2, 3), 1, 0),
    ((2, 9, 4, 2), (3, 2), (2, 1), ((1, 0), (1, 1))), ((3, 10, 2), 3, 2, 1), ((2, 9, 3), 2, 1, 0),
]


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("case", POOLS, ids=lambda c: str(c[:2]))
def test_pools_match_numpy_twins(case, dtype):
    shape, pool, stride, padding = case
    rng = np.random.default_rng(4)
    x = rng.standard_normal(shape).astype(dtype)
    x[0, :3] = 0.0  # exact ties: the first in the window wins
    x[-1, 1] = np.nan  # NaN wins the window (the last NaN, as PyTorch's scan)
    x[-1, 2, ..., 0] = np.nan
    xs = _layout(x, "F")
    y, arg = ck.max_pool_forward(xs, pool, stride=stride, padding=padding, n_threads=2)
    yr, argr = ref.max_pool_forward(x, pool, stride=stride, padding=padding)
    np.testing.assert_array_equal(y, yr)
    np.testing.assert_array_equal(arg, argr)
    assert arg.dtype == np.int64 and y.dtype == dtype
    g = rng.standard_normal(y.shape).astype(dtype)
    # overlapping windows: an input sums at most k routed gradients in x's dtype
    k = int(np.prod(pool))
    tol = _gamma(k, dtype) * ref.max_pool_backward(np.abs(g), argr, x.shape) + 1e-300
    gx = ck.max_pool_backward(_layout(g, "strided"), _layout(arg, "F"), x.shape, n_threads=2)
    assert gx.dtype == dtype
    assert np.all(np.abs(gx - ref.max_pool_backward(g, argr, x.shape).astype(np.float64)) <= tol)
    x = np.nan_to_num(x)
    xs = _layout(x, "strided")
    eps = np.finfo(dtype).eps
    for include in (True, False):
        kw = dict(stride=stride, padding=padding, count_include_pad=include)
        a = ck.avg_pool_forward(xs if include else x, pool, n_threads=2, **kw)
        want = ref.avg_pool_forward(x, pool, **kw)
        # double sums, one division, one rounding on each side
        bound = 2 * eps * ref.avg_pool_forward(np.abs(x), pool, **kw) + 1e-300
        assert np.all(np.abs(a - want.astype(np.float64)) <= bound)
        gy = rng.standard_normal(a.shape).astype(dtype)
        gx = ck.avg_pool_backward(_layout(gy, "F"), x.shape, pool, **kw)
        bound = 2 * k * eps * ref.avg_pool_backward(np.abs(gy), x.shape, pool, **kw) + 1e-300
        assert np.all(np.abs(gx - ref.avg_pool_backward(gy, x.shape, pool, **kw)) <= bound)


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


@pytest.mark.parametrize("case", [CASES[k] for k in ("1d_stride_dil_groups", "2d_same_stride2",
                                                     "2d_pairs_dil_groups", "depthwise")])
def test_conv_gradients_match_finite_differences(case):
    shape, kernel, _, _, _, groups, c_out = case
    x, w, b = _data(shape, kernel, groups, c_out, np.float64, seed=7)
    kw = _kw(case)
    up = np.random.default_rng(8).standard_normal(ck.conv_forward(x, w, b, **kw).z.shape)

    def loss():  # one thread: ~1000 small calls, each a parallel region otherwise
        return float(np.sum(up * ck.conv_forward(x, w, b, "tanh", n_threads=1, **kw).a))

    r = ck.conv_forward(x, w, b, "tanh", **kw)
    g = ck.conv_backward(x, w, r.z, up, "tanh", **kw)
    h = 1e-5
    # central differences: rounding ~ eps sum|up a| / h, truncation h^2/6 |f'''| with
    # |tanh'''| <= 2 and dz/dtheta at most max(|x|, |w|, 1) per tap
    rounding = np.finfo(np.float64).eps * np.sum(np.abs(up)) / h
    m = max(np.abs(x).max(), np.abs(w).max(), 1.0)
    trunc = h**2 / 6 * 2 * np.sum(np.abs(up)) * m**3
    for arr, grad in ((x, g.grad_x), (w, g.grad_w), (b, g.grad_b)):
        np.testing.assert_allclose(grad, _fd(loss, arr, h), rtol=0, atol=rounding + trunc)


@pytest.mark.parametrize("shape, pool, stride, padding", [
    ((2, 6, 6, 2), 2, None, 0), ((2, 7, 6, 2), 3, 2, 1), ((2, 9, 3), 3, 1, 1)])
def test_pool_gradients_match_finite_differences(shape, pool, stride, padding):
    n = int(np.prod(shape))
    x = np.random.default_rng(9).permutation(n).reshape(shape) / 10.0  # no ties
    kw = dict(stride=stride, padding=padding, n_threads=1)
    up = np.random.default_rng(10).standard_normal(ck.max_pool_forward(x, pool, **kw)[0].shape)
    y, arg = ck.max_pool_forward(x, pool, **kw)
    h = 1e-6  # distinct inputs 0.1 apart: a step of h never changes a winner
    tol = 4 * np.finfo(np.float64).eps * np.sum(np.abs(up)) * np.abs(x).max() / h
    np.testing.assert_allclose(
        ck.max_pool_backward(up, arg, x.shape),
        _fd(lambda: float(np.sum(up * ck.max_pool_forward(x, pool, **kw)[0])), x, h),
        rtol=0, atol=tol)
    for include in (True, False):
        f = dict(kw, count_include_pad=include)
        np.testing.assert_allclose(  # linear: central differences are exact but rounding
            ck.avg_pool_backward(up, x.shape, pool, **f),
            _fd(lambda: float(np.sum(up * ck.avg_pool_forward(x, pool, **f))), x, h),
            rtol=0, atol=tol)


def test_empty_batch_and_nan_propagation():
    x, w, b = _data((0, 5, 5, 2), (3, 3), 1, 3, np.float32)
    r = ck.conv_forward(x, w, b, "relu", padding="same", stats=True)
    assert r.z.shape == (0, 5, 5, 3) and r.stats.n_samples == 0
    assert np.isnan(r.stats.z_mean).all()
    g = ck.conv_backward(x, w, r.z, r.a, "relu", padding="same")
    assert g.grad_x.shape == x.shape and not g.grad_w.any() and g.grad_b.shape == (3,)
    x, w, b = _data((2, 5, 5, 2), (3, 3), 1, 3, np.float64)
    x[0, 2, 2, 0] = np.nan
    r = ck.conv_forward(x, w, b, "tanh", stats=True)
    assert np.isnan(r.z[0]).all() and np.isfinite(r.z[1]).all()
    assert np.isnan(r.stats.z_mean).all()
    y, _ = ck.max_pool_forward(np.zeros((0, 4, 4, 2)), 2)
    assert y.shape == (0, 2, 2, 2)


def _fwd(xs, ws, *args, xd="f8", wd="f8", **kw):
    return lambda: ck.conv_forward(np.ones(xs, xd), np.ones(ws, wd), *args, **kw)


def _bwd(zs, gs, zd="f8"):
    return lambda: ck.conv_backward(np.ones((2, 5, 1)), np.ones((3, 1, 1)), np.ones(zs, zd),
                                    np.ones(gs))


X1, W1, X2 = (2, 5, 1), (3, 1, 1), (2, 4, 4, 1)
BAD = [  # (call, error type, a phrase the message must hold)
    (lambda: ck.conv_forward([[1.0]], np.ones(W1)), TypeError, "x must"),
    (_fwd(X1, W1, xd=int), TypeError, "x must"),
    (_fwd((5, 5), W1), ValueError, "x must"),
    (_fwd((2, 5, 5, 1), W1), ValueError, "w must"),
    (_fwd((2, 5, 5, 1), (3, 3, 1, 1), wd="f4"), TypeError, "w has dtype"),
    (_fwd(X1, (3, 1, 2), np.ones(3)), ValueError, "b must"),
    (_fwd(X1, (3, 1, 2), np.ones(2, "f4")), TypeError, "b has dtype"),
    (_fwd((2, 5, 5, 3), (3, 3, 2, 4), groups=2), ValueError, "groups"),
    (_fwd((2, 5, 5, 4), (3, 3, 2, 4), groups=0), ValueError, "groups"),
    (_fwd((2, 5, 5, 4), (3, 3, 2, 4), groups=True), TypeError, "groups"),
    (_fwd((2, 5, 5, 4), (3, 3, 3, 4)), ValueError, "w has 3 input"),
    (_fwd((2, 5, 5, 4), (3, 3, 4, 4), stride=0), ValueError, "stride"),
    (_fwd((2, 5, 5, 4), (3, 3, 4, 4), stride=(1, 1, 1)), ValueError, "stride"),
    (_fwd((2, 5, 5, 4), (3, 3, 4, 4), stride=1.0), TypeError, "stride"),
    (_fwd((2, 5, 5, 4), (3, 3, 4, 4), dilation=0), ValueError, "dilation"),
    (_fwd((2, 3, 3, 1), (5, 5, 1, 1)), ValueError, "kernel"),
    (_fwd(X1, W1, dilation=3), ValueError, "kernel"),
    (_fwd(X1, W1, padding=-1), ValueError, "padding"),
    (_fwd(X1, W1, padding="full"), ValueError, "padding"),
    (_fwd(X1, W1, padding=((1, 2, 3),)), ValueError, "padding"),
    (_fwd(X1, W1, padding=(1, 1)), ValueError, "padding"),
    (_fwd(X1, W1, stats="yes"), TypeError, "stats"),
    (_fwd(X1, W1, None, "nope"), ValueError, "activation"),
    (_fwd(X1, W1, n_threads=0), ValueError, "n_threads"),
    (_fwd(X1, W1, n_threads=2.0), TypeError, "n_threads"),
    (_bwd((2, 3, 1), (2, 4, 1)), ValueError, "grad_a must"),
    (_bwd((2, 4), (2, 3, 1)), ValueError, "z must"),
    (_bwd((2, 3, 1), (2, 3, 1), zd="f4"), TypeError, "z has dtype"),
    (lambda: ck.max_pool_forward(np.ones(X2), 0), ValueError, "pool_size"),
    (lambda: ck.max_pool_forward(np.ones(X2), 5), ValueError, "pool_size"),
    (lambda: ck.max_pool_forward(np.ones(X2), 2, padding=2), ValueError, "padding"),
    (lambda: ck.max_pool_forward(np.ones(X2), 2, stride=0), ValueError, "stride"),
    (lambda: ck.max_pool_forward(np.ones(X2, int), 2), TypeError, "x must"),
    (lambda: ck.max_pool_forward(np.ones((4, 4)), 2), ValueError, "x must"),
    (lambda: ck.avg_pool_forward(np.ones(X2), 2, count_include_pad=1), TypeError,
     "count_include_pad"),
    (lambda: ck.max_pool_backward(np.ones((2, 2, 1)), np.ones((2, 2, 1)), (2, 4, 1)),
     TypeError, "argmax"),
    (lambda: ck.max_pool_backward(np.ones((2, 2, 1)), np.ones((2, 3, 1), int), (2, 4, 1)),
     ValueError, "argmax"),
    (lambda: ck.max_pool_backward(np.ones((2, 2, 1)), np.full((2, 2, 1), 4), (2, 4, 1)),
     ValueError, "argmax"),
    (lambda: ck.max_pool_backward(np.ones((2, 2, 1)), np.zeros((2, 2, 1), int), (3, 4, 1)),
     ValueError, "input_shape"),
    (lambda: ck.max_pool_backward(np.ones((2, 2, 1), int), np.zeros((2, 2, 1), int),
                                  (2, 4, 1)), TypeError, "grad_y"),
    (lambda: ck.avg_pool_backward(np.ones((2, 3, 1)), (2, 4, 1), 2), ValueError, "grad_y"),
    (lambda: ck.avg_pool_backward(np.ones((2, 2, 1)), (2, -4, 1), 2), ValueError,
     "input_shape"),
    (lambda: ck.resolve_padding("same", (5, 5), (3, 3), 0), ValueError, "stride"),
    (lambda: ck.conv_output_shape((5,), 7), ValueError, "kernel"),
]


@pytest.mark.parametrize("call, error, phrase", BAD,
                         ids=[f"{i}-{b[2]}" for i, b in enumerate(BAD)])
def test_bad_arguments_are_named(call, error, phrase):
    with pytest.raises(error, match=phrase):
        call()


def test_resolve_padding_forms_and_output_shapes():
    assert ck.resolve_padding("valid", (5, 6), 3) == ((0, 0), (0, 0))
    assert ck.resolve_padding("SAME", (5, 6), (3, 4)) == ((1, 1), (1, 2))
    # TensorFlow's rule with stride: n=7, k=3, s=2 -> out 4, total 2; n=6 -> out 3, total 1
    assert ck.resolve_padding("same", (7, 6), 3, 2) == ((1, 1), (0, 1))
    assert ck.resolve_padding("same", (5,), 3, 1, 2) == ((2, 2),)
    assert ck.resolve_padding(2, (5, 5), 3) == ((2, 2), (2, 2))
    assert ck.resolve_padding((1, 0), (5, 5), 3) == ((1, 1), (0, 0))
    assert ck.resolve_padding(((1, 2), [0, 3]), (5, 5), 3) == ((1, 2), (0, 3))
    for n in range(1, 12):
        for k in (1, 2, 3, 5):
            for s in (1, 2, 3):
                assert ck.conv_output_shape((n,), k, s, "same") == (-(-n // s),)
    assert ck.conv_output_shape((9, 7), (3, 2), (2, 1), ((1, 2), (0, 1)), (1, 2)) == (5, 6)


def test_conv_kernels_imports_without_the_extension():
    """The module itself loads lazily; the error names varprop._conv (the message logic
    is the one test_no_extension.py checks for varprop._kernels)."""
    from varprop.kernels import _missing_message
    msg = _missing_message(ImportError("hidden"), "_conv", "the convolution kernels")
    assert "compiled extension varprop._conv" in msg and "convolution kernels" in msg
