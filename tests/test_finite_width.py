"""The finite-width regime: analyze flags a plain chain whose predicted spread of
log(measured / mean field) passes the first-order theory's threshold (sigma > 1,
docs/theory.md section 11; varprop/theory/finite_width.py derives the spread)."""

from __future__ import annotations

import math

import numpy as np
import pytest

import varprop
from varprop._approximations import APPROXIMATION_REASONS
from varprop.activations import get_activation
from varprop.initializers import get as get_init
from varprop.network import Act, Dense, Network, Residual, dense_stack, mlp
from varprop.theory import finite_width as fw


def finite_width_entry(prof: varprop.Profile) -> dict | None:
    found = [a for a in prof.meta["approximations"] if a["kind"] == "finite_width"]
    assert len(found) <= 1
    return found[0] if found else None


def test_he_gelu_is_flagged_at_width_512():
    prof = varprop.analyze(dense_stack(512, 30, "gelu", "he_normal"))
    entry = finite_width_entry(prof)
    assert entry is not None and entry["layers"]
    sigma = prof.meta["finite_width_sigma"]
    assert sigma["z_var"] > fw.THRESHOLD and sigma["grad_var"] > fw.THRESHOLD
    assert 1.5 < sigma["max"] < 2.5  # 1.96: the expansion has failed, not just loosened
    # the reason names the width at which the spread would be 0.5: 512 (1.96 / 0.5)^2
    assert "amplified layer after layer" in entry["reason"] and "7,900 units" in entry["reason"]
    assert "infinite-width limit" in entry["reason"]
    assert entry["reason"] == APPROXIMATION_REASONS["finite_width"].format(
        **fw.regime(dense_stack(512, 30, "gelu", "he_normal"), prof.column("z_var"),
                    _ctx()).reason_fields())


@pytest.mark.parametrize("init, act", [("he_normal", "relu"), ("glorot_normal", "tanh"),
                                       ("lecun_normal", "selu"), ("orthogonal", "linear")])
def test_good_pairs_are_not_flagged(init, act):
    prof = varprop.analyze(dense_stack(512, 30, act, init))
    assert finite_width_entry(prof) is None
    sigma = prof.meta["finite_width_sigma"]
    assert 0 < sigma["max"] < 0.6  # He-ReLU: sqrt(5 * 30 / 512) = 0.54, the largest


def test_flag_disappears_where_the_formula_says():
    # sigma^2 is O(1/n): widening every layer by f divides sigma by sqrt(f)
    s512 = varprop.analyze(dense_stack(512, 30, "gelu", "he_normal")).meta["finite_width_sigma"]
    s2048 = varprop.analyze(dense_stack(2048, 30, "gelu", "he_normal")).meta["finite_width_sigma"]
    assert s2048["max"] == pytest.approx(s512["max"] / 2, rel=0.02)
    # the width at which sigma would reach the threshold, and a bit wider: not flagged
    wide = math.ceil(512 * (s512["max"] / fw.THRESHOLD) ** 2 * 1.1)
    assert finite_width_entry(varprop.analyze(dense_stack(wide, 30, "gelu", "he_normal"))) is None
    assert finite_width_entry(varprop.analyze(dense_stack(1024, 30, "gelu", "he_normal")))


def test_measured_drift_shrinks_with_width():
    # forward only, fixed seeds: at width 256 the last layer's variance of He-GELU is
    # hundreds of times the mean field (log ratio ~5), at 1024 a few times (~1);
    # docs/theory.md section 11 has the full table
    def mean_abs_log_ratio(width: int) -> float:
        net = dense_stack(width, 30, "gelu", "he_normal")
        theory = varprop.analyze(net).column("z_var")[-1]
        got = [varprop.measure(net, batch=32, seeds=[s], n_threads=1, backward=False)
               .column("z_var")[-1] for s in range(6)]
        return float(np.mean(np.abs(np.log(np.array(got) / theory))))

    narrow, wide = mean_abs_log_ratio(256), mean_abs_log_ratio(1024)
    print(f"mean |log(measured / mean field)|: width 256 {narrow:.2f}, 1024 {wide:.2f}")
    assert narrow > 2.0 and wide < narrow / 2, (narrow, wide)


def test_relu_constant_is_hanin_rolnick_5():
    net = dense_stack(512, 30, "relu", "he_normal")
    prof = varprop.analyze(net)
    b = fw.bounds(net, prof, None, correlated=False)
    np.testing.assert_allclose(b.constants["K_f"], 5.0, rtol=1e-9)
    np.testing.assert_allclose(b.constants["mu"], 1.0, rtol=1e-6)
    # identical inputs, infinite batch: V_l = 5 sum_{k<l} 1/n exactly, plus 2/n of eta
    layers = np.arange(30)
    np.testing.assert_allclose(b.V, 5.0 * layers / 512, rtol=1e-9, atol=1e-15)
    assert prof.meta["finite_width_sigma"]["z_var"] == pytest.approx(b.forward[-1])


def _ctx():
    from varprop._analytic_parts import _Context
    return _Context()


def _through_q_quadratic(V, a, nu):
    """The O(L^2) definition: sd(sum_{k>=l} nu_k u_k), Cov(u_j, u_k) = V_j prod a."""
    L = V.size
    cov = np.diag(V.copy())
    for j in range(L):
        for k in range(j + 1, L):
            cov[j, k] = cov[k, j] = cov[j, k - 1] * a[k - 1]
    return np.array([math.sqrt(max(nu[i:] @ cov[i:, i:] @ nu[i:], 0.0)) for i in range(L)])


@pytest.mark.parametrize("init, act", [("he_normal", "gelu"), ("glorot_normal", "tanh"),
                                       ("he_normal", "selu"), ("glorot_uniform", "sigmoid")])
def test_linear_recursion_equals_the_covariance_sum(init, act):
    net = dense_stack(256, 30, act, init)
    prof = varprop.analyze(net)
    b = fw.bounds(net, prof, 64, correlated=False)
    c = b.constants
    a = c["mu"][:-1]  # no biases: h = 1
    np.testing.assert_allclose(fw._through_q(b.V, a, c["nu"]),
                               _through_q_quadratic(b.V, a, c["nu"]), rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("act, init", [("tanh", "glorot_normal"), ("silu", "he_normal"),
                                       ("gelu", "he_normal"), ("gelu", "recommended")])
def test_spline_of_the_constants_matches_their_quadrature(act, init, monkeypatch):
    # 300 layers drift through hundreds of distinct variances: a spline through
    # MAX_POINTS nodes in log q stands for a quadrature at each
    if init == "recommended":  # GELU's: the variance grows 1.17x a layer, past Q_RANGE
        init = varprop.initializers.recommended_initializer(act)
    net = mlp([512] * 301, act, init)
    q = varprop.analyze(net).column("z_var")
    assert np.unique(q).size > fw.MAX_POINTS
    spline = fw.regime(net, q, _ctx()).bounds
    monkeypatch.setattr(fw, "MAX_POINTS", 10**6)
    exact = fw.regime(net, q, _ctx()).bounds
    np.testing.assert_allclose(spline.forward, exact.forward, rtol=1e-3)
    np.testing.assert_allclose(spline.backward, exact.backward, rtol=1e-3)


def test_saturation_is_a_flagged_lower_bound():
    v = fw._forward_variances(0.0, np.full(3000, 4.0), np.full(3000, 1e-3))
    assert np.all(np.isfinite(v)) and v.max() == fw.SIGMA_CAP**2
    out = fw._through_q(np.ones(3000), np.full(2999, 2.0), np.ones(3000))
    assert np.all(np.isfinite(out)) and out[0] == fw.SIGMA_CAP


def test_not_a_plain_chain_has_no_finite_width_sigma():
    # identity, constant, residual and non-centred weights are outside the theory
    he, relu = get_init("he_normal"), get_activation("relu")
    for net in (dense_stack(64, 5, "relu", "identity"), dense_stack(64, 5, "relu", "zeros"),
                Network(64, (Dense(64, 64, he), Residual((Act(relu), Dense(64, 64, he))))),
                mlp([64] * 6, "relu", get_init("random_normal", mean=0.1))):
        prof = varprop.analyze(net)
        assert prof.meta["finite_width_sigma"] is None and finite_width_entry(prof) is None


def test_paths_agree_and_batch_does_not_enter():
    net = dense_stack(512, 30, "gelu", "he_normal")
    fast = varprop.analyze(net).meta["finite_width_sigma"]
    general = varprop.analyze(net, input_correlation=0.0).meta["finite_width_sigma"]
    assert general == pytest.approx(fast, rel=1e-9)
    # analyze's batch (BatchNorm's) does not enter: the infinite-batch limit
    assert varprop.analyze(net, batch=192).meta["finite_width_sigma"] == fast
    prof = varprop.analyze(net)
    assert fast["max"] == max(fw.bounds(net, prof, None, correlated=False).forward.max(),
                              fw.bounds(net, prof, None, correlated=False).backward.max())
    # identical inputs: the worst case of a measurement of a batch of 192
    worst, corr = fw.bounds(net, prof, 192, False), fw.bounds(net, prof, 192, True)
    assert np.all(corr.forward <= worst.forward) and np.all(corr.backward <= worst.backward)


def test_deep_chains_are_flagged():
    # (its cost, linear in depth, is timed in bench/bench_theory.py)
    for act in ("relu", "tanh", "gelu"):
        net = mlp([64] * 5001, act, "he_normal")
        prof = varprop.analyze(net)
        r = fw.regime(net, prof.column("z_var"), _ctx())
        # 5,000 layers of width 64 are far into the finite-width regime
        assert r.layers and r.sigma["max"] > 10 and finite_width_entry(prof) is not None
