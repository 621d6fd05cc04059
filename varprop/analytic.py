"""The analytic (mean-field) half of the analyzer: per-layer moments from the initializers'
own weight moments, propagated layer by layer.

Assumptions (Poole et al. 2016; Schoenholz et al. 2017; docs/theory.md sections 2-4, 6):

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
import numbers
from typing import Any, Sequence

import numpy as np

from ._approximations import approximations, has_batch_norm
from ._law_check import unresolved as unresolved_law
from ._analytic_chain import analyze_chain, chain_plan
from ._analytic_parts import _Context, _Gradient, mul0
from ._analytic_signal import _batch_norm_forward, _layer_norm_forward, _Signal
from ._empirical_run import check_alpha, check_eps
from .activations import Activation
from .network import Act, BatchNorm, Dense, Layer, LayerNorm, Network, Residual
from .profile import LayerRecord, Profile
from .theory import gaussian_cross_moments
from .theory.finite_width import regime as finite_width_regime
from .theory.unit_law import UnitLaw

__all__ = ["analyze"]

def _dense_forward(layer: Dense, x: _Signal, ctx: _Context) -> tuple[_Signal, dict[str, Any]]:
    w = ctx.init_moments(layer.init, (layer.n_in, layer.n_out))
    b_mean, b_var, b_symmetric = ctx.bias(layer)
    n = layer.n_in
    if w.structure == "identity":
        return _identity_forward(layer, x, w, b_mean, b_var)
    # Sum over inputs: with identical units the n terms of the mean part add coherently.
    coherent = n * n if x.identical else n
    # (mul0: zero weights times an overflowed input are 0, docs/theory.md, section 10)
    mean = mul0(n * w.mean, x.mean) + b_mean
    var = mul0(n * w.var, x.second) + mul0(coherent * (w.mean * w.mean), x.var) + b_var

    def pair(x_cross: float) -> float:
        """E[z1 z2] for inputs with E[x1 x2] = x_cross (NaN: not tracked)."""
        if math.isnan(x_cross):
            return math.nan
        cov = (n * w.var * x_cross + coherent * (w.mean * w.mean) * (x_cross - x.mean * x.mean)
               + b_var)
        return cov + mean * mean

    cross, bcross = pair(x.cross), pair(x.bcross)
    identical = (w.var == 0.0 and b_symmetric) or (x.identical and w.var == 0.0 and b_var == 0.0)
    if x.identical and w.var == 0.0 and b_var == 0.0:
        # every unit is n m x + b of the one (identical) input unit: its law, affinely
        out = _Signal(mean, var, identical, cross, gaussian=x.gaussian,
                      law=x.affine_law(n * w.mean, b_mean), bcross=bcross)
    else:  # a sum over many independent inputs (or a Gaussian bias): Gaussian
        out = _Signal(mean, var, identical, cross, bcross=bcross)
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
    mean = mul0(keep * gain, x.mean) + b_mean
    second = mul0(keep * gain**2, x.second)
    if math.isfinite(second):  # else E[x^2] overflowed, and it dominates
        second = second + b_var + b_mean**2 + 2 * keep * gain * x.mean * b_mean

    def pair(x_cross: float) -> float:
        """E[z1 z2] for inputs with E[x1 x2] = x_cross (NaN: not tracked)."""
        if math.isnan(x_cross):
            return math.nan
        return keep * gain**2 * x_cross + b_var + b_mean**2 + 2 * keep * gain * x.mean * b_mean

    cross, bcross = pair(x.cross), pair(x.bcross)
    identical = x.identical and b_var == 0.0
    var = max(second - mean * mean, 0.0)
    if not math.isfinite(second):  # Var[I (g x) + b], I ~ Bernoulli(keep), directly
        var = (mul0(keep * gain**2, x.var) + b_var
               + mul0(keep * (1.0 - keep), mul0(gain, x.mean) * mul0(gain, x.mean)))
    if keep == 1.0 and b_var == 0.0:  # z_j = gain x_j + b: the input unit's law, affinely
        out = _Signal(mean, var, identical, cross, gaussian=x.gaussian,
                      law=x.affine_law(gain, b_mean), bcross=bcross)
    elif keep == 1.0 and x.gaussian:  # plus an independent Gaussian bias: still Gaussian
        out = _Signal(mean, var, identical, cross, bcross=bcross)
    else:  # a mixture (bias-only units) or a non-Gaussian unit plus noise: no exact law
        out = _Signal(mean, var, identical, cross, gaussian=False, bcross=bcross)
    return out, {"moments": w, "x_second": x.second, "symmetric": False, "gain": gain}


def _act_forward(layer: Act, z: _Signal, ctx: _Context) -> tuple[_Signal, float]:
    act = layer.activation
    law = None if z.gaussian else z.law()
    if law is not None:  # not Gaussian, but an exact function of one: integrate that
        out = law.map(act)  # on a rule refined at the kinks of act(unit), if any
        mean, var, second = out.moments()
        law = z._law = law.on_rule_of(out)  # the backward pass needs phi'(z) there too
        e_dphi2 = law.expect(law.dphi2(act, forget=True))  # (z's values are not needed again)
        cross, bcross = _cross_moment(act, z, z.cross, mean), _cross_moment(act, z, z.bcross, mean)
        return _Signal(mean, var, z.identical, cross, second, gaussian=False, law=out,
                       bcross=bcross), e_dphi2
    e_phi, e_phi2, e_dphi2, var_phi = ctx.moments(act)(z.mean, z.var)
    linear = act.name == "linear"
    out_law = None if linear or not z.gaussian else (lambda: _mapped(z.law(), act))
    return (_Signal(e_phi, var_phi, z.identical, _cross_moment(act, z, z.cross, e_phi), e_phi2,
                    gaussian=z.gaussian and linear, law=out_law,
                    bcross=_cross_moment(act, z, z.bcross, e_phi)), e_dphi2)


def _mapped(law: UnitLaw | None, act: Activation) -> UnitLaw | None:
    return None if law is None else law.map(act)


def _cross_moment(act: Activation, z: _Signal, z_cross: float, e_phi: float) -> float:
    """E[phi(z1) phi(z2)] for a pair of units with E[z1 z2] = z_cross (NaN: not
    tracked), each distributed as ``z`` (Gaussian approximation)."""
    cross = math.nan
    if not math.isnan(z_cross) and math.isfinite(z.var) and math.isfinite(z.mean):
        # (past an overflow the correlation is lost: not tracked)
        if z.var > 0:
            c = (z_cross - z.mean * z.mean) / z.var
            if not math.isnan(c):
                cross = float(gaussian_cross_moments(act, z.var, z.var, min(max(c, -1.0), 1.0),
                                                     mean=z.mean).e_phi_phi)
        else:
            cross = e_phi * e_phi
    return cross


class _Analyzer:
    def __init__(self, ctx: _Context, batch: int | None = None) -> None:
        self.ctx = ctx
        self.batch = batch  # None: the infinite-batch limit of BatchNorm's statistics
        self.records: list[LayerRecord] = []
        # dense layers whose activation met a unit that is known not to be Gaussian and
        # has no exact law here (an identity layer with random biases, a widening one):
        # there the result is the Gaussian approximation, and the profile says so
        self.approximate: list[int] = []
        # dense layers whose gradient along an identity or constant chain is an
        # expectation the quadrature does not resolve (varprop._law_check)
        self.unresolved: set[int] = set()
        # the exact chain the backward pass is in: (its top activation's input signal,
        # that activation, [(dense layer index, its output signal), ...])
        self._chain: tuple | None = None

    def _close_chain(self) -> None:
        """Check the rule of the chain just left, once, at its deepest layer (whose
        gradient multiplies the most derivative factors): a linear-cost replay."""
        chain, self._chain = self._chain, None
        if chain is None or not chain[2]:
            return
        z_top, act, members = chain
        top = z_top.law()
        bottom = members[-1][1].law()
        if top is None or bottom is None or top.rule is None:
            return
        full = top.map(act)
        if bottom.rule is not None and not bottom.same_source(full):
            return
        if unresolved_law(full, bottom.length):
            self.unresolved.update(i for i, _ in members)

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
                    rec.z_corr = ((z.cross - z.mean * z.mean) / z.var
                                  if 0 < z.var < math.inf else math.nan)
                self.records.append(rec)
                ops.append(("dense", layer, rec, info, x.identical, z))
                pending, x = rec, z
            elif isinstance(layer, Act):
                if not x.gaussian and x.law() is None and self.records \
                        and self.approximate[-1:] != [self.records[-1].index]:
                    self.approximate.append(self.records[-1].index)
                a, e_dphi2 = _act_forward(layer, x, self.ctx)
                if pending is not None:
                    pending.a_mean, pending.a_var = a.mean, a.var
                ops.append(("act", e_dphi2, x, layer.activation))
                pending, x = None, a
            elif isinstance(layer, BatchNorm):
                x, factor = _batch_norm_forward(x, check_eps(layer), self.batch)
                ops.append(("norm", factor))
                pending = None
            elif isinstance(layer, LayerNorm):
                x, factor = _layer_norm_forward(x, check_eps(layer))
                ops.append(("norm", factor))
                pending = None
            elif isinstance(layer, Residual):
                alpha = check_alpha(layer)
                f, branch_ops = self.forward(layer.branch, x)
                a2 = alpha**2
                # the branch ends in zero-mean weights: its output is uncorrelated with x
                # (NaN cross moments stay NaN: not tracked)
                x = _Signal(x.mean + alpha * f.mean, x.var + a2 * f.var,
                            x.identical and f.identical, x.cross + a2 * f.cross,
                            gaussian=x.gaussian and f.gaussian,
                            bcross=x.bcross + a2 * f.bcross)
                ops.append(("residual", alpha, branch_ops))
                pending = None
        return x, ops

    def backward(self, ops: list, g: _Gradient) -> _Gradient:
        for op in reversed(ops):
            kind = op[0]
            if kind == "act":
                had_factor = g.factor is not None
                g = _act_backward(g, *op[1:])
                if not had_factor and g.factor is not None:  # the top of an exact chain
                    self._close_chain()
                    self._chain = (op[2], op[3], [])
            elif kind == "dense":
                _, layer, rec, info, x_identical, z = op
                total = g.total()
                if g.factor is not None and self._chain is not None:
                    self._chain[2].append((rec.index, z))
                rec.grad_var = total
                rec.weight_grad_var = mul0(info["x_second"], total)
                w = info["moments"]
                if w.structure == "identity":  # each unit's gradient passes on, scaled
                    g = g.scaled(info["gain"] ** 2, g.identical)
                    continue
                n = layer.n_out
                if w.var == 0.0:
                    # constant weights send the same sum back to every input unit, m times
                    # the sum of the n gradients: coherent (n^2) when those are identical;
                    # a common per-node factor stays a factor
                    g = g.scaled((n * n if g.identical else n) * (w.mean * w.mean), True)
                else:  # random weights: a sum of many independent terms (gradient independence)
                    coherent = n * n if g.identical else n
                    g = _Gradient(mul0(n * w.var, total)
                                  + mul0(coherent * (w.mean * w.mean), total), False)
            elif kind == "norm":
                g = g.scaled(op[1], g.identical)
            elif kind == "residual":
                # y = x + alpha f(x): the branch's output gradient is alpha dL/dy, so
                # alpha^2 enters once, at the top of the branch (docs/theory.md, residual)
                _, alpha, branch_ops = op
                g = g.reduced()
                through = self.backward(branch_ops, g.scaled(alpha**2, g.identical)).reduced()
                g = _Gradient(g.var + through.var, g.identical and through.identical)
            if g.factor is None:
                self._close_chain()
        self._close_chain()
        return g


def _act_backward(g: _Gradient, e_dphi2: float, z: _Signal, act: Activation) -> _Gradient:
    """dL/dz = dL/da * phi'(z): times E[phi'^2] for an independent gradient from above and
    a Gaussian z; per node where z, or the factors above, are functions of one Gaussian."""
    identical = g.identical and z.identical
    if g.factor is None and z.gaussian:
        return _Gradient(mul0(g.var, e_dphi2), identical)
    law = z.law()
    if law is None:  # no exact law: the independence approximation
        return _Gradient(mul0(g.total(), e_dphi2), identical)
    if g.factor is not None and g.law.rule is not law.rule:
        if law.same_source(g.law):  # the laws above refined the rule: follow them
            law = law.on_rule_of(g.law)
        else:  # factors of another chain (not reached by mlp-like nets): independent
            g = g.reduced()
    d2 = law.dphi2(act)
    return _Gradient.factored(g.var, identical, d2 if g.factor is None else g.factor * d2, law)


def analyze(
    net: Network,
    *,
    input_mean: float = 0.0,
    input_var: float = 1.0,
    input_correlation: float | None = None,
    batch: int | None = None,
) -> Profile:
    """Mean-field per-layer statistics of ``net`` at initialization.

    Args:
        net: a :class:`~varprop.network.Network` (``varprop.mlp(...)``).
        input_mean, input_var: moments of each input feature (independent features).
        input_correlation: if given, also propagate the correlation ``c`` of two inputs
            and report each layer's ``z_corr`` (the c-map of Schoenholz et al. 2017).
        batch: the batch size that BatchNorm layers normalize over; None (the default)
            is the infinite-batch limit. A finite batch adds the ``O(1/batch)`` terms of
            BatchNorm's gradient (about 1 + 1/batch per BatchNorm; docs/theory.md).
            Networks without BatchNorm do not depend on it.

    Returns:
        A :class:`~varprop.profile.Profile` of kind "analytic": per dense layer
        ``z_mean``, ``z_var``, ``a_mean``, ``a_var``, ``grad_var`` (dL/dz for a standard
        normal output gradient), ``weight_grad_var`` (per sample), ``z_corr`` and the
        ``symmetric`` flag for zeros/constant initializers. ``meta["gaussian_approximation"]``
        lists the dense layers from which the result is only the Gaussian approximation:
        a unit known not to be Gaussian, with no exact law here (an identity layer with
        random biases or more outputs than inputs, a residual sum of such units). Plain
        MLPs of random layers, and identity or constant layers with constant biases, have
        none. ``meta["approximations"]`` lists every known approximation as
        ``{"kind", "layers" (inclusive [first, last] ranges), "reason", "detail"}``:
        ``gaussian`` (the above), ``unresolved`` (an identity or constant chain whose
        gradient the quadrature does not resolve) and ``finite_width`` (a plain chain
        whose predicted spread of log(measured / theory) at its own widths passes 1;
        ``meta["finite_width_sigma"]`` holds the predicted spreads). docs/theory.md,
        sections 2, 6 and 11.

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
                    input_correlation=input_correlation, batch=batch)


def _analyze(net: Network, *, input_mean: float = 0.0, input_var: float = 1.0,
             input_correlation: float | None = None, batch: int | None = None,
             fast: bool = True, chain: bool = True) -> Profile:
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
        cross = c * input_var + input_mean * input_mean
    if batch is not None:
        if isinstance(batch, (bool, np.bool_)) or not isinstance(batch, numbers.Integral):
            raise TypeError(f"batch must be an integer >= 2 or None, got {batch!r}")
        if batch < 2:
            raise ValueError(f"batch must be >= 2 (a batch variance needs two samples) "
                             f"or None, got {batch}")
        batch = int(batch)
    # two independent samples of a batch: their inputs are uncorrelated, E = mean^2;
    # tracked only where a BatchNorm needs it (it costs a cross moment per activation)
    bcross = input_mean * input_mean if has_batch_norm(net.layers) else math.nan
    ctx = _Context(fast)
    plan = chain_plan(net.layers, ctx) if chain and input_correlation is None else None
    approximate: list[int] = []
    unresolved: list[int] = []
    if plan is not None:
        records = analyze_chain(plan, input_mean, input_var)
    else:
        analyzer = _Analyzer(ctx, batch)
        out, ops = analyzer.forward(net.layers, _Signal(input_mean, input_var, False, cross,
                                                        bcross=bcross))
        analyzer.backward(ops, _Gradient(1.0, False))
        records, approximate = analyzer.records, analyzer.approximate
        unresolved = analyzer.unresolved
    # plain chains: the spread of log(measured / mean field) at their widths (section 11)
    fw = finite_width_regime(net.layers, [r.z_var for r in records], ctx, plan=plan)
    meta = {"assumptions": "mean field: infinite width, Gaussian pre-activations, "
                           "gradient independence",
            # dense layers (indices) whose activations saw a non-Gaussian unit treated as
            # Gaussian for want of its exact law: the theory is approximate from there on
            "gaussian_approximation": approximate,
            # every known approximation, with its reason, for the reports to name
            "approximations": approximations(approximate, sorted(unresolved), fw),
            # predicted sigma of log(measured / mean field), z_var last layer, grad_var
            # first layer, max (docs/theory.md, section 11); None: not a plain chain
            "finite_width_sigma": None if fw is None else fw.sigma}
    return Profile("analytic", records, net.describe(), input_var, input_mean, meta)


def _finite(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    return value

