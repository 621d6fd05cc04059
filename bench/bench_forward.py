"""Fused forward against the bare BLAS GEMM and plain numpy, in one group per shape.

Run:  pytest bench/bench_forward.py --benchmark-enable --benchmark-group-by=group
Targets (2 threads): fused <= 1.05x GEMM (1.08x with stats); tanh/gelu >= 1.3x faster
than numpy at widths <= 1024; >= 150 GFLOP/s at 256x1024x1024 float32.
"""

import numpy as np
import pytest

import varprop
from _cases import (ACTIVATIONS, DTYPES, SHAPES, bare_gemm, case_id, layer_data,
                    numpy_forward)

THREADS = 2
PARAMS = [(b, w, dt, act) for (b, w) in SHAPES for dt in DTYPES for act in ACTIVATIONS]


def _close(a, b, dtype):
    tol = 1e-3 if dtype == np.float32 else 1e-10
    np.testing.assert_allclose(a, b, rtol=tol, atol=tol)


@pytest.mark.parametrize("batch, width, dtype, activation", PARAMS,
                         ids=[case_id(*p) for p in PARAMS])
def test_fused_forward(benchmark, batch, width, dtype, activation):
    x, w, b = layer_data(batch, width, dtype)
    benchmark.group = "forward " + case_id(batch, width, dtype, activation)
    benchmark.extra_info["gflop"] = 2 * batch * width * width / 1e9
    out = benchmark(varprop.dense_forward, x, w, b, activation, n_threads=THREADS)
    _close(out.a, numpy_forward(x, w, b, activation), dtype)


@pytest.mark.parametrize("batch, width, dtype, activation", PARAMS,
                         ids=[case_id(*p) for p in PARAMS])
def test_fused_forward_with_stats(benchmark, batch, width, dtype, activation):
    x, w, b = layer_data(batch, width, dtype)
    benchmark.group = "forward " + case_id(batch, width, dtype, activation)
    out = benchmark(varprop.dense_forward, x, w, b, activation, stats=True,
                    n_threads=THREADS)
    _close(out.stats.a_var, numpy_forward(x, w, b, activation).astype(np.float64).var(0),
           dtype)


@pytest.mark.parametrize("batch, width, dtype, activation", PARAMS,
                         ids=[case_id(*p) for p in PARAMS])
def test_numpy_forward(benchmark, batch, width, dtype, activation):
    x, w, b = layer_data(batch, width, dtype)
    benchmark.group = "forward " + case_id(batch, width, dtype, activation)
    out = benchmark(numpy_forward, x, w, b, activation)
    assert out.shape == (batch, width)


@pytest.mark.parametrize("batch, width, dtype, activation", PARAMS,
                         ids=[case_id(*p) for p in PARAMS])
def test_bare_gemm(benchmark, batch, width, dtype, activation):
    x, w, _ = layer_data(batch, width, dtype)
    benchmark.group = "forward " + case_id(batch, width, dtype, activation)
    out = benchmark(bare_gemm, x, w)
    _close(out, x @ w, dtype)
