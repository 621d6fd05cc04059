"""Convolution and pooling kernels against their plain-numpy twins (varprop._reference_conv),
PyTorch's functional ops (when torch is installed) and finite differences; bitwise
independence of the thread count; bad arguments named in the error."""

import numpy as np
import pytest

from varprop import _reference_conv as ref
from varprop import conv_kernels as ck

CASES = [  # (x shape, kernel, stride, padding, dilation, groups, c_out)
    ((3, 9, 4), (3,), 1, "same", 1, 1, 5),
    ((2, 11, 6), (4,), 2, "valid", 2, 2, 4),
    ((3, 7, 8, 3), (3, 3), 1, "same", 1, 1, 6),
    ((2, 9, 7, 4), (3, 2), (2, 1), ((1, 2), (0, 1)), (1, 2), 2, 6),
    ((2, 6, 6, 4), (3, 3), 1, 1, 1, 4, 8),  # depthwise, channel multiplier 2
    ((4, 5, 5, 2), (5, 5), 1, "valid", 1, 1, 3),
]


def _data(shape, kernel, groups, c_out, dtype, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(dtype)
    w = (rng.standard_normal((*kernel, shape[-1] // groups, c_out)) * 0.3).astype(dtype)
    b = rng.standard_normal(c_out).astype(dtype)
    return x, w, b


def _tol(dtype, k):
    """A few ulps of the reduction length's accumulated rounding (sqrt(k) growth)."""
    eps = np.finfo(dtype).eps
    return 8 * eps * np.sqrt(k)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("order", ["C", "F"])
def test_conv_matches_numpy_twin(dtype, case, order):
    shape, kernel, stride, padding, dilation, groups, c_out = case
    x, w, b = _data(shape, kernel, groups, c_out, dtype)
    x = np.asfortranarray(x) if order == "F" else x
    kw = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    got = ck.conv_forward(x, w, b, "tanh", stats=True, **kw)
    want = ref.conv_forward(x, w, b, "tanh", stats=True, **kw)
    k = int(np.prod(kernel)) * w.shape[-2]
    scale = np.abs(want.z).max() + 1
    assert np.allclose(got.z, want.z, rtol=0, atol=_tol(dtype, k) * scale)
    assert np.allclose(got.a, want.a, rtol=0, atol=_tol(dtype, k) * scale + 4 * np.finfo(dtype).eps)
    for field in ("z_mean", "z_var", "a_mean", "a_var"):
        assert np.allclose(getattr(got.stats, field), getattr(want.stats, field),
                           rtol=1e-4 if dtype == np.float32 else 1e-10, atol=1e-6)
    ga = np.random.default_rng(1).standard_normal(got.z.shape).astype(dtype)
    g = ck.conv_backward(x, w, got.z, ga, "tanh", **kw)
    r = ref.conv_backward(x, w, got.z, ga, "tanh", **kw)
    for field in ("grad_x", "grad_w", "grad_b", "grad_z"):
        a, e = getattr(g, field), getattr(r, field)
        big = np.abs(e).max() + 1
        assert a.shape == e.shape and a.dtype == dtype
        assert np.allclose(a, e, rtol=0, atol=_tol(dtype, k * x.shape[0] * 64) * big), field


@pytest.mark.parametrize("case", CASES[2:5])
def test_bitwise_identical_for_any_thread_count(case):
    shape, kernel, stride, padding, dilation, groups, c_out = case
    x, w, b = _data((64,) + shape[1:], kernel, groups, c_out, np.float32)
    kw = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    runs = [ck.conv_forward(x, w, b, "relu", stats=True, n_threads=t, **kw) for t in (1, 2, 3)]
    grads = [ck.conv_backward(x, w, runs[0].z, runs[0].a, "relu", n_threads=t, **kw)
             for t in (1, 2, 3)]
    for r in runs[1:]:
        assert np.array_equal(r.z, runs[0].z) and np.array_equal(r.a, runs[0].a)
        assert np.array_equal(r.stats.z_var, runs[0].stats.z_var)
    for g in grads[1:]:
        for f in ("grad_x", "grad_w", "grad_b"):
            assert np.array_equal(getattr(g, f), getattr(grads[0], f))


def test_chunked_batches_give_the_same_bits(monkeypatch):
    """Chunks (bounded patch memory) must not change a single bit of the outputs."""
    x, w, b = _data((16, 8, 8, 3), (3, 3), 1, 4, np.float64)
    whole = ck.conv_forward(x, w, b, "relu", padding="same", stats=True)
    gw = ck.conv_backward(x, w, whole.z, whole.a, "relu", padding="same")
    monkeypatch.setattr(ck, "CHUNK_BYTES", 8 * 64 * 27 * 3)  # 3 samples per chunk
    parts = ck.conv_forward(x, w, b, "relu", padding="same", stats=True)
    gp = ck.conv_backward(x, w, whole.z, whole.a, "relu", padding="same")
    assert np.array_equal(parts.z, whole.z)
    assert np.array_equal(gp.grad_x, gw.grad_x)
    assert np.allclose(parts.stats.z_var, whole.stats.z_var, rtol=1e-13)
    assert np.allclose(gp.grad_w, gw.grad_w, rtol=1e-12)


@pytest.mark.parametrize("pool, stride, padding", [(2, None, 0), (3, 2, 1), ((2, 3), 1, 0)])
def test_pools_match_numpy_twins(pool, stride, padding):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((3, 7, 8, 2))
    x[0, :2, :2] = 0.0  # exact ties in a window
    y, arg = ck.max_pool_forward(x, pool, stride=stride, padding=padding)
    yr, argr = ref.max_pool_forward(x, pool, stride=stride, padding=padding)
    assert np.array_equal(y, yr) and np.array_equal(arg, argr)
    g = rng.standard_normal(y.shape)
    assert np.allclose(ck.max_pool_backward(g, arg, x.shape),
                       ref.max_pool_backward(g, argr, x.shape), atol=1e-15)
    for include in (True, False):
        kw = dict(stride=stride, padding=padding, count_include_pad=include)
        assert np.allclose(ck.avg_pool_forward(x, pool, **kw),
                           ref.avg_pool_forward(x, pool, **kw), atol=1e-14)
        gy = rng.standard_normal(ck.avg_pool_forward(x, pool, **kw).shape)
        assert np.allclose(ck.avg_pool_backward(gy, x.shape, pool, **kw),
                           ref.avg_pool_backward(gy, x.shape, pool, **kw), atol=1e-14)


def _fd(f, x, eps=1e-6):
    g = np.zeros_like(x)
    flat, gf = x.reshape(-1), g.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        up = f()
        flat[i] = old - eps
        down = f()
        flat[i] = old
        gf[i] = (up - down) / (2 * eps)
    return g


def test_conv_gradients_match_finite_differences():
    x, w, b = _data((2, 5, 4, 2), (3, 2), 1, 3, np.float64, seed=7)
    kw = dict(stride=(1, 2), padding="same", dilation=1)
    up = np.random.default_rng(8).standard_normal(ck.conv_forward(x, w, b, **kw).z.shape)

    def loss():
        return float(np.sum(up * ck.conv_forward(x, w, b, "tanh", **kw).a))

    r = ck.conv_forward(x, w, b, "tanh", **kw)
    g = ck.conv_backward(x, w, r.z, up, "tanh", **kw)
    # central differences: truncation O(eps^2 f''') and rounding O(1e-16 / eps)
    for arr, grad in ((x, g.grad_x), (w, g.grad_w), (b, g.grad_b)):
        assert np.allclose(grad, _fd(loss, arr), rtol=1e-7, atol=1e-8)


def test_pool_gradients_match_finite_differences():
    x = np.random.default_rng(9).permutation(2 * 6 * 6 * 2).reshape(2, 6, 6, 2) / 10.0
    up = np.random.default_rng(10).standard_normal((2, 3, 3, 2))
    y, arg = ck.max_pool_forward(x, 2)
    gx = ck.max_pool_backward(up, arg, x.shape)
    # distinct inputs 0.1 apart: no tie, so a 1e-6 step never changes the winner
    assert np.allclose(gx, _fd(lambda: float(np.sum(up * ck.max_pool_forward(x, 2)[0])), x),
                       atol=1e-8)
    ga = ck.avg_pool_backward(up, x.shape, 2)
    assert np.allclose(ga, _fd(lambda: float(np.sum(up * ck.avg_pool_forward(x, 2))), x),
                       atol=1e-8)


@pytest.mark.parametrize("call, match", [
    (lambda: ck.conv_forward(np.ones((2, 5, 5, 3)), np.ones((3, 3, 2, 4)), groups=2), "groups"),
    (lambda: ck.conv_forward(np.ones((2, 5, 5, 4)), np.ones((3, 3, 4, 4)), stride=0), "stride"),
    (lambda: ck.conv_forward(np.ones((2, 3, 3, 1)), np.ones((5, 5, 1, 1))), "kernel"),
    (lambda: ck.conv_forward(np.ones((2, 5, 5, 1)), np.ones((3, 3, 1, 1), "f4")), "dtype"),
    (lambda: ck.conv_forward(np.ones((2, 5, 5, 1)), np.ones((3, 1, 1))), "w"),
    (lambda: ck.conv_forward(np.ones((5, 5)), np.ones((3, 1, 1))), "x"),
    (lambda: ck.conv_forward(np.ones((2, 5, 1)), np.ones((3, 1, 1)), padding=-1), "padding"),
    (lambda: ck.conv_forward(np.ones((2, 5, 1)), np.ones((3, 1, 1)), padding="full"), "padding"),
    (lambda: ck.conv_forward(np.ones((2, 5, 1)), np.ones((3, 1, 2)), np.ones(3)), "b"),
    (lambda: ck.max_pool_forward(np.ones((2, 4, 4, 1)), 0), "pool_size"),
    (lambda: ck.max_pool_forward(np.ones((2, 4, 4, 1)), 2, padding=2), "padding"),
])
def test_bad_arguments_are_named(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call()


@pytest.mark.parametrize("case", CASES)
def test_conv_matches_torch(case):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    shape, kernel, stride, padding, dilation, groups, c_out = case
    x, w, b = _data(shape, kernel, groups, c_out, np.float64)
    pads = ck.resolve_padding(padding, shape[1:-1], kernel, stride, dilation)
    dims = len(kernel)
    xt = torch.tensor(np.moveaxis(x, -1, 1))
    xt = F.pad(xt, [p for pair in reversed(pads) for p in pair])  # torch pads last dim first
    wt = torch.tensor(np.moveaxis(w, (-1, -2), (0, 1)).copy())
    conv = F.conv1d if dims == 1 else F.conv2d
    zt = conv(xt, wt, torch.tensor(b), stride=stride, dilation=dilation, groups=groups)
    got = ck.conv_forward(x, w, b, stride=stride, padding=padding, dilation=dilation,
                          groups=groups)
    assert np.allclose(got.z, np.moveaxis(zt.numpy(), 1, -1), atol=1e-12)


def test_pools_match_torch_ties_included():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rng = np.random.default_rng(11)
    # relu outputs: whole windows of exact zeros, where the first element must win
    x = np.maximum(rng.standard_normal((4, 8, 6, 3)), 0.0).astype(np.float32)
    xt = torch.tensor(np.moveaxis(x, -1, 1)).requires_grad_()
    for pool, stride, padding in ((2, None, 0), (3, 2, 1)):
        yt = F.max_pool2d(xt, pool, stride=stride, padding=padding)
        up = rng.standard_normal(yt.shape).astype(np.float32)
        (gt,) = torch.autograd.grad((yt * torch.tensor(up)).sum(), xt)
        y, arg = ck.max_pool_forward(x, pool, stride=stride, padding=padding)
        assert np.array_equal(y, np.moveaxis(yt.detach().numpy(), 1, -1))
        gx = ck.max_pool_backward(np.ascontiguousarray(np.moveaxis(up, 1, -1)), arg, x.shape)
        assert np.array_equal(gx, np.moveaxis(gt.numpy(), 1, -1))
        for include in (True, False):
            at = F.avg_pool2d(xt, pool, stride=stride, padding=padding,
                              count_include_pad=include)
            a = ck.avg_pool_forward(x, pool, stride=stride, padding=padding,
                                    count_include_pad=include)
            assert np.allclose(a, np.moveaxis(at.detach().numpy(), 1, -1), atol=1e-6)
    y1 = F.max_pool1d(torch.tensor(np.moveaxis(x[:, :, 0], -1, 1)), 2)
    assert np.array_equal(ck.max_pool_forward(np.ascontiguousarray(x[:, :, 0]), 2)[0],
                          np.moveaxis(y1.numpy(), 1, -1))
