"""Overlapping max-pool windows (stride below the pool size; docs/theory.md, section 8,
"Overlapping windows"): a pixel in two windows receives both windows' gradients when it
wins both, so its gradient variance has the cross term ``E[1{i wins o} 1{i wins o'}
phi'^2] E[g_o g_o']``, which needs the gradient's pixel pairs ``E[g_o g_o']`` carried back
from the readout (a global average pool makes them all alike). The rule before it dropped
the term: measured 2.3x (2x2 stride 1) and 1.6x (3x3 stride 2) above it behind a global
average pool, no gap behind Flatten -> Dense (diagonal pairs).

Checked against independent references: the joint win integral against exact
three-variable normal CDFs (Owen's T, Plackett) and 10^6-sample Monte Carlo; the
derivative pairs against scipy's bivariate normal CDF and two-dimensional adaptive
integration; the convolution's pair rule against an explicit loop over outputs and taps;
the analyzer against measurement at two widths. Plus the 3x3 window of independent taps
(white-noise input), which the quadrature sent to a three-variable CDF (its win
probabilities summed to 2.25), against a one-dimensional integral.

Tolerances: Monte Carlo ``k`` standard errors plus the quasi-Monte-Carlo rule's stated
accuracy (2e-3 on a share, as for the chain windows of tests/test_maxpool_gradient.py);
measurement, a t-test of the seeds' log(measured / theory) against their spread, ``k`` the
t quantile at a family-wise false-alarm rate of 1e-3 per test split over its checks
(Bonferroni). Seeds fixed. Run with the cross term removed (the old rule), both
measurement tests fail: layer 0's mean log(measured / theory) +0.85 and +0.50 (2x2
stride 1, 3x3 stride 2) at 32 channels, +0.80 and +0.46 at 128, and +0.63, +0.57 for the
ResNet-like stem, each beyond its bound; the nine-tap test fails on the quadrature before
its fix.
"""

import math

import numpy as np
import pytest
from scipy import integrate, stats

import varprop
from varprop.activations import get_activation
from varprop.initializers import get as get_initializer
from varprop.layers import (Act, AvgPool, Conv, Dense, Flatten, GlobalAvgPool, MaxPool,
                            Residual)
from varprop.network import Network
from varprop.theory.spatial import SpatialMoments, tap_sources
from varprop.theory.spatial_gauss import bvn, mvn_below
from varprop.theory.spatial_grad import conv_backward_pairs, dphi_pairs
from varprop.theory.spatial_max import window_max
from varprop.theory.spatial_overlap import joint_wins, overlap_cross, window_pairs

RELU, TANH, LINEAR = (get_activation(n) for n in ("relu", "tanh", "linear"))
FAMILY_ALPHA = 1e-3
#: The quasi-Monte-Carlo rule's stated accuracy on a share (docs/theory.md, section 8).
QMC_SHARE = 2e-3


def _law(n, rng, scale=1.0):
    """A correlated law of ``n`` taps with unequal means."""
    a = rng.normal(size=(n, n))
    return rng.normal(size=n) * 0.3, scale * (a @ a.T / n + 0.3 * np.eye(n))


def test_joint_wins_of_three_taps_against_exact_normal_cdfs():
    """Two 1-D windows of two taps, stride 1: (a, b) and (b, c) share b. b wins both
    exactly when b > a and b > c (linear: a bivariate normal CDF of the differences, Owen's
    T) and, after a relu, when also b > 0 (a trivariate CDF, Plackett's identity); the
    routed share is that probability (relu' = 1 where b wins and b > 0)."""
    rng = np.random.default_rng(14)
    t = np.array([[1.0, -1.0, 0.0], [0.0, -1.0, 1.0], [0.0, -1.0, 0.0]])  # a-b, c-b, -b
    for _ in range(3):
        mu, cov = _law(3, rng)
        m, c = t @ mu, t @ cov @ t.T
        sd = np.sqrt(np.diag(c))
        corr = c / np.outer(sd, sd)
        exact_linear = float(bvn(-m[0] / sd[0], -m[1] / sd[1], corr[0, 1]))
        exact_relu = float(mvn_below((-m / sd)[None, :], corr)[0])
        for act, exact in ((LINEAR, exact_linear), (RELU, exact_relu)):
            got = joint_wins(mu, cov, [0, 1], [1, 2], act)
            assert got[0] == 0.0 and got[2] == 0.0  # only a shared tap wins both
            assert abs(got[1] - exact) <= QMC_SHARE, (act.name, got[1], exact)


def _monte_carlo_joint(mu, cov, first, second, act, n, rng):
    z = mu + rng.standard_normal((n, mu.size)) @ np.linalg.cholesky(cov).T
    phi = np.asarray(act(z), float)
    first, second = np.asarray(first), np.asarray(second)
    w1 = first[np.argmax(phi[:, first], axis=1)]
    w2 = second[np.argmax(phi[:, second], axis=1)]
    d2 = np.asarray(act.derivative(z), float) ** 2
    rows = np.arange(n)
    sample = np.zeros((n, mu.size))
    both = w1 == w2
    sample[rows[both], w1[both]] = d2[rows[both], w1[both]]
    return sample


def _union(src, p, o, o2):
    a = [int(t) for t in src[:, o] if t < p]
    b = [int(t) for t in src[:, o2] if t < p]
    union = a + [t for t in b if t not in a]
    return union, list(range(len(a))), [union.index(t) for t in b]


def test_joint_wins_matches_monte_carlo_on_2d_windows():
    """Window pairs of a 2x2 stride-1 pool (side by side: 6 taps; diagonal: 7) and of a
    3x3 stride-2 pool (side by side: 15 taps; diagonal: 17), relu and tanh, against 10^6
    Monte-Carlo samples of the same correlated law."""
    rng = np.random.default_rng(1414)
    cases = []
    for pool, stride, shape in ((2, 1, (3, 3)), (3, 2, (5, 5))):
        src, out = tap_sources(shape, (pool, pool), (stride, stride), ((0, 0), (0, 0)),
                               (1, 1))
        p = math.prod(shape)
        right, diag = (0, 1), (0, out[1] + 1)
        for o, o2 in (right, diag):
            assert (o, o2) in window_pairs(src, p)
            cases.append(_union(src, p, o, o2))
    n = 1_000_000
    checks = sum(len(u) for u, _, _ in cases) * 2
    k = float(stats.norm.isf(FAMILY_ALPHA / (2 * checks)))
    for union, first, second in cases:
        mu, cov = _law(len(union), rng)
        for act in (RELU, TANH):
            got = joint_wins(mu, cov, first, second, act)
            sample = _monte_carlo_joint(mu, cov, first, second, act, n, rng)
            se = sample.std(axis=0) / math.sqrt(n)
            err = np.abs(got - sample.mean(axis=0))
            assert np.all(err <= k * se + QMC_SHARE), (len(union), act.name, err.max())
            assert got.sum() > 0  # not vacuous: a shared tap wins both windows


def test_dphi_pairs_against_independent_integrals():
    """E[phi'(z_p) phi'(z_q)] for pixel pairs with unequal means and correlations:
    relu's orthant probability against scipy's bivariate normal CDF, tanh's against
    two-dimensional adaptive integration of the bivariate density."""
    mean = np.array([0.3, -0.2, 0.0])
    sd = np.array([1.0, 0.7, 1.3])
    corr = np.array([[1.0, 0.6, -0.3], [0.6, 1.0, 0.2], [-0.3, 0.2, 1.0]])
    cov = corr * np.outer(sd, sd)
    z = SpatialMoments(mean.reshape(1, 3), (mean**2 + sd**2).reshape(1, 3),
                       cov + np.outer(mean, mean))
    for act in (RELU, TANH):
        diag = np.array([integrate.quad(lambda x, m=m, s=s: act.derivative(np.array(x))**2
                                        * stats.norm.pdf(x, m, s), -12, 12)[0]
                         for m, s in zip(mean, sd)])
        got = dphi_pairs(z, act, diag)
        for p, q in ((0, 1), (0, 2), (1, 2)):
            c2 = cov[np.ix_([p, q], [p, q])]
            if act is RELU:
                ref = stats.multivariate_normal(np.zeros(2), c2).cdf(mean[[p, q]])
                tol = 1e-6  # scipy's Genz integration, randomized: ~1e-7
            else:
                law = stats.multivariate_normal(mean[[p, q]], c2)
                ref = integrate.dblquad(
                    lambda y, x: float(act.derivative(np.array(x)) * act.derivative(
                        np.array(y)) * law.pdf([x, y])), -10, 10, -10, 10,
                    epsabs=1e-11)[0]
                tol = 1e-9  # the nested rule: 1e-14; dblquad's requested 1e-11
            assert got[p, q] == pytest.approx(ref, abs=tol), (act.name, p, q)
            assert got[q, p] == got[p, q]
        assert np.array_equal(np.diag(got), diag)


def test_conv_pair_rule_against_an_explicit_loop():
    """G_in[i, j] = (v + m^2) C_out sum over taps k and outputs o, o' with i_k(o) = i and
    i_k(o') = j of G_out[o, o'] (the same tap and channel meet the same weight), for a
    strided, dilated, padded convolution, by an explicit loop over outputs and taps."""
    rng = np.random.default_rng(7)
    spatial, kernel, stride, dil, pads = (7, 6), (3, 2), (2, 1), (1, 2), ((1, 1), (2, 0))
    src, out = tap_sources(spatial, kernel, stride, pads, dil)
    n_out = math.prod(out)
    a = rng.normal(size=(n_out, n_out))
    g_out = a @ a.T
    got = conv_backward_pairs(g_out, w_mean=0.1, w_var=0.5, out_channels=3, kernel=kernel,
                              stride=stride, padding_pairs=pads, dilation=dil,
                              in_spatial=spatial)
    ref = np.zeros((math.prod(spatial),) * 2)
    for k_i in range(kernel[0]):
        for k_j in range(kernel[1]):
            for o in np.ndindex(*out):
                i = (o[0] * stride[0] + k_i * dil[0] - pads[0][0],
                     o[1] * stride[1] + k_j * dil[1] - pads[1][0])
                for o2 in np.ndindex(*out):
                    j = (o2[0] * stride[0] + k_i * dil[0] - pads[0][0],
                         o2[1] * stride[1] + k_j * dil[1] - pads[1][0])
                    if all(0 <= x < s for x, s in zip(i + j, spatial + spatial)):
                        ref[np.ravel_multi_index(i, spatial),
                            np.ravel_multi_index(j, spatial)] += \
                            g_out[np.ravel_multi_index(o, out), np.ravel_multi_index(o2, out)]
    np.testing.assert_allclose(got, (0.5 + 0.01) * 3 * ref, rtol=1e-12, atol=1e-12)


def test_nine_independent_taps_against_a_one_dimensional_integral():
    """A 3x3 window of independent taps (a first convolution on white noise): the winner
    quadrature judged independence on corr == I, which sqrt(v)^2 != v broke for most v,
    sending the window to a three-variable CDF (win probabilities summing to 2.25 at v =
    0.44). E[max relu] = int_0^inf 9 x phi(x) Phi(x)^8 dx by adaptive quadrature."""
    ref = integrate.quad(lambda x: 9 * x * stats.norm.pdf(x) * stats.norm.cdf(x) ** 8,
                         0, 40, epsabs=1e-13)[0]
    for v in (1.0, 0.44, 0.2, 0.0597, 0.01):
        e1, _, routed, wins, _ = window_max(np.zeros(9), v * np.eye(9), RELU)
        assert e1 == pytest.approx(ref * math.sqrt(v), rel=1e-10), v
        # each tap is the largest of 9 with probability 1/9, and it is positive but for
        # the 2^-9 of draws where all are below 0, which tie at relu = 0 and go to the
        # first tap (PyTorch's rule)
        share = (1 - 0.5**9) / 9
        np.testing.assert_allclose(wins, [share + 0.5**9] + [share] * 8, rtol=1e-10)
        np.testing.assert_allclose(routed, share, rtol=1e-10)


def _net(channels, pool, stride, padding, end="gap", act="relu"):
    """conv 3x3 -> act -> max pool -> conv 3x3 -> act -> readout on 8x8x3 white noise,
    Glorot, no biases."""
    w = get_initializer("glorot_normal")
    c = channels
    layers = [Conv(3, c, 3, w, None, padding="same"), Act(act),
              MaxPool(pool, stride=stride, padding=padding),
              Conv(c, c, 3, w, None, padding="same"), Act(act)]
    if end == "gap":
        layers += [GlobalAvgPool(), Dense(c, 10, w, None)]
    else:
        side = MaxPool(pool, stride=stride, padding=padding).output_width((8, 8, c), "")
        layers += [Flatten(), Dense(int(np.prod(side)), 10, w, None)]
    return Network((8, 8, 3), tuple(layers))


def test_overlapping_pool_networks_match_measurement_at_two_widths():
    """The gradient variance of the two layers around the pool, theory against the seeds'
    measurement (batch 32): 2x2 stride-1 and 3x3 stride-2 pools behind a global average
    pool, and a 2x2 stride-1 pool behind Flatten -> Dense, at 32 and 128 channels.
    Without the cross term layer 0 sat 2.3x and 1.6x above the theory behind the global
    pool at every width."""
    nets = ((2, 1, 0, "gap"), (3, 2, 1, "gap"), (2, 1, 0, "flat"))
    widths = ((32, 32), (128, 16))
    checks = len(nets) * len(widths) * 2
    failures = []
    for channels, seeds in widths:
        for pool, stride, padding, end in nets:
            net = _net(channels, pool, stride, padding, end)
            theory = varprop.analyze(net)
            measured = varprop.measure(net, batch=32, seeds=seeds)
            bound = float(stats.t.isf(FAMILY_ALPHA / (2 * checks), seeds - 1))
            for layer in (0, 1):
                values = np.asarray(measured.seed_values["grad_var"])[:, layer]
                logs = np.log(values / theory[layer].grad_var)
                mean, se = logs.mean(), logs.std(ddof=1) / math.sqrt(seeds)
                if abs(mean) > bound * se:
                    failures.append((channels, pool, stride, end, layer,
                                     round(float(mean), 3), round(float(bound * se), 3)))
    assert not failures, failures


def test_resnet_stem_pool_matches_measurement_at_two_widths():
    """A ResNet-like stem: conv -> relu -> 3x3 stride-2 max pool (padding 1) -> two
    residual blocks x + conv(relu(conv(x))) -> global average pool -> dense, 16x16x3:
    the pairs come back through residual sums. Layer 0's gradient variance, theory
    against 16 seeds (batch 32) at 32 and 128 channels. Without the cross term the
    measurement sat about 1.9x and 1.8x above the theory."""
    w = get_initializer("glorot_normal")
    widths, seeds = (32, 128), 16
    bound = float(stats.t.isf(FAMILY_ALPHA / (2 * len(widths)), seeds - 1))
    failures = []
    for c in widths:
        def block():
            return Residual((Conv(c, c, 3, w, None, padding="same"), Act("relu"),
                             Conv(c, c, 3, w, None, padding="same")))
        net = Network((16, 16, 3), (Conv(3, c, 3, w, None, padding="same"), Act("relu"),
                                    MaxPool(3, stride=2, padding=1), block(), block(),
                                    GlobalAvgPool(), Dense(c, 10, w, None)))
        theory = varprop.analyze(net)
        values = np.asarray(varprop.measure(net, batch=32, seeds=seeds)
                            .seed_values["grad_var"])[:, 0]
        logs = np.log(values / theory[0].grad_var)
        mean, se = logs.mean(), logs.std(ddof=1) / math.sqrt(seeds)
        if abs(mean) > bound * se:
            failures.append((c, round(float(mean), 3), round(float(bound * se), 3)))
    assert not failures, failures


def _spatial_notes(net):
    return " ".join(a["detail"] for a in varprop.analyze(net).meta["approximations"]
                    if a["kind"] == "spatial")


def test_the_overlap_flag_stays_only_where_the_pairs_do_not_come_back():
    """Covered (the gradient's pixel pairs reach the pool through convolutions,
    activations, residual sums, average pools, a global average pool or Flatten): the
    cross term's quasi-Monte-Carlo note and not the overlap note. Not covered (a second
    max pool above it, whose backward rule carries no pairs; a pool behind a skip
    connection): the overlap note."""
    from varprop._analytic_spatial import OVERLAP_NOTE, OVERLAP_QMC_NOTE
    w = get_initializer("glorot_normal")
    c = 16

    def conv():
        return Conv(c, c, 3, w, None, padding="same")

    stem = [Conv(3, c, 3, w, None, padding="same"), Act("relu")]
    covered = [_net(c, 2, 1, 0), _net(c, 3, 2, 1, "flat"),
               Network((8, 8, 3), tuple(stem + [MaxPool(3, stride=2, padding=1),
                                                Residual((conv(), Act("relu"), conv())),
                                                AvgPool(2), conv(), Act("relu"),
                                                GlobalAvgPool(), Dense(c, 10, w, None)]))]
    for net in covered:
        notes = _spatial_notes(net)
        assert OVERLAP_QMC_NOTE in notes and OVERLAP_NOTE not in notes, notes
    uncovered = [Network((8, 8, 3), tuple(stem + [MaxPool(2, stride=1), conv(), Act("relu"),
                                                  MaxPool(2), conv(), Act("relu"),
                                                  GlobalAvgPool(), Dense(c, 10, w, None)])),
                 Network((8, 8, 3), tuple(stem + [Residual((conv(), Act("relu"), conv())),
                                                  MaxPool(2, stride=1), conv(), Act("relu"),
                                                  GlobalAvgPool(), Dense(c, 10, w, None)]))]
    for net in uncovered:
        assert OVERLAP_NOTE in _spatial_notes(net)
    # a stride-2 2x2 pool has no overlap: neither note
    plain = _spatial_notes(_net(c, 2, 2, 0))
    assert OVERLAP_NOTE not in plain and OVERLAP_QMC_NOTE not in plain


def test_overlap_cross_rejects_bad_input():
    z = SpatialMoments(np.zeros((3, 3)), np.ones((3, 3)))
    with pytest.raises(ValueError, match="z"):
        overlap_cross(np.eye(4), z, RELU, (2, 2), (1, 1), ((0, 0), (0, 0)))
    z.cross = np.eye(9)
    with pytest.raises(ValueError, match="g_pairs"):
        overlap_cross(np.eye(3), z, RELU, (2, 2), (1, 1), ((0, 0), (0, 0)))
