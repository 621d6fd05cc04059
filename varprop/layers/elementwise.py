"""The elementwise activation layer ``a = phi(z)``: array forward and backward on the
kernels and the mean-field rule (Poole et al. 2016; docs/theory.md, sections 2-5).

After a weighted layer the walk fuses the activation into that layer's step, and the
layer calls :func:`act_analytic` itself; :class:`Act` runs it for a lone activation
(after a normalization, say).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._analytic_parts import _Gradient, mul0
from .._analytic_signal import _Signal
from ..activations import Activation, get_activation
from ..theory import gaussian_cross_moments
from .base import Layer, Step

__all__ = ["Act", "act_analytic"]


@dataclass(frozen=True)
class Act(Layer):
    """An elementwise activation: an :class:`~varprop.activations.Activation`, its name,
    or its config dict (``Act("leaky_relu")``, ``Act({"name": "elu", "alpha": 0.5})``)."""

    activation: Activation

    def __post_init__(self) -> None:
        if not isinstance(self.activation, Activation):
            if not isinstance(self.activation, (str, dict)):
                raise TypeError(f"Act: activation must be an Activation, its name or its "
                                f"config dict, got {type(self.activation).__name__} "
                                f"{self.activation!r}")
            object.__setattr__(self, "activation", get_activation(self.activation))

    def analytic_key(self, once: Any) -> Any:
        return once(self.activation, type(self), lambda: repr(self))

    def analytic(self, step: Step, analyzer: Any, x: _Signal, ops: list) -> _Signal:
        from ._spatial_rules import act_spatial, is_spatial
        if is_spatial(x):
            return act_spatial(analyzer, self.activation, x, ops)
        return act_analytic(analyzer, self.activation, x, ops)

    def forward(self, step: Step, run: Any, x: np.ndarray, x2: np.ndarray | None,
                keep: bool, record: bool) -> tuple[np.ndarray, np.ndarray | None, Any]:
        from ..kernels import activation_apply
        y = activation_apply(x, self.activation)
        y2 = None if x2 is None else activation_apply(x2, self.activation)
        return y, y2, (x if keep else None)

    def backward(self, step: Step, run: Any, cache: Any, grad: np.ndarray) -> np.ndarray:
        from ..kernels import activation_apply
        return grad * activation_apply(cache, self.activation, derivative=True)


def act_analytic(analyzer: Any, act: Activation, z: _Signal, ops: list) -> _Signal:
    """The activation's mean-field forward rule; appends its backward rule to ``ops``."""
    records = analyzer.records
    if not z.gaussian and z.law() is None and records \
            and analyzer.approximate[-1:] != [records[-1].index]:
        # a unit known not to be Gaussian, with no exact law here: the Gaussian
        # approximation from this layer on (the profile says so)
        analyzer.approximate.append(records[-1].index)
    a, e_dphi2 = _forward(analyzer.ctx, act, z)
    ops.append((_backward_rule, (e_dphi2, z, act)))
    return a


def _forward(ctx: Any, act: Activation, z: _Signal) -> tuple[_Signal, float]:
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
    linear = act.is_identity
    out_law = None if linear or not z.gaussian else (lambda: _mapped(z.law(), act))
    return (_Signal(e_phi, var_phi, z.identical, _cross_moment(act, z, z.cross, e_phi), e_phi2,
                    gaussian=z.gaussian and linear, law=out_law,
                    bcross=_cross_moment(act, z, z.bcross, e_phi)), e_dphi2)


def _mapped(law: Any, act: Activation) -> Any:
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


def _backward_rule(analyzer: Any, state: tuple, g: _Gradient) -> _Gradient:
    """dL/dz = dL/da * phi'(z): times E[phi'^2] for an independent gradient from above and
    a Gaussian z; per node where z, or the factors above, are functions of one Gaussian."""
    e_dphi2, z, act = state
    had_factor = g.factor is not None
    g = _gradient(g, e_dphi2, z, act)
    if not had_factor and g.factor is not None:  # the top of an exact chain
        analyzer.open_chain(z, act)
    return g


def _gradient(g: _Gradient, e_dphi2: float, z: _Signal, act: Activation) -> _Gradient:
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
