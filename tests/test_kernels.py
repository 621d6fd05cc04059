"""The fused dense kernels against their numpy twins, with error bounds derived from the
shapes (Higham's gamma_k for a k-term dot product), never tuned by hand."""

import inspect
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import varprop
from varprop import _reference as ref
from varprop.activations import ACTIVATION_NAMES, get_activation
from varprop.kernels import forward_tiles

DTYPES = [np.float32, np.float64]
SHAPES = [  # (batch, n_in, n_out)
    (1, 1, 1), (1, 7, 5), (3, 1, 9), (13, 17, 11), (600, 33, 5),  # tall, > one row tile
    (5, 40, 700), (64, 130, 257), (2, 300, 3),
]
THREAD_COUNTS = [1, 2, 3, 7, 8, 16]


def _eps(dtype):
    return float(np.finfo(dtype).eps)


def _gamma(k, dtype):
    """Higham's gamma_k = k u / (1 - k u): the relative bound of a k-term dot product."""
    u = _eps(dtype) / 2
    return k * u / (1 - k * u)


def _lipschitz(activation):
    """max |phi'| over a fine grid (the activations' slopes are bounded and smooth)."""
    grid = np.linspace(-60, 60, 240001)
    return float(np.max(np.abs(activation.derivative(grid))))


def _data(shape, dtype, seed=0, order="C"):
    batch, n_in, n_out = shape
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, n_in)).astype(dtype)
    w = (rng.standard_normal((n_in, n_out)) / np.sqrt(n_in)).astype(dtype)
    b = (0.1 * rng.standard_normal(n_out)).astype(dtype)
    if order == "F":
        x, w = np.asfortranarray(x), np.asfortranarray(w)
    elif order == "strided":  # views with non-unit strides
        x = np.repeat(x, 2, axis=1)[:, ::2]
        w = np.repeat(w, 2, axis=0)[::2]
    return x, w, b


def assert_forward_close(got, want, x, w, b, act, context):
    dtype = x.dtype
    k = x.shape[1] + 1  # n_in products and the bias
    scale = np.abs(x).astype(np.float64) @ np.abs(w).astype(np.float64) + np.abs(b)
    tol_z = 2 * _gamma(k, dtype) * scale + 1e-300
    assert got.z.dtype == dtype and got.a.dtype == dtype, context
    assert np.all(np.abs(got.z - want.z) <= tol_z), context
    # |phi(z1) - phi(z2)| <= L |z1 - z2|, plus one rounding of each side's activation
    tol_a = _lipschitz(act) * tol_z + 2 * _eps(dtype) * np.abs(want.a) + 1e-300
    assert np.all(np.abs(got.a.astype(np.float64) - want.a) <= tol_a), context


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("name", ACTIVATION_NAMES)
def test_forward_matches_numpy_twin(name, shape, dtype):
    act = get_activation(name)
    x, w, b = _data(shape, dtype)
    got = varprop.dense_forward(x, w, b, name, stats=True, n_threads=2)
    want = ref.dense_forward(x, w, b, name, stats=True)
    assert_forward_close(got, want, x, w, b, act, f"{name} {shape} {dtype.__name__}")
    # statistics: per-unit moments of the kernel's own z and a, in float64
    mine = ref.batch_stats(got.z, got.a)
    for field in ("z_mean", "z_var", "a_mean", "a_var"):
        np.testing.assert_allclose(getattr(got.stats, field), getattr(mine, field),
                                   rtol=1e-12, atol=1e-14, err_msg=field)
    for field in ("z_pooled_mean", "z_pooled_var", "a_pooled_mean", "a_pooled_var"):
        assert getattr(got.stats, field) == pytest.approx(getattr(mine, field), rel=1e-12, abs=1e-14)
    assert got.stats.n_samples == shape[0]


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("name", ACTIVATION_NAMES)
def test_backward_matches_numpy_twin(name, shape, dtype):
    x, w, b = _data(shape, dtype)
    z = ref.dense_forward(x, w, b, name).z
    g = np.random.default_rng(1).standard_normal(z.shape).astype(dtype)
    got = varprop.dense_backward(x, w, z, g, name, n_threads=2)
    want = ref.dense_backward(x, w, z, g, name)
    # phi' is a sum of O(1) terms (gelu: Phi(x) + x pdf(x)), so each side's rounding is
    # eps relative to max(|phi'|, 1), not to |phi'| where the terms cancel
    dz = np.abs(g.astype(np.float64)) * (
        np.abs(get_activation(name).derivative(z.astype(np.float64))) + 1.0)
    eps = _eps(dtype)
    batch, n_in = x.shape
    n_out = w.shape[1]
    tol_x = 2 * (_gamma(n_out, dtype) + 2 * eps) * (dz @ np.abs(w.T).astype(np.float64))
    tol_w = 2 * (_gamma(batch, dtype) + 2 * eps) * (np.abs(x.T).astype(np.float64) @ dz)
    tol_b = 2 * (_gamma(batch, dtype) + 2 * eps) * dz.sum(axis=0)
    tol_z = 2 * eps * dz  # one rounding of phi' and of the product on each side
    for field, tol in (("grad_x", tol_x), ("grad_w", tol_w), ("grad_b", tol_b),
                       ("grad_z", tol_z)):
        diff = np.abs(getattr(got, field).astype(np.float64) - getattr(want, field))
        assert getattr(got, field).dtype == dtype
        assert np.all(diff <= tol + 1e-300), (field, diff.max())


@pytest.mark.parametrize("name", ["relu", "tanh", "gelu", "softplus", "elu"])
def test_backward_matches_finite_differences_float64(name):
    shape = (4, 6, 5)
    x, w, b = _data(shape, np.float64, seed=3)
    g = np.random.default_rng(4).standard_normal((4, 5))

    def loss(x_, w_, b_):
        return float(np.sum(g * varprop.dense_forward(x_, w_, b_, name).a))

    z = varprop.dense_forward(x, w, b, name).z
    grads = varprop.dense_backward(x, w, z, g, name)
    h = 1e-6
    for arr, grad in ((x, grads.grad_x), (w, grads.grad_w), (b, grads.grad_b)):
        fd = np.zeros_like(arr)
        for idx in np.ndindex(arr.shape):
            old = arr[idx]
            arr[idx] = old + h
            up = loss(x, w, b)
            arr[idx] = old - h
            down = loss(x, w, b)
            arr[idx] = old
            fd[idx] = (up - down) / (2 * h)
        # O(h^2) truncation with curvature O(1) plus cancellation eps/h: below 1e-7
        np.testing.assert_allclose(grad, fd, atol=1e-7, rtol=1e-6)


@pytest.mark.parametrize("order", ["F", "strided"])
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_fortran_and_strided_inputs_are_copied_and_give_the_same_result(order, dtype):
    x, w, b = _data((37, 21, 19), dtype)
    xo, wo, _ = _data((37, 21, 19), dtype, order=order)
    c = varprop.dense_forward(x, w, b, "tanh", stats=True)
    o = varprop.dense_forward(xo, wo, b, "tanh", stats=True)
    np.testing.assert_array_equal(c.a, o.a)
    assert o.a.flags.c_contiguous
    g = np.ones_like(c.z)
    gc = varprop.dense_backward(x, w, c.z, g, "tanh")
    go = varprop.dense_backward(xo, wo, np.asfortranarray(c.z), g[:, ::-1][:, ::-1], "tanh")
    np.testing.assert_array_equal(gc.grad_w, go.grad_w)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("shape", [(1, 5, 3), (64, 256, 256), (700, 40, 90), (3, 50, 1200)],
                         ids=lambda s: "x".join(map(str, s)))
def test_bitwise_identical_for_any_thread_count(shape, dtype):
    x, w, b = _data(shape, dtype)
    g = np.random.default_rng(2).standard_normal((shape[0], shape[2])).astype(dtype)
    results = []
    for n in THREAD_COUNTS:
        f = varprop.dense_forward(x, w, b, "gelu", stats=True, n_threads=n)
        d = varprop.dense_backward(x, w, f.z, g, "gelu", n_threads=n)
        results.append((f, d))
    f0, d0 = results[0]
    for (f, d), n in zip(results[1:], THREAD_COUNTS[1:]):
        for name in ("z", "a"):
            assert np.array_equal(getattr(f, name), getattr(f0, name)), (name, n)
        for name in ("z_mean", "z_var", "a_mean", "a_var"):
            assert np.array_equal(getattr(f.stats, name), getattr(f0.stats, name)), (name, n)
        assert f.stats.a_pooled_var == f0.stats.a_pooled_var
        for name in ("grad_x", "grad_w", "grad_b"):
            assert np.array_equal(getattr(d, name), getattr(d0, name)), (name, n)


def test_tile_grid_depends_on_shape_only():
    # the rule the determinism rests on: no thread count among the inputs, and the same
    # grid whatever the thread setting
    assert list(inspect.signature(forward_tiles).parameters) == ["rows", "cols"]
    saved = varprop.get_num_threads()
    try:
        grids = set()
        for threads in (1, 2, 7):
            varprop.set_num_threads(threads)
            grids.add(forward_tiles(64, 1024))
    finally:
        varprop.set_num_threads(saved)
    assert len(grids) == 1
    rows, cols = forward_tiles(64, 1024)
    assert rows == 64 and 64 <= cols <= 1024  # small batch: one row range, split by columns
    rows, cols = forward_tiles(4096, 512)
    assert rows == 256


@pytest.mark.parametrize("shape", [(256, 1024), (1024, 4096), (512, 512), (1000, 513),
                                   (64, 4096), (3, 1200), (100000, 10), (8192, 8192)])
def test_tile_grid_offers_cores_work_with_large_tiles(shape):
    # docs/kernels.md "Tile grid": a power-of-two count of tiles, at most 64, each of at
    # least 128 x 256 outputs unless the whole output is smaller, widths multiples of 16
    rows, cols = shape
    tr, tc = forward_tiles(rows, cols)
    n_tiles = -(-rows // tr) * -(-cols // tc)
    assert 1 <= n_tiles <= 64
    if rows * cols >= 64 * 128 * 256:
        assert n_tiles >= 32  # enough for 16 to 64 cores
    if n_tiles > 1:
        assert tr * tc >= 128 * 256 * 0.75  # widths rounded to 16 may shave a little
        assert tc % 16 == 0 or tc == cols


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("tiles", [(7, 16), (64, 32), (1, 300)], ids=str)
def test_fine_grids_match_the_twin_and_are_thread_independent(tiles, dtype, monkeypatch):
    # the production grid gives small test shapes one tile; a forced fine grid runs the
    # multi-tile paths (row-tile moments merged in order, ragged edge tiles)
    import varprop.kernels as kernels_module
    monkeypatch.setattr(kernels_module, "forward_tiles", lambda r, c: tiles)
    shape = (101, 45, 67)
    x, w, b = _data(shape, dtype)
    g = np.random.default_rng(5).standard_normal((shape[0], shape[2])).astype(dtype)
    act = get_activation("gelu")
    first = None
    for n in (1, 2, 3, 8):
        f = varprop.dense_forward(x, w, b, "gelu", stats=True, n_threads=n)
        d = varprop.dense_backward(x, w, f.z, g, "gelu", n_threads=n)
        if first is None:
            first = (f, d)
            assert_forward_close(f, ref.dense_forward(x, w, b, "gelu"), x, w, b, act, tiles)
            mine = ref.batch_stats(f.z, f.a)
            np.testing.assert_allclose(f.stats.z_var, mine.z_var, rtol=1e-12, atol=1e-14)
            np.testing.assert_allclose(f.stats.a_mean, mine.a_mean, rtol=1e-12, atol=1e-14)
            want = ref.dense_backward(x, w, f.z, g, "gelu")
            tol = 1e-4 if dtype == np.float32 else 1e-12
            np.testing.assert_allclose(d.grad_w, want.grad_w, rtol=tol, atol=tol)
            np.testing.assert_allclose(d.grad_x, want.grad_x, rtol=tol, atol=tol)
            continue
        f0, d0 = first
        assert np.array_equal(f.a, f0.a) and np.array_equal(f.stats.z_var, f0.stats.z_var)
        assert np.array_equal(d.grad_w, d0.grad_w) and np.array_equal(d.grad_x, d0.grad_x)


def test_concurrent_calls_from_python_threads_are_safe():
    x, w, b = _data((200, 128, 96), np.float32)
    want = varprop.dense_forward(x, w, b, "tanh", stats=True, n_threads=1)
    barrier = threading.Barrier(6)

    def work(_):
        barrier.wait()
        out = []
        for _ in range(5):
            r = varprop.dense_forward(x, w, b, "tanh", stats=True, n_threads=2)
            out.append(np.array_equal(r.a, want.a) and np.array_equal(r.stats.z_var, want.stats.z_var))
        return all(out)

    with ThreadPoolExecutor(6) as pool:
        assert all(pool.map(work, range(6)))


def test_empty_batch_gives_empty_outputs_and_nan_statistics():
    x = np.zeros((0, 4), np.float32)
    w = np.ones((4, 3), np.float32)
    r = varprop.dense_forward(x, w, None, "relu", stats=True)
    assert r.z.shape == (0, 3) and r.a.shape == (0, 3)
    assert r.stats.n_samples == 0 and np.isnan(r.stats.z_mean).all()
    assert np.isnan(r.stats.a_pooled_var)
    g = varprop.dense_backward(x, w, r.z, r.a, "relu")
    assert g.grad_x.shape == (0, 4) and not g.grad_w.any() and not g.grad_b.any()


def test_zero_inputs_give_bias_only():
    x = np.zeros((3, 0), np.float64)
    w = np.zeros((0, 2), np.float64)
    b = np.array([1.0, -1.0])
    r = varprop.dense_forward(x, w, b, "relu")
    np.testing.assert_array_equal(r.z, np.tile(b, (3, 1)))
    g = varprop.dense_backward(x, w, r.z, np.ones((3, 2)), "relu")
    np.testing.assert_array_equal(g.grad_b, [3.0, 0.0])


def test_nan_and_inf_propagate():
    x = np.array([[np.nan, 1.0], [np.inf, 0.0], [1.0, 1.0]])
    w = np.array([[1.0], [1.0]])
    r = varprop.dense_forward(x, w, None, "tanh", stats=True)
    assert np.isnan(r.z[0, 0]) and np.isnan(r.a[0, 0])
    assert r.z[1, 0] == np.inf and r.a[1, 0] == 1.0
    assert np.isnan(r.stats.z_mean[0])  # a NaN sample: the mean is NaN, as numpy says


@given(data=st.data())
@settings(deadline=None, max_examples=60)
def test_property_forward_backward_match_twin(data):
    dtype = data.draw(st.sampled_from(DTYPES))
    batch = data.draw(st.integers(1, 40))
    n_in = data.draw(st.integers(1, 40))
    n_out = data.draw(st.integers(1, 40))
    name = data.draw(st.sampled_from(ACTIVATION_NAMES))
    elements = st.floats(-8, 8, width=32)
    x = data.draw(hnp.arrays(dtype, (batch, n_in), elements=elements))
    w = data.draw(hnp.arrays(dtype, (n_in, n_out), elements=elements))
    b = data.draw(hnp.arrays(dtype, (n_out,), elements=elements))
    threads = data.draw(st.sampled_from([1, 2, 3]))
    act = get_activation(name)
    got = varprop.dense_forward(x, w, b, name, stats=True, n_threads=threads)
    want = ref.dense_forward(x, w, b, name, stats=True)
    assert_forward_close(got, want, x, w, b, act, (name, x.shape, w.shape))
    g = np.ones_like(got.z)
    gk = varprop.dense_backward(x, w, got.z, g, name, n_threads=threads)
    gr = ref.dense_backward(x, w, got.z, g, name)
    dz = np.abs(act.derivative(got.z.astype(np.float64))) + 1.0  # as in the test above
    tol = 2 * (_gamma(max(batch, n_out), dtype) + 2 * _eps(dtype)) * (
        dz @ np.abs(w.T).astype(np.float64))
    assert np.all(np.abs(gk.grad_x - gr.grad_x) <= tol + 1e-300)


# ------------------------------------------------------------------ threads and build
def test_thread_settings():
    old = varprop.get_num_threads()
    try:
        varprop.set_num_threads(1)
        assert varprop.get_num_threads() == 1
    finally:
        varprop.set_num_threads(old)
    for bad in (0, -1):
        with pytest.raises(ValueError, match="n_threads must be a positive integer"):
            varprop.dense_forward(np.ones((1, 1)), np.ones((1, 1)), n_threads=bad)
        with pytest.raises(ValueError, match="n must be a positive integer"):
            varprop.set_num_threads(bad)
    for bad in (1.5, "2", True):
        with pytest.raises(TypeError, match="n_threads must be a positive integer"):
            varprop.dense_forward(np.ones((1, 1)), np.ones((1, 1)), n_threads=bad)


@pytest.mark.skipif(os.environ.get("VARPROP_REQUIRE_OPENMP") != "1",
                    reason="only checked where the build is required to have OpenMP (CI)")
def test_build_has_openmp_when_required():
    assert varprop.built_with_openmp(), "VARPROP_REQUIRE_OPENMP=1 but the kernels are serial"


# ------------------------------------------------------------------------ bad input
F32 = np.ones((2, 3), np.float32)
W32 = np.ones((3, 4), np.float32)


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda: varprop.dense_forward(F32, W32.astype(np.float64)), TypeError,
         "w has dtype float64 but x has float32"),
        (lambda: varprop.dense_forward(F32, W32, np.ones(4)), TypeError,
         "b has dtype float64 but x has float32"),
        (lambda: varprop.dense_forward(F32.astype(int), W32), TypeError,
         "x must have dtype float32 or float64, got int64"),
        (lambda: varprop.dense_forward(F32.astype(np.float16), W32), TypeError, "got float16"),
        (lambda: varprop.dense_forward([[1.0]], W32), TypeError, "x must be a numpy array"),
        (lambda: varprop.dense_forward(F32[0], W32), ValueError,
         r"x must be 2-D \(batch, n_in\), got shape \(3,\)"),
        (lambda: varprop.dense_forward(F32, W32[None]), ValueError, "w must be 2-D"),
        (lambda: varprop.dense_forward(F32, W32.T.copy()), ValueError,
         r"x.shape\[1\] must equal w.shape\[0\]"),
        (lambda: varprop.dense_forward(F32, W32, np.ones(5, np.float32)), ValueError,
         r"b must have shape \(4,\)"),
        (lambda: varprop.dense_forward(F32, W32, activation="relux"), ValueError,
         "Did you mean 'relu'"),
        (lambda: varprop.dense_forward(F32, W32, activation="elu", alpha=-2), ValueError,
         "'alpha' must be >= 0"),
        (lambda: varprop.dense_forward(F32, W32, activation="relu", slope=2), TypeError,
         "unexpected parameter"),
        (lambda: varprop.dense_forward(F32, W32, stats="yes"), TypeError, "stats must be"),
        (lambda: varprop.dense_backward(F32, W32, np.ones((2, 5), np.float32),
                                        np.ones((2, 4), np.float32)), ValueError,
         r"z must have shape \(2, 4\)"),
        (lambda: varprop.dense_backward(F32, W32, np.ones((2, 4), np.float32),
                                        np.ones((2, 4))), TypeError,
         "grad_a has dtype float64 but x has float32"),
    ],
)
def test_bad_input_names_the_argument(call, error, message):
    with pytest.raises(error, match=message):
        call()


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_pooled_var_matches_numpy_two_pass(dtype):
    # measure's gradient variances (varprop._empirical_run.pooled_var): the compiled two
    # passes against numpy's, on a shifted array where a one-pass formula would cancel
    from varprop._empirical_run import pooled_var
    rng = np.random.default_rng(9)
    for arr in (rng.standard_normal((513, 77)), 1e3 + rng.standard_normal(1001),
                np.full(5, 2.5), rng.standard_normal(1)):
        a = arr.astype(dtype)
        want = float(np.var(a, dtype=np.float64))
        assert pooled_var(a) == pytest.approx(want, rel=1e-12, abs=1e-300)
        assert pooled_var(np.asfortranarray(a)) == pytest.approx(want, rel=1e-12, abs=1e-300)
    assert np.isnan(pooled_var(np.array([1.0, np.nan], dtype)))
    assert np.isnan(pooled_var(np.array([1.0, np.inf], dtype)))  # as np.var: inf - inf
    assert np.isnan(pooled_var(np.zeros(0, dtype)))


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("blocks", [2, 5, 128], ids=str)
def test_weight_gradient_row_blocks_match_the_twin_and_are_thread_independent(
        blocks, dtype, monkeypatch):
    # docs/kernels.md "The weight gradient": dW split along the batch into row blocks,
    # summed in block order; 5 leaves a ragged last block, 128 > batch leaves empty ones
    import varprop.kernels as kernels_module
    monkeypatch.setattr(kernels_module, "weight_grad_blocks", lambda b, i, o: blocks)
    shape = (101, 9, 16)
    x, w, b = _data(shape, dtype)
    g = np.random.default_rng(7).standard_normal((shape[0], shape[2])).astype(dtype)
    f = varprop.dense_forward(x, w, b, "tanh")
    first = None
    for n in (1, 2, 3, 8):
        d = varprop.dense_backward(x, w, f.z, g, "tanh", n_threads=n)
        if first is None:
            first = d
            want = ref.dense_backward(x, w, f.z, g, "tanh")
            tol = 1e-4 if dtype == np.float32 else 1e-12
            np.testing.assert_allclose(d.grad_w, want.grad_w, rtol=tol, atol=tol)
            np.testing.assert_allclose(d.grad_x, want.grad_x, rtol=tol, atol=tol)
            continue
        assert np.array_equal(d.grad_w, first.grad_w) and np.array_equal(d.grad_x, first.grad_x)


def test_weight_gradient_blocks_depend_on_shape_only():
    from varprop.kernels import weight_grad_blocks
    assert list(inspect.signature(weight_grad_blocks).parameters) == ["batch", "n_in", "n_out"]
    assert weight_grad_blocks(512, 2048, 2048) == 1     # a dense layer: dW has its tiles
    assert weight_grad_blocks(64 * 784, 144, 32) == 8   # a convolution's small dW
    assert weight_grad_blocks(1000, 144, 32) == 1        # too few rows to split
