"""The private compiled entry points (``varprop._kernels``) check every buffer themselves:
a wrong dtype, rank, layout, shape, an undersized or read-only output, outputs that
overlap, a tile size or thread count below 1 or an unknown activation id is a
TypeError / ValueError naming the argument, raised before any memory is touched (the
outputs keep their sentinel values and no buffer stays exported). Correct calls match
the numpy twins of :mod:`varprop._reference`."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from test_activations import TOLERANCE
from test_kernels import _eps, _gamma, assert_forward_close

from varprop import _reference as ref
from varprop.activations import ACTIVATION_NAMES, get_activation
from varprop.kernels import _combine_moments

K = pytest.importorskip("varprop._kernels")
SENTINEL = -7.25  # outputs must still hold it after a rejected call


def test_activation_ids_match_the_registry():
    assert K.N_ACTIVATIONS == len(ACTIVATION_NAMES)
    assert [get_activation(n).kernel_id for n in ACTIVATION_NAMES] == list(range(K.N_ACTIVATIONS))


# ----------------------------------------------------------------------------- forward
def forward_args(dtype=np.float32, batch=5, n_in=4, n_out=3, tile_rows=2, tile_cols=2,
                 stats=True, bias=True):
    """Valid arguments of K.forward, as a dict in call order."""
    rng = np.random.default_rng(0)
    n_row_tiles = -(-batch // tile_rows)
    return dict(
        x=rng.standard_normal((batch, n_in)).astype(dtype),
        w=rng.standard_normal((n_in, n_out)).astype(dtype),
        bias=(rng.standard_normal(n_out) if bias else np.empty(0)).astype(dtype),
        z=np.full((batch, n_out), SENTINEL, dtype),
        a=np.full((batch, n_out), SENTINEL, dtype),
        moments=np.full((6, n_row_tiles, n_out) if stats else (0, 0, 0), SENTINEL),
        kind=7, p0=0.0, p1=0.0, tile_rows=tile_rows, tile_cols=tile_cols, n_threads=2)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("stats, bias", [(True, True), (False, False)])
@pytest.mark.parametrize("name", ["relu", "tanh", "leaky_relu", "gelu"])
def test_forward_matches_numpy_twin(name, stats, bias, dtype):
    act = get_activation(name)
    args = forward_args(dtype, batch=37, n_in=21, n_out=19, tile_rows=8, tile_cols=16,
                        stats=stats, bias=bias)
    args.update(kind=act.kernel_id, p0=act.kernel_params[0], p1=act.kernel_params[1])
    K.forward(*args.values())
    b = args["bias"] if bias else np.zeros(19, dtype)
    want = ref.dense_forward(args["x"], args["w"], b, act, stats=stats)

    class Got:
        z, a = args["z"], args["a"]

    assert_forward_close(Got, want, args["x"], args["w"], b, act, name)
    if stats:
        got = _combine_moments(args["moments"], 37, 8)
        mine = ref.batch_stats(args["z"], args["a"])
        for field in ("z_mean", "z_var", "a_mean", "a_var"):
            np.testing.assert_allclose(getattr(got, field), getattr(mine, field),
                                       rtol=1e-12, atol=1e-14, err_msg=field)


def test_forward_empty_batch_and_empty_inputs():
    args = forward_args(batch=0, stats=True)  # moments (6, 0, n_out): nothing to do
    K.forward(*args.values())
    args = forward_args(np.float64, n_in=0)  # no inputs: z is the bias
    K.forward(*args.values())
    np.testing.assert_array_equal(args["z"], np.tile(args["bias"], (5, 1)))


def _ro(shape, dtype=np.float32):
    a = np.zeros(shape, dtype)
    a.flags.writeable = False
    return a


FORWARD_BAD = [  # (argument, value, error, message)
    ("x", [[1.0] * 4] * 5, TypeError, "x must be a float32 or float64 numpy array, got list"),
    ("x", np.ones((5, 4), int), TypeError, "x must have dtype float32 or float64, got int64"),
    ("x", np.ones((5, 4), np.float16), TypeError, "x must have dtype .*got float16"),
    ("x", np.ones((5, 4), ">f4"), TypeError, "x must have dtype float32 or float64"),
    ("x", np.ones(20, np.float32), ValueError, "x must be 2-D, got 1-D"),
    ("x", np.ones((5, 8), np.float32)[:, ::2], ValueError, "x must be C-contiguous"),
    ("x", np.ones((4, 5), np.float32).T, ValueError, "x must be C-contiguous"),
    ("w", np.ones((4, 3)), TypeError, "w must have dtype float32 like x, got float64"),
    ("w", np.ones((5, 3), np.float32), ValueError, r"w must have shape \(4, n_out\)"),
    ("w", np.ones((4, 3, 1), np.float32), ValueError, "w must be 2-D"),
    ("bias", np.ones(2, np.float32), ValueError, r"bias must have shape \(3,\) or \(0,\)"),
    ("bias", np.ones(3), TypeError, "bias must have dtype float32"),
    ("z", np.ones((4, 3), np.float32), ValueError, r"z must have shape \(batch, n_out\)"),
    ("z", np.ones((5, 2), np.float32), ValueError, "z must have shape"),
    ("z", np.ones((5, 3)), TypeError, "z must have dtype float32 like x"),
    ("z", _ro((5, 3)), ValueError, "z is read-only"),
    ("a", np.ones((1, 1), np.float32), ValueError, "a must have shape"),
    ("a", np.ones((3, 5), np.float32).T, ValueError, "a must be C-contiguous"),
    ("a", _ro((5, 3)), ValueError, "a is read-only"),
    ("moments", np.ones((6, 2, 3)), ValueError, r"moments must have shape \(6, ceil"),
    ("moments", np.ones((5, 3, 3)), ValueError, "moments must have shape"),
    ("moments", np.ones((6, 3, 2)), ValueError, "moments must have shape"),
    ("moments", np.ones((6, 3, 3), np.float32), TypeError, "moments must have dtype float64"),
    ("moments", np.ones((6, 9)), ValueError, "moments must be 3-D"),
    ("moments", _ro((6, 3, 3), np.float64), ValueError, "moments is read-only"),
    ("kind", -1, ValueError, r"kind \(activation id\) must be in \[0, 11\], got -1"),
    ("kind", 12, ValueError, r"kind \(activation id\) must be in \[0, 11\], got 12"),
    ("kind", 2**70, ValueError, "kind"),
    ("kind", 1.0, TypeError, "kind .*must be an integer, got float"),
    ("p0", "0.1", TypeError, "p0 must be a real number, got str"),
    ("p1", None, TypeError, "p1 must be a real number"),
    ("tile_rows", 0, ValueError, r"tile_rows must be in \[1, "),
    ("tile_rows", -3, ValueError, "tile_rows must be in"),
    ("tile_cols", 0, ValueError, "tile_cols must be in"),
    ("tile_cols", None, TypeError, "tile_cols must be an integer"),
    ("n_threads", 0, ValueError, "n_threads must be in"),
    ("n_threads", -1, ValueError, "n_threads must be in"),
]


@pytest.mark.parametrize("dtype", [np.float32], ids=["f32"])
@pytest.mark.parametrize("arg, value, error, message", FORWARD_BAD,
                         ids=[f"{i}-{a}" for i, (a, *_) in enumerate(FORWARD_BAD)])
def test_forward_rejects_bad_arguments(arg, value, error, message, dtype):
    args = forward_args(dtype)
    args[arg] = value
    with pytest.raises(error, match=message):
        K.forward(*args.values())
    for out in ("z", "a", "moments"):
        if out != arg:
            assert np.all(args[out] == SENTINEL), out


def test_forward_rejects_overlapping_outputs_before_writing():
    args = forward_args(np.float64)
    zz = np.full((2, 5, 3), SENTINEL)
    for a, b, names in ((args["z"], args["z"], "z overlaps a"),
                        (zz[0], zz.reshape(10, 3)[2:7], "z overlaps a")):
        with pytest.raises(ValueError, match=names):
            K.forward(*{**args, "z": a, "a": b}.values())
    big = np.full(200, SENTINEL)  # z inside the storage of x (an output over an input)
    x = big[:20].reshape(5, 4)
    with pytest.raises(ValueError, match="z overlaps x"):
        K.forward(*{**args, "x": x, "z": big[10:25].reshape(5, 3)}.values())
    with pytest.raises(ValueError, match="moments overlaps x"):
        K.forward(*{**args, "x": x, "moments": big[10:64].reshape(6, 3, 3)}.values())
    assert np.all(big == SENTINEL) and np.all(zz == SENTINEL)


def test_tile_grid_too_fine_for_a_c_int_is_rejected():
    """2**16 x (2**15 + 1) outputs in 1 x 1 tiles: more tiles than a C int counts. The
    outputs are views that claim 8 GB over one float (as_strided, C strides): the call
    must be rejected from the descriptors alone, before any of that is touched."""
    rows, cols = 1 << 16, (1 << 15) + 1
    base = np.full(1, SENTINEL, np.float32)
    fake = np.lib.stride_tricks.as_strided(base, (rows, cols), (4 * cols, 4))
    assert fake.flags.c_contiguous
    args = {**forward_args(), "x": np.empty((rows, 0), np.float32),
            "w": np.empty((0, cols), np.float32), "bias": np.empty(0, np.float32),
            "z": fake, "a": fake, "moments": np.empty((0, 0, 0)), "tile_rows": 1,
            "tile_cols": 1}
    with pytest.raises(ValueError, match=r"tile_rows=1, tile_cols=1: more than 2\*\*31 - 1 tiles"):
        K.forward(*args.values())
    assert base[0] == SENTINEL


def test_a_rejected_call_keeps_no_buffer_exported():
    args = forward_args()
    args["moments"] = np.ones((6, 1, 3))  # checked after x, w, bias, z, a are acquired
    names = [k for k, v in args.items() if isinstance(v, np.ndarray)]

    def refcounts():
        return {k: sys.getrefcount(args[k]) for k in names}

    before = refcounts()
    for _ in range(3):
        with pytest.raises(ValueError, match="moments must have shape"):
            K.forward(*args.values())
    assert refcounts() == before  # an exported buffer holds a reference to its array


# ----------------------------------------------------------------------------- backward
def backward_args(dtype=np.float32, batch=6, n_in=4, n_out=3, block_rows=4, tile=2):
    rng = np.random.default_rng(1)
    return dict(
        x=rng.standard_normal((batch, n_in)).astype(dtype),
        w=rng.standard_normal((n_in, n_out)).astype(dtype),
        z=rng.standard_normal((batch, n_out)).astype(dtype),
        grad_a=rng.standard_normal((batch, n_out)).astype(dtype),
        grad_z=np.full((batch, n_out), SENTINEL, dtype),
        grad_x=np.full((batch, n_in), SENTINEL, dtype),
        grad_w=np.full((n_in, n_out), SENTINEL, dtype),
        bias_partials=np.full((-(-batch // block_rows), n_out), SENTINEL),
        kind=7, p0=0.0, p1=0.0, block_rows=block_rows, dx_tile_rows=tile,
        dx_tile_cols=tile, dw_tile_rows=tile, dw_tile_cols=tile, n_threads=2)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("name", ["relu", "tanh", "elu", "softsign"])
def test_backward_matches_numpy_twin(name, dtype):
    act = get_activation(name)
    args = backward_args(dtype, batch=29, n_in=13, n_out=11, block_rows=8, tile=5)
    args.update(kind=act.kernel_id, p0=act.kernel_params[0], p1=act.kernel_params[1])
    K.backward(*args.values())
    want = ref.dense_backward(args["x"], args["w"], args["z"], args["grad_a"], act)
    dz = np.abs(args["grad_a"].astype(np.float64)) * (
        np.abs(act.derivative(args["z"].astype(np.float64))) + 1.0)
    eps, g = _eps(dtype), lambda k: 2 * (_gamma(k, dtype) + 2 * _eps(dtype))
    w64, x64 = np.abs(args["w"]).astype(np.float64), np.abs(args["x"]).astype(np.float64)
    checks = (("grad_z", args["grad_z"], 2 * eps * dz),
              ("grad_x", args["grad_x"], g(11) * dz @ w64.T),
              ("grad_w", args["grad_w"], g(29) * x64.T @ dz),
              ("grad_b", args["bias_partials"].sum(axis=0), g(29) * dz.sum(axis=0)))
    for field, got, tol in checks:
        diff = np.abs(got.astype(np.float64) - getattr(want, field))
        assert np.all(diff <= tol + 1e-300), (field, diff.max())


BACKWARD_BAD = [
    ("x", np.ones((6, 4)), TypeError, "x must have dtype|w must have dtype float64 like x"),
    ("w", np.ones((3, 3), np.float32), ValueError, r"w must have shape \(4, n_out\)"),
    ("z", np.ones((6, 2), np.float32), ValueError, r"z must have shape \(batch, n_out\)"),
    ("z", np.ones((6, 3)), TypeError, "z must have dtype float32 like x"),
    ("grad_a", np.ones((5, 3), np.float32), ValueError, "grad_a must have shape"),
    ("grad_a", np.ones((6, 6), np.float32)[:, ::2], ValueError, "grad_a must be C-contiguous"),
    ("grad_z", np.ones((6, 2), np.float32), ValueError, "grad_z must have shape"),
    ("grad_z", _ro((6, 3)), ValueError, "grad_z is read-only"),
    ("grad_x", np.ones((6, 3), np.float32), ValueError, r"grad_x must have shape x's shape"),
    ("grad_x", np.ones((1, 1), np.float32), ValueError, "grad_x must have shape"),
    ("grad_x", np.ones((4, 6), np.float32).T, ValueError, "grad_x must be C-contiguous"),
    ("grad_w", np.ones((4, 2), np.float32), ValueError, r"grad_w must have shape w's shape"),
    ("grad_w", np.ones(12, np.float32), ValueError, "grad_w must be 2-D"),
    ("grad_w", _ro((4, 3)), ValueError, "grad_w is read-only"),
    ("bias_partials", np.ones((1, 3)), ValueError, r"bias_partials must have shape \(ceil"),
    ("bias_partials", np.ones((2, 2)), ValueError, "bias_partials must have shape"),
    ("bias_partials", np.ones((2, 3), np.float32), TypeError,
     "bias_partials must have dtype float64"),
    ("bias_partials", "no", TypeError, "bias_partials must be a float32 or float64"),
    ("kind", 12, ValueError, r"kind \(activation id\) must be in \[0, 11\]"),
    ("kind", -5, ValueError, "kind"),
    ("block_rows", 0, ValueError, "block_rows must be in"),
    ("dx_tile_rows", 0, ValueError, "dx_tile_rows must be in"),
    ("dx_tile_cols", 0, ValueError, "dx_tile_cols must be in"),
    ("dw_tile_rows", -1, ValueError, "dw_tile_rows must be in"),
    ("dw_tile_cols", 0, ValueError, "dw_tile_cols must be in"),
    ("dw_tile_cols", 2.5, TypeError, "dw_tile_cols must be an integer"),
    ("n_threads", 0, ValueError, "n_threads must be in"),
]


@pytest.mark.parametrize("arg, value, error, message", BACKWARD_BAD,
                         ids=[f"{i}-{a}" for i, (a, *_) in enumerate(BACKWARD_BAD)])
def test_backward_rejects_bad_arguments(arg, value, error, message):
    args = backward_args()
    args[arg] = value
    with pytest.raises(error, match=message):
        K.backward(*args.values())
    for out in ("grad_z", "grad_x", "grad_w", "bias_partials"):
        if out != arg:
            assert np.all(args[out] == SENTINEL), out


def test_backward_rejects_outputs_that_alias_inputs_or_each_other():
    args = backward_args(np.float64)
    for out, other in (("grad_z", "z"), ("grad_z", "grad_a"), ("grad_x", "x"),
                       ("grad_w", "w")):
        with pytest.raises(ValueError, match=f"{out} overlaps {other}"):
            K.backward(*{**args, out: args[other]}.values())
    shared = np.full((6, 4), SENTINEL)
    with pytest.raises(ValueError, match="grad_z overlaps grad_x"):
        K.backward(*{**args, "grad_x": shared,
                     "grad_z": shared.reshape(-1)[6:24].reshape(6, 3)}.values())
    assert np.all(shared == SENTINEL)


def test_backward_sizes_zero():
    for kw in (dict(batch=0), dict(n_in=0), dict(n_out=0)):
        args = backward_args(np.float64, **kw)
        K.backward(*args.values())
        assert not args["grad_w"].any() and not args["grad_x"].any(), kw


# ----------------------------------------------------------------------------- activations
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("name", ACTIVATION_NAMES)
def test_activation_apply_matches_numpy_twin(name, dtype):
    act = get_activation(name)
    x = np.linspace(-9, 9, 1001).astype(dtype) + dtype(0.004)  # off the kinks
    rtol, atol = TOLERANCE[dtype]  # the accuracy contract of the C math
    for derivative in (False, True):
        out = np.full_like(x, SENTINEL)
        K.activation_apply(x, out, act.kernel_id, *act.kernel_params, derivative)
        want = ref.activation_apply(x.astype(np.float64), act, derivative=derivative)
        np.testing.assert_allclose(out.astype(np.float64), want, rtol=rtol, atol=atol,
                                   err_msg=f"{name} derivative={derivative}")


APPLY_BAD = [
    ("x", np.ones((4, 4)), ValueError, "x must be 1-D"),
    ("x", np.ones(32)[::2], ValueError, "x must be C-contiguous"),
    ("x", np.ones(16, np.complex128), TypeError, "x must have dtype float32 or float64"),
    ("x", 3.0, TypeError, "x must be a float32 or float64 numpy array, got float"),
    ("out", np.ones(15), ValueError, r"out must have shape \(16,\) like x"),
    ("out", np.ones(17), ValueError, "out must have shape"),
    ("out", np.ones(16, np.float32), TypeError, "out must have dtype float64 like x"),
    ("out", _ro(16, np.float64), ValueError, "out is read-only"),
    ("kind", 12, ValueError, r"kind \(activation id\) must be in \[0, 11\], got 12"),
    ("kind", -1, ValueError, "kind"),
    ("kind", "tanh", TypeError, "kind .*must be an integer, got str"),
    ("p0", [1.0], TypeError, "p0 must be a real number"),
]


@pytest.mark.parametrize("arg, value, error, message", APPLY_BAD,
                         ids=[f"{i}-{a}" for i, (a, *_) in enumerate(APPLY_BAD)])
def test_activation_apply_rejects_bad_arguments(arg, value, error, message):
    args = dict(x=np.linspace(-1, 1, 16), out=np.full(16, SENTINEL), kind=7, p0=0.0,
                p1=0.0, derivative=False)
    args[arg] = value
    with pytest.raises(error, match=message):
        K.activation_apply(*args.values())
    if arg != "out":
        assert np.all(args["out"] == SENTINEL)


def test_activation_apply_in_place_and_empty():
    x = np.linspace(-1, 1, 16)
    with pytest.raises(ValueError, match="out overlaps x"):  # the C loop is restrict
        K.activation_apply(x, x, 7, 0.0, 0.0, False)
    K.activation_apply(np.empty(0), np.empty(0), 7, 0.0, 0.0, False)


def test_thread_count_above_the_tile_count_gives_the_same_bits():
    base = forward_args(np.float64, batch=9, n_in=5, n_out=7, tile_rows=4, tile_cols=4)
    K.forward(*base.values())
    for n in (1, 5, 64):
        args = forward_args(np.float64, batch=9, n_in=5, n_out=7, tile_rows=4, tile_cols=4)
        args["n_threads"] = n
        K.forward(*args.values())
        for k in ("z", "a", "moments"):
            assert np.array_equal(args[k], base[k]), (k, n)
