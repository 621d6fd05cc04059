"""The analyzer's fast paths against their slow twins and independent integrals, and its
bad input (its speed is measured in bench/bench_analyzer.py, never asserted in a test).

:func:`varprop.analyze` evaluates each layer's Gaussian moments with
:class:`varprop.theory.fast.ScalarMoments` and runs plain chains without per-layer
objects; the slow twins are ``gaussian_moments`` itself (``fast=False``) and the
general recursion (``chain=False``). Split from tests/test_properties.py, which keeps
the Hypothesis properties of the mean-field predictions."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import settings
from scipy import integrate
from test_properties import _INITS  # the random networks draw the same initializers

import varprop
from varprop.activations import ACTIVATION_NAMES, get_activation
from varprop.analytic import _analyze
from varprop.initializers import get as get_init
from varprop.network import Act, BatchNorm, Dense, LayerNorm, Network, Residual, mlp
from varprop.theory import gaussian_moments
from varprop.theory.fast import ScalarMoments

N_SIGMA = 4.5
BATCH = 64
SEEDS = 2
PROPERTY = settings(max_examples=6, deadline=None)

# ----------------------------------------------------------------------------- fast paths
_ACTS = [get_activation(a) for a in ACTIVATION_NAMES] + [
    get_activation("leaky_relu", negative_slope=0.3), get_activation("elu", alpha=0.4)]


@pytest.mark.parametrize("act", _ACTS, ids=repr)
def test_fast_moments_match_gaussian_moments(act):
    """The scalar fast path of analyze against the vectorized reference: 1e-12 relative
    (a mean against the signal's scale sqrt(E[phi^2]), where it may cancel to ~0)."""
    sm = ScalarMoments(act)
    qs = np.concatenate([np.logspace(-6, 6, 97), np.logspace(6, 300, 40),
                         [0.04, 0.0399999, 1.0, 2.0]])
    ref = gaussian_moments(act, qs)
    got = np.array([sm(0.0, float(q)) for q in qs]).T
    scale = np.sqrt(np.asarray(ref.e_phi2))
    assert np.all(np.abs(got[0] - ref.e_phi) <= 1e-12 * scale), "e_phi"
    for k, name in ((1, "e_phi2"), (2, "e_dphi2"), (3, "var_phi")):
        np.testing.assert_allclose(got[k], getattr(ref, name), rtol=1e-12, atol=1e-300,
                                   err_msg=name)


def _quad_moments(act, mean: float, q: float) -> tuple[float, float, float, float]:
    """E[phi(x)], E[phi(x)^2], E[phi'(x)^2], Var[phi(x)] for x ~ N(mean, q) by adaptive
    quadrature (scipy.integrate.quad) of the Gaussian integral in z = (x - mean) / sqrt(q)
    on |z| <= 40 (the density beyond is below 1e-340), in panels split at the kink x = 0:
    an oracle independent of varprop.theory."""
    s = math.sqrt(q)
    edges = sorted({-40.0, -8.0, 0.0, 8.0, 40.0, min(max(-mean / s, -40.0), 40.0)})
    pdf = lambda z: math.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)  # noqa: E731

    def expect(f):
        g = lambda z: float(f(np.array(mean + s * z))) * pdf(z)  # noqa: E731
        return sum(integrate.quad(g, a, b, epsabs=0.0, epsrel=1e-13, limit=200)[0]
                   for a, b in zip(edges[:-1], edges[1:]))

    e1 = expect(act)
    return (e1, expect(lambda x: act(x) ** 2), expect(lambda x: act.derivative(x) ** 2),
            expect(lambda x: (act(x) - e1) ** 2))


def _point_moments(act, mean: float) -> tuple[float, float, float, float]:
    """The q = 0 limit, by hand: x = mean exactly, so E[phi] = phi(mean) and Var = 0; at a
    kink (mean = 0) E[phi'^2] tends to the mean of the squared one-sided slopes (half the
    mass on each side), phi'(0-)^2 / 2 + phi'(0+)^2 / 2."""
    at = lambda f, x: float(f(np.array(x)))  # noqa: E731
    v = at(act, mean)
    if mean == 0.0:
        d2 = 0.5 * (at(act.derivative, -1e-300) ** 2 + at(act.derivative, 1e-300) ** 2)
    else:
        d2 = at(act.derivative, mean) ** 2
    return v, v * v, d2, 0.0


@pytest.mark.parametrize("act", _ACTS, ids=repr)
def test_fallback_moments_match_independent_integrals(act):
    """Outside the fast paths (a mean, q = 0) ScalarMoments falls back to gaussian_moments;
    both are checked here against quadrature written in this test and the q = 0 limit
    derived by hand, to 1e-11 (quad is asked for 1e-13; they agree to ~1e-15)."""
    sm = ScalarMoments(act)
    for mean, q in ((0.7, 1.3), (-2.0, 1e-3), (0.0, 0.0), (1.5, 0.0)):
        want = _quad_moments(act, mean, q) if q > 0 else _point_moments(act, mean)
        got = sm(mean, q)
        scale = math.sqrt(want[1])  # E[phi] and Var against the size of the signal
        for k, name in enumerate(("e_phi", "e_phi2", "e_dphi2", "var_phi")):
            tol = 1e-11 * (scale * scale if k == 3 else scale if k == 0 else abs(want[k]))
            assert abs(got[k] - want[k]) <= tol + 1e-300, (mean, q, name, got[k], want[k])


@pytest.mark.parametrize("q", [1e15, 1e200])
def test_gelu_closed_form_stays_accurate_at_large_q(q):
    """arcsin(q / (1 + q)) lost ~1e-8 to its conditioning at q = 1e15, and q^2 overflowed
    Var to -inf past 1e154 (fixed in closed_forms._gelu; an exploding GELU net gets there)."""
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.dps = 30
    s = mpmath.sqrt(mpmath.mpf(q))

    def expect(f):
        return mpmath.quad(lambda z: f(s * z) * mpmath.npdf(z), [-mpmath.inf, 0, mpmath.inf])

    phi = lambda x: x * mpmath.ncdf(x)  # noqa: E731
    dphi = lambda x: mpmath.ncdf(x) + x * mpmath.npdf(x)  # noqa: E731
    e1, e2, d2 = expect(phi), expect(lambda x: phi(x) ** 2), expect(lambda x: dphi(x) ** 2)
    g = gaussian_moments("gelu", q)
    for got, want in ((g.e_phi2, e2), (g.e_dphi2, d2), (g.var_phi, e2 - e1**2)):
        assert float(got) == pytest.approx(float(want), rel=1e-12)
    assert ScalarMoments("gelu")(0.0, q) == pytest.approx(tuple(map(float, g)), rel=1e-15)


def _random_net(rng: np.random.Generator) -> tuple[Network, dict]:
    depth = int(rng.integers(1, 40))
    widths = [int(w) for w in rng.integers(8, 300, size=depth + 1)]
    acts = [str(a) for a in rng.choice(ACTIVATION_NAMES, size=depth)]
    inits = [str(i) for i in rng.choice(list(_INITS) + ["orthogonal", "truncated_normal"],
                                        size=depth)]
    bias = ["zeros", "random_normal", None, get_init("constant", value=0.1)][
        int(rng.integers(0, 4))]
    net = mlp(widths, acts, inits, bias_init=bias,
              final_activation=bool(rng.integers(0, 2)))
    kw = {"input_mean": float(rng.normal()), "input_var": float(rng.uniform(0.1, 3))}
    return net, kw


_FIELDS = ("z_mean", "z_var", "a_mean", "a_var", "grad_var", "weight_grad_var")


def test_chain_path_is_bitwise_the_general_path():
    rng = np.random.default_rng(0)
    for _ in range(30):
        net, kw = _random_net(rng)
        a = _analyze(net, chain=True, **kw)
        b = _analyze(net, chain=False, **kw)
        for f in _FIELDS + ("symmetric",):
            np.testing.assert_array_equal(a.column(f), b.column(f), err_msg=f)


def test_fast_profile_matches_the_reference_profile():
    """analyze (fast moments) against analyze with gaussian_moments per layer."""
    rng = np.random.default_rng(1)
    for _ in range(12):
        net, kw = _random_net(rng)
        fast, ref = _analyze(net, **kw), _analyze(net, fast=False, **kw)
        second = ref.column("a_var") + ref.column("a_mean") ** 2
        z_second = ref.column("z_var") + ref.column("z_mean") ** 2
        for f in ("z_var", "a_var", "grad_var", "weight_grad_var"):
            np.testing.assert_allclose(fast.column(f), ref.column(f), rtol=1e-12, atol=1e-300,
                                       err_msg=f)
        assert np.all(np.abs(fast.column("a_mean") - ref.column("a_mean"))
                      <= 1e-12 * np.sqrt(second))
        assert np.all(np.abs(fast.column("z_mean") - ref.column("z_mean"))
                      <= 1e-12 * np.sqrt(z_second))


def test_general_path_with_residuals_and_norms_matches_reference():
    he, relu = get_init("he_normal"), Act(get_activation("relu"))
    tanh = Act(get_activation("tanh"))
    net = Network(64, (Dense(64, 64, he), LayerNorm(), tanh)
                  + tuple(Residual((BatchNorm(), relu, Dense(64, 64, he)), 0.5)
                          for _ in range(5))
                  + (Dense(64, 32, get_init("glorot_uniform")), Act(get_activation("silu"))))
    for corr in (None, 0.3):
        fast = varprop.analyze(net, input_correlation=corr)
        ref = _analyze(net, fast=False, input_correlation=corr)
        for f in ("z_var", "a_var", "grad_var", "z_corr"):
            np.testing.assert_allclose(fast.column(f), ref.column(f), rtol=1e-12, err_msg=f)


# ----------------------------------------------------------------------------- bad input
def _residual(alpha):
    return Network(4, (Residual((Dense(4, 4, get_init("he_normal")),), alpha),))


BAD_INPUT = [
    # widths that do not chain
    (lambda: Network(4, (Dense(5, 3, get_init("he_normal")),)), ValueError,
     "Dense expects 5 inputs but receives width 4"),
    (lambda: Network(4, (Residual((Dense(4, 5, get_init("he_normal")),)),)), ValueError,
     "Residual branch must keep the width"),
    (lambda: mlp([4, 0, 4]), ValueError, "widths must be a positive integer"),
    (lambda: mlp([4, 4.0]), TypeError, "widths must be a positive integer"),
    (lambda: mlp([4]), ValueError, "widths needs the input width"),
    # q <= 0 where meaningless (q = 0 is the documented limit of gaussian_moments)
    (lambda: varprop.gaussian_moments("tanh", -1.0), ValueError, "q must be >= 0"),
    (lambda: varprop.q_map("tanh", -1.0, 1.0, 0.0), ValueError, "q must be >= 0"),
    (lambda: varprop.c_map("tanh", 0.5, -1.0, 1.0, 0.0), ValueError, "q must be >= 0"),
    (lambda: varprop.chi1("tanh", 1.0, 0.0, q=-1.0), ValueError, "q must be >= 0"),
    (lambda: varprop.fixed_point("tanh", 1.0, 0.0, q0=-1.0), ValueError, "q0"),
    (lambda: varprop.analyze(mlp([4, 4]), input_var=0.0), ValueError, "input_var must be > 0"),
    (lambda: varprop.measure(mlp([4, 4]), input_var=0.0, batch=4), ValueError, "input_var"),
    # negative variances
    (lambda: varprop.analyze(mlp([4, 4]), input_var=-1.0), ValueError, "input_var"),
    (lambda: varprop.fixed_point("tanh", -1.0, 0.0), ValueError, "sigma_w2"),
    (lambda: varprop.chi1("tanh", 1.0, -0.5), ValueError, "sigma_b2"),
    (lambda: varprop.edge_of_chaos("tanh", -0.1), ValueError, "sigma_b2"),
    (lambda: varprop.gaussian_cross_moments("tanh", 1.0, -4.0, 0.5), ValueError, "q22"),
    (lambda: get_init("random_normal", stddev=-1.0), ValueError, "stddev"),
    (lambda: get_init("variance_scaling", scale=-1.0), ValueError, "scale"),
    (lambda: varprop.analyze(Network(4, (Dense(4, 4, get_init("he_normal")),
                                         BatchNorm(eps=-1.0)))), ValueError, "eps"),
    # non-finite parameters
    (lambda: varprop.analyze(mlp([4, 4]), input_mean=math.nan), ValueError, "input_mean"),
    (lambda: varprop.analyze(mlp([4, 4]), input_correlation=math.inf), ValueError,
     "input_correlation"),
    (lambda: varprop.measure(mlp([4, 4]), input_mean=math.inf, batch=4), ValueError,
     "input_mean"),
    (lambda: varprop.measure(mlp([4, 4]), inputs=np.full((3, 4), np.nan)), ValueError,
     "inputs must be finite"),
    (lambda: varprop.gaussian_moments("tanh", 1.0, mean=math.nan), ValueError, "mean"),
    (lambda: varprop.q_map("tanh", 1.0, 1.0, math.nan), ValueError, "sigma_b2"),
    (lambda: mlp([4, 4], "leaky_relu", negative_slope=math.nan), ValueError, "negative_slope"),
    (lambda: get_init("kaiming_normal", a=math.nan), ValueError, "a must be finite"),
    (lambda: get_init("orthogonal", gain=math.inf), ValueError, "gain"),
    (lambda: varprop.analyze(_residual(math.nan)), ValueError, "alpha"),
    (lambda: varprop.measure(_residual(math.inf), batch=4), ValueError, "alpha"),
    (lambda: varprop.analyze(Network(4, (Dense(4, 4, get_init("he_normal")),
                                         LayerNorm(eps=math.nan)))), ValueError, "eps"),
    # unknown names
    (lambda: mlp([4, 4], "rleu"), ValueError, "unknown name 'rleu'"),
    (lambda: mlp([4, 4], "relu", "he_normall"), ValueError, "unknown initializer"),
    (lambda: varprop.gaussian_moments("tanhh", 1.0), ValueError, "unknown name"),
    (lambda: varprop.edge_of_chaos("tahn"), ValueError, "unknown name"),
    (lambda: varprop.analyze(mlp([4, 4])).column("zvar"), ValueError, "unknown field"),
    # batch < 2 for variance estimates
    (lambda: varprop.measure(mlp([4, 4]), batch=1, seeds=1), ValueError, "batch must be >= 2"),
    (lambda: varprop.measure(mlp([4, 4]), inputs=np.ones((1, 4)), seeds=1), ValueError,
     "batch must be >= 2"),
    (lambda: varprop.compare(mlp([4, 4]), batch=1, seeds=1), ValueError, "batch must be >= 2"),
]


@pytest.mark.parametrize("call, exc, message", BAD_INPUT,
                         ids=[f"{i}-{m[:30]}" for i, (_, _, m) in enumerate(BAD_INPUT)])
def test_bad_input_names_the_argument(call, exc, message):
    with pytest.raises(exc, match=message):
        call()
