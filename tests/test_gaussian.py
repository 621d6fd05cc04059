"""Gaussian expectations of the activations (varprop.theory.gaussian).

Oracles, from the most to the least independent:

* mpmath: its own implementation of every activation with tanh-sinh quadrature at 20
  digits (a few anchor points, it is slow), and the closed forms evaluated at 30 digits
  (cheap, used for the tails where float64 formulas cancel);
* a brute-force "slow twin": composite 20-point Gauss-Legendre on uniform panels of width
  min(0.25, 0.25 / sqrt(q)) in standard deviations, over |t| <= 12, with the kink on a
  panel edge. It shares nothing with the library's rule (geometric panels, folding,
  closed forms) but the registry's numpy activation; it is itself checked against mpmath;
* for the bivariate terms, a polar-coordinate rule whose angular panels split at the
  kink lines, and Price's theorem d/dc E[phi phi] = sqrt(q11 q22) E[phi' phi'].

Tolerances are the accuracy contract (module docstring of varprop.theory.gaussian):
relative 1e-12 at mean 0 and 1e-9 with a mean. Two documented exceptions, never widened
to pass: E[phi] at mean 0 is exactly 0 (odd activations) or may be 0 to rounding (SELU at
q = 1), so it is held to 1e-15 sqrt(E[phi^2]) in absolute terms; values below 1e-290
(float64's subnormal range, where relative precision does not exist) are held to 1e-290
absolute.
"""

from __future__ import annotations

import functools
import math
import time

import mpmath as mp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.polynomial.legendre import leggauss

from varprop.activations import (ACTIVATION_NAMES, GELU_TANH_COEFF, SELU_ALPHA, SELU_SCALE,
                                 get_activation)
from varprop.theory import KINDS, gaussian_cross_moments, gaussian_expectation, gaussian_moments
from varprop.theory.closed_forms import closed_form, ramp_moments
from varprop.theory.gaussian import _nested, _quadrature, cross_expect

Q_GRID = tuple(float(q) for q in np.logspace(-3, 3, 7))
MEANS = (-2.0, 0.5, 3.0)
CLOSED = ("linear", "relu", "leaky_relu", "elu", "selu", "gelu")
ODD = ("linear", "tanh", "softsign")
RTOL_CENTRED, RTOL_MEAN, TINY = 1e-12, 1e-9, 1e-290
FIELDS = {"phi": "e_phi", "phi2": "e_phi2", "dphi2": "e_dphi2", "var": "var_phi"}

# numerical code here must not overflow or divide by zero anywhere
pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")

# ----------------------------------------------------------------------------- oracles

_X20, _W20 = leggauss(20)


def _dense_nodes(q: float, mean: float) -> tuple[np.ndarray, np.ndarray]:
    s = math.sqrt(q)
    t0 = -mean / s
    h = min(0.25, 0.25 / s)
    k = np.arange(math.floor((-12 - t0) / h), math.ceil((12 - t0) / h) + 1)
    edges = np.unique(np.clip(t0 + h * k, -12, 12))
    half, mid = np.diff(edges) / 2, (edges[1:] + edges[:-1]) / 2
    t = (mid[:, None] + half[:, None] * _X20).ravel()
    w = (half[:, None] * _W20).ravel() * np.exp(-t * t / 2) / math.sqrt(2 * math.pi)
    return mean + s * t, w


@functools.lru_cache(maxsize=None)
def dense(name: str, kind: str, q: float, mean: float = 0.0) -> float:
    """The slow twin: brute-force composite Gauss-Legendre (see module docstring)."""
    act = get_activation(name)
    x, w = _dense_nodes(q, mean)
    f = {
        "phi": lambda: act(x),
        "phi2": lambda: act(x) ** 2,
        "dphi": lambda: act.derivative(x),
        "dphi2": lambda: act.derivative(x) ** 2,
        "d2phi_phi": lambda: act.second_derivative(x) * act(x),
        "var": lambda: (act(x) - dense(name, "phi", q, mean)) ** 2,
    }[kind]()
    return float(f @ w)


mp.mp.dps = 30
_MP_SELU = (mp.mpf(SELU_ALPHA), mp.mpf(SELU_SCALE))  # the registry's (float) constants


def _mp_sig(x):
    return 1 / (1 + mp.exp(-x))


def _mp_act(name: str):
    """(phi, phi') written from the definitions, independently of varprop."""
    k = mp.sqrt(2 / mp.pi)
    c3 = mp.mpf(GELU_TANH_COEFF)
    table = {
        "linear": (lambda x: x, lambda x: mp.mpf(1)),
        "relu": (lambda x: max(x, 0), lambda x: mp.mpf(x > 0)),
        "leaky_relu": (lambda x: x if x > 0 else x / 100,
                       lambda x: 1 if x > 0 else mp.mpf(1) / 100),
        "elu": (lambda x: x if x > 0 else mp.expm1(x), lambda x: 1 if x > 0 else mp.exp(x)),
        "selu": (lambda x: _MP_SELU[1] * (x if x > 0 else _MP_SELU[0] * mp.expm1(x)),
                 lambda x: _MP_SELU[1] * (1 if x > 0 else _MP_SELU[0] * mp.exp(x))),
        "gelu": (lambda x: x * mp.ncdf(x), lambda x: mp.ncdf(x) + x * mp.npdf(x)),
        "gelu_tanh": (
            lambda x: x * (1 + mp.tanh(k * (x + c3 * x**3))) / 2,
            lambda x: (1 + mp.tanh(k * (x + c3 * x**3))) / 2
            + x * mp.sech(k * (x + c3 * x**3)) ** 2 * k * (1 + 3 * c3 * x * x) / 2),
        "tanh": (mp.tanh, lambda x: mp.sech(x) ** 2),
        "sigmoid": (_mp_sig, lambda x: _mp_sig(x) * _mp_sig(-x)),
        "softplus": (lambda x: mp.log1p(mp.exp(x)), _mp_sig),
        "silu": (lambda x: x * _mp_sig(x), lambda x: _mp_sig(x) * (1 + x * _mp_sig(-x))),
        "softsign": (lambda x: x / (1 + abs(x)), lambda x: 1 / (1 + abs(x)) ** 2),
    }
    return table[name]


@functools.lru_cache(maxsize=None)
def mp_quad(name: str, kind: str, q: float) -> float:
    """mpmath tanh-sinh at 20 digits, mean 0, folded onto [0, inf), split where phi bends."""
    phi, dphi = _mp_act(name)
    f = {"phi": phi, "phi2": lambda x: phi(x) ** 2, "dphi2": lambda x: dphi(x) ** 2}[kind]
    s = mp.sqrt(mp.mpf(q))
    pts = sorted({mp.mpf(0), mp.mpf(12)} | {mp.mpf(2) ** j / s for j in range(-3, 7)
                                             if mp.mpf(2) ** j / s < 12})
    with mp.workdps(20):
        val = mp.quad(lambda t: (f(s * t) + f(-s * t)) * mp.exp(-t * t / 2), pts)
        return float(val / mp.sqrt(2 * mp.pi))


def mp_closed(name: str, kind: str, q: float, mean: float) -> float:
    """The closed forms of docs/theory.md section 5 (with a mean) evaluated at 30 digits."""
    m, s = mp.mpf(mean), mp.sqrt(mp.mpf(q))
    a = m / s
    P, p = mp.ncdf(a), mp.npdf(a)
    i1, i2 = p + a * P, (1 + a * a) * P + a * p

    def e_neg(k):  # E[e^{kx} 1{x<0}]
        return mp.exp(k * m + k * k * s * s / 2) * mp.ncdf(-a - k * s)

    if name in ("relu", "leaky_relu"):
        sl = mp.mpf(0) if name == "relu" else mp.mpf(1) / 100
        vals = {"phi": sl * m + (1 - sl) * s * i1,
                "phi2": sl * sl * (m * m + s * s) + (1 - sl * sl) * s * s * i2,
                "dphi2": sl * sl + (1 - sl * sl) * P}
    else:  # elu, selu
        al, lam = _MP_SELU if name == "selu" else (mp.mpf(1), mp.mpf(1))
        e1, e2, pn = e_neg(1), e_neg(2), mp.ncdf(-a)
        vals = {"phi": lam * (s * i1 + al * (e1 - pn)),
                "phi2": lam**2 * (s * s * i2 + al**2 * (e2 - 2 * e1 + pn)),
                "dphi2": lam**2 * (P + al**2 * e2),
                "d2phi_phi": lam**2 * al**2 * (e2 - e1)}
    if kind == "var":
        return float(vals["phi2"] - vals["phi"] ** 2)
    return float(vals[kind])


def assert_close(value: float, ref: float, rtol: float, what: str, atol: float = 0.0) -> None:
    value = float(value)
    if abs(ref) < TINY and abs(value) < TINY:
        return
    err = abs(value - ref)
    assert err <= rtol * abs(ref) + atol, (
        f"{what}: got {value!r}, reference {ref!r}, relative error "
        f"{err / abs(ref) if ref else math.inf:.3g} > {rtol:g}")


# ----------------------------------------------------------------------------- accuracy


@pytest.mark.parametrize("name", ACTIVATION_NAMES)
def test_centred_moments_match_slow_twin(name):
    """Every activation, q in [1e-3, 1e3], mean 0: relative error <= 1e-12."""
    q = np.array(Q_GRID)
    got = gaussian_moments(name, q)
    for kind, field in FIELDS.items():
        for i, qi in enumerate(Q_GRID):
            value = getattr(got, field)[i]
            what = f"{name} {kind} q={qi:g}"
            if kind == "phi" and name in ODD:
                assert value == 0.0, what  # exact by symmetry
                continue
            scale = math.sqrt(got.e_phi2[i]) if kind == "phi" else 0.0
            assert_close(value, dense(name, kind, qi), RTOL_CENTRED, what, 1e-15 * scale)


@pytest.mark.parametrize("name", ACTIVATION_NAMES)
def test_d2phi_phi_and_dphi_match_slow_twin(name):
    for kind in ("d2phi_phi", "dphi"):
        got = gaussian_expectation(name, np.array(Q_GRID), kind)
        for i, qi in enumerate(Q_GRID):
            assert_close(got[i], dense(name, kind, qi), RTOL_CENTRED, f"{name} {kind} q={qi:g}",
                         1e-300)


@pytest.mark.parametrize("name", ACTIVATION_NAMES)
def test_moments_with_mean_match_slow_twin(name):
    """A non-zero mean: relative error <= 1e-9 (kink inside |t| <= 8 for the twin)."""
    q = np.array([1e-3, 1e-1, 10.0, 1e3])
    for mean in MEANS:
        got = gaussian_moments(name, q, mean=mean)
        d2 = gaussian_expectation(name, q, "d2phi_phi", mean=mean)
        for i, qi in enumerate(q):
            if name in ("relu", "leaky_relu", "elu", "selu") and abs(mean / math.sqrt(qi)) > 8:
                continue  # the twin truncates the tail there; test_tails_match_mpmath covers it
            for kind, field in FIELDS.items():
                assert_close(getattr(got, field)[i], dense(name, kind, float(qi), mean),
                             RTOL_MEAN, f"{name} {kind} q={qi:g} mean={mean}")
            assert_close(d2[i], dense(name, "d2phi_phi", float(qi), mean), RTOL_MEAN,
                         f"{name} d2phi_phi q={qi:g} mean={mean}", 1e-300)


@pytest.mark.parametrize("name", ["relu", "leaky_relu", "elu", "selu"])
@pytest.mark.parametrize("mean", MEANS)
def test_tails_match_mpmath_closed_forms(name, mean):
    """Far from the kink (|mean| / sqrt(q) up to 63) the closed forms keep their digits."""
    q = np.array(Q_GRID)
    got = gaussian_moments(name, q, mean=mean)
    kinds = ("phi", "phi2", "dphi2", "var") + (("d2phi_phi",) if name in ("elu", "selu") else ())
    for kind in kinds:
        vals = (getattr(got, FIELDS[kind]) if kind in FIELDS
                else gaussian_expectation(name, q, kind, mean=mean))
        for i, qi in enumerate(Q_GRID):
            assert_close(vals[i], mp_closed(name, kind, qi, mean), RTOL_MEAN,
                         f"{name} {kind} q={qi:g} mean={mean}")


@pytest.mark.parametrize("name", ACTIVATION_NAMES)
def test_anchor_points_match_mpmath(name):
    """The slow twin and the library agree with mpmath's own activations."""
    for q in (1e-3, 1.0, 1e3):
        got = gaussian_moments(name, q)
        for kind in ("phi2", "dphi2") + (("phi",) if name not in ODD and q == 1.0 else ()):
            ref = mp_quad(name, kind, q)
            atol = 1e-15 * math.sqrt(got.e_phi2) if kind == "phi" else 0.0
            assert_close(getattr(got, FIELDS[kind]), ref, RTOL_CENTRED, f"{name} {kind} q={q:g}",
                         atol)
            assert_close(dense(name, kind, q), ref, RTOL_CENTRED, f"twin {name} {kind} q={q:g}",
                         atol)


def test_ramp_moments_continued_fraction_matches_mpmath():
    for a in (-1.0, -1.5, -1.6, -2.0, -3.0, -5.0, -12.0, -30.0, -37.0):
        got = [float(v[0]) for v in ramp_moments(np.array([a]))]
        A = mp.mpf(a)
        P, p = mp.ncdf(A), mp.npdf(A)
        for n, ref in enumerate((P, p + A * P, (1 + A * A) * P + A * p)):
            assert_close(got[n], float(ref), 1e-14, f"I_{n}({a})")


def test_known_values():
    assert gaussian_moments("relu", 2.0).e_phi2 == pytest.approx(1.0, rel=1e-15)
    assert gaussian_moments("linear", 3.0, mean=2.0).e_phi2 == pytest.approx(7.0, rel=1e-15)
    g = gaussian_moments("selu", 1.0)  # the self-normalizing fixed point: mean 0, var 1
    assert abs(g.e_phi) < 1e-15 and g.var_phi == pytest.approx(1.0, rel=1e-14)
    assert gaussian_moments("sigmoid", [0.1, 10.0]).e_phi.tolist() == [0.5, 0.5]
    assert gaussian_moments("tanh", 5.0).e_phi == 0.0
    # erfcx keeps elu finite where e^{2q} overflows: E[elu'^2] = 1/2 + e^{2q} Phi(-2 sqrt q)
    for q in (1e3, 1e5):
        tail = mp.exp(2 * q) * mp.ncdf(-2 * mp.sqrt(q))
        assert gaussian_moments("elu", q).e_dphi2 == pytest.approx(float(0.5 + tail), rel=1e-14)


# ----------------------------------------------------------------------------- twins


@settings(max_examples=60, deadline=None)
@given(name=st.sampled_from(CLOSED), log_q=st.floats(-3, 3), a=st.floats(-4, 4),
       centred=st.booleans())
def test_closed_forms_equal_quadrature(name, log_q, a, centred):
    """Where a closed form is used, the quadrature (forced) gives the same numbers."""
    act = get_activation(name)
    s = math.sqrt(10.0**log_q)
    m = np.array([0.0 if centred else a * s])
    kinds = ("phi", "phi2", "dphi", "dphi2", "d2phi_phi", "var")
    closed = closed_form(act, m, np.array([s]), kinds)
    quad = _quadrature(act, kinds, m, np.array([s]))  # kinds include phi2 and dphi2
    for kind, v in closed.items():
        if np.isnan(v[0]):
            continue  # this row is left to the quadrature anyway
        ref = quad[kind][0]
        scale = {"phi": "phi2", "d2phi_phi": "phi2", "dphi": "dphi2"}.get(kind)  # cancelling kinds
        atol = 1e-15 * math.sqrt(quad[scale][0]) if scale else 1e-300
        assert_close(v[0], ref, 1e-12 if centred else 1e-11,
                     f"{name} {kind} s={s:g} m={m[0]:g}", atol)


def test_elu_switch_between_closed_form_and_quadrature_is_seamless():
    # below m^2 + s^2 = 0.04 ELU's closed form hands over to the quadrature
    q = np.array([0.04 * (1 - 1e-9), 0.04 * (1 + 1e-9)])
    for kind in KINDS:
        v = gaussian_expectation("elu", q, kind)
        assert v[0] == pytest.approx(v[1], rel=2e-8), kind


@settings(max_examples=40, deadline=None)
@given(name=st.sampled_from(ACTIVATION_NAMES),
       log_q=st.lists(st.floats(-3, 3), min_size=2, max_size=6),
       mean=st.sampled_from([0.0, 0.0, -1.5, 0.7]))
def test_vectorized_equals_scalar_calls(name, log_q, mean):
    q = 10.0 ** np.array(log_q)
    vec = gaussian_moments(name, q, mean=mean)
    for i, qi in enumerate(q):
        one = gaussian_moments(name, float(qi), mean=mean)
        for field in FIELDS.values():
            assert getattr(vec, field)[i] == pytest.approx(getattr(one, field), rel=1e-14,
                                                           abs=1e-300)


@settings(max_examples=80, deadline=None)
@given(name=st.sampled_from(ACTIVATION_NAMES), log_q=st.floats(-3, 3),
       mean=st.floats(-3, 3))
def test_moment_inequalities(name, log_q, mean):
    g = gaussian_moments(name, 10.0**log_q, mean=mean)
    assert g.e_phi**2 <= g.e_phi2 * (1 + 1e-12)  # Jensen
    assert 0.0 <= g.var_phi <= g.e_phi2 * (1 + 1e-12)
    assert abs(g.var_phi - (g.e_phi2 - g.e_phi**2)) <= 1e-12 * g.e_phi2 + 1e-300
    assert g.e_dphi2 >= 0.0


# ----------------------------------------------------------------------------- q = 0 and shapes


@pytest.mark.parametrize("name", ACTIVATION_NAMES)
def test_zero_variance_is_the_limit(name):
    act = get_activation(name)
    for mean in (0.0, 0.8, -1.3):
        g0 = gaussian_moments(name, 0.0, mean=mean)
        assert g0.e_phi == float(act(mean)) and g0.var_phi == 0.0
        g = gaussian_moments(name, 1e-16, mean=mean)
        for f in ("e_phi", "e_phi2", "e_dphi2"):
            assert getattr(g0, f) == pytest.approx(getattr(g, f), rel=1e-7, abs=1e-7), f


def test_zero_variance_at_a_kink_averages_the_slopes():
    assert gaussian_moments("relu", 0.0).e_dphi2 == 0.5
    assert gaussian_moments("leaky_relu", 0.0, negative_slope=0.2).e_dphi2 == pytest.approx(0.52)
    assert gaussian_expectation("relu", 0.0, "dphi") == 0.5


def test_shapes_and_scalars():
    g = gaussian_moments("tanh", 1.0)
    assert all(isinstance(v, float) and np.ndim(v) == 0 for v in g)
    g = gaussian_moments("tanh", np.ones((2, 3)), mean=np.array([0.0, 1.0, 2.0]))
    assert all(np.shape(v) == (2, 3) for v in g)
    g = gaussian_moments("relu", [1, 2], mean=[[0.0], [1.0]])
    assert g.e_phi.shape == (2, 2)
    assert gaussian_moments("relu", np.zeros(0)).e_phi.shape == (0,)
    c = gaussian_cross_moments("tanh", [1.0, 2.0], 1.0, c=[[0.1], [0.5], [1.0]])
    assert c.e_phi_phi.shape == (3, 2)
    assert isinstance(gaussian_cross_moments("relu", 1, 1, 0.3).e_phi_phi, float)


def test_activation_objects_and_params():
    a = get_activation("leaky_relu", negative_slope=0.2)
    assert gaussian_moments(a, 2.0).e_phi2 == pytest.approx(1.04)
    assert gaussian_moments("leaky_relu", 2.0, negative_slope=0.2).e_phi2 == pytest.approx(1.04)
    assert gaussian_moments("elu", 1.0, alpha=0.0).e_phi2 == pytest.approx(0.5, rel=1e-13)


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("bad, exc, word", [
    (-1.0, ValueError, "q"), (np.nan, ValueError, "q"), (np.inf, ValueError, "q"),
    ([1.0, -2.0], ValueError, "index"), ("1.0", TypeError, "q"), (1j, TypeError, "q"),
    (None, TypeError, "q"),
])
def test_bad_q(bad, exc, word):
    with pytest.raises(exc, match=word):
        gaussian_moments("tanh", bad)


def test_bad_other_arguments():
    with pytest.raises(ValueError, match="mean"):
        gaussian_moments("tanh", 1.0, mean=np.nan)
    with pytest.raises(ValueError, match="unknown name"):
        gaussian_moments("tanhh", 1.0)
    with pytest.raises(TypeError, match="negative_slope"):
        gaussian_moments("tanh", 1.0, negative_slope=0.1)
    with pytest.raises(ValueError, match="kind"):
        gaussian_expectation("tanh", 1.0, "phi3")
    with pytest.raises(ValueError, match="broadcast|shape"):
        gaussian_moments("tanh", [1.0, 2.0], mean=[0.0, 1.0, 2.0])
    with pytest.raises(ValueError, match="c must be"):
        gaussian_cross_moments("tanh", 1.0, 1.0, 1.1)
    with pytest.raises(ValueError, match="exactly one"):
        gaussian_cross_moments("tanh", 1.0, 1.0)
    with pytest.raises(ValueError, match="exactly one"):
        gaussian_cross_moments("tanh", 1.0, 1.0, 0.5, q12=0.5)
    with pytest.raises(ValueError, match="q12"):
        gaussian_cross_moments("tanh", 1.0, 4.0, q12=2.5)
    with pytest.raises(ValueError, match="q22"):
        gaussian_cross_moments("tanh", 1.0, -4.0, 0.5)


# ----------------------------------------------------------------------------- cross terms


def _polar(name: str, q11: float, q22: float, c: float) -> tuple[float, float]:
    """E over the (z1, z2) plane in polar coordinates, angular panels split at the kink
    lines u1 = 0 and u2 = 0 (rays through the origin): every panel is smooth."""
    act = get_activation(name)
    r = math.sqrt(1 - c * c)
    kinks = np.mod([math.pi / 2, 3 * math.pi / 2, math.atan2(-c, r), math.atan2(c, -r)],
                   2 * math.pi)
    a_edges = np.unique(np.concatenate([kinks, np.linspace(0, 2 * math.pi, 33)]))
    smax = max(math.sqrt(q11), math.sqrt(q22), 1.0)
    r_edges = np.unique(np.concatenate([np.arange(0, 12.01, 0.5),
                                        np.arange(0, 2.0, 0.25 / smax)]))

    def rule(edges):
        h, mid = np.diff(edges) / 2, (edges[1:] + edges[:-1]) / 2
        return ((mid[:, None] + h[:, None] * _X20).ravel(), (h[:, None] * _W20).ravel())

    th, wt = rule(a_edges)
    rho, wr = rule(r_edges)
    z1, z2 = rho[:, None] * np.cos(th), rho[:, None] * np.sin(th)
    w = (wr * rho * np.exp(-rho * rho / 2))[:, None] * wt / (2 * math.pi)
    u1, u2 = math.sqrt(q11) * z1, math.sqrt(q22) * (c * z1 + r * z2)
    return (float(np.sum(act(u1) * act(u2) * w)),
            float(np.sum(act.derivative(u1) * act.derivative(u2) * w)))


@pytest.mark.parametrize("name", ACTIVATION_NAMES)
def test_cross_moments_match_polar_rule(name):
    for q11, q22, c in ((1.0, 1.0, 0.5), (0.5, 2.0, -0.8), (4.0, 3.0, 0.97)):
        got = gaussian_cross_moments(name, q11, q22, c)
        ref = _polar(name, q11, q22, c)
        for v, r_, what in zip(got, ref, ("phi phi", "dphi dphi")):
            assert_close(v, r_, 1e-11, f"{name} {what} q=({q11}, {q22}) c={c}", 1e-15)


@pytest.mark.parametrize("name", ["relu", "leaky_relu", "linear"])
def test_arc_cosine_kernel_equals_nested_quadrature(name):
    act = get_activation(name)
    c = np.array([-1.0, -0.9, -0.3, 0.0, 0.4, 0.95, 0.999999, 1.0])
    s1, s2 = np.full(c.shape, 1.3), np.full(c.shape, 0.4)
    closed = cross_expect(act, s1, s2, c, np.zeros_like(c))
    nested = _nested(act, s1, s2, c, np.zeros_like(c))
    np.testing.assert_allclose(closed[0], nested[0], rtol=1e-12, atol=1e-16)
    np.testing.assert_allclose(closed[1], nested[1], rtol=1e-12)


@settings(max_examples=25, deadline=None)
@given(name=st.sampled_from(ACTIVATION_NAMES), lq1=st.floats(-2, 2), lq2=st.floats(-2, 2),
       c=st.floats(-0.95, 0.95), mean=st.sampled_from([0.0, 0.0, 0.6]))
def test_cross_moment_identities(name, lq1, lq2, c, mean):
    q1, q2 = 10.0**lq1, 10.0**lq2
    g1 = gaussian_moments(name, q1, mean=mean)
    g2 = gaussian_moments(name, q2, mean=mean)
    # symmetric in the two inputs
    a, b = gaussian_cross_moments(name, q1, q2, c, mean=mean), \
        gaussian_cross_moments(name, q2, q1, c, mean=mean)
    assert a.e_phi_phi == pytest.approx(b.e_phi_phi, rel=1e-11, abs=1e-14)
    assert a.e_dphi_dphi == pytest.approx(b.e_dphi_dphi, rel=1e-11, abs=1e-14)
    # c = 1 (same input) and c = 0 (independent inputs)
    same = gaussian_cross_moments(name, q1, q1, 1.0, mean=mean)
    assert same.e_phi_phi == pytest.approx(g1.e_phi2, rel=1e-12, abs=1e-300)
    assert same.e_dphi_dphi == pytest.approx(g1.e_dphi2, rel=1e-12)
    indep = gaussian_cross_moments(name, q1, q2, 0.0, mean=mean)
    assert indep.e_phi_phi == pytest.approx(g1.e_phi * g2.e_phi, rel=1e-11, abs=1e-14)
    # Price's theorem: d/dc E[phi phi] = sqrt(q1 q2) E[phi' phi'] (central difference, the
    # O(h^2) truncation with h = 1e-4 bounds the tolerance)
    h = 1e-4
    up = gaussian_cross_moments(name, q1, q2, c + h, mean=mean).e_phi_phi
    down = gaussian_cross_moments(name, q1, q2, c - h, mean=mean).e_phi_phi
    slope = (up - down) / (2 * h)
    assert slope == pytest.approx(math.sqrt(q1 * q2) * a.e_dphi_dphi, rel=1e-6, abs=1e-9)


def test_cross_moments_limits_and_covariance_form():
    g = gaussian_moments("tanh", 2.0)
    anti = gaussian_cross_moments("tanh", 2.0, 2.0, -1.0)
    assert anti.e_phi_phi == pytest.approx(-g.e_phi2, rel=1e-13)  # tanh is odd
    via_q12 = gaussian_cross_moments("gelu", 2.0, 0.5, q12=0.6)
    assert via_q12 == gaussian_cross_moments("gelu", 2.0, 0.5, 0.6)
    zero = gaussian_cross_moments("sigmoid", 0.0, 3.0, q12=0.0)  # a point mass and a Gaussian
    assert zero.e_phi_phi == pytest.approx(0.5 * 0.5, rel=1e-15)
    # found by hypothesis: a subnormal c put the refinement centre at -0.6 / 5e-324
    tiny = gaussian_cross_moments("linear", 1.0, 1.0, 5e-324, mean=0.6)
    assert tiny.e_phi_phi == pytest.approx(0.36, rel=1e-14)
    with np.errstate(over="raise"):
        gaussian_moments("tanh", 1e-300, mean=1e300)


# ----------------------------------------------------------------------------- speed


def test_a_thousand_variances_are_fast():
    """Target: well under 50 ms for 1,000 q (bench figure); this only catches a 10x
    regression, as CI machines are shared."""
    q = np.logspace(-3, 3, 1000)
    for name in ACTIVATION_NAMES:
        gaussian_moments(name, q)
        t = time.process_time()
        gaussian_moments(name, q)
        assert time.process_time() - t < 0.5, name
