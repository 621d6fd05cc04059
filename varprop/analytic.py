"""The analytic (mean-field) half of the analyzer: per-layer moments from the initializers'
own weight moments, propagated layer by layer.

Assumptions (Poole et al. 2016; Schoenholz et al. 2017; THEORY.md sections 2-4, 6):

* infinite width: a pre-activation unit is Gaussian, ``z ~ N(mean, var)``;
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
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from .network import Act, BatchNorm, Dense, Layer, LayerNorm, Network, Residual
from .profile import LayerRecord, Profile
from .theory import gaussian_cross_moments, gaussian_moments

__all__ = ["analyze"]


@dataclass(frozen=True)
class _Signal:
    """Moments of one unit of a layer's output (alike across units)."""

    mean: float
    var: float
    identical: bool = False  # every unit equals every other (symmetric init upstream)
    cross: float = math.nan  # E[x1 x2] for two inputs of the given correlation

    @property
    def second(self) -> float:
        return self.var + self.mean * self.mean


@dataclass(frozen=True)
class _Gradient:
    var: float
    identical: bool = False


def _dense_forward(layer: Dense, x: _Signal) -> tuple[_Signal, dict[str, Any]]:
    w = layer.init.moments((layer.n_in, layer.n_out))
    if layer.bias_init is None:
        b_mean = b_var = 0.0
        b_symmetric = True
    else:
        b = layer.bias_init.moments((layer.n_out,))
        b_mean, b_var = b.mean, b.var
        b_symmetric = b_var == 0.0
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
    out = _Signal(mean, max(second - mean * mean, 0.0), x.identical and b_var == 0.0, cross)
    return out, {"moments": w, "x_second": x.second, "symmetric": False, "gain": gain}


def _act_forward(layer: Act, z: _Signal) -> tuple[_Signal, float]:
    g = gaussian_moments(layer.activation, z.var, mean=z.mean)
    cross = math.nan
    if not math.isnan(z.cross):
        if z.var > 0:
            c = float(np.clip((z.cross - z.mean**2) / z.var, -1.0, 1.0))
            cross = float(gaussian_cross_moments(layer.activation, z.var, z.var, c,
                                                 mean=z.mean).e_phi_phi)
        else:
            cross = float(g.e_phi) ** 2
    return _Signal(float(g.e_phi), float(g.var_phi), z.identical, cross), float(g.e_dphi2)


def _norm_forward(x: _Signal, eps: float) -> tuple[_Signal, float]:
    scale = 1.0 / (x.var + eps)
    cross = math.nan
    if not math.isnan(x.cross):
        cross = (x.cross - x.mean**2) * scale
    return _Signal(0.0, x.var * scale, x.identical, cross), scale


class _Analyzer:
    def __init__(self) -> None:
        self.records: list[LayerRecord] = []

    def forward(self, layers: Sequence[Layer], x: _Signal) -> tuple[_Signal, list]:
        """Propagate the signal; return the output and the ops the backward pass replays."""
        ops: list = []
        pending: LayerRecord | None = None
        for layer in layers:
            if isinstance(layer, Dense):
                z, info = _dense_forward(layer, x)
                rec = LayerRecord(len(self.records), layer.n_in, layer.n_out,
                                  z_mean=z.mean, z_var=z.var, a_mean=z.mean, a_var=z.var,
                                  symmetric=info["symmetric"])
                if not math.isnan(z.cross):
                    rec.z_corr = (z.cross - z.mean**2) / z.var if z.var > 0 else math.nan
                self.records.append(rec)
                ops.append(("dense", layer, rec, info, x.identical))
                pending, x = rec, z
            elif isinstance(layer, Act):
                a, e_dphi2 = _act_forward(layer, x)
                if pending is not None:
                    pending.a_mean, pending.a_var = a.mean, a.var
                ops.append(("act", e_dphi2, x.identical))
                pending, x = None, a
            elif isinstance(layer, (BatchNorm, LayerNorm)):
                x, scale = _norm_forward(x, layer.eps)
                ops.append(("norm", scale))
                pending = None
            elif isinstance(layer, Residual):
                f, branch_ops = self.forward(layer.branch, x)
                a2 = layer.alpha**2
                cross = x.cross + a2 * f.cross if not math.isnan(x.cross) else math.nan
                # the branch ends in zero-mean weights: its output is uncorrelated with x
                x = _Signal(x.mean + layer.alpha * f.mean, x.var + a2 * f.var,
                            x.identical and f.identical, cross)
                ops.append(("residual", layer.alpha, branch_ops))
                pending = None
        return x, ops

    def backward(self, ops: list, g: _Gradient) -> _Gradient:
        for op in reversed(ops):
            kind = op[0]
            if kind == "act":
                _, e_dphi2, z_identical = op
                g = _Gradient(g.var * e_dphi2, g.identical and z_identical)
            elif kind == "dense":
                _, layer, rec, info, x_identical = op
                rec.grad_var = g.var
                rec.weight_grad_var = info["x_second"] * g.var
                w = info["moments"]
                if w.structure == "identity":
                    g = _Gradient(info["gain"] ** 2 * g.var, g.identical)
                    continue
                n = layer.n_out
                coherent = n * n if g.identical else n
                var = n * w.var * g.var + coherent * w.mean**2 * g.var
                # constant weights send the same sum back to every input unit
                g = _Gradient(var, w.var == 0.0)
            elif kind == "norm":
                g = _Gradient(g.var * op[1], g.identical)
            elif kind == "residual":
                _, alpha, branch_ops = op
                through = self.backward(branch_ops, g)
                g = _Gradient(g.var + alpha**2 * through.var, g.identical and through.identical)
        return g


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
        ``symmetric`` flag for zeros/constant initializers.

    Example:
        >>> p = analyze(mlp([512] * 31, "relu", "he_normal"))
        >>> round(p[-1].z_var, 6)   # He keeps q = 2 E[x^2] layer after layer
        2.0
    """
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
    analyzer = _Analyzer()
    out, ops = analyzer.forward(net.layers, _Signal(input_mean, input_var, False, cross))
    analyzer.backward(ops, _Gradient(1.0, False))
    meta = {"assumptions": "mean field: infinite width, Gaussian pre-activations, "
                           "gradient independence"}
    return Profile("analytic", analyzer.records, net.describe(), input_var, input_mean, meta)


def _finite(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    return value

