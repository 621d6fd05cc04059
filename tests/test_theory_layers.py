"""BatchNorm, LayerNorm and scaled residual blocks: the analyzer's rules against closed
forms derived by hand (docs/theory.md, section 6) and against measurement.

The measured tables of docs/theory.md come from this script (about a minute)::

    import numpy as np, varprop
    from varprop.network import Dense, Act, BatchNorm, Network
    from varprop.activations import get_activation
    from varprop.initializers import get
    def blocks(act, width, depth=10):
        return Network(width, tuple(x for _ in range(depth) for x in (
            Dense(width, width, get("he_normal")), BatchNorm(), Act(get_activation(act)))))
    def factor(g):  # per-block change of the gradient variance, blocks 1..depth-1
        return (g[1] / g[-1]) ** (1 / (len(g) - 2))
    for act in ("relu", "tanh", "linear"):
        for batch in (16, 64, 512):
            net = blocks(act, 512)
            print(act, batch, factor(varprop.analyze(net).column("grad_var")),
                  factor(varprop.analyze(net, batch=batch).column("grad_var")),
                  factor(varprop.measure(net, batch=batch, seeds=4,
                                         dtype=np.float64).column("grad_var")))
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import varprop
from varprop.agreement import agreement
from varprop.activations import get_activation
from varprop.initializers import get as get_initializer
from varprop.network import Act, BatchNorm, Dense, LayerNorm, Network, Residual

WIDTH = 64  # the analytic rules do not depend on the width (mean field)


def _bn_blocks(act: str, depth: int = 10, width: int = WIDTH, init: str = "he_normal",
               norm=BatchNorm) -> Network:
    """``depth`` blocks Dense -> norm -> act; eps = 0 so the closed forms hold exactly."""
    layers = []
    for _ in range(depth):
        layers += [Dense(width, width, get_initializer(init)), norm(eps=0.0),
                   Act(get_activation(act))]
    return Network(width, tuple(layers))


def _gauss_expect(f, q: float, degree: int = 200) -> float:
    """E[f(x)], x ~ N(0, q), by probabilists' Gauss-Hermite (smooth f only): an
    independent reference, not varprop's quadrature."""
    t, w = np.polynomial.hermite_e.hermegauss(degree)
    return float(np.sum(w * f(math.sqrt(q) * t)) / math.sqrt(2 * math.pi))


def _block_factors(grad: np.ndarray) -> np.ndarray:
    return grad[:-1] / grad[1:]


# ----------------------------------------------------------------------------- BatchNorm
def test_batchnorm_relu_gradient_grows_by_pi_over_pi_minus_1():
    """Yang et al. 2019: after the first block every Dense-BN-ReLU block multiplies the
    gradient variance by pi / (pi - 1) toward the input (infinite batch)."""
    grad = varprop.analyze(_bn_blocks("relu")).column("grad_var")
    factors = _block_factors(grad)
    np.testing.assert_allclose(factors[1:], math.pi / (math.pi - 1), rtol=1e-12)
    # the first block sees independent N(0, 1) inputs: no offsets, He's z_var = 2
    np.testing.assert_allclose(factors[0], 2 * 0.5 / 2, rtol=1e-12)


@pytest.mark.parametrize("batch", [8, 16, 64, 512])
def test_batchnorm_finite_batch_factor(batch):
    grad_inf = varprop.analyze(_bn_blocks("relu")).column("grad_var")
    grad_b = varprop.analyze(_bn_blocks("relu"), batch=batch).column("grad_var")
    expected = (batch - 2) / (batch - 3)
    np.testing.assert_allclose(_block_factors(grad_b) / _block_factors(grad_inf), expected,
                               rtol=1e-9)


def test_batchnorm_tanh_factor_from_hermite_reference():
    """tanh is odd: no offsets, so the factor is 2 E[tanh'(y)^2] / (2 E[tanh(y)^2]), y ~ N(0,1)."""
    grad = varprop.analyze(_bn_blocks("tanh")).column("grad_var")
    e_d2 = _gauss_expect(lambda x: (1 - np.tanh(x) ** 2) ** 2, 1.0)
    e_a2 = _gauss_expect(lambda x: np.tanh(x) ** 2, 1.0)
    np.testing.assert_allclose(_block_factors(grad)[1:], e_d2 / e_a2, rtol=1e-7)


def test_batchnorm_linear_is_neutral():
    grad = varprop.analyze(_bn_blocks("linear")).column("grad_var")
    np.testing.assert_allclose(_block_factors(grad)[1:], 1.0, rtol=1e-12)


def test_batchnorm_removes_bias_offsets():
    """A random bias is the same for every sample: all of it is offset, which BatchNorm
    removes, so the gradient does not see it (the total variance would count it)."""
    bias = get_initializer("random_normal", mean=0.0, stddev=3.0)
    net_b = Network(WIDTH, (Dense(WIDTH, WIDTH, get_initializer("he_normal"), bias),
                            BatchNorm(eps=0.0), Act(get_activation("linear")),
                            Dense(WIDTH, WIDTH, get_initializer("he_normal"))))
    grad = varprop.analyze(net_b).column("grad_var")
    # dL/dz0 = (1 / within) * 2 * 1; within = Var[z0] - Var[b] = 2 (inputs N(0, 1))
    np.testing.assert_allclose(grad[0], 2.0 / 2.0, rtol=1e-12)
    assert varprop.analyze(net_b).records[0].z_var == pytest.approx(2.0 + 9.0)


def test_layernorm_factor_is_inverse_variance():
    grad = varprop.analyze(_bn_blocks("relu", norm=LayerNorm)).column("grad_var")
    # z = 2 E[relu(y)^2] = 1 with y ~ N(0, 1): factor 2 * 1/2 / 1 = 1
    np.testing.assert_allclose(_block_factors(grad)[1:], 1.0, rtol=1e-12)


# ----------------------------------------------------------------------------- residual
@pytest.mark.parametrize("alpha", [0.25, 0.5, 1.0, 2.0, -1.5])
def test_residual_gradient_carries_alpha_squared_once(alpha):
    """y = x + alpha f(x), f = He Dense -> ReLU -> He Dense. Forward: q grows by
    (1 + alpha^2 * 2 * 1/2 * 2 ... ) = (1 + 2 alpha^2) per block (Var f = 2 * E[relu^2]
    * 2 = 2 q); backward the same factor; inside the branch the gradient is alpha^2
    times the block's output gradient."""
    he = get_initializer("he_normal")
    relu = get_activation("relu")
    blocks = 4
    net = Network(WIDTH, tuple(Residual((Dense(WIDTH, WIDTH, he), Act(relu),
                                         Dense(WIDTH, WIDTH, he)), alpha=alpha)
                               for _ in range(blocks)))
    p = varprop.analyze(net)
    grow = 1 + 2 * alpha**2
    for k in range(blocks):
        g_out = grow ** (blocks - 1 - k)  # gradient variance at block k's output
        first, second = p.records[2 * k], p.records[2 * k + 1]
        assert second.grad_var == pytest.approx(alpha**2 * g_out, rel=1e-12)
        assert first.grad_var == pytest.approx(alpha**2 * g_out * 2 * 0.5, rel=1e-12)
        q_in = grow ** k
        assert first.z_var == pytest.approx(2 * q_in, rel=1e-12)


# ----------------------------------------------------------------------------- measured
# The measurement side: the log-space test of varprop.agreement (docs/comparison.md) at
# a stated false-alarm rate, on widths and batches where its spread model holds. Fixed
# seeds: each test is deterministic; ALPHA is the chance that a correct theory would be
# flagged by one of them.
ALPHA = 1e-3
M_WIDTH, M_BATCH, M_SEEDS = 512, 256, 3


def _measured(net: Network, seeds=M_SEEDS, batch=M_BATCH):
    return varprop.measure(net, batch=batch, seeds=seeds)


def _with_gradient(profile, scale: np.ndarray):
    """A copy of ``profile`` whose gradient variances are multiplied by ``scale``: the
    theory as a wrong rule would give it."""
    out = varprop.Profile.from_dict(profile.to_dict())
    for rec, k in zip(out.records, scale):
        rec.grad_var *= float(k)
    return out


@pytest.mark.parametrize("act", ["relu", "tanh", "linear"])
def test_batchnorm_blocks_measured_agree(act):
    net = _bn_blocks(act, depth=10, width=M_WIDTH)
    theory = varprop.analyze(net, batch=M_BATCH)
    measured = _measured(net)
    result = agreement(theory, measured, alpha=ALPHA)
    assert not result.disagrees, result.summary()
    if act == "relu":
        # the rule before the fix divided by the total variance (offsets included): its
        # gradient is (pi - 1) / pi per block smaller toward the input, and is rejected
        blocks_below = np.arange(10)[::-1]
        old = _with_gradient(theory, ((math.pi - 1) / math.pi) ** blocks_below)
        assert agreement(old, measured, alpha=ALPHA).disagrees


@pytest.mark.parametrize("alpha", [0.5, 1.5])
def test_scaled_residual_measured_agree(alpha):
    he, relu = get_initializer("he_normal"), get_activation("relu")
    net = Network(M_WIDTH, tuple(Residual((Dense(M_WIDTH, M_WIDTH, he), Act(relu),
                                           Dense(M_WIDTH, M_WIDTH, he)), alpha=alpha)
                                 for _ in range(4)))
    theory = varprop.analyze(net)
    measured = _measured(net)
    assert not agreement(theory, measured, alpha=ALPHA).disagrees
    # before the fix the branch's gradient lacked alpha^2
    old = _with_gradient(theory, np.full(len(theory), 1 / alpha**2))
    assert agreement(old, measured, alpha=ALPHA).disagrees


# ----------------------------------------------------------------------------- random nets
_INITS = ("he_normal", "glorot_normal", "lecun_normal", "he_uniform", "orthogonal")
_ACTS = ("relu", "tanh", "linear", "selu", "leaky_relu", "softplus")


@st.composite
def architectures(draw):
    """A random network of Dense, Act, Residual (any alpha), BatchNorm and LayerNorm,
    with and without biases (not identity or constant weights: those have their own
    exact tests in tests/test_analytic.py)."""
    width = draw(st.sampled_from([256, 384]))
    init = draw(st.sampled_from(_INITS))
    act = get_activation(draw(st.sampled_from(_ACTS)))
    bias_kind = draw(st.sampled_from(["none", "zeros", "normal"]))
    bias = {"none": None, "zeros": get_initializer("zeros"),
            "normal": get_initializer("random_normal", mean=0.0,
                                      stddev=draw(st.floats(0.05, 1.0)))}[bias_kind]

    def dense():
        return Dense(width, width, get_initializer(init), bias)

    layers = []
    for _ in range(draw(st.integers(2, 6))):
        kind = draw(st.sampled_from(["plain", "bn", "ln", "residual"]))
        if kind == "plain":
            layers += [dense(), Act(act)]
        elif kind == "bn":
            layers += [dense(), BatchNorm(), Act(act)]
        elif kind == "ln":
            layers += [dense(), LayerNorm(), Act(act)]
        else:
            alpha = draw(st.floats(-2.0, 2.0).filter(lambda a: abs(a) > 1e-3))
            norm = draw(st.sampled_from([None, BatchNorm, LayerNorm]))
            branch = [dense()] + ([norm()] if norm else []) + [Act(act), dense()]
            layers.append(Residual(tuple(branch), alpha=alpha))
    return Network(width, tuple(layers))


@settings(max_examples=12, deadline=None)
@given(net=architectures(), batch=st.sampled_from([64, 128, 256]),
       seed=st.integers(0, 2**20))
def test_random_architectures_measured_agree_with_theory(net, batch, seed):
    """Theory against measurement on random architectures of all five layer types:
    12 networks at a false-alarm rate of ALPHA each (about 1% for the whole test)."""
    theory = varprop.analyze(net, batch=batch)
    measured = varprop.measure(net, batch=batch, seeds=[seed, seed + 1, seed + 2])
    result = agreement(theory, measured, alpha=ALPHA)
    assert not result.disagrees, (result.summary(), theory.meta["approximations"])
