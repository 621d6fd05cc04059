"""Shapes, baselines and data shared by the benchmark suites and bench/ratios.py."""

from __future__ import annotations

import statistics
import time
from typing import Any, Callable

import numpy as np
from scipy import special
from scipy.linalg import blas

# (batch, width): a layer of width -> width. A representative subset of the grid.
SHAPES = [(64, 256), (256, 1024), (1024, 1024), (64, 4096)]
ACTIVATIONS = ["relu", "tanh", "gelu"]
DTYPES = [np.float32, np.float64]

_SQRT_HALF = np.sqrt(0.5)

# Plain numpy, as a user would write act(x @ w + b).
NUMPY_ACTIVATIONS = {
    "relu": lambda z: np.maximum(z, 0),
    "tanh": np.tanh,
    "gelu": lambda z: 0.5 * z * (1 + special.erf(z * _SQRT_HALF)),
}
NUMPY_DERIVATIVES = {
    "relu": lambda z: (z > 0).astype(z.dtype),
    "tanh": lambda z: 1 - np.tanh(z) ** 2,
    "gelu": lambda z: 0.5 * (1 + special.erf(z * _SQRT_HALF))
    + z * np.exp(-0.5 * z * z) / np.sqrt(2 * np.pi),
}


def layer_data(batch: int, width: int, dtype, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, width)).astype(dtype)
    w = (rng.standard_normal((width, width)) / np.sqrt(width)).astype(dtype)
    b = (0.1 * rng.standard_normal(width)).astype(dtype)
    return x, w, b


def bare_gemm(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """x @ w through scipy's BLAS with no copies: row-major z is column-major w^T x^T."""
    gemm = blas.sgemm if x.dtype == np.float32 else blas.dgemm
    return gemm(1.0, w.T, x.T).T


def numpy_forward(x, w, b, activation):
    return NUMPY_ACTIVATIONS[activation](x @ w + b)


def numpy_forward_backward(x, w, b, activation, grad_a):
    z = x @ w + b
    a = NUMPY_ACTIVATIONS[activation](z)
    dz = grad_a * NUMPY_DERIVATIVES[activation](z)
    return a, dz @ w.T, x.T @ dz, dz.sum(axis=0)


def case_id(batch, width, dtype, activation=None):
    parts = [f"{batch}x{width}x{width}", np.dtype(dtype).name]
    if activation:
        parts.append(activation)
    return "-".join(parts)


# OpenBLAS's worker threads spin for about 0.1 s after each multithreaded call before
# they sleep; a kernel timed inside that window shares a core with them (bench/ratios.py's
# last line measures exactly that). settle=SETTLE_S times a contender in its own steady
# state, after the previous one's threads have gone to sleep.
SETTLE_S = 0.5


def call_times(fn: Callable[[], object], repeat: int, settle: float = 0.0) -> list[float]:
    """Wall times of ``repeat`` calls of ``fn``, after a pause of ``settle`` seconds and
    one warm-up call."""
    if settle:
        time.sleep(settle)
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def median_time(fn: Callable[[], object], repeat: int, settle: float = 0.0) -> float:
    return statistics.median(call_times(fn, repeat, settle))


def interleaved_times(fns: dict[str, Callable[[], object]], repeat: int, rounds: int
                      ) -> dict[str, float]:
    """Each contender's best and median time (keys ``name`` and ``name_median``):
    ``rounds`` rounds in which every contender in turn runs ``repeat`` calls after a
    pause of SETTLE_S, so the previous one's spinning threads have gone to sleep. The
    best of all calls is the figure least disturbed by other processes on a shared
    machine; the median is kept too. ``name_all`` holds every call's time."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for k, f in fns.items():
            times[k] += call_times(f, repeat, SETTLE_S)
    out: dict[str, Any] = {}
    for k, v in times.items():
        out[k], out[k + "_median"], out[k + "_all"] = min(v), float(np.median(v)), v
    return out
