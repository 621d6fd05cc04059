"""Gaussian expectations of an activation: the integrals every mean-field formula needs.

:func:`gaussian_moments` gives, for ``x ~ N(mean, q)``, ``E[phi(x)]``, ``E[phi(x)^2]``,
``E[phi'(x)^2]`` and ``Var[phi(x)]``; :func:`gaussian_expectation` any one of those or
``E[phi'(x)]``, ``E[phi''(x) phi(x)]`` (:data:`KINDS`);
:func:`gaussian_cross_moments` gives ``E[phi(u1) phi(u2)]`` and ``E[phi'(u1) phi'(u2)]``
for a correlated Gaussian pair (docs/theory.md sections 2-4).

Closed forms are used wherever docs/theory.md section 5 gives one (extended to a non-zero
mean where that stays exact: linear, relu, leaky_relu, elu, selu; gelu's ``E[phi]`` and
``E[phi']``; the arc-cosine kernel for the relu-like cross terms); everything else is the
composite Gauss-Legendre rule of :mod:`varprop.theory.quadrature`. Exact symmetries are
exact: at mean 0, ``E[phi]`` is the record's
:attr:`~varprop.activations.Activation.centred_mean` (0 for the odd activations linear,
tanh, softsign; 1/2 for sigmoid).

Accuracy (tests/test_gaussian.py, against mpmath at 30 digits): relative error below
``1e-12`` for every registry activation and kind over ``q`` in ``[1e-3, 1e3]`` at mean 0,
and below ``1e-9`` with a non-zero mean (values that underflow float64 excepted).

Conventions. ``q`` is the variance of x (with mean 0 also its second moment). ``q = 0``
is the limit ``q -> 0+``: a point mass at ``mean`` for ``phi`` and ``phi^2``, and, at a
kink (``mean = 0`` for relu-likes), the average of the one-sided values for the
derivative terms, e.g. ``E[relu'(x)^2] = 1/2``, so every moment is continuous in ``q``.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

from ..activations import Activation, get_activation
from . import quadrature
from .closed_forms import closed_form

__all__ = ["GaussianMoments", "CrossMoments", "KINDS", "gaussian_moments",
           "gaussian_expectation", "gaussian_cross_moments"]

#: The expectations :func:`gaussian_expectation` computes, for x ~ N(mean, q).
KINDS = {
    "phi": "E[phi(x)]",
    "phi2": "E[phi(x)^2]",
    "dphi": "E[phi'(x)]",
    "dphi2": "E[phi'(x)^2]",
    "d2phi_phi": "E[phi''(x) phi(x)] (dE[phi^2]/dq = E[phi'^2] + E[phi'' phi])",
    "var": "Var[phi(x)], without the cancellation of E[phi^2] - E[phi]^2",
}
# A tolerance on |c| > 1 that only forgives rounding (c computed as q12 / sqrt(q11 q22)).
C_SLACK = 1e-14
# Beyond this |mean| / std the Gaussian is the point mean to double precision (the
# corrections are O(std^2 / mean^2)), and the closed forms would square mean / std.
_FAR = 1e150
# One-sided offset for the derivative terms of a point mass at a kink (see module doc).
_KINK_OFFSET = 1e-300

ArrayLike = Any


class GaussianMoments(NamedTuple):
    """Moments of ``phi(x)`` for ``x ~ N(mean, q)``.

    Each field is a float64 ndarray of the broadcast shape of ``q`` and ``mean`` (a numpy
    float64 scalar, which is a Python float, when both are scalars).
    """

    e_phi: Any
    """``E[phi(x)]``."""
    e_phi2: Any
    """``E[phi(x)^2]`` (feeds the next layer's ``q``)."""
    e_dphi2: Any
    """``E[phi'(x)^2]`` (the per-layer gradient factor, ``chi_1 / sigma_w^2``)."""
    var_phi: Any
    """``Var[phi(x)]``, computed without the cancellation of ``e_phi2 - e_phi**2``."""


class CrossMoments(NamedTuple):
    """Bivariate moments for a correlated Gaussian pair (see :func:`gaussian_cross_moments`)."""

    e_phi_phi: Any
    """``E[phi(u1) phi(u2)]``."""
    e_dphi_dphi: Any
    """``E[phi'(u1) phi'(u2)]``."""


# ----------------------------------------------------------------------------- checks


def as_real_array(value: ArrayLike, name: str, *, nonnegative: bool = False) -> np.ndarray:
    """``value`` as a float64 array, or a TypeError / ValueError naming ``name``."""
    arr = np.asarray(value)
    if arr.dtype.kind not in "iuf":
        raise TypeError(f"{name} must be a real number or array of real numbers, "
                        f"got {arr.dtype} ({type(value).__name__})")
    arr = arr.astype(np.float64, copy=False)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite, got {first_bad(arr, ~np.isfinite(arr))}")
    if nonnegative and np.any(arr < 0):
        raise ValueError(f"{name} must be >= 0 (a variance), got {first_bad(arr, arr < 0)}")
    return arr


def first_bad(arr: np.ndarray, bad: np.ndarray) -> str:
    if arr.ndim == 0:
        return repr(float(arr))
    idx = tuple(int(i) for i in np.argwhere(bad)[0])
    return f"{float(arr[idx])!r} at index {idx}"


def _scalar_or_array(arr: np.ndarray) -> Any:
    return arr[()] if arr.ndim == 0 else arr


# ----------------------------------------------------------------------------- 1-d core


def expect(act: Activation, kinds: tuple[str, ...], m: np.ndarray, s: np.ndarray,
           q: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """The expectations ``kinds`` (see :mod:`.closed_forms`) for flat arrays m, s >= 0
    (and, when known exactly, q = s^2)."""
    out = {k: np.empty(m.shape) for k in kinds}
    point = s == 0.0
    with np.errstate(divide="ignore", over="ignore"):  # |m| / s above _FAR: see below
        far = ~point & (np.abs(m / np.where(point, 1.0, s)) > _FAR)
    if np.any(point):
        for k, v in _point_mass(act, kinds, m[point]).items():
            out[k][point] = v
    if np.any(far):  # the linearization at the mean: exact to double precision
        sf = s[far]
        for k, v in _point_mass(act, kinds, m[far], sf * sf if q is None else q[far]).items():
            out[k][far] = v
        point = point | far
    rows = ~point
    if not np.any(rows):
        return out
    mr, sr = m[rows], s[rows]
    todo = {k: np.ones(mr.shape, bool) for k in kinds}
    for k, v in closed_form(act, mr, sr, kinds, None if q is None else q[rows]).items():
        out[k][rows] = v
        todo[k] = np.isnan(v)
    if "phi" in kinds and act.centred_mean is not None:  # fixed by a symmetry at mean 0
        centred = mr == 0.0
        out["phi"][np.flatnonzero(rows)[centred]] = act.centred_mean
        todo["phi"] &= ~centred
    need = np.zeros(mr.shape, bool)
    for v in todo.values():
        need |= v
    if np.any(need):
        quad_kinds = tuple(k for k in kinds if np.any(todo[k] & need))
        vals = _quadrature(act, quad_kinds, mr[need], sr[need])
        where = np.flatnonzero(rows)[need]
        for k in quad_kinds:
            fill = todo[k][need]
            out[k][where[fill]] = vals[k][fill]
    return out


def _point_mass(act: Activation, kinds: tuple[str, ...], m: np.ndarray,
                q: np.ndarray | None = None) -> dict:
    # The q -> 0+ limit: phi(m) itself; one-sided average of phi', phi'' at m = 0. With
    # q (a variance negligible next to m^2, m != 0): Var[phi] = phi'(m)^2 q.
    at = act(m)
    lo = np.where(m == 0.0, -_KINK_OFFSET, m)
    with np.errstate(over="ignore"):  # phi(m)^2 beyond float64 is inf
        return _point_kinds(act, kinds, m, q, at, lo, np.where(m == 0.0, _KINK_OFFSET, m))


def _point_kinds(act: Activation, kinds: tuple[str, ...], m: np.ndarray, q: np.ndarray | None,
                 at: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> dict:
    """The kinds of :func:`_point_mass` from phi(m) and the one-sided points lo, hi."""
    out = {}
    for k in kinds:
        if k == "phi":
            out[k] = at
        elif k == "phi2":
            out[k] = at * at
        elif k == "var":
            out[k] = np.zeros_like(m) if q is None else act.derivative(m) ** 2 * q
        elif k == "dphi":
            out[k] = 0.5 * (act.derivative(lo) + act.derivative(hi))
        elif k == "dphi2":
            out[k] = 0.5 * (act.derivative(lo) ** 2 + act.derivative(hi) ** 2)
        elif k == "d2phi_phi":
            out[k] = 0.5 * (act.second_derivative(lo) + act.second_derivative(hi)) * at
    return out


def _quadrature(act: Activation, kinds: tuple[str, ...], m: np.ndarray,
                s: np.ndarray) -> dict[str, np.ndarray]:
    use_phi = bool({"phi", "phi2", "d2phi_phi", "var"} & set(kinds))
    use_d = bool({"dphi", "dphi2"} & set(kinds))
    centre = act(m) if "var" in kinds else None  # Var = E[(phi-c)^2] - E[phi-c]^2
    # phi at nodes beyond 2^500 is squared: scale it by 2^-e first (e = 0 elsewhere, where
    # nothing changes), so that a representable E[phi^2] is not lost to an inf node
    e = _scale_exponents(m, s) if use_phi else None
    c = None if e is None else np.ldexp(1.0, -e)
    if c is not None and centre is not None:
        centre = centre * c

    def integrand(x: np.ndarray, t: np.ndarray, rows: np.ndarray) -> list[np.ndarray]:
        p = act(x) if use_phi else None
        if c is not None:
            p = p * c[rows, None]
        d = act.derivative(x) if use_d else None
        vals = []
        for k in kinds:
            if k == "phi":
                vals.append(p)
            elif k == "phi2":
                vals.append(p * p)
            elif k == "dphi":
                vals.append(d)
            elif k == "dphi2":
                vals.append(d * d)
            elif k == "d2phi_phi":
                vals.append(act.second_derivative(x) * p)
            elif k == "var":
                dev = p - centre[rows, None]
                vals += [dev * dev, dev]
        return vals

    n_out = len(kinds) + ("var" in kinds)
    res = quadrature.integrate(integrand, m, s, n_out)
    out = {k: res[i] for i, k in enumerate(kinds)}
    if "var" in kinds:
        shift = res[len(kinds)]
        out["var"] = np.maximum(out["var"] - shift * shift, 0.0)
    if e is not None:
        with np.errstate(over="ignore"):  # a moment beyond float64 is inf
            for k in kinds:
                power = 2 if k in ("phi2", "var") else 1 if k in ("phi", "d2phi_phi") else 0
                if power:
                    out[k] = np.ldexp(out[k], power * e)
    return out


def _scale_exponents(m: np.ndarray, s: np.ndarray) -> np.ndarray | None:
    """Per row, the power of two that brings its largest node (``|m| + T_MAX s``) below
    2^500, or None where every row is below it already."""
    with np.errstate(over="ignore"):
        big = np.abs(m) + quadrature.T_MAX * s
    if not np.any(big > 2.0**500):
        return None
    return np.maximum(np.frexp(big)[1] - 500, 0)


# ----------------------------------------------------------------------------- public


def gaussian_moments(activation: "str | Activation", q: ArrayLike, *, mean: ArrayLike = 0.0,
                     **activation_params: Any) -> GaussianMoments:
    """Moments of ``phi(x)`` for ``x ~ N(mean, q)``: the integrals of the length map.

    .. math::
        E[f(x)] = \\int f(\\mathrm{mean} + \\sqrt{q}\\, z)\\, Dz, \\quad
        Dz = e^{-z^2/2} dz / \\sqrt{2\\pi}

    for ``f = phi, phi^2, phi'^2`` and ``Var[phi(x)]`` (Poole et al. 2016,
    arXiv 1606.05340; Schoenholz et al. 2017, arXiv 1611.01232); ``E[phi'' phi]`` and
    ``E[phi']`` come from :func:`gaussian_expectation`. Closed forms where
    docs/theory.md section 5 has them, composite Gauss-Legendre quadrature elsewhere; relative
    error below 1e-12 for q in [1e-3, 1e3] at mean 0 (see the module docstring).

    Args:
        activation: a registry name or an :class:`~varprop.activations.Activation`.
        q: variance of x (array-like, >= 0); with ``mean = 0`` also its second moment.
            ``q = 0`` is the limit ``q -> 0+`` (module docstring).
        mean: mean of x (array-like, broadcast against ``q``).
        **activation_params: parameters of a named activation (``negative_slope``,
            ``alpha``).

    Returns:
        :class:`GaussianMoments` with fields ``e_phi``, ``e_phi2``, ``e_dphi2``,
        ``var_phi``, arrays of the broadcast shape of ``q`` and ``mean``
        (numpy float64 scalars when both are scalars).

    Raises:
        ValueError: ``q`` negative or non-finite, ``mean`` non-finite, unknown activation.
        TypeError: non-numeric ``q`` or ``mean``, bad activation parameters.

    Example:
        >>> float(gaussian_moments("relu", 2.0).e_phi2)      # q / 2
        1.0
    """
    kinds = ("phi", "phi2", "dphi2", "var")
    res, shape = _run(activation, q, mean, kinds, activation_params)
    return GaussianMoments(*(_scalar_or_array(res[k].reshape(shape)) for k in kinds))


def gaussian_expectation(activation: "str | Activation", q: ArrayLike, kind: str, *,
                         mean: ArrayLike = 0.0, **activation_params: Any) -> Any:
    """One Gaussian expectation ``kind`` of :data:`KINDS` for ``x ~ N(mean, q)``.

    Same conventions, accuracy and errors as :func:`gaussian_moments`; ``kind`` is one of
    ``"phi"``, ``"phi2"``, ``"dphi"``, ``"dphi2"``, ``"d2phi_phi"``, ``"var"``. The one
    :func:`gaussian_moments` does not return, ``"d2phi_phi"`` = ``E[phi''(x) phi(x)]``,
    is what the depth scale ``xi_q`` needs (Schoenholz et al. 2017, eq. for
    ``chi_q``); phi'' is the registry's (0 off the kink for piecewise-linear units).

    Example:
        >>> float(gaussian_expectation("tanh", 0.0, "dphi2"))     # phi'(0)^2
        1.0
    """
    if not isinstance(kind, str) or kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(map(repr, KINDS))}, got {kind!r}")
    res, shape = _run(activation, q, mean, (kind,), activation_params)
    return _scalar_or_array(res[kind].reshape(shape))


def _run(activation, q, mean, kinds, activation_params):
    act = get_activation(activation, **activation_params)
    q = as_real_array(q, "q", nonnegative=True)
    mean = as_real_array(mean, "mean")
    shape = np.broadcast_shapes(q.shape, mean.shape)
    m = np.broadcast_to(mean, shape).ravel()
    q = np.broadcast_to(q, shape).ravel()
    return expect(act, kinds, m, np.sqrt(q), q), shape


def gaussian_cross_moments(activation: "str | Activation", q11: ArrayLike, q22: ArrayLike,
                           c: ArrayLike | None = None, *, q12: ArrayLike | None = None,
                           mean: ArrayLike = 0.0, **activation_params: Any) -> CrossMoments:
    """``E[phi(u1) phi(u2)]`` and ``E[phi'(u1) phi'(u2)]`` for a correlated Gaussian pair.

    ``u1 = mean + sqrt(q11) z1``, ``u2 = mean + sqrt(q22) (c z1 + sqrt(1 - c^2) z2)``
    with ``z1, z2`` independent standard normals (docs/theory.md section 4): the integrals of
    the correlation map ``q12' = sigma_w^2 E[phi(u1) phi(u2)] + sigma_b^2`` and of
    ``chi_c = sigma_w^2 E[phi'(u1) phi'(u2)]``.

    relu / leaky_relu at mean 0 use the arc-cosine kernel (Cho & Saul 2009), with
    ``theta = arccos c``::

        E[relu(u1) relu(u2)]   = sqrt(q11 q22) (sin theta + (pi - theta) cos theta) / (2 pi)
        E[relu'(u1) relu'(u2)] = (pi - theta) / (2 pi)

    (leaky_relu(s) = s x + (1 - s) relu(x) adds ``s c sqrt(q11 q22)`` and ``s``). All
    others integrate over ``z1`` the conditional expectation of ``phi(u2)`` given ``z1``
    (itself a Gaussian expectation with mean ``mean + c sqrt(q22) z1`` and variance
    ``q22 (1 - c^2)``: closed form for relu-likes, elu, selu, gelu, quadrature otherwise),
    so kinks in the plane never fall inside a panel; ``c = +-1`` is exact.

    Args:
        activation: a registry name or an Activation.
        q11, q22: the variances of u1, u2 (>= 0).
        c: the correlation in [-1, 1]; give ``c`` or ``q12 = c sqrt(q11 q22)``.
        q12: the covariance, alternative to ``c``.
        mean: common mean of u1 and u2 (default 0).
        **activation_params: parameters of a named activation.

    Returns:
        :class:`CrossMoments` (``e_phi_phi``, ``e_dphi_dphi``) of the broadcast shape of
        the inputs (numpy float64 scalars for scalar inputs).

    Raises:
        ValueError: ``|c| > 1``, ``|q12| > sqrt(q11 q22)``, both or neither of ``c`` and
            ``q12``, negative or non-finite variances.

    Example:
        >>> round(float(gaussian_cross_moments("relu", 1.0, 1.0, c=0.0).e_phi_phi), 6)
        0.159155
    """
    act = get_activation(activation, **activation_params)
    q11 = as_real_array(q11, "q11", nonnegative=True)
    q22 = as_real_array(q22, "q22", nonnegative=True)
    mean = as_real_array(mean, "mean")
    if (c is None) == (q12 is None):
        raise ValueError("gaussian_cross_moments: give exactly one of c (the correlation) "
                         "and q12 (the covariance)")
    if c is not None:
        c = as_real_array(c, "c")
        bad = np.abs(c) > 1.0 + C_SLACK
        if np.any(bad):
            raise ValueError(f"c must be a correlation in [-1, 1], got {first_bad(c, bad)}")
    else:
        q12 = as_real_array(q12, "q12")
        scale = np.sqrt(q11 * q22)
        bad = np.abs(q12) > scale * (1.0 + C_SLACK)
        if np.any(bad):
            raise ValueError("q12 must satisfy |q12| <= sqrt(q11 q22) (a covariance), got "
                             f"{first_bad(np.broadcast_to(q12, bad.shape), bad)}")
        c = np.where(scale > 0, q12 / np.where(scale > 0, scale, 1.0), 0.0)
    shape = np.broadcast_shapes(q11.shape, q22.shape, c.shape, mean.shape)
    flat = [np.broadcast_to(v, shape).ravel() for v in (q11, q22, c, mean)]
    q11f, q22f, cf, mf = flat
    cf = np.clip(cf, -1.0, 1.0)
    phiphi, dd = cross_expect(act, np.sqrt(q11f), np.sqrt(q22f), cf, mf)
    return CrossMoments(_scalar_or_array(phiphi.reshape(shape)),
                        _scalar_or_array(dd.reshape(shape)))


def cross_expect(act: Activation, s1: np.ndarray, s2: np.ndarray, c: np.ndarray,
                 m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flat-array core of :func:`gaussian_cross_moments` (s1, s2 standard deviations)."""
    n = s1.size
    pp, dd = np.empty(n), np.empty(n)
    todo = np.ones(n, bool)
    degenerate = (s1 == 0.0) | (s2 == 0.0)  # one of them is a point mass: independent
    if np.any(degenerate):
        mm = np.concatenate([m[degenerate], m[degenerate]])
        ss = np.concatenate([s1[degenerate], s2[degenerate]])
        e = expect(act, ("phi", "dphi"), mm, ss)
        k = int(degenerate.sum())
        pp[degenerate] = e["phi"][:k] * e["phi"][k:]
        dd[degenerate] = e["dphi"][:k] * e["dphi"][k:]
        todo &= ~degenerate
    if act.piecewise_linear:  # phi = right (sl x + (1 - sl) relu(x)), sl = left / right
        rows = todo & (m == 0.0)
        left, right = act.slopes
        sl = left / right
        cr = c[rows]
        theta = np.arctan2(np.sqrt((1.0 - cr) * (1.0 + cr)), cr)
        k1 = (np.sin(theta) + (math.pi - theta) * cr) / (2.0 * math.pi)
        b = (1.0 - sl) ** 2
        pp[rows] = right * right * (s1[rows] * s2[rows] * (sl * cr + b * k1))
        dd[rows] = right * right * (sl + b * (math.pi - theta) / (2.0 * math.pi))
        todo &= ~rows
    if np.any(todo):
        pp[todo], dd[todo] = _nested(act, s1[todo], s2[todo], c[todo], m[todo])
    return pp, dd


def _nested(act: Activation, s1: np.ndarray, s2: np.ndarray, c: np.ndarray,
            m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    # E[phi(u1) phi(u2)] = E_z1[ phi(m + s1 z1) g(m + c s2 z1) ], g(mu) = E[phi(N(mu, sd^2))]
    sd = s2 * np.sqrt((1.0 - c) * (1.0 + c))
    slope = c * s2  # d(mean of u2 | z1) / dz1
    # refine the outer panels where the conditional mean of u2 crosses 0 as well; g is
    # smooth there on the scale max(sd, activation scale), kinks only on the scale sd.
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):  # inf: no centre
        tc = np.where(slope != 0.0, -m / np.where(slope != 0.0, slope, 1.0), np.inf)
        width = np.maximum(np.minimum(sd, quadrature.X_WIDTH), 1e-8 * quadrature.X_WIDTH)
        d_min = np.where(slope != 0.0, width / np.abs(slope), np.inf)
    tc = np.where(m == 0.0, 0.0, tc)

    # both factors of phi(u1) phi(u2) scaled by 2^-e below 2^500 (see _quadrature)
    e = _scale_exponents(m, np.maximum(s1, s2))
    c = np.ones_like(m) if e is None else np.ldexp(1.0, -e)

    def integrand(x: np.ndarray, t: np.ndarray, rows: np.ndarray) -> list[np.ndarray]:
        mu = m[rows, None] + slope[rows, None] * t
        sd_rows = np.broadcast_to(sd[rows, None], mu.shape)
        g = expect(act, ("phi", "dphi"), mu.ravel(), sd_rows.ravel())
        cr = c[rows, None]
        return [(act(x) * cr) * (g["phi"].reshape(mu.shape) * cr),
                act.derivative(x) * g["dphi"].reshape(mu.shape)]

    res = quadrature.integrate(integrand, m, s1, 2, extra_centres=[(tc, d_min)])
    if e is None:
        return res[0], res[1]
    with np.errstate(over="ignore"):
        return np.ldexp(res[0], 2 * e), res[1]

