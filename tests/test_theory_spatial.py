"""The per-pixel theory of convolutional networks (varprop/theory/spatial.py,
spatial_gauss.py) against independent references: explicit-loop recursions and Monte
Carlo sampling of wide random networks. Pooling: tests/test_theory_spatial_pool.py.

Monte Carlo tolerances come from the samples: a check passes within ``k`` standard
errors, ``k`` the two-sided normal (or Student t, for a handful of replicate networks)
quantile at a family-wise false-alarm rate of 1e-4 per test, split over its checks
(Bonferroni). Fixed seeds make every run the same. Where the theory is a mean-field
limit, a sampled finite network differs from it by ``O(1/fan_in)``; those checks add
``5 / fan_in`` relative (section 11 of docs/theory.md: ReLU's relative fluctuation of a
second moment is ``K_f / n = 5 / n``, a bound on its second-order bias).
"""

import itertools
import math

import numpy as np
import pytest
from scipy import integrate, stats

from varprop.activations import get_activation
from varprop.theory import spatial as sp
from varprop.theory.spatial_gauss import _nested_pair, pair_cross

RELU, TANH, GELU = (get_activation(n) for n in ("relu", "tanh", "gelu"))
FAMILY_ALPHA = 1e-4


def _z(checks):
    """Two-sided normal quantile for ``checks`` checks at FAMILY_ALPHA."""
    return float(stats.norm.isf(FAMILY_ALPHA / (2 * checks)))


def _t(checks, dof):
    return float(stats.t.isf(FAMILY_ALPHA / (2 * checks), dof))


# ----------------------------------------------------------------------------- geometry
def test_padding_rules():
    assert sp.resolve_padding("valid", (7,), 3) == ((0, 0),)
    # TF "same": total = max((ceil(n/s) - 1) s + (k - 1) d + 1 - n, 0), before = total // 2
    assert sp.resolve_padding("same", (7, 8), 3, 2) == ((1, 1), (0, 1))
    assert sp.resolve_padding("same", (8,), 3, 1, 2) == ((2, 2),)
    assert sp.resolve_padding("same", (5,), 4) == ((1, 2),)
    assert sp.resolve_padding(1, (5, 5), 3) == ((1, 1), (1, 1))
    assert sp.resolve_padding([(0, 2), 1], (5, 5), 3) == ((0, 2), (1, 1))
    assert sp.output_shape((7, 8), 3, 2, "same") == (4, 4)
    assert sp.output_shape((9,), 3, 1, "valid", 2) == (5,)
    with pytest.raises(ValueError):
        sp.output_shape((3,), 3, 1, "valid", 2)
    with pytest.raises(ValueError):
        sp.resolve_padding("full", (5,), 3)


# ----------------------------------------------------------------------------- explicit loops
def _out_len(n, k, s, d, lo, hi):
    return (n + lo + hi - (k - 1) * d - 1) // s + 1


def _ref_conv(mean, second, geo, v, c, m_b, v_b):
    """Explicit loops over output pixels and taps, zero-mean weights: E[z] = m_b,
    E[z^2] = v C sum_{taps inside} E[x^2] + v_b + m_b^2."""
    shape = second.shape
    kernel, stride, pads, dil = geo
    out = tuple(_out_len(n, k, s, d, lo, hi)
                for n, k, s, d, (lo, hi) in zip(shape, kernel, stride, dil, pads))
    z2 = np.zeros(out)
    for o in itertools.product(*[range(n) for n in out]):
        acc = 0.0
        for tap in itertools.product(*[range(k) for k in kernel]):
            pos = tuple(oi * s + ki * d - lo for oi, ki, s, d, (lo, _)
                        in zip(o, tap, stride, dil, pads))
            if all(0 <= p < n for p, n in zip(pos, shape)):
                acc += second[pos]
        z2[o] = v * c * acc + v_b + m_b * m_b
    return np.full(out, m_b), z2


def _ref_relu(mean, second):
    """E[relu], E[relu^2], E[relu'^2] of N(m, s^2), pixel by pixel (closed forms)."""
    a1, a2, d2 = (np.zeros(mean.shape) for _ in range(3))
    for idx in np.ndindex(*mean.shape):
        m = float(mean[idx])
        s = math.sqrt(float(second[idx]) - m * m)
        cdf = 0.5 * (1 + math.erf(m / s / math.sqrt(2)))
        pdf = math.exp(-0.5 * (m / s) ** 2) / math.sqrt(2 * math.pi)
        a1[idx] = m * cdf + s * pdf
        a2[idx] = (m * m + s * s) * cdf + m * s * pdf
        d2[idx] = cdf
    return a1, a2, d2


def _ref_conv_backward(g_out, geo, in_shape, factor):
    kernel, stride, pads, dil = geo
    g_in = np.zeros(in_shape)
    for o in np.ndindex(*g_out.shape):
        for tap in itertools.product(*[range(k) for k in kernel]):
            pos = tuple(oi * s + ki * d - lo for oi, ki, s, d, (lo, _)
                        in zip(o, tap, stride, dil, pads))
            if all(0 <= p < n for p, n in zip(pos, in_shape)):
                g_in[pos] += factor * g_out[o]
    return g_in


def _ref_weight_grad(second, g_out, geo):
    kernel, stride, pads, dil = geo
    per_tap = []
    for tap in itertools.product(*[range(k) for k in kernel]):
        acc = 0.0
        for o in np.ndindex(*g_out.shape):
            pos = tuple(oi * s + ki * d - lo for oi, ki, s, d, (lo, _)
                        in zip(o, tap, stride, dil, pads))
            if all(0 <= p < n for p, n in zip(pos, second.shape)):
                acc += second[pos] * g_out[o]
        per_tap.append(acc)
    return float(np.mean(per_tap))


def _geo(shape, kernel, stride, padding, dil):
    n = len(shape)
    kernel, stride, dil = ((v,) * n for v in (kernel, stride, dil))
    return kernel, stride, sp.resolve_padding(padding, shape, kernel, stride, dil), dil


def _run_both(shape, layers, channels, m_b=0.0, v_b=0.0):
    """Forward and backward through ``layers`` (kernel, stride, padding, dilation) of
    He-normal ReLU convolutions, by varprop and by the loops; returns both."""
    s = sp.white(shape, 0.0, 1.0)
    ref_mean, ref_second = np.zeros(shape), np.ones(shape)
    records = []
    for kernel, stride, padding, dil in layers:
        geo = _geo(s.spatial, kernel, stride, padding, dil)
        v = 2.0 / (math.prod(geo[0]) * channels)
        z = sp.conv_forward(s, w_mean=0.0, w_var=v, b_mean=m_b, b_var=v_b,
                            fan_channels=channels, kernel=geo[0], stride=geo[1],
                            padding_pairs=geo[2], dilation=geo[3])
        zm, z2 = _ref_conv(ref_mean, ref_second, geo, v, channels, m_b, v_b)
        a, d2 = sp.act_forward(z, RELU)
        ref_mean, ref_second, ref_d2 = _ref_relu(zm, z2)
        records.append((s, z, a, d2, geo, v, zm, z2, ref_mean, ref_second, ref_d2))
        s = a
    g = np.ones(s.spatial)
    g_ref = np.ones(s.spatial)
    for s_in, z, a, d2, geo, v, *_rest, ref_d2 in reversed(records):
        gz, gz_ref = sp.act_backward(g, d2), g_ref * ref_d2
        assert np.allclose(gz, gz_ref, rtol=1e-10, atol=0)
        wg = sp.conv_weight_grad_var(s_in, gz, kernel=geo[0], stride=geo[1],
                                     padding_pairs=geo[2], dilation=geo[3])
        assert wg == pytest.approx(_ref_weight_grad(s_in.second, gz, geo), rel=1e-12)
        g = sp.conv_backward(gz, w_mean=0.0, w_var=v, out_channels=channels,
                             kernel=geo[0], stride=geo[1], padding_pairs=geo[2],
                             dilation=geo[3], in_spatial=s_in.spatial)
        g_ref = _ref_conv_backward(gz_ref, geo, s_in.spatial, v * channels)
        assert np.allclose(g, g_ref, rtol=1e-10, atol=0)
    return records, g, g_ref


def test_ten_relu_layers_8x8_same_match_explicit_loops():
    records, g, _ = _run_both((8, 8), [(3, 1, "same", 1)] * 10, channels=64)
    for s, z, a, d2, *_g, zm, z2, ref_mean, ref_second, ref_d2 in records:
        assert np.allclose(z.mean, zm, rtol=1e-10, atol=0)
        assert np.allclose(z.second, z2, rtol=1e-10, atol=0)
        assert np.allclose(a.mean, ref_mean, rtol=1e-10, atol=0)
        assert np.allclose(a.second, ref_second, rtol=1e-10, atol=0)
        assert np.allclose(d2, ref_d2, rtol=1e-10, atol=0)
        assert z.exact and z.gaussian and not a.gaussian
    z_last = records[-1][1]
    centre, corner = z_last.var[3, 3], z_last.var[0, 0]
    assert corner < centre / 3 and z_last.var[0, 3] < centre  # zero padding starves borders
    assert g[0, 0] < g[3, 3]  # fewer outputs read a corner


def test_relu_layers_1d_stride_dilation_valid_bias_match_explicit_loops():
    layers = [(3, 1, "same", 1), (3, 2, "same", 1), (3, 1, "same", 2), (3, 1, "valid", 1),
              (5, 1, "same", 1), (2, 2, "valid", 1), (3, 1, 2, 1), (3, 1, [(0, 2)], 1),
              (3, 1, "same", 3), (3, 1, "same", 1)]
    records, _, _ = _run_both((40,), layers, channels=32, m_b=0.3, v_b=0.1)
    for s, z, a, d2, *_g, zm, z2, ref_mean, ref_second, ref_d2 in records:
        assert z.spatial == zm.shape
        assert np.allclose(z.second, z2, rtol=1e-10, atol=0)
        assert np.allclose(a.mean, ref_mean, rtol=1e-10, atol=0)
        assert np.allclose(a.second, ref_second, rtol=1e-10, atol=0)
        assert np.allclose(d2, ref_d2, rtol=1e-10, atol=0)
    assert records[-1][1].spatial == (11,)  # 40 -> 20 -> 18 -> 9 -> 11


def test_pooled_from_data_and_flatten():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((50, 3, 4, 2)) + np.arange(2)
    s = sp.from_data(x)
    assert np.allclose(s.mean, x.mean(axis=(0, 3)), rtol=1e-13)
    assert np.allclose(s.second, (x ** 2).mean(axis=(0, 3)), rtol=1e-13)
    flat = x.reshape(50, 12, 2)
    want = np.einsum("npc,nqc->pq", flat, flat) / (50 * 2)
    assert np.allclose(s.cross, want, rtol=1e-13) and not s.gaussian
    mean, var = sp.pooled(s)
    assert mean == pytest.approx(x.mean(), rel=1e-13)
    assert var == pytest.approx(np.mean(x ** 2) - x.mean() ** 2, rel=1e-13)
    assert np.array_equal(sp.flatten_backward(2.5, (3, 4)), np.full((3, 4), 2.5))


# ----------------------------------------------------------------------------- sampling
def _conv1d(x, w, b):
    """'same' 1-D convolution, channels last: x (B, L, C), w (K, C, C')."""
    k = w.shape[0]
    lo = (k - 1) // 2
    xp = np.pad(x, ((0, 0), (lo, k - 1 - lo), (0, 0)))
    return sum(xp[:, t:t + x.shape[1]] @ w[t] for t in range(k)) + b


def _conv1d_t(g, w):
    k = w.shape[0]
    lo = (k - 1) // 2
    gp = np.zeros((g.shape[0], g.shape[1] + k - 1, w.shape[1]))
    for t in range(k):
        gp[:, t:t + g.shape[1]] += g @ w[t].T
    return gp[:, lo:lo + g.shape[1]]


@pytest.mark.parametrize("act", [RELU, TANH], ids=["relu", "tanh"])
def test_pixel_pairs_of_a_wide_random_conv_net_match_sampling(act):
    """x (mean 0.5) -> conv (non-centred weights, biased) -> act -> conv: E[a_p a_q]
    after the activation and E[z_p z_q] of the second pre-activation, all pixel pairs,
    against 16 networks of 256 channels (t test over the networks; plus 5/fan for the
    finite width). Borders have other means than the centre, so the activation's
    pairs take unequal means."""
    length, c, k, batch, nets = 7, 256, 3, 48, 16
    mu_x, m1, v1, m_b, v_b = 0.5, 0.05 / math.sqrt(k * c), 1.5 / (k * c), 0.1, 0.05
    v2 = 1.0 / (k * c)
    rng = np.random.default_rng(11)
    est, est_a = [], []
    for _ in range(nets):
        x = mu_x + rng.standard_normal((batch, length, c))
        w1 = m1 + math.sqrt(v1) * rng.standard_normal((k, c, c))
        a = act(_conv1d(x, w1, m_b + math.sqrt(v_b) * rng.standard_normal(c)))
        w2 = math.sqrt(v2) * rng.standard_normal((k, c, c))
        z2 = _conv1d(a, w2, 0.0)
        est.append(np.einsum("npc,nqc->pq", z2, z2) / (batch * c))
        est_a.append(np.einsum("npc,nqc->pq", a, a) / (batch * c))
    geo = dict(kernel=(k,), stride=(1,), padding_pairs=((1, 1),), dilation=(1,),
               track_cross=True)
    s = sp.white((length,), mu_x, 1.0, cross=True)
    z1 = sp.conv_forward(s, w_mean=m1, w_var=v1, b_mean=m_b, b_var=v_b, fan_channels=c, **geo)
    assert not z1.exact  # non-centred weights are flagged
    assert np.ptp(z1.mean) > 0.05  # the borders' means differ
    a1, _ = sp.act_forward(z1, act, track_cross=True)
    z2 = sp.conv_forward(a1, w_mean=0.0, w_var=v2, b_mean=0.0, b_var=0.0, fan_channels=c,
                         **geo)
    checks = 2 * length * (length + 1) // 2
    for sample, theory in ((np.array(est_a), a1.cross), (np.array(est), z2.cross)):
        se = sample.std(axis=0, ddof=1) / math.sqrt(nets)
        tol = _t(checks, nets - 1) * se + 5.0 / (k * c) * np.abs(theory)
        assert np.all(np.abs(sample.mean(axis=0) - theory) <= tol)


def test_activation_pairs_with_unequal_means_match_sampling():
    """Gaussian pixels with unequal means straight through relu, gelu and tanh: the
    pair moments against 1e6 samples; the closed form (relu) against the nested
    integral it replaces."""
    rng = np.random.default_rng(2)
    p = 4
    a = rng.standard_normal((p, p))
    cov = a @ a.T / p + 0.2 * np.eye(p)
    mean = np.array([0.4, -0.3, 0.0, 1.1])
    z = sp.SpatialMoments(mean.copy(), np.diag(cov) + mean ** 2, cov + np.outer(mean, mean))
    x = rng.multivariate_normal(mean, cov, size=1_000_000)
    for act in (RELU, GELU, TANH):
        out, _ = sp.act_forward(z, act, track_cross=True)
        assert out.exact
        ph = act(x)
        prod = ph[:, :, None] * ph[:, None, :]
        se = prod.std(axis=0) / math.sqrt(x.shape[0])
        assert np.all(np.abs(prod.mean(axis=0) - out.cross) <= _z(3 * p * p) * se)
    iu = np.triu_indices(p, 1)
    s = np.sqrt(np.diag(cov))
    closed = pair_cross(RELU, mean[iu[0]], mean[iu[1]], s[iu[0]] ** 2, s[iu[1]] ** 2,
                           cov[iu])
    nested = _nested_pair(RELU, mean[iu[0]], mean[iu[1]], s[iu[0]], s[iu[1]],
                          cov[iu] / (s[iu[0]] * s[iu[1]]))
    assert np.allclose(closed, nested, rtol=1e-12, atol=1e-15)
    # uncorrelated pairs are independent, repeated pairs computed once: the same values
    e_tanh = [integrate.quad(lambda x, m=m: math.tanh(x) * stats.norm.pdf(x, m, 0.8), -12, 12,
                             epsabs=1e-14)[0] for m in (0.3, -0.5)]
    got = pair_cross(TANH, [0.3, 0.3, 0.3], [-0.5, -0.5, -0.5], [0.64] * 3, [0.64] * 3,
                     [0.0, 0.2, 0.2])
    assert got[0] == pytest.approx(e_tanh[0] * e_tanh[1], rel=1e-12)
    assert got[1] == got[2] == pytest.approx(_nested_pair(
        TANH, np.array([0.3]), np.array([-0.5]), np.array([0.8]), np.array([0.8]),
        np.array([0.2 / 0.64]))[0], rel=1e-14)


def test_activation_pairs_of_two_samples_match_sampling():
    """Two samples share each unit's offset (``z_{b,p} = o_p + r_{b,p}``): with
    ``same_sample=False`` the pairs, the diagonal included, are E[phi(z_{b,p})
    phi(z_{b',q})] of the between-sample covariance (1e6 samples)."""
    rng = np.random.default_rng(4)
    p = 3
    a, o = rng.standard_normal((p, p)), rng.standard_normal((p, p))
    offset = o @ o.T / (2 * p)
    total = offset + a @ a.T / p + 0.1 * np.eye(p)
    mean = np.array([0.3, -0.2, 0.1])
    joint = np.block([[total, offset], [offset, total]])
    x = rng.multivariate_normal(np.tile(mean, 2), joint, size=1_000_000)
    z = sp.SpatialMoments(mean.copy(), np.diag(total) + mean ** 2,
                          offset + np.outer(mean, mean))
    for act in (RELU, TANH):
        out, _ = sp.act_forward(z, act, True, False)
        ph = act(x)
        prod = ph[:, :p, None] * ph[:, None, p:]
        se = prod.std(axis=0) / math.sqrt(x.shape[0])
        assert np.all(np.abs(prod.mean(axis=0) - out.cross) <= _z(2 * p * p) * se)


def test_gradient_variance_per_pixel_matches_sampling():
    """x -> conv (He) -> relu -> conv -> y, dL/dy standard normal: Var[dL/dx] per pixel
    against 12 networks of 256 channels (t test over networks, plus 5/fan)."""
    length, c, k, batch, nets = 6, 256, 3, 32, 12
    v1, v2 = 2.0 / (k * c), 1.0 / (k * c)
    rng = np.random.default_rng(5)
    est = []
    for _ in range(nets):
        x = rng.standard_normal((batch, length, c))
        w1 = math.sqrt(v1) * rng.standard_normal((k, c, c))
        w2 = math.sqrt(v2) * rng.standard_normal((k, c, c))
        z1 = _conv1d(x, w1, 0.0)
        g_y = rng.standard_normal((batch, length, c))
        g_x = _conv1d_t(_conv1d_t(g_y, w2) * (z1 > 0), w1)
        est.append((g_x ** 2).mean(axis=(0, 2)))
    est = np.array(est)
    geo = dict(kernel=(k,), stride=(1,), padding_pairs=((1, 1),), dilation=(1,))
    z = sp.conv_forward(sp.white((length,), 0.0, 1.0), w_mean=0.0, w_var=v1, b_mean=0.0,
                        b_var=0.0, fan_channels=c, **geo)
    _, d2 = sp.act_forward(z, RELU)
    g = sp.conv_backward(np.ones(length), w_mean=0.0, w_var=v2, out_channels=c,
                         in_spatial=(length,), **geo)
    g = sp.conv_backward(sp.act_backward(g, d2), w_mean=0.0, w_var=v1, out_channels=c,
                         in_spatial=(length,), **geo)
    se = est.std(axis=0, ddof=1) / math.sqrt(nets)
    assert np.all(np.abs(est.mean(axis=0) - g) <= _t(length, nets - 1) * se + 5 / (k * c) * g)
    assert g[0] < g[2]


def test_non_centred_conv_with_correlated_pixels_matches_sampling():
    """Non-centred weights on an input whose pixels are correlated (channels
    independent): E[z_o z_o'] needs Cov[S_o, S_o'] over all tap pairs, and is exact in
    expectation at any width (a polynomial in the weights' moments); 40 networks of
    8 channels, 2,000 samples each, stride 2 and padding."""
    length, c_in, c_out, k, batch, nets = 7, 8, 8, 3, 2000, 40
    m, v, m_b, v_b = 0.3, 0.02, -0.2, 0.03
    rng = np.random.default_rng(7)
    a = rng.standard_normal((length, length))
    cov = a @ a.T / length + 0.1 * np.eye(length)
    mean = 0.3 + 0.2 * rng.standard_normal(length)
    chol = np.linalg.cholesky(cov)
    s = sp.SpatialMoments(mean.copy(), np.diag(cov) + mean ** 2, cov + np.outer(mean, mean))
    z = sp.conv_forward(s, w_mean=m, w_var=v, b_mean=m_b, b_var=v_b, fan_channels=c_in,
                        kernel=(k,), stride=(2,), padding_pairs=((1, 1),), dilation=(1,),
                        track_cross=True)
    assert not z.exact and z.spatial == (4,)
    est = []
    for _ in range(nets):
        x = mean[None, :, None] + np.einsum("pq,nqc->npc", chol,
                                            rng.standard_normal((batch, length, c_in)))
        w = m + math.sqrt(v) * rng.standard_normal((k, c_in, c_out))
        b = m_b + math.sqrt(v_b) * rng.standard_normal(c_out)
        out = _conv1d(x, w, b)[:, ::2]
        est.append(np.einsum("npc,nqc->pq", out, out) / (batch * c_out))
    est = np.array(est)
    se = est.std(axis=0, ddof=1) / math.sqrt(nets)
    assert np.all(np.abs(est.mean(axis=0) - z.cross) <= _t(10, nets - 1) * se)
    assert np.allclose(np.diag(z.cross), z.second, rtol=1e-14)


def test_conv_forward_reads_padding_as_zero_and_flags_missing_pairs():
    """A 1-D 'same' convolution of width 3 on 5 white pixels: the end pixels see two
    taps, the others three (an explicit count); pixel pairs asked for but not given
    are flagged."""
    s = sp.white((5,), 0.0, 2.0)
    z = sp.conv_forward(s, w_mean=0.0, w_var=0.5, b_mean=0.0, b_var=0.1, fan_channels=4,
                        kernel=(3,), stride=(1,), padding_pairs=((1, 1),), dilation=(1,))
    taps = np.array([2, 3, 3, 3, 2])
    assert np.allclose(z.second, 0.5 * 4 * 2.0 * taps + 0.1, rtol=1e-15) and z.exact
    z = sp.conv_forward(s, w_mean=0.0, w_var=0.5, b_mean=0.0, b_var=0.1, fan_channels=4,
                        kernel=(3,), stride=(1,), padding_pairs=((1, 1),), dilation=(1,),
                        track_cross=True)
    assert z.cross is None and not z.exact
