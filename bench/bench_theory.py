"""Speed of the mean-field tools whose wall-clock guards used to sit in tests/ (a test
asserts results, never a time: a shared CI machine makes any limit flaky), each with its
result asserted.

(a) ``gaussian_moments`` of 1,000 variances (logspace 1e-3 .. 1e3), for every registry
    activation: target well under 50 ms an activation (from tests/test_gaussian.py).
(b) ``finite_width.regime`` of a 5,000-layer width-64 plain chain, for relu, tanh and
    gelu: target about 0.01 s, linear in depth (from tests/test_finite_width.py).

Run:  pytest bench/bench_theory.py --benchmark-enable --benchmark-group-by=group
As tests (CI): pytest bench/bench_theory.py --benchmark-disable (each case runs once and
checks its result; the timings are not asserted, they depend on the machine).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import varprop
from varprop.activations import ACTIVATION_NAMES
from varprop.network import mlp
from varprop.theory import finite_width as fw
from varprop.theory import gaussian_moments

Q = np.logspace(-3, 3, 1000)
DEPTH_B, WIDTH_B = 5000, 64


# ----------------------------------------------------------------------------- (a)
def check_moments(name: str, g) -> None:
    """Finite, Var = E[phi^2] - E[phi]^2 >= 0, and the closed forms of relu and linear
    (docs/theory.md section 5): E[relu] = sqrt(q / (2 pi)), E[relu^2] = q / 2."""
    e1, e2, d2, var = (np.asarray(v) for v in g)
    for v in (e1, e2, d2, var):
        assert v.shape == Q.shape and np.all(np.isfinite(v)), name
    assert np.all(var >= 0) and np.all(e2 >= 0) and np.all(d2 >= 0), name
    np.testing.assert_allclose(var, e2 - e1 * e1, rtol=1e-9, atol=1e-12 * e2.max(), err_msg=name)
    if name == "relu":
        np.testing.assert_allclose(e1, np.sqrt(Q / (2 * math.pi)), rtol=1e-12)
        np.testing.assert_allclose(e2, Q / 2, rtol=1e-12)
        np.testing.assert_allclose(d2, 0.5, rtol=1e-12)
    if name == "linear":
        np.testing.assert_allclose(e2, Q, rtol=1e-12)
        np.testing.assert_allclose(d2, 1.0, rtol=1e-12)


@pytest.mark.parametrize("name", ACTIVATION_NAMES)
def test_gaussian_moments_thousand_variances(benchmark, name):
    gaussian_moments(name, Q)  # warm-up: rule construction, caches
    benchmark.group = "gaussian_moments of 1000 q"
    check_moments(name, benchmark(gaussian_moments, name, Q))


# ----------------------------------------------------------------------------- (b)
def _context():
    from varprop._analytic_parts import _Context  # what one analyze call caches

    return _Context()


@pytest.mark.parametrize("act", ["relu", "tanh", "gelu"])
def test_finite_width_regime_deep_chain(benchmark, act):
    net = mlp([WIDTH_B] * (DEPTH_B + 1), act, "he_normal")
    q = varprop.analyze(net).column("z_var")
    benchmark.group = f"finite_width.regime {DEPTH_B} x {WIDTH_B}"
    r = benchmark.pedantic(fw.regime, args=(net, q, _context()), rounds=3, iterations=1)
    # 5,000 layers of width 64 are far into the finite-width regime (docs/theory.md
    # section 11): the spread passes the threshold, by far
    assert r.layers and r.sigma["max"] > 10 and r.sigma["max"] > fw.THRESHOLD
