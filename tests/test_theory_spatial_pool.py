"""Pooling in the per-pixel theory (varprop/theory/spatial_pool.py, spatial_max.py)
against independent references: Clark's closed form against numerical integration,
the max-pool quadratures against one- and two-dimensional integrals and Monte Carlo,
average and global pooling against sampling and explicit loops.

Monte Carlo tolerances: ``k`` standard errors, ``k`` the two-sided normal quantile at a
family-wise false-alarm rate of 1e-4 per test, split over its checks (Bonferroni);
fixed seeds. The quasi-Monte-Carlo rule adds its stated accuracy.
"""

import functools
import math

import numpy as np
import pytest
from scipy import integrate, stats

from varprop.activations import get_activation
from varprop.theory import spatial as sp
from varprop.theory import spatial_max as sm
from varprop.theory import spatial_pool as spp

RELU, LINEAR, TANH, GELU = (get_activation(n) for n in ("relu", "linear", "tanh", "gelu"))
FAMILY_ALPHA = 1e-4


def _z(checks):
    """Two-sided normal quantile for ``checks`` checks at FAMILY_ALPHA."""
    return float(stats.norm.isf(FAMILY_ALPHA / (2 * checks)))


def test_clark_matches_numerical_integration():
    """Clark's E[max], E[max^2] against the 1-D integral over each variable's density of
    the conditional probability that the other lies below it (scipy quad)."""
    m1, m2, v1, v2, cov = 0.3, -0.2, 1.5, 0.7, 0.4
    s1, s2 = math.sqrt(v1), math.sqrt(v2)

    def moment(k):
        def f(x):
            p1 = stats.norm.pdf(x, m1, s1) * stats.norm.cdf(
                (x - m2 - cov / v1 * (x - m1)) / math.sqrt(v2 - cov ** 2 / v1))
            p2 = stats.norm.pdf(x, m2, s2) * stats.norm.cdf(
                (x - m1 - cov / v2 * (x - m2)) / math.sqrt(v1 - cov ** 2 / v2))
            return x ** k * (p1 + p2)
        return integrate.quad(f, -15, 15, epsabs=1e-13, epsrel=1e-13, limit=200)[0]

    e1, e2 = spp.clark_max_moments(m1, m2, v1, v2, cov)
    assert e1 == pytest.approx(moment(1), rel=1e-10)
    assert e2 == pytest.approx(moment(2), rel=1e-10)
    c = np.array([[v1, cov], [cov, v2]])
    w1, w2, _, wins, accurate = sm.window_max(np.array([m1, m2]), c, LINEAR)
    assert accurate and (w1, w2) == pytest.approx((e1, e2), rel=1e-12)
    alpha = (m1 - m2) / math.sqrt(v1 + v2 - 2 * cov)
    assert wins[0] == pytest.approx(stats.norm.cdf(alpha), rel=1e-10)
    # very unequal variances (a sharp transition inside the winner's integral) and
    # near-perfect correlation
    for v2, rho in ((1e-8, 0.0), (1e-4, 0.5), (4.0, 0.999)):
        c = np.array([[1.0, rho * math.sqrt(v2)], [rho * math.sqrt(v2), v2]])
        got = sm.window_max(np.array([0.0, 0.1]), c, LINEAR)[:2]
        assert got == pytest.approx(spp.clark_max_moments(0.0, 0.1, 1.0, v2, c[0, 1]),
                                    rel=1e-12)


def test_max_of_iid_standard_normals_by_one_dimensional_integrals():
    """E[M], E[M^2] of the max of k i.i.d. N(0,1) (through linear and relu) from the
    density k phi(x) Phi(x)^(k-1); |x| (leaky_relu of slope -1) from that of the max of
    |z|, 2 k phi(x) (2 Phi(x) - 1)^(k-1); gelu from P(gelu(z) < t) by root finding. Up to
    four taps (and independent taps) the quadratures are exact to rounding; the 3x3
    quasi-Monte-Carlo rule (correlated taps) within its stated 1e-3."""
    def ref(k, act, power):
        f = lambda x: act(np.array(x)) ** power * k * stats.norm.pdf(x) \
            * stats.norm.cdf(x) ** (k - 1)  # noqa: E731
        return integrate.quad(f, -12, 12, epsabs=1e-14, points=[0])[0]

    assert ref(4, LINEAR, 1) == pytest.approx(1.0293753730, rel=1e-9)  # the reference
    e1, e2, routed, wins, ok = sm.window_max(np.zeros(4), np.eye(4), LINEAR)
    assert ok and e1 == pytest.approx(ref(4, LINEAR, 1), rel=1e-12)
    assert e2 == pytest.approx(ref(4, LINEAR, 2), rel=1e-12)
    assert wins == pytest.approx([0.25] * 4, rel=1e-12)
    _, _, routed, wins, _ = sm.window_max(np.zeros(4), np.eye(4), RELU)
    assert routed == pytest.approx([0.25 * 15 / 16] * 4, rel=1e-12)  # wins and z > 0
    assert wins == pytest.approx([0.25 * 15 / 16 + 1 / 16] + [0.25 * 15 / 16] * 3,
                                 rel=1e-12)  # all z < 0: relu ties at 0, the first wins
    e1, e2, *_ = sm.window_max(np.zeros(9), np.eye(9), RELU)  # independent: exact too
    assert (e1, e2) == pytest.approx((ref(9, RELU, 1), ref(9, RELU, 2)), rel=1e-12)
    corr9 = 0.999999 * np.eye(9) + 1e-6  # a hair of correlation: the 3x3 QMC rule
    e1, e2, _, wins, ok = sm.window_max(np.zeros(9), corr9, RELU)
    assert not ok and sm.max_rule(RELU, 9) == "qmc"
    assert (e1, e2) == pytest.approx((ref(9, RELU, 1), ref(9, RELU, 2)), rel=1e-3)
    assert np.allclose(wins[1:], 1 / 9 * (1 - 0.5 ** 9), atol=2e-3)

    absolute = get_activation("leaky_relu", negative_slope=-1.0)  # |x|: not monotone
    for k in (2, 3):
        f = lambda x, p: x ** p * k * 2 * stats.norm.pdf(x) \
            * (2 * stats.norm.cdf(x) - 1) ** (k - 1)  # noqa: E731
        want = [integrate.quad(f, 0, 12, args=(p,), epsabs=1e-14)[0] for p in (1, 2)]
        got = sm.window_max(np.zeros(k), np.eye(k), absolute)
        assert sm.max_rule(absolute, k) == "intervals"
        assert got[:2] == pytest.approx(want, rel=1e-12)
    ymin = sm._shape(GELU)[1]

    def g_cdf(t):  # P(gelu(z) < t), z ~ N(0, 1)
        from scipy.optimize import brentq
        if t <= GELU(np.array(ymin)):
            return 0.0
        r = brentq(lambda y: float(GELU(np.array(y))) - t, ymin, 50, xtol=1e-15)
        if t >= 0:
            return stats.norm.cdf(r)
        lo = brentq(lambda y: float(GELU(np.array(y))) - t, -50, ymin, xtol=1e-15)
        return stats.norm.cdf(r) - stats.norm.cdf(lo)

    for k in (2, 3):
        for power in (1, 2):
            f = lambda x: float(GELU(np.array(x))) ** power * k * stats.norm.pdf(x) \
                * g_cdf(float(GELU(np.array(x)))) ** (k - 1)  # noqa: E731
            want = integrate.quad(f, -12, 12, epsabs=1e-13, points=[ymin, 0], limit=200)[0]
            got = sm.window_max(np.zeros(k), np.eye(k), GELU)[power - 1]
            assert got == pytest.approx(want, rel=1e-10, abs=1e-13)


_FACTOR = (np.array([0.2, -0.1, 0.0, 0.35]), np.array([0.9, 0.6, 1.1, 0.4]),
           np.array([0.5, 0.8, 0.3, 0.9]))


def _composite(lo, hi, panels, nodes=16):
    x, w = np.polynomial.legendre.leggauss(nodes)
    edges = np.linspace(lo, hi, panels + 1)
    half, mid = np.diff(edges) / 2, (edges[1:] + edges[:-1]) / 2
    return (mid[:, None] + half[:, None] * x).ravel(), (half[:, None] * w).ravel()


@functools.lru_cache(maxsize=1)
def _factor_reference():
    """Taps ``z_j = mu_j + load_j U + resid_j e_j`` (one common factor U): given U they
    are independent, and tap j is the maximum, at x, with density ``dens_j(x) =
    pdf_j(x) prod_{i != j} cdf_i(x)``. ``E[x^p 1{j wins}]`` is then a 2-D integral of
    one-variable normal functions over (U, x), here on a tensor of composite
    Gauss-Legendre rules (16 nodes a panel, panels narrower than the smallest scale,
    ``min(resid) / max(load) = 0.27`` in U and ``min(resid) = 0.3`` in x, over +-9 in U
    and 14 sd in x, split at x = 0). Returns ``(negative side, positive side)``, each
    ``(3, taps)``: p = 1, 2 and 0."""
    from scipy.special import ndtr
    mu, load, resid = _FACTOR
    u, wu = _composite(-9.0, 9.0, 80)
    wu = wu * np.exp(-0.5 * u * u) / math.sqrt(2 * math.pi)
    sides = []
    for lo, hi in ((-14.0, 0.0), (0.0, 14.0)):
        x, wx = _composite(lo, hi, 60)
        m = mu[:, None, None] + load[:, None, None] * u[None, :, None]  # (tap, u, x)
        t = (x[None, None, :] - m) / resid[:, None, None]
        cdf = ndtr(t)
        pdf = np.exp(-0.5 * t * t) / (resid[:, None, None] * math.sqrt(2 * math.pi))
        out = np.empty((3, mu.size))
        for j in range(mu.size):
            dens = pdf[j] * np.prod(np.delete(cdf, j, axis=0), axis=0)
            for row, power in enumerate((1, 2, 0)):
                out[row, j] = wu @ (dens * x ** power) @ wx
        sides.append(out)
    return sides


@pytest.mark.parametrize("act", [RELU, LINEAR], ids=["relu", "linear"])
def test_four_correlated_taps_match_a_factor_model_integral(act):
    """A 2x2 window of unequal means and variances with one-factor correlations: the
    winner rule against a two-dimensional integral of the factor model (1e-10)."""
    mu, load, resid = _FACTOR
    cov = np.outer(load, load) + np.diag(resid ** 2)
    e1, e2, routed, wins, ok = sm.window_max(mu, cov, act)
    neg, pos = _factor_reference()
    ref = pos if act is RELU else neg + pos
    assert ok
    assert (e1, e2) == pytest.approx((ref[0].sum(), ref[1].sum()), rel=1e-10)
    assert routed == pytest.approx(ref[2], rel=1e-10)  # P(tap wins, phi' = 1 there)
    flat = neg[2].sum() if act is RELU else 0.0  # relu: all below 0 -> the first tap
    assert wins == pytest.approx(ref[2] + flat * (np.arange(4) == 0), rel=1e-10)


def _sample_max_pool(x, act, shape, pool, stride, pads):
    """Max pooling of act(x) with -inf padding, first maximal tap wins (as PyTorch)."""
    n = x.shape[0]
    img = np.full((n, shape[0] + sum(pads[0]), shape[1] + sum(pads[1])), -np.inf)
    img[:, pads[0][0]:pads[0][0] + shape[0], pads[1][0]:pads[1][0] + shape[1]] = \
        act(x).reshape(n, *shape)
    dimg = np.zeros(img.shape)
    dimg[:, pads[0][0]:pads[0][0] + shape[0], pads[1][0]:pads[1][0] + shape[1]] = \
        act.derivative(x).reshape(n, *shape) ** 2
    out = []
    for oi in range((img.shape[1] - pool) // stride + 1):
        for oj in range((img.shape[2] - pool) // stride + 1):
            win = img[:, oi * stride:oi * stride + pool, oj * stride:oj * stride + pool]
            dwin = dimg[:, oi * stride:oi * stride + pool, oj * stride:oj * stride + pool]
            flat, dflat = win.reshape(n, -1), dwin.reshape(n, -1)
            arg = np.argmax(flat, axis=1)
            top = flat[np.arange(n), arg]
            onehot = arg[:, None] == np.arange(flat.shape[1])
            out.append((top, onehot, onehot * dflat))
    return out


@pytest.mark.parametrize("act", [RELU, TANH, GELU], ids=["relu", "tanh", "gelu"])
def test_max_pool_map_matches_sampling(act):
    """A correlated 3x3 map, 2x2 pool, stride 2, padded after (windows of 4, 2 and 1
    taps): per window E[M], E[M^2], the routed gradient and the argmax probability
    against 1e6 samples (their own standard errors)."""
    rng = np.random.default_rng(3)
    p = 9
    a = rng.standard_normal((p, p))
    cov = a @ a.T / p + 0.3 * np.eye(p)
    mean = 0.2 * rng.standard_normal(p)
    z = sp.SpatialMoments(mean.reshape(3, 3), (np.diag(cov) + mean ** 2).reshape(3, 3),
                          cov + np.outer(mean, mean))
    pads = ((0, 1), (0, 1))
    y, route, win = spp.max_pool_forward(z, act, (2, 2), (2, 2), pads, wins=True)
    x = rng.multivariate_normal(mean, cov, size=1_000_000)
    samples = _sample_max_pool(x, act, (3, 3), 2, 2, pads)
    d2 = np.asarray(sp.act_forward(z, act)[1]).ravel()
    src, _ = sp.tap_sources((3, 3), (2, 2), (2, 2), pads, (1, 1))
    zq = _z(4 * 10)
    for o, (top, onehot, routed) in enumerate(samples):
        for est, sample in ((y.mean.ravel()[o], top), (y.second.ravel()[o], top ** 2)):
            assert abs(est - sample.mean()) <= zq * sample.std() / 1000
        for t in range(4):
            if src[t, o] == p:
                assert win[t, o] == 0 and route[t, o] == 0
                continue
            w, r = onehot[:, t], routed[:, t] / d2[src[t, o]]
            assert abs(win[t, o] - w.mean()) <= zq * max(w.std(), 1e-3) / 1000
            assert abs(route[t, o] - r.mean()) <= zq * max(r.std(), 1e-3) / 1000
    assert not y.gaussian and not y.exact  # pixel pairs between windows: approximate


def test_max_pool_backward_sums_windows():
    """Overlapping windows (3-wide, stride 1, 1-D): each pixel collects g_o times its
    routing factor from every window that holds it (explicit loop)."""
    rng = np.random.default_rng(0)
    route = rng.uniform(size=(3, 4))
    g = rng.uniform(size=4)
    got = spp.max_pool_backward(g, route, (3,), (1,), ((0, 0),), (6,))
    want = np.zeros(6)
    for o in range(4):
        for t in range(3):
            want[o + t] += route[t, o] * g[o]
    assert np.allclose(got, want, rtol=1e-14)


def test_avg_and_global_pool_match_sampling():
    """Correlated pixels (a random covariance over a 4x4 map): the 2x2 average pool's
    and the global pool's output moments against 4e5 samples; backward rules against
    explicit loops (count_include_pad with padding)."""
    rng = np.random.default_rng(5)
    p, n = 16, 400_000
    a = rng.standard_normal((p, p))
    cov = a @ a.T / p
    mean = rng.standard_normal(p) * 0.3
    s = sp.SpatialMoments(mean.reshape(4, 4), (np.diag(cov) + mean ** 2).reshape(4, 4),
                          cov + np.outer(mean, mean))
    x = rng.multivariate_normal(mean, cov, size=n).reshape(-1, 4, 4)
    out = spp.avg_pool_forward(s, (2, 2), (2, 2), ((0, 0), (0, 0)), True)
    pooled = x.reshape(-1, 2, 2, 2, 2).mean(axis=(2, 4))
    zq = _z(3 * 4 + 2)
    assert out.exact
    assert np.all(np.abs(out.mean - pooled.mean(0)) <= zq * pooled.std(0) / math.sqrt(n))
    assert np.all(np.abs(out.second - (pooled ** 2).mean(0))
                  <= zq * (pooled ** 2).std(0) / math.sqrt(n))
    flat = pooled.reshape(n, 4)
    emp = flat.T @ flat / n
    se = (flat[:, :, None] * flat[:, None, :]).std(0) / math.sqrt(n)
    assert np.all(np.abs(out.cross - emp) <= zq * se)
    g_mean, g_var = spp.global_avg_pool(s)
    sample = x.mean(axis=(1, 2))
    assert abs(g_mean - sample.mean()) <= zq * sample.std() / math.sqrt(n)
    # the variance estimate's standard error: sd of (y - mean)^2 over sqrt(n)
    assert abs(g_var - sample.var()) <= zq * ((sample - sample.mean()) ** 2).std() / math.sqrt(n)
    assert np.allclose(spp.global_avg_pool_backward(3.0, (4, 4)), 3.0 / 256, rtol=1e-15)
    g = rng.uniform(size=(3, 3))
    for include in (True, False):
        got = spp.avg_pool_backward(g, (2, 2), (2, 2), ((1, 1), (1, 1)), include, (4, 4))
        want = np.zeros((4, 4))
        for oi, oj in np.ndindex(3, 3):
            cells = [(oi * 2 + a - 1, oj * 2 + b - 1) for a in (0, 1) for b in (0, 1)]
            inside = [(i, j) for i, j in cells if 0 <= i < 4 and 0 <= j < 4]
            count = 4 if include else len(inside)
            for i, j in inside:
                want[i, j] += g[oi, oj] / count ** 2
        assert np.allclose(got, want, rtol=1e-14)


def test_large_correlated_window_by_quasi_monte_carlo():
    """A 3x3 window of correlated taps (the quasi-Monte-Carlo rule): moments within
    the stated 1e-3 relative and win / routing shares within 2e-3 of 1e6 samples
    (plus their standard errors)."""
    rng = np.random.default_rng(8)
    a = rng.standard_normal((9, 9))
    cov = a @ a.T / 9 + 0.3 * np.eye(9)
    mu = 0.2 * rng.standard_normal(9)
    n = 1_000_000
    x = rng.multivariate_normal(mu, cov, size=n)
    zq = _z(2 * (2 + 18))
    for act in (RELU, GELU):
        e1, e2, routed, wins, ok = sm.window_max(mu, cov, act)
        assert not ok
        ph = act(x)
        arg = np.argmax(ph, axis=1)
        top = ph[np.arange(n), arg]
        for est, sample in ((e1, top), (e2, top ** 2)):
            assert abs(est - sample.mean()) <= zq * sample.std() / 1000 + 1e-3 * abs(est)
        d2 = act.derivative(x) ** 2
        for j in range(9):
            w = arg == j
            assert abs(wins[j] - w.mean()) <= zq * w.std() / 1000 + 2e-3
            r = w * d2[:, j]
            assert abs(routed[j] - r.mean()) <= zq * r.std() / 1000 + 2e-3


def test_pools_without_pixel_pairs_assume_independent_pixels_and_say_so():
    s = sp.white((2, 2), 0.0, 1.0)  # no pairs carried
    y, route = spp.max_pool_forward(s, LINEAR, (2, 2), (2, 2), ((0, 0), (0, 0)))
    assert y.mean[0, 0] == pytest.approx(1.0293753730, rel=1e-9)  # 4 i.i.d. N(0, 1)
    assert not y.exact and y.cross is None and route == pytest.approx(np.full((4, 1), 0.25))
    out = spp.avg_pool_forward(s, (2, 2), (2, 2), ((0, 0), (0, 0)), True)
    assert not out.exact and out.second[0, 0] == pytest.approx(0.25, rel=1e-15)




def test_mvn_below_refuses_more_than_three_variables():
    """Four variables used to be cut to three silently (the 3x3 max-pool defect's class)."""
    from varprop.theory.spatial_gauss import mvn_below
    with pytest.raises(ValueError, match="1 to 3 variables"):
        mvn_below(np.zeros((2, 4)), np.eye(4))
    with pytest.raises(ValueError, match="corr"):
        mvn_below(np.zeros((2, 3)), np.eye(2))


def test_a_pool_before_any_weighted_layer_flags_the_layers_after_it():
    """A global pool on an image too large for pixel pairs (over 1024 pixels) is flagged;
    before any weighted layer it used to flag nothing (the last weighted index was -1)."""
    import varprop
    from varprop.initializers import get as get_initializer
    from varprop.layers import Dense, GlobalAvgPool
    from varprop.network import Network
    w = get_initializer("glorot_normal")
    net = Network((40, 40, 3), (GlobalAvgPool(), Dense(3, 8, w, None)))
    spatial = [a for a in varprop.analyze(net).meta["approximations"] if a["kind"] == "spatial"]
    assert spatial and spatial[0]["layers"][0][0] == 0
