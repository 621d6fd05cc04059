"""The analytic (mean-field) half of the analyzer: per-layer moments from the initializers'
own weight moments, propagated layer by layer.

Assumptions (Poole et al. 2016; Schoenholz et al. 2017; THEORY.md sections 2-4, 6):

* infinite width: a pre-activation unit of a layer of random weights is Gaussian,
  ``z ~ N(mean, var)``. Identity weights and constant weights over identical units pass
  one unit on instead, so their pre-activations are not Gaussian (relu(relu(x)) = relu(x));
  along such chains the exact law of the unit, a function of one Gaussian, is kept and
  integrated (:class:`~varprop.theory.unit_law.UnitLaw`), derivative factors included;
* the units of a layer are independent and alike, except after a symmetric layer
  (zeros, ones, constant weights and bias), where every unit is the same function of the
  input. That case is propagated exactly (``units_identical``) and flagged;
* the weights and inputs of a layer are independent; for the backward pass, the
  gradient-independence assumption (fresh weights for the backward pass);
* the output gradient dL/d(output) is standard normal, independent across units.

Forward through a dense layer with per-entry weight mean ``m``, variance ``v`` and bias
mean ``m_b``, variance ``v_b`` (fan in ``n``), from inputs of mean ``mu`` and variance
``s``::

    E[z]   = n m mu + m_b
    Var[z] = n v E[x^2] + n m^2 s + v_b          (independent units)
    Var[z] = n v E[x^2] + n^2 m^2 s + v_b        (identical units)

Means matter: ReLU-like activations and non-centred inits give E[a] != 0, and the next
layer sees E[a^2] = Var[a] + E[a]^2.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import numpy as np

from ._analytic_chain import analyze_chain, chain_plan
from ._empirical_run import check_alpha, check_eps
from .activations import Activation
from .network import Act, BatchNorm, Dense, Layer, LayerNorm, Network, Residual
from .profile import LayerRecord, Profile
from .theory import gaussian_cross_moments, gaussian_moments
from .theory.fast import scalar_moments
from .theory.unit_law import UnitLaw

__all__ = ["analyze"]

#: (e_phi, e_phi2, e_dphi2, var_phi) of phi(x), x ~ N(mean, var), as Python floats.
Moments = Callable[[float, float], tuple[float, float, float, float]]


class _Signal:
    """Moments of one unit of a layer's output (alike across units), and its law.

    ``gaussian``: the unit is exactly N(mean, var) (an input, the output of a layer of
    random weights, an affine map of those), so the closed forms apply. Otherwise
    ``law`` is its exact law as a function of one Gaussian (:class:`UnitLaw`), a thunk
    that makes it, or None when there is none (then the Gaussian approximation stands).
    """

    __slots__ = ("mean", "var", "second", "identical", "cross", "gaussian", "_law")

    def __init__(self, mean: float, var: float, identical: bool = False,
                 cross: float = math.nan, second: float | None = None,
                 gaussian: bool = True, law: Any = None) -> None:
        self.mean = mean
        self.var = var
        # E[x^2]: an activation's own E[phi^2], else Var + E^2
        self.second = var + mean * mean if second is None else second
        self.identical = identical  # every unit equals every other (symmetric init upstream)
        self.cross = cross  # E[x1 x2] for two inputs of the given correlation
        self.gaussian = gaussian
        self._law = law

    def law(self) -> UnitLaw | None:
        """The exact law (made on first use), or None."""
        if self._law is None and self.gaussian:
            self._law = UnitLaw.gaussian(self.mean, self.var)
        elif self._law is not None and not isinstance(self._law, UnitLaw):
            self._law = self._law()
        return self._law

    def affine_law(self, scale: float, shift: float) -> Callable[[], UnitLaw | None]:
        """A thunk for the law of ``scale * unit + shift`` (same nodes as this one's)."""
        def law() -> UnitLaw | None:
            base = self.law()
            return None if base is None else base.affine(scale, shift)
        return law


class _Gradient:
    """Variance of dL/dz of one unit: ``var``, times ``E[factor]`` when ``factor`` holds
    per-node derivative factors of an identity or symmetric chain (see :class:`UnitLaw`),
    whose factors are functions of one Gaussian and so are not independent."""

    __slots__ = ("var", "identical", "factor", "law")

    def __init__(self, var: float, identical: bool = False, factor: np.ndarray | None = None,
                 law: UnitLaw | None = None) -> None:
        self.var = var
        self.identical = identical
        self.factor = factor
        self.law = law

    def total(self) -> float:
        return self.var if self.factor is None else self.var * self.law.expect(self.factor)

    def scaled(self, k: float, identical: bool) -> "_Gradient":
        return _Gradient(k * self.var, identical, self.factor, self.law)

    def reduced(self) -> "_Gradient":
        """The same variance with the per-node factors averaged out."""
        return self if self.factor is None else _Gradient(self.total(), self.identical)


class _Context:
    """What one ``analyze`` call looks up repeatedly: the moments of each initializer for
    each shape (a deep MLP asks for the same ``(init, shape)`` at every layer) and the
    Gaussian-moment evaluator of each activation.

    Keys are object ids (the network holds its initializers and activations for the whole
    call, so an id cannot be reused while the cache lives); on a miss, an object equal to
    the last one seen (same class, same attributes: initializers and activations are
    plain configurations) shares its entry. ``mlp(..., "he_normal")`` builds one
    initializer object per layer, all equal.
    """

    def __init__(self, fast: bool = True) -> None:
        self.fast = fast
        self._init: dict[tuple[int, tuple[int, ...]], Any] = {}
        self._last_init: dict[tuple[type, tuple[int, ...]], tuple[Any, Any]] = {}
        self._act: dict[int, Moments] = {}
        self._last_act: tuple[Any, Moments] | None = None

    def init_moments(self, init: Any, shape: tuple[int, ...]) -> Any:
        key = (id(init), shape)
        m = self._init.get(key)
        if m is None:
            last = self._last_init.get((type(init), shape))
            if last is not None and vars(last[0]) == vars(init):
                m = last[1]
            else:
                m = init.moments(shape)
                self._last_init[(type(init), shape)] = (init, m)
            self._init[key] = m
        return m

    def bias(self, layer: Dense) -> tuple[float, float, bool]:
        """(mean, var, symmetric) of the layer's bias (no bias: zeros)."""
        if layer.bias_init is None:
            return 0.0, 0.0, True
        b = self.init_moments(layer.bias_init, (layer.n_out,))
        return b.mean, b.var, b.var == 0.0

    def moments(self, act: Activation) -> Moments:
        fn = self._act.get(id(act))
        if fn is None:
            last = self._last_act
            if last is not None and last[0] == act:
                fn = last[1]
            else:
                fn = scalar_moments(act) if self.fast else _reference(act)
                self._last_act = (act, fn)
            self._act[id(act)] = fn
        return fn


def _reference(act: Activation) -> Moments:
    """The vectorized public path, one call per point (the oracle of the fast path)."""
    def moments(mean: float, var: float) -> tuple[float, float, float, float]:
        g = gaussian_moments(act, var, mean=mean)
        return float(g.e_phi), float(g.e_phi2), float(g.e_dphi2), float(g.var_phi)
    return moments


def _dense_forward(layer: Dense, x: _Signal, ctx: _Context) -> tuple[_Signal, dict[str, Any]]:
    w = ctx.init_moments(layer.init, (layer.n_in, layer.n_out))
    b_mean, b_var, b_symmetric = ctx.bias(layer)
    n = layer.n_in
    if w.structure == "identity":
        return _identity_forward(layer, x, w, b_mean, b_var)
    # Sum over inputs: with identical units the n terms of the mean part add coherently.
    coherent = n * n if x.identical else n
    mean = n * w.mean * x.mean + b_mean
    var = n * w.var * x.second + coherent * w.mean**2 * x.var + b_var
    cross = math.nan
    if not math.isnan(x.cross):
        cov_in = x.cross - x.mean**2
        cov = n * w.var * x.cross + coherent * w.mean**2 * cov_in + b_var
        cross = cov + mean * mean
    identical = (w.var == 0.0 and b_symmetric) or (x.identical and w.var == 0.0 and b_var == 0.0)
    if x.identical and w.var == 0.0 and b_var == 0.0:
        # every unit is n m x + b of the one (identical) input unit: its law, affinely
        out = _Signal(mean, var, identical, cross, gaussian=x.gaussian,
                      law=x.affine_law(n * w.mean, b_mean))
    else:  # a sum over many independent inputs (or a Gaussian bias): Gaussian
        out = _Signal(mean, var, identical, cross)
    info = {"moments": w, "x_second": x.second, "symmetric": bool(w.symmetric)}
    return out, info


def _identity_gain(layer: Dense, w: Any) -> float:
    """gain of gain * eye(n_in, n_out), recovered from the mean over its entries."""
    return w.mean * layer.n_in * layer.n_out / min(layer.n_in, layer.n_out)


def _identity_forward(layer: Dense, x: _Signal, w: Any, b_mean: float,
                      b_var: float) -> tuple[_Signal, dict[str, Any]]:
    """z_j = gain * x_j (j < min(n_in, n_out)) + b_j: each unit passes on its own input, so
    its mean stays a mean (the i.i.d. formula would turn E[x]^2 into variance)."""
    gain = _identity_gain(layer, w)
    keep = min(layer.n_in, layer.n_out) / layer.n_out  # share of units fed by an input
    mean = keep * gain * x.mean + b_mean
    second = keep * gain**2 * x.second + b_var + b_mean**2 + 2 * keep * gain * x.mean * b_mean
    cross = math.nan
    if not math.isnan(x.cross):
        cross = keep * gain**2 * x.cross + b_var + b_mean**2 + 2 * keep * gain * x.mean * b_mean
    identical = x.identical and b_var == 0.0
    var = max(second - mean * mean, 0.0)
    if keep == 1.0 and b_var == 0.0:  # z_j = gain x_j + b: the input unit's law, affinely
        out = _Signal(mean, var, identical, cross, gaussian=x.gaussian,
                      law=x.affine_law(gain, b_mean))
    elif keep == 1.0 and x.gaussian:  # plus an independent Gaussian bias: still Gaussian
        out = _Signal(mean, var, identical, cross)
    else:  # a mixture (bias-only units) or a non-Gaussian unit plus noise: no exact law
        out = _Signal(mean, var, identical, cross, gaussian=False)
    return out, {"moments": w, "x_second": x.second, "symmetric": False, "gain": gain}


def _act_forward(layer: Act, z: _Signal, ctx: _Context) -> tuple[_Signal, float]:
    act = layer.activation
    law = None if z.gaussian else z.law()
    if law is not None:  # not Gaussian, but an exact function of one: integrate that
        out = law.map(act)  # on a rule refined at the kinks of act(unit), if any
        mean, var, second = out.moments()
        law = z._law = law.on_rule_of(out)  # the backward pass needs phi'(z) there too
        e_dphi2 = law.expect(law.dphi2(act))
        cross = math.nan if math.isnan(z.cross) else _cross_moment(act, z, mean)
        return _Signal(mean, var, z.identical, cross, second, gaussian=False, law=out), e_dphi2
    e_phi, e_phi2, e_dphi2, var_phi = ctx.moments(act)(z.mean, z.var)
    linear = act.name == "linear"
    out_law = None if linear or not z.gaussian else (lambda: _mapped(z.law(), act))
    return (_Signal(e_phi, var_phi, z.identical, _cross_moment(act, z, e_phi), e_phi2,
                    gaussian=z.gaussian and linear, law=out_law), e_dphi2)


def _mapped(law: UnitLaw | None, act: Activation) -> UnitLaw | None:
    return None if law is None else law.map(act)


def _cross_moment(act: Activation, z: _Signal, e_phi: float) -> float:
    """E[phi(z1) phi(z2)] for the correlated pair (Gaussian approximation)."""
    cross = math.nan
    if not math.isnan(z.cross):
        if z.var > 0:
            c = float(np.clip((z.cross - z.mean**2) / z.var, -1.0, 1.0))
            cross = float(gaussian_cross_moments(act, z.var, z.var, c,
                                                 mean=z.mean).e_phi_phi)
        else:
            cross = e_phi ** 2
    return cross


def _norm_forward(x: _Signal, eps: float) -> tuple[_Signal, float]:
    scale = 1.0 / (x.var + eps)
    cross = math.nan
    if not math.isnan(x.cross):
        cross = (x.cross - x.mean**2) * scale
    # per unit (x - mean) / sqrt(var + eps): an affine map of the unit
    return _Signal(0.0, x.var * scale, x.identical, cross, gaussian=x.gaussian,
                   law=x.affine_law(math.sqrt(scale), -x.mean * math.sqrt(scale))), scale


class _Analyzer:
    def __init__(self, ctx: _Context) -> None:
        self.ctx = ctx
        self.records: list[LayerRecord] = []
        # dense layers whose activation met a unit that is known not to be Gaussian and
        # has no exact law here (an identity layer with random biases, a widening one):
        # there the result is the Gaussian approximation, and the profile says so
        self.approximate: list[int] = []

    def forward(self, layers: Sequence[Layer], x: _Signal) -> tuple[_Signal, list]:
        """Propagate the signal; return the output and the ops the backward pass replays."""
        ops: list = []
        pending: LayerRecord | None = None
        for layer in layers:
            if isinstance(layer, Dense):
                z, info = _dense_forward(layer, x, self.ctx)
                rec = LayerRecord(len(self.records), layer.n_in, layer.n_out,
                                  z_mean=z.mean, z_var=z.var, a_mean=z.mean, a_var=z.var,
                                  symmetric=info["symmetric"])
                if not math.isnan(z.cross):
                    rec.z_corr = (z.cross - z.mean**2) / z.var if z.var > 0 else math.nan
                self.records.append(rec)
                ops.append(("dense", layer, rec, info, x.identical))
                pending, x = rec, z
            elif isinstance(layer, Act):
                if not x.gaussian and x.law() is None and self.records \
                        and self.records[-1].index not in self.approximate:
                    self.approximate.append(self.records[-1].index)
                a, e_dphi2 = _act_forward(layer, x, self.ctx)
                if pending is not None:
                    pending.a_mean, pending.a_var = a.mean, a.var
                ops.append(("act", e_dphi2, x, layer.activation))
                pending, x = None, a
            elif isinstance(layer, (BatchNorm, LayerNorm)):
                x, scale = _norm_forward(x, check_eps(layer))
                ops.append(("norm", scale))
                pending = None
            elif isinstance(layer, Residual):
                alpha = check_alpha(layer)
                f, branch_ops = self.forward(layer.branch, x)
                a2 = alpha**2
                cross = x.cross + a2 * f.cross if not math.isnan(x.cross) else math.nan
                # the branch ends in zero-mean weights: its output is uncorrelated with x
                x = _Signal(x.mean + alpha * f.mean, x.var + a2 * f.var,
                            x.identical and f.identical, cross,
                            gaussian=x.gaussian and f.gaussian)
                ops.append(("residual", alpha, branch_ops))
                pending = None
        return x, ops

    def backward(self, ops: list, g: _Gradient) -> _Gradient:
        for op in reversed(ops):
            kind = op[0]
            if kind == "act":
                g = _act_backward(g, *op[1:])
            elif kind == "dense":
                _, layer, rec, info, x_identical = op
                total = g.total()
                rec.grad_var = total
                rec.weight_grad_var = info["x_second"] * total
                w = info["moments"]
                if w.structure == "identity":  # each unit's gradient passes on, scaled
                    g = g.scaled(info["gain"] ** 2, g.identical)
                    continue
                n = layer.n_out
                if w.var == 0.0:
                    # constant weights send the same sum back to every input unit, m times
                    # the sum of the n gradients: coherent (n^2) when those are identical;
                    # a common per-node factor stays a factor
                    g = g.scaled((n * n if g.identical else n) * w.mean**2, True)
                else:  # random weights: a sum of many independent terms (gradient independence)
                    coherent = n * n if g.identical else n
                    g = _Gradient(n * w.var * total + coherent * w.mean**2 * total, False)
            elif kind == "norm":
                g = g.scaled(op[1], g.identical)
            elif kind == "residual":
                _, alpha, branch_ops = op
                g = g.reduced()
                through = self.backward(branch_ops, g).reduced()
                g = _Gradient(g.var + alpha**2 * through.var, g.identical and through.identical)
        return g


def _act_backward(g: _Gradient, e_dphi2: float, z: _Signal, act: Activation) -> _Gradient:
    """dL/dz = dL/da * phi'(z): times E[phi'^2] for an independent gradient from above and
    a Gaussian z; per node where z, or the factors above, are functions of one Gaussian."""
    identical = g.identical and z.identical
    if g.factor is None and z.gaussian:
        return _Gradient(g.var * e_dphi2, identical)
    law = z.law()
    if law is None:  # no exact law: the independence approximation
        return _Gradient(g.total() * e_dphi2, identical)
    if g.factor is not None and g.law.rule is not law.rule:
        if law.same_source(g.law):  # the laws above refined the rule: follow them
            law = law.on_rule_of(g.law)
        else:  # factors of another chain (not reached by mlp-like nets): independent
            g = g.reduced()
    d2 = law.dphi2(act)
    return _Gradient(g.var, identical, d2 if g.factor is None else g.factor * d2, law)


def analyze(
    net: Network,
    *,
    input_mean: float = 0.0,
    input_var: float = 1.0,
    input_correlation: float | None = None,
) -> Profile:
    """Mean-field per-layer statistics of ``net`` at initialization.

    Args:
        net: a :class:`~varprop.network.Network` (``varprop.mlp(...)``).
        input_mean, input_var: moments of each input feature (independent features).
        input_correlation: if given, also propagate the correlation ``c`` of two inputs
            and report each layer's ``z_corr`` (the c-map of Schoenholz et al. 2017).

    Returns:
        A :class:`~varprop.profile.Profile` of kind "analytic": per dense layer
        ``z_mean``, ``z_var``, ``a_mean``, ``a_var``, ``grad_var`` (dL/dz for a standard
        normal output gradient), ``weight_grad_var`` (per sample), ``z_corr`` and the
        ``symmetric`` flag for zeros/constant initializers. ``meta["gaussian_approximation"]``
        lists the dense layers from which the result is only the Gaussian approximation:
        a unit known not to be Gaussian, with no exact law here (an identity layer with
        random biases or more outputs than inputs, a residual sum of such units). Plain
        MLPs of random layers, and identity or constant layers with constant biases, have
        none.

    Cost: a few microseconds per layer (1000 layers of any registry activation take a
    few milliseconds, bench/bench_analyzer.py): the Gaussian moments of each layer come
    from :class:`varprop.theory.fast.ScalarMoments` (closed forms, small- and
    large-variance series, or the quadrature rule of
    :func:`~varprop.theory.gaussian_moments` without its per-call overhead; within 1e-12
    of it), the initializers' moments are computed once per distinct (initializer,
    shape), and plain ``Dense``/``Act`` chains skip the per-layer bookkeeping. A
    non-zero pre-activation mean outside the closed forms (constant biases,
    non-centred weights) takes the general path of ``gaussian_moments``, ~0.3 ms a
    layer.

    Example:
        >>> p = analyze(mlp([512] * 31, "relu", "he_normal"))
        >>> round(p[-1].z_var, 6)   # He keeps q = 2 E[x^2] layer after layer
        2.0
    """
    return _analyze(net, input_mean=input_mean, input_var=input_var,
                    input_correlation=input_correlation)


def _analyze(net: Network, *, input_mean: float = 0.0, input_var: float = 1.0,
             input_correlation: float | None = None, fast: bool = True,
             chain: bool = True) -> Profile:
    """:func:`analyze`; ``fast=False`` evaluates every activation's moments with
    :func:`~varprop.theory.gaussian_moments` itself and ``chain=False`` always takes the
    general path (both for tests: the slow twins of the fast paths)."""
    if not isinstance(net, Network):
        raise TypeError(f"net must be a varprop Network (varprop.mlp(...)), got {type(net).__name__}")
    input_mean = _finite("input_mean", input_mean)
    input_var = _finite("input_var", input_var)
    if input_var <= 0:
        raise ValueError(f"input_var must be > 0, got {input_var}")
    cross = math.nan
    if input_correlation is not None:
        c = _finite("input_correlation", input_correlation)
        if not -1.0 <= c <= 1.0:
            raise ValueError(f"input_correlation must be in [-1, 1], got {c}")
        cross = c * input_var + input_mean**2
    ctx = _Context(fast)
    plan = chain_plan(net.layers, ctx) if chain and input_correlation is None else None
    approximate: list[int] = []
    if plan is not None:
        records = analyze_chain(plan, input_mean, input_var)
    else:
        analyzer = _Analyzer(ctx)
        out, ops = analyzer.forward(net.layers, _Signal(input_mean, input_var, False, cross))
        analyzer.backward(ops, _Gradient(1.0, False))
        records, approximate = analyzer.records, analyzer.approximate
    meta = {"assumptions": "mean field: infinite width, Gaussian pre-activations, "
                           "gradient independence",
            # dense layers (indices) whose activations saw a non-Gaussian unit treated as
            # Gaussian for want of its exact law: the theory is approximate from there on
            "gaussian_approximation": approximate}
    return Profile("analytic", records, net.describe(), input_var, input_mean, meta)


def _finite(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    return value

