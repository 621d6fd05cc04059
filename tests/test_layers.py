"""Layer bundles and the walker: validation at construction, the walk (fusion, indices,
widths), and the promise of varprop.layers.Layer's docstring: a new layer type plugs in
by writing one class, and analyze, measure and compare run it."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest

import varprop
from varprop._analytic_signal import _Signal
from varprop.layers import Act, BatchNorm, Dense, Layer, LayerNorm, Residual, walk
from varprop.network import Network

HE = "he_normal"


@pytest.mark.parametrize("make, error, words", [
    (lambda: Dense(0, 4, HE), ValueError, "n_in"),
    (lambda: Dense(4, True, HE), TypeError, "n_out"),
    (lambda: Dense(4.0, 4, HE), TypeError, "n_in"),
    (lambda: Dense(4, 4, 3.0), TypeError, "init"),
    (lambda: Dense(4, 4, "no_such_init"), ValueError, "init"),
    (lambda: Dense(4, 4, HE, 5), TypeError, "bias_init"),
    (lambda: Act(3), TypeError, "activation"),
    (lambda: Act("no_such_act"), ValueError, "activation"),
    (lambda: BatchNorm(eps=-1.0), ValueError, "eps"),
    (lambda: LayerNorm(eps=math.nan), ValueError, "eps"),
    (lambda: Residual(Dense(4, 4, HE)), TypeError, "branch"),
    (lambda: Residual((Dense(4, 4, HE),), alpha=math.inf), ValueError, "alpha"),
    (lambda: Network(4, ["relu"]), TypeError, "layer 0"),
    (lambda: Network(4, Dense(4, 4, HE)), TypeError, "layers"),
    (lambda: Network(4, (Dense(3, 4, HE),)), ValueError, "layer 0"),
    (lambda: Network(4, (Residual((Dense(4, 5, HE),)),)), ValueError, "branch"),
    (lambda: Network(4, (Residual(("x",)),)), TypeError, "branch layer 0"),
])
def test_bad_layer_specs_are_rejected_at_construction(make, error, words):
    with pytest.raises(error, match=words):
        make()


def test_names_and_configs_are_resolved_at_construction():
    # Act("relu") used to reach analyze as a str and fail with an AttributeError
    net = Network(4, (Dense(4, 8, HE, "zeros"), Act("relu"), Dense(8, 8, {"name": "he_normal"}),
                      Act({"name": "leaky_relu", "negative_slope": 0.2})))
    assert net.layers[1].activation == varprop.get_activation("relu")
    assert net.layers[3].activation.params["negative_slope"] == 0.2
    p = varprop.analyze(net)
    # by hand: He gives Var[z] = 2 E[x^2]; unit inputs, then E[relu(z)^2] = Var[z] / 2
    assert p[0].z_var == pytest.approx(2.0, rel=1e-12)
    assert p[1].z_var == pytest.approx(2.0, rel=1e-12)


def test_walk_fuses_activations_numbers_weighted_layers_and_tracks_width():
    d1, d2, d3 = Dense(3, 5, HE), Dense(5, 5, HE), Dense(5, 2, HE)
    relu = Act("relu")
    layers = (d1, relu, BatchNorm(), relu, Residual((d2, relu)), d3)
    steps, width = walk(layers, 3)
    assert width == 2
    assert [type(s.layer).__name__ for s in steps] == ["Dense", "BatchNorm", "Act", "Residual",
                                                       "Dense"]
    assert steps[0].act == relu.activation and steps[0].index == 0
    assert steps[2].index == -1 and steps[2].act is None  # a lone Act is its own step
    assert steps[3].branch[0].layer is d2 and steps[3].branch[0].index == 1
    assert steps[4].index == 2 and steps[4].act is None
    net = Network(3, layers)
    assert net.depth == 3 and list(net.dense_layers()) == [d1, d2, d3]


# ----------------------------------------------------------------------------- a new layer
@dataclass(frozen=True)
class Scale(Layer):
    """``y = c x``: a layer written in a test, through the public protocol only."""

    c: float = 2.0

    def __post_init__(self) -> None:
        if not math.isfinite(self.c):
            raise ValueError(f"Scale: c must be finite, got {self.c!r}")

    def analytic(self, step, analyzer, x, ops):
        c = self.c
        ops.append((lambda az, state, g: g.scaled(c * c, g.identical), None))
        return _Signal(c * x.mean, c * c * x.var, x.identical, c * c * x.cross,
                       gaussian=x.gaussian, bcross=c * c * x.bcross)

    def forward(self, step, run, x, x2, keep, record):
        c = run.dtype.type(self.c)
        return c * x, None if x2 is None else c * x2, None

    def backward(self, step, run, cache, grad):
        return run.dtype.type(self.c) * grad


def test_a_new_layer_type_plugs_in_with_one_class():
    c = 3.0
    plain = varprop.mlp([64, 64, 64], ["tanh", "linear"], "glorot_normal")
    d1, a1, d2, a2 = plain.layers
    net = Network(64, (d1, a1, Scale(c), d2, a2))
    theory, base = varprop.analyze(net), varprop.analyze(plain)
    # independent reference: Scale multiplies the second moment fed to layer 1 by c^2,
    # so layer 1's Var[z] is c^2 times the plain one, and layer 0's gradient is c^2
    # times (its own tanh sees the same z)
    assert theory[1].z_var == pytest.approx(c * c * base[1].z_var, rel=1e-12)
    assert theory[0].grad_var == pytest.approx(c * c * base[0].grad_var, rel=1e-12)
    # measured with the same weights and inputs (the streams are per dense index):
    # (c a) W = c (a W), so layer 1's pooled Var[z] is c^2 times, up to float64 rounding
    m_net = varprop.measure(net, batch=32, seeds=1, dtype=np.float64)
    m_plain = varprop.measure(plain, batch=32, seeds=1, dtype=np.float64)
    assert m_net[0].z_var == m_plain[0].z_var
    assert m_net[1].z_var == pytest.approx(c * c * m_plain[1].z_var, rel=1e-12)
    # and back through the linear top: dL/da0 = c W1 g, so layer 0's gradient is c^2 times
    assert m_net[1].grad_var == m_plain[1].grad_var
    assert m_net[0].grad_var == pytest.approx(c * c * m_plain[0].grad_var, rel=1e-12)
    assert varprop.compare(net, batch=64, seeds=2).analytic[1].z_var == theory[1].z_var
