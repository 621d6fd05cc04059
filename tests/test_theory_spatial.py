"""Pooling rules of the per-pixel theory against independent references: Clark's law
against numerical integration, the max-pool quadrature against a one-dimensional
integral and Monte Carlo (fixed seeds, tolerances from the sample size), average and
global pooling against sampling."""

import math

import numpy as np
import pytest
from scipy import integrate, stats

from varprop.activations import get_activation
from varprop.theory import spatial as sp
from varprop.theory import spatial_pool as spp

RELU, LINEAR, TANH = (get_activation(n) for n in ("relu", "linear", "tanh"))


def test_clark_matches_numerical_integration():
    m1, m2, v1, v2, cov = 0.3, -0.2, 1.5, 0.7, 0.4
    c = np.array([[v1, cov], [cov, v2]])
    dist = stats.multivariate_normal([m1, m2], c)

    def moment(k):
        f = lambda y, x: max(x, y) ** k * dist.pdf([x, y])  # noqa: E731
        return integrate.dblquad(f, -12, 12, -12, 12, epsabs=1e-11)[0]

    e1, e2 = spp.clark_max_moments(m1, m2, v1, v2, cov)
    assert e1 == pytest.approx(moment(1), rel=1e-7)
    assert e2 == pytest.approx(moment(2), rel=1e-7)


def test_max_of_four_iid_standard_normals_by_the_window_rule():
    """E[max] and E[max^2] of 4 i.i.d. N(0,1) by one-dimensional integration of the
    maximum's density 4 phi(x) Phi(x)^3: the rule by the winner is exact to rounding,
    the tensor rule (for non-monotone activations) within its stated 2 %."""
    def moment(k):
        f = lambda x: x ** k * 4 * stats.norm.pdf(x) * stats.norm.cdf(x) ** 3  # noqa: E731
        return integrate.quad(f, -12, 12, epsabs=1e-13)[0]

    e1, e2, routed = spp._window(np.zeros(4), np.eye(4), LINEAR)
    assert moment(1) == pytest.approx(1.0293753730, rel=1e-9)  # the reference itself
    assert e1 == pytest.approx(moment(1), rel=1e-9)
    assert e2 == pytest.approx(moment(2), rel=1e-9)
    assert routed == pytest.approx([0.25] * 4, rel=1e-9)  # each wins a quarter
    _, r2, relu_routed = spp._window(np.zeros(4), np.eye(4), RELU)
    assert relu_routed == pytest.approx([0.25 * 15 / 16] * 4, rel=1e-9)  # and is > 0
    t1, t2, _ = spp._window_tensor(np.zeros(4), np.eye(4), LINEAR)
    assert t1 == pytest.approx(moment(1), rel=0.03)
    assert t2 == pytest.approx(moment(2), rel=0.03)


def _window_mc(mu, cov, act, n=2_000_000, seed=0):
    z = np.random.default_rng(seed).multivariate_normal(mu, cov, size=n)
    phi = act(z)
    win = np.argmax(phi, axis=1)
    top = phi[np.arange(n), win]
    d2 = act.derivative(z) ** 2
    routed = np.array([np.mean((win == j) * d2[:, j]) for j in range(mu.size)])
    return top, routed


@pytest.mark.parametrize("act, accuracy", [(RELU, 1e-8), (TANH, 1e-8), (LINEAR, 1e-8),
                                           (get_activation("gelu"), 0.03)])
def test_max_pool_window_matches_monte_carlo(act, accuracy):
    """A correlated 2x2 window with unequal means and variances: the moments within 5
    Monte-Carlo standard errors (2e6 samples; false alarm ~1e-6 per check) plus the
    rule's own stated accuracy (by the winner: 1e-8; GELU, not monotone, by the tensor
    rule: 3 %)."""
    mu = np.array([0.1, -0.2, 0.0, 0.3])
    a = np.random.default_rng(3).standard_normal((4, 4))
    cov = a @ a.T / 4 + 0.5 * np.eye(4)
    e1, e2, routed = spp._window(mu, cov, act)
    top, mc_routed = _window_mc(mu, cov, act)
    n = top.size
    for est, sample in ((e1, top), (e2, top ** 2)):
        se = sample.std() / math.sqrt(n)
        assert abs(est - sample.mean()) <= 5 * se + accuracy * abs(sample.mean())
    assert np.allclose(routed, mc_routed, atol=5 * 0.5 / math.sqrt(n) + accuracy)


def test_avg_and_global_pool_variance_match_sampling():
    """Correlated pixels (a random covariance over a 4x4 map): the average pool's and
    the global pool's output moments against 400,000 samples."""
    rng = np.random.default_rng(5)
    p = 16
    a = rng.standard_normal((p, p))
    cov = a @ a.T / p
    mean = rng.standard_normal(p) * 0.3
    s = sp.SpatialMoments(mean.reshape(4, 4), (np.diag(cov) + mean ** 2).reshape(4, 4),
                          cov + np.outer(mean, mean))
    x = rng.multivariate_normal(mean, cov, size=400_000).reshape(-1, 4, 4)
    out = spp.avg_pool_forward(s, (2, 2), (2, 2), ((0, 0), (0, 0)), True)
    pooled = x.reshape(-1, 2, 2, 2, 2).mean(axis=(2, 4))
    assert np.allclose(out.mean, pooled.mean(axis=0), atol=5 * pooled.std(0).max() / 632)
    assert np.allclose(out.second, (pooled ** 2).mean(axis=0), rtol=0.02)
    g_mean, g_var = spp.global_avg_pool(s)
    sample = x.mean(axis=(1, 2))
    assert g_mean == pytest.approx(sample.mean(), abs=5 * sample.std() / 632)
    assert g_var == pytest.approx(sample.var(), rel=0.02)


def test_conv_forward_reads_padding_as_zero():
    """A 1-D 'same' convolution of width 3 on 5 white pixels: the end pixels see two
    taps, the others three (an explicit count)."""
    s = sp.white((5,), 0.0, 2.0)
    z = sp.conv_forward(s, w_mean=0.0, w_var=0.5, b_mean=0.0, b_var=0.1, fan_channels=4,
                        kernel=(3,), stride=(1,), padding_pairs=((1, 1),), dilation=(1,))
    taps = np.array([2, 3, 3, 3, 2])
    assert np.allclose(z.second, 0.5 * 4 * 2.0 * taps + 0.1, rtol=1e-15)
