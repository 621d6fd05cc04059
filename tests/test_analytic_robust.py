"""The analytic analyzer at every depth: an exploding (or vanishing) variance is an
answer, never a crash or a NaN, and the cost grows linearly with depth.

The expected factors are derived by hand from the recursion of docs/theory.md
(sections 2, 3 and 10), not read back from the analyzer: constant weights multiply the
variance of identical units by ``n^2`` per layer, random weights by ``sigma_w^2``, and an
overflowed pre-activation has ``E[phi'^2] = (phi'(-inf)^2 + phi'(inf)^2) / 2``.
"""

from __future__ import annotations

import gc
import math
import tracemalloc

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate

import varprop
from varprop import theory
from varprop.activations import ACTIVATION_NAMES, SELU_SCALE, get_activation
from varprop.analytic import _analyze
from varprop.cli import main
from varprop.compare import verdict
from varprop.network import dense_stack, mlp
from varprop.theory.fast import ScalarMoments

FIELDS = ("z_mean", "z_var", "a_mean", "a_var", "grad_var", "weight_grad_var")
N = 512
LOG_MAX = math.log(np.finfo(float).max)


def no_nan(profile) -> None:
    bad = [(r.index, f) for r in profile for f in FIELDS if math.isnan(getattr(r, f))]
    assert not bad, bad[:5]


def finite_steps(first: float, ratio: float) -> int:
    """The index of the first term of ``first * ratio^j`` beyond float64."""
    return math.floor((LOG_MAX - math.log(first)) / math.log(ratio)) + 1


# ----------------------------------------------------------------------------- crashes
def test_report_help_example_depth_100(capsys):
    """``varprop report --analytic-only --depth 100`` (the example of its --help) ended
    in ``ValueError: q must be finite, got nan`` (ones x linear overflows at layer 57)."""
    assert main(["report", "--analytic-only", "--depth", "100", "--no-out", "-q"]) == 0
    out = capsys.readouterr().out
    assert "ones" in out and "Traceback" not in out


def test_ones_linear_overflows_with_its_factors():
    """Constant weights on identical units: Var[z] = n^2 Var[x] per layer forward, from
    n Var[input] = 512 at layer 0 (inputs are independent there). Backward the first
    step is n (independent output gradients), every later one n^2."""
    p = varprop.analyze(dense_stack(N, 100, "linear", "ones"))
    no_nan(p)
    z = p.column("z_var")
    first_inf = finite_steps(N, N * N)  # z_var[l] = 512^(2l + 1)
    assert first_inf == 57
    assert np.all(np.isfinite(z[:first_inf])) and np.all(np.isinf(z[first_inf:]))
    v = verdict(p)
    assert v.kind == "symmetric"
    assert v.forward_factor == pytest.approx(N * N, rel=1e-12)
    # grad[L-1-j] = n^(2j - 1) for j >= 1 and 1 at the top: the last finite j is 57
    j = finite_steps(N, N * N)  # n^(2j - 1) = n * (n^2)^(j - 1) overflows at j = 58
    assert j == 57
    assert v.backward_factor == pytest.approx(N ** ((2 * j - 1) / j), rel=1e-12)


def test_random_linear_overflows_and_explodes():
    """``mlp([16] * 301, "linear", random_normal(stddev=1))``: sigma_w^2 = 16 forward and
    backward, so z_var[l] = 16^(l + 1) overflows at l = 255 and the verdict says explodes
    by 16 per layer (was: ValueError)."""
    p = varprop.analyze(mlp([16] * 301, "linear", {"name": "random_normal", "stddev": 1.0}))
    no_nan(p)
    z = p.column("z_var")
    assert np.isinf(z[255]) and z[254] == 16.0 ** 255
    v = verdict(p)
    assert v.kind == "explodes"
    assert v.forward_factor == pytest.approx(16.0, rel=1e-12)
    assert v.backward_factor == pytest.approx(16.0, rel=1e-12)
    assert "overflows float64 at dense layer 255" in v.message


@pytest.mark.parametrize("act", ["silu", "gelu_tanh"])
def test_recommended_init_explodes_at_depth_10000(act):
    """The recommended init makes sigma_w^2 = g^2 = 1 / E[phi(z)^2] (z ~ N(0, 1)), which
    is above 2 for silu and gelu_tanh: q grows until it overflows, and beyond it each
    layer multiplies the gradient by sigma_w^2 E[phi'^2](q = inf) = g^2 / 2."""
    a = get_activation(act)
    e_phi2, _ = integrate.quad(lambda x: float(a(np.array([x]))[0]) ** 2
                               * math.exp(-x * x / 2) / math.sqrt(2 * math.pi),
                               -40, 40, epsabs=0, epsrel=1e-13, limit=200)
    g2 = 1.0 / e_phi2
    p = varprop.analyze(dense_stack(N, 10_000, act, varprop.recommended_initializer(act)))
    no_nan(p)
    assert np.isinf(p[-1].z_var)
    v = verdict(p)
    assert v.kind == "explodes"
    assert v.backward_factor == pytest.approx(g2 / 2, rel=1e-9)
    assert v.forward_factor == pytest.approx(g2 / 2, rel=1e-2)  # includes the slow start


def test_huge_input_mean_with_random_biases():
    """Inputs of mean 1e154 into constant weights and N(0, 0.01) biases: the units are
    Gaussian (the biases differ), far on the linear side of relu (mean / std ~ 1e154),
    so Var[z_l] = n Var[z_(l-1)] + b_var, and the mean overflows first (layer 58),
    the variance later; backward each layer multiplies by n."""
    b_var = 0.01
    p = varprop.analyze(dense_stack(N, 150, "relu", "ones", {"name": "random_normal",
                                                             "stddev": 0.1}),
                        input_mean=1e154)
    no_nan(p)
    assert p[60].z_mean == math.inf and p[60].a_mean == math.inf
    z = p.column("z_var")
    last = int(np.flatnonzero(np.isfinite(z))[-1])
    a0, c = N + b_var, b_var / (N - 1)  # z_var[l] = n^l (a0 + c) - c
    expected = math.exp((last * math.log(N) + math.log((a0 + c) - c / N ** last)
                         - math.log(a0)) / last)
    v = verdict(p)
    assert v.forward_factor == pytest.approx(expected, rel=1e-12)
    assert v.backward_factor == pytest.approx(N, rel=1e-12)


def test_selu_huge_input_variance():
    """selu at input_var = 8e307: with LeCun's sigma_w^2 = 1 the length map is
    q -> lambda^2 q / 2 (+ O(1)) up there, so the variance falls by lambda^2 / 2 per
    layer; with He's 2 the first layer sits at 1.6e308 and the next overflow, after
    which the gradient grows by 2 lambda^2 / 2 = lambda^2 per layer."""
    lam2 = SELU_SCALE ** 2
    p = varprop.analyze(dense_stack(N, 30, "selu", "lecun_normal"), input_var=8e307)
    no_nan(p)
    assert verdict(p).forward_factor == pytest.approx(lam2 / 2, rel=1e-12)
    p = varprop.analyze(dense_stack(N, 30, "selu", "he_normal"), input_var=8e307)
    no_nan(p)
    z = p.column("z_var")  # 1.6e308, lambda^2 1.6e308 = 1.77e308, then beyond float64
    assert z[0] == pytest.approx(1.6e308, rel=1e-15) and np.all(np.isinf(z[2:]))
    v = verdict(p)
    assert v.kind == "explodes"
    assert v.forward_factor == pytest.approx(lam2, rel=1e-12)  # the one finite step
    assert v.backward_factor == pytest.approx(lam2, rel=1e-12)
    assert "overflows float64 at dense layer 2" in v.message


def test_zero_gradient_underflow_is_a_factor_not_nan():
    """LeCun's Var[W] = 1 / n under relu halves q per layer (He's 2 / n keeps it): at
    depth 1200 it underflows to 0 near layer 1075 and the verdict keeps the factor 1/2."""
    p = varprop.analyze(dense_stack(N, 1200, "relu", "lecun_normal"))
    no_nan(p)
    z = p.column("z_var")
    assert z[-1] == 0.0 and z[100] > 0.0
    v = verdict(p)
    assert v.kind == "vanishes"
    assert v.forward_factor == pytest.approx(0.5, rel=1e-9)
    assert "underflows to 0" in v.message


def test_ones_leaky_relu_keeps_the_sign_of_the_mean():
    """Both tails of n leaky(z) grow (by n on the positive side, n s = 5.12 on the
    negative one) and overflow; the positive tail is far ahead, so the mean is +inf,
    not NaN. The gradient's per-node factors are 1 (positive side) and s^2 per layer
    (negative side): grad[L-1-j] = n^(2j - 1) (1 + s^(2j + 2)) / 2 for j >= 1."""
    s = 0.01
    p = varprop.analyze(dense_stack(N, 500, "leaky_relu", "ones"))
    no_nan(p)
    assert p[-1].a_mean == math.inf and p[-1].z_mean == math.inf
    j = 57  # n^(2j - 1) / 2 is the last finite term, as for ones x linear
    expected = (N ** (2 * j - 1) * (1 + s ** (2 * j + 2)) / (1 + s * s)) ** (1 / j)
    assert verdict(p).backward_factor == pytest.approx(expected, rel=1e-9)


def test_gelu_moments_at_the_top_of_float64():
    """sqrt(1 + 2q) overflowed beyond q = 9e307, halving gelu's E[phi^2]: it is relu's
    q / 2 (1 + O(q^-1/2)) up there, and E[phi'^2] is 1/2."""
    for q in (1e308, 1.7976931348623157e308):
        g, r = theory.gaussian_moments("gelu", q), theory.gaussian_moments("relu", q)
        assert float(g.e_phi2) == pytest.approx(float(r.e_phi2), rel=1e-12)
        assert float(g.e_dphi2) == pytest.approx(0.5, rel=1e-12)
        assert ScalarMoments("gelu")(0.0, q)[1] == pytest.approx(float(r.e_phi2), rel=1e-12)


def test_moments_beyond_float64_do_not_overflow_inside():
    """E[phi^2] for q in [1e307, 1.8e308] is representable, but phi(x)^2 at the far nodes
    is not: the quadrature scales first. silu and softplus are relu up there."""
    for act in ("silu", "softplus", "gelu_tanh"):
        for q, mean in ((1e307, 0.0), (1.6e308, 0.0), (1e307, 1e153)):
            g = theory.gaussian_moments(act, q, mean=mean)
            r = theory.gaussian_moments("relu", q, mean=mean)
            assert float(g.e_phi2) == pytest.approx(float(r.e_phi2), rel=1e-9)
    g = theory.gaussian_moments("relu", 1e-300, mean=1e20)  # (mean / std)^2 overflowed
    assert float(g.e_phi2) == pytest.approx(1e40, rel=1e-12)


# The limits of (E[phi], E[phi^2], E[phi'^2], Var[phi]) at q = inf, mean 0, by hand:
# unbounded ones have E[phi'^2] = (phi'(-inf)^2 + phi'(inf)^2) / 2, bounded ones 0.
_AT_INF = {
    "linear": (0.0, math.inf, 1.0, math.inf),
    "relu": (math.inf, math.inf, 0.5, math.inf),
    "leaky_relu": (math.inf, math.inf, (1 + 0.01 ** 2) / 2, math.inf),
    "elu": (math.inf, math.inf, 0.5, math.inf),
    "selu": (math.inf, math.inf, SELU_SCALE ** 2 / 2, math.inf),
    "gelu": (math.inf, math.inf, 0.5, math.inf),
    "gelu_tanh": (math.inf, math.inf, 0.5, math.inf),
    "silu": (math.inf, math.inf, 0.5, math.inf),
    "softplus": (math.inf, math.inf, 0.5, math.inf),
    "tanh": (0.0, 1.0, 0.0, 1.0),
    "softsign": (0.0, 1.0, 0.0, 1.0),
    "sigmoid": (0.5, 0.5, 0.0, 0.25),
}


@pytest.mark.parametrize("name", ACTIVATION_NAMES)
def test_gaussian_moments_at_infinite_variance(name):
    assert ScalarMoments(name)(0.0, math.inf) == pytest.approx(_AT_INF[name], rel=1e-15)
    # an infinite mean is a point at +-inf: relu's +inf side passes everything
    e_phi, e_phi2, e_dphi2, var = ScalarMoments(name)(-math.inf, 4.0)
    assert not any(math.isnan(x) for x in (e_phi, e_phi2, e_dphi2, var))


# ----------------------------------------------------------------------------- cost
@pytest.mark.parametrize("init, act", [("zeros", "relu"), ("ones", "relu"),
                                       ("identity", "tanh"), ("he_normal", "relu")])
def test_memory_grows_linearly_with_depth(init, act):
    """Peak memory (tracemalloc) at depth 4000 against 400: 10x, with slack for what
    does not scale. The composition of a symmetric or identity chain was a tuple copied
    per layer (quadratic: ~100x here); no wall-clock limit, bytes are the measure."""
    peaks = []
    for depth in (400, 4000):
        net = dense_stack(64, depth, act, init)
        gc.collect()
        tracemalloc.start()
        varprop.analyze(net)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    assert peaks[1] < 15 * peaks[0], peaks


# ----------------------------------------------------------------------------- property
_INIT = st.one_of(
    st.builds(lambda e: {"name": "variance_scaling", "scale": 10.0 ** e},
              st.floats(-300, 300)),
    st.builds(lambda sign, e: {"name": "constant", "value": sign * 10.0 ** e},
              st.sampled_from([-1.0, 1.0]), st.floats(-300, 300)),
    st.sampled_from(["ones", "zeros", "identity", "he_normal", "orthogonal"]),
)


@settings(max_examples=60, deadline=None)
@given(depth=st.integers(1, 200), act=st.sampled_from(ACTIVATION_NAMES), init=_INIT,
       bias=st.sampled_from([None, "zeros", {"name": "constant", "value": -0.3},
                             {"name": "random_normal", "stddev": 0.5}]),
       log_var=st.floats(-300, 300), fast=st.booleans())
def test_analyze_never_raises_nor_returns_nan(depth, act, init, bias, log_var, fast):
    net = mlp([32] * (depth + 1), act, init, bias)
    p = _analyze(net, input_var=10.0 ** log_var, fast=fast)
    no_nan(p)
    v = verdict(p)
    assert not any(math.isnan(x) for x in (v.forward_factor, v.backward_factor))


def test_verdict_factor_when_only_the_ratio_overflows():
    """Every layer finite, but last / first beyond float64 (found by Hypothesis): the
    factor per layer comes from the logs, 1000x per layer here."""
    from varprop.profile import LayerRecord, Profile
    values = [10.0 ** (3 * k - 200) for k in range(150)]  # 1e-200 ... 1e247
    prof = Profile("analytic", [LayerRecord(k, 4, 4, z_var=v, grad_var=1.0)
                                for k, v in enumerate(values)])
    v = varprop.verdict(prof)
    assert v.kind == "explodes"
    assert v.forward_factor == pytest.approx(1000.0, rel=1e-12)
