"""Thread counts: every n_threads has one bound, and a forked child never deadlocks."""

from __future__ import annotations

import multiprocessing
import sys

import numpy as np
import pytest

import varprop
from varprop import _threads

pytestmark = pytest.mark.skipif(not varprop.kernels.extension_available(),
                                reason="needs the compiled kernels")


@pytest.mark.parametrize("n", [10**9, 2**31, _threads.MAX_THREADS + 1])
def test_huge_thread_counts_are_one_clear_error(n):
    # these used to end the process (libgomp: out of memory allocating thread stacks)
    x, w = np.ones((4, 3), "f4"), np.ones((3, 5), "f4")
    with pytest.raises(ValueError, match="n_threads must be at most"):
        varprop.dense_forward(x, w, n_threads=n)
    with pytest.raises(ValueError, match="n_threads must be at most"):
        varprop.measure(varprop.mlp([4, 4]), batch=4, seeds=1, n_threads=n)
    with pytest.raises(ValueError, match="n must be at most"):
        varprop.set_num_threads(n)


def test_the_largest_count_works_and_gives_the_same_bits():
    x = np.random.default_rng(0).standard_normal((50, 7)).astype("f4")
    w = np.random.default_rng(1).standard_normal((7, 9)).astype("f4")
    ref = varprop.dense_forward(x, w, activation="tanh", n_threads=1).a
    big = varprop.dense_forward(x, w, activation="tanh", n_threads=_threads.MAX_THREADS).a
    assert np.array_equal(ref, big)


def _child_forward(args):
    x, w = args
    return varprop.dense_forward(x, w, n_threads=2).a


def _child_measure(_):
    return varprop.measure(varprop.mlp([64, 64, 64]), batch=64, seeds=2,
                           n_threads=2).column("z_var")


@pytest.mark.skipif(sys.platform != "linux", reason="fork start method")
def test_kernels_in_a_forked_child_do_not_deadlock():
    # GNU OpenMP's pool does not survive fork(): with 2+ threads in the parent and the
    # child, the child used to hang forever. Now the child runs on one thread.
    x = np.ones((600, 256), "f4")
    w = np.ones((256, 300), "f4")
    parent = varprop.dense_forward(x, w, n_threads=2).a
    net = varprop.mlp([64, 64, 64])
    measured = varprop.measure(net, batch=64, seeds=2, n_threads=2).column("z_var")
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(1) as pool:
        child = pool.apply_async(_child_forward, ((x, w),)).get(timeout=60)
        child_measured = pool.apply_async(_child_measure, (None,)).get(timeout=60)
    assert np.array_equal(parent, child)
    assert np.array_equal(measured, child_measured)


def test_activation_apply_derivative_must_be_a_flag():
    # 'no' is truthy: it used to return the derivative
    with pytest.raises(TypeError, match="derivative must be True or False"):
        varprop.activation_apply(np.ones(3), "relu", derivative="no")


@pytest.mark.parametrize("dtype", ["f4", "f8"])
@pytest.mark.parametrize("name, params", [(n, {}) for n in varprop.ACTIVATION_NAMES]
                         + [("leaky_relu", {"negative_slope": 0.0}),
                            ("elu", {"alpha": 0.0})])
def test_kernels_match_the_twin_at_infinities(name, params, dtype):
    # the class of leaky_relu(slope 0)(-inf) = NaN: a zero parameter times an infinite
    # input in a C loop, where the numpy twin gives the limit
    act = varprop.get_activation(name, **params)
    x = np.array([-np.inf, np.inf, -1e300, 1e300, 0.0, np.nan], dtype)
    for derivative in (False, True):
        got = varprop.activation_apply(x, act, derivative=derivative)
        want = (act.derivative(x) if derivative else act(x)).astype(dtype)
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=0, equal_nan=True,
                                   err_msg=f"{name} {params} derivative={derivative}")


def test_measure_is_bitwise_the_same_for_any_thread_count():
    # seeds side by side get n_threads // workers kernel threads each (4 seeds on 16
    # threads: 4 each); the records must not depend on it
    net = varprop.mlp([48, 40, 40, 8], activation="tanh")
    runs = [varprop.measure(net, batch=70, seeds=4, n_threads=n) for n in (1, 2, 3, 8, 16)]
    for field in ("z_var", "a_var", "grad_var", "weight_grad_var"):
        first = runs[0].column(field)
        for n, r in zip((2, 3, 8, 16), runs[1:]):
            assert np.array_equal(r.column(field), first), (field, n)
