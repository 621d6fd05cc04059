"""A kernel called right after a numpy matmul (whose BLAS threads may still spin) must not
be more than 1.2x slower than when called alone.

Run:  pytest bench/bench_interference.py --benchmark-enable
"""

import numpy as np

import varprop
from _cases import layer_data

BATCH, WIDTH = 256, 1024


def test_kernel_alone(benchmark):
    x, w, b = layer_data(BATCH, WIDTH, np.float32)
    benchmark.group = "after numpy matmul"
    out = benchmark(varprop.dense_forward, x, w, b, "tanh")
    assert out.a.shape == (BATCH, WIDTH)


def test_kernel_after_numpy_matmul(benchmark):
    x, w, b = layer_data(BATCH, WIDTH, np.float32)
    big = np.ones((512, 512), np.float32)
    benchmark.group = "after numpy matmul"

    def setup():
        big @ big  # leaves numpy's BLAS threads awake
        return (x, w, b, "tanh"), {}

    out = benchmark.pedantic(varprop.dense_forward, setup=setup, rounds=30)
    assert out.a.shape == (BATCH, WIDTH)
