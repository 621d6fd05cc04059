"""Convolution and pooling kernels against PyTorch's functional ops (skipped without
torch): layouts transposed (torch: NCHW inputs, OIHW weights), padding passed as
explicit zero padding (torch pads symmetrically), max-pool ties and NaNs broken as
PyTorch's CPU kernels do, gradients from torch.autograd."""

import numpy as np
import pytest

from varprop import conv_kernels as ck

torch = pytest.importorskip("torch")
F = torch.nn.functional

CASES = {  # (x shape, kernel, stride, padding, dilation, groups, c_out)
    "1d_same": ((3, 9, 4), (3,), 1, "same", 1, 1, 5),
    "1d_stride_dil_groups": ((2, 11, 6), (4,), 2, "valid", 2, 2, 4),
    "2d_same_even": ((3, 7, 8, 3), (4, 2), 1, "same", 1, 1, 6),
    "2d_pairs_dil_groups": ((2, 9, 7, 4), (3, 2), (2, 1), ((1, 2), (0, 1)), (1, 2), 2, 6),
    "depthwise_x2": ((2, 6, 6, 4), (3, 3), 1, 1, 1, 4, 8),
    "strided_same": ((2, 8, 7, 3), (3, 3), 2, "same", 1, 1, 4),
}


def _gamma(k, dtype):
    u = np.finfo(dtype).eps / 2
    return k * u / (1 - k * u)


def _nc(a):
    """channels last -> torch's channels first"""
    return np.ascontiguousarray(np.moveaxis(a, -1, 1))


def _nl(t):
    """torch's channels first -> channels last"""
    return np.moveaxis(t.detach().numpy(), 1, -1)


def _torch_conv(x, w, b, pads, stride, dilation, groups, activation):
    dims = x.ndim - 2
    xt = torch.tensor(_nc(x), requires_grad=True)
    wt = torch.tensor(np.ascontiguousarray(np.moveaxis(w, (-1, -2), (0, 1))), requires_grad=True)
    bt = torch.tensor(b, requires_grad=True)
    xpad = F.pad(xt, [p for pair in reversed(pads) for p in pair])  # last dim first
    conv = F.conv1d if dims == 1 else F.conv2d
    z = conv(xpad, wt, bt, stride=stride, dilation=dilation, groups=groups)
    return xt, wt, bt, z, activation(z)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_conv_forward_and_backward_match_torch(case, dtype):
    shape, kernel, stride, padding, dilation, groups, c_out = case
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(dtype)
    w = (rng.standard_normal((*kernel, shape[-1] // groups, c_out)) * 0.5).astype(dtype)
    b = rng.standard_normal(c_out).astype(dtype)
    pads = ck.resolve_padding(padding, shape[1:-1], kernel, stride, dilation)
    xt, wt, bt, zt, at = _torch_conv(x, w, b, pads, stride, dilation, groups, torch.tanh)
    up = rng.standard_normal(zt.shape).astype(dtype)
    (at * torch.tensor(up)).sum().backward()
    kw = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    got = ck.conv_forward(x, w, b, "tanh", **kw)
    g = ck.conv_backward(x, w, got.z, _nl(torch.tensor(up)), "tanh", **kw)
    # both sides within gamma_k of the exact sums of the same terms
    taps = int(np.prod(kernel)) * w.shape[-2]
    ax, aw = np.abs(x).astype(np.float64), np.abs(w).astype(np.float64)
    scale = ck.conv_forward(ax, aw, np.abs(b).astype(np.float64), **kw).z
    assert np.all(np.abs(got.z - _nl(zt)) <= 2 * _gamma(taps + 1, dtype) * scale)
    # gradients: |dz| <= |up| (tanh' <= 1), up to one rounding of phi' on each side
    dz = np.abs(up).astype(np.float64) * (1 + 4 * np.finfo(dtype).eps)
    dz_nl = _nl(torch.tensor(dz))
    bound = ck.conv_backward(ax, aw, got.z.astype(np.float64), dz_nl, **kw)
    rows = dz.size // c_out
    eps = np.finfo(dtype).eps
    k_x = int(np.prod(kernel)) * c_out // groups
    checks = ((g.grad_x, _nl(xt.grad), 2 * (_gamma(k_x, dtype) + 4 * eps) * bound.grad_x),
              (g.grad_w, np.moveaxis(wt.grad.numpy(), (0, 1), (-1, -2)),
               2 * (_gamma(rows, dtype) + 4 * eps) * bound.grad_w),
              (g.grad_b, bt.grad.numpy(), 2 * (_gamma(rows, dtype) + 4 * eps) * bound.grad_b))
    for mine, theirs, tol in checks:
        assert mine.shape == theirs.shape
        assert np.all(np.abs(mine - theirs.astype(np.float64)) <= tol + 1e-300)


@pytest.mark.filterwarnings("ignore:Using padding='same'")
@pytest.mark.parametrize("dims", [1, 2])
@pytest.mark.parametrize("kernel, dilation", [(3, 1), (4, 1), (2, 3), (5, 2)])
def test_same_padding_is_torchs_for_stride_one(dims, kernel, dilation):
    x = np.random.default_rng(1).standard_normal((2,) + (7,) * dims + (2,))
    w = np.random.default_rng(2).standard_normal((kernel,) * dims + (2, 3))
    conv = F.conv1d if dims == 1 else F.conv2d
    zt = conv(torch.tensor(_nc(x)), torch.tensor(np.ascontiguousarray(
        np.moveaxis(w, (-1, -2), (0, 1)))), padding="same", dilation=dilation)
    z = ck.conv_forward(x, w, padding="same", dilation=dilation).z
    np.testing.assert_allclose(z, _nl(zt), rtol=0, atol=1e-12)


POOLS = [(2, None, 0), (3, 2, 1), ((2, 3), 1, 0), (3, 1, 1), ((3, 2), (2, 1), (1, 0))]


@pytest.mark.parametrize("pool, stride, padding", POOLS)
def test_max_pool2d_ties_nans_and_gradient_routing_match_torch(pool, stride, padding):
    rng = np.random.default_rng(11)
    # relu outputs: windows of exact zeros, where the first element must win
    x = np.maximum(rng.standard_normal((4, 8, 7, 3)), 0.0).astype(np.float32)
    x[1, :4, :4] = 0.0
    x[2, 2:4, 2:4, 0] = 0.5  # ties above zero
    x[3, 1, 1, 1] = x[3, 2, 3, 1] = x[3, 0, 0, 1] = np.nan  # NaNs: PyTorch keeps the last
    x[3, 5, 5, 2] = -np.inf
    xt = torch.tensor(_nc(x), requires_grad=True)
    yt, it = F.max_pool2d(xt, pool, stride=stride, padding=padding, return_indices=True)
    up = rng.standard_normal(yt.shape).astype(np.float32)
    (gt,) = torch.autograd.grad((yt * torch.tensor(up)).sum(), xt)  # NaN loss, finite grad
    for threads in (1, 3):
        y, arg = ck.max_pool_forward(x, pool, stride=stride, padding=padding, n_threads=threads)
        np.testing.assert_array_equal(y, _nl(yt))
        np.testing.assert_array_equal(arg, _nl(it))
        # torch adds the routed gradients in output order too: the same bits
        gx = ck.max_pool_backward(_nl(torch.tensor(up)), arg, x.shape, n_threads=threads)
        np.testing.assert_array_equal(gx, _nl(gt))


@pytest.mark.parametrize("pool, stride, padding", [(2, None, 0), (3, 2, 1), (4, 1, 2)])
def test_max_pool1d_matches_torch(pool, stride, padding):
    x = np.maximum(np.random.default_rng(3).standard_normal((3, 11, 4)), 0.0)
    xt = torch.tensor(_nc(x), requires_grad=True)
    yt, it = F.max_pool1d(xt, pool, stride=stride, padding=padding, return_indices=True)
    up = np.random.default_rng(4).standard_normal(yt.shape)
    (gt,) = torch.autograd.grad((yt * torch.tensor(up)).sum(), xt)
    y, arg = ck.max_pool_forward(x, pool, stride=stride, padding=padding)
    np.testing.assert_array_equal(y, _nl(yt))
    np.testing.assert_array_equal(arg, _nl(it))
    np.testing.assert_array_equal(ck.max_pool_backward(_nl(torch.tensor(up)), arg, x.shape),
                                  _nl(gt))


@pytest.mark.parametrize("dims", [1, 2])
@pytest.mark.parametrize("pool, stride, padding", [(2, None, 0), (3, 2, 1), (3, 1, 1)])
@pytest.mark.parametrize("include", [True, False])
def test_avg_pool_matches_torch(dims, pool, stride, padding, include):
    shape = (3, 9, 4) if dims == 1 else (3, 8, 7, 3)
    x = np.random.default_rng(5).standard_normal(shape).astype(np.float32)
    xt = torch.tensor(_nc(x), requires_grad=True)
    op = F.avg_pool1d if dims == 1 else F.avg_pool2d
    yt = op(xt, pool, stride=stride, padding=padding, count_include_pad=include)
    up = np.random.default_rng(6).standard_normal(yt.shape).astype(np.float32)
    (gt,) = torch.autograd.grad((yt * torch.tensor(up)).sum(), xt)
    kw = dict(stride=stride, padding=padding, count_include_pad=include)
    y = ck.avg_pool_forward(x, pool, **kw)
    k = pool ** dims
    eps = np.finfo(np.float32).eps
    # torch sums k floats (gamma_k), we sum in double; one division and rounding each
    scale = ck.avg_pool_forward(np.abs(x).astype(np.float64), pool, **kw)
    assert np.all(np.abs(y - _nl(yt)) <= (_gamma(k, np.float32) + 4 * eps) * scale)
    gx = ck.avg_pool_backward(_nl(torch.tensor(up)), x.shape, pool, **kw)
    bound = ck.avg_pool_backward(np.abs(_nl(torch.tensor(up))).astype(np.float64), x.shape,
                                 pool, **kw)
    assert np.all(np.abs(gx - _nl(gt)) <= (_gamma(k, np.float32) + 4 * eps) * bound)
