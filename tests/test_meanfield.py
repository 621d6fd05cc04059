"""Mean-field tools (varprop.theory.meanfield): fixed points, chi_1, correlation map,
depth scales, edge of chaos, Jacobian mean squared singular value.

Known values come from the papers (He et al. 2015; Poole et al. 2016; Schoenholz et al.
2017; Klambauer et al. 2017) and, where a number is only read off a figure (the tanh edge
of chaos at sigma_b2 = 0.05, about 1.76), from an independent computation here with
scipy.integrate.quad and plain iteration. Derivatives of the maps are checked against
central differences whose O(h^2) truncation sets the tolerance.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate, optimize

from varprop.activations import ACTIVATION_NAMES
from varprop.theory import (
    NoEdgeOfChaosError,
    c_map,
    chi1,
    correlation_fixed_point,
    depth_scales,
    edge_of_chaos,
    fixed_point,
    gaussian_moments,
    jacobian_msv,
    q_map,
)

# numerical code here must not overflow or divide by zero anywhere
pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")

# ----------------------------------------------------------------------------- length map


def test_q_map_of_he_relu_is_the_identity():
    q = np.array([0.5, 2.0, 7.0])
    np.testing.assert_array_equal(q_map("relu", q, 2.0, 0.0), q)  # exactly
    assert q_map("linear", 3.0, 0.5, 0.25) == pytest.approx(1.75, rel=1e-15)


@pytest.mark.parametrize("name", ACTIVATION_NAMES)
def test_length_map_is_increasing(name):
    """fixed_point relies on T being increasing in q (monotone iteration)."""
    q = np.logspace(-4, 4, 400)
    t = q_map(name, q, 1.0, 0.0)
    assert np.all(np.diff(t) > 0), name


@pytest.mark.parametrize("name", ACTIVATION_NAMES)
def test_correlation_map_is_increasing(name):
    """correlation_fixed_point relies on the c-map being increasing in c."""
    c = np.linspace(-1, 1, 21)
    assert np.all(np.diff(c_map(name, c, 2.0, 1.5, 0.1)) > 0), name


@pytest.mark.parametrize("sw, sb", [(0.5, 0.1), (1.0, 1.0), (1.5, 0.3), (1.9, 0.01)])
def test_fixed_point_of_relu_is_closed_form(sw, sb):
    assert fixed_point("relu", sw, sb) == pytest.approx(sb / (1 - sw / 2), rel=1e-12)
    s = 0.2
    assert fixed_point("leaky_relu", sw, sb, negative_slope=s) == pytest.approx(
        sb / (1 - sw * (1 + s * s) / 2), rel=1e-12)


def test_fixed_point_documented_answers():
    assert fixed_point("relu", 2.0, 0.0, q0=3.3) == 3.3  # every q is a fixed point
    assert fixed_point("relu", 2.5, 0.0) == math.inf  # q grows geometrically
    assert fixed_point("relu", 2.0, 0.1) == math.inf  # q grows linearly
    assert fixed_point("elu", 3.0, 0.1) == math.inf
    assert fixed_point("tanh", 0.5, 0.0) == 0.0  # ordered, sigma_b2 = 0
    assert fixed_point("tanh", 1.0, 0.0) == 0.0  # critical: iteration only ~1/(2l)
    assert fixed_point("tanh", 1.5, 0.0, q0=0.0) == 0.0  # 0 is fixed (unstable)
    assert fixed_point("tanh", 0.5, 1e-30) == pytest.approx(2e-30, rel=1e-12)


@pytest.mark.parametrize("name", ACTIVATION_NAMES)
@pytest.mark.parametrize("q0", [0.0, 1.0, 7.0])
def test_fixed_point_on_a_grid_is_the_scalar_one(name, q0):
    """Arrays of sigma_w2, sigma_b2 (what the phase diagram asks) give, point by point,
    the scalar solver's answer: the same inf and 0, the same root to its tolerance."""
    sw = np.linspace(0.0, 4.0, 9)
    sb = np.array([[0.0], [1e-3], [0.4]])
    grid = fixed_point(name, sw, sb, q0=q0)
    assert grid.shape == (3, 9)
    for i, b in enumerate(sb[:, 0]):
        for j, w in enumerate(sw):
            ref = fixed_point(name, float(w), float(b), q0=q0)
            if math.isinf(ref) or ref == 0.0:
                assert grid[i, j] == ref, (w, b)
            else:
                assert grid[i, j] == pytest.approx(ref, rel=2e-12), (w, b)


@settings(max_examples=30, deadline=None)
@given(name=st.sampled_from(ACTIVATION_NAMES), sw=st.floats(0.1, 3.0),
       sb=st.floats(0.0, 1.0), q0=st.floats(0.01, 10.0))
def test_fixed_point_is_where_iteration_goes(name, sw, sb, q0):
    """q* solves T(q) = q, nothing stops the iteration between q0 and q*, and the
    iteration moves toward it."""
    qs = fixed_point(name, sw, sb, q0=q0)
    t0 = q_map(name, q0, sw, sb)
    if math.isinf(qs):
        grid = q0 * np.logspace(0, 12, 200)[1:]
        assert np.all(q_map(name, grid, sw, sb) > grid), "a root was skipped"
        return
    assert q_map(name, qs, sw, sb) == pytest.approx(qs, rel=1e-10, abs=1e-300)
    if qs == q0:
        return
    between = np.linspace(q0, qs, 52)[1:-1]
    gap = q_map(name, between, sw, sb) - between
    assert np.all(np.sign(gap) == np.sign(t0 - q0)), "the iteration stops before q*"
    q = q0
    for _ in range(20):
        q = q_map(name, q, sw, sb)
    assert abs(q - qs) < abs(q0 - qs)


def test_selu_self_normalizes():
    """Klambauer et al. 2017: LeCun-normal (sigma_w2 = 1) SELU keeps mean 0, var 1."""
    for q0 in (0.3, 1.0, 4.0):
        assert fixed_point("selu", 1.0, 0.0, q0=q0) == pytest.approx(1.0, rel=1e-12)
    g = gaussian_moments("selu", fixed_point("selu", 1.0, 0.0, q0=0.3))
    assert abs(g.e_phi) < 1e-12 and g.var_phi == pytest.approx(1.0, rel=1e-12)


# ----------------------------------------------------------------------------- chi_1


def test_chi1_known_values():
    assert chi1("relu", 2.0, 0.0) == pytest.approx(1.0, rel=1e-15)
    assert chi1("leaky_relu", 2.0 / 1.04, 0.3, negative_slope=0.2) == pytest.approx(1.0)
    assert chi1("tanh", 1.0, 0.0) == 1.0  # q* = 0, phi'(0) = 1
    assert chi1("tanh", 0.5, 0.0) == 0.5
    assert chi1("relu", 3.0, 0.0) == 1.5  # q* = inf: the q -> inf limit
    assert chi1("tanh", 4.0, 0.0, q=[0.0, 1.0]).shape == (2,)
    g = gaussian_moments("tanh", 0.7)
    assert chi1("tanh", 1.3, 0.0, q=0.7) == pytest.approx(1.3 * g.e_dphi2, rel=1e-15)


# ----------------------------------------------------------------------------- correlations


def test_c_map_basics():
    assert c_map("tanh", 1.0, 0.8, 1.7, 0.1) == pytest.approx(1.0, rel=1e-14)
    c = np.array([-0.9, -0.2, 0.0, 0.5, 0.99])
    theta = np.arccos(c)
    arc = (np.sin(theta) + (np.pi - theta) * c) / np.pi  # relu, sigma_b2 = 0: scale-free
    for q, sw in ((0.1, 2.0), (5.0, 1.3)):
        np.testing.assert_allclose(c_map("relu", c, q, sw, 0.0), arc, rtol=1e-13)
    np.testing.assert_allclose(c_map("tanh", c, 0.0, 0.9, 0.0), c, rtol=1e-14)  # q -> 0
    np.testing.assert_allclose(c_map("relu", c, 0.0, 2.0, 0.0), arc, rtol=1e-13)
    assert c_map("tanh", c.reshape(5, 1), 1.0, 1.0, 0.0).shape == (5, 1)


def test_correlation_fixed_point():
    assert correlation_fixed_point("tanh", 1.5, 0.05) == 1.0  # ordered: chi_1 < 1
    assert correlation_fixed_point("tanh", 1.8, 0.0) == 0.0  # odd, chaotic: c* = 0
    sw, sb = 2.5, 0.05
    cs = correlation_fixed_point("tanh", sw, sb)
    qs = fixed_point("tanh", sw, sb)
    assert c_map("tanh", cs, qs, sw, sb) == pytest.approx(cs, abs=1e-14)
    assert cs == pytest.approx(correlation_fixed_point("tanh", sw, sb, c0=0.9), abs=1e-12)
    c = 0.3  # the iteration approaches c* monotonically (contraction ~0.92 per layer)
    for _ in range(30):
        nxt = float(c_map("tanh", c, qs, sw, sb))
        assert c < nxt < cs
        c = nxt
    assert cs - c < 0.92**30 * (cs - 0.3)
    assert math.isnan(correlation_fixed_point("relu", 3.0, 0.0))  # q* = inf


# ----------------------------------------------------------------------------- depth scales


@pytest.mark.parametrize("name, sw, sb", [
    ("tanh", 1.5, 0.05), ("tanh", 0.8, 0.1), ("relu", 1.5, 0.3), ("elu", 1.2, 0.1),
    ("sigmoid", 4.0, 0.5), ("softsign", 2.0, 0.05), ("gelu", 1.8, 0.2), ("silu", 1.8, 0.3),
    ("tanh", 2.5, 0.05), ("softsign", 4.0, 0.0), ("tanh", 1.8, 0.0),
])
def test_depth_scales_are_slopes_of_the_maps(name, sw, sb):
    qs = fixed_point(name, sw, sb)
    xi = depth_scales(name, sw, sb)
    h = 1e-4 * qs
    slope_q = (q_map(name, qs + h, sw, sb) - q_map(name, qs - h, sw, sb)) / (2 * h)
    assert math.exp(-1 / xi.xi_q) == pytest.approx(slope_q, rel=1e-7)
    c1 = chi1(name, sw, sb)
    if c1 <= 1:
        assert xi.xi_c == pytest.approx(-1 / math.log(c1), rel=1e-12)
    else:  # chaotic: the slope of the c-map at its stable fixed point c* < 1
        cs = correlation_fixed_point(name, sw, sb)
        hc = 1e-4
        slope_c = (c_map(name, cs + hc, qs, sw, sb) - c_map(name, cs - hc, qs, sw, sb)) / (2 * hc)
        assert math.exp(-1 / xi.xi_c) == pytest.approx(slope_c, rel=1e-7)


def test_depth_scales_documented_answers():
    assert depth_scales("tanh", 1.0, 0.0).xi_c == math.inf  # the edge of chaos
    he = depth_scales("relu", 2.0, 0.0)  # every q fixed, chi_1 = 1
    assert he.xi_q == math.inf and he.xi_c == math.inf
    assert all(math.isnan(v) for v in depth_scales("relu", 2.5, 0.0))
    assert depth_scales("tanh", 0.0, 0.3) == (0.0, 0.0)  # sigma_w2 = 0: forgets at once
    edge = edge_of_chaos("tanh", 0.05)
    assert depth_scales("tanh", edge, 0.05).xi_c > 1e6


# ----------------------------------------------------------------------------- edge of chaos


def _tanh_moments_quad(q: float) -> tuple[float, float]:
    """E[tanh^2], E[sech^4] at variance q by adaptive quadrature (independent path)."""
    s = math.sqrt(q)
    dens = lambda z: math.exp(-z * z / 2) / math.sqrt(2 * math.pi)  # noqa: E731
    kw = dict(points=[-1 / s, 0.0, 1 / s] if s > 0.1 else [0.0], epsabs=0, epsrel=1e-13,
              limit=200)
    e2 = integrate.quad(lambda z: math.tanh(s * z) ** 2 * dens(z), -12, 12, **kw)[0]
    d2 = integrate.quad(lambda z: (1 / math.cosh(s * z)) ** 4 * dens(z), -12, 12, **kw)[0]
    return e2, d2


def _tanh_chi1_by_iteration(sw: float, sb: float) -> float:
    q = 1.0
    for _ in range(80):  # T'(q*) ~ 0.6 near the edge: 80 steps reach 1e-17
        q = sw * _tanh_moments_quad(q)[0] + sb
    return sw * _tanh_moments_quad(q)[1]


def test_tanh_edge_of_chaos():
    assert edge_of_chaos("tanh") == pytest.approx(1.0, abs=1e-12)  # chi_1 = sigma_w2 at q* = 0
    edge = edge_of_chaos("tanh", 0.05)
    ref = optimize.brentq(lambda sw: _tanh_chi1_by_iteration(sw, 0.05) - 1, 1.6, 1.9,
                          xtol=1e-12)
    assert edge == pytest.approx(ref, rel=1e-9)
    assert edge == pytest.approx(1.76, abs=0.01)  # Schoenholz et al. 2017, fig. 1


@pytest.mark.parametrize("name, sb", [("tanh", 0.3), ("elu", 0.1), ("softsign", 0.1),
                                      ("sigmoid", 0.1), ("selu", 0.0), ("selu", 0.1)])
def test_edge_of_chaos_has_chi1_one(name, sb):
    sw = edge_of_chaos(name, sb)
    assert chi1(name, sw, sb) == pytest.approx(1.0, rel=1e-9)
    assert math.isfinite(fixed_point(name, sw, sb))


def test_edge_of_chaos_of_scale_free_units():
    assert edge_of_chaos("relu") == 2.0
    assert edge_of_chaos("leaky_relu", negative_slope=0.2) == pytest.approx(2 / 1.04)
    assert edge_of_chaos("linear") == 1.0
    with pytest.raises(NoEdgeOfChaosError, match="no fixed point") as info:
        edge_of_chaos("relu", 0.1)
    assert isinstance(info.value, ValueError)
    with pytest.raises(NoEdgeOfChaosError):
        edge_of_chaos("softplus", 0.0)  # q* -> inf as chi_1 -> 1


# ----------------------------------------------------------------------------- Jacobian


def test_jacobian_msv():
    assert jacobian_msv("relu", 2.0, 0.0, 50) == pytest.approx(1.0, rel=1e-13)
    assert jacobian_msv("tanh", 1.5, 0.05, 0) == 1.0
    c1 = chi1("tanh", 1.5, 0.05)
    assert jacobian_msv("tanh", 1.5, 0.05, 30) == pytest.approx(c1**30, rel=1e-13)
    qs = fixed_point("tanh", 1.5, 0.05)
    assert jacobian_msv("tanh", 1.5, 0.05, 30, q0=qs) == pytest.approx(c1**30, rel=1e-9)
    q, prod = 3.0, 1.0  # off the fixed point: the product along the trajectory
    for _ in range(5):
        prod *= chi1("tanh", 1.5, 0.05, q=q)
        q = q_map("tanh", q, 1.5, 0.05)
    assert jacobian_msv("tanh", 1.5, 0.05, 5, q0=3.0) == pytest.approx(prod, rel=1e-13)


# ----------------------------------------------------------------------------- bad input


def test_bad_arguments_name_themselves():
    with pytest.raises(ValueError, match="sigma_w2"):
        fixed_point("tanh", -1.0, 0.0)
    with pytest.raises(ValueError, match="sigma_b2"):
        chi1("tanh", 1.0, np.nan)
    with pytest.raises(TypeError, match="sigma_w2"):
        fixed_point("tanh", ["big", "small"], 0.0)  # (arrays of numbers are a grid)
    with pytest.raises(ValueError, match="sigma_b2"):
        fixed_point("tanh", [1.0, 2.0], [0.0, -1.0])
    with pytest.raises(ValueError, match="q0"):
        fixed_point("tanh", 1.0, 0.0, q0=-1.0)
    with pytest.raises(ValueError, match="c must be"):
        c_map("tanh", 1.5, 1.0, 1.0, 0.0)
    with pytest.raises(ValueError, match="c0"):
        correlation_fixed_point("tanh", 1.0, 0.0, c0=2.0)
    with pytest.raises(TypeError, match="depth"):
        jacobian_msv("tanh", 1.0, 0.0, 2.5)
    with pytest.raises(ValueError, match="depth"):
        jacobian_msv("tanh", 1.0, 0.0, -1)
    with pytest.raises(ValueError, match="unknown name"):
        edge_of_chaos("tahn")
