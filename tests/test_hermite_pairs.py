"""Mehler's expansion of E[phi(X) phi(Y)] (varprop.theory.hermite_pairs): exact for a
linear phi, within its stated bound of the exact pair rule (closed forms and nested
quadrature, varprop.theory.spatial_gauss.pair_cross) wherever it accepts a pair, and
refusing the pairs it cannot bound (kinks, saturated wide marginals)."""

from __future__ import annotations

import numpy as np
import pytest

from varprop.activations import get_activation
from varprop.theory.gaussian import gaussian_moments
from varprop.theory.hermite_pairs import TOLERANCE, hermite_coefficients, mehler_pairs
from varprop.theory.spatial_gauss import pair_cross


def _pairs(name: str, var_max: float, n: int = 40, seed: int = 0):
    act = get_activation(name)
    rng = np.random.default_rng(seed)
    m1, m2 = rng.normal(0, 0.5, n), rng.normal(0, 0.5, n)
    v1, v2 = rng.uniform(0.05, var_max, n), rng.uniform(0.05, var_max, n)
    c = rng.uniform(-0.999, 0.999, n)
    e1 = np.asarray(gaussian_moments(act, v1, mean=m1).e_phi2, float)
    e2 = np.asarray(gaussian_moments(act, v2, mean=m2).e_phi2, float)
    value, ok = mehler_pairs(hermite_coefficients(act, m1, v1, e1),
                             hermite_coefficients(act, m2, v2, e2), c)
    exact = pair_cross(act, m1, m2, v1, v2, c * np.sqrt(v1 * v2))
    return value, ok, exact, np.sqrt(e1 * e2), (m1, m2, v1, v2, c)


def test_linear_is_exact():
    value, ok, _, _, (m1, m2, v1, v2, c) = _pairs("linear", 9.0)
    assert ok.all()
    np.testing.assert_allclose(value, m1 * m2 + c * np.sqrt(v1 * v2), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name", ["tanh", "sigmoid", "gelu", "gelu_tanh", "silu",
                                  "softplus", "elu", "selu", "softsign", "leaky_relu"])
@pytest.mark.parametrize("var_max", [1.0, 4.0, 30.0])
def test_accepted_pairs_are_within_the_bound_of_the_exact_rule(name, var_max):
    value, ok, exact, scale, _ = _pairs(name, var_max)
    if var_max <= 4.0 and name in ("tanh", "sigmoid", "gelu", "gelu_tanh", "silu",
                                   "softplus"):
        assert ok.all()  # smooth: over the range of most states
    err = np.abs(value - exact) / scale
    assert np.all(err[ok] <= TOLERANCE), err[ok].max()


def test_a_kink_is_refused():
    """ReLU's kink makes the coefficients decay as a power of k: the Parseval tail after the
    kept terms is too large to bound any pair, so the caller's exact rule takes them."""
    _, ok, _, _, _ = _pairs("relu", 4.0)
    assert not ok.any()


def test_the_phase_diagrams_dual_kernel_is_the_same_basis():
    """sum_k alpha_k^2 (c = 1) is E[f(sqrt(q) Z)^2], the Gaussian moment (Parseval)."""
    from varprop.reporting.phase import _DualKernel
    act = get_activation("tanh")
    q = np.array([0.5, 2.0])
    spectrum = _DualKernel(order=400).spectrum(act.value, np.sqrt(q))
    want = np.asarray(gaussian_moments(act, q).e_phi2, float)
    np.testing.assert_allclose(spectrum.sum(axis=1), want, rtol=1e-10)
