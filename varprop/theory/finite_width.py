"""First-order finite-width theory of a plain ``Dense [Act]`` chain: the spread of
``log(measured / mean field)`` of each layer's variances at the network's own widths,
and where it is too large for the mean field to be predictive (docs/theory.md,
sections 7 and 11).

Derivation
----------
Take a chain of dense layers with zero-mean weights, ``sigma_w^2 = n_in Var[W]``, bias
variance ``sigma_b^2`` and widths ``n_l``, fed a batch of ``B`` standard-normal inputs.
Given the previous layer's activations, the units ``j`` of layer l are i.i.d.: each
unit's batch column ``z_{.j}`` is Gaussian (exactly for normal weights, by the CLT
otherwise) with covariance ``sigma_w^2 A A^T / n + sigma_b^2`` (``A`` the activations).
So every batch-pooled statistic is an average of ``n_l`` i.i.d. unit terms, and:

* the measured ``E[a^2]`` of layer l is ``M(q^_l) (1 + eps_l)``, ``M(q) = E[phi(z)^2]``,
  ``q^_l = sigma_w^2 A_{l-1} + sigma_b^2`` the layer's realized variance, with
  ``Var[eps_l] = (K_f / B + (1 - 1/B) kappa(c_l)) / n_l``. Here
  ``K_f = E[phi^4] / E[phi^2]^2 - 1`` (one input: 5 for ReLU, Hanin & Rolnick's
  constant, arXiv 1803.01719; 2 for linear) and ``kappa(c) = Cov(phi(u)^2, phi(v)^2) /
  E[phi^2]^2`` for two inputs whose pre-activations have correlation ``c``
  (``kappa(1) = K_f``, ``kappa(0) = 0``; by quadrature). ``c_l`` is the c-map of
  ``analyze(net, input_correlation=0)`` with its finite-width spread,
  ``c^2 <= c_map^2 + sum_k 1/n_k``: ReLU drives the batch towards identical inputs (the
  one-input bound is then attained), a linear or tanh network keeps it decorrelated and
  the batch averages the noise;
* the measured ``z_var_l = q^_l (1 + eta_l)``, ``Var[eta_l] = 2 (1/B + (1 - 1/B) c^2) /
  n_l`` (a chi-square over units); for layer 1, with Gaussian inputs, exactly
  ``2 (n_0 + B + 1) / (B n_0 n_1)``.

To first order ``u_l = log(q^_l / q_l)`` obeys ``u_{l+1} = h_{l+1} (mu_l u_l + eps_l)``,
``mu = d log M / d log q``, ``h = sigma_w^2 M / q'`` (bias dilution), ``u_1`` from the
input's own ``Var = 2 / (B n_0)``. The eps of different layers are independent (fresh
weights), so ``V_l = Var[u_l]`` follows ``V_{l+1} = h^2 (mu^2 V_l + Var[eps_l])`` and

    Var[log(z_var_l / q_l)] = sigma_f^2(l) = V_l + Var[eta_l].

For He-ReLU (``mu = h = 1``, ``c -> 1``) this is ``5 sum_l 1/n_l`` (docs/theory.md,
section 7). Where the variance map expands fluctuations (``mu h > 1``, GELU at He's scale
while its variance falls) the noise of every layer is amplified by all later ones.

Backward, ``G_l = (G_{l+1} W^T) * phi'(Z_l)`` for the ``B x n`` matrix of per-sample
gradients. Given ``G_{l+1}``, the columns ``G_{l+1} w_i`` are i.i.d. Gaussian with
covariance ``C`` (the gradients' Gram matrix), so each layer multiplies the pooled mean
square by an average of ``n_l`` i.i.d. terms of relative variance
``K_b = R (1 + 2 tr(C^2) / tr(C)^2) - 1``, ``R = E[phi'^4] / E[phi'^2]^2`` (all masks of a
unit alike across the batch: the worst case). The output gradients are independent
standard normals, ``tr(C^2)/tr(C)^2 = 1/B + 1/n_L``, and each layer adds ``R / n_l`` to it
(a Wishart step; for ReLU ``R = 2`` and with one input ``K_b = 5`` again), up to its
bound ``tr(C^2) <= tr(C)^2``. The factor ``E[phi'^2](q^_l)`` also moves with the forward
fluctuation, ``nu = d log E[phi'^2] / d log q`` (0 for ReLU-likes and linear); with the
covariance of the ``u``, ``Cov(u_j, u_k) = V_j prod_{i=j}^{k-1} a_i`` (``k >= j``,
``a_i = h_{i+1} mu_i``), and ``Var[X + Y] <= (sd X + sd Y)^2``:

    sigma_b(l) = sqrt(sum_{k>=l} K_b(k) / n_k) + sd(S_l),   S_l = sum_{k>=l} nu_k u_k.

``Var[S_l]`` takes one step per layer, from the output down:
``Var[S_l] = nu_l^2 V_l + 2 nu_l V_l a_l T_{l+1} + Var[S_{l+1}]`` with
``T_l = nu_l + a_l T_{l+1}`` (``T_l = sum_{k>=l} nu_k prod_{i=l}^{k-1} a_i``), so the
whole profile costs O(L). (Gradient independence, docs/theory.md section 3: the backward
pass's reuse of W is exact in expectation for ReLU, Hanin 2018, and an O(1/n) effect
otherwise.)

``K_f``, ``kappa``, ``mu``, ``nu`` are evaluated at each layer's mean-field ``q_l`` by
quadrature, at the distinct variances of the chain (a deep chain at a fixed point has
one); beyond ``MAX_POINTS`` distinct ones (a drift over many layers) they are
interpolated by a cubic spline in ``log q`` through ``MAX_POINTS`` evenly spaced nodes
(the constants are smooth in ``log q``: even at the widest spacing, 1.2, sigma
changes by less than 1e-3, tests/test_finite_width.py). A variance outside
``Q_RANGE = [1e-8, 1e8]`` (an exploding or vanishing chain, or one that overflowed or
underflowed, docs/theory.md section 10) is clipped into it: there the constants are at
their small- or large-variance limits to ~1e-4, except ``R_b`` of the saturating
activations (tanh, sigmoid, softsign), which grows as ``sqrt(q)``: their backward sigma
beyond is a lower bound (already far past the threshold at any width below ~1e4).

Every variance is ``sigma^2 = O(1/n)`` at fixed depth (``mu``, ``h``, ``K`` depend on
``q`` alone, not on the width): widening every layer by ``f`` divides ``sigma`` by
``sqrt(f)`` (the backward pass's ``1/n^2`` terms fall faster). When ``sigma`` is of order
1 the first-order expansion fails (the dropped second-order terms, Jensen's
``sigma^2 / 2`` and the curvature of ``log M``, are as large as ``sigma``): the regime
of :func:`regime`, section 11 of docs/theory.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
from scipy.interpolate import CubicSpline

from ..activations import Activation
from ..layers.base import plain_chain
from . import quadrature
from .gaussian import gaussian_moments

__all__ = ["THRESHOLD", "TARGET", "SIGMA_CAP", "REASON", "Bounds", "Regime", "act_constants",
           "kappa", "spread", "bounds", "regime", "tolerance"]

#: Predicted sigma of ``log(measured / mean field)`` above which the mean field is not
#: predictive at the network's width: the first-order expansion's dropped terms are then
#: as large as its spread, and a single network is typically off by more than a factor e
#: (docs/theory.md, section 11).
THRESHOLD = 1.0
#: The spread the suggested width aims at (second-order terms ~sigma^2/2 = 0.125).
TARGET = 0.5
#: The recursion saturates here: a larger spread is reported as this (a lower bound).
SIGMA_CAP = 1e3
#: Variances are clipped into this range for the constants (module doc).
Q_RANGE = (1e-8, 1e8)
#: Up to this many distinct variances per activation get their own quadrature; beyond,
#: a cubic spline in log q through this many nodes, at least GRID_STEP apart.
MAX_POINTS = 32
GRID_STEP = 1.0 / 16
_T_MAX = 1e100  # |T_l| beyond this: the backward recursion saturates
#: analyze's reason for a "finite_width" approximation, a template of
#: :meth:`Regime.reason_fields`.
REASON = ("fluctuations of the layer variances accumulate and are amplified layer after layer "
          "at this width: the first-order spread of log(measured / mean field) reaches {sigma} "
          "(past {threshold:g}, the first-order theory no longer holds; docs/theory.md, "
          "section 11), so the mean-field value is the infinite-width limit, not what a "
          "network this wide gives; the spread falls as 1/sqrt(width) and would be {target:g} "
          "at {width} units a layer ({factor} times as wide)")


def act_constants(act: Activation | None, q: np.ndarray) -> dict[str, np.ndarray]:
    """K_f, R_b, mu, nu (module doc) at z ~ N(0, q), and ``curv``, the curvature
    ``d^2 log M / d(log q)^2``; vectorized over ``q``, one quadrature for all five.

    The derivatives in ``log q`` are expectations themselves (Gaussian integration by
    parts: ``d E[g(z)] / d log q = E[z g'(z)] / 2``): ``mu = E[z phi phi'] / M``,
    ``nu = E[z phi' phi''] / E[phi'^2]`` and ``curv = E[z (z phi phi')'] / (2 M) - mu^2``.
    A kink of the registry's activations is at 0, where the factor z removes the delta
    functions of ``phi''``, so the piecewise formulas are exact there too."""
    q = np.asarray(q, dtype=np.float64)
    if act is None or act.is_identity:
        ones = np.ones_like(q)
        return {"K_f": 2 * ones, "R_b": ones, "mu": ones, "nu": 0 * ones, "curv": 0 * ones}

    def integrand(x, t, rows):
        p, d, d2 = act(x), act.derivative(x), act.second_derivative(x)
        p2, dd = p * p, d * d
        pd_x = p * d * x
        return [p2, p2 * p2, dd, dd * dd, pd_x, d * d2 * x, (dd * x + p * d2 * x + p * d) * x]

    with np.errstate(all="ignore"):
        e = quadrature.integrate(integrand, np.zeros_like(q), np.sqrt(q), 7)
        mu = e[4] / e[0]
        return {"K_f": e[1] / e[0] ** 2 - 1, "R_b": e[3] / e[2] ** 2, "mu": mu,
                "nu": e[5] / e[2], "curv": e[6] / (2 * e[0]) - mu * mu}


def kappa(act: Activation | None, q: float, c: float) -> float:
    """``Cov(phi(u)^2, phi(v)^2) / E[phi^2]^2`` for ``(u, v)`` of variance q and
    correlation c: 0 for independent inputs, ``K_f`` for identical ones (c = 1)."""
    if act is None or act.is_identity:
        return 2.0 * c * c
    m2 = float(gaussian_moments(act, q).e_phi2)

    def integrand(x, t, rows):  # v given u = x is N(c x, q (1 - c^2))
        inner = np.asarray(gaussian_moments(act, q * (1.0 - c * c), mean=c * x).e_phi2)
        return [act(x) ** 2 * inner]

    e = quadrature.integrate(integrand, np.zeros(1), np.array([math.sqrt(q)]), 1)[0, 0]
    return max(e / (m2 * m2) - 1.0, 0.0)


@dataclass
class Bounds:
    """Per-layer standard deviations of log(measured / analytic) (module doc)."""

    forward: np.ndarray  # sigma_f(l), z_var
    backward: np.ndarray  # sigma_b(l), grad_var
    V: np.ndarray  # Var[u_l]
    constants: dict[str, np.ndarray]  # act_constants per layer
    saturated: bool = False  # some sigma reached SIGMA_CAP: a lower bound there


def tolerance(sd: np.ndarray, seeds: int, n_sigma: float) -> np.ndarray:
    """Band of the mean over ``seeds`` seeds of log(measured / analytic): ``n_sigma``
    standard errors plus ``sd^2`` for the second-order terms the expansion drops."""
    return n_sigma * sd / math.sqrt(seeds) + sd**2


def _layer_constants(acts: Sequence[Activation | None], q: np.ndarray) -> dict[str, np.ndarray]:
    """act_constants of every layer, once per activation and distinct variance (module doc)."""
    L = len(acts)
    out = {k: np.empty(L) for k in ("K_f", "R_b", "mu", "nu", "curv")}
    groups: list[tuple[Activation | None, list[int]]] = []  # one vectorized evaluation each
    prev: list[int] = []
    for i, act in enumerate(acts):
        if not (i and _same_act(act, acts[i - 1])):  # a run of equal activations begins
            prev = next((idx for a, idx in groups if _same_act(a, act)), None)
            if prev is None:
                prev = []
                groups.append((act, prev))
        prev.append(i)
    qc = np.clip(q, *Q_RANGE)
    for act, idx in groups:
        idx = np.asarray(idx)
        points, inv = np.unique(qc[idx], return_inverse=True)
        inv = inv.ravel()
        if points.size <= MAX_POINTS:
            c = act_constants(act, points)
            for k in out:
                out[k][idx] = c[k][inv]
            continue
        # many distinct variances (a drift over many layers): a cubic spline in log q
        # through at most MAX_POINTS nodes spaced at least GRID_STEP apart (module doc)
        logs = np.log(points)
        count = int(min(MAX_POINTS, math.ceil((logs[-1] - logs[0]) / GRID_STEP) + 1))
        nodes = np.linspace(logs[0], logs[-1], max(count, 2))
        c = act_constants(act, np.exp(nodes))
        for k in out:
            fit = (CubicSpline(nodes, c[k])(logs) if nodes.size >= 4
                   else np.interp(logs, nodes, c[k]))
            out[k][idx] = fit[inv]
    return out


def spread(widths: Sequence[int], q: np.ndarray, acts: Sequence[Activation | None],
           sb2: np.ndarray, batch: int | None = None, c2: np.ndarray | None = None,
           kap: np.ndarray | None = None) -> Bounds:
    """The module doc's sigma_f and sigma_b of each layer of a chain: ``widths`` the input
    width and each layer's, ``q`` the mean-field ``z_var``, ``sb2`` the bias variances,
    ``batch`` B (None: infinite). ``c2`` and ``kap`` (the squared input correlation and
    ``kappa`` of each layer) default to identical inputs (``c = 1``, ``kappa = K_f``): the
    worst case, independent of the batch beyond the input layer. O(L)."""
    n = np.asarray(widths, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    sb2 = np.asarray(sb2, dtype=np.float64)
    L = q.size
    consts = _layer_constants(acts, q)
    inv_b = 0.0 if batch is None else 1.0 / batch
    with np.errstate(all="ignore"):
        h = np.where(sb2 > 0, (q - sb2) / q, 1.0)  # bias dilution (q >= sb2 > 0 there)
        if c2 is None or kap is None:
            c2, kap = np.ones(L), consts["K_f"]
        # relative variances of the batch-pooled averages over the n_{i+1} units of layer i
        eps = (consts["K_f"] * inv_b + (1 - inv_b) * kap) / n[1:]
        eta = 2.0 * (inv_b + (1 - inv_b) * np.asarray(c2)) / n[1:]
        eta[0] = 2.0 * (inv_b * (n[0] + 1) + 1) / (n[0] * n[1])  # Gaussian inputs, exactly
        a = h[1:] * consts["mu"][:-1]  # u_{i+1} = a_i u_i + h_{i+1} eps_i
        V = _forward_variances(h[0] ** 2 * 2.0 * inv_b / n[0], a * a, h[1:] ** 2 * eps[:-1])
        forward = np.sqrt(V + eta)
        # backward: K_b = R_b (1 + 2 / n_eff) - 1, 1 / n_eff of the incoming gradients'
        # Gram matrix growing from 1/B + 1/n_L by R_b / n per layer, at most 1
        r = consts["R_b"] / n[1:]
        above = np.concatenate([np.cumsum(r[::-1])[::-1][1:], [0.0]])
        inv_eff = np.minimum(inv_b + 1.0 / n[-1] + above, 1.0)
        kb = (consts["R_b"] * (1 + 2 * inv_eff) - 1) / n[1:]
        chi = np.sqrt(np.cumsum(kb[::-1])[::-1])
        backward = chi + _through_q(V, a, consts["nu"])
    saturated = bool(np.any(~(forward < SIGMA_CAP)) or np.any(~(backward < SIGMA_CAP)))
    forward = np.where(forward < SIGMA_CAP, forward, SIGMA_CAP)  # NaN: saturated too
    backward = np.where(backward < SIGMA_CAP, backward, SIGMA_CAP)
    return Bounds(forward, backward, V, consts, saturated)


def _forward_variances(v0: float, gain: np.ndarray, noise: np.ndarray) -> np.ndarray:
    """``V_0 = v0``, ``V_{i+1} = gain_i V_i + noise_i``, capped at ``SIGMA_CAP^2`` (the
    recursion is increasing in V: a capped value is a lower bound of the true one)."""
    cap = SIGMA_CAP**2
    v, out = v0, [v0]
    for g, e in zip(gain.tolist(), noise.tolist()):
        v = g * v + e
        v = v if v < cap else cap
        out.append(v)
    return np.asarray(out)


def _through_q(V: np.ndarray, a: np.ndarray, nu: np.ndarray) -> np.ndarray:
    """``sd(sum_{k>=l} nu_k u_k)`` for every l, by the O(L) recursion of the module doc;
    ``SIGMA_CAP`` from where ``|T|`` passes ``_T_MAX`` down."""
    L = V.size
    out = np.empty(L)
    vs, as_, nus = V.tolist(), a.tolist() + [0.0], nu.tolist()
    t, var = 0.0, 0.0  # T_{l+1}, Var[S_{l+1}]
    for k in range(L - 1, -1, -1):
        v, n_ = vs[k], nus[k]
        var += n_ * n_ * v + 2.0 * n_ * v * as_[k] * t
        out[k] = math.sqrt(var) if var > 0.0 else 0.0
        t = n_ + as_[k] * t  # T_k
        if not abs(t) < _T_MAX:
            out[:k] = SIGMA_CAP
            break
    return out


def _same_act(a: Activation | None, b: Activation | None) -> bool:
    return a is b or (a is not None and b is not None and a == b)


def _chain_arrays(net: Any, ctx: Any, plan: Sequence[Any] | None = None) -> tuple | None:
    """(widths, activations, bias variances) of a plain chain of zero-mean random
    weights and zero-mean biases (the module doc's setting), else None. ``ctx``: the
    analyzer's cache of initializer moments (``init_moments``, ``bias``); ``plan``:
    analyze's chain plan if it has one, whose entry a layer shares with the one before
    it when they are configured alike (then nothing is looked up again)."""
    pairs = plain_chain(net.steps)
    if pairs is None:
        return None
    widths, acts, sb2 = [], [], []
    entry = b_var = None
    for d, act in pairs:
        if plan is not None and acts and plan[len(acts)] is entry:  # configured alike
            act = acts[-1]
        else:
            entry = None if plan is None else plan[len(acts)]
            w = ctx.init_moments(d.init, (d.n_in, d.n_out))
            b_mean, b_var, _ = ctx.bias(d)
            if w.structure == "identity" or not w.var > 0.0 or w.mean != 0.0 or b_mean != 0.0:
                return None
        widths.append(d.n_out)
        acts.append(act)
        sb2.append(b_var)
    if not acts:
        return None
    widths.insert(0, net.input_width)
    return widths, acts, np.asarray(sb2)


def bounds(net: Any, prof: Any, batch: int | None, correlated: bool = True) -> Bounds:
    """:func:`spread` of ``net`` around its analytic profile ``prof``; ``correlated=True``
    takes the batch's input correlations from the c-map (module doc), ``False`` takes
    them identical (``c = 1``, ``kappa = K_f``): the worst case, cheaper to compute."""
    from .._analytic_parts import _Context
    parts = _chain_arrays(net, _Context())
    if parts is None:
        raise ValueError("the finite-width bounds are for plain Dense [Act] chains of "
                         "zero-mean random weights")
    widths, acts, sb2 = parts
    q = prof.column("z_var")
    c2 = kap = None
    if correlated:  # the c-map from independent inputs plus the finite-width spread
        from ..analytic import analyze
        corr = analyze(net, input_correlation=0.0).column("z_corr")
        c2 = np.minimum(1.0, corr**2 + np.cumsum(1.0 / np.asarray(widths[:-1], float)))
        kap = np.array([kappa(act, q[i], math.sqrt(c2[i])) for i, act in enumerate(acts)])
    return spread(widths, q, acts, sb2, batch, c2, kap)


@dataclass
class Regime:
    """The finite-width verdict of :func:`regime` on one chain."""

    bounds: Bounds
    layers: list[int]  # dense layers whose forward or backward sigma passes THRESHOLD
    width: int  # the chain's typical (median) width
    factor: float  # widen by this for the largest sigma to fall to TARGET

    @property
    def sigma(self) -> dict[str, float]:
        """Predicted sigma of log(measured / mean field): ``z_var`` at the last layer,
        ``grad_var`` at the first, ``max`` over both and all layers."""
        f, b = self.bounds.forward, self.bounds.backward
        return {"z_var": float(f[-1]), "grad_var": float(b[0]),
                "max": float(max(f.max(), b.max()))}

    def reason_fields(self) -> dict[str, Any]:
        """The numbers the finite-width reason names."""
        at_least = "at least " if self.bounds.saturated else ""
        return {"sigma": f"{at_least}{self.sigma['max']:.3g}",
                "width": f"{at_least or 'about '}{_round2(self.factor * self.width)}",
                "factor": _round2(self.factor), "target": TARGET, "threshold": THRESHOLD}


def _round2(x: float) -> str:
    """``x`` to two significant digits, with thousands separators (7866 -> '7,900')."""
    digits = 1 - int(math.floor(math.log10(x)))
    return f"{round(x, digits):,.{max(digits, 0)}f}"


def regime(net: Any, q: Sequence[float], ctx: Any,
           batch: int | None = None, plan: Sequence[Any] | None = None) -> Regime | None:
    """The spread of a plain chain (zero-mean random weights and biases) around its
    mean-field ``z_var`` ``q``, and the layers where it passes ``THRESHOLD``; None for
    any other network. Every layer's units are taken as if the batch's inputs were
    identical (``c = 1``: the worst case of the correlation), the inputs and the output
    gradients as ``batch`` independent samples give them (None: infinitely many, what
    analyze uses, so that its result does not depend on a batch). ``ctx``, ``plan``: see
    :func:`_chain_arrays`. O(L): about 0.2 s for 100,000 layers."""
    parts = _chain_arrays(net, ctx, plan)
    if parts is None:
        return None
    q = np.asarray(q, dtype=np.float64)
    if np.isnan(q).any():
        return None
    widths, acts, sb2 = parts
    b = spread(widths, q, acts, sb2, batch)
    flagged = np.flatnonzero((b.forward > THRESHOLD) | (b.backward > THRESHOLD)).tolist()
    top = max(float(b.forward.max()), float(b.backward.max()))
    return Regime(b, flagged, int(np.median(widths[1:])), (top / TARGET) ** 2)
